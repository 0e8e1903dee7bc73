#pragma once
// LayerNorm (spec layers-core-and-cross.md 1.8): per-example normalisation over the last
// axis only, the same in every mode:
//   mu = mean(x), s2 = mean((x - mu)^2), y = gamma (x - mu) rsqrt(s2 + 1e-6) + beta.
// Epsilon is 1e-6 (Keras' LayerNormalization uses 1e-3: not this layer). Variables, in
// creation order: "<scope>/beta" (zeros), "<scope>/gamma" (initializer; the original makes
// it a required argument, None meaning ones). The regularizer applies to both.
// Written from primitives, so its gradient (the standard layer-norm gradient) follows.
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

struct layer_norm_config {
    init::spec initializer = init::Ones{};  // gamma's
    layers::regularizer regularizer{};
};

template <fixed_string Scope, layer_norm_config C = layer_norm_config{}, node X>
constexpr auto layer_norm(X x) {
    static_assert(X::batched && X::shape.rank >= 1, "ctrec::layers::layer_norm: the input must be a batched tensor (B, ..., D)");
    constexpr std::size_t last = X::shape.rank - 1, D = X::shape.d[last];
    constexpr dims vs = make_dims<D>();
    constexpr dims kd = keepdims(X::shape, 1u << last);
    constexpr auto beta = param_node<scoped<Scope, "beta">(), vs>{};
    constexpr auto gamma = param_node<scoped<Scope, "gamma">(), vs>{};
    constexpr auto mu = reshape_node<kd, std::remove_cvref_t<decltype(mean<last>(x))>>{};
    constexpr auto dev = x - mu;
    constexpr auto var = reshape_node<kd, std::remove_cvref_t<decltype(mean<last>(dev * dev))>>{};
    constexpr auto y = dev * rsqrt(var + lit<1e-6>) * gamma + beta;
    constexpr auto pen = penalty<C.regularizer>(beta) + penalty<C.regularizer>(gamma);
    using inits = tlist<param_init<scoped<Scope, "beta">(), vs, init::Zeros{}>,
                        param_init<scoped<Scope, "gamma">(), vs, C.initializer>>;
    using P = std::conditional_t<C.regularizer.active(), std::remove_cvref_t<decltype(pen)>, scalar_zero>;
    return result<std::remove_cvref_t<decltype(y)>, P, tlist<>, inits>{};
}

} // namespace ctrec::layers
