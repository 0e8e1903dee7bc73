// Graph-as-data core: an einsum spec whose shared index has different extents.
// expect: ctrec_shape_error_einsum_spec_does_not_fit_the_operand_shapes
// expect: ctrec::einsum<fixed_string<10>{"ik,kj->ij"}>
// expect: ctrec::shape_error::got[4]
// expect: ctrec::shape_error::want[3]
#include "ctrec/core.hpp"
constexpr auto y = ctrec::einsum<"ik,kj->ij">(ctrec::input<"a", 2, 3>, ctrec::param<"b", 4, 5>);
int main() {}
