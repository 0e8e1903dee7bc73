#pragma once
// LayerNorm (spec layers-core-and-cross.md 1.8): per-example normalisation over the last
// axis only (also for rank > 2), the same in every mode:
//   mu = mean(x), s2 = mean((x - mu)^2) (biased), y = gamma (x - mu) rsqrt(s2 + 1e-6) + beta.
// Epsilon is 1e-6 (Keras' LayerNormalization uses 1e-3: not this layer).
// Variables, in creation order: "<scope>/beta" (D) zeros, then "<scope>/gamma" (D) from the
// initializer (the source makes it a required argument; None means ones, ctrec's default).
// The regularizer applies to both.
//
// Written from DSL primitives (mean over the last axis, reshaped to keepdims so it
// broadcasts back over that axis, and rsqrt), so the standard layer-norm gradient follows
// from their derivatives. The source's stop-gradient on mu inside the variance changes
// nothing in the exact gradient (d s2 / d mu = 0), so it is left out.
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

struct layer_norm_config {
    init::spec initializer = init::Ones{};  // gamma's
    layers::regularizer regularizer{};
};

template <fixed_string Scope, layer_norm_config C = layer_norm_config{}, node X>
constexpr auto layer_norm(X x) {
    static_assert(X::batched && X::shape.rank >= 1,
                  "ctrec::layers::layer_norm: the input must be a batched tensor (B, ..., D)");
    constexpr std::size_t last = X::shape.rank - 1, D = X::shape.d[last];
    constexpr dims vs = make_dims<D>();
    constexpr dims kd = keepdims(X::shape, 1u << last);  // (..., 1)
    constexpr auto beta_name = scoped<Scope, "beta">();
    constexpr auto gamma_name = scoped<Scope, "gamma">();
    constexpr auto beta = param_node<beta_name, vs>{};
    constexpr auto gamma = param_node<gamma_name, vs>{};
    constexpr auto mu = reshape_node<kd, std::remove_cvref_t<decltype(mean<last>(x))>>{};
    constexpr auto dev = x - mu;
    constexpr auto var = reshape_node<kd, std::remove_cvref_t<decltype(mean<last>(dev * dev))>>{};
    constexpr auto y = dev * rsqrt(var + lit<1e-6>) * gamma + beta;
    // add_t folds zero + zero into one symbolic zero when there is no regularizer
    using pen = add_t<std::remove_cvref_t<decltype(penalty<C.regularizer>(beta))>,
                      std::remove_cvref_t<decltype(penalty<C.regularizer>(gamma))>>;
    using inits = tlist<param_init<beta_name, vs, init::Zeros{}>, param_init<gamma_name, vs, C.initializer>>;
    return result<std::remove_cvref_t<decltype(y)>, pen, tlist<>, inits>{};
}

} // namespace ctrec::layers
