// Graph-as-data core: concat operands must agree off the concat axis.
// expect: ctrec_shape_error_concat_operands_differ_off_the_axis
// expect: flat::concat<0,
#include "ctrec/flat.hpp"
constexpr auto y = ctrec::flat::concat<0>(ctrec::flat::input<"a", 2, 3>, ctrec::flat::input<"b", 2, 4>);
int main() {}
