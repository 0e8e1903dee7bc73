// Graph-as-data core: elementwise operands that do not broadcast.
// expect: ctrec_shape_error_elementwise_operands_do_not_broadcast
#include "ctrec/flat.hpp"
constexpr auto y = ctrec::flat::input<"x", 3, 4> + ctrec::flat::param<"b", 3>;
int main() {}
