// Graph-as-data core: SeNet's num_feature must match the number of fields of the input.
// expect: ctrec_shape_error_senet_num_feature_must_equal_the_number_of_fields
// expect: {"se"}
// expect: ctrec::shape_error::got[5]
// expect: ctrec::shape_error::want[4]
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::senet<"se", ctrec::layers::senet_config{.num_feature = 5, .cmp_dim = 2}>(f::input<"x", 4, 8>);
int main() {}
