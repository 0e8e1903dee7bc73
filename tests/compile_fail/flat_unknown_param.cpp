// Graph-as-data core: a parameter name the program does not have.
// expect: no_such_tensor<ctrec::fixed_string<5>{"nope"}, false>
#include "ctrec/flat.hpp"
constexpr auto y = ctrec::flat::matmul(ctrec::flat::input<"x", 3>, ctrec::flat::param<"W", 3, 5>);
using M = ctrec::flat::program<float, y>;
int main() { M::parameters p; p.get<"nope">(); }
