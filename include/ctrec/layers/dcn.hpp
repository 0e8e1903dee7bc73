#pragma once
// DCN, Deep & Cross Network (spec layers-core-and-cross.md section 8): explicit feature
// crossing with residual connections, in three forms (vector, matrix, mixed).
//
//   constexpr auto r = layers::dcn<"dcn", {.type = layers::dcn_type::matrix, .layer_num = 3}>(x);
//   constexpr auto t = layers::dcn<"dcn", {.use_dropout = true}, layers::mode::train>(x);
//
// Input x0: per example (D) or (N, D) (any rank >= 1; the formulas act on every row, the
// last axis, with the parameters shared by all rows). Output: the shape of the input.
// With x = x0, for every cross layer i (W, b, U, V, C, G the effective parameters):
//   vector: x <- x0 * (x . kernel_i) + b_i + x        (the bias outside the product)
//   matrix: x <- x0 * (x . kernel_i + b_i) + x         (one GEMM over all rows, the rest in
//                                                       its epilogue)
//   mixed:  per expert j: u_j = tanh(tanh(x . V_ij) . C_ij) . U_ij^T,  out_j = x0 * (u_j + b_i)
//           x <- sum_j w_j out_j + x
// then, in mode::train with use_dropout, inverted dropout of x (after every layer, the last
// included; x0 is never dropped).
//
// Variables, scoped "<scope>/<leaf>", in the source's creation order (this is the order of
// r.inits, which is what an importer should follow; a program lists its parameters in graph
// order):
//   vector: kernel_i (D, 1); matrix: kernel_i (D, D); mixed: every U_i_j (D, r), then every
//   V_i_j (D, r), every C_i_j (r, r), every G_i_j (D, 1) (i-major, j-minor); then every
//   bias_i (1, D) for all types.
//   allow_kernel_norm: each of them (biases too) is followed by "<name>/trainable_norm",
//   shaped like the variable without axis 0, initialised to the column norms of the
//   variable's own initial value.
//
// Decisions where the spec leaves a choice (spec README: the default follows the
// documentation where the source is evidently a bug; `monolith_compat` reproduces the source):
// - Mixed gating. The source stacks the gates x . G_ij into (..., E, 1) and takes the softmax
//   over the last axis, of size 1: every weight is exactly 1, the experts are summed
//   unweighted and G gets no gradient from the data. Default (documented, DCN-V2): w_j =
//   softmax over the E experts of x . G_ij. monolith_compat = true: the source's singleton
//   softmax, computed as written (G stays a parameter of the program, its weight is exp(0) /
//   exp(0) = 1 exactly, its gradient from the data is exactly 0, a regularizer still applies
//   to it), so models trained in Monolith compute the same function. (Not bit-identical to
//   TF: the experts are summed as x0 * (sum_j u_j + E b), and GEMM summation orders differ,
//   so results agree to float rounding.)
// - Mixed tanh. The documentation has no tanh; the source applies tanh after V and after C.
//   ctrec keeps the source's tanh in both modes: it is what trained checkpoints expect, and
//   the documentation's formula omits it rather than ruling it out.
// - Kernel norm (source only, not in the documentation): every variable P (a, c), biases
//   included, is used as t * l2_normalize(P, axis 0, eps 1e-6 on the squared norm), t its
//   trainable_norm (c,). A bias (1, D) has columns of length 1 and starts at b = 0, t = 0,
//   where both gradients are exactly 0 (d/db = t * 1e3 * g, d/dt = b / max(|b|, 1e-3) * g):
//   under allow_kernel_norm the DCN biases STAY ZERO FOREVER under any gradient optimiser.
//   Reproduced on purpose (Monolith checkpoints contain exactly that).
// - Dropout. Inverted dropout: element kept when u >= 1 - keep_prob (TF's u >= rate), kept
//   values multiplied by 1 / keep_prob. u = random_uniform on stream
//   "<scope>/dropout_<i>" (one stream per cross layer), a pure function of (io.seed, stream,
//   example, element): the forward and backward passes of one call see the same mask, a
//   new seed gives a new mask. The random numbers differ from TF's (no bit parity there).
// - mode: a template argument, default mode::train as the source constructor's default
//   (so dropout is on in any call of a default-mode DCN with use_dropout, as in Monolith).
//   Dropout happens only in mode::train; eval and predict (TF's "infer") never drop.
// - dcn_type is an enum, so the source's "any unknown string runs mixed" cannot happen;
//   dcn_type_from("...") maps the source's exact strings and rejects anything else.
// - low_rank must be > 0 in mixed mode (the source accepts 0 and builds empty experts):
//   a compile-time error. num_experts >= 1, 0 < keep_prob <= 1 likewise.
// - initializer: one spec for every kernel / U / V / C / G (default GlorotNormal); biases
//   are always zeros. regularizer: on every raw kernel / U / V / C / G, never on biases or
//   trainable_norm variables.
//
// Implementation:
// DCN: vector / matrix / mixed cross layers, kernel norm on every
// variable, exactly as documented above (variables, names, creation order of
// the initializers, the documented softmax gating by default and the source's unweighted sum
// under monolith_compat, the source's tanh after V and C).
// Dropout (mode::train, use_dropout): inverted dropout of x after every cross layer, kept where
// u >= 1 - keep_prob, u uniform on stream "<scope>/dropout_<i>" (opcode::random).
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

enum class dcn_type { vector, matrix, mixed };

// The source's DCNType strings, exactly ("vector", "matrix", "mixed"); anything else is an
// error here (Monolith would silently run the mixed branch).
constexpr dcn_type dcn_type_from(std::string_view s) {
    if (s == "vector") return dcn_type::vector;
    if (s == "matrix") return dcn_type::matrix;
    if (s == "mixed") return dcn_type::mixed;
    throw error("ctrec::layers::dcn: dcn_type must be \"vector\", \"matrix\" or \"mixed\"");
}

struct dcn_config {
    dcn_type type = dcn_type::matrix;  // the source's dcn_type
    std::size_t layer_num = 1;
    init::spec initializer = init::GlorotNormal{};  // every kernel / U / V / C / G
    layers::regularizer regularizer{};              // every kernel / U / V / C / G (raw), not biases
    std::size_t num_experts = 1;                    // mixed only
    std::size_t low_rank = 0;                       // mixed only; must be set > 0
    bool allow_kernel_norm = false;
    bool use_dropout = false;
    double keep_prob = 0.95;
    bool monolith_compat = false;  // mixed: the source's singleton softmax (unweighted sum)
};



void ctrec_shape_error_dcn_input_must_be_a_batched_tensor_B_by_D();
void ctrec_shape_error_dcn_mixed_mode_needs_low_rank_and_num_experts_above_0();
void ctrec_shape_error_dcn_keep_prob_must_be_in_0_1();

namespace detail {
// Variable "<s>/<leaf>" of shape (a, c) as the layer uses it: raw, or t * l2_normalize(P, 0, 1e-6)
// with t = "<s>/<leaf>/trainable_norm" (c,). Its initializer is declared by dcn_declare.
constexpr val dcn_param(result& m, const name_string& s, const name_string& leaf, dims sh, bool norm) {
    val p = make_param(m.g, scoped(s, leaf.view()).view(), sh);
    if (!norm) return p;
    return l2_normalize(p, 0, 1e-6) * make_param(m.g, (scoped(s, leaf.view()) + "/trainable_norm").view(), dims_of({sh.d[1]}));
}
// The E experts' variables "<prefix><i>_<j>" side by side as one (a, E c) matrix; kernel norm
// works per column, so normalising the side-by-side matrix is normalising each variable.
constexpr val dcn_experts(result& m, const name_string& s, std::string_view prefix, std::size_t i, std::size_t E, dims sh, bool norm) {
    val raw[64]{}, t[64]{};
    for (std::size_t j = 0; j < E; ++j) {
        const name_string leaf = scoped(s, (name_string(prefix) + i + "_" + j).view());
        raw[j] = make_param(m.g, leaf.view(), sh);
        if (norm) t[j] = make_param(m.g, (leaf + "/trainable_norm").view(), dims_of({sh.d[1]}));
    }
    val all = concat(1, raw, E);
    if (!norm) return all;
    return l2_normalize(all, 0, 1e-6) * concat(0, t, E);
}
// Declares one variable (and its trainable norm) in the source's creation order, with its
// regularizer (never on biases).
constexpr void dcn_declare(result& m, const name_string& s, const name_string& leaf, dims sh, bool bias, const dcn_config& c) {
    val p = m.var(scoped(s, leaf.view()).view(), sh, bias ? init::spec(init::Zeros{}) : c.initializer);
    if (c.allow_kernel_norm) m.norm_var((scoped(s, leaf.view()) + "/trainable_norm").view(), dims_of({sh.d[1]}), p);
    if (!bias) add_penalty(m, c.regularizer, p);
}
} // namespace detail

constexpr val dcn(result& m, const name_string& s, const dcn_config& c, mode M, val x_in) {
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
            detail::dcn_declare(m, s, name_string("kernel_") + i, dims_of({D, c.type == dcn_type::vector ? 1 : D}), false, c);
    else {
        const std::string_view pre[4] = {"U_", "V_", "C_", "G_"};
        const dims shp[4] = {dims_of({D, r}), dims_of({D, r}), dims_of({r, r}), dims_of({D, 1})};
        for (std::size_t k = 0; k < 4; ++k)
            for (std::size_t i = 0; i < L; ++i)
                for (std::size_t j = 0; j < E; ++j) detail::dcn_declare(m, s, name_string(pre[k]) + i + "_" + j, shp[k], false, c);
    }
    for (std::size_t i = 0; i < L; ++i) detail::dcn_declare(m, s, name_string("bias_") + i, dims_of({1, D}), true, c);

    // rank > 2 (and rank 1 in mixed mode): the rows as a (rows, D) matrix, reshaped back
    const bool as_rows = s_in.rank > 2 || (s_in.rank == 1 && c.type == dcn_type::mixed);
    const val x0 = as_rows ? reshape(x_in, dims_of({s_in.size() / D, D})) : x_in;
    val x = x0;
    for (std::size_t i = 0; i < L; ++i) {
        val b = reshape(detail::dcn_param(m, s, name_string("bias_") + i, dims_of({1, D}), kn), dims_of({D}));
        if (c.type == dcn_type::vector) {
            val w = detail::dcn_param(m, s, name_string("kernel_") + i, dims_of({D, 1}), kn);
            x = x0 * matmul(x, w) + b + x;
        } else if (c.type == dcn_type::matrix) {
            val w = detail::dcn_param(m, s, name_string("kernel_") + i, dims_of({D, D}), kn);
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
            val u = make_random(m.g, scoped(s, (name_string("dropout_") + i).view()).view(), x.shape());
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

} // namespace ctrec::layers
