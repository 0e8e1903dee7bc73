#pragma once
// MLP (spec layers-core-and-cross.md section 3): a stack of Dense layers with per-layer
// activations and optional batch normalisation on the input and on every hidden Dense
// output (before its activation), never on the last layer.
//
//   constexpr layers::mlp_config<4> cfg{.output_dims = {512, 256, 128, 1}};
//   constexpr auto r = layers::mlp<"mlp", cfg, layers::mode::predict>(x);
//
// The mode is explicit: mode::train uses batch statistics and declares the moving-
// statistics updates (r.updates, applied by train_program); eval / predict use the moving
// statistics. (In Monolith it depends on the Keras training flag, spec 1.5.)
//
// Layer stack and variable names under the MLP scope, in creation order:
//   BatchNorm/in (if BN) ; dense_0 ; BatchNorm/out (if BN) ; act_0 ; dense_1 ;
//   BatchNorm/out_1 ; act_1 ; ... ; dense_{n-1} ; act_{n-1} (if any)
// The hidden BNs all carry the layer name "BatchNorm/out" in Monolith, and TF makes them
// unique; ctrec names the k-th one (the BN after dense_k) "BatchNorm/out" for k = 0 and
// "BatchNorm/out_k" after, which an importer maps by creation order (spec 3.4). A PReLU
// activation owns "p_re_lu/alpha", "p_re_lu_1/alpha", ... (Keras auto-names).
//
// Activations (Monolith's registry, ad_activation): `activation` (default relu) is used for
// layers 0 .. n-2 and the last layer gets none, as for Monolith's None or single value;
// with activation_list = true, `activations[i]` is used for layer i (act_none = no
// activation). Weight norm is on by default (use_weight_norm, use_learnable_weight_norm).
//
// Implementation:
// MLP: Dense layers with per-layer activations and optional batch
// normalisation, exactly as documented above (layer stack, variable names and
// creation order, Keras auto-names of the hidden BatchNorms and PReLUs, weight norm defaults).
// The stack is a loop, not a template recursion: one constexpr call whatever the depth.
#include "ctrec/layers/batch_norm.hpp"
#include "ctrec/layers/dense.hpp"

namespace ctrec::layers {

template <std::size_t N>
struct mlp_config {
    std::array<std::size_t, N> output_dims{};
    layers::activation activation = act_relu;
    std::array<layers::activation, N> activations{};
    bool activation_list = false;
    std::array<init::spec, N> initializers{};  // kernel initializer per layer (glorot_uniform)
    regularizer kernel_regularizer{};
    regularizer bias_regularizer{};
    bool use_weight_norm = true;
    bool use_learnable_weight_norm = true;
    bool use_bias = true;
    bool enable_batch_normalization = false;
    double batch_normalization_momentum = 0.99;
    bool batch_normalization_renorm = false;
    // renorm_clipping: Keras' dict {rmax, rmin, dmax}; a missing key is its default here
    double renorm_rmax = std::numeric_limits<double>::infinity();
    double renorm_rmin = 0.0;
    double renorm_dmax = std::numeric_limits<double>::infinity();
    double batch_normalization_renorm_momentum = 0.99;
    bool monolith_compat = false;  // passed to every Dense (kernel norm without learnable scale)
};



void ctrec_shape_error_mlp_output_dims_must_not_be_empty();

namespace detail {
template <std::size_t N>
constexpr activation mlp_activation(const mlp_config<N>& c, std::size_t i) {
    if (c.activation_list) return c.activations[i];
    return i + 1 < N ? c.activation : ctrec::layers::act_none;
}
// Keras auto-names: "name" for k = 0, "name_k" after
constexpr name_string keras_name(std::string_view prefix, std::size_t k) {
    return k == 0 ? name_string(prefix) : name_string(prefix) + "_" + k;
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
constexpr val mlp(result& m, const name_string& s, const mlp_config<N>& c, mode M, val x) {
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
        x = dense(m, scoped(s, (name_string("dense_") + i).view()), dc, x);
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

} // namespace ctrec::layers
