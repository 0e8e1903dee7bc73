// Graph-as-data core: an einsum spec whose shared index has different extents.
// expect: ctrec_shape_error_einsum_spec_does_not_fit_the_operand_shapes
// expect: flat::einsum<ctrec::fixed_string<10>{"ik,kj->ij"}>
#include "ctrec/flat.hpp"
constexpr auto y = ctrec::flat::einsum<"ik,kj->ij">(ctrec::flat::input<"a", 2, 3>, ctrec::flat::param<"b", 4, 5>);
int main() {}
