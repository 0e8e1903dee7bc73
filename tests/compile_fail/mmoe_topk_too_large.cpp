// MMoE: a top-k gate cannot keep more experts than there are (top_k > num_experts).
// expect: ctrec_shape_error_mmoe_top_k_must_be_at_most_num_experts
// expect: {"m_mo_e"}
// expect: ctrec::shape_error::got[4]
// expect: ctrec::shape_error::want[3]
#include "ctrec/ctrec.hpp"
#include "ctrec/layers/mmoe.hpp"
namespace cl = ctrec::layers;
constexpr auto r = cl::mmoe<"m_mo_e", cl::mmoe_config{.num_tasks = 2, .expert_output_dims = {8, 4}, .expert_activations = cl::act_relu,
                                                      .gate_type = cl::mmoe_gate::topk, .top_k = 4, .num_experts = 3},
                            cl::mode::train>(ctrec::input<"x", 16>);
int main() {}
