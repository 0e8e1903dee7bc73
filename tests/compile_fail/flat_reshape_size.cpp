// Graph-as-data core: a reshape must keep the element count.
// expect: ctrec_shape_error_reshape_changes_the_number_of_elements
// expect: flat::reshape<4, 2>
#include "ctrec/flat.hpp"
constexpr auto y = ctrec::flat::reshape<4, 2>(ctrec::flat::input<"a", 2, 3>);
int main() {}
