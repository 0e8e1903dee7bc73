// Graph-as-data core: CAN's item embedding must hold layer_num * (D * D + D) values (here 2 * 110 = 220, not 200).
// expect: ctrec_shape_error_can_item_must_be_layer_num_times_D_squared_plus_D
// expect: {"can"}
// expect: ctrec::shape_error::got[200]
// expect: ctrec::shape_error::want[220]
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::can<"can", ctrec::layers::can_config{}>(f::input<"u", 10, 10>, f::input<"i", 200>);
int main() {}
