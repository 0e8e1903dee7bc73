// Graph-as-data core: NASGating's segment widths must add up to the input's width.
// expect: ctrec_shape_error_nas_layer_input_must_be_batched_B_by_D_with_D_the_sum_of_the_segment_widths
#include "ctrec/core.hpp"
#include "ctrec/layers/nas_gating.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::nas_gating<"g", f::layers::nas_gating_config{.segment_sizes = {3, 4}}>(f::input<"x", 8>);
int main() {}
