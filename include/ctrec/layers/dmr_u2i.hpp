#pragma once
// DMR_U2I (spec layers-trans-seq-multitask-nas.md 2.4): the user-to-item relevance unit of
// Deep Match to Rank. The behaviour sequence is attention-pooled with scores driven by a
// learned position table, projected into the item space by a Dense, and multiplied
// element-wise with the item embedding.
//
//   constexpr auto r = layers::dmr_u2i<"dmr__u2i", {.cmp_dim = 8}>(item, seq);
//   item (I_e), seq (T, U_e) per example (item first, as in the source); r.out is (I_e).
//
// Per example:
//   c_t   = pos_emb[t] + seq_t . emb_weight + bias           (C)
//   l_t   = c_t . z_weight                                   (scalar; no tanh, spec 7.8)
//   alpha = softmax over t of l                              (T)
//   m     = sum_t alpha_t seq_t                              (U_e)
//   out   = act(m . dense/kernel + dense/bias) * item        (I_e)
//
// Variables ("<Scope>/..."): pos_emb (T, C), emb_weight (U_e, C) [initializer, regularizer];
// z_weight (C, 1) [Ones], bias (C) [zeros] (neither regularised); dense/kernel (U_e, I_e)
// [initializer, regularizer], dense/bias (I_e) [zeros] - a plain Keras Dense (no weight norm,
// layers::dense with the defaults); with the default PReLU activation also
// dense/p_re_lu/alpha (I_e) [zeros] (Keras creates the PReLU layer inside the dense scope;
// importers match the suffix p_re_lu/alpha).
//
// Decisions:
// - activation: Keras activations.get, whose "PReLU" is a PReLU *layer* (one alpha per
//   output unit, zeros): the default act_prelu. Any other Keras activation value works
//   (keras_activation("relu") as in the original test); none / linear is the identity.
// - No mask, as in the source (there is no mask argument; spec 2.4.3): every one of the T
//   steps, padded or not, takes part in the softmax, so zero-padding a short sequence does
//   change the result (a padded step scores pos_emb[t] . z + bias . z). T is baked into
//   pos_emb, so inputs have exactly T steps. Mask before the layer if that matters.
// - The attention bias adds bias . z_weight to every score alike, and a softmax ignores a
//   common shift: bias has no effect on the output and its gradient is zero (up to
//   rounding), in Monolith too. It is kept for weight import.
// - The score is written as the spec states it (c_t, then c_t . z). Because it is affine,
//   l_t = pos_emb[t] . z + seq_t . (emb_weight . z) + bias . z would cost 2 T U_e instead of
//   2 T U_e C per example (spec 2.4.10); that distribution over the sum is left to a rewrite
//   pass (the layer states the mathematics, the passes find the fast form).
#include "ctrec/layers/dense.hpp"
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

struct dmr_u2i_config {
    std::size_t cmp_dim = 0;                        // C, the attention width
    layers::activation activation = act_prelu;      // Keras resolver; "PReLU" (the default) is a layer
    init::spec initializer = init::GlorotUniform{};  // pos_emb, emb_weight, dense/kernel
    layers::regularizer regularizer{};               // pos_emb, emb_weight, dense/kernel
};

template <fixed_string Scope, dmr_u2i_config C, node Item, node Seq>
constexpr auto dmr_u2i(Item item, Seq seq) {
    static_assert(C.cmp_dim > 0, "ctrec::layers::dmr_u2i: cmp_dim must be positive");
    static_assert(Item::batched && Item::shape.rank == 1, "ctrec::layers::dmr_u2i: item must be (B, I_e)");
    // seq may be a shared input (one user against a batch of candidate items): then all but
    // the final product with the item runs once per call (examples/serving.cpp).
    static_assert(Seq::shape.rank == 2, "ctrec::layers::dmr_u2i: seq must be (B, T, U_e) or a shared (T, U_e)");
    constexpr std::size_t T = Seq::shape.d[0], U = Seq::shape.d[1], I = Item::shape.d[0], Cd = C.cmp_dim;

    constexpr auto pos_emb = param_node<scoped<Scope, "pos_emb">(), make_dims<T, Cd>()>{};
    constexpr auto emb_weight = param_node<scoped<Scope, "emb_weight">(), make_dims<U, Cd>()>{};
    constexpr auto z_weight = param_node<scoped<Scope, "z_weight">(), make_dims<Cd, 1>()>{};
    constexpr auto bias = param_node<scoped<Scope, "bias">(), make_dims<Cd>()>{};

    constexpr auto c = pos_emb + matmul(seq, emb_weight) + reshape<1, Cd>(bias);  // (T, C)
    constexpr auto l = reshape<T>(matmul(c, z_weight));                         // (T)
    constexpr auto alpha = softmax<0>(l);
    constexpr auto m = einsum<"t,tu->u">(alpha, seq);  // (U_e)

    constexpr auto d = dense<scoped<Scope, "dense">(),
                             dense_config{.units = I, .kernel_initializer = C.initializer, .kernel_regularizer = C.regularizer}>(m);
    constexpr auto out = apply_activation<C.activation, scoped<Scope, "dense/p_re_lu">()>(d.out) * item;

    using pen = add_t<add_t<decltype(penalty<C.regularizer>(pos_emb)), decltype(penalty<C.regularizer>(emb_weight))>,
                      decltype(d.penalty)>;
    using own_inits = tlist<param_init<scoped<Scope, "pos_emb">(), make_dims<T, Cd>(), C.initializer>,
                            param_init<scoped<Scope, "emb_weight">(), make_dims<U, Cd>(), C.initializer>,
                            param_init<scoped<Scope, "z_weight">(), make_dims<Cd, 1>(), init::Ones{}>,
                            param_init<scoped<Scope, "bias">(), make_dims<Cd>(), init::Zeros{}>>;
    using alpha_init = std::conditional_t<C.activation.w == act_which::prelu,
                                          tlist<param_init<scoped<Scope, "dense/p_re_lu/alpha">(), make_dims<I>(), init::Zeros{}>>,
                                          tlist<>>;
    return result<std::remove_cvref_t<decltype(out)>, pen, tlist<>,
                  tl_concat_t<own_inits, typename decltype(d)::inits, alpha_init>>{};
}

} // namespace ctrec::layers
