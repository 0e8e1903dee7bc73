#pragma once
// MLP on the graph-as-data core: Dense layers with per-layer activations and optional batch
// normalisation, exactly as ctrec/layers/mlp.hpp documents it (layer stack, variable names and
// creation order, Keras auto-names of the hidden BatchNorms and PReLUs, weight norm defaults).
// The stack is a loop, not a template recursion: one constexpr call whatever the depth.
#include "ctrec/flat/layers/batch_norm.hpp"
#include "ctrec/flat/layers/dense.hpp"
#include "ctrec/layers/mlp.hpp"  // mlp_config

namespace ctrec::flat::layers {

using ctrec::layers::mlp_config;

void ctrec_shape_error_mlp_output_dims_must_not_be_empty();

namespace detail {
template <std::size_t N>
constexpr activation mlp_activation(const mlp_config<N>& c, std::size_t i) {
    if (c.activation_list) return c.activations[i];
    return i + 1 < N ? c.activation : ctrec::layers::act_none;
}
// Keras auto-names: "name" for k = 0, "name_k" after
constexpr label keras_name(std::string_view prefix, std::size_t k) {
    return k == 0 ? label(prefix) : label(prefix) + "_" + k;
}
template <std::size_t N>
constexpr batch_norm_config mlp_bn_config(const mlp_config<N>& c) {
    batch_norm_config b{};
    b.momentum = c.batch_normalization_momentum;
    b.renorm = c.batch_normalization_renorm;
    b.rmax = c.renorm_rmax;
    b.rmin = c.renorm_rmin;
    b.dmax = c.renorm_dmax;
    b.renorm_momentum = c.batch_normalization_renorm_momentum;
    return b;
}
} // namespace detail

template <std::size_t N>
constexpr val mlp(result& m, const label& s, const mlp_config<N>& c, mode M, val x) {
    if (N == 0) ctrec_shape_error_mlp_output_dims_must_not_be_empty();
    const batch_norm_config bn = detail::mlp_bn_config(c);
    if (c.enable_batch_normalization) x = batch_norm(m, scoped(s, "BatchNorm/in"), M, bn, x);
    std::size_t prelus = 0;
    for (std::size_t i = 0; i < N; ++i) {
        dense_config dc{};
        dc.units = c.output_dims[i];
        dc.activation = ctrec::layers::act_linear;
        dc.use_bias = c.use_bias;
        dc.kernel_initializer = c.initializers[i];
        dc.bias_initializer = init::Zeros{};
        dc.kernel_regularizer = c.kernel_regularizer;
        dc.bias_regularizer = c.bias_regularizer;
        dc.allow_kernel_norm = c.use_weight_norm;
        dc.kernel_norm_trainable = c.use_learnable_weight_norm;
        dc.monolith_compat = c.monolith_compat;
        x = dense(m, scoped(s, (label("dense_") + i).view()), dc, x);
        if (c.enable_batch_normalization && i + 1 < N)
            x = batch_norm(m, scoped(s, detail::keras_name("BatchNorm/out", i).view()), M, bn, x);
        const activation A = detail::mlp_activation(c, i);
        if (A.w == act_which::prelu)
            x = apply_activation(m, A, scoped(s, detail::keras_name("p_re_lu", prelus++).view()), x);
        else
            x = apply_activation(m, A, s, x);
    }
    return x;
}

template <fixed_string Scope, auto C, mode M>
constexpr result mlp(const result& in) {
    result m = in;
    m.set_out(mlp(m, Scope.view(), C, M, m.value()));
    return m;
}

} // namespace ctrec::flat::layers
