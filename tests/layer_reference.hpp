#pragma once
// Naive float64 references for the layers, written from the spec
// (layers-core-and-cross.md: Dense 2, activations 1.2, Keras BatchNormalization 1.5, MLP 3,
// DCN 8; layers-trans-seq-multitask-nas.md 2.2: DIN), reading the same leaf values as the
// programs (test::leaves). Plain loops over row-major vectors; no part of ctrec is used.
#include <cmath>
#include <string>
#include <vector>

#include "support.hpp"

namespace flat_ref {

using vec = std::vector<double>;
using test::leaves;

inline const vec& get(leaves& L, const std::string& n) {
    REQUIRE_MESSAGE(L.v.count(n) == 1, "no leaf " << n);
    return L.v.at(n);
}

// ---- activations (spec 1.2) --------------------------------------------------------------------
inline double relu(double z) { return z > 0 ? z : 0; }
inline double sigmoid(double z) { return 1 / (1 + std::exp(-z)); }
inline double softplus(double z) { return std::log1p(std::exp(z)); }

// ---- Dense (spec 2) --------------------------------------------------------------------------------
enum class norm { none, trainable, fixed, compat };
// The kernel as used: V, or V_j / sqrt(max(|V_j|^2, 1e-6)) times g (trainable or fixed) or 1.
inline vec kernel(leaves& L, const std::string& s, std::size_t in, std::size_t out, norm n) {
    vec W = get(L, s + "/kernel");
    if (n == norm::none) return W;
    for (std::size_t j = 0; j < out; ++j) {
        double ss = 0;
        for (std::size_t i = 0; i < in; ++i) ss += W[i * out + j] * W[i * out + j];
        double g = 1;
        if (n == norm::trainable) g = get(L, s + "/trainable_kernel_norm")[j];
        if (n == norm::fixed) g = get(L, s + "/kernel_norm")[j];
        for (std::size_t i = 0; i < in; ++i) W[i * out + j] = W[i * out + j] / std::sqrt(std::max(ss, 1e-6)) * g;
    }
    return W;
}
// z = x . W + b over `rows` rows of width in
inline vec dense(leaves& L, const vec& x, std::size_t rows, std::size_t in, std::size_t out, const std::string& s, norm n,
                 bool bias = true) {
    const vec W = kernel(L, s, in, out, n);
    vec z(rows * out, 0.0);
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < out; ++j) {
            double a = bias ? get(L, s + "/bias")[j] : 0.0;
            for (std::size_t i = 0; i < in; ++i) a += x[r * in + i] * W[i * out + j];
            z[r * out + j] = a;
        }
    return z;
}

// ---- BatchNormalization (spec 1.5) ---------------------------------------------------------------------
// x: batch x per (per = groups x d); statistics over the batch and the groups, per feature.
struct bn_stats {
    vec mean, var;
};
inline bn_stats moments(const vec& x, std::size_t batch, std::size_t groups, std::size_t d) {
    bn_stats s{vec(d, 0.0), vec(d, 0.0)};
    const double n = static_cast<double>(batch * groups);
    for (std::size_t e = 0; e < batch * groups; ++e)
        for (std::size_t j = 0; j < d; ++j) s.mean[j] += x[e * d + j] / n;
    for (std::size_t e = 0; e < batch * groups; ++e)
        for (std::size_t j = 0; j < d; ++j) s.var[j] += (x[e * d + j] - s.mean[j]) * (x[e * d + j] - s.mean[j]) / n;
    return s;
}
inline vec bn_apply(const vec& x, std::size_t d, const vec& mean, const vec& var, const vec& offset, const vec& scale,
                    double eps) {
    vec y(x.size());
    for (std::size_t e = 0; e < x.size() / d; ++e)
        for (std::size_t j = 0; j < d; ++j)
            y[e * d + j] = (x[e * d + j] - mean[j]) / std::sqrt(var[j] + eps) * scale[j] + offset[j];
    return y;
}
// train (batch statistics) or inference (moving statistics), no renorm
inline vec bn(leaves& L, const vec& x, std::size_t batch, std::size_t groups, std::size_t d, const std::string& s, bool train,
              double eps = 1e-3) {
    const vec& gamma = get(L, s + "/gamma");
    const vec& beta = get(L, s + "/beta");
    if (!train) return bn_apply(x, d, get(L, s + "/moving_mean"), get(L, s + "/moving_variance"), beta, gamma, eps);
    const bn_stats st = moments(x, batch, groups, d);
    return bn_apply(x, d, st.mean, st.var, beta, gamma, eps);
}
// positive values for every variance-like leaf of a BN scope (a negative variance is not a
// state BN can reach)
inline void positive_bn_state(leaves& L, const std::string& s, std::size_t d) {
    for (const char* leaf : {"/moving_variance", "/moving_stddev", "/renorm_stddev"}) {
        vec v(d);
        for (std::size_t j = 0; j < d; ++j) v[j] = 0.5 + 0.1 * static_cast<double>(j);
        L[s + leaf] = v;
    }
}

} // namespace flat_ref
