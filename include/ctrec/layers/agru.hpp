#pragma once
// AGRUCell and its attention RNN drivers (spec layers-trans-seq-multitask-nas.md 2.1): a GRU
// cell whose update is gated by an external per-step attention score, run over a sequence.
//
//   constexpr auto r = layers::agru_rnn<"augru_cell", {.units = 8, .att_type = agru_att::augru}>(x, a);
//   x (T, I) and a (T) per example; std::get<0>(r.out) is (T, U) = [h_1 .. h_T],
//   std::get<1>(r.out) is (U) = h_T (the drivers' (outputs, final_state)).
//   agru_rnn<...>(x, a, mask) also takes a (T) mask (see below).
//
// Per step (reset gate applied before the candidate product, Monolith / TF-1 style):
//   [r | u] = sig([x, h] . gates/kernel + gates/bias)          r: first U columns, u: last U
//   c       = act([x, r * h] . candidate/kernel + candidate/bias)
//   AGRU:  h' = (1 - a) h + a c                                  (u computed, unused)
//   AUGRU: v = (1 - a) u, h' = v * h + (1 - v) * c                (Monolith's form, not the paper's)
// h_0 = 0; static_rnn_with_attention and dynamic_rnn_with_attention compute the same thing,
// so there is one driver (the dynamic one's scheduling arguments have no meaning here).
//
// Variables ("<Scope>/..."): gates/kernel (I + U, 2U), candidate/kernel (I + U, U)
// [initializer, default He-normal]; gates/bias (2U), candidate/bias (U) [Ones]; the
// regularizer applies to all four. Rows 0..I-1 of each kernel multiply x, rows I.. the state.
//
// How it runs: see Implementation below (the recurrence is unrolled; the slices of the kernels
// are parameter-only values, cached with the parameters).
//
// Decisions:
// - activation: None in the source means tanh (the default here). The recurrence kernels
//   support linear (none), relu, tanh and sigmoid; another activation is a compile error.
// - The cell without an attention score (h' = (1 - u) h + u c) is not provided: no ctrec
//   layer uses it, and both drivers always pass scores.
// - init_state is not supported (h_0 = 0), as in every use in Monolith's layers.
// - mask (ctrec addition, used by DIEN): a step is real when mask_t >= 1 (DIN's rule); a
//   padded step leaves the state unchanged, so its output row repeats h_{t-1}; its x_t and a_t
//   are never read (NaN or inf padding changes no output and no gradient). Without a mask
//   every step is processed, as in the source.
// - att_type: agru_att_of("AGRU") / ("augru") parse the source's case-insensitive strings.
//
// Implementation:
// The AGRU / AUGRU attention RNN (spec layers-trans-seq-multitask-nas.md 2.1) on the
// core, exactly as documented above (Monolith's reset-before
// cell and AUGRU form, h_0 = 0, variable names / shapes / creation order, He-normal kernels and
// Ones biases, the regularizer on all four, the mask rule mask_t >= 1, the candidate
// activations linear / relu / tanh / sigmoid; that header's comment is the specification).
//
//   rnn_vals o = layers::agru_rnn(m, "augru_cell", {.units = 8, .att_type = agru_att::augru}, x, a[, mask]);
//   o.outputs (T, U) = [h_1 .. h_T], o.final_state (U) = h_T
//   constexpr auto r = layers::agru_rnn<"augru_cell", cfg>(x, a[, mask]);  // r.out(), r.final_state()
//
// The recurrence is unrolled (no scan node on this core yet): T steps of a few nodes each; each
// variable is one param node shared by every step. As in the type core, the x rows of both
// kernels and both biases are one GEMM over all T steps before the recurrence, and each step
// does only the state products. Since h_0 = 0 the first step has none. AGRU does not use u, so
// its gate GEMMs compute r only (same value; the u half still gets its zero gradient).
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

enum class agru_att { agru, augru };
constexpr agru_att agru_att_of(std::string_view s) {
    auto eq = [&](std::string_view w) {
        if (s.size() != w.size()) return false;
        for (std::size_t i = 0; i < s.size(); ++i) {
            char ch = s[i];
            if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
            if (ch != w[i]) return false;
        }
        return true;
    };
    if (eq("AGRU")) return agru_att::agru;
    if (eq("AUGRU")) return agru_att::augru;
    throw error("ctrec: att_type must be 'AGRU' or 'AUGRU'");
}

struct agru_config {
    std::size_t units = 0;                        // U
    agru_att att_type = agru_att::agru;
    layers::activation activation = act_tanh;     // the source's None
    init::spec initializer = init::HeNormal{};     // both kernels
    layers::regularizer regularizer{};             // all four variables
};



void ctrec_shape_error_agru_units_must_be_positive();
void ctrec_shape_error_agru_x_must_be_a_batched_B_by_T_by_I();
void ctrec_shape_error_agru_scores_must_be_a_batched_B_by_T();
void ctrec_shape_error_agru_mask_must_be_a_batched_B_by_T();
void ctrec_shape_error_recurrent_activation_must_be_linear_relu_tanh_or_sigmoid();
void ctrec_error_sequence_too_long_for_the_graph_raise_CTREC_MAX_NODES();

// Every step costs several nodes, so no sequence longer than this fits a graph.
inline constexpr std::size_t max_rnn_steps = max_nodes / 8;

struct rnn_vals {
    val outputs, final_state;
};

// A result whose out() is the outputs (T, U), with the final state (U) beside it.
struct rnn_result : result {
    using result::result;
    std::uint32_t final_id = 0;
    constexpr expr final_state() const { return {g, final_id}; }
};

namespace detail {
// the activations a future scan node's kernels will support (linear, relu, tanh, sigmoid)
constexpr void check_recurrent_activation(const activation& A) {
    using W = act_which;
    if (!(A.w == W::none || A.w == W::linear || A.w == W::relu || A.w == W::tanh || A.w == W::sigmoid))
        ctrec_shape_error_recurrent_activation_must_be_linear_relu_tanh_or_sigmoid();
}
// row t of v (T, ...) as (1, ...)
constexpr val row(val v, std::size_t t) { return slice(v, 0, t, t + 1); }
} // namespace detail

constexpr rnn_vals agru_rnn(result& m, const name_string& s, const agru_config& c, val x, val a, val mask = {}) {
    if (c.units == 0) ctrec_shape_error_agru_units_must_be_positive();
    if (x.rank() != 2 || !x.batched()) ctrec_shape_error_agru_x_must_be_a_batched_B_by_T_by_I();
    const std::size_t T = x.dim(0), I = x.dim(1), U = c.units;
    if (a.rank() != 1 || a.dim(0) != T || !a.batched()) ctrec_shape_error_agru_scores_must_be_a_batched_B_by_T();
    if (mask.g && (mask.rank() != 1 || mask.dim(0) != T || !mask.batched())) ctrec_shape_error_agru_mask_must_be_a_batched_B_by_T();
    if (T > max_rnn_steps) ctrec_error_sequence_too_long_for_the_graph_raise_CTREC_MAX_NODES();
    detail::check_recurrent_activation(c.activation);
    const bool augru = c.att_type == agru_att::augru;
    const std::size_t G = augru ? 2 * U : U;  // gate columns used: [r | u], or r alone

    val Wg = m.var(scoped(s, "gates/kernel").view(), dims_of({I + U, 2 * U}), c.initializer);
    val bg = m.var(scoped(s, "gates/bias").view(), dims_of({2 * U}), init::Ones{});
    val Wc = m.var(scoped(s, "candidate/kernel").view(), dims_of({I + U, U}), c.initializer);
    val bc = m.var(scoped(s, "candidate/bias").view(), dims_of({U}), init::Ones{});
    add_penalty(m, c.regularizer, Wg);
    add_penalty(m, c.regularizer, bg);
    add_penalty(m, c.regularizer, Wc);
    add_penalty(m, c.regularizer, bc);

    // padded steps' inputs and scores are replaced by 0 before anything reads them: the select
    // that keeps the state passes them zero cotangent, but x^T 0 and 0 * (1 - a) are NaN for a
    // NaN or inf pad, and would reach the kernels' and the earlier states' gradients
    if (mask.g) {
        const val keep = greater_equal(mask, 1.0);
        x = where(reshape(keep, dims_of({T, 1})), x, 0.0);
        a = where(keep, a, 0.0);
    }

    // [x W_g[:I] + b_g | x W_c[:I] + b_c] for every step: one GEMM
    const val Wx = concat(1, {slice(slice(Wg, 0, 0, I), 1, 0, G), slice(Wc, 0, 0, I)});
    const val Xp = matmul(x, Wx) + concat(0, {slice(bg, 0, 0, G), bc});
    const val XG = slice(Xp, 1, 0, G), XC = slice(Xp, 1, G, G + U);
    const val Wgh = slice(slice(Wg, 0, I, I + U), 1, 0, G), Wch = slice(Wc, 0, I, I + U);
    const val real = mask.g ? greater_equal(mask, 1.0) : val{};

    val hs[max_rnn_steps]{};
    val h{};  // (1, U); h_0 = 0 is not built
    for (std::size_t t = 0; t < T; ++t) {
        const val at = detail::row(a, t);  // (1), broadcast over U
        val gates{}, cand{};
        if (t == 0) {
            if (augru) gates = sigmoid(detail::row(XG, t));
            cand = apply_activation(m, c.activation, s, detail::row(XC, t));
        } else {
            gates = sigmoid(detail::row(XG, t) + matmul(h, Wgh));
            const val r = slice(gates, 1, 0, U);
            cand = apply_activation(m, c.activation, s, detail::row(XC, t) + matmul(r * h, Wch));
        }
        val hn{};
        if (augru) {
            const val v = (1.0 - at) * slice(gates, 1, U, 2 * U);
            hn = t == 0 ? (1.0 - v) * cand : v * h + (1.0 - v) * cand;
        } else {
            hn = t == 0 ? at * cand : (1.0 - at) * h + at * cand;
        }
        if (mask.g) hn = t == 0 ? where(detail::row(real, t), hn, 0.0) : where(detail::row(real, t), hn, h);
        h = hs[t] = hn;
    }
    return {concat(0, hs, T), reshape(h, dims_of({U}))};
}

template <fixed_string Scope, agru_config C>
constexpr rnn_result agru_rnn(const expr& x, const expr& a) {
    rnn_result m(x);
    std::uint32_t ia = 0;
    join_into(m.g, a, ia);
    const rnn_vals o = agru_rnn(m, Scope.view(), C, m.value(), m.at(ia));
    m.set_out(o.outputs);
    m.final_id = o.final_state.id;
    return m;
}
template <fixed_string Scope, agru_config C>
constexpr rnn_result agru_rnn(const expr& x, const expr& a, const expr& mask) {
    rnn_result m(x);
    std::uint32_t ia = 0, im = 0;
    join_into(m.g, a, ia);
    join_into(m.g, mask, im);
    const rnn_vals o = agru_rnn(m, Scope.view(), C, m.value(), m.at(ia), m.at(im));
    m.set_out(o.outputs);
    m.final_id = o.final_state.id;
    return m;
}

} // namespace ctrec::layers
