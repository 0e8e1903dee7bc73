// AllInt needs a (B, N, K) input.
// expect: ctrec::layers::allint: the input must be (B, N, K)
#include "ctrec/ctrec.hpp"
constexpr auto r = ctrec::layers::allint<"a", ctrec::layers::allint_config{.cmp_dim = 4}>(ctrec::input<"x", 12>);
int main() {}
