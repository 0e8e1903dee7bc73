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
#include <tuple>

#include "ctrec/ad/vjp.hpp"
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

struct grad_norm_config {
    double scale = 1.0;
    double loss_pow = 2.0;
    bool relative_diff = false;
    double epsilon = 1e-6;
};

template <class GnormLoss, class WeightedLoss>
struct grad_norm_result {
    GnormLoss gnorm_loss{};
    WeightedLoss weighted_loss{};
};

namespace detail {
// sum over the whole batch of |dLoss/dShared|^2, for one shared input
template <class Loss, class Shared>
constexpr auto squared_grad_norm() {
    using G = ad::cotangent_t<graph_t<Loss>, Shared>;
    static_assert(!is_zero_v<G>,
                  "ctrec::layers::grad_norm: a task loss does not depend on a shared input (its gradient is None "
                  "in the original, which fails)");
    return batch_sum(sum(G{} * G{}));
}
// gnorm_i over every shared input, as a (1,) vector
template <class Loss, class... Shared>
constexpr auto grad_norm_of() {
    auto total = (squared_grad_norm<Loss, Shared>() + ...);
    return reshape<1>(sqrt(total));
}
// a scalar loss as a (1,) vector
template <node L>
constexpr auto as_vector1(L l) {
    if constexpr (L::shape == make_dims<1>()) return l;
    else return reshape<1>(l);
}
} // namespace detail

template <fixed_string Scope, grad_norm_config C = grad_norm_config{}, node... Loss, node... Shared>
constexpr auto grad_norm(std::tuple<Loss...>, Shared...) {
    constexpr std::size_t n = sizeof...(Loss);
    static_assert(n >= 1, "ctrec::layers::grad_norm: needs at least one task loss");
    static_assert(sizeof...(Shared) >= 1, "ctrec::layers::grad_norm: needs at least one shared input");
    static_assert(((!Loss::batched && Loss::shape.size() == 1) && ...),
                  "ctrec::layers::grad_norm: every task loss must be an unbatched scalar (e.g. a batch mean)");
    static_assert(((Shared::batched && Shared::shape.rank >= 1) && ...),
                  "ctrec::layers::grad_norm: shared inputs must be batched tensors of rank >= 2 (B, ...)");

    constexpr auto theta = param_node<scoped<Scope, "grad_norm_weights">(), make_dims<n>()>{};
    auto w = softmax<0>(theta);  // reads parameters only: computed once per parameter change

    auto gnorm = stop_gradient(concat<0>(detail::grad_norm_of<Loss, Shared...>()...));
    auto wg = gnorm * w;
    auto avg = sum(wg) * lit<1.0 / static_cast<double>(n)>;  // mean of the weighted norms
    auto diff = [&] {
        if constexpr (C.relative_diff) return abs(wg - avg) / (avg + lit<C.epsilon>);
        else return abs(wg - avg);
    }();
    auto gnorm_loss = lit<C.scale> * sum(pow<C.loss_pow>(diff));

    auto losses = concat<0>(detail::as_vector1(Loss{})...);
    auto weighted_loss = sum(losses * stop_gradient(w));

    using inits = tlist<param_init<scoped<Scope, "grad_norm_weights">(), make_dims<n>(), init::Zeros{}>>;
    return grad_norm_result<result<std::remove_cvref_t<decltype(gnorm_loss)>, scalar_zero, tlist<>, inits>,
                            result<std::remove_cvref_t<decltype(weighted_loss)>>>{};
}

} // namespace ctrec::layers
