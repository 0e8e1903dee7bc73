#pragma once
// SimpleNasLayer and SimpleNasV2Layer (spec layers-trans-seq-multitask-nas.md 6.5, 6.6;
// unpublished: the spec's reconstruction [RECON] on the published DiscreteTruncatedGate
// kernel, P3 [OPS]): feature selection by a cumulative-probability threshold - keep the
// fewest, most probable features whose probabilities reach `threshold` (the knee), with a
// straight-through gradient through the selected probabilities.
//
//   constexpr auto r = layers::simple_nas<"simple_nas", {.segment_sizes = {8, 8, 4}}>(x);     // x: (20)
//   constexpr auto v = layers::simple_nas_v2<"simple_nas_v2", {.segment_sizes = {8, 8, 4}}>(x);
//
// Input x (D) per example, N segments of widths W_i (segment_sizes); output y = x * s (D),
// s_d = g_i(d), computed once per call and shared by the batch.
// Variable "<scope>/arch_weights": V1 (N + 1), entry 0 a null slot that competes for
// probability mass but gates nothing, entry i + 1 <-> feature i (P3 with drop_first_dim);
// V2 (N), entry i <-> feature i (no null slot). Initializer RandomUniform(-0.001, 0.001).
//   q = softmax((alpha + G) / tau), G ~ Gumbel(0, 1) (C draws per call on the shared stream
//     "<scope>/noise_<seed>") in TRAIN with use_gumbel; q = softmax(alpha / tau) otherwise
//     (EVAL / PREDICT, or use_gumbel = false: then deterministic in TRAIN too)
//   gate_j = 1[sum_{l: q_l > q_j} q_l < threshold] (= 1[q_j >= pivot] of the kernel's sorted
//     float32 prefix sums; proof and rounding note at nas::truncated_gate)
//   g_i = gate_{i+1} (V1), gate_i (V2);  s_d = g_i(d);  y = x * s
// Gradients: xbar = ybar * s; gbar_i = sum over feature i of rho_d; alphabar_k =
// (1/tau) sum_{i selected} gbar_i q_k(i) (delta_k(i)k - q_k) (P3's VJP, through the perturbed q
// when noise was drawn); the forward is exactly 0 / 1.
//
// Decisions:
// - threshold must be > 0 (with theta <= 0 the kernel selects the maximum only; the knee rule
//   needs c_0 = 0 < theta): a compile-time error. threshold > 1 (or one never reached in
//   float32) selects every feature, as the kernel does.
// - EVAL / PREDICT keep the estimator with G = 0 (nothing trains there).
// - segment_sizes: one width per feature (0 allowed); no segment_names (diagnostics only).
// - mode defaults to mode::train; `seed` (default 0) enters the noise stream's name.
// - Injected noise (spec 0.3.3): an optional unbatched (C) Gumbel value replaces the leaf.
// - q = softmax max-subtracted (the kernel: exp(min(v, 80)) normalised; equal unless v > 80).
#include "ctrec/layers/nas_gates.hpp"

namespace ctrec::layers {

struct simple_nas_config {
    nas_size segment_sizes[nas_max_segments]{};  // W_i
    double threshold = 0.9;
    double temperature = 1.5;
    bool use_gumbel = true;
    init::spec initializer = init::RandomUniform{-0.001, 0.001};
    std::uint64_t seed = 0;
};

void ctrec_shape_error_simple_nas_threshold_must_be_positive();

namespace detail {
constexpr nas::nas_values simple_nas_any(result& m, const name_string& s, const simple_nas_config& c, mode M, val x,
                                         val noise, bool null_slot) {
    std::size_t W[nas_max_segments]{};
    const std::size_t N = nas::detail::read_sizes(c.segment_sizes, nas_max_segments, W);
    std::size_t D = 0;
    for (std::size_t i = 0; i < N; ++i) D += W[i];
    nas::detail::check_input(x, N, D);
    if (!(c.temperature > 0.0)) ctrec_shape_error_nas_layer_temperature_must_be_positive();
    if (!(c.threshold > 0.0)) ctrec_shape_error_simple_nas_threshold_must_be_positive();
    const std::size_t C = N + (null_slot ? 1 : 0);
    const val alpha = m.var(scoped(s, "arch_weights").view(), dims_of({C}), c.initializer);
    const val G = M == mode::train && c.use_gumbel ? nas::detail::noise_leaf(m, s, c.seed, C, random_kind::gumbel, noise) : val{};
    const nas::gate g = nas::truncated_gate(alpha, G, {c.threshold, null_slot, c.use_gumbel, c.temperature});
    const val sc = nas::segment_scale(g.out, W, N);
    return {x * sc, sc, g.out, g.prob};
}
} // namespace detail

constexpr nas::nas_values simple_nas_values(result& m, const name_string& s, const simple_nas_config& c, mode M, val x, val noise = {}) {
    return detail::simple_nas_any(m, s, c, M, x, noise, true);
}
constexpr nas::nas_values simple_nas_v2_values(result& m, const name_string& s, const simple_nas_config& c, mode M, val x,
                                               val noise = {}) {
    return detail::simple_nas_any(m, s, c, M, x, noise, false);
}
constexpr val simple_nas(result& m, const name_string& s, const simple_nas_config& c, mode M, val x, val noise = {}) {
    return simple_nas_values(m, s, c, M, x, noise).out;
}
constexpr val simple_nas_v2(result& m, const name_string& s, const simple_nas_config& c, mode M, val x, val noise = {}) {
    return simple_nas_v2_values(m, s, c, M, x, noise).out;
}

template <fixed_string Scope, simple_nas_config C, mode M = mode::train>
constexpr result simple_nas(const result& in) {
    result m = in;
    m.set_out(simple_nas(m, Scope.view(), C, M, m.value()));
    return m;
}
template <fixed_string Scope, simple_nas_config C, mode M = mode::train>
constexpr result simple_nas_v2(const result& in) {
    result m = in;
    m.set_out(simple_nas_v2(m, Scope.view(), C, M, m.value()));
    return m;
}

} // namespace ctrec::layers
