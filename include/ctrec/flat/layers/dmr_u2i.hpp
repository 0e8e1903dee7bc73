#pragma once
// DMR_U2I (spec layers-trans-seq-multitask-nas.md 2.4) on the graph-as-data core, exactly as
// ctrec/layers/dmr_u2i.hpp documents it: per example, item (I_e), seq (T, U_e) (or a shared
// (T, U_e)),
//   c_t = pos_emb[t] + seq_t . emb_weight + bias,  l_t = c_t . z_weight,  alpha = softmax_t(l),
//   m = sum_t alpha_t seq_t,  out = act(Dense "<s>/dense"(m)) * item
// with the same variables in the same order (pos_emb, emb_weight, z_weight [Ones], bias
// [zeros], dense/kernel, dense/bias, and dense/p_re_lu/alpha for the default PReLU), no mask,
// and the score written as the spec states it.
#include "ctrec/flat/layers/dense.hpp"
#include "ctrec/layers/dmr_u2i.hpp"  // dmr_u2i_config

namespace ctrec::flat::layers {

using ctrec::layers::dmr_u2i_config;

void ctrec_shape_error_dmr_u2i_cmp_dim_must_be_positive();
void ctrec_shape_error_dmr_u2i_item_must_be_B_by_I_e();
void ctrec_shape_error_dmr_u2i_seq_must_be_B_by_T_by_U_e_or_a_shared_T_by_U_e();

constexpr val dmr_u2i(result& m, const label& s, const dmr_u2i_config& c, val item, val seq) {
    if (c.cmp_dim == 0) ctrec_shape_error_dmr_u2i_cmp_dim_must_be_positive();
    if (!item.batched() || item.rank() != 1) ctrec_shape_error_dmr_u2i_item_must_be_B_by_I_e();
    if (seq.rank() != 2) ctrec_shape_error_dmr_u2i_seq_must_be_B_by_T_by_U_e_or_a_shared_T_by_U_e();
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

} // namespace ctrec::flat::layers
