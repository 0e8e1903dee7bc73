#pragma once
// AddBias (spec layers-core-and-cross.md 1.7): y = x + bias, with a bias of the whole
// per-example shape (not just the channel axis). Variable "<scope>/bias", zeros by default.
//
// data_format: channels_last is the layer. The source's channels_first *reshapes* (does not
// transpose) the bias, which equals channels_last exactly when every per-example axis has
// the same size; ctrec accepts channels_first only then and rejects it at compile time
// otherwise (the source would fail or broadcast to a different shape).
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

enum class data_format { channels_last, channels_first };

struct add_bias_config {
    init::spec initializer = init::Zeros{};
    layers::regularizer regularizer{};
    data_format format = data_format::channels_last;
};

template <fixed_string Scope, add_bias_config C = add_bias_config{}, node X>
constexpr auto add_bias(X x) {
    static_assert(X::batched && X::shape.rank >= 1, "ctrec::layers::add_bias: the input must be a batched tensor (B, ...)");
    static_assert(C.format == data_format::channels_last ||
                      [] {
                          for (std::size_t i = 1; i < X::shape.rank; ++i)
                              if (X::shape.d[i] != X::shape.d[0]) return false;
                          return true;
                      }(),
                  "ctrec::layers::add_bias: channels_first differs from channels_last unless every per-example "
                  "axis has the same size; use channels_last");
    constexpr auto bias = param_node<scoped<Scope, "bias">(), X::shape>{};
    using inits = tlist<param_init<scoped<Scope, "bias">(), X::shape, C.initializer>>;
    return result<std::remove_cvref_t<decltype(x + bias)>, std::remove_cvref_t<decltype(penalty<C.regularizer>(bias))>,
                  tlist<>, inits>{};
}

} // namespace ctrec::layers
