// Graph-as-data core: AllInt needs a (B, N, K) input.
// expect: ctrec_shape_error_allint_input_must_be_B_by_N_by_K
// expect: {"a"}
// expect: ctrec::shape_error::got[2]
// expect: ctrec::shape_error::want[3]
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::allint<"a", ctrec::layers::allint_config{.cmp_dim = 4}>(f::input<"x", 12>);
int main() {}
