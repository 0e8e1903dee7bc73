// Graph-as-data core: a reshape must keep the element count.
// expect: ctrec_shape_error_reshape_changes_the_number_of_elements
// expect: ctrec::reshape<4, 2>
// expect: ctrec::shape_error::got[8]
// expect: ctrec::shape_error::want[6]
#include "ctrec/core.hpp"
constexpr auto y = ctrec::reshape<4, 2>(ctrec::input<"a", 2, 3>);
int main() {}
