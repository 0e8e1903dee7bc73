#pragma once
// Naive float64 references for the sequence layers, written from the
// spec's formulas (layers-trans-seq-multitask-nas.md 2.1 AGRUCell and its driver, 2.3 DIEN)
// with every intermediate built: the concatenations [x, h] and [x, r * h] are formed and
// multiplied by the whole kernels, h_0 = 0 is a real zero state. A mask (ctrec's rule, the
// type-core headers' decisions) keeps the states at padded steps (mask < 1) and gives them
// attention weight 0. Leaf values come from test::leaves; no part of ctrec is used.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "support.hpp"

namespace seq_ref {

using vec = std::vector<double>;
using test::leaves;

inline double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }
// 0 linear, 1 relu, 2 tanh, 3 sigmoid
inline double act(int a, double x) { return a == 0 ? x : a == 1 ? std::max(x, 0.0) : a == 2 ? std::tanh(x) : sig(x); }

inline const vec& get(leaves& L, const std::string& n) {
    REQUIRE_MESSAGE(L.v.count(n) == 1, "no leaf " << n);
    return L.v.at(n);
}
// n values of leaf `name` from offset off
inline vec part(leaves& L, const std::string& name, std::size_t n, std::size_t off = 0) {
    const vec& v = get(L, name);
    REQUIRE(off + n <= v.size());
    return vec(v.begin() + static_cast<std::ptrdiff_t>(off), v.begin() + static_cast<std::ptrdiff_t>(off + n));
}

struct mat {
    std::size_t rows = 0, cols = 0;
    vec v;
    mat(leaves& L, const std::string& name, std::size_t r, std::size_t c) : rows(r), cols(c), v(get(L, name)) {
        REQUIRE(v.size() == r * c);
    }
    double operator()(std::size_t i, std::size_t j) const { return v[i * cols + j]; }
};
inline vec vecmat(const vec& x, const mat& W) {
    REQUIRE(x.size() == W.rows);
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

// One Monolith AGRUCell step (2.1.5): cell 0 AGRU, 1 AUGRU.
inline vec agru_step(const vec& x, const vec& h, double att, const mat& Wg, const vec& bg, const mat& Wc, const vec& bc, int a,
                     int cell) {
    const std::size_t U = h.size();
    vec gates = vecmat(cat(x, h), Wg);
    for (std::size_t j = 0; j < 2 * U; ++j) gates[j] = sig(gates[j] + bg[j]);
    vec rh(U);
    for (std::size_t j = 0; j < U; ++j) rh[j] = gates[j] * h[j];
    vec c = vecmat(cat(x, rh), Wc);
    vec out(U);
    for (std::size_t j = 0; j < U; ++j) {
        c[j] = act(a, c[j] + bc[j]);
        const double u = gates[U + j];
        if (cell == 0) {
            out[j] = (1 - att) * h[j] + att * c[j];
        } else {
            const double v = (1 - att) * u;
            out[j] = v * h[j] + (1 - v) * c[j];
        }
    }
    return out;
}

// The attention RNN driver over xs (T x I) with scores att (T); mask empty = every step real.
inline std::vector<vec> agru_rnn(const std::vector<vec>& xs, const vec& att, const vec& mask, std::size_t U, const mat& Wg,
                                 const vec& bg, const mat& Wc, const vec& bc, int a, int cell) {
    std::vector<vec> hs;
    vec h(U, 0.0);
    for (std::size_t t = 0; t < xs.size(); ++t) {
        if (mask.empty() || mask[t] >= 1) h = agru_step(xs[t], h, att[t], Wg, bg, Wc, bc, a, cell);
        hs.push_back(h);
    }
    return hs;
}

// The driver for every example of leaves "x" (B, T, I), "a" (B, T), "mask" (B, T) if masked,
// variables under `scope`: outputs (B, T, U) and final states (B, U), flattened.
struct rnn_out {
    vec all, last;
};
inline rnn_out agru_batch(leaves& L, const std::string& scope, std::size_t B, std::size_t T, std::size_t I, std::size_t U,
                          int a, int cell, bool masked) {
    const mat Wg(L, scope + "/gates/kernel", I + U, 2 * U), Wc(L, scope + "/candidate/kernel", I + U, U);
    const vec bg = get(L, scope + "/gates/bias"), bc = get(L, scope + "/candidate/bias");
    rnn_out o;
    for (std::size_t b = 0; b < B; ++b) {
        std::vector<vec> xs;
        for (std::size_t t = 0; t < T; ++t) xs.push_back(part(L, "x", I, (b * T + t) * I));
        const auto hs = agru_rnn(xs, part(L, "a", T, b * T), masked ? part(L, "mask", T, b * T) : vec{}, U, Wg, bg, Wc, bc, a, cell);
        for (const auto& h : hs) o.all.insert(o.all.end(), h.begin(), h.end());
        o.last.insert(o.last.end(), hs.back().begin(), hs.back().end());
    }
    return o;
}

// One Keras GRUCell step (2.3.5: reset-after, gates z, r, h; bias row 0 input, row 1 recurrent).
inline vec keras_gru(const vec& x, const vec& h, const mat& W, const mat& R, const mat& b, int a) {
    const std::size_t U = h.size();
    const vec xp = vecmat(x, W), gp = vecmat(h, R);
    vec out(U);
    for (std::size_t j = 0; j < U; ++j) {
        const double z = sig(xp[j] + b(0, j) + gp[j] + b(1, j));
        const double r = sig(xp[U + j] + b(0, U + j) + gp[U + j] + b(1, U + j));
        const double hh = act(a, xp[2 * U + j] + b(0, 2 * U + j) + r * (gp[2 * U + j] + b(1, 2 * U + j)));
        out[j] = z * h[j] + (1 - z) * hh;
    }
    return out;
}

// DIEN (2.3.5) for example b of leaves "q" (B, U), "k" (B, T, E), "mask" (B, T) if masked.
inline vec dien(leaves& L, const std::string& s, std::size_t b, std::size_t T, std::size_t E, std::size_t U, int a, int cell,
                bool masked) {
    const mat W(L, s + "/gru_cell/kernel", E, 3 * U), R(L, s + "/gru_cell/recurrent_kernel", U, 3 * U),
        bias(L, s + "/gru_cell/bias", 2, 3 * U), Watt(L, s + "/attention_weight", U, U),
        Wg(L, s + "/augru_cell/gates/kernel", 2 * U, 2 * U), Wc(L, s + "/augru_cell/candidate/kernel", 2 * U, U);
    const vec bg = get(L, s + "/augru_cell/gates/bias"), bc = get(L, s + "/augru_cell/candidate/bias");
    const vec q = part(L, "q", U, b * U);
    const vec mask = masked ? part(L, "mask", T, b * T) : vec{};
    auto real = [&](std::size_t t) { return mask.empty() || mask[t] >= 1; };
    std::vector<vec> hs;
    vec h(U, 0.0);
    for (std::size_t t = 0; t < T; ++t) {
        if (real(t)) h = keras_gru(part(L, "k", E, (b * T + t) * E), h, W, R, bias, a);
        hs.push_back(h);
    }
    vec v(U, 0.0), sc(T, 0.0), alpha(T, 0.0);
    for (std::size_t i = 0; i < U; ++i)
        for (std::size_t j = 0; j < U; ++j) v[i] += Watt(i, j) * q[j];
    for (std::size_t t = 0; t < T; ++t)
        for (std::size_t i = 0; i < U; ++i) sc[t] += hs[t][i] * v[i];
    double mx = -1e300, sum = 0;
    for (std::size_t t = 0; t < T; ++t)
        if (real(t)) mx = std::max(mx, sc[t]);
    for (std::size_t t = 0; t < T; ++t)
        if (real(t)) sum += alpha[t] = std::exp(sc[t] - mx);
    for (double& x : alpha) x = sum > 0 ? x / sum : 0.0;
    return agru_rnn(hs, alpha, mask, U, Wg, bg, Wc, bc, a, cell).back();
}
inline vec dien_batch(leaves& L, const std::string& s, std::size_t B, std::size_t T, std::size_t E, std::size_t U, int a, int cell,
                      bool masked) {
    vec out;
    for (std::size_t b = 0; b < B; ++b) {
        const vec d = dien(L, s, b, T, E, U, a, cell, masked);
        out.insert(out.end(), d.begin(), d.end());
    }
    return out;
}

} // namespace seq_ref
