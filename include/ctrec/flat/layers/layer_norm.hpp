#pragma once
// LayerNorm (spec layers-core-and-cross.md 1.8) on the graph-as-data core, exactly as
// ctrec/layers/layer_norm.hpp documents it: over the last axis only (any rank), biased variance,
// epsilon 1e-6, y = (x - mu) rsqrt(s2 + 1e-6) gamma + beta; "<scope>/beta" (zeros) then
// "<scope>/gamma" (initializer, ones by default), the regularizer on both. The source's
// stop_gradient on mu inside the variance changes no exact gradient, so it is left out.
#include "ctrec/flat/layers/layer.hpp"
#include "ctrec/layers/layer_norm.hpp"  // layer_norm_config

namespace ctrec::flat::layers {

using ctrec::layers::layer_norm_config;

void ctrec_shape_error_layer_norm_input_must_be_a_batched_tensor_B_by_D();

constexpr val layer_norm(result& m, const label& s, const layer_norm_config& c, val x) {
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

} // namespace ctrec::flat::layers
