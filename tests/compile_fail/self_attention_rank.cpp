// Graph-as-data core: self_attention needs a per-example (N, K) matrix; a vector does not compile.
// expect: ctrec_shape_error_self_attention_needs_a_batched_N_by_K_matrix
// expect: ctrec::shape_error::got[2]
// expect: ctrec::shape_error::want[3]
#include "ctrec/core.hpp"
constexpr auto y = ctrec::self_attention(ctrec::input<"x", 12>);
int main() {}
