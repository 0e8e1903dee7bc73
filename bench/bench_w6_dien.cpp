// Workload W6: DIEN, T = 50 behaviours of K = E = 32 dims, GRU with 32 units, then AUGRU
// (att_type AUGRU), relu candidates (the layer's default), no mask; float32, one thread.
//
//   W6/fwd/<impl>/<B>      forward, B in {1, 64, 1024}; impl: ctrec, eigen, torch
//   W6/fwdbwd/<impl>/64    forward + reverse-mode gradient w.r.t. q, k and every parameter
//
// ctrec: layers::dien (include/ctrec/layers/dien.hpp; both recurrences unrolled in the graph,
// k W for all steps one GEMM before the GRU, the AUGRU's input-side products one GEMM before
// the AUGRU).
//
// Eigen: the same model written by hand (below): per chunk of 32 examples, k W + b_in for
// every step as one GEMM, then per step one (32 x U) x (U x 3U) GEMM for the GRU's recurrent
// products over the chunk's examples; the bilinear attention and its softmax over t; the
// AUGRU's input-side products as one GEMM over all steps, then per step two (32 x U) GEMMs.
// Fixed-size types where the sizes are compile-time (U, E, T, the chunk; at B = 1 every
// size), Eigen's vectorised exp. Backward by hand per chunk right after its forward (BPTT through both recurrences and
// the softmax). It is the verification reference: main() checks once that ctrec and Eigen
// agree (outputs at B = 1, 64, 1024; at B = 64 the output and the gradient of q, k and every
// parameter).
//
// LibTorch is written as per-step tensor ops (the input-side products hoisted into one matmul
// per scan, as ctrec does), with autograd for the gradient; checked against ctrec too.
// FLOPs per example (spec 2.3.9): T (6 E U + 18 U^2) + 2 U^2 + 2 T U = 1.234 MFLOP forward;
// forward + backward counted as 3x. Counters as in bench_w1_mlp.cpp (flops, peak_frac,
// p50_us / p99_us, cpu_mean_us, items_per_second).
//
//   ./bench_w6_dien --benchmark_min_time=0.2 [--peak_gflops=117]
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/dien.hpp"

#if defined(CTREC_BENCH_HAVE_TORCH)
#include <ATen/Parallel.h>
#include <torch/torch.h>
#endif

#include "bench_common.hpp"

namespace {
using bench::g_peak;
using bench::lcg;
using bench::timed;

constexpr int T = 50, E = 32, U = 32;
constexpr std::size_t kMaxB = 1024, kGradB = 64;

// ---- the model ----------------------------------------------------------------------------
namespace w6 {
using namespace ctrec;
constexpr auto q = input<"q", U>;
constexpr auto k = input<"k", T, E>;
constexpr auto r = layers::dien<"dien", {.num_units = U, .att_type = layers::agru_att::augru}>(q, k);
constexpr auto out = r.out();
}  // namespace w6
using Fwd = ctrec::program<float, w6::out>;
using Grad = ctrec::grad_program<float, w6::out>;

constexpr double kFlopFwd = double(T) * (6.0 * E * U + 18.0 * U * U) + 2.0 * U * U + 2.0 * T * U;
constexpr double kFlopFwdBwd = 3 * kFlopFwd;

constexpr int kEigenChunk = 32;  // examples per Eigen chunk (B > 1), a compile-time size

// ---- shared data: weights (row-major, as the ctrec parameters), inputs, cotangent -----------
using avec = std::vector<float, Eigen::aligned_allocator<float>>;

struct Param {
    const char* name;
    std::size_t size;
};
// every variable of the layer: (E, 3U), (U, 3U), (2, 3U) [row 0 input bias, row 1 recurrent],
// (U, U), (2U, 2U), (2U), (2U, U), (U)
constexpr Param kParams[] = {
    {"dien/gru_cell/kernel", std::size_t(E) * 3 * U},
    {"dien/gru_cell/recurrent_kernel", std::size_t(U) * 3 * U},
    {"dien/gru_cell/bias", 2 * 3 * std::size_t(U)},
    {"dien/attention_weight", std::size_t(U) * U},
    {"dien/augru_cell/gates/kernel", 2 * std::size_t(U) * 2 * U},
    {"dien/augru_cell/gates/bias", 2 * std::size_t(U)},
    {"dien/augru_cell/candidate/kernel", 2 * std::size_t(U) * U},
    {"dien/augru_cell/candidate/bias", std::size_t(U)},
};
constexpr std::size_t kNParams = std::size(kParams);
enum { pW, pR, pBias, pWatt, pWg, pBg, pWc, pBc };

struct Data {
    avec Q, K, cot;
    avec w[kNParams];
    Data() {
        lcg r{7};
        Q.resize(kMaxB * U), K.resize(kMaxB * T * E), cot.resize(kMaxB * U);
        for (auto& v : Q) v = r.next();
        for (auto& v : K) v = r.next();
        for (auto& v : cot) v = r.next();
        lcg g{11};
        for (std::size_t i = 0; i < kNParams; ++i) {
            w[i].resize(kParams[i].size);
            for (auto& v : w[i]) v = 0.3f * g.next();
        }
    }
};
const Data& data() {
    static const Data d;
    return d;
}

// ============================================ ctrec ============================================
template <class Params>
void load_params(Params& p) {
    static_assert(Params::count == kNParams);
    for (std::size_t i = 0; i < kNParams; ++i) p.set(kParams[i].name, data().w[i]);  // checks name and size
}

struct CtrecFwd {
    Fwd::parameters p;
    Fwd::workspace ws;
    avec y;
    Fwd::io io;
    explicit CtrecFwd(std::size_t B) : y(B * U) {
        load_params(p);
        p.prepare();
        io.input<"q">(data().Q.data()).input<"k">(data().K.data()).output<0>(y.data());
    }
    // scoring: parameters prepared once and read through a const reference, as in serving
    void run(std::size_t B) { Fwd::run(std::as_const(p), ws, B, io); }
};

struct CtrecGrad {  // every output of the grad program, bound
    Grad::parameters p;
    Grad::workspace ws;
    std::vector<avec> outs;
    Grad::io io;
    explicit CtrecGrad(std::size_t B) : outs(Grad::n_outputs) {
        load_params(p);
        io.input<"q">(data().Q.data()).input<"k">(data().K.data()).input<"cotangent">(data().cot.data());
        [&]<std::size_t... O>(std::index_sequence<O...>) {
            ((outs[O].resize(Grad::output_size<O> * (Grad::output_batched<O> ? B : 1)), io.output<O>(outs[O].data())), ...);
        }(std::make_index_sequence<Grad::n_outputs>{});
    }
    template <ctrec::fixed_string Name>
    const avec& grad() const {
        return outs[Grad::grad<Name>];
    }
    void run(std::size_t B) { Grad::run(p, ws, B, io); }
};

void BM_ctrec_fwd(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto m = std::make_unique<CtrecFwd>(B);
    timed(st, kFlopFwd * double(B), B, [&] {
        m->run(B);
        benchmark::DoNotOptimize(m->y.data());
        benchmark::ClobberMemory();
    });
}
void BM_ctrec_fwdbwd(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto g = std::make_unique<CtrecGrad>(B);
    timed(st, kFlopFwdBwd * double(B), B, [&] {
        g->run(B);
        benchmark::DoNotOptimize(g->outs[1].data());
        benchmark::ClobberMemory();
    });
}

// ============================================ Eigen ============================================
// Per chunk of n examples: n = kEigenChunk (32) with fixed-size per-step matrices (32 x U,
// 32 x 3U: no heap allocation inside the products); at B = 1 (and for examples left over
// after the chunks) n = 1 with every size fixed (vector x matrix products). Layouts: k W + b_in is
// batch-major (row b T + t, as k is), read per step through a strided map; the GRU states
// and every per-step record are time-major (row t n + b), so a step's rows are one block.
//
//   GRU (Keras reset-after):   [x_z|x_r|x_h] = k_t W + b_in,  [g_z|g_r|g_h] = h R + b_rec
//                              z, r = sig(x_zr + g_zr),  hh = relu(x_h + r g_h),  h' = z h + (1 - z) hh
//   attention:                 v = q W_att^T,  s_t = h_t . v,  a = softmax_t(s)
//   AUGRU (reset before):      [r|u] = sig(h_t Wg[:U] + bg + e Wg[U:]),  c = relu(h_t Wc[:U] + bc + (r e) Wc[U:])
//                              w = (1 - a_t) u,  e' = w e + (1 - w) c;    out = e_T
// The input-side products h_t Wg[:U], h_t Wc[:U] are one GEMM over all steps before the AUGRU.
template <int R, int C>
using Mat = Eigen::Matrix<float, R, C, Eigen::RowMajor>;
template <class M>
using CMap = Eigen::Map<const M>;

struct EigenDienWeights {  // maps of the row-major parameter buffers (row blocks of a row-major matrix are contiguous)
    CMap<Mat<E, 3 * U>> W;
    CMap<Mat<U, 3 * U>> R;
    CMap<Mat<1, 3 * U>> b_in, b_rec;
    CMap<Mat<U, U>> Watt;
    CMap<Mat<U, 2 * U>> Wgx, Wgh;  // rows 0..U-1 (input side) and U..2U-1 (state side) of gates/kernel
    CMap<Mat<1, 2 * U>> bg;
    CMap<Mat<U, U>> Wcx, Wch;
    CMap<Mat<1, U>> bc;
    EigenDienWeights()
        : W(data().w[pW].data()), R(data().w[pR].data()), b_in(data().w[pBias].data()), b_rec(data().w[pBias].data() + 3 * U),
          Watt(data().w[pWatt].data()), Wgx(data().w[pWg].data()), Wgh(data().w[pWg].data() + U * 2 * U), bg(data().w[pBg].data()),
          Wcx(data().w[pWc].data()), Wch(data().w[pWc].data() + U * U), bc(data().w[pBc].data()) {}
};

// N: examples per chunk at compile time (kEigenChunk, or 1 for B = 1 and the examples left
// over), or Eigen::Dynamic (unused here).
template <int N>
struct EigenDien {
    static constexpr int TN = N == 1 ? T : Eigen::Dynamic;  // rows of the all-steps buffers: T n
    using Step = Mat<N, U>;
    using Step2 = Mat<N, 2 * U>;
    using Step3 = Mat<N, 3 * U>;
    using StridedStep3 = Eigen::Map<const Step3, 0, Eigen::OuterStride<>>;

    EigenDienWeights w;
    int n;          // examples per chunk
    bool train;     // keep the records the backward needs
    Mat<TN, 3 * U> Xp;  // k W + b_in, batch-major (row b T + t)
    Mat<TN, U> H;       // GRU states h_t, time-major (row t n + b)
    Mat<TN, 2 * U> XG;  // h_t Wg[:U] + bg
    Mat<TN, U> XC;      // h_t Wc[:U] + bc
    Step V, e, e2, hh, re;
    Step2 zr, gates;
    Step3 G;
    Mat<N, T> S;  // scores, then the attention weights a (row per example)
    // records for the backward (train only): GRU z, r, g_h (recurrent part of the candidate,
    // with its bias), hh; AUGRU r, u, c, e
    Mat<TN, U> Zr, Rr, GHr, HHr, AR, AU, AC, AE;
    // backward
    Mat<TN, 3 * U> dXp;
    Mat<TN, 2 * U> dXG;
    Mat<TN, U> dXC, dH;
    Step de, dep, dre, dpc, dh, dhp, dV, tmpU;
    Step2 dPG;
    Step3 dG;
    Mat<N, T> dA;
    // parameter gradients (accumulated over the chunks of one call)
    Mat<E, 3 * U> gW;
    Mat<U, 3 * U> gR;
    Mat<2, 3 * U> gBias;
    Mat<U, U> gWatt;
    Mat<2 * U, 2 * U> gWg;
    Mat<1, 2 * U> gBg;
    Mat<2 * U, U> gWc;
    Mat<1, U> gBc;

    static auto sig(const auto& x) { return (1.f + (-x.array()).exp()).inverse(); }

    EigenDien(int chunk, bool with_backward) : n(N == Eigen::Dynamic ? chunk : N), train(with_backward) {
        Xp.resize(T * n, 3 * U), H.resize(T * n, U), XG.resize(T * n, 2 * U), XC.resize(T * n, U);
        V.resize(n, U), e.resize(n, U), e2.resize(n, U), hh.resize(n, U), re.resize(n, U);
        zr.resize(n, 2 * U), gates.resize(n, 2 * U), G.resize(n, 3 * U), S.resize(n, T);
        if (train) {
            for (auto* m : {&Zr, &Rr, &GHr, &HHr, &AR, &AU, &AC, &AE, &dXC, &dH}) m->resize(T * n, U);
            dXp.resize(T * n, 3 * U), dXG.resize(T * n, 2 * U);
            for (auto* m : {&de, &dep, &dre, &dpc, &dh, &dhp, &dV, &tmpU}) m->resize(n, U);
            dPG.resize(n, 2 * U), dG.resize(n, 3 * U), dA.resize(n, T);
        }
    }
    // time-major block t of an all-steps buffer
    template <class M>
    static auto blk(M& m, int t, int n) {
        return m.template middleRows<N>(Eigen::Index(t) * n, n);
    }

    // forward of examples [0, n) at q (n, U), k (n, T, E); out (n, U)
    void forward(const float* q, const float* k, float* out) {
        CMap<Mat<TN, E>> K(k, T * n, E);
        CMap<Step> Q(q, n, U);
        // interest extractor
        Xp.noalias() = K * w.W;
        Xp.rowwise() += w.b_in;
        for (int t = 0; t < T; ++t) {
            const StridedStep3 X(Xp.data() + t * 3 * U, n, 3 * U, Eigen::OuterStride<>(T * 3 * U));
            auto h = blk(H, t, n);
            if (t == 0) {
                G = w.b_rec.replicate(n, 1);  // h_0 = 0: no product
            } else {
                G.noalias() = blk(H, t - 1, n) * w.R;
                G.rowwise() += w.b_rec;
            }
            zr = sig(X.template leftCols<2 * U>() + G.template leftCols<2 * U>());
            hh = (X.template rightCols<U>().array() + zr.template rightCols<U>().array() * G.template rightCols<U>().array()).cwiseMax(0.f);
            if (t == 0)
                h = (1.f - zr.template leftCols<U>().array()) * hh.array();
            else
                h = hh.array() + zr.template leftCols<U>().array() * (blk(H, t - 1, n).array() - hh.array());
            if (train) {
                blk(Zr, t, n) = zr.template leftCols<U>(), blk(Rr, t, n) = zr.template rightCols<U>();
                blk(GHr, t, n) = G.template rightCols<U>(), blk(HHr, t, n) = hh;
            }
        }
        // attention
        V.noalias() = Q * w.Watt.transpose();
        for (int t = 0; t < T; ++t) S.col(t) = blk(H, t, n).cwiseProduct(V).rowwise().sum();
        S.colwise() -= S.rowwise().maxCoeff();
        S = S.array().exp().matrix();
        S.array().colwise() /= S.rowwise().sum().array();
        // interest evolution
        XG.noalias() = H * w.Wgx;
        XG.rowwise() += w.bg;
        XC.noalias() = H * w.Wcx;
        XC.rowwise() += w.bc;
        Step* cur = &e;
        Step* prev = &e2;
        for (int t = 0; t < T; ++t) {
            auto a = S.col(t).array();
            if (t == 0) {
                gates = sig(blk(XG, t, n));
                hh = blk(XC, t, n).cwiseMax(0.f);
                *cur = (1.f - gates.template rightCols<U>().array().colwise() * (1.f - a)) * hh.array();
            } else {
                gates = blk(XG, t, n);
                gates.noalias() += *prev * w.Wgh;
                gates = sig(gates);
                re = gates.template leftCols<U>().cwiseProduct(*prev);
                hh = blk(XC, t, n);
                hh.noalias() += re * w.Wch;
                hh = hh.cwiseMax(0.f);
                // e' = c + w (e - c), w = (1 - a) u
                *cur = hh.array() + (gates.template rightCols<U>().array().colwise() * (1.f - a)) * (prev->array() - hh.array());
            }
            if (train) {
                blk(AR, t, n) = gates.template leftCols<U>(), blk(AU, t, n) = gates.template rightCols<U>();
                blk(AC, t, n) = hh, blk(AE, t, n) = *cur;
            }
            std::swap(cur, prev);
        }
        Eigen::Map<Step>(out, n, U) = *prev;
    }

    void zero_grads() {
        gW.setZero(), gR.setZero(), gBias.setZero(), gWatt.setZero(), gWg.setZero(), gBg.setZero(), gWc.setZero(), gBc.setZero();
    }

    // after forward() with train = true on the same q, k: adds the parameter gradients for the
    // output cotangent cot (n, U) and writes dq (n, U), dk (n, T, E)
    void backward(const float* q, const float* k, const float* cot, float* dq, float* dk) {
        CMap<Mat<TN, E>> K(k, T * n, E);
        CMap<Step> Q(q, n, U);
        // interest evolution, t = T-1 .. 0
        de = CMap<Step>(cot, n, U);
        for (int t = T - 1; t >= 0; --t) {
            const auto a = S.col(t).array();
            const auto ep = t ? blk(AE, t - 1, n) : blk(AE, 0, n);  // (unused at t = 0: e_{-1} = 0)
            const auto r = blk(AR, t, n).array(), u = blk(AU, t, n).array(), c = blk(AC, t, n).array();
            const auto omw = (u.colwise() * (1.f - a));  // w = (1 - a) u
            // e' = w e + (1 - w) c
            dpc = (de.array() * (1.f - omw) * (c > 0.f).template cast<float>()).matrix();  // d pre-activation of c
            blk(dXC, t, n) = dpc;
            if (t > 0) {
                tmpU = (de.array() * (ep.array() - c)).matrix();                   // dw
                dA.col(t) = -(tmpU.array() * u).rowwise().sum().matrix();          // da_t = -sum dw u
                dPG.template rightCols<U>() = ((tmpU.array().colwise() * (1.f - a)) * u * (1.f - u)).matrix();
                dep = (de.array() * omw).matrix();
                re = (r * ep.array()).matrix();
                gWc.template bottomRows<U>().noalias() += re.transpose() * dpc;
                dre.noalias() = dpc * w.Wch.transpose();                           // d (r e)
                dPG.template leftCols<U>() = (dre.array() * ep.array() * r * (1.f - r)).matrix();
                dep.array() += dre.array() * r;
                gWg.template bottomRows<U>().noalias() += ep.transpose() * dPG;
                dep.noalias() += dPG * w.Wgh.transpose();
                blk(dXG, t, n) = dPG;
                de.swap(dep);
            } else {
                tmpU = (de.array() * (-c)).matrix();
                dA.col(t) = -(tmpU.array() * u).rowwise().sum().matrix();
                dPG.template leftCols<U>().setZero();
                dPG.template rightCols<U>() = ((tmpU.array().colwise() * (1.f - a)) * u * (1.f - u)).matrix();
                blk(dXG, t, n) = dPG;
            }
        }
        gWg.template topRows<U>().noalias() += H.transpose() * dXG;
        gBg += dXG.colwise().sum();
        gWc.template topRows<U>().noalias() += H.transpose() * dXC;
        gBc += dXC.colwise().sum();
        dH.noalias() = dXG * w.Wgx.transpose();
        dH.noalias() += dXC * w.Wcx.transpose();
        // attention: a = softmax(s), s_t = h_t . v, v = q W_att^T
        {
            Eigen::Matrix<float, N, 1> dot = (S.array() * dA.array()).rowwise().sum().matrix();
            dA = (S.array() * (dA.array().colwise() - dot.array())).matrix();  // d s
        }
        dV.setZero();
        for (int t = 0; t < T; ++t) {
            blk(dH, t, n).array() += V.array().colwise() * dA.col(t).array();
            dV.array() += blk(H, t, n).array().colwise() * dA.col(t).array();
        }
        Eigen::Map<Step>(dq, n, U).noalias() = dV * w.Watt;
        gWatt.noalias() += dV.transpose() * Q;
        // interest extractor, t = T-1 .. 0
        dh.setZero();
        for (int t = T - 1; t >= 0; --t) {
            dh += blk(dH, t, n);
            const auto z = blk(Zr, t, n).array(), r = blk(Rr, t, n).array(), gh = blk(GHr, t, n).array(), hht = blk(HHr, t, n).array();
            const auto hp = t ? blk(H, t - 1, n) : blk(H, 0, n);  // (h_{-1} = 0 at t = 0)
            Eigen::Map<Step3, 0, Eigen::OuterStride<>> dX(dXp.data() + t * 3 * U, n, 3 * U, Eigen::OuterStride<>(T * 3 * U));
            // h' = z h + (1 - z) hh
            dpc = (dh.array() * (1.f - z) * (hht > 0.f).template cast<float>()).matrix();  // d pre-activation of hh
            if (t > 0)
                tmpU = (dh.array() * (hp.array() - hht)).matrix();  // dz
            else
                tmpU = (dh.array() * (-hht)).matrix();
            dG.template leftCols<U>() = (tmpU.array() * z * (1.f - z)).matrix();
            dG.template middleCols<U>(U) = (dpc.array() * gh * r * (1.f - r)).matrix();
            dG.template rightCols<U>() = (dpc.array() * r).matrix();
            dX.template leftCols<2 * U>() = dG.template leftCols<2 * U>();
            dX.template rightCols<U>() = dpc;
            gBias.row(1) += dG.colwise().sum();
            if (t > 0) {
                dhp = (dh.array() * z).matrix();
                gR.noalias() += hp.transpose() * dG;
                dhp.noalias() += dG * w.R.transpose();
                dh.swap(dhp);
            }
        }
        gW.noalias() += K.transpose() * dXp;
        gBias.row(0) += dXp.colwise().sum();
        Eigen::Map<Mat<TN, E>>(dk, T * n, E).noalias() = dXp * w.W.transpose();
    }
};

// A whole batch: chunks of kEigenChunk examples, the examples left over (all of them when
// B < kEigenChunk, e.g. B = 1) one at a time through the fixed-size one-example instance.
struct EigenDienBatch {
    std::unique_ptr<EigenDien<kEigenChunk>> chunk;
    std::unique_ptr<EigenDien<1>> one;
    int B;
    avec y, dq, dk;
    EigenDienBatch(int b, bool train) : B(b), y(std::size_t(b) * U) {
        if (B >= kEigenChunk) chunk = std::make_unique<EigenDien<kEigenChunk>>(kEigenChunk, train);
        if (B % kEigenChunk) one = std::make_unique<EigenDien<1>>(1, train);
        if (train) dq.resize(std::size_t(b) * U), dk.resize(std::size_t(b) * T * E);
    }
    template <class F>
    void each(F&& f) {
        int b0 = 0;
        if (chunk)
            for (; b0 + kEigenChunk <= B; b0 += kEigenChunk) f(*chunk, b0);
        if (one)
            for (; b0 < B; ++b0) f(*one, b0);
    }
    void forward(const float* q, const float* k) {
        each([&](auto& m, int b0) { m.forward(q + std::size_t(b0) * U, k + std::size_t(b0) * T * E, y.data() + std::size_t(b0) * U); });
    }
    void forward_backward(const float* q, const float* k, const float* cot) {
        if (chunk) chunk->zero_grads();
        if (one) one->zero_grads();
        each([&](auto& m, int b0) {
            const std::size_t o = std::size_t(b0) * U, ok = std::size_t(b0) * T * E;
            m.forward(q + o, k + ok, y.data() + o);
            m.backward(q + o, k + ok, cot + o, dq.data() + o, dk.data() + ok);
        });
        if (chunk && one) {  // one set of parameter gradients
            chunk->gW += one->gW, chunk->gR += one->gR, chunk->gBias += one->gBias, chunk->gWatt += one->gWatt;
            chunk->gWg += one->gWg, chunk->gBg += one->gBg, chunk->gWc += one->gWc, chunk->gBc += one->gBc;
        }
    }
    // parameter gradient i (kParams order), row-major
    const float* grad(int i) {
        auto g = [&](auto& m) -> const float* {
            switch (i) {
                case pW: return m.gW.data();
                case pR: return m.gR.data();
                case pBias: return m.gBias.data();
                case pWatt: return m.gWatt.data();
                case pWg: return m.gWg.data();
                case pBg: return m.gBg.data();
                case pWc: return m.gWc.data();
                default: return m.gBc.data();
            }
        };
        return chunk ? g(*chunk) : g(*one);
    }
};

void BM_eigen_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenDienBatch>(B, false);
    timed(st, kFlopFwd * B, std::size_t(B), [&] {
        m->forward(data().Q.data(), data().K.data());
        benchmark::DoNotOptimize(m->y.data());
        benchmark::ClobberMemory();
    });
}
void BM_eigen_fwdbwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenDienBatch>(B, true);
    timed(st, kFlopFwdBwd * B, std::size_t(B), [&] {
        m->forward_backward(data().Q.data(), data().K.data(), data().cot.data());
        benchmark::DoNotOptimize(m->dk.data());
        benchmark::ClobberMemory();
    });
}

// =========================================== LibTorch ==========================================
#if defined(CTREC_BENCH_HAVE_TORCH)
struct TorchDien {
    torch::Tensor W, R, b, Watt, Wg, bg, Wc, bc;
    TorchDien() {
        auto t = [&](int i, std::vector<std::int64_t> shape) {
            return torch::from_blob(const_cast<float*>(data().w[i].data()), shape, torch::kFloat32).clone().set_requires_grad(true);
        };
        W = t(pW, {E, 3 * U});
        R = t(pR, {U, 3 * U});
        b = t(pBias, {2, 3 * U});
        Watt = t(pWatt, {U, U});
        Wg = t(pWg, {2 * U, 2 * U});
        bg = t(pBg, {2 * U});
        Wc = t(pWc, {2 * U, U});
        bc = t(pBc, {U});
    }
    torch::Tensor forward(const torch::Tensor& qt, const torch::Tensor& kt) const {  // (B, U), (B, T, E) -> (B, U)
        const auto Bn = qt.size(0);
        auto xp = torch::matmul(kt, W) + b[0];  // (B, T, 3U), hoisted
        auto h = torch::zeros({Bn, std::int64_t(U)});
        std::vector<torch::Tensor> hs;
        for (int t = 0; t < T; ++t) {
            auto x = xp.select(1, t);
            auto g = torch::matmul(h, R) + b[1];
            auto xc = x.chunk(3, 1), gc = g.chunk(3, 1);
            auto z = torch::sigmoid(xc[0] + gc[0]), r = torch::sigmoid(xc[1] + gc[1]);
            auto hh = torch::relu(xc[2] + r * gc[2]);
            h = z * h + (1 - z) * hh;
            hs.push_back(h);
        }
        auto H = torch::stack(hs, 1);                                 // (B, T, U)
        auto v = torch::matmul(qt, Watt.t());                         // v_i = sum_j Watt[i, j] q_j
        auto alpha = torch::softmax((H * v.unsqueeze(1)).sum(2), 1);  // (B, T)
        auto xg = torch::matmul(H, Wg.narrow(0, 0, U)) + bg, xc = torch::matmul(H, Wc.narrow(0, 0, U)) + bc;  // hoisted
        auto Wgh = Wg.narrow(0, U, U), Wch = Wc.narrow(0, U, U);
        auto e = torch::zeros({Bn, std::int64_t(U)});
        for (int t = 0; t < T; ++t) {
            auto gates = torch::sigmoid(xg.select(1, t) + torch::matmul(e, Wgh)).chunk(2, 1);
            auto c = torch::relu(xc.select(1, t) + torch::matmul(gates[0] * e, Wch));
            auto a = alpha.narrow(1, t, 1);
            auto vv = (1 - a) * gates[1];
            e = vv * e + (1 - vv) * c;
        }
        return e;
    }
    void zero_grads() {
        for (auto* t : {&W, &R, &b, &Watt, &Wg, &bg, &Wc, &bc}) t->mutable_grad() = torch::Tensor();
    }
};
TorchDien& torch_model() {
    static TorchDien m;
    return m;
}
torch::Tensor torch_q(std::int64_t B) { return torch::from_blob(const_cast<float*>(data().Q.data()), {B, std::int64_t(U)}, torch::kFloat32); }
torch::Tensor torch_k(std::int64_t B) {
    return torch::from_blob(const_cast<float*>(data().K.data()), {B, std::int64_t(T), std::int64_t(E)}, torch::kFloat32);
}
void BM_torch_fwd(benchmark::State& st) {
    const std::int64_t B = st.range(0);
    auto& m = torch_model();
    auto qt = torch_q(B), kt = torch_k(B);
    torch::NoGradGuard ng;
    timed(st, kFlopFwd * double(B), std::size_t(B), [&] {
        auto y = m.forward(qt, kt);
        benchmark::DoNotOptimize(y.data_ptr());
        benchmark::ClobberMemory();
    });
}
void BM_torch_fwdbwd(benchmark::State& st) {
    const std::int64_t B = st.range(0);
    auto& m = torch_model();
    auto qt = torch_q(B).clone().set_requires_grad(true);
    auto kt = torch_k(B).clone().set_requires_grad(true);
    auto cot = torch::from_blob(const_cast<float*>(data().cot.data()), {B, std::int64_t(U)}, torch::kFloat32);
    timed(st, kFlopFwdBwd * double(B), std::size_t(B), [&] {
        m.zero_grads();
        qt.mutable_grad() = torch::Tensor();
        kt.mutable_grad() = torch::Tensor();
        m.forward(qt, kt).backward(cot);
        benchmark::DoNotOptimize(kt.grad().data_ptr());
        benchmark::ClobberMemory();
    });
}
#endif

// ========================================= verification ========================================
// max |a - b| / max |b|
double rel_diff(const float* a, const float* b, std::size_t n) {
    double m = 0, s = 0;
    for (std::size_t i = 0; i < n; ++i) {
        m = std::max(m, double(std::fabs(a[i] - b[i])));
        s = std::max(s, double(std::fabs(b[i])));
    }
    return m / std::max(s, 1e-30);
}

struct Check {
    std::string what;
    double diff, tol;
};

std::vector<Check> verify() {
    std::vector<Check> out;
    const Data& d = data();
    constexpr double tol = 1e-4;
    // forward, B = 1 (the fixed-size Eigen path), 64 and 1024 (more than one chunk and tile)
    for (std::size_t B : {std::size_t(1), kGradB, kMaxB}) {
        const std::string b = " (B=" + std::to_string(B) + ")";
        auto c = std::make_unique<CtrecFwd>(B);
        c->run(B);
        auto e = std::make_unique<EigenDienBatch>(int(B), false);
        e->forward(d.Q.data(), d.K.data());
        out.push_back({"fwd y    ctrec vs eigen" + b, rel_diff(c->y.data(), e->y.data(), B * U), tol});
    }
    // output and every gradient, B = 64
    auto g = std::make_unique<CtrecGrad>(kGradB);
    g->run(kGradB);
    auto e = std::make_unique<EigenDienBatch>(int(kGradB), true);
    e->forward_backward(d.Q.data(), d.K.data(), d.cot.data());
    out.push_back({"grad y   ctrec vs eigen", rel_diff(g->outs[0].data(), e->y.data(), kGradB * U), tol});
    out.push_back({"grad dq  ctrec vs eigen", rel_diff(g->grad<"q">().data(), e->dq.data(), kGradB * U), tol});
    out.push_back({"grad dk  ctrec vs eigen", rel_diff(g->grad<"k">().data(), e->dk.data(), kGradB * T * E), tol});
    auto pg = [&](int i, const avec& v) {
        out.push_back({std::string("grad d ") + (kParams[i].name + 5) + " ctrec vs eigen", rel_diff(v.data(), e->grad(i), kParams[i].size), tol});
    };
    pg(pW, g->grad<"dien/gru_cell/kernel">());
    pg(pR, g->grad<"dien/gru_cell/recurrent_kernel">());
    pg(pBias, g->grad<"dien/gru_cell/bias">());
    pg(pWatt, g->grad<"dien/attention_weight">());
    pg(pWg, g->grad<"dien/augru_cell/gates/kernel">());
    pg(pBg, g->grad<"dien/augru_cell/gates/bias">());
    pg(pWc, g->grad<"dien/augru_cell/candidate/kernel">());
    pg(pBc, g->grad<"dien/augru_cell/candidate/bias">());
    // the Eigen backward against a central difference of the Eigen forward: the directional
    // derivative of <cot, y(q, k)> along (q, k) against <dq, q> + <dk, k>
    {
        constexpr float eps = 1e-3f;
        const std::size_t nq = kGradB * U, nk = kGradB * T * E;
        avec qp(nq), qm(nq), kp(nk), km(nk);
        for (std::size_t i = 0; i < nq; ++i) qp[i] = d.Q[i] * (1 + eps), qm[i] = d.Q[i] * (1 - eps);
        for (std::size_t i = 0; i < nk; ++i) kp[i] = d.K[i] * (1 + eps), km[i] = d.K[i] * (1 - eps);
        auto loss = [&](const avec& qq, const avec& kk) {
            EigenDienBatch f(int(kGradB), false);
            f.forward(qq.data(), kk.data());
            double l = 0;
            for (std::size_t i = 0; i < nq; ++i) l += double(f.y[i]) * d.cot[i];
            return l;
        };
        const double fd = (loss(qp, kp) - loss(qm, km)) / (2.0 * eps);
        double an = 0;
        for (std::size_t i = 0; i < nq; ++i) an += double(e->dq[i]) * d.Q[i];
        for (std::size_t i = 0; i < nk; ++i) an += double(e->dk[i]) * d.K[i];
        out.push_back({"grad dq,dk eigen vs finite diff (direction)", std::fabs(fd - an) / std::max(std::fabs(an), 1e-30), 1e-2});
    }
#if defined(CTREC_BENCH_HAVE_TORCH)
    {
        const std::int64_t B = kGradB;
        auto& m = torch_model();
        {
            c10::InferenceMode guard;
            for (std::int64_t Bf : {std::int64_t(1), std::int64_t(kMaxB)}) {
                auto c = std::make_unique<CtrecFwd>(std::size_t(Bf));
                c->run(std::size_t(Bf));
                auto yt = m.forward(torch_q(Bf), torch_k(Bf)).contiguous();
                out.push_back({"fwd y    ctrec vs torch (B=" + std::to_string(Bf) + ")", rel_diff(c->y.data(), yt.data_ptr<float>(), std::size_t(Bf) * U), tol});
            }
        }
        auto qt = torch_q(B).clone().set_requires_grad(true);
        auto kt = torch_k(B).clone().set_requires_grad(true);
        auto y = m.forward(qt, kt);
        y.backward(torch::from_blob(const_cast<float*>(d.cot.data()), {B, std::int64_t(U)}, torch::kFloat32));
        auto cmp = [&](const char* what, const avec& a, const torch::Tensor& t) {
            auto c = t.contiguous();
            out.push_back({what, rel_diff(a.data(), c.data_ptr<float>(), a.size()), tol});
        };
        cmp("grad y   ctrec vs torch", g->outs[0], y.detach());
        cmp("grad dk  ctrec vs torch", g->grad<"k">(), kt.grad());
        cmp("grad dq  ctrec vs torch", g->grad<"q">(), qt.grad());
        cmp("grad d gru_cell/recurrent_kernel ctrec vs torch", g->grad<"dien/gru_cell/recurrent_kernel">(), m.R.grad());
        cmp("grad d augru_cell/gates/kernel ctrec vs torch", g->grad<"dien/augru_cell/gates/kernel">(), m.Wg.grad());
        m.zero_grads();
    }
#endif
    return out;
}

void register_all() {
    auto reg = [](const std::string& name, void (*fn)(benchmark::State&), std::int64_t B) {
        benchmark::RegisterBenchmark(name.c_str(), fn)->Arg(B)->UseManualTime()->Unit(benchmark::kMicrosecond);
    };
    for (std::int64_t B : {1, 64, 1024}) {
        reg("W6/fwd/ctrec", BM_ctrec_fwd, B);
        reg("W6/fwd/eigen", BM_eigen_fwd, B);
#if defined(CTREC_BENCH_HAVE_TORCH)
        reg("W6/fwd/torch", BM_torch_fwd, B);
#endif
    }
    reg("W6/fwdbwd/ctrec", BM_ctrec_fwdbwd, kGradB);
    reg("W6/fwdbwd/eigen", BM_eigen_fwdbwd, kGradB);
#if defined(CTREC_BENCH_HAVE_TORCH)
    reg("W6/fwdbwd/torch", BM_torch_fwdbwd, kGradB);
#endif
}

}  // namespace

int main(int argc, char** argv) {
    bench::force_single_thread(argc, argv);
#if defined(CTREC_BENCH_HAVE_TORCH)
    at::set_num_threads(1);
    at::set_num_interop_threads(1);
#endif
    Eigen::setNbThreads(1);

    // --peak_gflops=X overrides the in-process measurement
    std::string peak_source = "measured in-process (FMA chains, bench_common.hpp)";
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], "--peak_gflops=", 14) == 0) {
            g_peak = std::atof(argv[i] + 14) * 1e9;
            peak_source = "given (--peak_gflops)";
            for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
            --argc;
            --i;
        }
    }
    if (g_peak <= 0) g_peak = bench::measure_fma_peak(0.3);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    std::fprintf(stderr, "W6 DIEN (T %d, E %d, U %d, AUGRU): FP32 peak %.1f GFLOP/s (%s), Eigen chunk %d examples\n", T, E, U,
                 g_peak / 1e9, peak_source.c_str(), kEigenChunk);
    bool ok = true;
    double worst = 0;
    for (const Check& c : verify()) {
        const bool pass = std::isfinite(c.diff) && c.diff <= c.tol;
        ok = ok && pass;
        worst = std::max(worst, c.diff);
        std::fprintf(stderr, "  verify %-48s rel max diff %.3g %s\n", c.what.c_str(), c.diff, pass ? "ok" : "MISMATCH");
        benchmark::AddCustomContext("verify " + c.what, std::to_string(c.diff));
    }
    benchmark::AddCustomContext("fp32_peak_gflops", std::to_string(g_peak / 1e9));
    benchmark::AddCustomContext("peak_source", peak_source);
    benchmark::AddCustomContext("verify", ok ? "ok" : "MISMATCH");
    benchmark::AddCustomContext("verify_worst_diff", std::to_string(worst));
    benchmark::AddCustomContext("eigen_chunk", std::to_string(kEigenChunk));
    benchmark::AddCustomContext("xsimd_arch", xsimd::default_arch::name());
#if defined(CTREC_BENCH_HAVE_TORCH)
    benchmark::AddCustomContext("torch_threads", std::to_string(at::get_num_threads()));
    {
        const char* core = bench::openblas_core();
        std::string c = core ? core : "n/a";
        if (const char* det = std::getenv("CTREC_BENCH_OPENBLAS_DETECTED"))
            c += std::string(" (OPENBLAS_CORETYPE set by the benchmark; OpenBLAS detected ") + det + ")";
        benchmark::AddCustomContext("openblas_core", c);
        std::fprintf(stderr, "W6 DIEN: LibTorch threads %d, OpenBLAS core %s\n", at::get_num_threads(), c.c_str());
    }
#else
    benchmark::AddCustomContext("torch_threads", "n/a (built without LibTorch)");
#endif
    if (!ok) std::fprintf(stderr, "W6: MISMATCH (see above)\n");
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return ok ? 0 : 1;
}
