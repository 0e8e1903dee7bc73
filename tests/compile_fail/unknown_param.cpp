// Graph-as-data core: a parameter name the program does not have.
// expect: no_such_tensor<ctrec::fixed_string<5>{"nope"}, false>
#include "ctrec/core.hpp"
constexpr auto y = ctrec::matmul(ctrec::input<"x", 3>, ctrec::param<"W", 3, 5>);
using M = ctrec::program<float, y>;
int main() { M::parameters p; p.get<"nope">(); }
