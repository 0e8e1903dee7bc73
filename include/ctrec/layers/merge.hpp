#pragma once
// MergeType and merge_tensor_list (spec layers-core-and-cross.md 1.1): how layers with an
// out_type / keep_list option shape their output. ctrec's axes are per example (the batch
// is implicit), so the spec's axis 1 is ctrec's axis 0 here, and (B, N, K) is shape (N, K).
//
//   one (N, K) tensor        stack: unchanged          concat: (N*K), out[n*K + k] = t[n, k]
//                            none:  std::tuple of N (K) tensors (unstacked along N)
//   one (W) tensor, with num_feature F > 1 (merge_features): K = W / F (must divide)
//                            stack: (F, K)             concat: unchanged
//                            none:  std::tuple of F (K) tensors
//   one (W) tensor without num_feature: unchanged for every merge type (no list, even for none)
//   a list of >= 2 tensors (merge_list): stack along a new axis 0, concat along axis 0, or
//                            none: the list itself as a std::tuple
// keep_list wraps a stack / concat result in a one-element std::tuple; for none (already a
// list) it changes nothing, as in the source. Other ranks are rejected at compile time.
#include <tuple>

#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

enum class merge_type { stack, concat, none };

namespace detail {
template <node X, std::size_t... I>
constexpr auto unstack(X x, std::index_sequence<I...>) {
    constexpr std::size_t K = X::shape.d[1];
    return std::tuple{reshape_node<make_dims<K>(), std::remove_cvref_t<decltype(slice<0, I, I + 1>(x))>>{}...};
}
template <bool KeepList, class R>
constexpr auto wrap(R r) {
    if constexpr (KeepList) return std::tuple{r};
    else return r;
}
} // namespace detail

// A single tensor of per-example rank 1 or 2.
template <merge_type T, bool KeepList = false, node X>
constexpr auto merge(X x) {
    static_assert(X::shape.rank == 1 || X::shape.rank == 2,
                  "ctrec::layers::merge: shape error (a (B, N, K) or (B, W) tensor is expected)");
    if constexpr (X::shape.rank == 1) {
        return detail::wrap<KeepList>(x);
    } else if constexpr (T == merge_type::stack) {
        return detail::wrap<KeepList>(x);
    } else if constexpr (T == merge_type::concat) {
        return detail::wrap<KeepList>(reshape<X::shape.d[0] * X::shape.d[1]>(x));
    } else {
        return detail::unstack(x, std::make_index_sequence<X::shape.d[0]>{});
    }
}

// A single (W) tensor holding NumFeature features of W / NumFeature values each.
template <merge_type T, std::size_t NumFeature, bool KeepList = false, node X>
constexpr auto merge_features(X x) {
    static_assert(X::shape.rank == 1, "ctrec::layers::merge_features: a (B, W) tensor is expected");
    if constexpr (NumFeature <= 1) {
        return merge<T, KeepList>(x);
    } else {
        static_assert(X::shape.d[0] % NumFeature == 0,
                      "ctrec::layers::merge_features: the width must be a multiple of num_feature");
        constexpr std::size_t K = X::shape.d[0] / NumFeature;
        if constexpr (T == merge_type::concat) return detail::wrap<KeepList>(x);
        else if constexpr (T == merge_type::stack) return detail::wrap<KeepList>(reshape<NumFeature, K>(x));
        else return merge<merge_type::none>(reshape<NumFeature, K>(x));
    }
}

// A list of >= 2 tensors of one shape.
template <merge_type T, bool KeepList = false, node X0, node... X>
constexpr auto merge_list(X0 x0, X... xs) {
    static_assert(sizeof...(X) >= 1, "ctrec::layers::merge_list: give at least two tensors (one: use merge)");
    if constexpr (T == merge_type::stack) return detail::wrap<KeepList>(stack<0>(x0, xs...));
    else if constexpr (T == merge_type::concat) return detail::wrap<KeepList>(concat<0>(x0, xs...));
    else return std::tuple{x0, xs...};
}

} // namespace ctrec::layers
