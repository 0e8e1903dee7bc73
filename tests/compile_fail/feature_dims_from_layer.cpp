// Mismatched feature dims where one side comes from another layer: DIN's query is a Dense output
// (6 wide) and the behaviours are 8 wide. The call as written shows no dims (q is a variable), so
// the numbers come from the report itself: the layer ("din") and both widths.
// expect: ctrec_shape_error_din_q_must_be_B_by_H_and_k_B_by_T_by_H_with_the_same_H
// expect: {"din"}
// expect: ctrec::shape_error::got[6]
// expect: ctrec::shape_error::want[8]
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
namespace cl = ctrec::layers;
constexpr auto q = f::layers::dense<"query_tower", {.units = 6}>(f::input<"user", 12>).out();
constexpr auto r = f::layers::din<"din", cl::din_config<2>{.hidden_units = {4, 1}}>(q, f::input<"k", 5, 8>);
int main() {}
