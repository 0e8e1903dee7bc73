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
#include <string_view>
#include <utility>

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

namespace detail {
// "U_" + (1, 0) -> "U_1_0"
template <fixed_string Prefix, std::size_t I, std::size_t J>
constexpr auto dcn_ij() {
    return indexed<join<indexed<Prefix, I>(), "_">(), J>();
}

// The variable "<S>/<Leaf>" of shape Sh as the layer uses it: raw, or with kernel norm
// t * l2_normalize(P, axis 0, 1e-6) with t = "<S>/<Leaf>/trainable_norm" (Sh[1],).
template <fixed_string S, fixed_string Leaf, dims Sh, bool Norm>
constexpr auto dcn_param() {
    constexpr auto P = param_node<scoped<S, Leaf>(), Sh>{};
    if constexpr (!Norm) return P;
    else return l2_normalize<0, 1e-6>(P) * param_node<scoped<scoped<S, Leaf>(), "trainable_norm">(), make_dims<Sh.d[1]>()>{};
}

// The E experts' variables "<Prefix><I>_<j>" (each of shape Sh = (a, c)) side by side as
// one (a, E c) matrix, kernel norm applied per column: l2_normalize of the side-by-side raw
// variables times the side-by-side trainable norms.
template <fixed_string S, fixed_string Prefix, std::size_t I, dims Sh, bool Norm, std::size_t... J>
constexpr auto dcn_experts(std::index_sequence<J...>) {
    auto raw = concat<1>(param_node<scoped<S, dcn_ij<Prefix, I, J>()>(), Sh>{}...);
    if constexpr (!Norm) return raw;
    else return l2_normalize<0, 1e-6>(raw) *
                concat<0>(param_node<scoped<scoped<S, dcn_ij<Prefix, I, J>()>(), "trainable_norm">(), make_dims<Sh.d[1]>()>{}...);
}

// The variables of one DCN in creation order: (leaf name, shape, is a bias) as a tlist of
// param descriptors, used for the initializers and the penalty.
template <fixed_string Leaf, dims Sh, bool Bias>
struct dcn_var {
    static constexpr auto leaf = Leaf;
    static constexpr dims shape = Sh;
    static constexpr bool bias = Bias;
};

template <dcn_config C, std::size_t D>
constexpr auto dcn_vars() {
    constexpr std::size_t L = C.layer_num, E = C.num_experts, r = C.low_rank;
    auto biases = []<std::size_t... I>(std::index_sequence<I...>) {
        return tlist<dcn_var<indexed<"bias_", I>(), make_dims<1, D>(), true>...>{};
    }(std::make_index_sequence<L>{});
    if constexpr (C.type == dcn_type::vector || C.type == dcn_type::matrix) {
        constexpr std::size_t cols = C.type == dcn_type::vector ? 1 : D;
        auto kernels = []<std::size_t... I>(std::index_sequence<I...>) {
            return tlist<dcn_var<indexed<"kernel_", I>(), make_dims<D, cols>(), false>...>{};
        }(std::make_index_sequence<L>{});
        return tl_concat_t<decltype(kernels), decltype(biases)>{};
    } else {
        // i-major, j-minor: flat index k = i * E + j
        auto group = []<fixed_string P, dims Sh, std::size_t... K>(std::index_sequence<K...>) {
            return tlist<dcn_var<dcn_ij<P, K / E, K % E>(), Sh, false>...>{};
        };
        using seq = std::make_index_sequence<L * E>;
        using Us = decltype(group.template operator()<"U_", make_dims<D, r>()>(seq{}));
        using Vs = decltype(group.template operator()<"V_", make_dims<D, r>()>(seq{}));
        using Cs = decltype(group.template operator()<"C_", make_dims<r, r>()>(seq{}));
        using Gs = decltype(group.template operator()<"G_", make_dims<D, 1>()>(seq{}));
        return tl_concat_t<Us, Vs, Cs, Gs, decltype(biases)>{};
    }
}

template <fixed_string S, dcn_config C, class Vars> struct dcn_inits;
template <fixed_string S, dcn_config C, class... V>
struct dcn_inits<S, C, tlist<V...>> {
    template <class X>
    using one = std::conditional_t<
        C.allow_kernel_norm,
        tlist<param_init<scoped<S, X::leaf>(), X::shape, (X::bias ? init::spec(init::Zeros{}) : C.initializer)>,
              column_norm_init<scoped<scoped<S, X::leaf>(), "trainable_norm">(), scoped<S, X::leaf>(), make_dims<X::shape.d[1]>()>>,
        tlist<param_init<scoped<S, X::leaf>(), X::shape, (X::bias ? init::spec(init::Zeros{}) : C.initializer)>>>;
    using type = tl_concat_t<tlist<>, one<V>...>;
};

template <fixed_string S, dcn_config C, class Vars> struct dcn_penalty;
template <fixed_string S, dcn_config C>
struct dcn_penalty<S, C, tlist<>> { using type = scalar_zero; };
template <fixed_string S, dcn_config C, class V, class... Rest>
struct dcn_penalty<S, C, tlist<V, Rest...>> {
    using here = std::conditional_t<V::bias, scalar_zero,
                                    std::remove_cvref_t<decltype(penalty<C.regularizer>(param_node<scoped<S, V::leaf>(), V::shape>{}))>>;
    using type = add_t<here, typename dcn_penalty<S, C, tlist<Rest...>>::type>;
};

// x . P for a row-vector operand x (rank 1 or 2) and a 2-D P.
template <node X, node P>
constexpr auto dcn_dot(X x, P p) { return matmul(x, p); }
// x . P^T, P read as stored (D, r): u = c . U^T.
template <node X, node P>
constexpr auto dcn_dot_t(X x, P p) {
    if constexpr (X::shape.rank == 1) return einsum<"r,dr->d">(x, p);
    else return einsum<"nr,dr->nd">(x, p);
}

// One cross layer (index I) on rows of x (rank 1 or 2), x0 the original rows.
template <fixed_string S, dcn_config C, mode M, std::size_t I, std::size_t D, node X0, node X>
constexpr auto dcn_cross(X0 x0, X x) {
    constexpr bool kn = C.allow_kernel_norm;
    // the bias (1, D) as a (D) row, broadcast over the rows
    auto b = reshape<D>(dcn_param<S, indexed<"bias_", I>(), make_dims<1, D>(), kn>());
    auto next = [&] {
        if constexpr (C.type == dcn_type::vector) {
            auto w = dcn_param<S, indexed<"kernel_", I>(), make_dims<D, 1>(), kn>();
            return x0 * dcn_dot(x, w) + b + x;
        } else if constexpr (C.type == dcn_type::matrix) {
            auto w = dcn_param<S, indexed<"kernel_", I>(), make_dims<D, D>(), kn>();
            return x0 * (dcn_dot(x, w) + b) + x;
        } else {
            // The experts of layer i side by side: V_i (D, E r), C_i (r, E r), U_i (D, E r) and
            // G_i (D, E), column j r + a being column a of expert j. Kernel norm works per
            // column, so normalising the side-by-side matrix is normalising each variable.
            // These are parameter-only (derived, cached) values; per row this is three GEMMs
            // and a batched r x r product per layer instead of 4 E small ones.
            static_assert(X::shape.rank == 2);
            constexpr std::size_t E = C.num_experts, r = C.low_rank, n = X::shape.d[0];
            auto V = dcn_experts<S, "V_", I, make_dims<D, r>(), kn>(std::make_index_sequence<E>{});
            auto Cm = reshape<r, E, r>(dcn_experts<S, "C_", I, make_dims<r, r>(), kn>(std::make_index_sequence<E>{}));
            auto U = dcn_experts<S, "U_", I, make_dims<D, r>(), kn>(std::make_index_sequence<E>{});
            auto G = dcn_experts<S, "G_", I, make_dims<D, 1>(), kn>(std::make_index_sequence<E>{});
            auto v = reshape<n, E, r>(tanh(matmul(x, V)));         // tanh(x . V_ij)
            auto c = tanh(einsum<"neq,qea->nea">(v, Cm));           // tanh(v . C_ij)
            auto gates = matmul(x, G);                              // x . G_ij, (n, E)
            if constexpr (C.monolith_compat || E == 1) {
                // the source: the gates stacked as (n, E, 1), softmax over the last axis (size 1):
                // every weight is exactly 1, and its derivative exactly 0
                auto w = softmax<2>(reshape<n, E, 1>(gates));
                auto u = einsum<"nk,dk->nd">(reshape<n, E * r>(c * w), U);  // sum_j u_j
                // sum_j x0 (u_j + b) = x0 (sum_j u_j + E b)
                if constexpr (E == 1) return x0 * (u + b) + x;
                else return x0 * (u + b * lit<static_cast<double>(E)>) + x;
            } else {
                // documented gating: w = softmax over the experts; sum_j w_j x0 (u_j + b) =
                // x0 (sum_j w_j u_j + b), the weights summing to 1
                auto w = softmax<1>(gates);
                auto u = einsum<"nk,dk->nd">(reshape<n, E * r>(c * reshape<n, E, 1>(w)), U);
                return x0 * (u + b) + x;
            }
        }
    }();
    if constexpr (C.use_dropout && M == mode::train) {
        using U = random_node<scoped<S, indexed<"dropout_", I>()>(), X::shape>;
        return where(greater_equal(U{}, lit<1.0 - C.keep_prob>), next * lit<1.0 / C.keep_prob>, lit<0.0>);
    } else {
        return next;
    }
}

template <fixed_string S, dcn_config C, mode M, std::size_t I, std::size_t D, node X0, node X>
constexpr auto dcn_stack(X0 x0, X x) {
    if constexpr (I == C.layer_num) return x;
    else return dcn_stack<S, C, M, I + 1, D>(x0, dcn_cross<S, C, M, I, D>(x0, x));
}
} // namespace detail

template <fixed_string Scope, dcn_config C, mode M = mode::train, node X>
constexpr auto dcn(X x) {
    static_assert(X::shape.rank >= 1 && X::batched, "ctrec::layers::dcn: the input must be a batched tensor (B, ..., D)");
    static_assert(C.type != dcn_type::mixed || C.low_rank > 0,
                  "ctrec::layers::dcn: mixed mode needs low_rank > 0 (the source's default 0 builds empty experts)");
    static_assert(C.type != dcn_type::mixed || C.num_experts >= 1, "ctrec::layers::dcn: mixed mode needs num_experts >= 1");
    static_assert(!C.use_dropout || (C.keep_prob > 0.0 && C.keep_prob <= 1.0),
                  "ctrec::layers::dcn: keep_prob must be in (0, 1]");
    constexpr dims s = X::shape;
    constexpr std::size_t D = s.d[s.rank - 1];
    // rank > 2 (and rank 1 in mixed mode): the same rows as a (rows, D) matrix, reshaped back
    constexpr bool flat = s.rank > 2 || (s.rank == 1 && C.type == dcn_type::mixed);
    constexpr auto y = [&] {
        if constexpr (!flat) {
            return detail::dcn_stack<Scope, C, M, 0, D>(x, x);
        } else {
            constexpr auto rows = reshape_node<make_dims<s.size() / D, D>(), X>{};
            return reshape_node<s, decltype(detail::dcn_stack<Scope, C, M, 0, D>(rows, rows))>{};
        }
    }();
    using vars = decltype(detail::dcn_vars<C, D>());
    using pen = typename detail::dcn_penalty<Scope, C, vars>::type;
    using inits = typename detail::dcn_inits<Scope, C, vars>::type;
    return result<std::remove_cvref_t<decltype(y)>, pen, tlist<>, inits>{};
}

} // namespace ctrec::layers
