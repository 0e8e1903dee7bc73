// A per-example value that depends on a sum over the batch is rejected with a reason.
// expect: a batched value depends on a sum over the batch
#include "ctrec/ctrec.hpp"
constexpr auto x = ctrec::input<"x", 4>;
constexpr auto y = x - ctrec::batch_sum(x);
int main() { ctrec::program<float, decltype(y)>::run; }
