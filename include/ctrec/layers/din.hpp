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
// The layer is written literally: the (T, 4H) concatenation feeds the MLP. `matmul`'s concat
// split (core/matmul.hpp) turns the first layer into
//   broadcast(q (W_a + W_c)) + k (W_b - W_c) + (q * k) W_d
// on the effective (weight-normalised) kernel, whose column norms are taken over all 4H rows
// before it is sliced: the 4H-wide row is never built and q's share is computed once per
// example, in the forward, gradient and JVP programs alike (tests/test_rewrite.cpp and test_attention_4.cpp check the tables).
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
//   exactly 0 and its key is replaced by 0 before the MLP and the pooling read it (selects), so
//   padding, even NaN or inf, changes neither the output nor any gradient, and padded keys get
//   zero gradient. No renormalisation (there is no softmax in DIN).
// - q and k may be per-example inputs or shared inputs (see above); at least one must be
//   per-example.
//
// Implementation:
// DIN (target attention), exactly as documented above:
// an MLP ("<scope>/compress_tower", weight norm on) scores every behaviour k_t against q from
// [q, k_t, q - k_t, q * k_t]; mode sum pools sum_t w_t k_t, mode weighted gives w_t k_t; decay
// divides the scores by sqrt(H); a step with mask_t < 1 scores exactly 0.
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



void ctrec_shape_error_din_q_must_be_B_by_H_and_k_B_by_T_by_H_with_the_same_H();
void ctrec_shape_error_din_the_last_hidden_unit_must_be_1();
void ctrec_shape_error_din_q_or_k_must_be_per_example();
void ctrec_shape_error_din_mask_must_be_B_by_T();

template <std::size_t N>
constexpr val din(result& m, const name_string& s, const din_config<N>& c, val q, val k, val mask = {}) {
    // shape errors report (got, want): the last unit; q's rank, k's rank (per example); q's width, k's H
    if (N == 0) report_shape_error(ctrec_shape_error_din_the_last_hidden_unit_must_be_1, 0, 1);
    if (c.hidden_units[N - 1] != 1) report_shape_error(ctrec_shape_error_din_the_last_hidden_unit_must_be_1, c.hidden_units[N - 1], 1);
    if (q.rank() != 1) report_shape_error(ctrec_shape_error_din_q_must_be_B_by_H_and_k_B_by_T_by_H_with_the_same_H, q.rank(), 1);
    if (k.rank() != 2) report_shape_error(ctrec_shape_error_din_q_must_be_B_by_H_and_k_B_by_T_by_H_with_the_same_H, k.rank(), 2);
    if (q.dim(0) != k.dim(1)) report_shape_error(ctrec_shape_error_din_q_must_be_B_by_H_and_k_B_by_T_by_H_with_the_same_H, q.dim(0), k.dim(1));
    if (!q.batched() && !k.batched()) ctrec_shape_error_din_q_or_k_must_be_per_example();
    const std::size_t T = k.dim(0), H = k.dim(1);
    mlp_config<N> mc{};
    mc.output_dims = c.hidden_units;
    mc.activation = c.activation;
    for (std::size_t i = 0; i < N; ++i) mc.initializers[i] = c.initializer;
    mc.kernel_regularizer = c.regularizer;
    mc.use_weight_norm = c.use_weight_norm;
    mc.use_learnable_weight_norm = c.use_learnable_weight_norm;
    // padded keys are replaced by 0 before anything reads them: w_t = 0 alone would still pool
    // 0 * k_t (NaN for a NaN or inf pad) and give the MLP's kernels the gradient k_t^T 0
    if (mask.g && mask.rank() == 1 && mask.dim(0) == T) k = where(greater_equal(reshape(mask, dims_of({T, 1})), 1.0), k, 0.0);
    const val qb = broadcast_to(q, dims_of({T, H})), kb = broadcast_to(k, dims_of({T, H}));
    const val z = concat(1, {qb, kb, qb - kb, qb * kb});  // (T, 4H), literally
    val w = reshape(mlp(m, scoped(s, "compress_tower"), mc, mode::predict, z), dims_of({T}));
    if (c.decay) w = w * (1.0 / std::sqrt(static_cast<double>(H)));
    if (mask.g) {
        if (mask.rank() != 1) report_shape_error(ctrec_shape_error_din_mask_must_be_B_by_T, mask.rank(), 1);
        if (mask.dim(0) != T) report_shape_error(ctrec_shape_error_din_mask_must_be_B_by_T, mask.dim(0), T);
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

} // namespace ctrec::layers
