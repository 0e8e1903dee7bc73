// Graph-as-data core: elementwise operands that do not broadcast.
// expect: ctrec_shape_error_elementwise_operands_do_not_broadcast
// expect: ctrec::shape_error::got[3]
// expect: ctrec::shape_error::want[4]
#include "ctrec/core.hpp"
constexpr auto y = ctrec::input<"x", 3, 4> + ctrec::param<"b", 3>;
int main() {}
