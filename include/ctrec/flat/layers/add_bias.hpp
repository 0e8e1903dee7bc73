#pragma once
// AddBias (spec layers-core-and-cross.md 1.7) on the graph-as-data core, exactly as
// ctrec/layers/add_bias.hpp documents it: y = x + bias, "<scope>/bias" of the whole per-example
// shape (initializer, zeros by default; regularizer as its penalty); channels_first only where
// it equals channels_last (every per-example axis of the same size), rejected otherwise.
#include "ctrec/flat/layers/layer.hpp"
#include "ctrec/layers/add_bias.hpp"  // add_bias_config, data_format

namespace ctrec::flat::layers {

using ctrec::layers::add_bias_config;
using ctrec::layers::data_format;

void ctrec_shape_error_add_bias_input_must_be_a_batched_tensor_B_by_s1_to_sm();
void ctrec_shape_error_add_bias_channels_first_differs_from_channels_last_unless_all_axes_are_equal();

constexpr val add_bias(result& m, const label& s, const add_bias_config& c, val x) {
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

} // namespace ctrec::flat::layers
