#pragma once
// CAN, the co-action unit (spec layers-core-and-cross.md section 7): the item embedding is
// not a feature but the weights of a small per-example MLP through which the user
// embedding is fed.
//
//   constexpr auto r = layers::can<"CAN", can_config{.is_seq = true}>(user, item);
//
// Shapes (per example; the spec's (B, ...) without B), D = last dim of user:
//   is_seq  is_stacked  user        output
//   false   true        (F, D)      (F, D)            (the default)
//   true    true        (F, S, D)   (F, D)   sum over S
//   true    false       (S, D)      (D)      sum over S
//   false   false       (D)         (D)
// item is (I) with I = layer_num * (D^2 + D) (compile-time check). Layer i reads the chunk
// at o_i = i * (D^2 + D): W_i[p, q] = item[o_i + p*D + q] (row-major D x D), then
// beta_i[q] = item[o_i + D^2 + q]; every row vector u of the user tensor becomes
// act(u . W_i + beta_i), for i = 0 .. layer_num - 1. The activation (Keras resolver,
// default relu) follows EVERY layer, the last included (unlike MLP); linear / act_none
// give none.
//
// Decisions:
// - (false, false): the source expands (B, D) to (B, 1, D) and finally squeezes every size-1
//   axis, so with B = 1 it returns (D,) and with D = 1 it returns (B,). ctrec always returns
//   (B, D) (per example (D)): the same values, a shape that does not depend on B or D.
// - No masking of sequence padding (source behaviour, spec 7.9): a padded (zero) step
//   contributes act(... act(beta_0) ...) to the sum over S. Mask the user side before the
//   layer (or the output after it) if that matters.
// - No variables: the weights come from item, an input that receives gradients (for
//   W_i: sum over the rows of u^T g; for beta_i: sum of g).
// - The per-layer product is one per-example contraction with both operands batched
//   ("fp,pq->fq", "fsp,pq->fsq", "sp,pq->sq", "p,pq->q"), then one fused elementwise step
//   (bias and activation; for the last layer of a sequence mode also the sum over S).
//   W_i and beta_i are slices of item; the contraction kernels read contiguous operands,
//   so the D^2 + D values of each layer are copied once per example (as much traffic as
//   reading item itself).
// - A PReLU activation is rejected: Keras' resolver does not accept it by name, and a
//   layer instance would be one weight shared by every layer of this unit.
//
// Implementation:
// CAN, the co-action unit (spec layers-core-and-cross.md section 7),
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
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

struct can_config {
    std::size_t layer_num = 2;
    layers::activation activation = act_relu;  // Keras resolver; after every layer
    bool is_seq = false;
    bool is_stacked = true;
};



void ctrec_shape_error_can_layer_num_must_be_at_least_1();
void ctrec_shape_error_can_user_rank_must_match_is_seq_and_is_stacked();
void ctrec_shape_error_can_item_must_be_layer_num_times_D_squared_plus_D();
void ctrec_shape_error_can_prelu_is_not_a_keras_activation_name();

constexpr val can(result& m, const name_string& s, const can_config& c, val user, val item) {
    if (c.layer_num < 1) ctrec_shape_error_can_layer_num_must_be_at_least_1();
    const std::size_t rank = c.is_stacked ? (c.is_seq ? 3 : 2) : (c.is_seq ? 2 : 1);
    if (user.rank() != rank) report_shape_error(ctrec_shape_error_can_user_rank_must_match_is_seq_and_is_stacked, user.rank(), rank);
    if (c.activation.w == act_which::prelu) ctrec_shape_error_can_prelu_is_not_a_keras_activation_name();
    const std::size_t D = user.last();
    if (item.rank() != 1) report_shape_error(ctrec_shape_error_can_item_must_be_layer_num_times_D_squared_plus_D, item.rank(), 1);
    if (item.dim(0) != c.layer_num * (D * D + D))
        report_shape_error(ctrec_shape_error_can_item_must_be_layer_num_times_D_squared_plus_D, item.dim(0), c.layer_num * (D * D + D));
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

} // namespace ctrec::layers
