// Graph-as-data core: concat operands must agree off the concat axis.
// expect: ctrec_shape_error_concat_operands_differ_off_the_axis
// expect: ctrec::concat<0,
// expect: ctrec::shape_error::got[4]
// expect: ctrec::shape_error::want[3]
#include "ctrec/core.hpp"
constexpr auto y = ctrec::concat<0>(ctrec::input<"a", 2, 3>, ctrec::input<"b", 2, 4>);
int main() {}
