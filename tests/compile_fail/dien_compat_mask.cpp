// DIEN under monolith_compat drops a given mask (the source ignores it): without
// .acknowledge_compat_overrides = true that combination does not compile.
// expect: ctrec::layers::dien: monolith_compat ignores the mask
// expect: acknowledge_compat_overrides = true
// expect: {"dien"}
#include "ctrec/layers/dien.hpp"  // not in flat/layers.hpp
namespace f = ctrec;
constexpr auto r = f::layers::dien<"dien", ctrec::layers::dien_config{.num_units = 4, .monolith_compat = true}>(
    f::input<"q", 4>, f::input<"k", 5, 3>, f::input<"mask", 5>);
int main() {}
