// Graph-as-data core: DIN's query and keys of different widths H is a compile-time error naming it.
// expect: ctrec_shape_error_din_q_must_be_B_by_H_and_k_B_by_T_by_H_with_the_same_H
// expect: {"din"}
// expect: ctrec::shape_error::got[8]
// expect: ctrec::shape_error::want[6]
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::din<"din", ctrec::layers::din_config<2>{.hidden_units = {4, 1}}>(f::input<"q", 8>, f::input<"k", 5, 6>);
int main() {}
