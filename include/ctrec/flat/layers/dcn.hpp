#pragma once
// DCN on the graph-as-data core: vector / matrix / mixed cross layers, kernel norm on every
// variable, exactly as ctrec/layers/dcn.hpp documents it (variables, names, creation order of
// the initializers, the documented softmax gating by default and the source's unweighted sum
// under monolith_compat, the source's tanh after V and C).
// Dropout (mode::train, use_dropout): inverted dropout of x after every cross layer, kept where
// u >= 1 - keep_prob, u uniform on stream "<scope>/dropout_<i>" (opcode::random).
#include "ctrec/flat/layers/layer.hpp"
#include "ctrec/layers/dcn.hpp"  // dcn_config, dcn_type

namespace ctrec::flat::layers {

using ctrec::layers::dcn_config;
using ctrec::layers::dcn_type;

void ctrec_shape_error_dcn_input_must_be_a_batched_tensor_B_by_D();
void ctrec_shape_error_dcn_mixed_mode_needs_low_rank_and_num_experts_above_0();
void ctrec_shape_error_dcn_keep_prob_must_be_in_0_1();

namespace detail {
// Variable "<s>/<leaf>" of shape (a, c) as the layer uses it: raw, or t * l2_normalize(P, 0, 1e-6)
// with t = "<s>/<leaf>/trainable_norm" (c,). Its initializer is declared by dcn_declare.
constexpr val dcn_param(result& m, const label& s, const label& leaf, dims sh, bool norm) {
    val p = make_param(m.g, scoped(s, leaf.view()).view(), sh);
    if (!norm) return p;
    return l2_normalize(p, 0, 1e-6) * make_param(m.g, (scoped(s, leaf.view()) + "/trainable_norm").view(), dims_of({sh.d[1]}));
}
// The E experts' variables "<prefix><i>_<j>" side by side as one (a, E c) matrix; kernel norm
// works per column, so normalising the side-by-side matrix is normalising each variable.
constexpr val dcn_experts(result& m, const label& s, std::string_view prefix, std::size_t i, std::size_t E, dims sh, bool norm) {
    val raw[64]{}, t[64]{};
    for (std::size_t j = 0; j < E; ++j) {
        const label leaf = scoped(s, (label(prefix) + i + "_" + j).view());
        raw[j] = make_param(m.g, leaf.view(), sh);
        if (norm) t[j] = make_param(m.g, (leaf + "/trainable_norm").view(), dims_of({sh.d[1]}));
    }
    val all = concat(1, raw, E);
    if (!norm) return all;
    return l2_normalize(all, 0, 1e-6) * concat(0, t, E);
}
// Declares one variable (and its trainable norm) in the source's creation order, with its
// regularizer (never on biases).
constexpr void dcn_declare(result& m, const label& s, const label& leaf, dims sh, bool bias, const dcn_config& c) {
    val p = m.var(scoped(s, leaf.view()).view(), sh, bias ? init::spec(init::Zeros{}) : c.initializer);
    if (c.allow_kernel_norm) m.norm_var((scoped(s, leaf.view()) + "/trainable_norm").view(), dims_of({sh.d[1]}), p);
    if (!bias) add_penalty(m, c.regularizer, p);
}
} // namespace detail

constexpr val dcn(result& m, const label& s, const dcn_config& c, mode M, val x_in) {
    if (!x_in.batched() || x_in.rank() < 1) ctrec_shape_error_dcn_input_must_be_a_batched_tensor_B_by_D();
    if (c.type == dcn_type::mixed && (c.low_rank == 0 || c.num_experts == 0 || c.num_experts > 64))
        ctrec_shape_error_dcn_mixed_mode_needs_low_rank_and_num_experts_above_0();
    if (c.use_dropout && !(c.keep_prob > 0.0 && c.keep_prob <= 1.0)) ctrec_shape_error_dcn_keep_prob_must_be_in_0_1();
    const dims s_in = x_in.shape();
    const std::size_t D = x_in.last(), L = c.layer_num, E = c.num_experts, r = c.low_rank;
    const bool kn = c.allow_kernel_norm;

    // the variables, in the source's creation order
    if (c.type != dcn_type::mixed)
        for (std::size_t i = 0; i < L; ++i)
            detail::dcn_declare(m, s, label("kernel_") + i, dims_of({D, c.type == dcn_type::vector ? 1 : D}), false, c);
    else {
        const std::string_view pre[4] = {"U_", "V_", "C_", "G_"};
        const dims shp[4] = {dims_of({D, r}), dims_of({D, r}), dims_of({r, r}), dims_of({D, 1})};
        for (std::size_t k = 0; k < 4; ++k)
            for (std::size_t i = 0; i < L; ++i)
                for (std::size_t j = 0; j < E; ++j) detail::dcn_declare(m, s, label(pre[k]) + i + "_" + j, shp[k], false, c);
    }
    for (std::size_t i = 0; i < L; ++i) detail::dcn_declare(m, s, label("bias_") + i, dims_of({1, D}), true, c);

    // rank > 2 (and rank 1 in mixed mode): the rows as a (rows, D) matrix, reshaped back
    const bool as_rows = s_in.rank > 2 || (s_in.rank == 1 && c.type == dcn_type::mixed);
    const val x0 = as_rows ? reshape(x_in, dims_of({s_in.size() / D, D})) : x_in;
    val x = x0;
    for (std::size_t i = 0; i < L; ++i) {
        val b = reshape(detail::dcn_param(m, s, label("bias_") + i, dims_of({1, D}), kn), dims_of({D}));
        if (c.type == dcn_type::vector) {
            val w = detail::dcn_param(m, s, label("kernel_") + i, dims_of({D, 1}), kn);
            x = x0 * matmul(x, w) + b + x;
        } else if (c.type == dcn_type::matrix) {
            val w = detail::dcn_param(m, s, label("kernel_") + i, dims_of({D, D}), kn);
            x = x0 * (matmul(x, w) + b) + x;
        } else {
            const std::size_t n = x.dim(0);
            val V = detail::dcn_experts(m, s, "V_", i, E, dims_of({D, r}), kn);
            val C = reshape(detail::dcn_experts(m, s, "C_", i, E, dims_of({r, r}), kn), dims_of({r, E, r}));
            val U = detail::dcn_experts(m, s, "U_", i, E, dims_of({D, r}), kn);
            val G = detail::dcn_experts(m, s, "G_", i, E, dims_of({D, 1}), kn);
            val v = reshape(tanh(matmul(x, V)), dims_of({n, E, r}));  // tanh(x . V_ij)
            val cc = tanh(einsum("neq,qea->nea", v, C));               // tanh(v . C_ij)
            val gates = matmul(x, G);                                  // x . G_ij, (n, E)
            if (c.monolith_compat || E == 1) {
                // the source's singleton softmax: every weight exactly 1
                val w = softmax(reshape(gates, dims_of({n, E, 1})), 2);
                val u = einsum("nk,dk->nd", reshape(cc * w, dims_of({n, E * r})), U);
                x = E == 1 ? x0 * (u + b) + x : x0 * (u + b * static_cast<double>(E)) + x;
            } else {
                val w = softmax(gates, 1);
                val u = einsum("nk,dk->nd", reshape(cc * reshape(w, dims_of({n, E, 1})), dims_of({n, E * r})), U);
                x = x0 * (u + b) + x;
            }
        }
        if (c.use_dropout && M == mode::train) {
            val u = make_random(m.g, scoped(s, (label("dropout_") + i).view()).view(), x.shape());
            x = where(greater_equal(u, 1.0 - c.keep_prob), x * (1.0 / c.keep_prob), 0.0);
        }
    }
    return as_rows ? reshape(x, s_in) : x;
}

template <fixed_string Scope, dcn_config C, mode M = mode::train>
constexpr result dcn(const result& in) {
    result m = in;
    m.set_out(dcn(m, Scope.view(), C, M, m.value()));
    return m;
}

} // namespace ctrec::flat::layers
