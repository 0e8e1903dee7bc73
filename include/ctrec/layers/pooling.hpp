#pragma once
// SumPooling, AvgPooling, MaxPooling (spec layers-core-and-cross.md 1.10): combine M >= 1
// tensors of identical shape elementwise. With M = 1 the tensor is returned unchanged (Avg
// does not divide by 1). Max stacks along a new leading axis and reduces it, so its
// derivative splits the cotangent equally among tied inputs (TF's reduce_max gradient).
// No variables.
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

namespace detail {
template <node X0, node... X>
constexpr bool same_shapes() {
    return ((X::shape == X0::shape && X::batched == X0::batched) && ...);
}
template <node X0, node... X>
constexpr void check_pool() {
    static_assert(same_shapes<X0, X...>(),
                  "ctrec::layers pooling: every input must have the same shape (no broadcasting)");
}
} // namespace detail

template <node X0, node... X>
constexpr auto sum_pooling(X0 x0, X... xs) {
    detail::check_pool<X0, X...>();
    if constexpr (sizeof...(X) == 0) return x0;
    else return (x0 + ... + xs);
}
template <node X0, node... X>
constexpr auto avg_pooling(X0 x0, X... xs) {
    detail::check_pool<X0, X...>();
    if constexpr (sizeof...(X) == 0) return x0;
    else return (x0 + ... + xs) * lit<1.0 / static_cast<double>(1 + sizeof...(X))>;
}
template <node X0, node... X>
constexpr auto max_pooling(X0 x0, X... xs) {
    detail::check_pool<X0, X...>();
    if constexpr (sizeof...(X) == 0) return x0;
    else return reshape_node<X0::shape, std::remove_cvref_t<decltype(max<0>(stack<0>(x0, xs...)))>>{};
}

} // namespace ctrec::layers
