#pragma once
// Losses as expressions: per-example values (batched), so a model chooses its own batch
// reduction (batch_mean, a weighted mean, a sum) and several tasks combine with weighted_sum.
//
//   constexpr auto y = ctrec::input<"click", 1>;
//   constexpr auto l = ctrec::batch_mean(ctrec::sigmoid_cross_entropy(logit, y));
//
// Every form is written so that its value and its derivative stay finite and accurate for
// logits of any magnitude (tested at |logit| = 1e4): no exp of a large positive number is ever
// evaluated, on either branch of a select (the unselected branch's derivative is multiplied by
// zero, and 0 * inf would be NaN).
//
// NaN is not caught: a NaN logit or label gives that example a NaN loss, and through a batch
// mean a NaN loss and NaN gradients for every parameter it reaches; check the loss is finite
// before applying an update. A zero sample weight does not mask it (0 * NaN = NaN): drop the
// example or replace its label (tests/test_numerics_3.cpp).
#include "ctrec/core/dsl.hpp"
#include "ctrec/core/val.hpp"

namespace ctrec {

void ctrec_error_weighted_sum_needs_one_weight_per_loss();

// softplus(x) = ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|), each branch fed a value that cannot
// overflow; derivative sigmoid(x).
constexpr expr softplus(const expr& x) {
    const expr zero = constant(0.0);
    return where(greater(x, zero), x + log1p(exp(-maximum(x, zero))), log1p(exp(minimum(x, zero))));
}

// log(sigmoid(x)) = -softplus(-x); derivative sigmoid(-x).
constexpr expr log_sigmoid(const expr& x) { return -softplus(-x); }

// Sigmoid cross-entropy from logits, elementwise (TF's sigmoid_cross_entropy_with_logits):
// -y ln sigmoid(x) - (1 - y) ln(1 - sigmoid(x)) = softplus(x) - x y. Labels may be soft (in [0, 1]).
// Derivative in x: sigmoid(x) - y.
constexpr expr sigmoid_cross_entropy(const expr& logits, const expr& labels) {
    return softplus(logits) - logits * labels;
}
// The same, times per-example (or per-element) sample weights.
constexpr expr sigmoid_cross_entropy(const expr& logits, const expr& labels, const expr& weights) {
    return sigmoid_cross_entropy(logits, labels) * weights;
}

// log(sum(exp(x))) along `axis`, max-shifted (the shift under stop_gradient: the value does not
// depend on it), keeping the axis as size 1.
constexpr expr log_sum_exp(const expr& x, std::size_t axis) {
    const dims kd = keepdims(x.shape(), 1u << axis);
    const expr m = reshape(stop_gradient(max(x, {axis})), kd);
    return m + reshape(log(sum(exp(x - m), {axis})), kd);
}

// Softmax cross-entropy over the last axis, labels a distribution over it (one-hot or soft):
// -sum_c y_c (x_c - logsumexp(x)). One value per row: the last axis is reduced.
// Derivative in x: softmax(x) * sum_c y_c - y.
// x - logsumexp(x) is computed as (x - m) - ln sum exp(x - m): adding the max m back first and
// subtracting x again would round to the spacing of |x| (4.9e-4 at 1e4 in float).
constexpr expr softmax_cross_entropy(const expr& logits, const expr& labels) {
    const std::size_t a = logits.shape().rank - 1;
    const dims kd = keepdims(logits.shape(), 1u << a);
    const expr d = logits - reshape(stop_gradient(max(logits, {a})), kd);
    return -sum(labels * (d - reshape(log(sum(exp(d), {a})), kd)), {a});
}

// Mean squared error over the last axis (Keras' mean_squared_error): one value per row.
constexpr expr mean_squared_error(const expr& pred, const expr& target) {
    const std::size_t a = pred.shape().rank - 1;
    const expr d = pred - target;
    return sum(d * d, {a}) / constant(static_cast<double>(pred.shape().d[a]));
}

// The same forms on in-place values (core/val.hpp), for models written as one constexpr function.
constexpr val softplus(val x) {
    return where(greater(x, 0.0), x + log1p(exp(-maximum(x, 0.0))), log1p(exp(minimum(x, 0.0))));
}
constexpr val log_sigmoid(val x) { return -softplus(-x); }
constexpr val sigmoid_cross_entropy(val logits, val labels) { return softplus(logits) - logits * labels; }
constexpr val sigmoid_cross_entropy(val logits, val labels, val weights) {
    return sigmoid_cross_entropy(logits, labels) * weights;
}

// sum(loss * w) / sum(w) over the batch (weights may be zero for padding examples); an unbatched
// scalar. loss and w are per-example scalars (shape (1) or ()).
constexpr expr weighted_mean(const expr& loss, const expr& w) {
    return sum(batch_sum(loss * w)) / sum(batch_sum(w));
}

// A multi-task objective: sum_t weight_t * loss_t (each loss a scalar expression, usually a
// batch mean per task).
constexpr expr weighted_sum(std::initializer_list<expr> losses, std::initializer_list<double> weights) {
    if (losses.size() != weights.size() || losses.size() == 0) ctrec_error_weighted_sum_needs_one_weight_per_loss();
    const expr* l = losses.begin();
    const double* w = weights.begin();
    expr r = l[0] * constant(w[0]);
    for (std::size_t i = 1; i < losses.size(); ++i) r = r + l[i] * constant(w[i]);
    return r;
}

} // namespace ctrec
