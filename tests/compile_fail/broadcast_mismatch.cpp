// Elementwise operands that do not broadcast.
// expect: incompatible_shapes<ctrec::fixed_string<4>{"add"}, ctrec::shape<2, 3>, ctrec::shape<4>
#include "ctrec/ctrec.hpp"
constexpr auto y = ctrec::input<"a", 2, 3> + ctrec::param<"b", 4>;
int main() {}
