#pragma once
// SumPooling, AvgPooling, MaxPooling (spec layers-core-and-cross.md 1.10): combine M >= 1
// expressions of identical shape elementwise. No variables, so these return plain
// expressions (wrap with as_result() to chain them with then()).
//
//   sum_pooling(a, b, c)   a + b + c
//   avg_pooling(a, b, c)   (a + b + c) / 3   (a division, as in the spec, not a product with 1/M)
//   max_pooling(a, b, c)   elementwise max
//
// With M = 1 the expression is returned unchanged for all three (Avg does not divide by 1).
// The source rejects broadcasting (every input has the same shape), and so does ctrec, even
// where the DSL's elementwise ops would broadcast.
//
// Max is a reduce-max over a new leading stacked axis, as in the source: reduce-max's
// derivative splits the cotangent equally among tied inputs (TF's reduce_max gradient,
// spec 1.10.6), which an elementwise chain of maximum() would not.
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

namespace detail {
template <node X0, node... X>
inline constexpr bool pool_same_shapes = ((X::shape == X0::shape && X::batched == X0::batched) && ...);
} // namespace detail

// Each function asserts in its own body (so the message is the first error) and then
// builds nothing, so no follow-on shape errors bury it.
template <node X0, node... X>
constexpr auto sum_pooling(X0 x0, X... xs) {
    static_assert(detail::pool_same_shapes<X0, X...>,
                  "ctrec::layers::sum_pooling: every input must have the same shape (no broadcasting)");
    if constexpr (sizeof...(X) == 0 || !detail::pool_same_shapes<X0, X...>) return x0;
    else return (x0 + ... + xs);
}

template <node X0, node... X>
constexpr auto avg_pooling(X0 x0, X... xs) {
    static_assert(detail::pool_same_shapes<X0, X...>,
                  "ctrec::layers::avg_pooling: every input must have the same shape (no broadcasting)");
    if constexpr (sizeof...(X) == 0 || !detail::pool_same_shapes<X0, X...>) return x0;
    else return (x0 + ... + xs) / lit<static_cast<double>(1 + sizeof...(X))>;
}

template <node X0, node... X>
constexpr auto max_pooling(X0 x0, X... xs) {
    static_assert(detail::pool_same_shapes<X0, X...>,
                  "ctrec::layers::max_pooling: every input must have the same shape (no broadcasting)");
    if constexpr (sizeof...(X) == 0 || !detail::pool_same_shapes<X0, X...>) return x0;
    else return max<0>(stack<0>(x0, xs...));  // (M, s...) reduced over axis 0: (s...)
}

} // namespace ctrec::layers
