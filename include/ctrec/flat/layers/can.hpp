#pragma once
// CAN, the co-action unit (spec layers-core-and-cross.md section 7) on the graph-as-data core,
// exactly as ctrec/layers/can.hpp documents it: layer i reads W_i (D, D) and beta_i (D) from the
// item vector at o_i = i (D^2 + D); every row u of the user tensor becomes act(u . W_i + beta_i)
// (the activation after every layer, the last included); the sequence modes sum over S; the
// (false, false) mode keeps (B, D) where the source squeezes; no masking; no variables; PReLU
// rejected.
//   is_seq / is_stacked   user (per example)   output
//   false / true          (F, D)               (F, D)
//   true  / true          (F, S, D)            (F, D)
//   true  / false         (S, D)               (D)
//   false / false         (D)                  (D)
#include "ctrec/flat/layers/layer.hpp"
#include "ctrec/layers/can.hpp"  // can_config

namespace ctrec::flat::layers {

using ctrec::layers::can_config;

void ctrec_shape_error_can_layer_num_must_be_at_least_1();
void ctrec_shape_error_can_user_rank_must_match_is_seq_and_is_stacked();
void ctrec_shape_error_can_item_must_be_layer_num_times_D_squared_plus_D();
void ctrec_shape_error_can_prelu_is_not_a_keras_activation_name();

constexpr val can(result& m, const label& s, const can_config& c, val user, val item) {
    if (c.layer_num < 1) ctrec_shape_error_can_layer_num_must_be_at_least_1();
    const std::size_t rank = c.is_stacked ? (c.is_seq ? 3 : 2) : (c.is_seq ? 2 : 1);
    if (user.rank() != rank) ctrec_shape_error_can_user_rank_must_match_is_seq_and_is_stacked();
    if (c.activation.w == act_which::prelu) ctrec_shape_error_can_prelu_is_not_a_keras_activation_name();
    const std::size_t D = user.last();
    if (item.rank() != 1 || item.dim(0) != c.layer_num * (D * D + D)) ctrec_shape_error_can_item_must_be_layer_num_times_D_squared_plus_D();
    val u = user;
    for (std::size_t i = 0; i < c.layer_num; ++i) {
        const std::size_t o = i * (D * D + D);
        const val w = reshape(slice(item, 0, o, o + D * D), dims_of({D, D}));
        const val beta = slice(item, 0, o + D * D, o + D * D + D);
        // one per-example contraction (both operands batched), beta broadcast over the rows
        val z = rank == 1 ? einsum("p,pq->q", u, w) : rank == 2 ? einsum("fp,pq->fq", u, w) : einsum("fsp,pq->fsq", u, w);
        z = z + (rank == 1 ? beta : rank == 2 ? reshape(beta, dims_of({1, D})) : reshape(beta, dims_of({1, 1, D})));
        u = apply_activation(m, c.activation, s, z);
    }
    return c.is_seq ? sum(u, {rank - 2}) : u;  // the sum over S
}

template <fixed_string Scope, can_config C>
constexpr result can(const expr& user, const expr& item) {
    result m = user;
    std::uint32_t ii = 0;
    join_into(m.g, item, ii);
    m.set_out(can(m, Scope.view(), C, m.value(), m.at(ii)));
    return m;
}

} // namespace ctrec::flat::layers
