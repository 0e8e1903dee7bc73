// A matmul whose inner dimensions differ names the op and both shapes.
// expect: incompatible_shapes<ctrec::fixed_string<7>{"matmul"}, ctrec::shape<3>, ctrec::shape<4, 5>
#include "ctrec/ctrec.hpp"
constexpr auto y = ctrec::matmul(ctrec::input<"x", 3>, ctrec::param<"W", 4, 5>);
int main() {}
