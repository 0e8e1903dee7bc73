// Concat operands must agree off the concat axis.
// expect: incompatible_shapes<ctrec::fixed_string<7>{"concat"}, ctrec::shape<2, 3>, ctrec::shape<2, 4>
#include "ctrec/ctrec.hpp"
constexpr auto y = ctrec::concat<0>(ctrec::input<"a", 2, 3>, ctrec::input<"b", 2, 4>);
int main() {}
