#pragma once
// Naive float64 references for the sparse NAS gates and layers (spec layers-trans-seq-multitask-
// nas.md 6.2-6.6), written from the spec's formulas (the P3 knee as the kernel computes it: a
// sort and a float32 running sum), and a runner that binds io.seed and checks the CPU backend
// against the reference backend on every output.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string_view>
#include <vector>

#include "support.hpp"

namespace nas_ref {

using vec = std::vector<double>;

// Every output of P at `seed` (test::run with io.seed).
template <class P>
std::vector<vec> run_seeded(test::leaves& L, std::size_t batch, std::uint64_t seed) {
    return test::run<P>(L, batch, seed);
}

// P on the CPU backend, checked against the reference backend (every output within tol,
// relative to max(1, |ref|)); returns the CPU outputs.
template <class P>
std::vector<vec> run_both(test::leaves& L, std::size_t batch, std::uint64_t seed, double tol = 1e-12) {
    auto cpu = run_seeded<P>(L, batch, seed);
    auto ref = run_seeded<typename P::template with_backend<ctrec::reference_backend>>(L, batch, seed);
    REQUIRE(cpu.size() == ref.size());
    for (std::size_t r = 0; r < cpu.size(); ++r) {
        INFO("output " << r << ", seed " << seed << ", batch " << batch);
        test::check_close(cpu[r], ref[r], tol);
    }
    return cpu;
}

// The shared noise a layer draws: element k of stream `name` at `seed` (core/random.hpp).
inline vec noise(ctrec::random_kind kind, std::uint64_t seed, std::string_view name, std::size_t n) {
    vec r(n);
    for (std::size_t k = 0; k < n; ++k)
        r[k] = ctrec::random_value<double>(kind, seed, ctrec::stream_hash(name), ctrec::shared_example, k);
    return r;
}

// ---- spec 6.2 helpers ----------------------------------------------------------------------------
inline double sig_hat(double x) { return x > 80 ? 1.0 : x < -80 ? 0.0 : 1.0 / (1.0 + std::exp(-x)); }
inline double sp_hat(double x) { return x > 80 ? x : x < -80 ? 0.0 : std::log1p(std::exp(x)); }
inline vec softmax(const vec& v) {
    const double m = *std::max_element(v.begin(), v.end());
    vec e(v.size());
    double s = 0;
    for (std::size_t i = 0; i < v.size(); ++i) s += e[i] = std::exp(v[i] - m);
    for (double& x : e) x /= s;
    return e;
}
inline std::size_t first_argmax(const vec& v) {
    std::size_t j = 0;
    for (std::size_t i = 1; i < v.size(); ++i)
        if (v[i] > v[j]) j = i;
    return j;
}

// P1: (b, D). noise: u (plain) or L = ln u - ln(1 - u) (use_logistic); none: EVAL / PREDICT.
enum class ste { none, softplus, clip };
struct p1_result {
    vec b, D, pi;
};
inline p1_result p1(const vec& a, const vec* noise, ste s, bool logistic, double tau) {
    p1_result r;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double pi = logistic ? sig_hat(((noise ? (*noise)[i] : 0.0) + a[i]) / tau) : sig_hat(a[i]);
        double b = 0;
        if (!noise) b = a[i] >= 0;
        else if (logistic) b = pi >= 0.5;
        else b = (*noise)[i] <= pi;
        double D = 0;
        if (s == ste::none) D = pi * (1 - pi) / (logistic ? tau : 1.0);
        else if (s == ste::softplus) D = sp_hat(a[i]);
        else D = std::min(sp_hat(a[i]), 1.0);
        r.b.push_back(b), r.D.push_back(D), r.pi.push_back(pi);
    }
    return r;
}

// P2 one-hot: j* and q (G: Gumbel noise or none), as spec 6.2 / 6.4 define them.
struct p2_result {
    std::size_t j = 0;
    vec q;
};
inline p2_result p2_onehot(const vec& a, const vec* G, bool use_gumbel, double tau) {
    const std::size_t C = a.size();
    vec v(C), key(C);
    for (std::size_t k = 0; k < C; ++k) {
        v[k] = (a[k] + (G && use_gumbel ? (*G)[k] : 0.0)) / tau;
        key[k] = !G ? a[k] : use_gumbel ? v[k] : a[k] / tau + (*G)[k];
    }
    return {first_argmax(key), softmax(v)};
}
// alphabar_k = hbar_j* q_j* (delta_j*k - q_k) / tau
inline vec p2_onehot_vjp(const p2_result& r, double hbar, double tau) {
    vec g(r.q.size());
    for (std::size_t k = 0; k < g.size(); ++k) g[k] = hbar * r.q[r.j] * ((k == r.j) - r.q[k]) / tau;
    return g;
}
// alphabar_k = q_k (qbar_k - sum_j qbar_j q_j) / tau
inline vec softmax_vjp(const vec& q, const vec& qbar, double tau) {
    double s = 0;
    for (std::size_t j = 0; j < q.size(); ++j) s += qbar[j] * q[j];
    vec g(q.size());
    for (std::size_t k = 0; k < q.size(); ++k) g[k] = q[k] * (qbar[k] - s) / tau;
    return g;
}

// P3 as the kernel computes it: q stored as float, sorted descending, float32 running sum,
// pivot = the first sorted value whose prefix reaches theta (0 if none), gate = 1[q >= pivot].
// near: some prefix sum lies within 1e-5 of theta (where float32 and another order may differ).
struct p3_result {
    vec q, gate;
    bool near = false;
};
inline p3_result p3_kernel(const vec& a, const vec* G, double theta, double tau) {
    vec v(a.size());
    for (std::size_t k = 0; k < a.size(); ++k) v[k] = (a[k] + (G ? (*G)[k] : 0.0)) / tau;
    p3_result r;
    r.q = softmax(v);
    std::vector<float> s(r.q.begin(), r.q.end());
    std::sort(s.begin(), s.end(), [](float x, float y) { return x > y; });
    float c = 0, pivot = 0;
    bool found = false;
    for (float x : s) {
        c += x;
        if (std::abs(double(c) - theta) < 1e-5) r.near = true;
        if (!found && c >= static_cast<float>(theta)) pivot = x, found = true;
    }
    for (double q : r.q) r.gate.push_back(static_cast<float>(q) >= pivot);
    return r;
}
// alphabar_k = (1/tau) sum_{i: g_i = 1} gbar_i q_k(i) (delta_k(i)k - q_k), k(i) = i + drop
inline vec p3_vjp(const vec& q, const vec& gate, const vec& gbar, bool drop_first, double tau) {
    const std::size_t C = q.size(), off = drop_first ? 1 : 0;
    vec g(C, 0.0);
    for (std::size_t i = 0; i + off < C; ++i)
        if (gate[i + off] != 0)
            for (std::size_t k = 0; k < C; ++k) g[k] += gbar[i] * q[i + off] * ((k == i + off) - q[k]) / tau;
    return g;
}

// Segment sums of rho = sum_b cot[b, d] x[b, d] (the per-segment upstream gradient).
inline vec rho(const vec& x, const vec& cot, std::size_t batch, std::size_t D) {
    vec r(D, 0.0);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t d = 0; d < D; ++d) r[d] += cot[b * D + d] * x[b * D + d];
    return r;
}
inline vec segment_sums(const vec& per_column, const std::vector<std::size_t>& widths) {
    vec r;
    std::size_t o = 0;
    for (std::size_t w : widths) {
        double s = 0;
        for (std::size_t d = o; d < o + w; ++d) s += per_column[d];
        r.push_back(s);
        o += w;
    }
    return r;
}
inline vec expand(const vec& per_segment, const std::vector<std::size_t>& widths) {
    vec r;
    for (std::size_t i = 0; i < widths.size(); ++i)
        for (std::size_t d = 0; d < widths[i]; ++d) r.push_back(per_segment[i]);
    return r;
}
// y = x * s per example
inline vec scale_rows(const vec& x, const vec& s, std::size_t batch) {
    vec y(x.size());
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t d = 0; d < s.size(); ++d) y[b * s.size() + d] = x[b * s.size() + d] * s[d];
    return y;
}

} // namespace nas_ref
