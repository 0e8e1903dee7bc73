// MMoE: monolith_compat draws the noise_topk gate noise in every mode, so in mode::predict it
// overrides deterministic scoring; without .acknowledge_compat_overrides = true it does not compile.
// expect: ctrec_error_mmoe_monolith_compat_draws_gate_noise_in_predict_set_acknowledge_compat_overrides
// expect: {"m_mo_e"}
#include "ctrec/ctrec.hpp"
#include "ctrec/layers/mmoe.hpp"
namespace cl = ctrec::layers;
constexpr auto r = cl::mmoe<"m_mo_e", cl::mmoe_config{.num_tasks = 2, .expert_output_dims = {8, 4}, .expert_activations = cl::act_relu,
                                                      .gate_type = cl::mmoe_gate::noise_topk, .top_k = 2, .num_experts = 3,
                                                      .monolith_compat = true},
                            cl::mode::predict>(ctrec::input<"x", 16>);
int main() {}
