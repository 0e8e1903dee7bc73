#pragma once
// Naive references for the recurrent cells and DIEN (spec layers-trans-seq-multitask-nas.md
// 2.1, 2.3), written from the spec's formulas in double with every intermediate built:
// concatenations [x, h] and [x, r * h] are formed and multiplied by the whole kernels.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "support.hpp"

namespace ref {

using vec = std::vector<double>;
inline double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }
// 0 linear, 1 relu, 2 tanh, 3 sigmoid
inline double act(int a, double x) { return a == 0 ? x : a == 1 ? std::max(x, 0.0) : a == 2 ? std::tanh(x) : sig(x); }

// A variable (rows x cols) read from a leaf function.
struct mat {
    std::size_t rows, cols;
    vec v;
    mat(const test::value_fn& f, const std::string& name, std::size_t r, std::size_t c) : rows(r), cols(c), v(r * c) {
        for (std::size_t i = 0; i < r * c; ++i) v[i] = f(name, i);
    }
    double operator()(std::size_t i, std::size_t j) const { return v[i * cols + j]; }
};
inline vec vecmat(const vec& x, const mat& W) {
    vec y(W.cols, 0.0);
    for (std::size_t i = 0; i < W.rows; ++i)
        for (std::size_t j = 0; j < W.cols; ++j) y[j] += x[i] * W(i, j);
    return y;
}
inline vec cat(const vec& a, const vec& b) {
    vec r = a;
    r.insert(r.end(), b.begin(), b.end());
    return r;
}

// Keras GRUCell (reset-after, gate order z, r, h); every intermediate of one step.
struct gru_step {
    vec xz, xr, xh, gz, gr, gh, z, r, hh, h;
};
inline gru_step keras_gru(const vec& x, const vec& h, const mat& W, const mat& R, const mat& b, int a) {
    const std::size_t U = h.size();
    gru_step s;
    vec xp = vecmat(x, W), gp = vecmat(h, R);
    for (std::size_t j = 0; j < U; ++j) {
        s.xz.push_back(xp[j] + b(0, j)), s.xr.push_back(xp[U + j] + b(0, U + j)), s.xh.push_back(xp[2 * U + j] + b(0, 2 * U + j));
        s.gz.push_back(gp[j] + b(1, j)), s.gr.push_back(gp[U + j] + b(1, U + j)), s.gh.push_back(gp[2 * U + j] + b(1, 2 * U + j));
        s.z.push_back(sig(s.xz[j] + s.gz[j]));
        s.r.push_back(sig(s.xr[j] + s.gr[j]));
        s.hh.push_back(act(a, s.xh[j] + s.r[j] * s.gh[j]));
        s.h.push_back(s.z[j] * h[j] + (1 - s.z[j]) * s.hh[j]);
    }
    return s;
}

// Monolith AGRUCell (reset-before); cell: 0 AGRU, 1 AUGRU, 2 no attention score.
struct agru_step {
    vec xh, gates, r, u, xrh, c, h;
};
inline agru_step agru(const vec& x, const vec& h, double att, const mat& Wg, const vec& bg, const mat& Wc, const vec& bc,
                      int a, int cell) {
    const std::size_t U = h.size();
    agru_step s;
    s.xh = cat(x, h);
    s.gates = vecmat(s.xh, Wg);
    for (std::size_t j = 0; j < 2 * U; ++j) s.gates[j] = sig(s.gates[j] + bg[j]);
    s.r.assign(s.gates.begin(), s.gates.begin() + U);
    s.u.assign(s.gates.begin() + U, s.gates.end());
    vec rh(U);
    for (std::size_t j = 0; j < U; ++j) rh[j] = s.r[j] * h[j];
    s.xrh = cat(x, rh);
    s.c = vecmat(s.xrh, Wc);
    for (std::size_t j = 0; j < U; ++j) s.c[j] = act(a, s.c[j] + bc[j]);
    for (std::size_t j = 0; j < U; ++j) {
        if (cell == 0) s.h.push_back((1 - att) * h[j] + att * s.c[j]);
        else if (cell == 1) {
            const double v = (1 - att) * s.u[j];
            s.h.push_back(v * h[j] + (1 - v) * s.c[j]);
        } else s.h.push_back((1 - s.u[j]) * h[j] + s.u[j] * s.c[j]);
    }
    return s;
}
inline vec leaf_vec(const test::value_fn& f, const std::string& name, std::size_t n, std::size_t off = 0) {
    vec v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = f(name, off + i);
    return v;
}

// The attention RNN driver over xs (T x I) with scores a (T); mask (T) or empty (all real).
// Returns every state h_1..h_T; a padded step keeps the state.
inline std::vector<vec> agru_rnn(const std::vector<vec>& xs, const vec& att, const vec& mask, std::size_t U,
                                 const mat& Wg, const vec& bg, const mat& Wc, const vec& bc, int a, int cell) {
    std::vector<vec> hs;
    vec h(U, 0.0);
    for (std::size_t t = 0; t < xs.size(); ++t) {
        if (mask.empty() || mask[t] >= 1) h = agru(xs[t], h, att[t], Wg, bg, Wc, bc, a, cell).h;
        hs.push_back(h);
    }
    return hs;
}

// DIEN for one example; cell 0 AGRU, 1 AUGRU; mask empty = none.
struct dien_example {
    std::vector<vec> hs, es;  // GRU states, evolved states
    vec v, s, alpha, out;
};
inline dien_example dien(const test::value_fn& f, const std::string& scope, std::size_t b, std::size_t T, std::size_t E,
                         std::size_t U, int a, int cell, bool masked) {
    dien_example d;
    const mat W(f, scope + "/gru_cell/kernel", E, 3 * U), R(f, scope + "/gru_cell/recurrent_kernel", U, 3 * U),
        bias(f, scope + "/gru_cell/bias", 2, 3 * U), Watt(f, scope + "/attention_weight", U, U),
        Wg(f, scope + "/augru_cell/gates/kernel", 2 * U, 2 * U), Wc(f, scope + "/augru_cell/candidate/kernel", 2 * U, U);
    const vec bg = leaf_vec(f, scope + "/augru_cell/gates/bias", 2 * U), bc = leaf_vec(f, scope + "/augru_cell/candidate/bias", U);
    const vec q = leaf_vec(f, "q", U, b * U);
    vec mask;
    if (masked) mask = leaf_vec(f, "mask", T, b * T);
    auto real = [&](std::size_t t) { return mask.empty() || mask[t] >= 1; };
    vec h(U, 0.0);
    for (std::size_t t = 0; t < T; ++t) {
        if (real(t)) h = keras_gru(leaf_vec(f, "k", E, (b * T + t) * E), h, W, R, bias, a).h;
        d.hs.push_back(h);
    }
    d.v.assign(U, 0.0);
    for (std::size_t i = 0; i < U; ++i)
        for (std::size_t j = 0; j < U; ++j) d.v[i] += Watt(i, j) * q[j];
    d.s.assign(T, 0.0);
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t i = 0; i < U; ++i) d.s[t] += d.hs[t][i] * d.v[i];
    double mx = -1e300, sum = 0;
    for (std::size_t t = 0; t < T; ++t)
        if (real(t)) mx = std::max(mx, d.s[t]);
    d.alpha.assign(T, 0.0);
    for (std::size_t t = 0; t < T; ++t)
        if (real(t)) sum += d.alpha[t] = std::exp(d.s[t] - mx);
    for (double& x : d.alpha) x = sum > 0 ? x / sum : 0.0;
    d.es = agru_rnn(d.hs, d.alpha, mask, U, Wg, bg, Wc, bc, a, cell);
    d.out = d.es.back();
    return d;
}
inline vec dien_batch(const test::value_fn& f, const std::string& scope, std::size_t B, std::size_t T, std::size_t E,
                      std::size_t U, int a, int cell, bool masked) {
    vec out;
    for (std::size_t b = 0; b < B; ++b) {
        auto d = dien(f, scope, b, T, E, U, a, cell, masked);
        out.insert(out.end(), d.out.begin(), d.out.end());
    }
    return out;
}

} // namespace ref
