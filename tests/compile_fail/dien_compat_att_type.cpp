// DIEN under monolith_compat runs AGRU whatever att_type says: att_type = augru with it does not
// compile without .acknowledge_compat_overrides = true.
// expect: ctrec_error_dien_monolith_compat_ignores_att_type_augru_set_acknowledge_compat_overrides
// expect: {"dien"}
#include "ctrec/layers/dien.hpp"  // not in flat/layers.hpp
namespace f = ctrec;
namespace cl = ctrec::layers;
constexpr auto r = cl::dien<"dien", cl::dien_config{.num_units = 4, .att_type = cl::agru_att::augru, .monolith_compat = true}>(
    f::input<"q", 4>, f::input<"k", 5, 3>);
int main() {}
