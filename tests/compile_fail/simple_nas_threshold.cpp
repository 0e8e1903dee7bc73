// Graph-as-data core: SimpleNas needs a positive threshold (the knee rule's c_0 = 0 < theta).
// expect: ctrec_shape_error_simple_nas_threshold_must_be_positive
#include "ctrec/core.hpp"
#include "ctrec/layers/simple_nas.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::simple_nas<"s", f::layers::simple_nas_config{.segment_sizes = {2, 2}, .threshold = 0.0}>(f::input<"x", 4>);
int main() {}
