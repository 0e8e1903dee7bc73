// Graph-as-data core: a matmul whose inner dimensions differ stops constant evaluation at a
// function named for the mistake, with the user's expression in the context.
// expect: ctrec_shape_error_matmul_needs_K_by_N_weights_matching_the_last_axis
// expect: flat::matmul
#include "ctrec/flat.hpp"
constexpr auto y = ctrec::flat::matmul(ctrec::flat::input<"x", 3>, ctrec::flat::param<"W", 4, 5>);
int main() {}
