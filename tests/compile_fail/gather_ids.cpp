// gather needs int32 ids from an index input, not a float tensor.
// expect: ctrec: gather ids must be an index input
#include "ctrec/ctrec.hpp"
constexpr auto y = ctrec::gather(ctrec::param<"table", 10, 4>, ctrec::input<"x", 3>);
int main() {}
