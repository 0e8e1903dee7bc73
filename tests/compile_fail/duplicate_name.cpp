// Graph-as-data core: two parameters of one name but different shapes (they would share storage).
// expect: ctrec_error_two_leaves_share_a_name_with_different_shapes
#include "ctrec/core.hpp"
namespace f = ctrec;
constexpr auto y = f::matmul(f::matmul(f::input<"x", 3>, f::param<"W", 3, 5>), f::param<"W", 5, 2>);
using M = f::program<float, y>;
int main() { M::parameters p; }
