// Graph-as-data core: a matmul whose inner dimensions differ stops constant evaluation at a
// function named for the mistake, with the user's expression in the context.
// expect: ctrec_shape_error_matmul_needs_K_by_N_weights_matching_the_last_axis
// expect: ctrec::matmul
// expect: got[4]
// expect: want[3]
#include "ctrec/core.hpp"
constexpr auto y = ctrec::matmul(ctrec::input<"x", 3>, ctrec::param<"W", 4, 5>);
int main() {}
