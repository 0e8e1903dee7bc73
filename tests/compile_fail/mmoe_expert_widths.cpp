// MMoE: per-expert output dims must end in equal widths (spec 3.1.2), checked when the layer is built;
// the diagnostic names the layer and the offending widths (expert 1 ends in 32, expert 0 in 64).
// expect: ctrec_shape_error_mmoe_expert_output_dims_must_end_in_equal_widths
// expect: {"m_mo_e"}
// expect: ctrec::shape_error::got[32]
// expect: ctrec::shape_error::want[64]
#include "ctrec/ctrec.hpp"
#include "ctrec/layers/mmoe.hpp"
namespace cl = ctrec::layers;
constexpr auto r = cl::mmoe<"m_mo_e", cl::mmoe_config{.num_tasks = 2, .expert_output_dims = {{128, 64, 64}, {64, 32}, {128, 64}},
                                                      .expert_activations = cl::act_relu},
                            cl::mode::train>(ctrec::input<"x", 16>);
int main() {}
