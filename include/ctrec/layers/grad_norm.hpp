#pragma once
// GradNorm (Monolith norms.GradNorm; spec layers-core-and-cross.md section 1.9): an
// auxiliary loss that learns softmax task weights so that the weighted gradient norms
// of the task losses on a shared representation become similar (arXiv 1711.02257).
//
//   constexpr auto shared = matmul(x, W);                       // top of the shared bottom
//   constexpr auto l1 = batch_mean(...), l2 = batch_mean(...);  // unbatched scalar losses
//   constexpr auto g = layers::grad_norm<"gradnorm", {.relative_diff = true}>(std::tuple{l1, l2}, shared);
//   g.gnorm_loss      result: the balancing loss (its `inits` hold the layer's variable)
//   g.weighted_loss   result: sum_i loss_i * stop_gradient(w_i)
//   a training loss is typically weighted_loss + gnorm_loss (+ penalties)
//
// The original's output is the pair (gnorm_loss, weighted_loss); here they are the two
// members above, each a layer `result`.
//
// Shared inputs: one or more batched tensors (the original's list, concatenated along
// axis 1). The Frobenius norm of a concatenation is the root of the summed squares of
// its parts, so no concatenation is formed. Every loss must depend on every shared input
// (in the original tf.gradients gives None otherwise and the concat fails); this is
// checked at compile time.
//
// Variable: "<Scope>/grad_norm_weights" (n,), zeros, trainable; w = softmax of it.
//
// G_i = dloss_i/dshared is the reverse-mode cotangent of shared in loss_i's own graph,
// formed as an ordinary expression next to the forward values (loss_i is an unbatched
// scalar, so its seed is 1). Only its value is used: the norms are stop_gradient'ed, so
// no second-order derivative is ever formed, gnorm_loss sends gradient only into
// grad_norm_weights, and weighted_loss none into them. (Those zero gradients are
// symbolic, i.e. pruned, unless the task heads use maximum / minimum / where: their
// derivative rules currently keep where(c, 0, 0) nodes for a zero cotangent, so the
// zero is computed instead. The value is exact either way.)
//
// Implementation:
// GradNorm (spec layers-core-and-cross.md 1.9), exactly as
// ctrec/layers/grad_norm.hpp documents it: "<s>/grad_norm_weights" (n) zeros, w = softmax;
//   gnorm_i = sqrt(sum over the batch and every shared input of (dloss_i/dshared)^2)
//   wg = stop_gradient(gnorm) w,  avg = mean(wg),  diff = |wg - avg| [/ (avg + epsilon)]
//   gnorm_loss = scale sum diff^loss_pow,  weighted_loss = sum_i loss_i stop_gradient(w_i)
// Every loss must be an unbatched scalar that depends on every shared (batched) input.
//
// G_i is built in the model's own graph by a reverse sweep from loss_i (seed 1) that enters
// only nodes depending on a shared input (the bottom below them gets no derivative nodes).
// Only its value is used (under stop_gradient): no second-order derivative is formed.
// diff^p: a product of p factors for a small integer p (exactly as pow), otherwise
// exp(p log diff) with value and derivative 0 at diff = 0.
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

struct grad_norm_config {
    double scale = 1.0;
    double loss_pow = 2.0;
    bool relative_diff = false;
    double epsilon = 1e-6;
};



void ctrec_shape_error_grad_norm_needs_at_least_one_task_loss_and_one_shared_input();
void ctrec_shape_error_grad_norm_every_task_loss_must_be_an_unbatched_scalar();
void ctrec_shape_error_grad_norm_shared_inputs_must_be_batched_tensors_B_by_etc();
void ctrec_shape_error_grad_norm_a_task_loss_does_not_depend_on_a_shared_input();

struct grad_norm_vals {
    val gnorm_loss, weighted_loss;
};

namespace detail {
// The sum over the batch of |d root / d shared_k|^2 over every shared input k.
constexpr val squared_grad_norm(graph& g, std::uint32_t root, const val* shared, std::size_t ns) {
    bool reaches[max_nodes]{};  // node depends on a shared input
    for (std::size_t k = 0; k < ns; ++k) reaches[shared[k].id] = true;
    for (std::uint32_t i = 0; i <= root; ++i)
        for (std::uint32_t j = 0; j < g.nodes[i].nops && !reaches[i]; ++j) reaches[i] = reaches[g.operand(i, j)];
    std::uint32_t ct[max_nodes]{};
    for (std::uint32_t i = 0; i <= root; ++i) ct[i] = none;
    ct[root] = build::constant(g, 1.0, g.nodes[root].shape);
    for (std::uint32_t i = root + 1; i-- > 0;) {
        if (ct[i] == none || !reaches[i]) continue;
        for (std::uint32_t j = 0; j < g.nodes[i].nops; ++j) {
            const std::uint32_t o = g.operand(i, j);
            if (!reaches[o]) continue;
            const std::uint32_t c = contribution(g, i, j, ct[i]);
            if (c == none) continue;
            ct[o] = ct[o] == none ? c : build::map(g, opcode::add, ct[o], c);
        }
    }
    val total{};
    for (std::size_t k = 0; k < ns; ++k) {
        if (ct[shared[k].id] == none) ctrec_shape_error_grad_norm_a_task_loss_does_not_depend_on_a_shared_input();
        const val G{&g, ct[shared[k].id]};
        // a cotangent the same for every example (a linear loss) is unbatched: B times its square
        const val sq = G.batched() ? batch_sum(sum(G * G)) : sum(G * G) * make_batch_size(g);
        total = k == 0 ? sq : total + sq;
    }
    return total;
}
// x^p for x >= 0
constexpr val nonneg_pow(val x, double p) {
    if (p == static_cast<double>(static_cast<int>(p)) && p >= 1.0 && p <= 16.0) {
        val r = x;
        for (int k = 1; k < static_cast<int>(p); ++k) r = r * x;
        return r;
    }
    if (p == 0.0) return x * 0.0 + 1.0;
    const val pos = greater(x, 0.0);
    return where(pos, exp(p * log(where(pos, x, 1.0))), 0.0);
}
} // namespace detail

constexpr grad_norm_vals grad_norm(result& m, const name_string& s, const grad_norm_config& c, const val* losses, std::size_t n,
                                   const val* shared, std::size_t ns) {
    if (n == 0 || ns == 0) ctrec_shape_error_grad_norm_needs_at_least_one_task_loss_and_one_shared_input();
    for (std::size_t i = 0; i < n; ++i)
        if (losses[i].batched() || losses[i].shape().size() != 1) ctrec_shape_error_grad_norm_every_task_loss_must_be_an_unbatched_scalar();
    for (std::size_t k = 0; k < ns; ++k)
        if (!shared[k].batched() || shared[k].rank() < 1) ctrec_shape_error_grad_norm_shared_inputs_must_be_batched_tensors_B_by_etc();

    val theta = m.var(scoped(s, "grad_norm_weights").view(), dims_of({n}), init::Zeros{});
    const val w = softmax(theta, 0);
    val norms[64]{}, ls[64]{};
    for (std::size_t i = 0; i < n; ++i) {
        norms[i] = reshape(sqrt(detail::squared_grad_norm(m.g, losses[i].id, shared, ns)), dims_of({1}));
        ls[i] = reshape(losses[i], dims_of({1}));
    }
    const val wg = stop_gradient(concat(0, norms, n)) * w;
    const val avg = sum(wg) * (1.0 / static_cast<double>(n));
    val diff = abs(wg - avg);
    if (c.relative_diff) diff = diff / (avg + c.epsilon);
    return {c.scale * sum(detail::nonneg_pow(diff, c.loss_pow)), sum(concat(0, ls, n) * stop_gradient(w))};
}

// The facade's result: out() is gnorm_loss (the result declares grad_norm_weights);
// weighted_loss() declares nothing. A training loss is typically weighted_loss + gnorm_loss.
struct grad_norm_result : result {
    std::uint32_t weighted_id = 0;
    constexpr expr gnorm_loss() const { return out(); }
    constexpr expr weighted_loss() const { return {g, weighted_id}; }
};

// grad_norm<"gn", cfg>({&l1, &l2, &l3}, {&shared}): the losses and shared inputs by address.
template <fixed_string Scope, grad_norm_config C = grad_norm_config{}, std::size_t NL, std::size_t NS>
constexpr grad_norm_result grad_norm(const expr* const (&losses)[NL], const expr* const (&shared)[NS]) {
    static_assert(NL <= 64, "ctrec::layers::grad_norm: at most 64 task losses");
    const expr* all[NL + NS]{};
    for (std::size_t i = 0; i < NL; ++i) all[i] = losses[i];
    for (std::size_t k = 0; k < NS; ++k) all[NL + k] = shared[k];
    std::uint32_t ids[NL + NS]{};
    grad_norm_result m;
    m.g = join_all(all, ids);
    val l[NL]{}, sh[NS]{};
    for (std::size_t i = 0; i < NL; ++i) l[i] = m.at(ids[i]);
    for (std::size_t k = 0; k < NS; ++k) sh[k] = m.at(ids[NL + k]);
    const grad_norm_vals v = grad_norm(m, Scope.view(), C, l, NL, sh, NS);
    m.set_out(v.gnorm_loss);
    m.weighted_id = v.weighted_loss.id;
    return m;
}

} // namespace ctrec::layers
