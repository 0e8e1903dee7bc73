// Graph-as-data core: DIN's attention MLP must end in one unit (one score per behaviour); the
// diagnostic names the layer ("din") and the offending last unit (got 2, want 1).
// expect: ctrec_shape_error_din_the_last_hidden_unit_must_be_1
// expect: {"din"}
// expect: ctrec::shape_error::got[2]
// expect: ctrec::shape_error::want[1]
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::din<"din", ctrec::layers::din_config<2>{.hidden_units = {8, 2}}>(f::input<"q", 4>, f::input<"k", 5, 4>);
int main() {}
