#pragma once
// CIN, the Compressed Interaction Network of xDeepFM (spec layers-core-and-cross.md
// section 9), with the source's per-map bias, its activation rule and direct connections.
//
//   constexpr layers::cin_config<2> cfg{.hidden_uints = {128, 128}};
//   constexpr auto r = layers::cin<"cin", cfg>(x);     // x: (N, K) per example -> (128 + 128)
//
// Per example, X0 = X^T (K x N) and Xh = X0; for every layer t:
//   Y[d, j] = sum_{h, m} Xh[d, h] X0[d, m] W_t[h * N + m, j] + b_t[j]      (a 1x1 Conv1D)
//   Xh = act(Y) for t < T - 1 (the last layer is linear), p_t[j] = sum_d Xh[d, j]
// and the output is concat(p_0, ..., p_{T-1}) (every layer's maps, pooled over the
// embedding axis K). The activation default is identity (Keras None), not relu.
//
// The outer-product tensor Z[d, h * N + m] = Xh[d, h] X0[d, m] (K * H * N values per
// example: 80 K floats for W2's second layer) is never stored: the layer is written as
// khatri_rao_matmul(Xh, X0, W_t), whose GEMM forms Z one packed panel at a time
// (kernels/cpu/kr_gemm.hpp); its gradients are Khatri-Rao products too (core/build.hpp),
// so training does not store Z or dZ either.
//
// Variables (Keras Conv1D auto-names, mapped by creation order on import, spec 10.3.8):
//   conv1d/kernel (1, N * N, H_0), conv1d/bias (H_0), conv1d_1/kernel (1, H_0 * N, H_1), ...
// with the input-channel index h * N + m (previous map h outer, field m inner), as stored
// by Keras. Kernels: initializer (glorot_uniform: Conv1D fans, in = H_{t-1} N, out = H_t)
// and regularizer; biases: zeros, no regularizer.
//
// hidden_uints is the source's (and the doc's) spelling; hidden_units is accepted as an
// alias (give exactly one of them).
//
// Implementation: conv1d[_t]/kernel (1, H_{t-1} N, H_t) with input
// channel h N + m, conv1d[_t]/bias (H_t) zeros, created kernel then bias per layer; the activation
// (identity by default) on every layer but the last; every layer's maps sum-pooled over the
// embedding axis and concatenated. Rows are the K embedding positions: X0 = transpose(x) (K, N)
// once per example, then Y_t = khatri_rao_matmul(Xh, X0, W_t) + b_t (K, H_t), whose node never
// stores Z[d, h N + m] = Xh[d, h] X0[d, m] (K H N values per example): the CPU kernel forms one
// packed panel of it at a time, and the gradients (kr_dual for dXh and dX0 in one pass, kr_gram
// for dW summed over the batch) and the JVP (kr_matmul2) do not store Z or dZ either
// (core/build.hpp, kernels/cpu/kr_gemm.hpp).
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

template <std::size_t T>
struct cin_config {
    std::array<std::size_t, T> hidden_uints{};
    std::array<std::size_t, T> hidden_units{};  // alias
    layers::activation activation = act_linear;  // Keras resolver (keras_activation); identity by default
    init::spec initializer = init::GlorotUniform{};
    layers::regularizer regularizer{};
};



void ctrec_shape_error_cin_input_must_be_a_batched_B_by_N_by_K_tensor();
void ctrec_shape_error_cin_give_the_layer_sizes_as_hidden_uints_or_hidden_units_not_both();
void ctrec_shape_error_cin_every_layer_needs_at_least_one_feature_map();
void ctrec_shape_error_cin_the_activation_must_be_elementwise();

namespace detail {
template <std::size_t T>
constexpr std::size_t cin_units(const cin_config<T>& c, std::size_t t) {
    bool a = false, b = false;
    for (auto u : c.hidden_uints) a = a || u != 0;
    for (auto u : c.hidden_units) b = b || u != 0;
    if (a == b) ctrec_shape_error_cin_give_the_layer_sizes_as_hidden_uints_or_hidden_units_not_both();
    const std::size_t h = a ? c.hidden_uints[t] : c.hidden_units[t];
    if (h == 0) ctrec_shape_error_cin_every_layer_needs_at_least_one_feature_map();
    return h;
}
} // namespace detail

template <std::size_t T>
constexpr val cin(result& m, const name_string& s, const cin_config<T>& c, val x) {
    if (T == 0) ctrec_shape_error_cin_every_layer_needs_at_least_one_feature_map();
    if (!x.batched() || x.rank() != 2)  // axes with the batch axis
        report_shape_error(ctrec_shape_error_cin_input_must_be_a_batched_B_by_N_by_K_tensor, x.rank() + x.batched(), 3);
    if (c.activation.w == act_which::prelu || c.activation.w == act_which::softmax)
        ctrec_shape_error_cin_the_activation_must_be_elementwise();
    const std::size_t N = x.dim(0);
    const val x0 = transpose(x);  // (K, N)
    val xh = x0, pooled[T ? T : 1]{};
    for (std::size_t t = 0; t < T; ++t) {
        const std::size_t Hp = xh.dim(1), Ht = detail::cin_units(c, t);
        const name_string conv = scoped(s, t == 0 ? name_string("conv1d").view() : (name_string("conv1d_") + t).view());
        val W = m.var(scoped(conv, "kernel").view(), dims_of({1, Hp * N, Ht}), c.initializer);
        add_penalty(m, c.regularizer, W);
        val b = m.var(scoped(conv, "bias").view(), dims_of({Ht}), init::Zeros{});
        val y = khatri_rao_matmul(xh, x0, reshape(W, dims_of({Hp * N, Ht}))) + b;  // (K, Ht)
        if (t + 1 < T) y = apply_activation(m, c.activation, conv, y);
        pooled[t] = sum(y, {0});
        xh = y;
    }
    return concat(0, pooled, T);
}

template <fixed_string Scope, auto C>
constexpr result cin(const result& in) {
    result m = in;
    m.set_out(cin(m, Scope.view(), C, m.value()));
    return m;
}

} // namespace ctrec::layers
