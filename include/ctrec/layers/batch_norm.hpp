#pragma once
// Keras BatchNormalization (TF 2.4) as MLP uses it, including batch renormalization
// (spec layers-core-and-cross.md section 1.5).
//
//   constexpr auto r = layers::batch_norm<"mlp/BatchNorm/in", layers::mode::train>(x);
//   r.out                      y, shaped like x
//   decltype(r)::updates       new moving statistics after a training step (train only)
//   decltype(r)::inits         every variable of the layer, in Keras' creation order
//
// Per-example input (..., D): the statistics are taken over the batch and every
// per-example axis except the last (Keras axis = -1), as biased (population) moments.
//
// Variables, all (D,), in creation order: gamma (ones), beta (zeros), moving_mean
// (zeros), moving_variance (ones), and with renorm moving_stddev (ones), renorm_mean
// (zeros), renorm_stddev (ones). All exist in every mode (they are in `inits` whatever
// the mode), so a scoring and a training program share one set of weights.
//
// Modes: the original picks the statistics from Keras' training flag, which MLP never
// passes (in TF1 graph mode it defaults to inference); ctrec takes the mode explicitly.
//   train:          batch statistics; the full gradient through mu and sigma^2; updates
//                   of the moving statistics (TF's assign_moving_average:
//                   v <- v - (v - value) * (1 - momentum)).
//   eval / predict: y = gamma (x - moving_mean) / sqrt(moving_variance + eps) + beta. The
//                   moving statistics are constants for AD (stop_gradient), so they get
//                   no gradient; the per-feature scale and shift read parameters only,
//                   so the plan computes them once per parameter change (the folded
//                   affine map of the spec).
//
// Both modes evaluate TF's form y = x * inv + (offset - mean * inv), inv = scale *
// rsqrt(var + eps) (nn.batch_normalization), with scale = gamma, offset = beta; under
// renorm scale = r gamma, offset = d gamma + beta.
//
// Not reproduced: TF skips the moving-average updates when the batch is empty
// (inputs_size > 0); a batch of size 0 has no statistics here.
#include <limits>

#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

struct batch_norm_config {
    double momentum = 0.99;
    double epsilon = 1e-3;
    bool renorm = false;
    // renorm_clipping ({rmax, rmin, dmax}); a key missing from the original's dict is the
    // default here, which clips nothing.
    double rmax = std::numeric_limits<double>::infinity();
    double rmin = 0.0;
    double dmax = std::numeric_limits<double>::infinity();
    double renorm_momentum = 0.99;
};

namespace detail {
// The biased moment of e over the batch and every per-example axis but the last: an
// unbatched (D,) value. Values computed from it take an extra pass over the batch.
template <node E>
constexpr auto bn_moment(E e) {
    constexpr std::size_t r = E::shape.rank;
    if constexpr (r <= 1) {
        return batch_mean(e);
    } else {
        constexpr unsigned mask = all_axes(r) & ~(1u << (r - 1));
        constexpr double n = static_cast<double>(E::shape.size() / E::shape.d[r - 1]);
        return batch_mean(reduce_node<reduce_sum_op, mask, E>{} * lit<1.0 / n>);
    }
}
// TF's assign_moving_average: the new value of `var` after one step towards `value`.
template <double Momentum, node V, node X>
constexpr auto moving_average(V var, X value) {
    return var - (var - value) * lit<1.0 - Momentum>;
}
// nn.batch_normalization(x, mean, variance, offset, scale, eps)
template <double Eps, node X, node M, node Var, node Off, node Sc>
constexpr auto tf_batch_normalization(X x, M mean, Var var, Off offset, Sc scale) {
    auto inv = rsqrt(var + lit<Eps>) * scale;
    return x * inv + (offset - mean * inv);
}
} // namespace detail

template <fixed_string Scope, mode M, batch_norm_config C = batch_norm_config{}, node X>
constexpr auto batch_norm(X x) {
    static_assert(X::batched && X::shape.rank >= 1,
                  "ctrec::layers::batch_norm: the input must be a batched tensor (B, ..., D)");
    static_assert(C.epsilon > 0.0, "ctrec::layers::batch_norm: epsilon must be positive");
    static_assert(C.rmin <= C.rmax && C.dmax >= 0.0,
                  "ctrec::layers::batch_norm: renorm clipping needs rmin <= rmax and dmax >= 0");
    constexpr std::size_t D = X::shape.d[X::shape.rank - 1];
    constexpr dims vs = make_dims<D>();
    constexpr double eps = C.epsilon;

    constexpr auto gamma = param_node<scoped<Scope, "gamma">(), vs>{};
    constexpr auto beta = param_node<scoped<Scope, "beta">(), vs>{};
    [[maybe_unused]] constexpr auto moving_mean = param_node<scoped<Scope, "moving_mean">(), vs>{};
    [[maybe_unused]] constexpr auto moving_variance = param_node<scoped<Scope, "moving_variance">(), vs>{};
    [[maybe_unused]] constexpr auto moving_stddev = param_node<scoped<Scope, "moving_stddev">(), vs>{};
    [[maybe_unused]] constexpr auto renorm_mean = param_node<scoped<Scope, "renorm_mean">(), vs>{};
    [[maybe_unused]] constexpr auto renorm_stddev = param_node<scoped<Scope, "renorm_stddev">(), vs>{};

    using base_inits = tlist<param_init<scoped<Scope, "gamma">(), vs, init::Ones{}>,
                             param_init<scoped<Scope, "beta">(), vs, init::Zeros{}>,
                             param_init<scoped<Scope, "moving_mean">(), vs, init::Zeros{}>,
                             param_init<scoped<Scope, "moving_variance">(), vs, init::Ones{}>>;
    using renorm_inits = tlist<param_init<scoped<Scope, "moving_stddev">(), vs, init::Ones{}>,
                               param_init<scoped<Scope, "renorm_mean">(), vs, init::Zeros{}>,
                               param_init<scoped<Scope, "renorm_stddev">(), vs, init::Ones{}>>;
    using inits = std::conditional_t<C.renorm, tl_concat_t<base_inits, renorm_inits>, base_inits>;

    if constexpr (M != mode::train) {
        auto y = detail::tf_batch_normalization<eps>(x, stop_gradient(moving_mean),
                                                     stop_gradient(moving_variance), beta, gamma);
        return result<std::remove_cvref_t<decltype(y)>, scalar_zero, tlist<>, inits>{};
    } else {
        auto mu = detail::bn_moment(x);
        // TF takes the variance against stop_gradient(mu); its derivative w.r.t. mu is
        // -2 mean(x - mu) = 0, so the gradient is the same and one term smaller.
        auto dev = x - stop_gradient(mu);
        auto var = detail::bn_moment(dev * dev);
        auto new_mean = detail::moving_average<C.momentum>(moving_mean, mu);

        if constexpr (!C.renorm) {
            auto y = detail::tf_batch_normalization<eps>(x, mu, var, beta, gamma);
            auto new_var = detail::moving_average<C.momentum>(moving_variance, var);
            using updates = tlist<state_update<scoped<Scope, "moving_mean">(), std::remove_cvref_t<decltype(new_mean)>>,
                                  state_update<scoped<Scope, "moving_variance">(), std::remove_cvref_t<decltype(new_var)>>>;
            return result<std::remove_cvref_t<decltype(y)>, scalar_zero, updates, inits>{};
        } else {
            auto s = sqrt(var + lit<eps>);
            // r and d are constants for AD, so the gradient is the plain BN gradient with
            // gamma -> r gamma. The stop_gradient sits on their inputs rather than on the
            // result: that way the renorm variables' gradients are symbolic zeros (they
            // are state, not trainable), and no dead derivative of the clipping is formed.
            auto s_c = stop_gradient(s);
            auto mu_c = stop_gradient(mu);
            // Floor on the renorm stddev: avoids dividing by ~0 early in training.
            auto rs = maximum(stop_gradient(renorm_stddev), sqrt(lit<eps>));
            // r and d use the pre-update renorm statistics (the updates below are separate
            // roots, written after the step). Clip only where a bound was given: r > 0
            // always, so rmin = 0 is no bound either.
            auto r_raw = s_c / rs;
            auto r_lo = [&] {
                if constexpr (C.rmin > 0.0) return maximum(r_raw, lit<C.rmin>);
                else return r_raw;
            }();
            auto r = [&] {
                if constexpr (C.rmax < std::numeric_limits<double>::infinity()) return minimum(r_lo, lit<C.rmax>);
                else return r_lo;
            }();
            auto d_raw = (mu_c - stop_gradient(renorm_mean)) / rs;
            auto d = [&] {
                if constexpr (C.dmax < std::numeric_limits<double>::infinity())
                    return minimum(maximum(d_raw, lit<-C.dmax>), lit<C.dmax>);
                else return d_raw;
            }();
            auto y = detail::tf_batch_normalization<eps>(x, mu, var, d * gamma + beta, r * gamma);

            auto new_renorm_mean = detail::moving_average<C.renorm_momentum>(renorm_mean, mu);
            auto new_renorm_stddev = detail::moving_average<C.renorm_momentum>(renorm_stddev, s);
            auto new_stddev = detail::moving_average<C.momentum>(moving_stddev, s);
            // Assigned, not averaged; the relu guards against rounding below zero. The
            // value does not depend on the old moving_variance, but train_program writes
            // updates only into parameters of its program, i.e. leaves it reads: the
            // always-true where() makes moving_variance one without using its value.
            auto new_var = where(lit<1.0>, maximum(new_stddev * new_stddev - lit<eps>, lit<0.0>), moving_variance);
            using updates =
                tlist<state_update<scoped<Scope, "renorm_mean">(), std::remove_cvref_t<decltype(new_renorm_mean)>>,
                      state_update<scoped<Scope, "renorm_stddev">(), std::remove_cvref_t<decltype(new_renorm_stddev)>>,
                      state_update<scoped<Scope, "moving_mean">(), std::remove_cvref_t<decltype(new_mean)>>,
                      state_update<scoped<Scope, "moving_stddev">(), std::remove_cvref_t<decltype(new_stddev)>>,
                      state_update<scoped<Scope, "moving_variance">(), std::remove_cvref_t<decltype(new_var)>>>;
            return result<std::remove_cvref_t<decltype(y)>, scalar_zero, updates, inits>{};
        }
    }
}

} // namespace ctrec::layers
