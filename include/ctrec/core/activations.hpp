#pragma once
// The activations Monolith registers (spec: layers-core-and-cross.md, 1.2),
// written from primitives so that their derivatives follow from the primitive
// rules. Kinks follow TF: relu'(0) = 0, leaky relu' = alpha for x <= 0,
// thresholded relu' = 0 for x <= theta, hard_sigmoid passes its slope on the
// closed interval. Branches that are not selected are evaluated at clamped
// inputs so that neither their value nor their derivative can be inf/NaN.
// (prelu and softmax-as-activation carry state / an axis: they are layers.)
#include "ctrec/core/dsl.hpp"

namespace ctrec::act {

template <node A> constexpr auto linear(A x) { return x; }
template <node A> constexpr auto exponential(A x) { return ctrec::exp(x); }
template <node A> constexpr auto sigmoid(A x) { return ctrec::sigmoid(x); }
template <node A> constexpr auto tanh(A x) { return ctrec::tanh(x); }
// Monolith's sigmoid2: 2 / (1 + e^-x)
template <node A> constexpr auto sigmoid2(A x) { return lit<2.0> * ctrec::sigmoid(x); }

// Keras ReLU(max_value, negative_slope, threshold); MaxValue < 0 means "none".
template <double MaxValue = -1.0, double NegativeSlope = 0.0, double Threshold = 0.0, node A>
constexpr auto keras_relu(A x) {
    auto p = where(greater(x, lit<Threshold>), x, lit<0.0>);
    auto clipped = [&] {
        if constexpr (MaxValue >= 0.0) return minimum(maximum(p, lit<0.0>), lit<MaxValue>);
        else return p;
    }();
    if constexpr (NegativeSlope == 0.0) return clipped;
    else return clipped - lit<NegativeSlope> * maximum(lit<Threshold> - x, lit<0.0>);
}
template <node A> constexpr auto relu(A) { return map_node<op_relu, A>{}; }
template <double Alpha = 0.3, node A>
constexpr auto leakyrelu(A x) { return where(greater(x, lit<0.0>), x, lit<Alpha> * x); }
template <double Theta = 1.0, node A>
constexpr auto thresholdedrelu(A x) { return where(greater(x, lit<Theta>), x, lit<0.0>); }
template <double Alpha = 1.0, node A>
constexpr auto elu(A x) {
    return where(greater(x, lit<0.0>), x, lit<Alpha> * (ctrec::exp(minimum(x, lit<0.0>)) - lit<1.0>));
}
template <node A>
constexpr auto selu(A x) {
    constexpr double alpha = 1.6732632423543772, lambda = 1.0507009873554805;
    return lit<lambda> * where(greater(x, lit<0.0>), x, lit<alpha> * (ctrec::exp(minimum(x, lit<0.0>)) - lit<1.0>));
}
// exact GELU: 0.5 x (1 + erf(x / sqrt 2))
template <node A>
constexpr auto gelu(A x) { return lit<0.5> * x * (lit<1.0> + erf(x * lit<0.7071067811865476>)); }
// TF 2.4 Keras hard_sigmoid: clip(0.2 x + 0.5, 0, 1)
template <node A>
constexpr auto hard_sigmoid(A x) { return minimum(maximum(lit<0.2> * x + lit<0.5>, lit<0.0>), lit<1.0>); }
// softplus = log(1 + e^x), stable on both sides
template <node A>
constexpr auto softplus(A x) {
    return where(greater(x, lit<0.0>), x + log1p(ctrec::exp(-maximum(x, lit<0.0>))),
                 log1p(ctrec::exp(minimum(x, lit<0.0>))));
}
template <node A> constexpr auto softsign(A x) { return x / (lit<1.0> + ctrec::abs(x)); }
template <node A> constexpr auto swish(A x) { return x * ctrec::sigmoid(x); }

} // namespace ctrec::act
