#pragma once
// DIEN (spec layers-trans-seq-multitask-nas.md 2.3): interest extraction with a Keras GRU over
// the behaviour sequence, bilinear target attention over the GRU states, and interest
// evolution with an attention-gated GRU (AGRU / AUGRU, layers/agru.hpp); returns the final
// evolved state.
//
//   constexpr auto r = layers::dien<"dien", {.num_units = 10}>(q, k);        // q (U), k (T, E)
//   constexpr auto r = layers::dien<"dien", {.num_units = 10}>(q, k, mask);  // mask (T)
//   r.out is (U) per example.
//
// Per example:
//   GRU (Keras GRUCell, reset-after, gate order z, r, h), h_0 = 0, x_t = k[t]:
//     [x_z | x_r | x_h] = x_t W + b_in;  [g_z | g_r | g_h] = h_{t-1} U_rec + b_rec
//     z = sig(x_z + g_z); r = sig(x_r + g_r); hh = act(x_h + r * g_h); h_t = z h_{t-1} + (1 - z) hh
//   attention: v = W_att q; s_t = h_t . v; alpha = softmax_t(s)
//   evolution: AGRU (or AUGRU) over h_1..h_T with scores alpha, e_0 = 0; out = e_T.
//
// Variables ("<Scope>/..."): gru_cell/kernel (E, 3U) [initializer, regularizer],
// gru_cell/recurrent_kernel (U, 3U) [Orthogonal, not regularised], gru_cell/bias (2, 3U)
// [zeros, not regularised; row 0 input bias, row 1 recurrent bias]; augru_cell/gates/kernel
// (2U, 2U), augru_cell/gates/bias (2U) [Ones], augru_cell/candidate/kernel (2U, U),
// augru_cell/candidate/bias (U) [Ones] (kernels: initializer; all four regularised);
// attention_weight (U, U) [initializer, regularizer]. Checkpoints usually hold the GRU under
// "dien/rnn/gru_cell/..." (TF-1 dynamic_rnn scope): importers match by suffix.
//
// How it runs: the GRU and the AGRU are unrolled over T (see Implementation below); the two
// recurrences are separated by the softmax, which needs every h_t.
//
// Decisions:
// - att_type (spec 7.1): honoured by default (AUGRU runs the AUGRU update of 2.1 with the same
//   variables); monolith_compat always uses AGRU, as the source does.
// - mask (spec 7.2; ctrec default): mask (T) numeric, a step is real when mask_t >= 1 (DIN's
//   rule). A padded step leaves both recurrent states unchanged and gets attention weight 0:
//   the softmax runs over the real steps only (max-shifted over them), so padding values,
//   wherever the padded steps are, never change the output or the parameter gradients, and
//   padded keys get zero gradient (NaN or inf padding included: padded keys are replaced by 0
//   before the GRU reads them). If no step is real, every weight is 0 and the output is 0.
//   monolith_compat ignores the mask, as the source does (padded steps run through both
//   recurrences and the softmax).
// - acknowledge_compat_overrides: monolith_compat overrides two things the caller states, a mask
//   (dropped) and att_type = augru (AGRU runs). Either combination is a compile-time error
//   naming it unless acknowledge_compat_overrides = true says the source's behaviour is meant
//   (an error, not a warning: a model that silently loses its mask scores padding).
// - activation (default relu) is the candidate activation of both cells; the recurrence
//   kernels support linear, relu, tanh and sigmoid. The gate activation is sigmoid.
// - initializer: He-uniform (the source passes the class, spec 7.3).
// - The query width must equal num_units (a compile error otherwise, naming the shapes).
// - The attention is written as the spec states it (v = W_att q once per example, then
//   T dot products), which is already the cheap order.
//
// Implementation:
// DIEN (spec layers-trans-seq-multitask-nas.md 2.3), exactly as
// ctrec/layers/dien.hpp documents it (Keras reset-after GRU, bilinear attention, AGRU / AUGRU
// evolution as "<scope>/augru_cell"; variable names, shapes, creation order, initializers and
// regularizer coverage; att_type honoured unless monolith_compat; the mask rule mask_t >= 1 with
// padded steps keeping both states and weighing 0 in a softmax over the real steps, all weights
// 0 when none is real; monolith_compat ignores the mask; that header's comment is the
// specification of this one).
//
//   val y = layers::dien(m, "dien", {.num_units = 10}, q, k[, mask]);   // q (U), k (T, E), mask (T)
//   constexpr auto r = layers::dien<"dien", {.num_units = 10}>(q, k[, mask]);   // r.out() (U)
//
// Both recurrences are unrolled (agru.hpp says why and how); k W for all steps is one GEMM
// before the GRU, as the AGRU's x projections are.
#include "ctrec/layers/agru.hpp"

namespace ctrec::layers {

struct dien_config {
    std::size_t num_units = 0;                     // U
    agru_att att_type = agru_att::agru;            // honoured unless monolith_compat (augru with it: see below)
    layers::activation activation = act_relu;      // candidate activation of the GRU and the AGRU
    init::spec initializer = init::HeUniform{};     // GRU kernel, AGRU kernels, attention_weight
    layers::regularizer regularizer{};              // GRU kernel, all AGRU variables, attention_weight
    bool monolith_compat = false;                  // ignore the mask and att_type, as the source
    // monolith_compat with a mask or with att_type = augru is a compile error unless this is set:
    // the mask is then dropped and AGRU runs (ctrec_error_dien_monolith_compat_ignores_...)
    bool acknowledge_compat_overrides = false;
};



void ctrec_shape_error_dien_num_units_must_be_positive();
void ctrec_shape_error_dien_q_must_be_a_batched_B_by_U();
void ctrec_shape_error_dien_k_must_be_a_batched_B_by_T_by_E();
void ctrec_shape_error_dien_the_query_width_must_equal_num_units();
void ctrec_shape_error_dien_mask_must_be_a_batched_B_by_T();
void ctrec_error_dien_monolith_compat_ignores_the_mask_set_acknowledge_compat_overrides();
void ctrec_error_dien_monolith_compat_ignores_att_type_augru_set_acknowledge_compat_overrides();

namespace detail {
// softmax over the real steps (real != 0) of s (T); weight 0 at padded steps, all 0 if none
constexpr val masked_softmax(val s, val real) {
    const dims kd = keepdims(s.shape(), 1u);
    const val mx = reshape(stop_gradient(max(where(real, s, -3.0e38), {0})), kd);
    const val e = where(real, exp(where(real, s - mx, 0.0)), 0.0);
    const val den = reshape(sum(e, {0}), kd);
    return e / where(greater(den, 0.0), den, 1.0);
}
} // namespace detail

constexpr val dien(result& m, const name_string& s, const dien_config& c, val q, val k, val mask = {}) {
    const std::size_t U = c.num_units;
    // shape errors report (got, want); ranks count the batch axis (B by U: 2)
    if (U == 0) ctrec_shape_error_dien_num_units_must_be_positive();
    if (q.rank() != 1 || !q.batched()) report_shape_error(ctrec_shape_error_dien_q_must_be_a_batched_B_by_U, q.rank() + q.batched(), 2);
    if (k.rank() != 2 || !k.batched()) report_shape_error(ctrec_shape_error_dien_k_must_be_a_batched_B_by_T_by_E, k.rank() + k.batched(), 3);
    if (q.dim(0) != U) report_shape_error(ctrec_shape_error_dien_the_query_width_must_equal_num_units, q.dim(0), U);
    const std::size_t T = k.dim(0), E = k.dim(1);
    if (mask.g && (mask.rank() != 1 || !mask.batched()))
        report_shape_error(ctrec_shape_error_dien_mask_must_be_a_batched_B_by_T, mask.rank() + mask.batched(), 2);
    if (mask.g && mask.dim(0) != T) report_shape_error(ctrec_shape_error_dien_mask_must_be_a_batched_B_by_T, mask.dim(0), T);
    if (T > max_rnn_steps) ctrec_error_sequence_too_long_for_the_graph_raise_CTREC_MAX_NODES();
    detail::check_recurrent_activation(c.activation);
    if (c.monolith_compat && !c.acknowledge_compat_overrides && mask.g)
        ctrec_error_dien_monolith_compat_ignores_the_mask_set_acknowledge_compat_overrides();
    if (c.monolith_compat && !c.acknowledge_compat_overrides && c.att_type != agru_att::agru)
        ctrec_error_dien_monolith_compat_ignores_att_type_augru_set_acknowledge_compat_overrides();
    if (c.monolith_compat) mask = {};  // the source ignores it

    val W = m.var(scoped(s, "gru_cell/kernel").view(), dims_of({E, 3 * U}), c.initializer);
    val R = m.var(scoped(s, "gru_cell/recurrent_kernel").view(), dims_of({U, 3 * U}), init::Orthogonal{});
    val bias = m.var(scoped(s, "gru_cell/bias").view(), dims_of({2, 3 * U}), init::Zeros{});
    val Watt = m.var(scoped(s, "attention_weight").view(), dims_of({U, U}), c.initializer);
    add_penalty(m, c.regularizer, W);
    add_penalty(m, c.regularizer, Watt);

    // padded keys are replaced by 0 before the GEMM: the state-keeping select gives them zero
    // cotangent, but k^T 0 is NaN for a NaN or inf pad and would reach the kernel's gradient
    if (mask.g) k = where(greater_equal(reshape(mask, dims_of({T, 1})), 1.0), k, 0.0);

    // interest extractor: Keras GRU (reset-after, gates z, r, h); x_t W + b_in for every step in one GEMM
    const val Xp = matmul(k, W) + slice(bias, 0, 0, 1);
    const val XZR = slice(Xp, 1, 0, 2 * U), XH = slice(Xp, 1, 2 * U, 3 * U);
    const val brec = slice(bias, 0, 1, 2);  // (1, 3U)
    const val real = mask.g ? greater_equal(mask, 1.0) : val{};
    val hs[max_rnn_steps]{};
    val h{};  // (1, U); h_0 = 0 is not built
    for (std::size_t t = 0; t < T; ++t) {
        const val gp = t == 0 ? brec : matmul(h, R) + brec;  // [g_z | g_r | g_h]
        const val zr = sigmoid(detail::row(XZR, t) + slice(gp, 1, 0, 2 * U));
        const val z = slice(zr, 1, 0, U), r = slice(zr, 1, U, 2 * U);
        const val hh = apply_activation(m, c.activation, s, detail::row(XH, t) + r * slice(gp, 1, 2 * U, 3 * U));
        val hn = t == 0 ? (1.0 - z) * hh : z * h + (1.0 - z) * hh;
        if (mask.g) hn = t == 0 ? where(detail::row(real, t), hn, 0.0) : where(detail::row(real, t), hn, h);
        h = hs[t] = hn;
    }
    const val H = concat(0, hs, T);  // (T, U)

    // attention: v = W_att q, s_t = h_t . v, softmax over t (over the real steps with a mask)
    const val v = einsum("ij,j->i", Watt, q);
    const val sc = einsum("tu,u->t", H, v);
    const val alpha = mask.g ? detail::masked_softmax(sc, real) : softmax(sc, 0);

    // interest evolution
    agru_config ac{};
    ac.units = U;
    ac.att_type = c.monolith_compat ? agru_att::agru : c.att_type;
    ac.activation = c.activation;
    ac.initializer = c.initializer;
    ac.regularizer = c.regularizer;
    return agru_rnn(m, scoped(s, "augru_cell"), ac, H, alpha, mask).final_state;
}

template <fixed_string Scope, dien_config C>
constexpr result dien(const expr& q, const expr& k) {
    result m = q;
    std::uint32_t ik = 0;
    join_into(m.g, k, ik);
    m.set_out(dien(m, Scope.view(), C, m.value(), m.at(ik)));
    return m;
}
template <fixed_string Scope, dien_config C>
constexpr result dien(const expr& q, const expr& k, const expr& mask) {
    if constexpr (C.monolith_compat) {
        static_assert(C.acknowledge_compat_overrides,
                      "ctrec::layers::dien: monolith_compat ignores the mask (as the source does); pass no mask, "
                      "or set .acknowledge_compat_overrides = true to drop it knowingly");
        return dien<Scope, C>(q, k);  // the source ignores the mask: it is not in the model
    } else {
        result m = q;
        std::uint32_t ik = 0, im = 0;
        join_into(m.g, k, ik);
        join_into(m.g, mask, im);
        m.set_out(dien(m, Scope.view(), C, m.value(), m.at(ik), m.at(im)));
        return m;
    }
}

} // namespace ctrec::layers
