#pragma once
// The gate primitives of the sparse NAS layers (spec layers-trans-seq-multitask-nas.md 6.2) as
// in-place graph builders on `val`s: P1 BernoulliGate, P2 DiscreteGate, P3 DiscreteTruncatedGate
// ([OPS]: published kernels), P4 BinaryMaskToSlotWeight ([RECON]). The layers (nas_gating.hpp,
// mixed_nas.hpp, simple_nas.hpp) apply one of them to their arch_weights; tests drive them with
// injected noise.
//
// Every gate is an unbatched value: computed once per call from parameters and noise that is
// shared by the batch (spec 6.1), never per example. Noise is a `val` argument (spec 0.3.3: a
// stochastic node accepts injected noise): the layers pass a shared random leaf
// (make_random(g, name, dims, kind, true)), tests may pass any unbatched value. An absent noise
// (a default `val{}`) gives the deterministic EVAL / PREDICT gate.
//
// Straight-through estimators. Forward values are the hard gates, exactly 0 or 1; the derivative
// is attached through d = alpha - sg(alpha), which is exactly 0 forward (alpha is read twice
// from the same buffer) and has derivative 1:
//   P1:  out = b + sg(D) * d                                  d out_i / d alpha_i = D_i
//   P2/P3: out = h + h * sg(q) * (d - <sg(q), d>) / tau       the softmax Jacobian row of q at
//        the selected entries: d out_j / d alpha_k = h_j q_j (delta_jk - q_k) / tau
// The second form has the derivative of the usual h + h * (q - sg(q)) with respect to alpha
// (none with respect to injected noise), but its forward value is h exactly whatever rounding
// two evaluations of q would see: its correction term is a multiple of d = 0.
//
// Decisions (the kernels' own numerics vs. ctrec's):
// - q = softmax(v) is computed max-subtracted (softmax in val.hpp); the kernel normalises
//   exp(min(v, 80)) in double. The two differ only when some v_j > 80 (the kernel then ties
//   those entries at exp(80)).
// - P2 with use_gumbel: j* = first argmax of v = (alpha + G) / tau; the kernel takes the first
//   argmax of exp(min(v, 80)): the same index unless two entries exceed 80 or exp rounds two
//   distinct v's to one float.
// - P2 without Gumbel (the kernel draws j* ~ Categorical(q) by a CDF walk): j* = first argmax of
//   alpha / tau + G with G ~ Gumbel(0, 1), the Gumbel-max trick (spec P5 allows it). The
//   distribution is exactly Categorical(softmax(alpha / tau)); the indices drawn differ from a
//   CDF draw's for the same uniforms.
// - Argmax ties go to the lowest index (spec 6.4): h_j = 1 iff no l "beats" j, l beating j when
//   key_l > key_j, or key_l = key_j and l < j: pairwise [C, C] comparisons, no sort.
// - P3's knee without a sort, see truncated_gate.
// - P5 (SegmentDiscreteGate) is not built: the layers use P2 per segment (spec 6.2 allows it).
// - P6 (NasArchWeight) is not built (optional, no-op at its default update rate 1).
#include <cstdint>

#include "ctrec/core/random.hpp"
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

// One entry of a NAS size list in a configuration: an entry left out (zero-initialised) is
// unset and ends the list, so a size may be 0 (a "drop" candidate). Stored as value + 1 so
// that unused entries are zero bits (cheap in template arguments).
struct nas_size {
    std::size_t v1 = 0;
    constexpr nas_size() = default;
    constexpr nas_size(std::size_t v) : v1(v + 1) {}  // NOLINT: implicit, {8, 8, 4} in configurations
    constexpr bool set() const { return v1 != 0; }
    constexpr std::size_t value() const { return v1 - 1; }
};
inline constexpr std::size_t nas_max_segments = 64;
inline constexpr std::size_t nas_max_choices = 8;

// P1's surrogate derivative (ste_type): none: pi (1 - pi) [/ tau with use_logistic];
// softplus: sp^(alpha); clip: min(sp^(alpha), 1).
enum class nas_ste { none, softplus, clip };

void ctrec_shape_error_nas_gate_logits_must_be_an_unbatched_vector();
void ctrec_shape_error_nas_gate_noise_must_be_unbatched_and_shaped_like_the_logits();
void ctrec_shape_error_nas_mask_to_slot_supports_at_most_64_rows();
void ctrec_shape_error_nas_segment_sizes_must_be_a_list_without_gaps_of_at_most_64_entries();
void ctrec_shape_error_nas_layer_needs_at_least_one_segment_and_one_column();
void ctrec_shape_error_nas_layer_input_must_be_batched_B_by_D_with_D_the_sum_of_the_segment_widths();
void ctrec_shape_error_nas_layer_temperature_must_be_positive();

namespace nas {

// A gate and the probabilities it was drawn from (diagnostics: spec 6.1).
struct gate {
    val out;   // the gate, forward exactly 0 / 1 (P1-P3 hard) or q (P2 soft), with its estimator
    val prob;  // P1: pi; P2 / P3: q (full length C)
};

namespace detail {
constexpr void check_logits(val alpha, val noise) {
    if (alpha.batched() || alpha.rank() != 1) ctrec_shape_error_nas_gate_logits_must_be_an_unbatched_vector();
    if (noise.g && (noise.batched() || !(noise.shape() == alpha.shape())))
        ctrec_shape_error_nas_gate_noise_must_be_unbatched_and_shaped_like_the_logits();
}
constexpr val lit(graph& g, double v) { return constant(g, v); }
} // namespace detail

// sigma^ and sp^ of the kernels: 1 / x above 80, 0 below -80, else sigmoid / ln(1 + e^x).
constexpr val clamped_sigmoid(val x) {
    graph& g = *x.g;
    return where(greater(x, 80.0), detail::lit(g, 1.0), where(greater(detail::lit(g, -80.0), x), detail::lit(g, 0.0), sigmoid(x)));
}
constexpr val clamped_softplus(val x) {
    graph& g = *x.g;
    const val sp = where(greater(x, 0.0), x + log1p(exp(-maximum(x, 0.0))), log1p(exp(minimum(x, 0.0))));
    return where(greater(x, 80.0), x, where(greater(detail::lit(g, -80.0), x), detail::lit(g, 0.0), sp));
}

// 0, 1, ..., n - 1 along `axis` of an unbatched (n, 1) or (1, n) matrix (ctrec has no
// constant-tensor leaf: constant pieces, concatenated).
constexpr val iota(graph& g, std::size_t n, std::size_t axis) {
    val parts[nas_max_segments * nas_max_choices]{};
    for (std::size_t i = 0; i < n; ++i) parts[i] = constant(g, static_cast<double>(i), dims_of({1, 1}));
    return n == 1 ? parts[0] : concat(axis, parts, n);
}

// One-hot (C) of the first maximum of key (C): h_j = 1 iff no l beats j (key_l > key_j, or
// key_l = key_j and l < j). No derivative (comparisons). key must not be a random leaf itself
// (it is reshaped; a view of a random leaf has no buffer on the CPU backend).
constexpr val first_argmax_onehot(val key) {
    graph& g = *key.g;
    const std::size_t C = key.dim(0);
    if (C == 1) return constant(g, 1.0, dims_of({1}));
    const val lower = greater(iota(g, C, 0), iota(g, C, 1));  // [j, l] = 1[l < j]
    const val kj = reshape(key, dims_of({C, 1})), kl = reshape(key, dims_of({1, C}));
    const val beats = where(lower, greater_equal(kl, kj), greater(kl, kj));  // [j, l]: l beats j
    return stop_gradient(greater(detail::lit(g, 0.5), sum(beats, {1})));
}

// The straight-through tangent of q = softmax(v), v = (alpha + noise) / tau: with q held
// constant, sg(q) * (d - <sg(q), d>) / tau, d = alpha - sg(alpha). Exactly 0 forward; its
// derivative is the softmax Jacobian q_j (delta_jk - q_k) / tau.
constexpr val softmax_tangent(val q, val alpha, double tau) {
    const val qs = stop_gradient(q), d = alpha - stop_gradient(alpha);
    return qs * (d - sum(qs * d)) / tau;
}

// ---- P1 BernoulliGate ------------------------------------------------------------------------------
struct bernoulli_config {
    nas_ste ste_type = nas_ste::none;
    bool use_logistic = false;
    double tau = 1.0;  // only with use_logistic
};
// TRAIN: noise = u ~ U(0, 1) (open uniform) without use_logistic: pi = sigma^(alpha),
// b = 1[u <= pi]; with use_logistic noise = ln u - ln(1 - u): pi = sigma^((noise + alpha) / tau),
// b = 1[pi >= 0.5]. No noise (EVAL / PREDICT, spec 6.3.5): b = 1[alpha >= 0], and pi (for the
// estimator) = sigma^(alpha), resp. sigma^(alpha / tau): the noisy formulas at the noise's median.
// out = b + sg(D) * (alpha - sg(alpha)), D per ste_type.
constexpr gate bernoulli_gate(val alpha, val noise, const bernoulli_config& c) {
    detail::check_logits(alpha, noise);
    val pi{}, b{};
    if (c.use_logistic) pi = clamped_sigmoid(noise.g ? (noise + alpha) / c.tau : alpha / c.tau);
    else pi = clamped_sigmoid(alpha);
    if (!noise.g) b = greater_equal(alpha, 0.0);
    else if (c.use_logistic) b = greater_equal(pi, 0.5);
    else b = greater_equal(pi, noise);
    val D{};
    switch (c.ste_type) {
        case nas_ste::none: D = c.use_logistic ? pi * (1.0 - pi) / c.tau : pi * (1.0 - pi); break;
        case nas_ste::softplus: D = clamped_softplus(alpha); break;
        case nas_ste::clip: D = minimum(clamped_softplus(alpha), 1.0); break;
    }
    return {stop_gradient(b) + stop_gradient(D) * (alpha - stop_gradient(alpha)), pi};
}

// ---- P2 DiscreteGate ------------------------------------------------------------------------------
struct discrete_config {
    bool one_hot = true;
    bool use_gumbel = false;
    double tau = 1.0;
};
// noise: Gumbel(0, 1) draws (C), or absent (EVAL / PREDICT: no noise, j* = first argmax alpha).
//   q = softmax((alpha + G) / tau) with use_gumbel and noise, else softmax(alpha / tau)
//   soft: out = q (its own softmax derivative)
//   one-hot: j* = first argmax of (alpha + G) / tau (use_gumbel), of alpha / tau + G (Gumbel-max
//   sample of Categorical(q)), of alpha (no noise); out = h + h * softmax_tangent(q).
constexpr gate discrete_gate(val alpha, val noise, const discrete_config& c) {
    detail::check_logits(alpha, noise);
    const val v = c.use_gumbel && noise.g ? (alpha + noise) / c.tau : alpha / c.tau;
    const val q = softmax(v, 0);
    if (!c.one_hot) return {q, q};
    const val key = !noise.g ? alpha : c.use_gumbel ? v : v + noise;
    const val h = first_argmax_onehot(stop_gradient(key));
    return {h + h * softmax_tangent(q, alpha, c.tau), q};
}

// ---- P3 DiscreteTruncatedGate ---------------------------------------------------------------------
struct truncated_config {
    double threshold = 0.9;      // theta > 0
    bool drop_first_dim = true;  // out = gate[1:]
    bool use_gumbel = true;
    double tau = 1.5;
};
// q as P2 (Gumbel noise when use_gumbel and noise is given). The kernel sorts q descending,
// accumulates c_m in float32 and keeps gate_j = 1[q_j >= pivot], pivot = pi_m for the smallest
// m with c_m >= theta (0, i.e. everything, if none). Here, without a sort:
//   gate_j = 1[S_j < theta],  S_j = sum_{l: q_l > q_j} q_l      (pairwise [C, C] comparisons)
// Proof (theta > 0, q >= 0). If q_j >= pivot, the entries strictly above q_j are strictly above
// the pivot, so they are the first k < m sorted entries and S_j = c_k < theta (m is the
// smallest index reaching theta; c_0 = 0 < theta). If q_j < pivot, the first m sorted entries
// (all >= pivot > q_j) are in S_j, so S_j >= c_m >= theta. If no prefix reaches theta, every
// S_j <= c_C < theta: all selected, as pivot = 0 gives. Ties at the pivot select all tied
// entries (their S_j are equal). The kernel's float32 running sum in sorted order can differ
// from this sum (in T, another order) only when a partial sum lies within rounding of theta.
// out_i = gate_k(i) + gate_k(i) * softmax_tangent(q)_k(i), k(i) = i + 1 with drop_first_dim:
// the gradient of sum over selected i of gbar_i q_k(i) (spec P3 VJP).
constexpr gate truncated_gate(val alpha, val noise, const truncated_config& c) {
    detail::check_logits(alpha, noise);
    graph& g = *alpha.g;
    const std::size_t C = alpha.dim(0);
    const val v = c.use_gumbel && noise.g ? (alpha + noise) / c.tau : alpha / c.tau;
    const val q = softmax(v, 0), qs = stop_gradient(q);
    const val qj = reshape(qs, dims_of({C, 1})), ql = reshape(qs, dims_of({1, C}));
    const val above = sum(ql * greater(ql, qj), {1});  // S_j
    const val sel = stop_gradient(greater(constant(g, c.threshold), above));
    const val out = sel + sel * softmax_tangent(q, alpha, c.tau);
    return {c.drop_first_dim ? slice(out, 0, 1, C) : out, q};
}

// ---- P4 BinaryMaskToSlotWeight ---------------------------------------------------------------------
namespace detail {
// sum_{j in rows} w_j as a (1) vector, rows a bit set; contiguous runs of rows as one slice sum
constexpr val rows_sum(val w, std::uint64_t rows) {
    val total{};
    for (std::size_t a = 0; a < 64;) {
        if (!((rows >> a) & 1u)) {
            ++a;
            continue;
        }
        std::size_t b = a + 1;
        while (b < 64 && ((rows >> b) & 1u)) ++b;
        const val t = b - a == 1 ? slice(w, 0, a, b) : reshape(sum(slice(w, 0, a, b)), dims_of({1}));
        total = total.g ? total + t : t;
        a = b;
    }
    return total;
}
} // namespace detail

// s[d] = sum_j w_j M[j, d], d < W, for a binary mask known when the model is built:
// bit(j, d) -> bool. Built as consecutive column runs of equal mask columns, each run the sum
// of the rows' w entries broadcast over it (zero runs a constant 0): for contiguous-row masks
// (a segment expansion, 'left' / 'diff' / 'none') this is a few slices, not a [C, W] product.
// The derivative is P4's gradient op: wbar_j = sum_d M[j, d] sbar_d. W > 0, C <= 64.
template <class Bit>
constexpr val mask_to_slot(val w, std::size_t W, Bit bit) {
    graph& g = *w.g;
    const std::size_t C = w.dim(0);
    if (C > 64) ctrec_shape_error_nas_mask_to_slot_supports_at_most_64_rows();
    auto column = [&](std::size_t d) {
        std::uint64_t p = 0;
        for (std::size_t j = 0; j < C; ++j)
            if (bit(j, d)) p |= std::uint64_t(1) << j;
        return p;
    };
    constexpr std::size_t cap = 64;
    val pieces[cap]{};
    std::size_t n = 0;
    for (std::size_t d = 0; d < W;) {
        const std::uint64_t p = column(d);
        std::size_t e = d + 1;
        while (e < W && column(e) == p) ++e;
        const std::size_t run = e - d;
        val piece = p == 0 ? constant(g, 0.0, dims_of({run})) : detail::rows_sum(w, p);
        if (p != 0 && run > 1) piece = broadcast_to(piece, dims_of({run}));
        if (n == cap) pieces[0] = concat(0, pieces, n), n = 1;  // long patterns: concat in chunks
        pieces[n++] = piece;
        d = e;
    }
    return n == 1 ? pieces[0] : concat(0, pieces, n);
}

// s[d] = sum_j w_j 1[u_d < r_j] for a mask drawn in the graph: u (W) an unbatched value (a
// random leaf is read directly, never through a view), r (C) thresholds known when the model
// is built. One [C, W] comparison and one (C) x (C, W) product.
constexpr val threshold_mask_to_slot(val w, val u, const double* r) {
    graph& g = *w.g;
    const std::size_t C = w.dim(0);
    val parts[nas_max_choices]{};
    for (std::size_t j = 0; j < C; ++j) parts[j] = constant(g, r[j], dims_of({1, 1}));
    const val thr = C == 1 ? parts[0] : concat(0, parts, C);  // (C, 1)
    return matmul(w, stop_gradient(greater(thr, u)));           // (C, 1) vs (W): M[j, d] = 1[u_d < r_j]
}

// The scale of columns laid out as segments: s[d] = gate_i for d in segment i (widths W_i,
// zero widths allowed, at least one column): P4 with the segment-membership mask, built
// directly (one broadcast slice per segment).
constexpr val segment_scale(val gate, const std::size_t* widths, std::size_t N) {
    val pieces[nas_max_segments]{};
    std::size_t n = 0;
    for (std::size_t i = 0; i < N; ++i) {
        if (widths[i] == 0) continue;
        const val gi = slice(gate, 0, i, i + 1);
        pieces[n++] = widths[i] == 1 ? gi : broadcast_to(gi, dims_of({widths[i]}));
    }
    return n == 1 ? pieces[0] : concat(0, pieces, n);
}

// ---- what the layers share ----------------------------------------------------------------------

// A NAS layer's output and what it computed once per call (diagnostics, spec 6.1).
struct nas_values {
    val out;    // y = x * scale, (D) per example
    val scale;  // s (D), unbatched
    val gate;   // the gates with their estimators: NASGating / SimpleNas (N), MixedNAS (sum C_i)
    val prob;   // the probabilities: pi (N), q (C), p (sum C_i)
};

namespace detail {
// The set entries of a size list (a list ends at its first unset entry; a set entry after it is
// an error); returns their number.
constexpr std::size_t read_sizes(const nas_size* list, std::size_t cap, std::size_t* out) {
    std::size_t n = 0;
    while (n < cap && list[n].set()) out[n] = list[n].value(), ++n;
    for (std::size_t i = n; i < cap; ++i)
        if (list[i].set()) ctrec_shape_error_nas_segment_sizes_must_be_a_list_without_gaps_of_at_most_64_entries();
    return n;
}
constexpr void check_input(val x, std::size_t N, std::size_t D) {
    if (N == 0 || D == 0) ctrec_shape_error_nas_layer_needs_at_least_one_segment_and_one_column();
    if (!x.batched() || x.rank() != 1 || x.dim(0) != D)
        ctrec_shape_error_nas_layer_input_must_be_batched_B_by_D_with_D_the_sum_of_the_segment_widths();
}
// The layer's gate noise: injected, or one shared draw per call on stream "<scope>/noise_<seed>".
constexpr val noise_leaf(result& m, const name_string& s, std::uint64_t seed, std::size_t n, random_kind kind, val injected) {
    if (injected.g) return injected;
    return make_random(m.g, scoped(s, (name_string("noise_") + static_cast<std::size_t>(seed)).view()).view(), dims_of({n}), kind, true);
}
} // namespace detail

} // namespace nas
} // namespace ctrec::layers
