#pragma once
// MergeType and merge_tensor_list (spec layers-core-and-cross.md 1.1): how layers with an
// out_type / keep_list option shape their output.
//
// Axes: ctrec's shapes are per example (the batch axis is implicit), so the spec's (B, N, K)
// is ctrec shape (N, K), its (B, W) is (W), and the spec's axis 1 (merge_tensor_list's
// default, and the only axis any layer passes) is ctrec's axis 0. These helpers always work
// on that axis.
//
// The rows of the spec's table a static model can express (keep_list = false | true):
//
//   merge<T>(x), x of shape (N, K)
//     stack   the tensor unchanged, (N, K)                       | std::tuple{x}
//     concat  (N*K), out[n*K + k] = x[n, k] (row-major reshape)    | std::tuple{out}
//     none    unstack along N: std::tuple of N (K) expressions     | the same tuple (ignored)
//   merge_features<T, F>(x), x of shape (W), num_feature F > 1, K = W / F
//     stack   reshape to (F, K)                                  | std::tuple{out}
//     concat  unchanged (W)                                      | std::tuple{x}
//     none    reshape to (F, K), then unstack: F (K) expressions   | the same tuple (ignored)
//   merge<T>(x) or merge_features<T, F <= 1>(x), x of shape (W)
//     any type, none included: unchanged (W), no list            | std::tuple{x}
//   merge_list<T>(x0, x1, ...), two or more expressions
//     stack   stack along a new axis 0: (n, s...)                 | std::tuple{out}
//     concat  concatenate along axis 0 (part i at rows [i*s0, (i+1)*s0) for equal parts)
//                                                                  | std::tuple{out}
//     none    the list itself, std::tuple{x0, x1, ...}           | the same tuple (ignored)
//
// Rejected at compile time: any other rank for a single tensor ("shape error" in the source),
// and a W that num_feature does not divide (the source truncates K = int(W / F), and its
// reshape then fails, or with an unknown batch silently regroups rows across examples).
#include <tuple>
#include <utility>

#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

// MergeType: "stack", "concat", None.
enum class merge_type { stack, concat, none };

namespace detail {
// x of shape (N, K) -> std::tuple of the N rows, each of shape (K)
template <node X, std::size_t... I>
constexpr auto unstack_rows(X x, std::index_sequence<I...>) {
    constexpr std::size_t K = X::shape.d[1];
    return std::tuple{reshape_node<make_dims<K>(), std::remove_cvref_t<decltype(slice<0, I, I + 1>(x))>>{}...};
}
template <node X>
constexpr auto unstack_rows(X x) { return unstack_rows(x, std::make_index_sequence<X::shape.d[0]>{}); }

// keep_list for stack / concat results (for none the result already is a list)
template <bool KeepList, class R>
constexpr auto keep_list(R r) {
    if constexpr (KeepList) return std::tuple{r};
    else return r;
}
} // namespace detail

// One tensor of per-example shape (N, K) or (W) (num_feature not given).
template <merge_type T, bool KeepList = false, node X>
constexpr auto merge(X x) {
    constexpr bool ok = X::shape.rank == 1 || X::shape.rank == 2;
    static_assert(ok, "ctrec::layers::merge: shape error: a (B, N, K) or (B, W) tensor is expected");
    if constexpr (!ok || X::shape.rank == 1) return detail::keep_list<KeepList>(x);
    else if constexpr (T == merge_type::stack) return detail::keep_list<KeepList>(x);
    else if constexpr (T == merge_type::concat) return detail::keep_list<KeepList>(reshape<X::shape.d[0] * X::shape.d[1]>(x));
    else return detail::unstack_rows(x);
}

// One tensor of per-example shape (W) holding NumFeature features of W / NumFeature values.
template <merge_type T, std::size_t NumFeature, bool KeepList = false, node X>
constexpr auto merge_features(X x) {
    static_assert(X::shape.rank == 1, "ctrec::layers::merge_features: a (B, W) tensor is expected");
    constexpr bool divides = X::shape.rank == 1 && NumFeature > 0 && X::shape.d[0] % NumFeature == 0;
    if constexpr (X::shape.rank != 1 || NumFeature <= 1) {
        return merge<T, KeepList>(x);  // num_feature None or <= 1: the (W) rows of the table
    } else {
        static_assert(divides, "ctrec::layers::merge_features: the width must be a multiple of num_feature");
        constexpr std::size_t K = divides ? X::shape.d[0] / NumFeature : 0;
        if constexpr (!divides || T == merge_type::concat) return detail::keep_list<KeepList>(x);
        else if constexpr (T == merge_type::stack) return detail::keep_list<KeepList>(reshape<NumFeature, K>(x));
        else return detail::unstack_rows(reshape<NumFeature, K>(x));
    }
}

// A list of two or more expressions (for one, use merge / merge_features: the source
// treats a one-element list exactly as that bare tensor).
template <merge_type T, bool KeepList = false, node X0, node... X>
constexpr auto merge_list(X0 x0, X... xs) {
    static_assert(sizeof...(X) >= 1, "ctrec::layers::merge_list: give at least two tensors (one: use merge)");
    if constexpr (sizeof...(X) == 0) return x0;
    else if constexpr (T == merge_type::stack) return detail::keep_list<KeepList>(stack<0>(x0, xs...));
    else if constexpr (T == merge_type::concat) return detail::keep_list<KeepList>(concat<0>(x0, xs...));
    else return std::tuple{x0, xs...};
}

} // namespace ctrec::layers
