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
//
// Implementation:
// Dense: y = act(x . W + b), kernel norm and the inactive-ReLU monitor
// exactly as documented above (same variables, names, initializers and
// state update; that header's comment is the specification of this one).
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



void ctrec_shape_error_dense_units_must_be_positive();
void ctrec_shape_error_dense_input_must_be_a_tensor_B_by_D_in();
void ctrec_shape_error_dense_inactive_relu_monitor_needs_relu_and_a_B_by_D_in_input();

// The kernel as the layer uses it (raw, or weight-normalised per output column).
constexpr val dense_kernel(result& m, const name_string& s, const dense_config& c, std::size_t in) {
    const dims ks = dims_of({in, c.units}), us = dims_of({c.units});
    val V = m.var(scoped(s, "kernel").view(), ks, c.kernel_initializer);
    add_penalty(m, c.kernel_regularizer, V);
    if (!c.allow_kernel_norm) return V;
    val unit = l2_normalize(V, 0, 1e-6);
    if (c.kernel_norm_trainable) return unit * m.norm_var(scoped(s, "trainable_kernel_norm").view(), us, V);
    if (c.monolith_compat) return unit;
    return unit * stop_gradient(m.norm_var(scoped(s, "kernel_norm").view(), us, V));
}

constexpr val dense(result& m, const name_string& s, const dense_config& c, val x) {
    if (c.units == 0) ctrec_shape_error_dense_units_must_be_positive();
    if (x.rank() < 1) ctrec_shape_error_dense_input_must_be_a_tensor_B_by_D_in();
    if (c.inactive_relu_monitor && (!(c.activation == ctrec::layers::act_relu) || x.rank() != 1))
        ctrec_shape_error_dense_inactive_relu_monitor_needs_relu_and_a_B_by_D_in_input();
    val z = matmul(x, dense_kernel(m, s, c, x.last()));
    if (c.use_bias) {
        val b = m.var(scoped(s, "bias").view(), dims_of({c.units}), c.bias_initializer);
        add_penalty(m, c.bias_regularizer, b);
        z = z + b;
    }
    val y = apply_activation(m, c.activation, s, z);
    if (c.inactive_relu_monitor) {
        val mv = m.var(scoped(s, "inactive_relu_count_moving_avg").view(), dims_of({c.units}), init::Zeros{});
        val active = stop_gradient(greater(y, 0.0));
        val stat = c.monolith_compat ? static_cast<double>(c.units) - batch_sum(active) : batch_mean(active);
        const double d = c.inactive_relu_monitor_decay;
        m.update(mv, (1.0 - d) * mv + d * stat);
    }
    return y;
}

template <fixed_string Scope, dense_config C>
constexpr result dense(const result& in) {
    result m = in;
    m.set_out(dense(m, Scope.view(), C, m.value()));
    return m;
}

} // namespace ctrec::layers
