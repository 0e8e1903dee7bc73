// self_attention needs a per-example (N, K) matrix.
// expect: incompatible_shapes<ctrec::fixed_string<15>{"self_attention"}, ctrec::shape<12>
// expect: ctrec: self_attention needs a per-example (N, K) matrix
#include "ctrec/ctrec.hpp"
constexpr auto y = ctrec::self_attention(ctrec::input<"x", 12>);
int main() {}
