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
//
// Implementation:
// Keras BatchNormalization (TF 2.4) with batch renormalization, exactly
// as ctrec/layers/batch_norm.hpp documents it (variables, creation order, modes, TF's
// nn.batch_normalization form, renorm clipping, the moving-statistics updates).
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



void ctrec_shape_error_batch_norm_input_must_be_a_batched_tensor_B_by_D();
void ctrec_shape_error_batch_norm_epsilon_must_be_positive();
void ctrec_shape_error_batch_norm_renorm_clipping_needs_rmin_le_rmax_and_dmax_ge_0();

namespace detail {
// The biased moment over the batch and every per-example axis but the last: an unbatched (D,).
constexpr val bn_moment(val e) {
    const std::size_t r = e.rank();
    if (r <= 1) return batch_mean(e);
    const unsigned mask = ((1u << r) - 1u) & ~(1u << (r - 1));
    const double n = static_cast<double>(e.shape().size() / e.last());
    return batch_mean(sum_mask(e, mask) * (1.0 / n));
}
// TF's assign_moving_average
constexpr val moving_average(double momentum, val var, val value) { return var - (var - value) * (1.0 - momentum); }
// nn.batch_normalization(x, mean, variance, offset, scale, eps)
constexpr val tf_batch_normalization(double eps, val x, val mean, val var, val offset, val scale) {
    val inv = rsqrt(var + eps) * scale;
    return x * inv + (offset - mean * inv);
}
} // namespace detail

constexpr val batch_norm(result& m, const name_string& s, mode M, const batch_norm_config& c, val x) {
    if (!x.batched() || x.rank() < 1) ctrec_shape_error_batch_norm_input_must_be_a_batched_tensor_B_by_D();
    if (!(c.epsilon > 0.0)) ctrec_shape_error_batch_norm_epsilon_must_be_positive();
    if (!(c.rmin <= c.rmax && c.dmax >= 0.0)) ctrec_shape_error_batch_norm_renorm_clipping_needs_rmin_le_rmax_and_dmax_ge_0();
    const dims vs = dims_of({x.last()});
    const double eps = c.epsilon, inf = std::numeric_limits<double>::infinity();
    val gamma = m.var(scoped(s, "gamma").view(), vs, init::Ones{});
    val beta = m.var(scoped(s, "beta").view(), vs, init::Zeros{});
    val moving_mean = m.var(scoped(s, "moving_mean").view(), vs, init::Zeros{});
    val moving_variance = m.var(scoped(s, "moving_variance").view(), vs, init::Ones{});
    val moving_stddev{}, renorm_mean{}, renorm_stddev{};
    if (c.renorm) {
        moving_stddev = m.var(scoped(s, "moving_stddev").view(), vs, init::Ones{});
        renorm_mean = m.var(scoped(s, "renorm_mean").view(), vs, init::Zeros{});
        renorm_stddev = m.var(scoped(s, "renorm_stddev").view(), vs, init::Ones{});
    }
    if (M != mode::train)
        return detail::tf_batch_normalization(eps, x, stop_gradient(moving_mean), stop_gradient(moving_variance), beta, gamma);

    val mu = detail::bn_moment(x);
    val dev = x - stop_gradient(mu);  // TF's variance against stop_gradient(mu): same gradient
    val var = detail::bn_moment(dev * dev);
    val new_mean = detail::moving_average(c.momentum, moving_mean, mu);
    if (!c.renorm) {
        m.update(moving_mean, new_mean);
        m.update(moving_variance, detail::moving_average(c.momentum, moving_variance, var));
        return detail::tf_batch_normalization(eps, x, mu, var, beta, gamma);
    }
    val sd = sqrt(var + eps);
    val rs = maximum(stop_gradient(renorm_stddev), __builtin_sqrt(eps));
    val r = stop_gradient(sd) / rs;
    if (c.rmin > 0.0) r = maximum(r, c.rmin);
    if (c.rmax < inf) r = minimum(r, c.rmax);
    val d = (stop_gradient(mu) - stop_gradient(renorm_mean)) / rs;
    if (c.dmax < inf) d = minimum(maximum(d, -c.dmax), c.dmax);
    val y = detail::tf_batch_normalization(eps, x, mu, var, d * gamma + beta, r * gamma);
    val new_stddev = detail::moving_average(c.momentum, moving_stddev, sd);
    m.update(renorm_mean, detail::moving_average(c.renorm_momentum, renorm_mean, mu));
    m.update(renorm_stddev, detail::moving_average(c.renorm_momentum, renorm_stddev, sd));
    m.update(moving_mean, new_mean);
    m.update(moving_stddev, new_stddev);
    // assigned, not averaged (the relu guards against rounding below zero); the core's
    // train program keeps every updated variable, so no where() is needed to make it read
    m.update(moving_variance, maximum(new_stddev * new_stddev - eps, 0.0));
    return y;
}

template <fixed_string Scope, mode M, batch_norm_config C = batch_norm_config{}>
constexpr result batch_norm(const result& in) {
    result m = in;
    m.set_out(batch_norm(m, Scope.view(), M, C, m.value()));
    return m;
}

} // namespace ctrec::layers
