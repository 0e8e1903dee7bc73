#pragma once
// DIN (spec layers-trans-seq-multitask-nas.md 2.2): target attention. An MLP scores every
// behaviour k_t against the query q from [q, k_t, q - k_t, q * k_t]; the behaviours are
// summed with these un-normalised scores.
//
//   constexpr layers::din_config<3> cfg{.hidden_units = {80, 40, 1}, .activation = layers::act_relu};
//   constexpr auto r = layers::din<"din", cfg>(q, k);        // q (H), k (T, H) per example
//   constexpr auto r = layers::din<"din", cfg>(q, k, mask);  // mask (T): a step counts when mask >= 1
//   r.out: (H) in mode sum, (T, H) in mode weighted (w_t k_t per step).
//
// The layer is written literally: the (T, 4H) concatenation feeds the MLP. The rewrite
// passes (core/rewrite.hpp) turn the first layer into
//   broadcast(q (W_a + W_c)) + k (W_b - W_c) + (q * k) W_d
// on the effective (weight-normalised) kernel, whose column norms are taken over all 4H rows
// before it is sliced: the 4H-wide row is never built and q's share is computed once per
// example, in the forward, gradient and JVP programs alike (tests/test_din.cpp checks plans).
//
// Serving one user against many candidates: bind the behaviour sequence (and mask) as
// shared inputs (ctrec::shared_input<"k", T, H>) and the candidate items as the batch.
// Then k (W_b - W_c) runs once per call; only q's share and the q * k term are per
// candidate (examples/serving.cpp).
//
// Variables: "<Scope>/compress_tower/dense_j/{kernel, trainable_kernel_norm, bias}" (an MLP
// with output_dims = hidden_units, weight norm on and trainable by default, biases zeros,
// kernels `initializer` (Glorot-normal), kernel regulariser `regularizer`).
//
// Decisions:
// - activation: the MLP's hidden layers; the default none is the identity, as Monolith's
//   None resolves (spec 7.5): the default attention MLP is affine. The last layer is linear.
// - mode: din_mode::sum (Monolith 'sum') or din_mode::weighted (any other string). The
//   config is part of the model's type, so mode and decay cannot be lost in a round trip
//   (Monolith's get_config drops them, spec 7.6).
// - decay divides the scores by sqrt(H) before masking (spec 2.2.10).
// - mask: a step counts when mask_t >= 1 (Monolith's numeric test); a masked step's score is
//   exactly 0 (a select, so it passes zero gradient to the MLP and to k_t through w_t, even if
//   the padding holds non-finite garbage: see op_where). No renormalisation (there is no
//   softmax in DIN).
// - q and k may be per-example inputs or shared inputs (see above); at least one must be
//   per-example.
#include <array>
#include <cmath>

#include "ctrec/layers/mlp.hpp"

namespace ctrec::layers {

enum class din_mode { sum, weighted };

template <std::size_t N>
struct din_config {
    std::array<std::size_t, N> hidden_units{};      // the last must be 1
    layers::activation activation = act_none;        // hidden layers; none = identity
    init::spec initializer = init::GlorotNormal{};   // MLP kernels
    layers::regularizer regularizer{};                // MLP kernels
    din_mode mode = din_mode::sum;
    bool decay = false;                               // scores / sqrt(H)
    bool use_weight_norm = true;                      // the MLP's defaults (compress_tower)
    bool use_learnable_weight_norm = true;
};

namespace detail {
template <auto C>
constexpr auto din_mlp_config() {
    constexpr std::size_t n = C.hidden_units.size();
    mlp_config<n> m{};
    m.output_dims = C.hidden_units;
    m.activation = C.activation;
    for (std::size_t i = 0; i < n; ++i) m.initializers[i] = C.initializer;
    m.kernel_regularizer = C.regularizer;
    m.use_weight_norm = C.use_weight_norm;
    m.use_learnable_weight_norm = C.use_learnable_weight_norm;
    return m;
}

// The scores w (T) per example, before masking.
template <fixed_string Scope, auto C, node Q, node K>
constexpr auto din_scores(Q, K) {
    static_assert(C.hidden_units.size() >= 1 && C.hidden_units[C.hidden_units.size() - 1] == 1,
                  "ctrec::layers::din: the last hidden unit must be 1 (one score per step)");
    static_assert(Q::shape.rank == 1 && K::shape.rank == 2, "ctrec::layers::din: q must be (B, H) and k (B, T, H)");
    static_assert(check_shapes<"din: q (H) vs k (T, H)", Q::shape, K::shape, Q::shape.d[0] == K::shape.d[1]>,
                  "ctrec::layers::din: q and the keys must have the same width H");
    static_assert(Q::batched || K::batched, "ctrec::layers::din: q or k must be per-example");
    constexpr std::size_t T = K::shape.d[0], H = K::shape.d[1];
    constexpr auto q = broadcast_to<T, H>(Q{});
    constexpr auto k = broadcast_to<T, H>(K{});
    constexpr auto z = concat<1>(q, k, q - k, q * k);  // (T, 4H), literally
    constexpr auto m = mlp<scoped<Scope, "compress_tower">(), din_mlp_config<C>(), mode::predict>(z);
    constexpr auto w0 = reshape<T>(m.out);
    if constexpr (C.decay)
        return then(m, as_result(w0 * lit<1.0 / std::sqrt(static_cast<double>(H))>));
    else
        return then(m, as_result(w0));
}

template <auto C, class R, node K>
constexpr auto din_pool(R r, K) {
    using W = decltype(r.out);
    constexpr std::size_t T = K::shape.d[0], H = K::shape.d[1];
    if constexpr (C.mode == din_mode::sum)
        return then(r, as_result(einsum<"t,th->h">(W{}, K{})));
    else
        return then(r, as_result(reshape<T, 1>(W{}) * K{}));
    (void)H;
}
} // namespace detail

template <fixed_string Scope, auto C, node Q, node K>
constexpr auto din(Q q, K k) {
    return detail::din_pool<C>(detail::din_scores<Scope, C>(q, k), k);
}

template <fixed_string Scope, auto C, node Q, node K, node Mask>
constexpr auto din(Q q, K k, Mask) {
    static_assert(check_shapes<"din: mask (T) vs k (T, H)", Mask::shape, K::shape,
                               Mask::shape.rank == 1 && Mask::shape.d[0] == K::shape.d[0]>,
                  "ctrec::layers::din: the mask must be (B, T)");
    constexpr auto s = detail::din_scores<Scope, C>(q, k);
    constexpr auto w = where(greater_equal(Mask{}, lit<1.0>), s.out, lit<0.0>);
    return detail::din_pool<C>(then(s, as_result(w)), k);
}

} // namespace ctrec::layers
