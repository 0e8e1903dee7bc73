#pragma once
// DMR_U2I (spec layers-trans-seq-multitask-nas.md 2.4): the user-to-item relevance unit of
// Deep Match to Rank. The behaviour sequence is attention-pooled with scores driven by a
// learned position table, projected into the item space by a Dense, and multiplied
// element-wise with the item embedding.
//
//   constexpr auto r = layers::dmr_u2i<"dmr__u2i", {.cmp_dim = 8}>(item, seq);
//   item (I_e), seq (T, U_e) per example (item first, as in the source); r.out is (I_e).
//
// Per example:
//   c_t   = pos_emb[t] + seq_t . emb_weight + bias           (C)
//   l_t   = c_t . z_weight                                   (scalar; no tanh, spec 7.8)
//   alpha = softmax over t of l                              (T)
//   m     = sum_t alpha_t seq_t                              (U_e)
//   out   = act(m . dense/kernel + dense/bias) * item        (I_e)
//
// Variables ("<Scope>/..."): pos_emb (T, C), emb_weight (U_e, C) [initializer, regularizer];
// z_weight (C, 1) [Ones], bias (C) [zeros] (neither regularised); dense/kernel (U_e, I_e)
// [initializer, regularizer], dense/bias (I_e) [zeros] - a plain Keras Dense (no weight norm,
// layers::dense with the defaults); with the default PReLU activation also
// dense/p_re_lu/alpha (I_e) [zeros] (Keras creates the PReLU layer inside the dense scope;
// importers match the suffix p_re_lu/alpha).
//
// Decisions:
// - activation: Keras activations.get, whose "PReLU" is a PReLU *layer* (one alpha per
//   output unit, zeros): the default act_prelu. Any other Keras activation value works
//   (keras_activation("relu") as in the original test); none / linear is the identity.
// - No mask, as in the source (there is no mask argument; spec 2.4.3): every one of the T
//   steps, padded or not, takes part in the softmax, so zero-padding a short sequence does
//   change the result (a padded step scores pos_emb[t] . z + bias . z). T is baked into
//   pos_emb, so inputs have exactly T steps. Mask before the layer if that matters.
// - The attention bias adds bias . z_weight to every score alike, and a softmax ignores a
//   common shift: bias has no effect on the output and its gradient is zero (up to
//   rounding), in Monolith too. It is kept for weight import.
// - The score is written as the spec states it (c_t, then c_t . z). Because it is affine,
//   l_t = pos_emb[t] . z + seq_t . (emb_weight . z) + bias . z would cost 2 T U_e instead of
//   2 T U_e C per example (spec 2.4.10); that distribution over the sum is left to a rewrite
//   pass (the layer states the mathematics, the passes find the fast form).
//
// Implementation:
// DMR_U2I (spec layers-trans-seq-multitask-nas.md 2.4), exactly as
// ctrec/layers/dmr_u2i.hpp documents it: per example, item (I_e), seq (T, U_e) (or a shared
// (T, U_e)),
//   c_t = pos_emb[t] + seq_t . emb_weight + bias,  l_t = c_t . z_weight,  alpha = softmax_t(l),
//   m = sum_t alpha_t seq_t,  out = act(Dense "<s>/dense"(m)) * item
// with the same variables in the same order (pos_emb, emb_weight, z_weight [Ones], bias
// [zeros], dense/kernel, dense/bias, and dense/p_re_lu/alpha for the default PReLU), no mask,
// and the score written as the spec states it.
#include "ctrec/layers/dense.hpp"

namespace ctrec::layers {

struct dmr_u2i_config {
    std::size_t cmp_dim = 0;                        // C, the attention width
    layers::activation activation = act_prelu;      // Keras resolver; "PReLU" (the default) is a layer
    init::spec initializer = init::GlorotUniform{};  // pos_emb, emb_weight, dense/kernel
    layers::regularizer regularizer{};               // pos_emb, emb_weight, dense/kernel
};



void ctrec_shape_error_dmr_u2i_cmp_dim_must_be_positive();
void ctrec_shape_error_dmr_u2i_item_must_be_B_by_I_e();
void ctrec_shape_error_dmr_u2i_seq_must_be_B_by_T_by_U_e_or_a_shared_T_by_U_e();

constexpr val dmr_u2i(result& m, const name_string& s, const dmr_u2i_config& c, val item, val seq) {
    if (c.cmp_dim == 0) ctrec_shape_error_dmr_u2i_cmp_dim_must_be_positive();
    if (!item.batched() || item.rank() != 1)  // axes with the batch axis
        report_shape_error(ctrec_shape_error_dmr_u2i_item_must_be_B_by_I_e, item.rank() + item.batched(), 2);
    if (seq.rank() != 2) report_shape_error(ctrec_shape_error_dmr_u2i_seq_must_be_B_by_T_by_U_e_or_a_shared_T_by_U_e, seq.rank(), 2);
    const std::size_t T = seq.dim(0), U = seq.dim(1), I = item.dim(0), C = c.cmp_dim;
    val pos_emb = m.var(scoped(s, "pos_emb").view(), dims_of({T, C}), c.initializer);
    add_penalty(m, c.regularizer, pos_emb);
    val emb_weight = m.var(scoped(s, "emb_weight").view(), dims_of({U, C}), c.initializer);
    add_penalty(m, c.regularizer, emb_weight);
    val z_weight = m.var(scoped(s, "z_weight").view(), dims_of({C, 1}), init::Ones{});
    val bias = m.var(scoped(s, "bias").view(), dims_of({C}), init::Zeros{});

    const val cc = pos_emb + matmul(seq, emb_weight) + reshape(bias, dims_of({1, C}));  // (T, C)
    const val alpha = softmax(reshape(matmul(cc, z_weight), dims_of({T})), 0);
    const val pooled = einsum("t,tu->u", alpha, seq);  // (U_e)
    dense_config dc{};
    dc.units = I;
    dc.kernel_initializer = c.initializer;
    dc.kernel_regularizer = c.regularizer;
    const val d = dense(m, scoped(s, "dense"), dc, pooled);
    return apply_activation(m, c.activation, scoped(s, "dense/p_re_lu"), d) * item;
}

template <fixed_string Scope, dmr_u2i_config C>
constexpr result dmr_u2i(const expr& item, const expr& seq) {
    result m = item;
    std::uint32_t is = 0;
    join_into(m.g, seq, is);
    m.set_out(dmr_u2i(m, Scope.view(), C, m.value(), m.at(is)));
    return m;
}

} // namespace ctrec::layers
