// A reshape must keep the element count.
// expect: incompatible_shapes<ctrec::fixed_string<8>{"reshape"}, ctrec::shape<2, 3>, ctrec::shape<4, 2>
#include "ctrec/ctrec.hpp"
constexpr auto y = ctrec::reshape<4, 2>(ctrec::input<"a", 2, 3>);
int main() {}
