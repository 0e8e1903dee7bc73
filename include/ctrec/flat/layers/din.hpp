#pragma once
// DIN (target attention) on the graph-as-data core, exactly as ctrec/layers/din.hpp documents it:
// an MLP ("<scope>/compress_tower", weight norm on) scores every behaviour k_t against q from
// [q, k_t, q - k_t, q * k_t]; mode sum pools sum_t w_t k_t, mode weighted gives w_t k_t; decay
// divides the scores by sqrt(H); a step with mask_t < 1 scores exactly 0.
#include <cmath>

#include "ctrec/flat/layers/mlp.hpp"
#include "ctrec/layers/din.hpp"  // din_config, din_mode

namespace ctrec::flat::layers {

using ctrec::layers::din_config;
using ctrec::layers::din_mode;

void ctrec_shape_error_din_q_must_be_B_by_H_and_k_B_by_T_by_H_with_the_same_H();
void ctrec_shape_error_din_the_last_hidden_unit_must_be_1();
void ctrec_shape_error_din_q_or_k_must_be_per_example();
void ctrec_shape_error_din_mask_must_be_B_by_T();

template <std::size_t N>
constexpr val din(result& m, const label& s, const din_config<N>& c, val q, val k, val mask = {}) {
    if (N == 0 || c.hidden_units[N - 1] != 1) ctrec_shape_error_din_the_last_hidden_unit_must_be_1();
    if (q.rank() != 1 || k.rank() != 2 || q.dim(0) != k.dim(1)) ctrec_shape_error_din_q_must_be_B_by_H_and_k_B_by_T_by_H_with_the_same_H();
    if (!q.batched() && !k.batched()) ctrec_shape_error_din_q_or_k_must_be_per_example();
    const std::size_t T = k.dim(0), H = k.dim(1);
    mlp_config<N> mc{};
    mc.output_dims = c.hidden_units;
    mc.activation = c.activation;
    for (std::size_t i = 0; i < N; ++i) mc.initializers[i] = c.initializer;
    mc.kernel_regularizer = c.regularizer;
    mc.use_weight_norm = c.use_weight_norm;
    mc.use_learnable_weight_norm = c.use_learnable_weight_norm;
    const val qb = broadcast_to(q, dims_of({T, H})), kb = broadcast_to(k, dims_of({T, H}));
    const val z = concat(1, {qb, kb, qb - kb, qb * kb});  // (T, 4H), literally
    val w = reshape(mlp(m, scoped(s, "compress_tower"), mc, mode::predict, z), dims_of({T}));
    if (c.decay) w = w * (1.0 / std::sqrt(static_cast<double>(H)));
    if (mask.g) {
        if (mask.rank() != 1 || mask.dim(0) != T) ctrec_shape_error_din_mask_must_be_B_by_T();
        w = where(greater_equal(mask, 1.0), w, 0.0);
    }
    if (c.mode == din_mode::sum) return einsum("t,th->h", w, k);
    return reshape(w, dims_of({T, 1})) * k;
}

template <fixed_string Scope, auto C>
constexpr result din(const expr& q, const expr& k) {
    result m = q;
    std::uint32_t ik = 0;
    join_into(m.g, k, ik);
    m.set_out(din(m, Scope.view(), C, m.value(), m.at(ik)));
    return m;
}
template <fixed_string Scope, auto C>
constexpr result din(const expr& q, const expr& k, const expr& mask) {
    result m = q;
    std::uint32_t ik = 0, im = 0;
    join_into(m.g, k, ik);
    join_into(m.g, mask, im);
    m.set_out(din(m, Scope.view(), C, m.value(), m.at(ik), m.at(im)));
    return m;
}

} // namespace ctrec::flat::layers
