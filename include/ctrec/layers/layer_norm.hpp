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
//
// Implementation:
// LayerNorm (spec layers-core-and-cross.md 1.8), exactly as
// ctrec/layers/layer_norm.hpp documents it: over the last axis only (any rank), biased variance,
// epsilon 1e-6, y = (x - mu) rsqrt(s2 + 1e-6) gamma + beta; "<scope>/beta" (zeros) then
// "<scope>/gamma" (initializer, ones by default), the regularizer on both. The source's
// stop_gradient on mu inside the variance changes no exact gradient, so it is left out.
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

struct layer_norm_config {
    init::spec initializer = init::Ones{};  // gamma's
    layers::regularizer regularizer{};
};



void ctrec_shape_error_layer_norm_input_must_be_a_batched_tensor_B_by_D();

constexpr val layer_norm(result& m, const name_string& s, const layer_norm_config& c, val x) {
    if (!x.batched() || x.rank() < 1) ctrec_shape_error_layer_norm_input_must_be_a_batched_tensor_B_by_D();
    const std::size_t last = x.rank() - 1, D = x.last();
    const dims vs = dims_of({D}), kd = keepdims(x.shape(), 1u << last);
    val beta = m.var(scoped(s, "beta").view(), vs, init::Zeros{});
    val gamma = m.var(scoped(s, "gamma").view(), vs, c.initializer);
    add_penalty(m, c.regularizer, beta);
    add_penalty(m, c.regularizer, gamma);
    const double inv_d = 1.0 / static_cast<double>(D);  // the type core's mean: sum * (1 / D)
    val dev = x - reshape(sum(x, {last}) * inv_d, kd);
    val var = reshape(sum(dev * dev, {last}) * inv_d, kd);
    return dev * rsqrt(var + 1e-6) * gamma + beta;
}

template <fixed_string Scope, layer_norm_config C = layer_norm_config{}>
constexpr result layer_norm(const result& in) {
    result m = in;
    m.set_out(layer_norm(m, Scope.view(), C, m.value()));
    return m;
}

} // namespace ctrec::layers
