// Workload W7 (bench/WORKLOADS.md): MMoE, input 512, 8 experts each MLP [256, 128] (relu on the
// hidden layer, the last linear), 3 tasks, softmax gates over the experts, float32, one thread.
// Output per example: (3, 128), row t = task t = sum_e g_{t,e} expert_e(x).
//
//   W7/fwd/<impl>/<B>     forward, B in {1, 64, 1024}; impl: ctrec, ctrec_wn (the same layer with
//                         Monolith's default weight norm, folded by prepare()), ctrec_bf16 (opt-in
//                         cpu_bf16_backend: the kernels rounded to bfloat16, streamed as bf16 at
//                         B = 1; a different model: its distance to float32 is printed), eigen, torch
//   W7/fwdbwd/<impl>/64   forward + reverse-mode gradient w.r.t. x and every parameter
//   W7/jvp/<impl>/64      forward + forward-mode directional derivative along x and every
//                         parameter (ctrec, eigen)
//
// Every implementation uses the same weights and inputs; main() checks once that their outputs
// and gradients agree (relative max differences printed, and in the JSON context).
//
// Counters: flops (GEMM FLOPs: 2 (512 x 2072 + 8 x 256 x 128 + 3 x 8 x 128) = 2.65 MFLOP per
// example forward, the gate GEMM and the mixture included; 3x for forward+backward and for the
// JVP), peak_frac (flops / the FP32 FMA peak measured in-process, or --peak_gflops=X), bw_frac
// (the parameter bytes streamed per call, 5.30 MB, over the call time, divided by the read
// bandwidth over a buffer of that size measured in-process, or --bw_gbs=X; at B = 1 this is the
// fraction of the weight-streaming limit, bench/ROOFLINE.md), p50_us / p99_us / cpu_mean_us,
// items_per_second. Times are manual (steady_clock around each call).
//
//   ./bench_w7_mmoe --benchmark_min_time=0.2 [--peak_gflops=117] [--bw_gbs=100]
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/mmoe.hpp"

#if defined(CTREC_BENCH_HAVE_TORCH)
#include <ATen/Parallel.h>
#include <torch/torch.h>
#endif

#include "bench_common.hpp"

namespace {
using bench::g_peak;
using bench::lcg;
using bench::timed;

constexpr int D = 512, E = 8, H1 = 256, H2 = 128, T = 3;
constexpr int S1 = E * H1;  // the stacked first layers' width (2048)
constexpr int NG = E * T;   // gate logits (24): column c = task c / E, expert c % E
constexpr int SZ = S1 + NG; // the first GEMM's width with the gate joined (2072)
constexpr int DO = E * H2;  // expert outputs per example (1024)
constexpr int DY = T * H2;  // outputs per example (384)
constexpr int kMaxB = 1024, kGradB = 64;

// ---- the model ----------------------------------------------------------------------------
namespace w7 {
using namespace ctrec;
constexpr auto x = input<"x", D>;
// Weight norm off, so the baselines compute the same function.
constexpr layers::mmoe_config cfg{.num_tasks = T,
                                  .expert_output_dims = {H1, H2},
                                  .expert_activations = layers::act_relu,
                                  .num_experts = E,
                                  .use_weight_norm = false};
constexpr auto r = layers::mmoe<"mmoe", cfg, layers::mode::predict>(x);
constexpr auto y = r.out();
// Monolith's default (learnable weight norm): the effective kernels are derived parameters,
// folded by prepare() into the stacked kernel, so scoring should cost the same.
constexpr layers::mmoe_config cfg_wn{.num_tasks = T,
                                     .expert_output_dims = {H1, H2},
                                     .expert_activations = layers::act_relu,
                                     .num_experts = E};
constexpr auto r_wn = layers::mmoe<"mmoe", cfg_wn, layers::mode::predict>(x);
constexpr auto y_wn = r_wn.out();
}  // namespace w7

using M = ctrec::program<float, w7::y>;
using MWN = ctrec::program<float, w7::y_wn>;
using MB16 = M::with_backend<ctrec::cpu_bf16_backend>;
using G = ctrec::grad_program<float, w7::y>;
using J = ctrec::jvp_program<float, w7::y>;

constexpr double kFlopFwd = 2.0 * (double(D) * SZ + double(E) * H1 * H2 + double(T) * E * H2);  // 2,652,160
constexpr double kFlopFwdBwd = 3.0 * kFlopFwd;
constexpr double kFlopJvp = 3.0 * kFlopFwd;
// float32 parameters: first layers + biases, second layers + biases, gate (5,304,320 bytes)
constexpr double kParamBytes = 4.0 * (double(D) * S1 + S1 + double(E) * H1 * H2 + DO + double(D) * NG);

// Bytes per second the bw_frac counters divide by (measured at start-up or --bw_gbs).
double g_bw = 0;

// ---- shared data: weights, tangents, inputs, cotangent ---------------------------------------
using avec = std::vector<float, Eigen::aligned_allocator<float>>;

std::string pname(int e, int j, const char* what) {
    return "mmoe/expert_" + std::to_string(e) + "/dense_" + std::to_string(j) + "/" + what;
}

struct Data {
    // row-major kernels W[k * N + n], as in the ctrec parameters
    avec W1[E], b1[E], W2[E], b2[E], Gw;  // Gw: (D, NG)
    avec tW1[E], tb1[E], tW2[E], tb2[E], tGw;  // JVP tangents
    avec X, dX;  // kMaxB x D
    avec cot;    // kGradB x DY
    std::map<std::string, const avec*> value, tangent;  // by ctrec parameter name
    Data() {
        lcg r{7};
        auto fill = [&](avec& v, std::size_t n, float scale) {
            v.resize(n);
            for (auto& e : v) e = scale * r.next();
        };
        for (int e = 0; e < E; ++e) {
            fill(W1[e], std::size_t(D) * H1, 1.f / std::sqrt(float(D))), fill(b1[e], H1, 0.1f);
            fill(W2[e], std::size_t(H1) * H2, 1.f / std::sqrt(float(H1))), fill(b2[e], H2, 0.1f);
            fill(tW1[e], std::size_t(D) * H1, 0.01f), fill(tb1[e], H1, 0.01f);
            fill(tW2[e], std::size_t(H1) * H2, 0.01f), fill(tb2[e], H2, 0.01f);
            value[pname(e, 0, "kernel")] = &W1[e], value[pname(e, 0, "bias")] = &b1[e];
            value[pname(e, 1, "kernel")] = &W2[e], value[pname(e, 1, "bias")] = &b2[e];
            tangent[pname(e, 0, "kernel")] = &tW1[e], tangent[pname(e, 0, "bias")] = &tb1[e];
            tangent[pname(e, 1, "kernel")] = &tW2[e], tangent[pname(e, 1, "bias")] = &tb2[e];
        }
        // gate logits of spread ~1, so the softmax is far from uniform
        fill(Gw, std::size_t(D) * NG, 3.f / std::sqrt(float(D))), fill(tGw, std::size_t(D) * NG, 0.01f);
        value["mmoe/gate_weight"] = &Gw, tangent["mmoe/gate_weight"] = &tGw;
        fill(X, std::size_t(kMaxB) * D, 1.f);
        fill(dX, std::size_t(kMaxB) * D, 0.1f);
        fill(cot, std::size_t(kGradB) * DY, 1.f / kGradB);
    }
};
const Data& data() {
    static const Data d;
    return d;
}

// ---- read bandwidth over a buffer the size of the parameters (hot: as the weights are at B = 1)
[[gnu::noinline]] float read_sum(const float* p, std::size_t n) {  // n a multiple of 128
    using V = xsimd::batch<float>;
    constexpr std::size_t W = V::size;
    V a[8];
    for (auto& v : a) v = V(0.f);
    for (std::size_t i = 0; i < n; i += 8 * W)
        for (std::size_t j = 0; j < 8; ++j) a[j] += V::load_aligned(p + i + j * W);
    V s = a[0];
    for (std::size_t j = 1; j < 8; ++j) s += a[j];
    return xsimd::hadd(s);
}
double measure_read_bw(double bytes, double seconds) {
    using clk = std::chrono::steady_clock;
    const std::size_t n = static_cast<std::size_t>(bytes / 4) / 128 * 128;
    avec buf(n);
    for (std::size_t i = 0; i < n; ++i) buf[i] = float(i & 7) * 0.125f;
    volatile float sink = 0;
    double best = 0;
    const auto t_end = clk::now() + std::chrono::duration<double>(seconds);
    while (clk::now() < t_end) {
        const auto t0 = clk::now();
        sink = sink + read_sum(buf.data(), n);
        best = std::max(best, double(n) * 4 / std::chrono::duration<double>(clk::now() - t0).count());
    }
    return best;
}

// flops, peak_frac, p50/p99, items (bench::timed), and the fraction of the weight-streaming rate
template <class F>
void timed_bw(benchmark::State& st, double flop_per_iter, std::size_t batch, F&& f, double param_bytes = kParamBytes) {
    timed(st, flop_per_iter, batch, std::forward<F>(f));
    st.counters["bw_frac"] = benchmark::Counter(param_bytes * double(st.iterations()) / g_bw, benchmark::Counter::kIsRate);
}

// ============================================ ctrec ============================================
// Every parameter of P by name (values; tangents "d.<name>" where P has them); weight-norm
// scales set to the kernels' column norms, so W_eff = W.
template <class P>
void load_params(typename P::parameters& p) {
    const Data& d = data();
    for (std::size_t i = 0; i < P::n_params; ++i) {
        const std::string n(P::parameters::names[i]);
        if (n.rfind("d.", 0) == 0) {
            p.set(n, *d.tangent.at(n.substr(2)));
        } else if (auto it = d.value.find(n); it != d.value.end()) {
            p.set(n, *it->second);
        } else if (n.size() > 22 && n.compare(n.size() - 22, 22, "/trainable_kernel_norm") == 0) {
            const avec& k = *d.value.at(n.substr(0, n.size() - 22) + "/kernel");
            auto g = p.get(i);
            for (std::size_t j = 0; j < g.size(); ++j) {
                double s = 0;
                for (std::size_t r = 0; r < k.size() / g.size(); ++r) s += double(k[r * g.size() + j]) * k[r * g.size() + j];
                g[j] = float(std::sqrt(s));
            }
        } else {
            std::fprintf(stderr, "W7: no data for parameter %s\n", n.c_str());
            std::exit(1);
        }
    }
}

template <class P, std::size_t... R>
void bind_outputs(typename P::io& io, std::vector<avec>& out, std::size_t B, std::index_sequence<R...>) {
    out.resize(sizeof...(R));
    ((out[R].assign(P::template output_size<R> * (P::template output_batched<R> ? B : 1), 0.f),
      io.template output<R>(out[R].data())),
     ...);
}

// The grad program with every output bound: 0 = y, then d/dx and d/d(every parameter).
struct CtrecGrad {
    G::parameters p;
    G::workspace ws;
    std::vector<avec> out;
    G::io io;
    explicit CtrecGrad(std::size_t B) {
        load_params<G>(p);
        io.input<"x">(data().X.data()).input<"cotangent">(data().cot.data());
        bind_outputs<G>(io, out, B, std::make_index_sequence<G::n_outputs>{});
    }
    const avec& grad(std::string_view name) const {
        for (std::size_t k = 0; k < G::tab.n_wrt; ++k)
            if (G::tab.name_of(G::tab.wrt[k]) == name) return out[1 + k];
        std::fprintf(stderr, "W7: no gradient for %s\n", std::string(name).c_str());
        std::exit(1);
    }
    // non-const parameters: the stacked kernel (a derived parameter) is rebuilt every call, as in
    // a training step where the weights change each time
    void run(std::size_t B) { G::run(p, ws, B, io); }
};

struct CtrecJvp {
    J::parameters p;
    J::workspace ws;
    avec y, ty;
    J::io io;
    explicit CtrecJvp(std::size_t B) : y(B * DY), ty(B * DY) {
        load_params<J>(p);
        p.prepare();
        io.input<"x">(data().X.data()).input<"d.x">(data().dX.data()).output<0>(y.data()).output<1>(ty.data());
    }
    void run(std::size_t B) { J::run(std::as_const(p), ws, B, io); }
};

// Scoring: parameters prepared once and read through a const reference, as in serving.
template <class P>
void ctrec_fwd(benchmark::State& st, double param_bytes = kParamBytes) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto p = std::make_unique<typename P::parameters>();
    load_params<P>(*p);
    p->prepare();
    const typename P::parameters& cp = *p;
    auto ws = std::make_unique<typename P::workspace>();
    avec y(B * DY);
    typename P::io io;
    io.template input<"x">(data().X.data()).template output<0>(y.data());
    timed_bw(
        st, kFlopFwd * double(B), B,
        [&] {
            P::run(cp, *ws, B, io);
            benchmark::DoNotOptimize(y.data());
            benchmark::ClobberMemory();
        },
        param_bytes);
}
void BM_ctrec_fwd(benchmark::State& st) { ctrec_fwd<M>(st); }
void BM_ctrec_wn_fwd(benchmark::State& st) { ctrec_fwd<MWN>(st); }
// bf16 kernels (2 bytes per weight), float32 biases
constexpr double kParamBytesBf16 = 2.0 * (double(D) * S1 + double(E) * H1 * H2 + double(D) * NG) + 4.0 * (S1 + DO);
void BM_ctrec_bf16_fwd(benchmark::State& st) { ctrec_fwd<MB16>(st, kParamBytesBf16); }
void BM_ctrec_fwdbwd(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto g = std::make_unique<CtrecGrad>(B);
    timed_bw(st, kFlopFwdBwd * double(B), B, [&] {
        g->run(B);
        benchmark::DoNotOptimize(g->out[1].data());
        benchmark::ClobberMemory();
    });
}
void BM_ctrec_jvp(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto j = std::make_unique<CtrecJvp>(B);
    timed_bw(st, kFlopJvp * double(B), B, [&] {
        j->run(B);
        benchmark::DoNotOptimize(j->ty.data());
        benchmark::ClobberMemory();
    });
}

// ============================================ Eigen ============================================
// Written the way a careful engineer would: batch-major row-major activations, the eight
// experts' first layers and the gate stacked column-wise into one row-major (512, 2072) kernel
// built once at load time (one GEMM reads x), bias + relu as one coefficient-wise pass, the
// second layers as eight GEMMs on column blocks of the stacked activations, the three softmax
// gates per example, the mixture as a fixed-size (3 x 8) x (8 x 128) product per example.
// Buffers allocated once; fixed-size row vectors at B = 1 (matrix-vector products).
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVec = Eigen::Matrix<float, 1, Eigen::Dynamic>;
template <class Mat>
using AMap = Eigen::Map<const Mat, Eigen::Aligned64>;
using GateMat = Eigen::Matrix<float, T, E, Eigen::RowMajor>;
using ExpMat = Eigen::Matrix<float, E, H2, Eigen::RowMajor>;
using OutMat = Eigen::Matrix<float, T, H2, Eigen::RowMajor>;
using W2Mat = Eigen::Matrix<float, H1, H2, Eigen::RowMajor>;

// [W1_0 | .. | W1_7 | Gw] (D, SZ) from per-expert kernels and the gate
RowMat stack_first(const avec* W1, const avec& Gw) {
    RowMat S(D, SZ);
    for (int e = 0; e < E; ++e) S.middleCols(e * H1, H1) = AMap<RowMat>(W1[e].data(), D, H1);
    S.rightCols(NG) = AMap<RowMat>(Gw.data(), D, NG);
    return S;
}
RowVec stack_bias(const avec* b1) {
    RowVec s(S1);
    for (int e = 0; e < E; ++e) s.segment(e * H1, H1) = AMap<RowVec>(b1[e].data(), H1);
    return s;
}

struct EigenWeights {
    RowMat Ws;   // (D, SZ)
    RowVec b1s;  // (S1)
    std::array<AMap<W2Mat>, E> W2;
    std::array<AMap<Eigen::Matrix<float, 1, H2>>, E> b2;
    EigenWeights()
        : Ws(stack_first(data().W1, data().Gw)), b1s(stack_bias(data().b1)),
          W2{AMap<W2Mat>(data().W2[0].data()), AMap<W2Mat>(data().W2[1].data()), AMap<W2Mat>(data().W2[2].data()),
             AMap<W2Mat>(data().W2[3].data()), AMap<W2Mat>(data().W2[4].data()), AMap<W2Mat>(data().W2[5].data()),
             AMap<W2Mat>(data().W2[6].data()), AMap<W2Mat>(data().W2[7].data())},
          b2{AMap<Eigen::Matrix<float, 1, H2>>(data().b2[0].data()), AMap<Eigen::Matrix<float, 1, H2>>(data().b2[1].data()),
             AMap<Eigen::Matrix<float, 1, H2>>(data().b2[2].data()), AMap<Eigen::Matrix<float, 1, H2>>(data().b2[3].data()),
             AMap<Eigen::Matrix<float, 1, H2>>(data().b2[4].data()), AMap<Eigen::Matrix<float, 1, H2>>(data().b2[5].data()),
             AMap<Eigen::Matrix<float, 1, H2>>(data().b2[6].data()), AMap<Eigen::Matrix<float, 1, H2>>(data().b2[7].data())} {}
};

// softmax over each task's E logits, in place (l: T x E row-major)
inline void softmax_rows(float* l) {
    Eigen::Map<Eigen::Array<float, T, E, Eigen::RowMajor>> a(l);
    a.colwise() -= a.rowwise().maxCoeff();
    a = a.exp();
    a.colwise() /= a.rowwise().sum();
}

struct EigenMMoE {
    EigenWeights w;
    int B;
    RowMat Z;   // (B, SZ): relu'd hidden units of the experts, then the gate logits -> gates
    RowMat O;   // (B, DO): expert outputs
    RowMat Y;   // (B, DY)
    // backward
    RowMat dO, dZ, dWs, dX;
    RowVec db1s;
    std::array<W2Mat, E> dW2;
    std::array<Eigen::Matrix<float, 1, H2>, E> db2;
    // jvp
    RowMat tWs;
    RowVec tb1s;
    RowMat TZ, TO, TY;

    explicit EigenMMoE(int b)
        : B(b), Z(b, SZ), O(b, DO), Y(b, DY), dO(b, DO), dZ(b, SZ), dWs(D, SZ), dX(b, D), db1s(S1),
          tWs(stack_first(data().tW1, data().tGw)), tb1s(stack_bias(data().tb1)), TZ(b, SZ), TO(b, DO), TY(b, DY) {}

    float* gates(int b) { return Z.data() + std::size_t(b) * SZ + S1; }

    void first_and_experts(const float* x) {
        AMap<RowMat> X(x, B, D);
        Z.noalias() = X * w.Ws;
        Z.leftCols(S1) = (Z.leftCols(S1).rowwise() + w.b1s).cwiseMax(0.f);
        for (int e = 0; e < E; ++e) {
            auto Oe = O.middleCols(e * H2, H2);
            Oe.noalias() = Z.middleCols(e * H1, H1) * w.W2[e];
            Oe.rowwise() += w.b2[e];
        }
        for (int b = 0; b < B; ++b) softmax_rows(gates(b));
    }
    void forward(const float* x) {
        first_and_experts(x);
        for (int b = 0; b < B; ++b) {
            Eigen::Map<const GateMat> g(gates(b));
            Eigen::Map<const ExpMat> Ob(O.data() + std::size_t(b) * DO);
            Eigen::Map<OutMat>(Y.data() + std::size_t(b) * DY).noalias() = g.lazyProduct(Ob);
        }
    }

    // dL/d(everything) for the seed `cot` (B x DY); needs forward() first.
    void backward(const float* x, const float* cot) {
        AMap<RowMat> X(x, B, D);
        for (int b = 0; b < B; ++b) {
            Eigen::Map<const GateMat> g(gates(b));
            Eigen::Map<const ExpMat> Ob(O.data() + std::size_t(b) * DO);
            Eigen::Map<const OutMat> dYb(cot + std::size_t(b) * DY);
            Eigen::Map<ExpMat>(dO.data() + std::size_t(b) * DO).noalias() = g.transpose().lazyProduct(dYb);
            const GateMat dg = dYb.lazyProduct(Ob.transpose());  // d y / d g
            const Eigen::Matrix<float, T, 1> s = g.cwiseProduct(dg).rowwise().sum();
            Eigen::Map<GateMat>(dZ.data() + std::size_t(b) * SZ + S1) = g.cwiseProduct(dg - s.replicate<1, E>());
        }
        for (int e = 0; e < E; ++e) {
            auto dOe = dO.middleCols(e * H2, H2);
            dW2[e].noalias() = Z.middleCols(e * H1, H1).transpose() * dOe;
            db2[e] = dOe.colwise().sum();
            dZ.middleCols(e * H1, H1).noalias() = dOe * w.W2[e].transpose();
        }
        // relu'(z) = [h > 0]
        dZ.leftCols(S1) = dZ.leftCols(S1).cwiseProduct((Z.leftCols(S1).array() > 0.f).cast<float>().matrix());
        dWs.noalias() = X.transpose() * dZ;
        db1s = dZ.leftCols(S1).colwise().sum();
        dX.noalias() = dZ * w.Ws.transpose();
    }

    // forward + tangent along (dx, every parameter's tangent)
    void jvp(const float* x, const float* dx) {
        const Data& d = data();
        AMap<RowMat> X(x, B, D), dXm(dx, B, D);
        Z.noalias() = X * w.Ws;
        TZ.noalias() = dXm * w.Ws;
        TZ.noalias() += X * tWs;
        Z.leftCols(S1) = (Z.leftCols(S1).rowwise() + w.b1s).cwiseMax(0.f);
        TZ.leftCols(S1) = (TZ.leftCols(S1).rowwise() + tb1s).cwiseProduct((Z.leftCols(S1).array() > 0.f).cast<float>().matrix());
        for (int e = 0; e < E; ++e) {
            auto Oe = O.middleCols(e * H2, H2);
            auto TOe = TO.middleCols(e * H2, H2);
            Oe.noalias() = Z.middleCols(e * H1, H1) * w.W2[e];
            Oe.rowwise() += w.b2[e];
            TOe.noalias() = TZ.middleCols(e * H1, H1) * w.W2[e];
            TOe.noalias() += Z.middleCols(e * H1, H1) * AMap<W2Mat>(d.tW2[e].data());
            TOe.rowwise() += AMap<Eigen::Matrix<float, 1, H2>>(d.tb2[e].data());
        }
        for (int b = 0; b < B; ++b) {
            float* gp = gates(b);
            softmax_rows(gp);
            Eigen::Map<const GateMat> g(gp);
            Eigen::Map<GateMat> tl(TZ.data() + std::size_t(b) * SZ + S1);
            const Eigen::Matrix<float, T, 1> s = g.cwiseProduct(tl).rowwise().sum();
            const GateMat tg = g.cwiseProduct(tl - s.replicate<1, E>());
            Eigen::Map<const ExpMat> Ob(O.data() + std::size_t(b) * DO), TOb(TO.data() + std::size_t(b) * DO);
            Eigen::Map<OutMat>(Y.data() + std::size_t(b) * DY).noalias() = g.lazyProduct(Ob);
            Eigen::Map<OutMat> TYb(TY.data() + std::size_t(b) * DY);
            TYb.noalias() = tg.lazyProduct(Ob);
            TYb.noalias() += g.lazyProduct(TOb);
        }
    }
};

// B = 1: fixed-size row vectors, matrix-vector products.
struct EigenMMoE1 {
    EigenWeights w;
    Eigen::Matrix<float, 1, SZ> z;
    Eigen::Matrix<float, 1, DO> o;
    Eigen::Matrix<float, 1, DY> y;
    void forward(const float* x) {
        Eigen::Map<const Eigen::Matrix<float, 1, D>, Eigen::Aligned64> xv(x);
        z.noalias() = xv * w.Ws;
        z.head<S1>() = (z.head<S1>() + w.b1s).cwiseMax(0.f);
        for (int e = 0; e < E; ++e) {
            o.segment<H2>(e * H2).noalias() = z.segment<H1>(e * H1) * w.W2[e];
            o.segment<H2>(e * H2) += w.b2[e];
        }
        softmax_rows(z.data() + S1);
        Eigen::Map<const GateMat> g(z.data() + S1);
        Eigen::Map<const ExpMat> Ob(o.data());
        Eigen::Map<OutMat>(y.data()).noalias() = g.lazyProduct(Ob);
    }
};

void BM_eigen_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    const float* x = data().X.data();
    if (B == 1) {
        auto m = std::make_unique<EigenMMoE1>();
        timed_bw(st, kFlopFwd, 1, [&] {
            m->forward(x);
            benchmark::DoNotOptimize(m->y.data());
            benchmark::ClobberMemory();
        });
    } else {
        auto m = std::make_unique<EigenMMoE>(B);
        timed_bw(st, kFlopFwd * B, std::size_t(B), [&] {
            m->forward(x);
            benchmark::DoNotOptimize(m->Y.data());
            benchmark::ClobberMemory();
        });
    }
}
void BM_eigen_fwdbwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenMMoE>(B);
    timed_bw(st, kFlopFwdBwd * B, std::size_t(B), [&] {
        m->forward(data().X.data());
        m->backward(data().X.data(), data().cot.data());
        benchmark::DoNotOptimize(m->dWs.data());
        benchmark::ClobberMemory();
    });
}
void BM_eigen_jvp(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenMMoE>(B);
    timed_bw(st, kFlopJvp * B, std::size_t(B), [&] {
        m->jvp(data().X.data(), data().dX.data());
        benchmark::DoNotOptimize(m->TY.data());
        benchmark::ClobberMemory();
    });
}

// =========================================== LibTorch ==========================================
#if defined(CTREC_BENCH_HAVE_TORCH)
// A PyTorch MMoE as a competent user writes it in the C++ frontend: the experts' first layers as
// one Linear(512, 8 x 256), the second layers as one baddbmm over the expert axis with (8, 256,
// 128) weights, the three gates as one Linear(512, 24) without bias and a softmax per task, the
// mixture as an einsum. One thread, InferenceMode for the forward.
struct TorchMMoEImpl : torch::nn::Module {
    torch::nn::Linear experts{nullptr}, gate{nullptr};
    torch::Tensor W2, b2;
    TorchMMoEImpl() {
        experts = register_module("experts", torch::nn::Linear(D, S1));
        gate = register_module("gate", torch::nn::Linear(torch::nn::LinearOptions(D, NG).bias(false)));
        W2 = register_parameter("W2", torch::empty({E, H1, H2}));
        b2 = register_parameter("b2", torch::empty({E, 1, H2}));
        const Data& d = data();
        torch::NoGradGuard ng;
        auto blob = [](const avec& v, at::IntArrayRef shape) {
            return torch::from_blob(const_cast<float*>(v.data()), shape, torch::kFloat32);
        };
        for (int e = 0; e < E; ++e) {
            experts->weight.narrow(0, e * H1, H1).copy_(blob(d.W1[e], {D, H1}).t());  // (out, in)
            experts->bias.narrow(0, e * H1, H1).copy_(blob(d.b1[e], {H1}));
            W2[e].copy_(blob(d.W2[e], {H1, H2}));
            b2[e][0].copy_(blob(d.b2[e], {H2}));
        }
        gate->weight.copy_(blob(d.Gw, {D, NG}).t());
    }
    torch::Tensor forward(const torch::Tensor& x) {
        const auto B = x.size(0);
        auto h = torch::relu(experts(x)).view({B, E, H1}).transpose(0, 1);  // (E, B, H1)
        auto o = torch::baddbmm(b2, h, W2);                                   // (E, B, H2)
        auto g = torch::softmax(gate(x).view({B, T, E}), -1);               // (B, T, E)
        return torch::einsum("bte,ebd->btd", {g, o});                        // (B, T, H2)
    }
};
TORCH_MODULE(TorchMMoE);

torch::Tensor torch_input(int B) {
    return torch::from_blob(const_cast<float*>(data().X.data()), {B, D}, torch::kFloat32);
}
torch::Tensor torch_cot(int B) {
    return torch::from_blob(const_cast<float*>(data().cot.data()), {B, T, H2}, torch::kFloat32);
}

void BM_torch_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    TorchMMoE m;
    m->eval();
    auto x = torch_input(B);
    c10::InferenceMode guard;
    timed_bw(st, kFlopFwd * B, std::size_t(B), [&] {
        auto y = m->forward(x);
        benchmark::DoNotOptimize(y.data_ptr());
        benchmark::ClobberMemory();
    });
}
void BM_torch_fwdbwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    TorchMMoE m;
    auto x = torch_input(B).clone().requires_grad_(true);
    auto cot = torch_cot(B);
    timed_bw(st, kFlopFwdBwd * B, std::size_t(B), [&] {
        m->zero_grad(/*set_to_none=*/true);
        x.mutable_grad() = torch::Tensor();
        auto y = m->forward(x);
        y.backward(cot);
        benchmark::DoNotOptimize(m->experts->weight.grad().data_ptr());
        benchmark::DoNotOptimize(x.grad().data_ptr());
        benchmark::ClobberMemory();
    });
}
#endif

// ========================================= verification ========================================
double max_abs(const float* a, std::size_t n) {
    double m = 0;
    for (std::size_t i = 0; i < n; ++i) m = std::max(m, double(std::fabs(a[i])));
    return m;
}
// max |a - b| / max |a|
double rel_diff(const float* a, const float* b, std::size_t n) {
    double m = 0;
    for (std::size_t i = 0; i < n; ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
    return m / std::max(max_abs(a, n), 1e-30);
}
template <class Mat>
RowMat dense_copy(const Mat& m) {
    return RowMat(m);
}

struct Check {
    std::string what;
    double diff, tol;
};

std::vector<Check> verify() {
    std::vector<Check> out;
    const Data& d = data();
    constexpr double tol = 1e-5, gtol = 1e-4;
    // forward: B = 1024, B = 64 and B = 1 (the fixed-size Eigen path)
    {
        M::parameters p;
        load_params<M>(p);
        p.prepare();
        M::workspace ws;
        auto ep = std::make_unique<EigenMMoE>(kMaxB);
        EigenMMoE& e = *ep;
        e.forward(d.X.data());
        for (std::size_t B : {std::size_t(kMaxB), std::size_t(kGradB)}) {
            avec y(B * DY);
            M::io io;
            io.input<"x">(d.X.data()).output<0>(y.data());
            M::run(std::as_const(p), ws, B, io);
            out.push_back({"fwd y ctrec vs eigen (B=" + std::to_string(B) + ")", rel_diff(y.data(), e.Y.data(), B * DY), tol});
        }
        avec y1(DY);
        M::io io1;
        io1.input<"x">(d.X.data()).output<0>(y1.data());
        M::run(std::as_const(p), ws, 1, io1);
        auto e1p = std::make_unique<EigenMMoE1>();
        EigenMMoE1& e1 = *e1p;
        e1.forward(d.X.data());
        out.push_back({"fwd y ctrec vs eigen (B=1)", rel_diff(y1.data(), e1.y.data(), DY), tol});
        // the weight-normalised layer, scored from prepared const parameters
        MWN::parameters pw;
        load_params<MWN>(pw);
        pw.prepare();
        MWN::workspace wsw;
        avec yw(std::size_t(kMaxB) * DY);
        MWN::io iow;
        iow.input<"x">(d.X.data()).output<0>(yw.data());
        MWN::run(std::as_const(pw), wsw, kMaxB, iow);
        out.push_back({"fwd y weight-norm vs eigen (B=1024)", rel_diff(yw.data(), e.Y.data(), std::size_t(kMaxB) * DY), tol});
        // bf16 kernels: the distance to float32 (a different model), and batch 1 (the bf16
        // GEMV) against batch 1024 (float32 GEMMs on the rounded kernels): the same bits
        MB16::parameters pb;
        load_params<MB16>(pb);
        pb.prepare();
        MB16::workspace wsb;
        avec yb(std::size_t(kMaxB) * DY), yb1(DY);
        MB16::io iob, iob1;
        iob.input<"x">(d.X.data()).output<0>(yb.data());
        iob1.input<"x">(d.X.data()).output<0>(yb1.data());
        MB16::run(std::as_const(pb), wsb, kMaxB, iob);
        MB16::run(std::as_const(pb), wsb, 1, iob1);
        out.push_back({"fwd y bf16 kernels vs eigen (B=1024)", rel_diff(yb.data(), e.Y.data(), std::size_t(kMaxB) * DY), 2e-2});
        out.push_back({"fwd y bf16 B=1 vs bf16 B=1024 row 0", rel_diff(yb1.data(), yb.data(), DY), 0.0});
#if defined(CTREC_BENCH_HAVE_TORCH)
        TorchMMoE m;
        c10::InferenceMode guard;
        auto yt = m->forward(torch_input(kMaxB)).contiguous();
        out.push_back({"fwd y torch vs eigen (B=1024)", rel_diff(yt.data_ptr<float>(), e.Y.data(), std::size_t(kMaxB) * DY), tol});
        auto yt1 = m->forward(torch_input(1)).contiguous();
        out.push_back({"fwd y torch vs eigen (B=1)", rel_diff(yt1.data_ptr<float>(), e1.y.data(), DY), tol});
#endif
    }
    // gradients, B = 64
    {
        auto g = std::make_unique<CtrecGrad>(kGradB);
        g->run(kGradB);
        auto ep = std::make_unique<EigenMMoE>(kGradB);
        EigenMMoE& e = *ep;
        e.forward(d.X.data());
        e.backward(d.X.data(), d.cot.data());
        out.push_back({"grad y ctrec vs eigen", rel_diff(g->out[0].data(), e.Y.data(), std::size_t(kGradB) * DY), tol});
        out.push_back({"grad dx ctrec vs eigen", rel_diff(g->grad("x").data(), e.dX.data(), std::size_t(kGradB) * D), gtol});
        double w1 = 0, bb1 = 0, w2 = 0, bb2 = 0;
        for (int k = 0; k < E; ++k) {
            const RowMat dW1 = dense_copy(e.dWs.middleCols(k * H1, H1));
            w1 = std::max(w1, rel_diff(g->grad(pname(k, 0, "kernel")).data(), dW1.data(), std::size_t(D) * H1));
            bb1 = std::max(bb1, rel_diff(g->grad(pname(k, 0, "bias")).data(), e.db1s.data() + k * H1, H1));
            w2 = std::max(w2, rel_diff(g->grad(pname(k, 1, "kernel")).data(), e.dW2[k].data(), std::size_t(H1) * H2));
            bb2 = std::max(bb2, rel_diff(g->grad(pname(k, 1, "bias")).data(), e.db2[k].data(), H2));
        }
        out.push_back({"grad dW1 (8 experts) ctrec vs eigen", w1, gtol});
        out.push_back({"grad db1 (8 experts) ctrec vs eigen", bb1, gtol});
        out.push_back({"grad dW2 (8 experts) ctrec vs eigen", w2, gtol});
        out.push_back({"grad db2 (8 experts) ctrec vs eigen", bb2, gtol});
        const RowMat dG = dense_copy(e.dWs.rightCols(NG));
        out.push_back({"grad dgate ctrec vs eigen", rel_diff(g->grad("mmoe/gate_weight").data(), dG.data(), std::size_t(D) * NG), gtol});
        // the hand-written backward against a central difference of the forward, in the direction
        // of the gradient itself (v = dx / max |dx|: no cancellation in <dx, v>), so that the
        // reference is not only self-consistent
        {
            const std::size_t n = std::size_t(kGradB) * D;
            const double h = 1e-2, s = max_abs(e.dX.data(), n);
            avec xp(d.X.begin(), d.X.begin() + n), xm = xp;
            for (std::size_t i = 0; i < n; ++i) {
                const double v = e.dX.data()[i] / s;
                xp[i] = float(xp[i] + h * v), xm[i] = float(xm[i] - h * v);
            }
            auto fp = std::make_unique<EigenMMoE>(kGradB), fm = std::make_unique<EigenMMoE>(kGradB);
            fp->forward(xp.data()), fm->forward(xm.data());
            double fd = 0, an = 0;
            for (std::size_t i = 0; i < std::size_t(kGradB) * DY; ++i) fd += double(d.cot[i]) * (double(fp->Y.data()[i]) - fm->Y.data()[i]);
            // the step actually taken (the perturbed inputs rounded to float)
            for (std::size_t i = 0; i < n; ++i) an += double(e.dX.data()[i]) * (double(xp[i]) - xm[i]);
            out.push_back({"grad dx eigen vs central difference", std::fabs(fd - an) / std::max(std::fabs(an), 1e-30), 5e-3});
        }
#if defined(CTREC_BENCH_HAVE_TORCH)
        TorchMMoE m;
        auto x = torch_input(kGradB).clone().requires_grad_(true);
        m->forward(x).backward(torch_cot(kGradB));
        auto tdx = x.grad().contiguous();
        out.push_back({"grad dx torch vs eigen", rel_diff(tdx.data_ptr<float>(), e.dX.data(), std::size_t(kGradB) * D), gtol});
        const RowMat dW1s = dense_copy(e.dWs.leftCols(S1));
        auto tW1 = m->experts->weight.grad().t().contiguous();  // (in, out) like the stacked kernel
        out.push_back({"grad dW1 (stacked) torch vs eigen", rel_diff(tW1.data_ptr<float>(), dW1s.data(), std::size_t(D) * S1), gtol});
        auto tW2 = m->W2.grad().contiguous();
        double w2t = 0;
        for (int k = 0; k < E; ++k) w2t = std::max(w2t, rel_diff(tW2.data_ptr<float>() + std::size_t(k) * H1 * H2, e.dW2[k].data(), std::size_t(H1) * H2));
        out.push_back({"grad dW2 (8 experts) torch vs eigen", w2t, gtol});
        const RowMat dG2 = dense_copy(e.dWs.rightCols(NG));
        auto tG = m->gate->weight.grad().t().contiguous();
        out.push_back({"grad dgate torch vs eigen", rel_diff(tG.data_ptr<float>(), dG2.data(), std::size_t(D) * NG), gtol});
#endif
    }
    // JVP, B = 64
    {
        auto j = std::make_unique<CtrecJvp>(kGradB);
        j->run(kGradB);
        auto ep = std::make_unique<EigenMMoE>(kGradB);
        EigenMMoE& e = *ep;
        e.jvp(d.X.data(), d.dX.data());
        out.push_back({"jvp y ctrec vs eigen", rel_diff(j->y.data(), e.Y.data(), std::size_t(kGradB) * DY), tol});
        out.push_back({"jvp dy ctrec vs eigen", rel_diff(j->ty.data(), e.TY.data(), std::size_t(kGradB) * DY), gtol});
    }
    return out;
}

void register_all() {
    auto reg = [](const std::string& name, void (*fn)(benchmark::State&), std::int64_t B) {
        benchmark::RegisterBenchmark(name.c_str(), fn)->Arg(B)->UseManualTime()->Unit(benchmark::kMicrosecond);
    };
    for (std::int64_t B : {1, 64, 1024}) {
        reg("W7/fwd/ctrec", BM_ctrec_fwd, B);
        reg("W7/fwd/ctrec_wn", BM_ctrec_wn_fwd, B);
        reg("W7/fwd/ctrec_bf16", BM_ctrec_bf16_fwd, B);
        reg("W7/fwd/eigen", BM_eigen_fwd, B);
#if defined(CTREC_BENCH_HAVE_TORCH)
        reg("W7/fwd/torch", BM_torch_fwd, B);
#endif
    }
    reg("W7/fwdbwd/ctrec", BM_ctrec_fwdbwd, kGradB);
    reg("W7/fwdbwd/eigen", BM_eigen_fwdbwd, kGradB);
#if defined(CTREC_BENCH_HAVE_TORCH)
    reg("W7/fwdbwd/torch", BM_torch_fwdbwd, kGradB);
#endif
    reg("W7/jvp/ctrec", BM_ctrec_jvp, kGradB);
    reg("W7/jvp/eigen", BM_eigen_jvp, kGradB);
}

// --name=X: removes the flag from argv and returns X (or nullptr)
const char* take_flag(int& argc, char** argv, const char* name) {
    const std::size_t n = std::strlen(name);
    for (int i = 1; i < argc; ++i)
        if (std::strncmp(argv[i], name, n) == 0 && argv[i][n] == '=') {
            const char* v = argv[i] + n + 1;
            for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
            --argc;
            return v;
        }
    return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
    bench::force_single_thread(argc, argv);
#if defined(CTREC_BENCH_HAVE_TORCH)
    at::set_num_threads(1);
    at::set_num_interop_threads(1);
#endif
    Eigen::setNbThreads(1);

    std::string peak_source = "measured in-process (FMA chains, bench_common.hpp)";
    if (const char* v = take_flag(argc, argv, "--peak_gflops")) {
        g_peak = std::atof(v) * 1e9;
        peak_source = "given (--peak_gflops)";
    }
    std::string bw_source = "measured in-process (read of a hot 5.3 MB buffer, best of 0.2 s)";
    if (const char* v = take_flag(argc, argv, "--bw_gbs")) {
        g_bw = std::atof(v) * 1e9;
        bw_source = "given (--bw_gbs)";
    }
    if (g_peak <= 0) g_peak = bench::measure_fma_peak(0.3);
    if (g_bw <= 0) g_bw = measure_read_bw(kParamBytes, 0.2);

    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    std::fprintf(stderr, "W7 MMoE: FP32 peak %.1f GFLOP/s (%s)\n", g_peak / 1e9, peak_source.c_str());
    std::fprintf(stderr, "W7 MMoE: read bandwidth %.1f GB/s (%s): weight-streaming limit at B = 1 %.1f us (%.2f MB)\n",
                 g_bw / 1e9, bw_source.c_str(), kParamBytes / g_bw * 1e6, kParamBytes / 1e6);
    bool ok = true;
    double worst = 0;
    for (const Check& c : verify()) {
        const bool pass = std::isfinite(c.diff) && c.diff <= c.tol;
        ok = ok && pass;
        worst = std::max(worst, c.diff);
        std::fprintf(stderr, "  verify %-40s rel max diff %.3g %s\n", c.what.c_str(), c.diff, pass ? "ok" : "MISMATCH");
    }
    benchmark::AddCustomContext("fp32_peak_gflops", std::to_string(g_peak / 1e9));
    benchmark::AddCustomContext("peak_source", peak_source);
    benchmark::AddCustomContext("read_bw_gbs", std::to_string(g_bw / 1e9));
    benchmark::AddCustomContext("bw_source", bw_source);
    benchmark::AddCustomContext("param_bytes", std::to_string(kParamBytes));
    benchmark::AddCustomContext("verify", ok ? "ok" : "MISMATCH");
    benchmark::AddCustomContext("verify_worst_diff", std::to_string(worst));
    benchmark::AddCustomContext("xsimd_arch", xsimd::default_arch::name());
#if defined(CTREC_BENCH_HAVE_TORCH)
    benchmark::AddCustomContext("torch_threads", std::to_string(at::get_num_threads()));
    {
        const char* core = bench::openblas_core();
        std::string c = core ? core : "n/a";
        if (const char* det = std::getenv("CTREC_BENCH_OPENBLAS_DETECTED"))
            c += std::string(" (OPENBLAS_CORETYPE set by the benchmark; OpenBLAS detected ") + det + ")";
        benchmark::AddCustomContext("openblas_core", c);
        std::fprintf(stderr, "W7 MMoE: LibTorch threads %d, OpenBLAS core %s\n", at::get_num_threads(), c.c_str());
    }
#else
    benchmark::AddCustomContext("torch_threads", "n/a (built without LibTorch)");
#endif
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
