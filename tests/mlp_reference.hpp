#pragma once
// Naive references for the MLP tests, written from the spec (Dense 2.6 with weight norm,
// Keras BatchNormalization 1.5), reading the same leaf values as the programs.
#include "support.hpp"

#include <algorithm>

#include "ctrec/layers/initialize.hpp"
#include "ctrec/layers/mlp.hpp"
#include "ctrec/train/sgd.hpp"
#include "ctrec/train/train_program.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace mlp_ref {
constexpr std::size_t B = 5, D0 = 4;
constexpr auto x = input<"x", D0>;
using mat = std::vector<double>;  // row-major (rows x cols)

inline mat values(const std::string& name, std::size_t n) {
    mat v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = leaf_value(name, i);
    return v;
}
// z = h . W + b with W the weight-normalised kernel of dense_i (spec 2.6, trainable scale)
inline mat dense_ref(const mat& h, std::size_t rows, std::size_t in, std::size_t out, const std::string& scope, bool wn) {
    mat v = values(scope + "/kernel", in * out), g = values(scope + "/trainable_kernel_norm", out);
    mat b = values(scope + "/bias", out), z(rows * out);
    for (std::size_t j = 0; j < out && wn; ++j) {
        double s = 0;
        for (std::size_t i = 0; i < in; ++i) s += v[i * out + j] * v[i * out + j];
        for (std::size_t i = 0; i < in; ++i) v[i * out + j] = v[i * out + j] / std::sqrt(std::max(s, 1e-6)) * g[j];
    }
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t j = 0; j < out; ++j) {
            double a = b[j];
            for (std::size_t i = 0; i < in; ++i) a += h[r * in + i] * v[i * out + j];
            z[r * out + j] = a;
        }
    return z;
}
// Keras BN in training mode (batch statistics, eps 1e-3) or inference (moving statistics)
inline mat bn_ref(const mat& h, std::size_t rows, std::size_t d, const std::string& scope, bool train) {
    mat g = values(scope + "/gamma", d), be = values(scope + "/beta", d);
    mat mm = values(scope + "/moving_mean", d), mv = values(scope + "/moving_variance", d), y(h.size());
    for (std::size_t j = 0; j < d; ++j) {
        double mu = 0, var = 0;
        for (std::size_t r = 0; r < rows; ++r) mu += h[r * d + j] / rows;
        for (std::size_t r = 0; r < rows; ++r) var += (h[r * d + j] - mu) * (h[r * d + j] - mu) / rows;
        if (!train) mu = mm[j], var = std::abs(mv[j]) + 0.1;  // as positive_variances()
        for (std::size_t r = 0; r < rows; ++r) y[r * d + j] = g[j] * (h[r * d + j] - mu) / std::sqrt(var + 1e-3) + be[j];
    }
    return y;
}
template <class F>
mat map(mat v, F f) {
    for (double& e : v) e = f(e);
    return v;
}
inline double relu(double z) { return z > 0 ? z : 0; }
inline mat input_values(std::size_t rows) { return values("x", rows * D0); }
// leaf values with positive moving variances (a negative variance is not a state BN can reach)
inline double positive_variances(std::string_view name, std::size_t i) {
    double v = leaf_value(name, i);
    return name.ends_with("moving_variance") ? std::abs(v) + 0.1 : v;
}
} // namespace mlp_ref
using namespace mlp_ref;
