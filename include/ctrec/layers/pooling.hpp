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
//
// Implementation:
// SumPooling, AvgPooling, MaxPooling (spec layers-core-and-cross.md 1.10)
// core, with the decisions documented above: M >= 1 values of identical shape (no
// broadcasting), one value returned unchanged by all three, Avg a division by M.
//
//   val y = layers::max_pooling(xs, 3);                  // xs: const val*, any M
//   constexpr expr y = layers::max_pooling({a, b, c});   // expressions
//
// Max. The core's reduce_max has no derivative, and TF's reduce_max gradient splits the
// cotangent equally among tied inputs (spec 1.10.6). So, with the inputs stacked on a new axis 0
// and m = stop_gradient(max over it), mask = (x >= m) (no derivative):
//   y = m + sum_i((x_i - m) mask_i) / sum_i(mask_i)
// The value is m exactly (the masked differences are 0) and dy/dx_i = mask_i / #ties.
#include <initializer_list>
#include "ctrec/layers/merge_list.hpp"

namespace ctrec::layers {


void ctrec_shape_error_pooling_inputs_must_have_the_same_shape();
void ctrec_shape_error_pooling_needs_at_least_one_input();

namespace detail {
constexpr void pool_check(const val* xs, std::size_t n) {
    if (n == 0) ctrec_shape_error_pooling_needs_at_least_one_input();
    for (std::size_t i = 1; i < n; ++i)
        if (!(xs[i].shape() == xs[0].shape()) || xs[i].batched() != xs[0].batched())
            ctrec_shape_error_pooling_inputs_must_have_the_same_shape();
}
constexpr val pool_sum(const val* xs, std::size_t n) {
    val y = xs[0];
    for (std::size_t i = 1; i < n; ++i) y = y + xs[i];
    return y;
}
} // namespace detail

constexpr val sum_pooling(const val* xs, std::size_t n) {
    detail::pool_check(xs, n);
    return detail::pool_sum(xs, n);
}

constexpr val avg_pooling(const val* xs, std::size_t n) {
    detail::pool_check(xs, n);
    if (n == 1) return xs[0];
    return detail::pool_sum(xs, n) / static_cast<double>(n);
}

constexpr val max_pooling(const val* xs, std::size_t n) {
    detail::pool_check(xs, n);
    if (n == 1) return xs[0];
    const val s = merge_list(merge_type::stack, false, xs, n).single();  // (M, s...)
    const dims kd = keepdims(s.shape(), 1u);                               // (1, s...)
    const val m = stop_gradient(max(s, {0}));
    const val mb = reshape(m, kd);
    const val mask = stop_gradient(greater_equal(s, mb));
    return m + sum((s - mb) * mask, {0}) / sum(mask, {0});
}

// ---- on expressions (no variables: plain expressions come back) ----------------------------------
namespace detail {
template <class F>
constexpr expr pool_exprs(std::initializer_list<expr> es, F f) {
    result m = longest_expr(es);
    val xs[max_list]{};
    join_exprs(m, es, xs);
    m.set_out(f(xs, es.size()));
    return m.out();
}
} // namespace detail
constexpr expr sum_pooling(std::initializer_list<expr> es) {
    return detail::pool_exprs(es, [](const val* xs, std::size_t n) { return sum_pooling(xs, n); });
}
constexpr expr avg_pooling(std::initializer_list<expr> es) {
    return detail::pool_exprs(es, [](const val* xs, std::size_t n) { return avg_pooling(xs, n); });
}
constexpr expr max_pooling(std::initializer_list<expr> es) {
    return detail::pool_exprs(es, [](const val* xs, std::size_t n) { return max_pooling(xs, n); });
}

} // namespace ctrec::layers
