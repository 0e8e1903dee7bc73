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
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

struct can_config {
    std::size_t layer_num = 2;
    layers::activation activation = act_relu;  // Keras resolver; after every layer
    bool is_seq = false;
    bool is_stacked = true;
};

namespace detail {
template <can_config C>
constexpr std::size_t can_user_rank() {
    return C.is_stacked ? (C.is_seq ? 3 : 2) : (C.is_seq ? 2 : 1);
}

// u . W + beta on the last axis of u (any rank 1..3), both possibly batched.
template <node U, node W, node Beta>
constexpr auto can_affine(U u, W w, Beta beta) {
    constexpr std::size_t D = W::shape.d[1];
    if constexpr (U::shape.rank == 1) return einsum<"p,pq->q">(u, w) + beta;
    else if constexpr (U::shape.rank == 2) return einsum<"fp,pq->fq">(u, w) + reshape<1, D>(beta);
    else return einsum<"fsp,pq->fsq">(u, w) + reshape<1, 1, D>(beta);
}

template <fixed_string S, can_config C, std::size_t I, node U, node Item>
constexpr auto can_layers(U u, Item item) {
    if constexpr (I == C.layer_num) {
        return u;
    } else {
        constexpr std::size_t D = U::shape.d[U::shape.rank - 1];
        constexpr std::size_t o = I * (D * D + D);
        constexpr auto w = reshape<D, D>(slice<0, o, o + D * D>(item));
        constexpr auto beta = slice<0, o + D * D, o + D * D + D>(item);
        constexpr auto y = apply_activation<C.activation, S>(can_affine(u, w, beta));
        return can_layers<S, C, I + 1>(y, item);
    }
}
} // namespace detail

template <fixed_string Scope, can_config C, node User, node Item>
constexpr auto can(User user, Item item) {
    constexpr std::size_t rank = detail::can_user_rank<C>();
    constexpr bool rank_ok = User::shape.rank == rank;
    static_assert(C.layer_num >= 1, "ctrec::layers::can: layer_num must be at least 1");
    static_assert(rank_ok, "ctrec::layers::can: user_emb must be (F, D) for is_seq false / is_stacked true, (F, S, D) for "
                           "true / true, (S, D) for true / false and (D) for false / false (per-example shapes)");
    static_assert(C.activation.w != act_which::prelu, "ctrec::layers::can: PReLU is not a Keras activation name");
    constexpr std::size_t D = rank_ok ? User::shape.d[rank - 1] : 0;
    constexpr bool item_ok = Item::shape.rank == 1 && Item::shape.d[0] == C.layer_num * (D * D + D);
    static_assert(!rank_ok || item_ok,
                  "ctrec::layers::can: item_emb must be a vector of layer_num * (D * D + D) values (D = the last dim of "
                  "user_emb): a D x D weight and a D bias per layer");
    if constexpr (!rank_ok || !item_ok || C.layer_num < 1 || C.activation.w == act_which::prelu) {
        return as_result(user);  // the assertion above is the error
    } else {
        constexpr auto u = detail::can_layers<Scope, C, 0>(user, item);
        if constexpr (C.is_seq) return as_result(sum<rank - 2>(u));  // sum over S
        else return as_result(u);
    }
}

} // namespace ctrec::layers
