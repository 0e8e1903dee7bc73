// Graph-as-data core: mixed DCN without a low rank is a compile-time error naming it.
// expect: ctrec_shape_error_dcn_mixed_mode_needs_low_rank_and_num_experts_above_0
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::dcn<"dcn", {.type = f::layers::dcn_type::mixed, .layer_num = 2, .num_experts = 4}>(f::input<"x", 16>);
int main() {}
