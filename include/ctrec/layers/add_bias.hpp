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
//
// Implementation:
// AddBias (spec layers-core-and-cross.md 1.7), exactly as
// ctrec/layers/add_bias.hpp documents it: y = x + bias, "<scope>/bias" of the whole per-example
// shape (initializer, zeros by default; regularizer as its penalty); channels_first only where
// it equals channels_last (every per-example axis of the same size), rejected otherwise.
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



void ctrec_shape_error_add_bias_input_must_be_a_batched_tensor_B_by_s1_to_sm();
void ctrec_shape_error_add_bias_channels_first_differs_from_channels_last_unless_all_axes_are_equal();

constexpr val add_bias(result& m, const name_string& s, const add_bias_config& c, val x) {
    if (!x.batched() || x.rank() < 1) ctrec_shape_error_add_bias_input_must_be_a_batched_tensor_B_by_s1_to_sm();
    if (c.format == data_format::channels_first && !ctrec::layers::detail::all_axes_equal(x.shape()))
        ctrec_shape_error_add_bias_channels_first_differs_from_channels_last_unless_all_axes_are_equal();
    val b = m.var(scoped(s, "bias").view(), x.shape(), c.initializer);
    add_penalty(m, c.regularizer, b);
    return x + b;
}

template <fixed_string Scope, add_bias_config C = add_bias_config{}>
constexpr result add_bias(const result& in) {
    result m = in;
    m.set_out(add_bias(m, Scope.view(), C, m.value()));
    return m;
}

} // namespace ctrec::layers
