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
#include <array>
#include <limits>

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

namespace detail {
template <auto C>
constexpr activation mlp_activation(std::size_t i) {
    constexpr std::size_t n = C.output_dims.size();
    if (C.activation_list) return C.activations[i];
    return i + 1 < n ? C.activation : act_none;
}
template <auto C>
constexpr std::size_t prelus_before(std::size_t i) {
    std::size_t k = 0;
    for (std::size_t j = 0; j < i; ++j) k += mlp_activation<C>(j).w == act_which::prelu;
    return k;
}
template <fixed_string Prefix, std::size_t K>
constexpr auto keras_name() {
    if constexpr (K == 0) return Prefix;
    else return indexed<join<Prefix, "_">(), K>();
}
template <auto C>
constexpr batch_norm_config mlp_bn_config() {
    batch_norm_config b{};
    b.momentum = C.batch_normalization_momentum;
    b.renorm = C.batch_normalization_renorm;
    b.rmax = C.renorm_rmax;
    b.rmin = C.renorm_rmin;
    b.dmax = C.renorm_dmax;
    b.renorm_momentum = C.batch_normalization_renorm_momentum;
    return b;
}

template <fixed_string S, auto C, mode M, std::size_t I, class R>
constexpr auto mlp_layers(R r) {
    constexpr std::size_t n = C.output_dims.size();
    if constexpr (I == n) {
        return r;
    } else {
        constexpr dense_config dc{.units = C.output_dims[I],
                                  .activation = act_linear,
                                  .use_bias = C.use_bias,
                                  .kernel_initializer = C.initializers[I],
                                  .bias_initializer = init::Zeros{},
                                  .kernel_regularizer = C.kernel_regularizer,
                                  .bias_regularizer = C.bias_regularizer,
                                  .allow_kernel_norm = C.use_weight_norm,
                                  .kernel_norm_trainable = C.use_learnable_weight_norm,
                                  .monolith_compat = C.monolith_compat};
        constexpr auto d = then(r, dense<scoped<S, indexed<"dense_", I>()>(), dc>(r.out));
        constexpr auto b = [&] {
            if constexpr (C.enable_batch_normalization && I + 1 < n)
                return then(d, batch_norm<scoped<S, keras_name<"BatchNorm/out", I>()>(), M, mlp_bn_config<C>()>(d.out));
            else
                return d;
        }();
        constexpr activation A = mlp_activation<C>(I);
        constexpr auto a = [&] {
            if constexpr (A.w == act_which::prelu) {
                constexpr auto ps = scoped<S, keras_name<"p_re_lu", prelus_before<C>(I)>()>();
                using Y = decltype(b.out);
                using init = tlist<param_init<scoped<ps, "alpha">(), Y::shape, init::Zeros{}>>;
                return then(b, result<decltype(apply_activation<A, ps>(b.out)), scalar_zero, tlist<>, init>{});
            } else {
                return then(b, as_result(apply_activation<A, S>(b.out)));
            }
        }();
        return mlp_layers<S, C, M, I + 1>(a);
    }
}
} // namespace detail

template <fixed_string Scope, auto C, mode M, node X>
constexpr auto mlp(X x) {
    static_assert(C.output_dims.size() >= 1, "ctrec::layers::mlp: output_dims must not be empty");
    constexpr auto in = [&] {
        if constexpr (C.enable_batch_normalization)
            return batch_norm<scoped<Scope, "BatchNorm/in">(), M, detail::mlp_bn_config<C>()>(x);
        else
            return as_result(x);
    }();
    return detail::mlp_layers<Scope, C, M, 0>(in);
}

} // namespace ctrec::layers
