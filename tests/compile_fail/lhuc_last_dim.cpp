// LHUCTower: in the list-of-lists form, gate MLP i must end in output_dims[i] units.
// expect: ctrec_shape_error_lhuc_tower_lhuc_output_dims_row_i_must_end_with_output_dims_i
#include "ctrec/core.hpp"
#include "ctrec/layers/lhuc_tower.hpp"
namespace f = ctrec;
constexpr f::layers::lhuc_tower_config<2> cfg{.output_dims = {4, 2}, .lhuc_output_dims = {{{3, 4}, {3}}}};
constexpr auto r = f::layers::lhuc_tower<"lhuc_tower", cfg, f::layers::mode::predict>(f::input<"x", 5>);
int main() {}
