// Workload W4 (bench/WORKLOADS.md): DIN target attention (spec layers-trans-seq-multitask-nas.md
// 2.2), query q (H = 32), keys k (T = 50 x 32), attention MLP [80, 40, 1] over
// z_t = [q, k_t, q - k_t, q * k_t] (128), weighted sum -> 32 per example; float32, one thread.
//
// Benchmark configuration (the same function in all three implementations): relu on the
// hidden layers, the last layer linear, mode 'sum', no decay, no mask (all 50 steps real),
// plain Dense layers (no weight norm):
//   w_t = relu(relu(z_t W0 + b0) W1 + b1) W2 + b2,   out = sum_t w_t k_t.
// W0 (128, 80), W1 (80, 40), W2 (40, 1) row-major (in, out): the ctrec kernels
// "din/compress_tower/dense_{0,1,2}/kernel"; biases ".../bias".
//
//   W4/fwd/<impl>/<B>     forward, B in {1, 64, 1024}; impl: ctrec, eigen, torch
//   W4/fwdbwd/<impl>/64   forward + reverse-mode gradient w.r.t. q, k and every parameter
//                         for a given output cotangent (B x 32)
//   W4/jvp/<impl>/64      forward + forward-mode directional derivative (tangents of q, k
//                         and every parameter; ctrec, eigen)
//
// ctrec: layers::din (include/ctrec/layers/din.hpp), written literally as
// [q, k, q - k, q * k] -> MLP; the core's matmul splits the concatenation (q's share once per
// example, core/matmul.hpp). The JSON context field `ctrec_form` names it.
//
// FLOPs per example (bench/ROOFLINE.md): literal 1.37 M (the concat-then-MLP as written:
// T (2 * 128 * 80 + 2 * 80 * 40 + 2 * 40) = 1.348 M of GEMMs, plus the concat's q - k,
// q * k, biases, relus and the weighted sum); ~0.85 M after the concat-split and hoisting
// rewrites (q (W_a + W_c) once per example, k_t (W_b - W_c) + (q * k_t) W_d per step).
// Forward+backward and JVP: 3x the forward figure, as frameworks count it. Counters:
// flops and peak_frac (literal 1.37 M), peak_frac_rw (0.85 M), p50_us / p99_us (wall-clock
// latency percentiles within one run, steady_clock around each call: the manual time),
// cpu_p50_us / cpu_p99_us / cpu_mean_us (CLOCK_THREAD_CPUTIME_ID around each call: time
// this thread actually ran, insensitive to being descheduled on a loaded machine; everything
// runs in the calling thread: LibTorch and OpenBLAS use one thread), items_per_second.
//
//   ./bench_w4_din --benchmark_min_time=0.2 [--peak_gflops=179] [--eigen_chunk=8]
#include <benchmark/benchmark.h>
#include <time.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/din.hpp"

#if defined(CTREC_BENCH_HAVE_TORCH)
#include <ATen/Parallel.h>
#include <torch/torch.h>
#endif

#include "bench_common.hpp"

namespace {
using bench::g_peak;
using bench::lcg;

// ---- the model ----------------------------------------------------------------------------
constexpr int H = 32, T = 50, Z4 = 4 * H, U0 = 80, U1 = 40;

namespace w4 {
using namespace ctrec;
constexpr auto q = input<"q", H>;
constexpr auto k = input<"k", T, H>;
constexpr layers::din_config<3> cfg{.hidden_units = {80, 40, 1}, .activation = layers::act_relu, .use_weight_norm = false};
constexpr auto r = layers::din<"din", cfg>(q, k);
constexpr auto out = r.out();
constexpr const char* form = "layers::din (ctrec/layers/din.hpp)";
}  // namespace w4

using M = ctrec::program<float, w4::out>;
using G = ctrec::grad_program<float, w4::out>;
using J = ctrec::jvp_program<float, w4::out>;

constexpr int kMaxB = 1024, kGradB = 64;
constexpr double kFlopGemm = T * (2.0 * Z4 * U0 + 2.0 * U0 * U1 + 2.0 * U1);  // 1,348,000
constexpr double kFlopLit = 1.37e6;                                          // bench/ROOFLINE.md
constexpr double kFlopRw = 0.85e6;                                           // after the rewrites
constexpr double kFlopFwd = kFlopLit, kFlopFwdBwd = 3.0 * kFlopLit, kFlopJvp = 3.0 * kFlopLit;
constexpr double kFlopFwdRw = kFlopRw, kFlopFwdBwdRw = 3.0 * kFlopRw, kFlopJvpRw = 3.0 * kFlopRw;
static_assert(kFlopGemm == 1348000.0);

int g_eigen_chunk = 8;  // examples per Eigen chunk (400 rows of the concat matrix)

// ---- shared data ----------------------------------------------------------------------------
using avec = std::vector<float, Eigen::aligned_allocator<float>>;  // 64-byte aligned

struct Data {
    avec W0, b0, W1, b1, W2, b2;        // row-major (in, out)
    avec dW0, db0, dW1, db1, dW2, db2;  // JVP tangents
    avec Q, K, dQ, dK;                  // kMaxB x H, kMaxB x T x H
    avec cot;                           // kGradB x H
    Data() {
        lcg r{44};
        auto fill = [&](avec& v, std::size_t n, float scale) {
            v.resize(n);
            for (auto& e : v) e = scale * r.next();
        };
        // glorot-uniform ranges; small non-zero biases so that the checks see them
        fill(W0, std::size_t(Z4) * U0, std::sqrt(6.f / float(Z4 + U0))), fill(b0, U0, 0.1f);
        fill(W1, std::size_t(U0) * U1, std::sqrt(6.f / float(U0 + U1))), fill(b1, U1, 0.1f);
        fill(W2, std::size_t(U1), std::sqrt(6.f / float(U1 + 1))), fill(b2, 1, 0.1f);
        fill(dW0, std::size_t(Z4) * U0, 0.01f), fill(db0, U0, 0.01f);
        fill(dW1, std::size_t(U0) * U1, 0.01f), fill(db1, U1, 0.01f);
        fill(dW2, std::size_t(U1), 0.01f), fill(db2, 1, 0.01f);
        fill(Q, std::size_t(kMaxB) * H, 1.f);
        fill(K, std::size_t(kMaxB) * T * H, 1.f);
        fill(dQ, std::size_t(kMaxB) * H, 0.1f);
        fill(dK, std::size_t(kMaxB) * T * H, 0.1f);
        fill(cot, std::size_t(kGradB) * H, 1.f / kGradB);
    }
};
const Data& data() {
    static const Data d;
    return d;
}

// ---- timing: wall clock (the manual time) and this thread's CPU time ------------------------
inline double thread_cpu_s() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

template <class F>
void timed(benchmark::State& st, double flop_lit, double flop_rw, std::size_t batch, F&& f) {
    using clk = std::chrono::steady_clock;
    const std::size_t cap = static_cast<std::size_t>(std::min<benchmark::IterationCount>(st.max_iterations, 1 << 22));
    std::vector<double> lat, cpu;
    lat.reserve(cap), cpu.reserve(cap);
    double cpu_sum = 0;
    for (auto _ : st) {
        const double c0 = thread_cpu_s();  // the CPU clock reads lie outside the wall-clock interval
        const auto t0 = clk::now();
        f();
        const auto t1 = clk::now();
        const double c1 = thread_cpu_s();
        const double dt = std::chrono::duration<double>(t1 - t0).count();
        st.SetIterationTime(dt);
        cpu_sum += c1 - c0;
        if (lat.size() < cap) lat.push_back(dt), cpu.push_back(c1 - c0);
    }
    const double it = double(st.iterations());
    st.counters["flops"] = benchmark::Counter(flop_lit * it, benchmark::Counter::kIsRate);
    st.counters["peak_frac"] = benchmark::Counter(flop_lit * it / g_peak, benchmark::Counter::kIsRate);
    st.counters["peak_frac_rw"] = benchmark::Counter(flop_rw * it / g_peak, benchmark::Counter::kIsRate);
    st.counters["p50_us"] = bench::percentile(lat, 0.50) * 1e6;
    st.counters["p99_us"] = bench::percentile(lat, 0.99) * 1e6;
    st.counters["cpu_p50_us"] = bench::percentile(cpu, 0.50) * 1e6;
    st.counters["cpu_p99_us"] = bench::percentile(cpu, 0.99) * 1e6;
    st.counters["cpu_mean_us"] = cpu_sum / std::max(it, 1.0) * 1e6;
    st.counters["B"] = double(batch);
    st.SetItemsProcessed(static_cast<std::int64_t>(it) * static_cast<std::int64_t>(batch));
}

// ============================================ ctrec ============================================
template <class Params>
void load_params(Params& p, bool tangents) {
    const Data& d = data();
    p.set("din/compress_tower/dense_0/kernel", d.W0), p.set("din/compress_tower/dense_0/bias", d.b0);
    p.set("din/compress_tower/dense_1/kernel", d.W1), p.set("din/compress_tower/dense_1/bias", d.b1);
    p.set("din/compress_tower/dense_2/kernel", d.W2), p.set("din/compress_tower/dense_2/bias", d.b2);
    if (tangents) {
        p.set("d.din/compress_tower/dense_0/kernel", d.dW0), p.set("d.din/compress_tower/dense_0/bias", d.db0);
        p.set("d.din/compress_tower/dense_1/kernel", d.dW1), p.set("d.din/compress_tower/dense_1/bias", d.db1);
        p.set("d.din/compress_tower/dense_2/kernel", d.dW2), p.set("d.din/compress_tower/dense_2/bias", d.db2);
    }
}

template <class Mp>
struct FwdOf {
    typename Mp::parameters p;
    typename Mp::workspace ws;
    avec y;
    typename Mp::io io;
    FwdOf(std::size_t B, const float* q, const float* k) : y(B * H) {
        load_params(p, false);
        p.prepare();
        io.template input<"q">(q).template input<"k">(k).template output<0>(y.data());
    }
    explicit FwdOf(std::size_t B) : FwdOf(B, data().Q.data(), data().K.data()) {}
    // scoring: parameters prepared once and read through a const reference, as in serving
    void run(std::size_t B) { Mp::run(std::as_const(p), ws, B, io); }
};
using CtrecFwd = FwdOf<M>;

struct CtrecGrad {  // every output of the grad program, bound
    G::parameters p;
    G::workspace ws;
    avec y, dq, dk, dW0, db0, dW1, db1, dW2, db2;
    G::io io;
    explicit CtrecGrad(std::size_t B)
        : y(B * H), dq(B * H), dk(B * T * H), dW0(std::size_t(Z4) * U0), db0(U0), dW1(std::size_t(U0) * U1), db1(U1),
          dW2(U1), db2(1) {
        load_params(p, false);
        io.input<"q">(data().Q.data()).input<"k">(data().K.data()).input<"cotangent">(data().cot.data());
        io.output<0>(y.data())
            .output<G::grad<"q">>(dq.data())
            .output<G::grad<"k">>(dk.data())
            .output<G::grad<"din/compress_tower/dense_0/kernel">>(dW0.data())
            .output<G::grad<"din/compress_tower/dense_0/bias">>(db0.data())
            .output<G::grad<"din/compress_tower/dense_1/kernel">>(dW1.data())
            .output<G::grad<"din/compress_tower/dense_1/bias">>(db1.data())
            .output<G::grad<"din/compress_tower/dense_2/kernel">>(dW2.data())
            .output<G::grad<"din/compress_tower/dense_2/bias">>(db2.data());
    }
    void run(std::size_t B) { G::run(p, ws, B, io); }
};

struct CtrecJvp {
    J::parameters p;
    J::workspace ws;
    avec y, ty;
    J::io io;
    explicit CtrecJvp(std::size_t B) : y(B * H), ty(B * H) {
        load_params(p, true);
        io.input<"q">(data().Q.data()).input<"k">(data().K.data());
        io.input<"d.q">(data().dQ.data()).input<"d.k">(data().dK.data());
        io.output<0>(y.data()).output<1>(ty.data());
    }
    void run(std::size_t B) { J::run(p, ws, B, io); }
};

void BM_ctrec_fwd(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto m = std::make_unique<CtrecFwd>(B);
    timed(st, kFlopFwd * double(B), kFlopFwdRw * double(B), B, [&] {
        m->run(B);
        benchmark::DoNotOptimize(m->y.data());
        benchmark::ClobberMemory();
    });
}
void BM_ctrec_fwdbwd(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto g = std::make_unique<CtrecGrad>(B);
    timed(st, kFlopFwdBwd * double(B), kFlopFwdBwdRw * double(B), B, [&] {
        g->run(B);
        benchmark::DoNotOptimize(g->dW0.data());
        benchmark::ClobberMemory();
    });
}
void BM_ctrec_jvp(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto j = std::make_unique<CtrecJvp>(B);
    timed(st, kFlopJvp * double(B), kFlopJvpRw * double(B), B, [&] {
        j->run(B);
        benchmark::DoNotOptimize(j->ty.data());
        benchmark::ClobberMemory();
    });
}

// ============================================ Eigen ============================================
// DIN as it is usually written: the (rows, 4H) concat matrix Z built explicitly, then the
// tower as GEMMs. The batch is processed in chunks of C examples (default 8: 400 rows, Z is
// 200 KB and stays in L2 from its construction through the tower and, when training, the
// backward products); B = 1 is the same code with a one-example chunk (50-row GEMMs).
// Row-major maps of the same weight buffers; every buffer allocated once (64-byte aligned).
// Per chunk: Z = [q, k_t, q - k_t, q * k_t] per row; H1 = relu(Z W0 + b0);
// H2 = relu(H1 W1 + b1); s = H2 w2 + b2; out_b = s_b^T K_b.
// Backward (by hand, per chunk right after its forward): ds_bt = k_bt . dout_b;
// dK_b = s_b dout_b^T + the concat's share; dW2 += H2^T ds; dA2 = (ds w2^T) .* [H2 > 0];
// dW1 += H1^T dA2; dA1 = (dA2 W1^T) .* [H1 > 0]; dW0 += Z^T dA1; dZ = dA1 W0^T; then
// dq_b = sum_t (dZ_q + dZ_{q-k} + dZ_{q*k} .* k_t), dk_t += dZ_k - dZ_{q-k} + dZ_{q*k} .* q.
// JVP: tZ = [tq, tk, tq - tk, tq * k + q * tk]; tA1 = tZ W0 + Z tW0 + tb0, masked; the same
// for the next layers; tout_b = ts_b^T K_b + s_b^T tK_b.
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVec = Eigen::Matrix<float, 1, Eigen::Dynamic>;
using ColVec = Eigen::Matrix<float, Eigen::Dynamic, 1>;
using MapM = Eigen::Map<RowMat, Eigen::Aligned64>;
using CMapM = Eigen::Map<const RowMat, Eigen::Aligned64>;
using CMapV = Eigen::Map<const RowVec, Eigen::Aligned64>;
using UMapM = Eigen::Map<RowMat>;  // blocks inside a buffer: not necessarily 64-byte aligned
using UCMapM = Eigen::Map<const RowMat>;
using UMapV = Eigen::Map<RowVec>;
using UCMapV = Eigen::Map<const RowVec>;

struct EigenDIN {
    int C;
    CMapM W0, W1;
    Eigen::Map<const ColVec, Eigen::Aligned64> w2;
    CMapV b0, b1;
    float b2;
    // forward, one chunk
    avec z, h1, h2, s;
    // backward
    avec ds, da2, da1, dz;
    RowMat gW0, gW1;
    RowVec gb0, gb1, gW2;
    float gb2 = 0;
    // jvp
    CMapM tW0, tW1;
    Eigen::Map<const ColVec, Eigen::Aligned64> tw2;
    CMapV tb0, tb1;
    float tb2;
    avec tz, th1, th2, ts;
    // outputs over the whole batch
    avec out, tout, gq, gk;

    EigenDIN(int B, int chunk)
        : C(std::max(1, std::min(chunk, B))),
          W0(data().W0.data(), Z4, U0),
          W1(data().W1.data(), U0, U1),
          w2(data().W2.data(), U1),
          b0(data().b0.data(), U0),
          b1(data().b1.data(), U1),
          b2(data().b2[0]),
          gW0(Z4, U0),
          gW1(U0, U1),
          gb0(U0),
          gb1(U1),
          gW2(U1),
          tW0(data().dW0.data(), Z4, U0),
          tW1(data().dW1.data(), U0, U1),
          tw2(data().dW2.data(), U1),
          tb0(data().db0.data(), U0),
          tb1(data().db1.data(), U1),
          tb2(data().db2[0]) {
        const std::size_t R = std::size_t(C) * T;
        z.resize(R * Z4), h1.resize(R * U0), h2.resize(R * U1), s.resize(R);
        out.resize(std::size_t(B) * H);
    }
    void alloc_backward(int B) {
        const std::size_t R = std::size_t(C) * T;
        ds.resize(R), da2.resize(R * U1), da1.resize(R * U0), dz.resize(R * Z4);
        gq.resize(std::size_t(B) * H), gk.resize(std::size_t(B) * T * H);
    }
    void alloc_jvp(int B) {
        const std::size_t R = std::size_t(C) * T;
        tz.resize(R * Z4), th1.resize(R * U0), th2.resize(R * U1), ts.resize(R);
        tout.resize(std::size_t(B) * H);
    }

    // Z rows of examples [b, b + nb)
    void build_z(const float* q, const float* k, int b, int nb) {
        MapM Z(z.data(), nb * T, Z4);
        for (int e = 0; e < nb; ++e) {
            UCMapV qb(q + std::size_t(b + e) * H, H);
            UCMapM Kb(k + std::size_t(b + e) * T * H, T, H);
            auto Zb = Z.middleRows(e * T, T);
            Zb.leftCols(H).rowwise() = qb;
            Zb.middleCols(H, H) = Kb;
            Zb.middleCols(2 * H, H) = (-Kb).rowwise() + qb;
            Zb.rightCols(H) = Kb.array().rowwise() * qb.array();
        }
    }

    void forward_chunk(const float* q, const float* k, int b, int nb) {
        const int R = nb * T;
        build_z(q, k, b, nb);
        MapM H1(h1.data(), R, U0), H2(h2.data(), R, U1);
        Eigen::Map<ColVec, Eigen::Aligned64> S(s.data(), R);
        H1.noalias() = CMapM(z.data(), R, Z4) * W0;
        H1 = (H1.rowwise() + b0).cwiseMax(0.f);
        H2.noalias() = H1 * W1;
        H2 = (H2.rowwise() + b1).cwiseMax(0.f);
        S.noalias() = H2 * w2;
        S.array() += b2;
        for (int e = 0; e < nb; ++e)
            UMapV(out.data() + std::size_t(b + e) * H, H).noalias() =
                S.segment(e * T, T).transpose() * UCMapM(k + std::size_t(b + e) * T * H, T, H);
    }

    // needs forward_chunk(q, k, b, nb) just before
    void backward_chunk(const float* q, const float* k, const float* cot, int b, int nb) {
        const int R = nb * T;
        CMapM Z(z.data(), R, Z4), H1(h1.data(), R, U0), H2(h2.data(), R, U1);
        Eigen::Map<const ColVec, Eigen::Aligned64> S(s.data(), R);
        Eigen::Map<ColVec, Eigen::Aligned64> dS(ds.data(), R);
        MapM dA2(da2.data(), R, U1), dA1(da1.data(), R, U0), dZ(dz.data(), R, Z4);
        for (int e = 0; e < nb; ++e) {
            UCMapV c(cot + std::size_t(b + e) * H, H);
            UCMapM Kb(k + std::size_t(b + e) * T * H, T, H);
            dS.segment(e * T, T).noalias() = Kb * c.transpose();
            UMapM(gk.data() + std::size_t(b + e) * T * H, T, H).noalias() = S.segment(e * T, T) * c;
        }
        gW2.noalias() += dS.transpose() * H2;
        gb2 += dS.sum();
        dA2.noalias() = dS * w2.transpose();
        dA2.array() = (H2.array() > 0.f).select(dA2.array(), 0.f);
        gW1.noalias() += H1.transpose() * dA2;
        gb1 += dA2.colwise().sum();
        dA1.noalias() = dA2 * W1.transpose();
        dA1.array() = (H1.array() > 0.f).select(dA1.array(), 0.f);
        gW0.noalias() += Z.transpose() * dA1;
        gb0 += dA1.colwise().sum();
        dZ.noalias() = dA1 * W0.transpose();
        for (int e = 0; e < nb; ++e) {
            UCMapV qb(q + std::size_t(b + e) * H, H);
            UCMapM Kb(k + std::size_t(b + e) * T * H, T, H);
            auto dZb = dZ.middleRows(e * T, T);
            UMapV(gq.data() + std::size_t(b + e) * H, H).noalias() =
                (dZb.leftCols(H) + dZb.middleCols(2 * H, H) + (dZb.rightCols(H).array() * Kb.array()).matrix())
                    .colwise()
                    .sum();
            UMapM dKb(gk.data() + std::size_t(b + e) * T * H, T, H);
            dKb += dZb.middleCols(H, H) - dZb.middleCols(2 * H, H);
            dKb.array() += dZb.rightCols(H).array().rowwise() * qb.array();
        }
    }

    void jvp_chunk(const float* q, const float* k, const float* tq, const float* tk, int b, int nb) {
        const int R = nb * T;
        forward_chunk(q, k, b, nb);
        CMapM Z(z.data(), R, Z4), H1(h1.data(), R, U0), H2(h2.data(), R, U1);
        Eigen::Map<const ColVec, Eigen::Aligned64> S(s.data(), R);
        MapM tZ(tz.data(), R, Z4), tH1(th1.data(), R, U0), tH2(th2.data(), R, U1);
        Eigen::Map<ColVec, Eigen::Aligned64> tS(ts.data(), R);
        for (int e = 0; e < nb; ++e) {
            UCMapV qb(q + std::size_t(b + e) * H, H), tqb(tq + std::size_t(b + e) * H, H);
            UCMapM Kb(k + std::size_t(b + e) * T * H, T, H), tKb(tk + std::size_t(b + e) * T * H, T, H);
            auto tZb = tZ.middleRows(e * T, T);
            tZb.leftCols(H).rowwise() = tqb;
            tZb.middleCols(H, H) = tKb;
            tZb.middleCols(2 * H, H) = (-tKb).rowwise() + tqb;
            tZb.rightCols(H) = (Kb.array().rowwise() * tqb.array() + tKb.array().rowwise() * qb.array()).matrix();
        }
        tH1.noalias() = tZ * W0;
        tH1.noalias() += Z * tW0;
        tH1.rowwise() += tb0;
        tH1.array() = (H1.array() > 0.f).select(tH1.array(), 0.f);
        tH2.noalias() = tH1 * W1;
        tH2.noalias() += H1 * tW1;
        tH2.rowwise() += tb1;
        tH2.array() = (H2.array() > 0.f).select(tH2.array(), 0.f);
        tS.noalias() = tH2 * w2;
        tS.noalias() += H2 * tw2;
        tS.array() += tb2;
        for (int e = 0; e < nb; ++e) {
            UMapV o(tout.data() + std::size_t(b + e) * H, H);
            o.noalias() = tS.segment(e * T, T).transpose() * UCMapM(k + std::size_t(b + e) * T * H, T, H);
            o.noalias() += S.segment(e * T, T).transpose() * UCMapM(tk + std::size_t(b + e) * T * H, T, H);
        }
    }

    void forward(const float* q, const float* k, int B) {
        for (int b = 0; b < B; b += C) forward_chunk(q, k, b, std::min(C, B - b));
    }
    void forward_backward(const float* q, const float* k, const float* cot, int B) {
        gW0.setZero(), gW1.setZero(), gW2.setZero(), gb0.setZero(), gb1.setZero(), gb2 = 0;
        for (int b = 0; b < B; b += C) {
            const int nb = std::min(C, B - b);
            forward_chunk(q, k, b, nb);
            backward_chunk(q, k, cot, b, nb);
        }
    }
    void jvp(const float* q, const float* k, const float* tq, const float* tk, int B) {
        for (int b = 0; b < B; b += C) jvp_chunk(q, k, tq, tk, b, std::min(C, B - b));
    }
};

void BM_eigen_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenDIN>(B, g_eigen_chunk);
    timed(st, kFlopFwd * B, kFlopFwdRw * B, std::size_t(B), [&] {
        m->forward(data().Q.data(), data().K.data(), B);
        benchmark::DoNotOptimize(m->out.data());
        benchmark::ClobberMemory();
    });
}
void BM_eigen_fwdbwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenDIN>(B, g_eigen_chunk);
    m->alloc_backward(B);
    timed(st, kFlopFwdBwd * B, kFlopFwdBwdRw * B, std::size_t(B), [&] {
        m->forward_backward(data().Q.data(), data().K.data(), data().cot.data(), B);
        benchmark::DoNotOptimize(m->gW0.data());
        benchmark::ClobberMemory();
    });
}
void BM_eigen_jvp(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenDIN>(B, g_eigen_chunk);
    m->alloc_jvp(B);
    timed(st, kFlopJvp * B, kFlopJvpRw * B, std::size_t(B), [&] {
        m->jvp(data().Q.data(), data().K.data(), data().dQ.data(), data().dK.data(), B);
        benchmark::DoNotOptimize(m->tout.data());
        benchmark::ClobberMemory();
    });
}

// =========================================== LibTorch ==========================================
#if defined(CTREC_BENCH_HAVE_TORCH)
// DIN as written with the C++ frontend: qe = q.unsqueeze(1).expand_as(k);
// z = cat({qe, k, qe - k, qe * k}, 2) (B, T, 4H); the tower with torch::linear (what
// nn::Linear calls; weights stored (out, in)) and relu; scores (B, T, 1);
// out = matmul(scores.transpose(1, 2), k).squeeze(1). One thread; InferenceMode for the
// forward, autograd for the gradients.
struct TorchDIN {
    torch::Tensor W0, b0, W1, b1, W2, b2;  // (out, in) like nn::Linear
    explicit TorchDIN(bool requires_grad) {
        const Data& d = data();
        auto kernel_t = [](const avec& W, int in, int out) {
            return torch::from_blob(const_cast<float*>(W.data()), {in, out}, torch::kFloat32).t().contiguous();
        };
        auto vec = [](const avec& v) {
            return torch::from_blob(const_cast<float*>(v.data()), {std::int64_t(v.size())}, torch::kFloat32).clone();
        };
        W0 = kernel_t(d.W0, Z4, U0), b0 = vec(d.b0), W1 = kernel_t(d.W1, U0, U1), b1 = vec(d.b1);
        W2 = kernel_t(d.W2, U1, 1), b2 = vec(d.b2);
        if (requires_grad)
            for (auto* t : {&W0, &b0, &W1, &b1, &W2, &b2}) t->requires_grad_(true);
    }
    torch::Tensor forward(const torch::Tensor& q, const torch::Tensor& k) const {  // (B, H), (B, T, H) -> (B, H)
        auto qe = q.unsqueeze(1).expand_as(k);
        auto z = torch::cat({qe, k, qe - k, qe * k}, 2);
        auto h = torch::relu(torch::linear(z, W0, b0));
        h = torch::relu(torch::linear(h, W1, b1));
        auto w = torch::linear(h, W2, b2);  // (B, T, 1)
        return torch::matmul(w.transpose(1, 2), k).squeeze(1);
    }
    void zero_grad() {
        for (auto* t : {&W0, &b0, &W1, &b1, &W2, &b2}) t->mutable_grad() = torch::Tensor();
    }
};

torch::Tensor torch_q(int B) { return torch::from_blob(const_cast<float*>(data().Q.data()), {B, H}, torch::kFloat32); }
torch::Tensor torch_k(int B) { return torch::from_blob(const_cast<float*>(data().K.data()), {B, T, H}, torch::kFloat32); }

void BM_torch_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    const TorchDIN m(false);
    auto q = torch_q(B), k = torch_k(B);
    c10::InferenceMode guard;
    timed(st, kFlopFwd * B, kFlopFwdRw * B, std::size_t(B), [&] {
        auto y = m.forward(q, k);
        benchmark::DoNotOptimize(y.data_ptr());
        benchmark::ClobberMemory();
    });
}
void BM_torch_fwdbwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    TorchDIN m(true);
    auto q = torch_q(B).clone().requires_grad_(true);
    auto k = torch_k(B).clone().requires_grad_(true);
    auto cot = torch::from_blob(const_cast<float*>(data().cot.data()), {B, H}, torch::kFloat32);
    timed(st, kFlopFwdBwd * B, kFlopFwdBwdRw * B, std::size_t(B), [&] {
        m.zero_grad();
        q.mutable_grad() = torch::Tensor();
        k.mutable_grad() = torch::Tensor();
        auto y = m.forward(q, k);
        y.backward(cot);
        benchmark::DoNotOptimize(m.W0.grad().data_ptr());
        benchmark::DoNotOptimize(k.grad().data_ptr());
        benchmark::ClobberMemory();
    });
}
#endif

// ========================================= verification ========================================
// max |a - b| / max |a|
double rel_diff(const float* a, const float* b, std::size_t n) {
    double m = 0, s = 0;
    for (std::size_t i = 0; i < n; ++i) {
        m = std::max(m, double(std::fabs(a[i] - b[i])));
        s = std::max(s, double(std::fabs(a[i])));
    }
    return m / std::max(s, 1e-30);
}
double rel_diff(const avec& a, const float* b) { return rel_diff(a.data(), b, a.size()); }

struct Check {
    std::string what;
    double diff, tol;
};

std::vector<Check> verify() {
    std::vector<Check> out;
    const Data& d = data();
    constexpr double tol = 1e-4;
    // forward, B = 1, 64 and 1024 (1024: more than one Eigen chunk and ctrec tile)
    for (int B : {1, kGradB, kMaxB}) {
        const std::string b = " (B=" + std::to_string(B) + ")";
        const std::size_t n = std::size_t(B) * H;
        auto c = std::make_unique<CtrecFwd>(B);
        c->run(B);
        auto e = std::make_unique<EigenDIN>(B, g_eigen_chunk);
        e->forward(d.Q.data(), d.K.data(), B);
        out.push_back({"fwd y    ctrec vs eigen" + b, rel_diff(c->y.data(), e->out.data(), n), tol});
#if defined(CTREC_BENCH_HAVE_TORCH)
        const TorchDIN m(false);
        c10::InferenceMode guard;
        auto yt = m.forward(torch_q(B), torch_k(B)).contiguous();
        out.push_back({"fwd y    ctrec vs torch" + b, rel_diff(c->y.data(), yt.data_ptr<float>(), n), tol});
#endif
    }
    // gradients, B = 64
    {
        auto g = std::make_unique<CtrecGrad>(kGradB);
        g->run(kGradB);
        auto e = std::make_unique<EigenDIN>(kGradB, g_eigen_chunk);
        e->alloc_backward(kGradB);
        e->forward_backward(d.Q.data(), d.K.data(), d.cot.data(), kGradB);
        out.push_back({"grad y   ctrec vs eigen", rel_diff(g->y, e->out.data()), tol});
        out.push_back({"grad dq  ctrec vs eigen", rel_diff(g->dq, e->gq.data()), tol});
        out.push_back({"grad dk  ctrec vs eigen", rel_diff(g->dk, e->gk.data()), tol});
        out.push_back({"grad dW0 ctrec vs eigen", rel_diff(g->dW0, e->gW0.data()), tol});
        out.push_back({"grad db0 ctrec vs eigen", rel_diff(g->db0, e->gb0.data()), tol});
        out.push_back({"grad dW1 ctrec vs eigen", rel_diff(g->dW1, e->gW1.data()), tol});
        out.push_back({"grad db1 ctrec vs eigen", rel_diff(g->db1, e->gb1.data()), tol});
        out.push_back({"grad dW2 ctrec vs eigen", rel_diff(g->dW2, e->gW2.data()), tol});
        out.push_back({"grad db2 ctrec vs eigen", rel_diff(g->db2, &e->gb2), tol});
#if defined(CTREC_BENCH_HAVE_TORCH)
        // the hand-written Eigen backward (and ctrec) against LibTorch's autograd
        TorchDIN m(true);
        auto q = torch_q(kGradB).clone().requires_grad_(true);
        auto k = torch_k(kGradB).clone().requires_grad_(true);
        auto cot = torch::from_blob(const_cast<float*>(d.cot.data()), {kGradB, H}, torch::kFloat32);
        m.forward(q, k).backward(cot);
        auto tq = q.grad().contiguous(), tk = k.grad().contiguous();
        auto tW0 = m.W0.grad().t().contiguous(), tW1 = m.W1.grad().t().contiguous(), tW2 = m.W2.grad().t().contiguous();
        auto tb0 = m.b0.grad().contiguous(), tb1 = m.b1.grad().contiguous(), tb2 = m.b2.grad().contiguous();
        out.push_back({"grad dq  eigen vs torch", rel_diff(e->gq, tq.data_ptr<float>()), tol});
        out.push_back({"grad dk  eigen vs torch", rel_diff(e->gk, tk.data_ptr<float>()), tol});
        out.push_back({"grad dW0 eigen vs torch", rel_diff(e->gW0.data(), tW0.data_ptr<float>(), e->gW0.size()), tol});
        out.push_back({"grad db0 eigen vs torch", rel_diff(e->gb0.data(), tb0.data_ptr<float>(), U0), tol});
        out.push_back({"grad dW1 eigen vs torch", rel_diff(e->gW1.data(), tW1.data_ptr<float>(), e->gW1.size()), tol});
        out.push_back({"grad db1 eigen vs torch", rel_diff(e->gb1.data(), tb1.data_ptr<float>(), U1), tol});
        out.push_back({"grad dW2 eigen vs torch", rel_diff(e->gW2.data(), tW2.data_ptr<float>(), U1), tol});
        out.push_back({"grad db2 eigen vs torch", rel_diff(&e->gb2, tb2.data_ptr<float>(), 1), tol});
        out.push_back({"grad dq  ctrec vs torch", rel_diff(g->dq, tq.data_ptr<float>()), tol});
        out.push_back({"grad dk  ctrec vs torch", rel_diff(g->dk, tk.data_ptr<float>()), tol});
        out.push_back({"grad dW0 ctrec vs torch", rel_diff(g->dW0, tW0.data_ptr<float>()), tol});
#endif
        // the Eigen backward against a central difference of the ctrec forward: the
        // directional derivative of <cot, y(q, k)> along (dQ, dK), against <dq, dQ> + <dk, dK>
        {
            constexpr float eps = 1e-3f;
            const std::size_t nq = std::size_t(kGradB) * H, nk = std::size_t(kGradB) * T * H;
            avec qp(nq), qm(nq), kp(nk), km(nk);
            for (std::size_t i = 0; i < nq; ++i) qp[i] = d.Q[i] + eps * d.dQ[i], qm[i] = d.Q[i] - eps * d.dQ[i];
            for (std::size_t i = 0; i < nk; ++i) kp[i] = d.K[i] + eps * d.dK[i], km[i] = d.K[i] - eps * d.dK[i];
            auto loss = [&](const avec& qq, const avec& kk) {
                CtrecFwd c(kGradB, qq.data(), kk.data());
                c.run(kGradB);
                double l = 0;
                for (std::size_t i = 0; i < nq; ++i) l += double(c.y[i]) * d.cot[i];
                return l;
            };
            const double fd = (loss(qp, kp) - loss(qm, km)) / (2.0 * eps);
            double an = 0;
            for (std::size_t i = 0; i < nq; ++i) an += double(e->gq[i]) * d.dQ[i];
            for (std::size_t i = 0; i < nk; ++i) an += double(e->gk[i]) * d.dK[i];
            out.push_back({"grad dq,dk eigen vs finite diff (direction)", std::fabs(fd - an) / std::max(std::fabs(an), 1e-30), 1e-2});
        }
    }
    // JVP, B = 64: against the Eigen JVP, and that against a central difference of the ctrec
    // forward (piecewise quadratic: exact up to rounding unless a relu flips within eps)
    {
        auto j = std::make_unique<CtrecJvp>(kGradB);
        j->run(kGradB);
        auto e = std::make_unique<EigenDIN>(kGradB, g_eigen_chunk);
        e->alloc_jvp(kGradB);
        e->jvp(d.Q.data(), d.K.data(), d.dQ.data(), d.dK.data(), kGradB);
        out.push_back({"jvp y    ctrec vs eigen", rel_diff(j->y, e->out.data()), tol});
        out.push_back({"jvp dy   ctrec vs eigen", rel_diff(j->ty, e->tout.data()), tol});
        constexpr int Bf = 2;
        constexpr float eps = 1e-3f;
        M::parameters pp, pm;
        load_params(pp, false), load_params(pm, false);
        auto shift = [&](M::parameters& p, float sgn) {
            auto add = [&](const char* name, const avec& t) {
                auto v = p.get(M::parameters::position(name));
                for (std::size_t i = 0; i < v.size(); ++i) v[i] += sgn * t[i];
            };
            add("din/compress_tower/dense_0/kernel", d.dW0), add("din/compress_tower/dense_0/bias", d.db0);
            add("din/compress_tower/dense_1/kernel", d.dW1), add("din/compress_tower/dense_1/bias", d.db1);
            add("din/compress_tower/dense_2/kernel", d.dW2), add("din/compress_tower/dense_2/bias", d.db2);
        };
        shift(pp, eps), shift(pm, -eps);
        avec qp(std::size_t(Bf) * H), qm(qp.size()), kp(std::size_t(Bf) * T * H), km(kp.size());
        for (std::size_t i = 0; i < qp.size(); ++i) qp[i] = d.Q[i] + eps * d.dQ[i], qm[i] = d.Q[i] - eps * d.dQ[i];
        for (std::size_t i = 0; i < kp.size(); ++i) kp[i] = d.K[i] + eps * d.dK[i], km[i] = d.K[i] - eps * d.dK[i];
        avec yp(std::size_t(Bf) * H), ym(yp.size()), fd(yp.size());
        M::workspace ws;
        M::io iop, iom;
        iop.input<"q">(qp.data()).input<"k">(kp.data()).output<0>(yp.data());
        iom.input<"q">(qm.data()).input<"k">(km.data()).output<0>(ym.data());
        pp.prepare(), pm.prepare();
        M::run(std::as_const(pp), ws, Bf, iop);
        M::run(std::as_const(pm), ws, Bf, iom);
        for (std::size_t i = 0; i < fd.size(); ++i) fd[i] = (yp[i] - ym[i]) / (2 * eps);
        out.push_back({"jvp dy   eigen vs finite diff (B=2)", rel_diff(e->tout.data(), fd.data(), fd.size()), 1e-2});
    }
    return out;
}

void register_all() {
    auto reg = [](const std::string& name, void (*fn)(benchmark::State&), std::int64_t B) {
        benchmark::RegisterBenchmark(name.c_str(), fn)->Arg(B)->UseManualTime()->Unit(benchmark::kMicrosecond);
    };
    for (std::int64_t B : {1, 64, 1024}) {
        reg("W4/fwd/ctrec", BM_ctrec_fwd, B);
        reg("W4/fwd/eigen", BM_eigen_fwd, B);
#if defined(CTREC_BENCH_HAVE_TORCH)
        reg("W4/fwd/torch", BM_torch_fwd, B);
#endif
    }
    reg("W4/fwdbwd/ctrec", BM_ctrec_fwdbwd, kGradB);
    reg("W4/fwdbwd/eigen", BM_eigen_fwdbwd, kGradB);
#if defined(CTREC_BENCH_HAVE_TORCH)
    reg("W4/fwdbwd/torch", BM_torch_fwdbwd, kGradB);
#endif
    reg("W4/jvp/ctrec", BM_ctrec_jvp, kGradB);
    reg("W4/jvp/eigen", BM_eigen_jvp, kGradB);
}

}  // namespace

int main(int argc, char** argv) {
    bench::force_single_thread(argc, argv);
#if defined(CTREC_BENCH_HAVE_TORCH)
    at::set_num_threads(1);
    at::set_num_interop_threads(1);
#endif
    Eigen::setNbThreads(1);

    // --peak_gflops=X overrides the in-process measurement; --eigen_chunk=C sets the examples
    // per Eigen chunk (default 8)
    std::string peak_source = "measured in-process (FMA chains, bench_common.hpp)";
    for (int i = 1; i < argc; ++i) {
        bool ours = true;
        if (std::strncmp(argv[i], "--peak_gflops=", 14) == 0) {
            g_peak = std::atof(argv[i] + 14) * 1e9;
            peak_source = "given (--peak_gflops)";
        } else if (std::strncmp(argv[i], "--eigen_chunk=", 14) == 0) {
            g_eigen_chunk = std::max(1, std::atoi(argv[i] + 14));
        } else {
            ours = false;
        }
        if (ours) {
            for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
            --argc;
            --i;
        }
    }
    if (g_peak <= 0) g_peak = bench::measure_fma_peak(0.3);

    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    std::fprintf(stderr, "W4 DIN: FP32 peak %.1f GFLOP/s (%s), Eigen chunk %d examples\nW4 DIN: ctrec form: %s\n",
                 g_peak / 1e9, peak_source.c_str(), g_eigen_chunk, w4::form);
    bool ok = true;
    double worst = 0;
    for (const Check& c : verify()) {
        const bool pass = std::isfinite(c.diff) && c.diff <= c.tol;
        ok = ok && pass;
        worst = std::max(worst, c.diff);
        std::fprintf(stderr, "  verify %-40s rel max diff %.3g %s\n", c.what.c_str(), c.diff, pass ? "ok" : "MISMATCH");
        benchmark::AddCustomContext("verify " + c.what, std::to_string(c.diff));
    }
    benchmark::AddCustomContext("fp32_peak_gflops", std::to_string(g_peak / 1e9));
    benchmark::AddCustomContext("peak_source", peak_source);
    benchmark::AddCustomContext("verify", ok ? "ok" : "MISMATCH");
    benchmark::AddCustomContext("verify_worst_diff", std::to_string(worst));
    benchmark::AddCustomContext("eigen_chunk", std::to_string(g_eigen_chunk));
    benchmark::AddCustomContext("ctrec_form", w4::form);
    benchmark::AddCustomContext("xsimd_arch", xsimd::default_arch::name());
#if defined(CTREC_BENCH_HAVE_TORCH)
    benchmark::AddCustomContext("torch_threads", std::to_string(at::get_num_threads()));
    {
        const char* core = bench::openblas_core();
        std::string c = core ? core : "n/a";
        if (const char* det = std::getenv("CTREC_BENCH_OPENBLAS_DETECTED"))
            c += std::string(" (OPENBLAS_CORETYPE set by the benchmark; OpenBLAS detected ") + det + ")";
        benchmark::AddCustomContext("openblas_core", c);
        std::fprintf(stderr, "W4 DIN: LibTorch threads %d, OpenBLAS core %s\n", at::get_num_threads(), c.c_str());
    }
#else
    benchmark::AddCustomContext("torch_threads", "n/a (built without LibTorch)");
#endif
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
