#pragma once
// Naive float64 reference of MMoE (spec layers-trans-seq-multitask-nas.md 3.1), written from the
// spec with scalar loops over the same leaves as the programs (test::leaves): the expert MLPs
// (Dense with weight norm, optional BatchNorm, hidden activations), the gate logits with the
// noise eps = random_value<double>(normal, io.seed, stream_hash(stream), example, logit), the
// softmax, the top-k mask with ties kept, the renormalisation, the mixture and CV^2.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "layer_reference.hpp"

namespace mmoe_ref {

using flat_ref::get;
using flat_ref::vec;
using test::leaves;

struct config {
    std::size_t E = 3, T = 2, D = 5, Dg = 5;
    std::vector<std::vector<std::size_t>> dims;  // per expert
    std::vector<int> act;                        // per expert: 0 linear, 1 relu, 2 tanh, 3 PReLU
    flat_ref::norm nrm = flat_ref::norm::trainable;
    bool bias = true, bn = false, bn_train = false;
    int gate = 0;  // 0 softmax, 1 topk, 2 noise_topk
    std::size_t k = 1;
    bool noise = false;
    std::string stream;      // the noise stream's name
    std::uint64_t seed = 0;  // io.seed
    std::string xe = "x", xg = "x", scope = "m_mo_e";
};
struct outputs {
    vec out;     // B x T x D_out
    vec gates;   // B x T x E
    vec logits;  // B x T x E
    vec cv2;     // T
};

inline double act(int a, double v) { return a == 1 ? (v > 0 ? v : 0) : a == 2 ? std::tanh(v) : v; }

// Gates of one task from its logits: softmax, then (k > 0) the top-k mask, ties kept, renormalised.
inline vec gate_row(const double* l, std::size_t E, std::size_t k) {
    double mx = l[0];
    for (std::size_t e = 1; e < E; ++e) mx = std::max(mx, l[e]);
    vec g(E);
    double s = 0;
    for (std::size_t e = 0; e < E; ++e) s += g[e] = std::exp(l[e] - mx);
    for (double& v : g) v /= s;
    if (k == 0) return g;
    // theta = the k-th largest gate; keep g_e >= theta
    vec sorted = g;
    std::sort(sorted.begin(), sorted.end(), [](double a, double b) { return a > b; });
    const double theta = sorted[k - 1];
    double kept = 0;
    for (std::size_t e = 0; e < E; ++e) kept += g[e] >= theta ? g[e] : 0;
    for (std::size_t e = 0; e < E; ++e) g[e] = g[e] >= theta ? g[e] / kept : 0;
    return g;
}

inline double cv2_of(const vec& I) {
    const double n = static_cast<double>(I.size());
    double mu = 0, v = 0;
    for (double x : I) mu += x / n;
    for (double x : I) v += (x - mu) * (x - mu) / n;
    return v / (mu * mu);
}

inline outputs run(leaves& L, std::size_t B, const config& c) {
    const vec& xe = get(L, c.xe);
    const vec& xg = get(L, c.xg);
    const std::size_t E = c.E, T = c.T, Dout = c.dims[0].back(), C = E * T;
    std::vector<vec> o(E);  // B x D_out each
    for (std::size_t e = 0; e < E; ++e) {
        const std::string ex = c.scope + "/expert_" + std::to_string(e);
        vec h = xe;
        std::size_t in = c.D;
        if (c.bn) h = flat_ref::bn(L, h, B, 1, in, ex + "/BatchNorm/in", c.bn_train);
        const std::size_t depth = c.dims[e].size();
        for (std::size_t j = 0; j < depth; ++j) {
            const std::size_t w = c.dims[e][j];
            h = flat_ref::dense(L, h, B, in, w, ex + "/dense_" + std::to_string(j), c.nrm, c.bias);
            if (c.bn && j + 1 < depth)
                h = flat_ref::bn(L, h, B, 1, w, ex + (j == 0 ? "/BatchNorm/out" : "/BatchNorm/out_" + std::to_string(j)), c.bn_train);
            if (j + 1 < depth && c.act[e] == 3) {  // alpha per unit: p_re_lu, p_re_lu_1, ..
                const vec& alpha = get(L, ex + "/p_re_lu" + (j == 0 ? std::string() : "_" + std::to_string(j)) + "/alpha");
                for (std::size_t i = 0; i < h.size(); ++i) h[i] = h[i] > 0 ? h[i] : alpha[i % w] * h[i];
            } else if (j + 1 < depth) {
                for (double& v : h) v = act(c.act[e], v);
            }
            in = w;
        }
        o[e] = h;
    }
    outputs r{vec(B * T * Dout, 0.0), vec(B * C), vec(B * C), vec(T)};
    const vec& gw = get(L, c.scope + "/gate_weight");
    const std::uint64_t stream = ctrec::stream_hash(c.stream);
    for (std::size_t b = 0; b < B; ++b) {
        for (std::size_t col = 0; col < C; ++col) {
            double l = 0;
            for (std::size_t i = 0; i < c.Dg; ++i) l += xg[b * c.Dg + i] * gw[i * C + col];
            if (c.noise) {
                const vec& gn = get(L, c.scope + "/gate_noise");
                double z = 0;
                for (std::size_t i = 0; i < c.Dg; ++i) z += xg[b * c.Dg + i] * gn[i * C + col];
                const double eps = ctrec::random_value<double>(ctrec::random_kind::normal, c.seed, stream, b, col);
                l += eps * std::log1p(std::exp(z));
            }
            r.logits[b * C + col] = l;
        }
        for (std::size_t t = 0; t < T; ++t) {
            const vec g = gate_row(&r.logits[b * C + t * E], E, c.gate == 0 ? 0 : c.k);
            for (std::size_t e = 0; e < E; ++e) {
                r.gates[b * C + t * E + e] = g[e];
                for (std::size_t d = 0; d < Dout; ++d) r.out[(b * T + t) * Dout + d] += g[e] * o[e][b * Dout + d];
            }
        }
    }
    for (std::size_t t = 0; t < T; ++t) {
        vec I(E, 0.0);
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t e = 0; e < E; ++e) I[e] += r.gates[b * C + t * E + e];
        r.cv2[t] = c.gate == 0 ? 0.0 : cv2_of(I);
    }
    return r;
}

// Runs every output of P with io.seed = seed (test::run with a seed).
template <class P>
std::vector<vec> run_seeded(leaves& L, std::size_t batch, std::uint64_t seed) {
    return test::run<P>(L, batch, seed);
}

// Outputs, CV^2 and gates of the float64 program on both backends, and the float program's
// outputs, against the reference, at batches 1, 5 and 70 (across tiles).
template <const auto& Out, const auto& Cv2, const auto& Gates>
void check_mmoe(const mmoe_ref::config& rc, void (*prepare)(leaves&) = nullptr, double tol = 1e-10) {
    using P = ctrec::program<double, Out, Cv2, Gates>;
    using R = typename P::template with_backend<ctrec::reference_backend>;
    using F = ctrec::program<float, Out>;
    for (std::size_t B : {1, 5, 70}) {
        INFO("batch " << B);
        leaves L;
        if (prepare) prepare(L);
        const auto cpu = run_seeded<P>(L, B, rc.seed);
        const auto ref = run_seeded<R>(L, B, rc.seed);
        const mmoe_ref::outputs want = mmoe_ref::run(L, B, rc);
        for (const auto* got : {&cpu, &ref}) {
            test::check_close((*got)[0], want.out, tol);
            test::check_close((*got)[1], want.cv2, tol);
            test::check_close((*got)[2], want.gates, tol);
        }
        test::check_close(run_seeded<F>(L, B, rc.seed)[0], want.out, 2e-5);
    }
}

} // namespace mmoe_ref
