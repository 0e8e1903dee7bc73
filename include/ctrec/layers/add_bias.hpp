#pragma once
// AddBias (spec layers-core-and-cross.md 1.7): y = x + bias, with a bias of the whole
// per-example shape (not just the channel axis). Variable "<scope>/bias", zeros by default
// (the source's initializer None), with the configured regularizer as its penalty.
//
//   constexpr auto r = layers::add_bias<"tower/add_bias", {.regularizer = reg::L2{1e-4}}>(x);
//
// data_format: channels_last is the layer. The source's channels_first *reshapes* (does not
// transpose) the bias to (1, s_m, s_1, ..., s_{m-1}); the flat order is kept, so it equals
// channels_last exactly when every per-example axis has the same size. ctrec accepts
// channels_first only then, and rejects it at compile time otherwise (the source would fail,
// or with size-1 axes broadcast to a different output shape).
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

enum class data_format { channels_last, channels_first };

struct add_bias_config {
    init::spec initializer = init::Zeros{};
    layers::regularizer regularizer{};
    data_format format = data_format::channels_last;
};

namespace detail {
constexpr bool all_axes_equal(dims s) {
    for (std::size_t i = 1; i < s.rank; ++i)
        if (s.d[i] != s.d[0]) return false;
    return true;
}
} // namespace detail

template <fixed_string Scope, add_bias_config C = add_bias_config{}, node X>
constexpr auto add_bias(X x) {
    static_assert(X::batched && X::shape.rank >= 1,
                  "ctrec::layers::add_bias: the input must be a batched tensor (B, s_1, ..., s_m), m >= 1");
    static_assert(C.format == data_format::channels_last || detail::all_axes_equal(X::shape),
                  "ctrec::layers::add_bias: channels_first differs from channels_last unless every per-example "
                  "axis has the same size; use channels_last");
    constexpr auto name = scoped<Scope, "bias">();
    constexpr auto bias = param_node<name, X::shape>{};
    using out = std::remove_cvref_t<decltype(x + bias)>;
    using pen = std::remove_cvref_t<decltype(penalty<C.regularizer>(bias))>;
    return result<out, pen, tlist<>, tlist<param_init<name, X::shape, C.initializer>>>{};
}

} // namespace ctrec::layers
