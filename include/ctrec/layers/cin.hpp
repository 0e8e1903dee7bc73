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
// (kernels/cpu/kr_gemm.hpp); its gradients are Khatri-Rao products too (core/expr.hpp),
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
#include <array>
#include <tuple>

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

namespace detail {
template <auto C>
constexpr bool cin_units_given_once() {
    bool a = false, b = false;
    for (auto u : C.hidden_uints) a = a || u != 0;
    for (auto u : C.hidden_units) b = b || u != 0;
    return a != b;
}
template <auto C>
constexpr std::size_t cin_units(std::size_t t) {
    bool a = false;
    for (auto u : C.hidden_uints) a = a || u != 0;
    return a ? C.hidden_uints[t] : C.hidden_units[t];
}
template <auto C>
constexpr bool cin_units_positive() {
    for (std::size_t t = 0; t < C.hidden_uints.size(); ++t)
        if (cin_units<C>(t) == 0) return false;
    return true;
}
// "conv1d", "conv1d_1", "conv1d_2", ...
template <fixed_string Scope, std::size_t t>
constexpr auto cin_conv_scope() {
    if constexpr (t == 0) return scoped<Scope, "conv1d">();
    else return scoped<Scope, indexed<"conv1d_", t>()>();
}
template <auto C, std::size_t N>
constexpr std::size_t cin_prev(std::size_t t) { return t == 0 ? N : cin_units<C>(t - 1); }

template <fixed_string Scope, auto C, std::size_t t, std::size_t N>
using cin_kernel = param_node<scoped<cin_conv_scope<Scope, t>(), "kernel">(), make_dims<1, cin_prev<C, N>(t) * N, cin_units<C>(t)>()>;
template <fixed_string Scope, auto C, std::size_t t>
using cin_bias = param_node<scoped<cin_conv_scope<Scope, t>(), "bias">(), make_dims<cin_units<C>(t)>()>;

// The pooled outputs of layers t .. T-1, as a tuple, given X0 (K, N) and the maps Xh of layer t - 1.
template <fixed_string Scope, auto C, std::size_t t, node X0, node Xh>
constexpr auto cin_from(X0 x0, Xh xh) {
    constexpr std::size_t T = C.hidden_uints.size(), N = X0::shape.d[1], Hp = Xh::shape.d[1], Ht = cin_units<C>(t);
    constexpr auto w = reshape<Hp * N, Ht>(cin_kernel<Scope, C, t, N>{});
    constexpr auto y = khatri_rao_matmul(xh, x0, w) + cin_bias<Scope, C, t>{};
    constexpr auto a = [&] {
        if constexpr (t + 1 < T) return apply_activation<C.activation, cin_conv_scope<Scope, t>()>(y);
        else return y;
    }();
    constexpr auto pooled = sum<0>(a);  // over the embedding axis K
    if constexpr (t + 1 == T) return std::tuple{pooled};
    else return std::tuple_cat(std::tuple{pooled}, cin_from<Scope, C, t + 1>(x0, a));
}
template <fixed_string Scope, auto C, std::size_t N, std::size_t... t>
constexpr auto cin_penalty(std::index_sequence<t...>) {
    if constexpr (C.regularizer.active()) return (penalty<C.regularizer>(cin_kernel<Scope, C, t, N>{}) + ...);
    else return scalar_zero{};
}
} // namespace detail

template <fixed_string Scope, auto C, node X>
constexpr auto cin(X x) {
    constexpr std::size_t T = C.hidden_uints.size();
    static_assert(T >= 1, "ctrec::layers::cin: give at least one layer");
    static_assert(detail::cin_units_given_once<C>(),
                  "ctrec::layers::cin: give the layer sizes as hidden_uints or as hidden_units, not both");
    static_assert(detail::cin_units_positive<C>(), "ctrec::layers::cin: every layer needs at least one feature map");
    static_assert(X::batched && X::shape.rank == 2, "ctrec::layers::cin: the input must be (B, N, K) (rank 3 with the batch)");
    static_assert(C.activation.w != act_which::prelu && C.activation.w != act_which::softmax,
                  "ctrec::layers::cin: the activation must be an elementwise Keras activation");
    constexpr std::size_t N = X::shape.d[0];
    constexpr auto x0 = transpose<1, 0>(x);  // (K, N)
    constexpr auto pooled = detail::cin_from<Scope, C, 0>(x0, x0);
    constexpr auto out = std::apply([](auto... p) {
        if constexpr (sizeof...(p) == 1) return (p, ...);
        else return concat<0>(p...);
    }, pooled);

    return [&]<std::size_t... t>(std::index_sequence<t...>) {
        using pen = decltype(detail::cin_penalty<Scope, C, N>(std::index_sequence<t...>{}));
        using inits = tl_concat_t<tlist<param_init<detail::cin_kernel<Scope, C, t, N>::name, detail::cin_kernel<Scope, C, t, N>::shape, C.initializer>,
                                        param_init<detail::cin_bias<Scope, C, t>::name, detail::cin_bias<Scope, C, t>::shape, init::Zeros{}>>...>;
        return result<std::remove_cvref_t<decltype(out)>, std::remove_cvref_t<pen>, tlist<>, inits>{};
    }(std::make_index_sequence<T>{});
}

} // namespace ctrec::layers
