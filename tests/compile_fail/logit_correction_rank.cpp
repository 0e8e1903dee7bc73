// LogitCorrection: [B] logits with [B, 1] rates would broadcast to [B, B] in NumPy; ranks must match.
// expect: ctrec_shape_error_logit_correction_logits_and_sample_rate_must_have_the_same_rank
#include "ctrec/core.hpp"
#include "ctrec/layers/logit_correction.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::logit_correction<"logit_correction">(f::input<"logits">, f::input<"rate", 1>);
int main() {}
