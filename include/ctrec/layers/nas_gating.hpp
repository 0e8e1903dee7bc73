#pragma once
// NASGatingLayer (spec layers-trans-seq-multitask-nas.md 6.3; the layer is unpublished: this is
// the spec's reconstruction [RECON], built on the published BernoulliGate kernel, P1 [OPS]):
// keep or drop each segment (feature embedding) of the input with a learned Bernoulli gate.
//
//   constexpr auto r = layers::nas_gating<"nas_gating", {.segment_sizes = {8, 8, 4}}>(x);  // x: (20)
//   constexpr auto e = layers::nas_gating<"nas_gating", {.segment_sizes = {8, 8, 4}}, layers::mode::eval>(x);
//
// Input x (D) per example, the concatenation of N segments of widths W_i (segment_sizes, in
// order, D = sum W_i); output y = x * s (D), s_d = b_i(d) the gate of the segment of column d,
// computed once per call and shared by the batch.
// Variable: "<scope>/arch_weights" (N), logits alpha; initializer RandomUniform(-0.001, 0.001)
// (spec 6.1), overridable; no regularizer.
//   TRAIN (mode::train): (b, pi) = P1(alpha; ste_type, use_logistic, temperature), one draw per
//     segment per call on the shared random stream "<scope>/noise_<seed>": u ~ U(0, 1) (open,
//     spec 0.3), b_i = 1[u_i <= sigma^(alpha_i)]; use_logistic: L = ln u - ln(1 - u),
//     b_i = 1[sigma^((L_i + alpha_i) / tau) >= 0.5]. The numbers are a pure function of
//     (io.seed, stream, element): every backend draws the same gates.
//   EVAL / PREDICT: b_i = 1[alpha_i >= 0] (no noise).
//   Gradients: xbar = ybar * s; bbar_i = sum over segment i of rho_d = sum_b ybar[b,d] x[b,d];
//     alphabar_i = bbar_i D_i (nas_gates.hpp, P1), D = pi (1 - pi) ['none', / tau with
//     use_logistic], sp^(alpha) ['softplus'], min(sp^(alpha), 1) ['clip'] - surrogates, not
//     derivatives: the forward is exactly 0 / 1 (dropped columns are exact zeros).
//
// Decisions:
// - segment_sizes: a flat list, one width per named segment (spec 6.3.2's reading); widths of
//   0 are allowed (a segment with no columns still has a logit). segment_names only name
//   diagnostics and summaries, which ctrec does not write: the configuration has no names.
// - EVAL / PREDICT keep the estimator (the TRAIN formulas with the noise at its median: u = 1/2,
//   L = 0, so pi = sigma^(alpha), resp. sigma^(alpha / tau)); nothing trains in those modes, but
//   the graph stays differentiable in every mode.
// - mode defaults to mode::train (as DCN's); `seed` (default 0) enters the stream name, so two
//   layers with different seeds draw independent gates; the scope already separates layers.
// - Injected noise (spec 0.3.3): the in-place function takes an optional unbatched (N) value
//   that replaces the random leaf (u, or L with use_logistic).
// - The optional arch_update_rate (P6) is not provided (a no-op at its default).
#include "ctrec/layers/nas_gates.hpp"

namespace ctrec::layers {

struct nas_gating_config {
    nas_size segment_sizes[nas_max_segments]{};  // W_i
    nas_ste ste_type = nas_ste::none;
    bool use_logistic = false;
    double temperature = 1.0;  // with use_logistic only
    init::spec initializer = init::RandomUniform{-0.001, 0.001};
    std::uint64_t seed = 0;
};

constexpr nas::nas_values nas_gating_values(result& m, const name_string& s, const nas_gating_config& c, mode M, val x,
                                            val noise = {}) {
    std::size_t W[nas_max_segments]{};
    const std::size_t N = nas::detail::read_sizes(c.segment_sizes, nas_max_segments, W);
    std::size_t D = 0;
    for (std::size_t i = 0; i < N; ++i) D += W[i];
    nas::detail::check_input(x, N, D);
    if (!(c.temperature > 0.0)) ctrec_shape_error_nas_layer_temperature_must_be_positive();
    const val alpha = m.var(scoped(s, "arch_weights").view(), dims_of({N}), c.initializer);
    const val u = M == mode::train ? nas::detail::noise_leaf(m, s, c.seed, N, c.use_logistic ? random_kind::logistic
                                                                                             : random_kind::open_uniform, noise)
                                   : val{};
    const nas::gate b = nas::bernoulli_gate(alpha, u, {c.ste_type, c.use_logistic, c.temperature});
    const val sc = nas::segment_scale(b.out, W, N);
    return {x * sc, sc, b.out, b.prob};
}
constexpr val nas_gating(result& m, const name_string& s, const nas_gating_config& c, mode M, val x, val noise = {}) {
    return nas_gating_values(m, s, c, M, x, noise).out;
}

template <fixed_string Scope, nas_gating_config C, mode M = mode::train>
constexpr result nas_gating(const result& in) {
    result m = in;
    m.set_out(nas_gating(m, Scope.view(), C, M, m.value()));
    return m;
}

} // namespace ctrec::layers
