// Graph-as-data core: DIEN's query width must equal num_units (here 8 != 10).
// expect: ctrec_shape_error_dien_the_query_width_must_equal_num_units
// expect: {"dien"}
// expect: ctrec::shape_error::got[8]
// expect: ctrec::shape_error::want[10]
#include "ctrec/layers/dien.hpp"  // not in flat/layers.hpp
namespace f = ctrec;
constexpr auto r = f::layers::dien<"dien", ctrec::layers::dien_config{.num_units = 10}>(f::input<"q", 8>, f::input<"k", 15, 10>);
int main() {}
