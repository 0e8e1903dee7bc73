// Graph-as-data core: MixedNAS candidate sizes must be non-decreasing in the 'left' share mode.
// expect: ctrec_shape_error_mixed_nas_sizes_must_be_non_decreasing_in_left_diff_and_random_modes
#include "ctrec/core.hpp"
#include "ctrec/layers/mixed_nas.hpp"
namespace f = ctrec;
constexpr f::layers::mixed_nas_config cfg{.segment_sizes = {{0, 4, 2}}, .embedding_share_mode = f::layers::nas_share_mode::left};
constexpr auto r = f::layers::mixed_nas<"m", cfg>(f::input<"x", 2>);
int main() {}
