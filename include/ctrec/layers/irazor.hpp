#pragma once
// iRazor (spec layers-trans-seq-multitask-nas.md 1.3): differentiable embedding-dimension
// search. Each field's embedding is cut into groups of dimensions by nas_space; every group
// gets a learned probability (plus one "drop" probability per field) and the embedding is
// scaled by the probability of the group each dimension belongs to.
//
//   constexpr auto r = layers::irazor<"i_razor", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08}>(x);
//   constexpr auto s = layers::irazor<"i_razor", {.nas_space = {0, 2, 5}}>(x, fw);  // with nas_loss
//   r.out        X * M merged per out_type (default concat: (N * K))
//   r.penalty    the regularizer on nas_weight (symbolic zero without one)
//   r.nas_loss   the auxiliary loss sum_n fw_n sum_k M[n, k] (an unbatched scalar; a symbolic
//                zero when no feature weights are given). Add it to the objective (weight 1.0
//                in Monolith, spec 0.4); then() keeps only out/penalty/updates/inits, so
//                collect nas_loss from this result.
//
// Shapes (per example): x (N, K) with K = max(nas_space); L = len(nas_space).
// Variable: "<Scope>/nas_weight" (N, L), logits; initializer (None in Keras = GlorotUniform)
// and regularizer from the configuration. No state, no randomness, no mode: the masks are
// soft in every mode (spec 1.3.6).
//
//   P = softmax_1(nas_weight / t)                        (N, L), per field
//   M[n, k] = P[n, i(k)],  i(k) the group with nas_space[i-1] <= k < nas_space[i] (i >= 1)
//   Y[b, n, k] = X[b, n, k] M[n, k]
// P[n, 0] (the "drop" probability) weights no column. M is the spec's P . R with the constant
// rigid masks R (L, K); it is built as the concatenation of P's columns, each repeated over
// its group, which is the same value without a constant matrix (ctrec has no constant-tensor
// leaf). M reads parameters only, so
// the plan computes it once per parameter change (a derived parameter), and the per-example
// work is the single product X * M.
//
// Decisions:
// - nas_space is a fixed-capacity array in the configuration (capacity irazor_max_space);
//   its length is 1 + the index of its last non-zero entry (trailing zeros are unused slots).
//   It must be non-decreasing (a repeated boundary is an empty group, as the rigid-mask
//   formula gives; the source does not check this, and a decreasing list fails there too).
//   K == max(nas_space) is checked at compile time, as the source checks it.
// - nas_space[0] > 0: the source silently gives columns [0, nas_space[0]) weight 0 (spec 7.15:
//   follow the source, warn). ctrec reproduces it and warns at compile time (a deprecation
//   warning naming the layer) unless the configuration sets leading_zero_columns = true to
//   say this is intended.
// - feature_weight: Monolith takes a list or a tensor reshaped to [1, N]. Here it is an
//   optional second argument, any unbatched expression of N values ((N) or (1, N)); a
//   constant list is a parameter leaf the caller fills, wrapped in stop_gradient so that it
//   receives no gradient (a plain parameter would be trained, as a TF variable would).
// - out_type / keep_list: merge_tensor_list (layers/merge.hpp).
#include <algorithm>
#include <array>
#include <utility>

#include "ctrec/layers/layer.hpp"
#include "ctrec/layers/merge.hpp"

namespace ctrec::layers {

inline constexpr std::size_t irazor_max_space = 32;

struct irazor_config {
    std::array<std::size_t, irazor_max_space> nas_space{};  // e.g. {0, 2, 5, 7, 10}
    double t = 0.05;                                         // softmax temperature
    init::spec initializer = init::GlorotUniform{};          // nas_weight (Keras None)
    layers::regularizer regularizer{};                       // nas_weight
    merge_type out_type = merge_type::concat;
    bool keep_list = false;
    bool leading_zero_columns = false;  // nas_space[0] > 0 is intended: no warning
};

namespace detail {
// 1 + index of the last non-zero entry (0 when all are zero)
template <irazor_config C>
constexpr std::size_t irazor_len() {
    std::size_t n = 0;
    for (std::size_t i = 0; i < irazor_max_space; ++i)
        if (C.nas_space[i] != 0) n = i + 1;
    return n;
}
template <irazor_config C>
constexpr bool irazor_nondecreasing() {
    for (std::size_t i = 1; i < irazor_len<C>(); ++i)
        if (C.nas_space[i] < C.nas_space[i - 1]) return false;
    return true;
}
// the group of column k (k >= nas_space[0]): the first i >= 1 with k < nas_space[i]
template <irazor_config C>
constexpr std::size_t irazor_group(std::size_t k) {
    std::size_t i = 1;
    while (!(k < C.nas_space[i])) ++i;
    return i;
}
// Column k of M (k >= nas_space[0]): P[:, i(k)] as an (N, 1) slice.
template <irazor_config C, std::size_t Col, node P>
using irazor_column = slice_node<1, irazor_group<C>(Col), irazor_group<C>(Col) + 1, P>;
// Columns [Begin, End) of M: a plan node takes at most 16 operands, so wider ranges are a
// concatenation of up to 16 concatenated sub-ranges (depth log16 of K).
template <irazor_config C, std::size_t Begin, std::size_t End, node P>
constexpr auto irazor_columns(P p) {
    constexpr std::size_t n = End - Begin;
    if constexpr (n <= 16) {
        return [&]<std::size_t... J>(std::index_sequence<J...>) {
            return concat<1>(irazor_column<C, Begin + J, P>{}...);
        }(std::make_index_sequence<n>{});
    } else {
        constexpr std::size_t step = (n + 15) / 16;
        return [&]<std::size_t... J>(std::index_sequence<J...>) {
            return concat<1>(irazor_columns<C, Begin + J * step, std::min(End, Begin + (J + 1) * step)>(p)...);
        }(std::make_index_sequence<(n + step - 1) / step>{});
    }
}

// Calling irazor_leading_zero_columns<true>() is the compile-time warning of spec 7.15.
template <bool Warn>
constexpr void irazor_leading_zero_columns() {}
template <>
[[deprecated("ctrec::layers::irazor: nas_space[0] > 0, so columns [0, nas_space[0]) are always zeroed (as in "
             "Monolith); set leading_zero_columns = true if this is intended")]] constexpr void
irazor_leading_zero_columns<true>() {}

template <class Out, class Penalty, class Inits, class NasLoss>
struct irazor_result : result<Out, Penalty, tlist<>, Inits> {
    NasLoss nas_loss{};
};
} // namespace detail

// With feature weights fw ((N) or (1, N), unbatched): nas_loss = sum_n fw_n sum_k M[n, k].
template <fixed_string Scope, irazor_config C, node X, node FW>
constexpr auto irazor(X x, FW) {
    constexpr std::size_t L = detail::irazor_len<C>();
    static_assert(X::batched && X::shape.rank == 2, "ctrec::layers::irazor: the input must be (B, N, K)");
    static_assert(L >= 2, "ctrec::layers::irazor: nas_space needs at least two boundaries, e.g. {0, K}");
    static_assert(detail::irazor_nondecreasing<C>(), "ctrec::layers::irazor: nas_space must be non-decreasing");
    static_assert(C.t > 0.0, "ctrec::layers::irazor: the temperature t must be positive");
    constexpr std::size_t N = X::shape.d[0], K = X::shape.d[1];
    constexpr std::size_t K0 = C.nas_space[0];
    static_assert(L < 2 || K == C.nas_space[L > 0 ? L - 1 : 0],
                  "ctrec::layers::irazor: the embedding width K must equal max(nas_space)");
    constexpr bool has_fw = !is_zero_v<FW>;
    static_assert(!has_fw || (!FW::batched && FW::shape.size() == N &&
                              (FW::shape.rank == 1 || (FW::shape.rank == 2 && FW::shape.d[0] == 1))),
                  "ctrec::layers::irazor: feature_weight must be an unbatched (N) or (1, N) expression");
    detail::irazor_leading_zero_columns<(K0 > 0 && !C.leading_zero_columns)>();

    constexpr auto wname = scoped<Scope, "nas_weight">();
    constexpr auto w = param_node<wname, make_dims<N, L>()>{};
    constexpr auto P = softmax<1>(w / lit<C.t>);
    constexpr auto M = [&] {
        constexpr auto cols = detail::irazor_columns<C, K0, K>(P);
        if constexpr (K0 > 0) return pad_node<1, K0, 0, std::remove_cvref_t<decltype(cols)>>{};
        else return cols;
    }();
    constexpr auto Y = x * M;
    constexpr auto out = merge<C.out_type, C.keep_list>(Y);
    constexpr auto pen = penalty<C.regularizer>(w);
    constexpr auto nas_loss = [&] {
        if constexpr (has_fw) return sum(reshape<N>(FW{}) * sum<1>(M));
        else return scalar_zero{};
    }();
    using inits = tlist<param_init<wname, make_dims<N, L>(), C.initializer>>;
    return detail::irazor_result<std::remove_cvref_t<decltype(out)>, std::remove_cvref_t<decltype(pen)>, inits,
                                 std::remove_cvref_t<decltype(nas_loss)>>{};
}

// Without feature weights: no auxiliary loss (nas_loss is a symbolic zero).
template <fixed_string Scope, irazor_config C, node X>
constexpr auto irazor(X x) { return irazor<Scope, C>(x, scalar_zero{}); }

} // namespace ctrec::layers
