#pragma once
// Dense on the graph-as-data core: y = act(x . W + b), kernel norm and the inactive-ReLU monitor
// exactly as ctrec/layers/dense.hpp documents them (same variables, names, initializers and
// state update; that header's comment is the specification of this one).
#include "ctrec/flat/layers/layer.hpp"
#include "ctrec/layers/dense.hpp"  // dense_config

namespace ctrec::flat::layers {

using ctrec::layers::dense_config;

void ctrec_shape_error_dense_units_must_be_positive();
void ctrec_shape_error_dense_input_must_be_a_tensor_B_by_D_in();
void ctrec_shape_error_dense_inactive_relu_monitor_needs_relu_and_a_B_by_D_in_input();

// The kernel as the layer uses it (raw, or weight-normalised per output column).
constexpr val dense_kernel(result& m, const label& s, const dense_config& c, std::size_t in) {
    const dims ks = dims_of({in, c.units}), us = dims_of({c.units});
    val V = m.var(scoped(s, "kernel").view(), ks, c.kernel_initializer);
    add_penalty(m, c.kernel_regularizer, V);
    if (!c.allow_kernel_norm) return V;
    val unit = l2_normalize(V, 0, 1e-6);
    if (c.kernel_norm_trainable) return unit * m.norm_var(scoped(s, "trainable_kernel_norm").view(), us, V);
    if (c.monolith_compat) return unit;
    return unit * stop_gradient(m.norm_var(scoped(s, "kernel_norm").view(), us, V));
}

constexpr val dense(result& m, const label& s, const dense_config& c, val x) {
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

} // namespace ctrec::flat::layers
