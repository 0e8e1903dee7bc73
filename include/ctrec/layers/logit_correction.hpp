#pragma once
// LogitCorrection (spec layers-trans-seq-multitask-nas.md 4): training-time correction of logits
// for negative down-sampling, optionally turned into log-probabilities ("sample bias").
//
//   constexpr auto r = layers::logit_correction<"logit_correction", {.activation = layers::act_tanh}>(l, rate);
//   constexpr auto q = layers::logit_correction<"logit_correction", {.sample_bias = true}>(l);  // no rate
//
//   rate given,  sample_bias:  lsig(l) - ln r        rate given,  no bias:  l - ln r
//   no rate,     sample_bias:  lsig(l)               no rate,     no bias:  l
// then the activation (Keras activations.get: the default, the source's None, is the identity
// `act_linear`). No variables (PReLU, if chosen, owns "<scope>/p_re_lu/alpha"), no mode, no
// randomness.
//
// Shapes per example: logits () or (M) (the source's [B] and [B, M]); the rate has the SAME
// rank, () with (), (1) or (M) with (M); the output has the broadcast shape. NumPy would turn
// [B] logits with [B, 1] rates into [B, B]; here a rank mismatch is a compile-time error
// (ctrec_shape_error_logit_correction_logits_and_sample_rate_must_have_the_same_rank; spec 7 #16).
//
// lsig(x) = ln sigmoid(x), stable on both sides:
//   x > 0: -log1p(exp(-x));   x <= 0: x - log1p(exp(x))
// bit for bit the values of the spec's -(max(x, 0) - x + log1p(exp(-|x|))) (IEEE negation is exact),
// each branch reading a clamped argument so the unused one never overflows (no 0 * inf in the
// gradient). The derivative is sigmoid(-x) everywhere, x = 0 included (spec 4.7); TF's autodiff
// of the spec's formula gives 0 at exactly x = 0 (max' = 1 and |x|' = 0 there), a single point
// where ctrec follows the spec rather than that artefact.
//
// Rates must be > 0: r = 0 gives +inf (spec 4.10). This is data, so the caller validates it
// where the rates enter; the layer does not clamp them. The rate's gradient (-1/r) exists but
// rates are normally inputs.
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

struct logit_correction_config {
    layers::activation activation = act_linear;  // Keras resolver (keras_activation): None -> linear
    bool sample_bias = false;
};

void ctrec_shape_error_logit_correction_logits_must_be_B_or_B_by_M();
void ctrec_shape_error_logit_correction_logits_and_sample_rate_must_have_the_same_rank();
void ctrec_shape_error_logit_correction_sample_rate_must_broadcast_with_the_logits();

// ln sigmoid(x), stable, derivative sigmoid(-x) everywhere
constexpr val log_sigmoid(val x) {
    return where(greater(x, 0.0), -log1p(exp(-maximum(x, 0.0))), minimum(x, 0.0) - log1p(exp(minimum(x, 0.0))));
}

// rate.g == nullptr: no sample rate
constexpr val logit_correction(result& m, const name_string& s, const logit_correction_config& c, val logits, val rate = {}) {
    if (logits.rank() > 1) ctrec_shape_error_logit_correction_logits_must_be_B_or_B_by_M();
    val y = c.sample_bias ? log_sigmoid(logits) : logits;
    if (rate.g) {
        if (rate.rank() != logits.rank()) ctrec_shape_error_logit_correction_logits_and_sample_rate_must_have_the_same_rank();
        if (logits.rank() == 1 && !(rate.dim(0) == logits.dim(0) || rate.dim(0) == 1 || logits.dim(0) == 1))
            ctrec_shape_error_logit_correction_sample_rate_must_broadcast_with_the_logits();
        y = y - log(rate);
    }
    return apply_activation(m, c.activation, scoped(s, "p_re_lu"), y);
}

template <fixed_string Scope, logit_correction_config C = logit_correction_config{}>
constexpr result logit_correction(const result& logits) {
    result m = logits;
    m.set_out(logit_correction(m, Scope.view(), C, m.value()));
    return m;
}
template <fixed_string Scope, logit_correction_config C = logit_correction_config{}>
constexpr result logit_correction(const result& logits, const expr& sample_rate) {
    result m = logits;
    std::uint32_t ir = 0;
    join_into(m.g, sample_rate, ir);
    m.set_out(logit_correction(m, Scope.view(), C, m.value(), m.at(ir)));
    return m;
}

} // namespace ctrec::layers
