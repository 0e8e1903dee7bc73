#pragma once
// MixedNASLayer (spec layers-trans-seq-multitask-nas.md 6.4; unpublished: the spec's
// reconstruction [RECON] on the published DiscreteGate kernel, P2 [OPS], and P4): a
// per-feature embedding-dimension search. Feature i has C_i candidate sizes
// s_{i,0..C_i-1}; candidate j is a fixed binary mask M_i[j] over the feature's W_i columns; a
// categorical architecture distribution per feature picks (or mixes) the masks.
//
//   constexpr layers::mixed_nas_config cfg{.segment_sizes = {{0, 2, 4}, {0, 4, 8}},
//                                          .embedding_share_mode = layers::nas_share_mode::left};
//   constexpr auto r = layers::mixed_nas<"mixed_nas", cfg>(x);          // x: (4 + 8), mode::train
//
// Input x (D) per example: N features of widths W_i (W_i = s_{i,C_i-1} in 'left' / 'diff' /
// 'random', sum_j s_{i,j} in 'none'), D = sum W_i; output y = x * s (D), s = [M_1^T w_1, ...]
// computed once per call and shared by the batch.
// Variable: "<scope>/arch_weights" (sum C_i), feature-major (feature i owns
// [sum_{i'<i} C_i', ... + C_i)); initializer RandomUniform(-0.001, 0.001), overridable.
//
// Masks (row 0 is all zeros in every mode: candidate 0 drops the feature; rows j >= 1, with
// S_j = s_0 + ... + s_j):
//   left   M[j, d] = 1[d < s_j]                 nested prefixes
//   diff   M[j, d] = 1[s_{j-1} <= d < s_j]      each choice owns the columns it adds
//   none   M[j, d] = 1[S_{j-1} <= d < S_j]      disjoint blocks
//   random M[j, d] = 1[u_d < s_j / s_{C-1}]     u_d ~ U[0, 1) per feature column, a constant of
//                                               the model given mask_seed (nested rows, row C-1
//                                               all ones)
// For sizes [2, 4, 6]: left [000000, 111100, 111111], diff [000000, 001100, 000011], none
// [0 x 12, 001111000000, 000000111111], random e.g. [000000, 110100, 111111] (the realisation
// with u_0, u_1, u_3 < 2/3 <= u_2, u_4, u_5).
//
// Gate w_i (C_i), p_i = softmax(alpha_i / tau) (P2 per feature, nas_gates.hpp):
//   weight_grad_mode  TRAIN forward                          EVAL / PREDICT
//   discrete          onehot(j*), j* ~ Categorical(p_i)      onehot(first argmax alpha_i)
//   gumbel            onehot(first argmax (alpha_i + G)/tau)  onehot(first argmax alpha_i)
//   none              p_i                                    p_i
// with straight-through gradients alphabar_{i,k} = wbar_{i,j*} q_{j*} (delta_{j*k} - q_k) / tau,
// q = p_i (discrete), softmax((alpha_i + G) / tau) (gumbel), and the softmax VJP for 'none';
// wbar_{i,j} = sum_d M_i[j, d] rho_d (P4's gradient; row 0 is zero so wbar_{i,0} = 0).
// In 'discrete' the sample follows softmax(alpha / tau), in 'gumbel' softmax(alpha) (spec).
//
// Decisions:
// - Categorical sampling ('discrete') is the Gumbel-max trick: j* = first argmax of
//   alpha_i / tau + G_i, exactly Categorical(p_i) in distribution (spec P5 allows it); the
//   indices differ from a CDF draw's. Both sampling modes read one shared Gumbel(0, 1) leaf
//   (sum C_i), stream "<scope>/noise_<seed>", a pure function of (io.seed, stream, element);
//   argmax ties go to the lowest index.
// - EVAL / PREDICT keep the estimator, evaluated at G = 0 (q = p_i); nothing trains there.
// - 'random' masks: u_d is the 24-bit uniform of the random leaf "mixed_nas/mask_<i>" (i the
//   feature index) seeded by mask_seed, element d: a function of (mask_seed, i, d) as the spec
//   says (not of the layer's scope: two layers with one mask_seed share masks). The
//   comparison is made against s_j / s_{C-1} rounded up to the 2^-24 grid, which is exactly
//   1[u24_d < s_j / s_{C-1}] for the 24-bit u, in float and in double programs (a double
//   program draws 53-bit u; the grid threshold makes its mask bit-identical): the masks are
//   constants of the model, identical after save / load given mask_seed, and
//   mixed_nas_mask_bit() / mixed_nas_generated_masks<C>() give them when the model is built (to
//   persist or compare; constant evaluation only). Injected u (threshold_mask_to_slot) is
//   compared with the same grid thresholds, so a u within 2^-24 above s_j / s_{C-1} still counts
//   as below it.
// - Explicit masks (the spec's `masks`, for exact import) override the generated ones: the
//   in-place functions take them as a span of 0 / 1 bytes, the concatenation over features of
//   the row-major C_i x W_i matrices (widths per the share mode); the facade takes a constexpr
//   object by reference (std::array<std::uint8_t, n>).
// - segment_sizes is a list of lists: feature i's candidates in segment_sizes[i] (at most
//   nas_max_choices, at most nas_max_segments features; a list ends at its first unset entry).
//   Sizes must be non-decreasing in 'left', 'diff', 'random' (their width is the last size);
//   'none' takes any sizes. A feature of width 0 has no columns (its logits remain).
//   segment_names name diagnostics only: not in the configuration.
// - mode defaults to mode::train; `seed` (default 0) enters the noise stream's name.
// - Injected noise (spec 0.3.3): an optional unbatched (sum C_i) Gumbel value replaces the leaf.
// - q = softmax max-subtracted (the kernel: exp(min(v, 80)) normalised; equal unless v > 80).
// - arch_update_rate (P6) is not provided (a no-op at its default).
#include <array>
#include <span>

#include "ctrec/layers/nas_gates.hpp"

namespace ctrec::layers {

enum class nas_share_mode { none, left, diff, random };
enum class nas_weight_grad { discrete, gumbel, none };

struct mixed_nas_config {
    nas_size segment_sizes[nas_max_segments][nas_max_choices]{};  // candidate sizes per feature
    double temperature = 1.0;
    nas_share_mode embedding_share_mode = nas_share_mode::none;
    nas_weight_grad weight_grad_mode = nas_weight_grad::discrete;
    std::uint64_t mask_seed = 0;  // below 2^53
    init::spec initializer = init::RandomUniform{-0.001, 0.001};
    std::uint64_t seed = 0;
};

void ctrec_shape_error_mixed_nas_segment_sizes_must_be_lists_without_gaps();
void ctrec_shape_error_mixed_nas_sizes_must_be_non_decreasing_in_left_diff_and_random_modes();
void ctrec_shape_error_mixed_nas_mask_seed_must_be_below_2_pow_53();
void ctrec_shape_error_mixed_nas_explicit_masks_must_hold_sum_C_i_W_i_zeros_and_ones();

// The features' candidate sizes, choice counts and widths, checked.
struct mixed_nas_layout {
    std::size_t N = 0;                                      // features
    std::size_t C[nas_max_segments]{};                      // candidates per feature
    std::size_t size[nas_max_segments][nas_max_choices]{};  // s_{i,j}
    std::size_t W[nas_max_segments]{};                      // widths
    std::size_t D = 0, total_choices = 0, mask_bits = 0;    // sum W_i, sum C_i, sum C_i W_i
};
constexpr mixed_nas_layout mixed_nas_layout_of(const mixed_nas_config& c) {
    mixed_nas_layout l;
    while (l.N < nas_max_segments && c.segment_sizes[l.N][0].set()) ++l.N;
    for (std::size_t i = l.N; i < nas_max_segments; ++i)
        for (std::size_t j = 0; j < nas_max_choices; ++j)
            if (c.segment_sizes[i][j].set()) ctrec_shape_error_mixed_nas_segment_sizes_must_be_lists_without_gaps();
    for (std::size_t i = 0; i < l.N; ++i) {
        std::size_t n = 0;
        while (n < nas_max_choices && c.segment_sizes[i][n].set()) l.size[i][n] = c.segment_sizes[i][n].value(), ++n;
        for (std::size_t j = n; j < nas_max_choices; ++j)
            if (c.segment_sizes[i][j].set()) ctrec_shape_error_mixed_nas_segment_sizes_must_be_lists_without_gaps();
        l.C[i] = n;
        if (c.embedding_share_mode == nas_share_mode::none) {
            for (std::size_t j = 0; j < n; ++j) l.W[i] += l.size[i][j];
        } else {
            for (std::size_t j = 1; j < n; ++j)
                if (l.size[i][j] < l.size[i][j - 1]) ctrec_shape_error_mixed_nas_sizes_must_be_non_decreasing_in_left_diff_and_random_modes();
            l.W[i] = l.size[i][n - 1];
        }
        l.D += l.W[i];
        l.total_choices += n;
        l.mask_bits += n * l.W[i];
    }
    return l;
}

// The 'random' threshold of row j: s_j / s_max rounded up to the 2^-24 grid (row 0: 0).
constexpr double mixed_nas_random_threshold(std::size_t j, std::size_t s_j, std::size_t s_max) {
    if (j == 0 || s_max == 0) return 0.0;
    const std::uint64_t k = ((std::uint64_t(s_j) << 24) + s_max - 1) / s_max;  // ceil(2^24 s_j / s_max)
    return static_cast<double>(k) * 0x1p-24;
}
// The name of feature i's 'random' mask stream.
constexpr name_string mixed_nas_mask_stream(std::size_t i) { return name_string("mixed_nas/mask_") + i; }

// M_i[j, d] of the generated masks (not explicit ones), when the model is built.
constexpr bool mixed_nas_mask_bit(const mixed_nas_config& c, const mixed_nas_layout& l, std::size_t i, std::size_t j,
                                  std::size_t d) {
    if (j == 0) return false;
    const std::size_t* s = l.size[i];
    switch (c.embedding_share_mode) {
        case nas_share_mode::left: return d < s[j];
        case nas_share_mode::diff: return d >= s[j - 1] && d < s[j];
        case nas_share_mode::none: {
            std::size_t a = 0;
            for (std::size_t k = 0; k < j; ++k) a += s[k];
            return d >= a && d < a + s[j];
        }
        case nas_share_mode::random: {
            const std::uint64_t m = ctrec::detail::random_bits(c.mask_seed, stream_hash(mixed_nas_mask_stream(i).view()),
                                                               shared_example, d) >> 40;  // the 24-bit uniform
            return static_cast<double>(m) * 0x1p-24 < mixed_nas_random_threshold(j, s[j], s[l.C[i] - 1]);
        }
    }
    return false;
}
constexpr bool mixed_nas_mask_bit(const mixed_nas_config& c, std::size_t i, std::size_t j, std::size_t d) {
    return mixed_nas_mask_bit(c, mixed_nas_layout_of(c), i, j, d);
}

// Every generated mask of configuration C, as the explicit `masks` argument takes them (the
// concatenation over features of the row-major C_i x W_i matrices): to persist or inspect them.
template <mixed_nas_config C>
constexpr auto mixed_nas_generated_masks() {
    constexpr mixed_nas_layout l = mixed_nas_layout_of(C);
    std::array<std::uint8_t, l.mask_bits> bits{};
    std::size_t k = 0;
    for (std::size_t i = 0; i < l.N; ++i)
        for (std::size_t j = 0; j < l.C[i]; ++j)
            for (std::size_t d = 0; d < l.W[i]; ++d) bits[k++] = mixed_nas_mask_bit(C, l, i, j, d) ? 1 : 0;
    return bits;
}

constexpr nas::nas_values mixed_nas_values(result& m, const name_string& s, const mixed_nas_config& c, mode M, val x,
                                           std::span<const std::uint8_t> masks = {}, val noise = {}) {
    const mixed_nas_layout l = mixed_nas_layout_of(c);
    nas::detail::check_input(x, l.N, l.D);
    if (!(c.temperature > 0.0)) ctrec_shape_error_nas_layer_temperature_must_be_positive();
    if (c.mask_seed >= (std::uint64_t(1) << 53)) ctrec_shape_error_mixed_nas_mask_seed_must_be_below_2_pow_53();
    const bool explicit_masks = !masks.empty();
    if (explicit_masks) {
        if (masks.size() != l.mask_bits) ctrec_shape_error_mixed_nas_explicit_masks_must_hold_sum_C_i_W_i_zeros_and_ones();
        for (std::uint8_t b : masks)
            if (b > 1) ctrec_shape_error_mixed_nas_explicit_masks_must_hold_sum_C_i_W_i_zeros_and_ones();
    }
    const double tau = c.temperature;
    const std::size_t CT = l.total_choices;
    const val arch = m.var(scoped(s, "arch_weights").view(), dims_of({CT}), c.initializer);
    const bool noisy = M == mode::train && c.weight_grad_mode != nas_weight_grad::none;
    const val G = noisy ? nas::detail::noise_leaf(m, s, c.seed, CT, random_kind::gumbel, noise) : val{};
    val scales[nas_max_segments]{}, gates[nas_max_segments]{}, probs[nas_max_segments]{};
    std::size_t n_scales = 0, off = 0, bit_off = 0;
    for (std::size_t i = 0; i < l.N; ++i) {
        const std::size_t C = l.C[i], W = l.W[i];
        const val a = C == CT ? arch : slice(arch, 0, off, off + C);
        const val gi = !G.g ? G : C == CT ? G : slice(G, 0, off, off + C);
        const val p = softmax(a / tau, 0);
        val w = p;
        if (c.weight_grad_mode != nas_weight_grad::none)
            w = nas::discrete_gate(a, gi, {true, c.weight_grad_mode == nas_weight_grad::gumbel, tau}).out;
        gates[i] = w, probs[i] = p;
        if (W > 0) {
            if (explicit_masks) {
                scales[n_scales++] = nas::mask_to_slot(w, W, [&](std::size_t j, std::size_t d) { return masks[bit_off + j * W + d] != 0; });
            } else if (c.embedding_share_mode == nas_share_mode::random) {
                double thr[nas_max_choices]{};
                for (std::size_t j = 0; j < C; ++j) thr[j] = mixed_nas_random_threshold(j, l.size[i][j], l.size[i][C - 1]);
                const val u = make_random(m.g, mixed_nas_mask_stream(i).view(), dims_of({W}), random_kind::uniform, true,
                                          static_cast<std::int64_t>(c.mask_seed));
                scales[n_scales++] = nas::threshold_mask_to_slot(w, u, thr);
            } else {
                scales[n_scales++] = nas::mask_to_slot(w, W, [&](std::size_t j, std::size_t d) { return mixed_nas_mask_bit(c, l, i, j, d); });
            }
        }
        off += C;
        bit_off += C * W;
    }
    const val sc = n_scales == 1 ? scales[0] : concat(0, scales, n_scales);
    const val gate = l.N == 1 ? gates[0] : concat(0, gates, l.N);
    const val prob = l.N == 1 ? probs[0] : concat(0, probs, l.N);
    return {x * sc, sc, gate, prob};
}
constexpr val mixed_nas(result& m, const name_string& s, const mixed_nas_config& c, mode M, val x,
                        std::span<const std::uint8_t> masks = {}, val noise = {}) {
    return mixed_nas_values(m, s, c, M, x, masks, noise).out;
}

template <fixed_string Scope, mixed_nas_config C, mode M = mode::train>
constexpr result mixed_nas(const result& in) {
    result m = in;
    m.set_out(mixed_nas(m, Scope.view(), C, M, m.value()));
    return m;
}
// With explicit masks: Masks a constexpr object holding the sum C_i W_i bytes (std::array).
template <fixed_string Scope, mixed_nas_config C, mode M, const auto& Masks>
constexpr result mixed_nas(const result& in) {
    result m = in;
    m.set_out(mixed_nas(m, Scope.view(), C, M, m.value(), std::span<const std::uint8_t>(Masks.data(), Masks.size())));
    return m;
}

} // namespace ctrec::layers
