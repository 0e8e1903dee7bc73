// An einsum spec whose shared index has different extents.
// expect: incompatible_shapes<ctrec::fixed_string<10>{"ik,kj->ij"}, ctrec::shape<2, 3>, ctrec::shape<4, 5>
#include "ctrec/ctrec.hpp"
constexpr auto y = ctrec::einsum<"ik,kj->ij">(ctrec::input<"a", 2, 3>, ctrec::param<"b", 4, 5>);
int main() {}
