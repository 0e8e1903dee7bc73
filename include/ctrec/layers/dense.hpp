#pragma once
// Dense (spec layers-core-and-cross.md section 2): y = act(x . W + b), with optional
// weight normalisation of W ("kernel norm") and the inactive-ReLU monitor.
//
//   constexpr auto r = layers::dense<"tower/dense", {.units = 64, .activation = act_relu}>(x);
//
// Variables (leaf names of the spec, scoped by the layer path):
//   kernel (D_in, U), trainable_kernel_norm (U,) [kernel norm, trainable], kernel_norm (U,)
//   [kernel norm, fixed: ctrec default, see below], bias (U,), inactive_relu_count_moving_avg
//   (U,) [monitor; a state variable updated by training steps].
//
// Kernel norm (allow_kernel_norm): V^_j = V_j / sqrt(max(|V_j|^2, 1e-6)) per output column
// (TF l2_normalize over axis 0, epsilon on the squared norm), then
//   kernel_norm_trainable = true:  W = V^ * g, g = trainable_kernel_norm, initialised to the
//                                   column norms of the initial kernel (W = W0 at init);
//   kernel_norm_trainable = false: the documented behaviour (the default): W = V^ * g0
//                                   with g0 = kernel_norm, the fixed (non-trainable, no
//                                   gradient) column norms of the initial kernel; with
//                                   monolith_compat = true the source's behaviour, W = V^
//                                   (unit columns, no scale, no extra variable).
// W reads parameters only, so the plan caches it with the parameters (recomputed by
// parameters::prepare when weights change), never per example or per call. In reverse
// mode G = x^T g_z is summed over the batch first and the normalisation's VJP runs once.
//
// Inactive-ReLU monitor (requires activation relu and a per-example vector output; both
// checked at compile time): a state update of inactive_relu_count_moving_avg with decay d
// (the weight of the new observation), m <- (1 - d) m + d c:
//   default (documented):  c_j = fraction of the batch with y_j != 0 (the ReLU non-zero rate);
//   monolith_compat:       c_j = U - #{b : y_bj != 0}, the source's statistic (it mixes the
//                          unit count with a row count; reproduced for parity).
// Like the source, the update exists whatever the mode; it is applied only by training
// steps (train_program), never by scoring.
//
// partitioner: meaningless in a single-process static model. Partitioning never changes
// the mathematics (spec 2.5), so ctrec has no partitioner argument; a weight importer
// concatenates the shards "<leaf>/part_0 ... part_{n-1}" along axis 0 in increasing order
// (layers/partitioner.hpp: TF's shard count and sizes, and a checked concat_shards).
// optimizer: likewise not part of the layer (the training loop chooses per variable).
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

struct dense_config {
    std::size_t units = 0;
    layers::activation activation = act_linear;  // Keras resolver (keras_activation)
    bool use_bias = true;
    init::spec kernel_initializer = init::GlorotUniform{};
    init::spec bias_initializer = init::Zeros{};
    regularizer kernel_regularizer{};  // on the raw kernel, before normalisation
    regularizer bias_regularizer{};
    bool allow_kernel_norm = false;
    bool kernel_norm_trainable = false;
    bool inactive_relu_monitor = false;
    double inactive_relu_monitor_decay = 0.1;
    bool monolith_compat = false;  // the source's variants (see the header comment)
};

namespace detail {
template <fixed_string S, dense_config C, std::size_t In>
constexpr auto effective_kernel() {
    constexpr auto V = param_node<scoped<S, "kernel">(), make_dims<In, C.units>()>{};
    if constexpr (!C.allow_kernel_norm) {
        return V;
    } else {
        constexpr auto unit = l2_normalize<0, 1e-6>(V);
        if constexpr (C.kernel_norm_trainable)
            return unit * param_node<scoped<S, "trainable_kernel_norm">(), make_dims<C.units>()>{};
        else if constexpr (C.monolith_compat)
            return unit;
        else
            return unit * stop_gradient(param_node<scoped<S, "kernel_norm">(), make_dims<C.units>()>{});
    }
}
} // namespace detail

template <fixed_string Scope, dense_config C, node X>
constexpr auto dense(X x) {
    static_assert(C.units > 0, "ctrec::layers::dense: units must be positive");
    // An unbatched input is a shared (per-call) value, e.g. a user's pooled behaviours when one
    // user is scored against a batch of candidates: it is projected once per call.
    static_assert(X::shape.rank >= 1, "ctrec::layers::dense: the input must be a tensor (B, ..., D_in)");
    static_assert(!C.inactive_relu_monitor || C.activation == act_relu,
                  "ctrec::layers::dense: inactive_relu_monitor needs activation relu");
    static_assert(!C.inactive_relu_monitor || X::shape.rank == 1,
                  "ctrec::layers::dense: inactive_relu_monitor needs a (B, D_in) input");
    constexpr std::size_t In = X::shape.d[X::shape.rank - 1];
    constexpr dims kshape = make_dims<In, C.units>();
    constexpr dims ushape = make_dims<C.units>();
    constexpr auto kernel_name = scoped<Scope, "kernel">();
    constexpr auto bias = param_node<scoped<Scope, "bias">(), ushape>{};

    constexpr auto z = [&] {
        constexpr auto xw = matmul(x, detail::effective_kernel<Scope, C, In>());
        if constexpr (C.use_bias) return xw + bias;
        else return xw;
    }();
    constexpr auto y = apply_activation<C.activation, Scope>(z);

    constexpr auto pen = [&] {
        constexpr auto pk = penalty<C.kernel_regularizer>(param_node<kernel_name, kshape>{});
        if constexpr (C.use_bias) return add_t<std::remove_cvref_t<decltype(pk)>, decltype(penalty<C.bias_regularizer>(bias))>{};
        else return pk;
    }();

    using kernel_init = tlist<param_init<kernel_name, kshape, C.kernel_initializer>>;
    using bias_init = std::conditional_t<C.use_bias, tlist<param_init<scoped<Scope, "bias">(), ushape, C.bias_initializer>>, tlist<>>;
    using norm_init = std::conditional_t<
        C.allow_kernel_norm && C.kernel_norm_trainable,
        tlist<column_norm_init<scoped<Scope, "trainable_kernel_norm">(), kernel_name, ushape>>,
        std::conditional_t<C.allow_kernel_norm && !C.monolith_compat,
                           tlist<column_norm_init<scoped<Scope, "kernel_norm">(), kernel_name, ushape>>, tlist<>>>;

    if constexpr (C.inactive_relu_monitor) {
        constexpr auto m = param_node<scoped<Scope, "inactive_relu_count_moving_avg">(), ushape>{};
        constexpr auto active = stop_gradient(greater(y, lit<0.0>));  // relu output != 0
        constexpr auto stat = [&] {
            if constexpr (C.monolith_compat) return lit<static_cast<double>(C.units)> - batch_sum(active);
            else return batch_mean(active);
        }();
        constexpr double d = C.inactive_relu_monitor_decay;
        constexpr auto next = lit<1.0 - d> * m + lit<d> * stat;
        using monitor_init = tlist<param_init<scoped<Scope, "inactive_relu_count_moving_avg">(), ushape, init::Zeros{}>>;
        return result<std::remove_cvref_t<decltype(y)>, std::remove_cvref_t<decltype(pen)>,
                      tlist<state_update<scoped<Scope, "inactive_relu_count_moving_avg">(), std::remove_cvref_t<decltype(next)>>>,
                      tl_concat_t<kernel_init, norm_init, bias_init, monitor_init>>{};
    } else {
        return result<std::remove_cvref_t<decltype(y)>, std::remove_cvref_t<decltype(pen)>, tlist<>,
                      tl_concat_t<kernel_init, norm_init, bias_init>>{};
    }
}

} // namespace ctrec::layers
