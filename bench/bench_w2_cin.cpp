// Workload W2 (bench/WORKLOADS.md): CIN of xDeepFM, N = 39 fields, K = 16 embedding dims,
// hidden layer sizes [128, 128], direct connections, sum over K, output 128 + 128 = 256 per
// example; identity activation (Monolith's default); float32, one thread.
//
//   W2/fwd/<impl>/<B>     forward, B in {1, 64, 1024}; impl: ctrec, eigen, torch
//   W2/fwdbwd/<impl>/64   forward + reverse-mode gradient w.r.t. x and every parameter
//   W2/jvp/<impl>/64      forward + forward-mode directional derivative (ctrec, eigen)
//
// ctrec: layers::cin (include/ctrec/layers/cin.hpp; its comment says how it runs).
//
// The math (per example; x is (N, K) row-major; include/ctrec/layers/cin.hpp):
//   X0 = x^T (K x N), X^0 = X0; for layer t (Hp = 39, then 128 maps in; Ht = 128 out):
//   Y_t[d, j] = sum_{h,m} X^t[d, h] X0[d, m] W_t[h * N + m, j] + b_t[j],  X^{t+1} = Y_t,
//   p_t[j] = sum_d Y_t[d, j], output concat(p_0, p_1).
// W_t is the ctrec kernel "cin/conv1d{,_1}/kernel" (1, Hp * N, Ht), row-major.
//
// Every implementation uses the same weights and inputs; main() checks once that their
// outputs and gradients agree (relative max diffs printed, and in the JSON context).
//
// Counters: flops (FLOP/s), peak_frac (flops / the FP32 FMA peak measured in-process at
// start-up, or --peak_gflops=X), p50_us / p99_us (per-iteration latency percentiles within
// one run), items_per_second (examples/s). Times are manual (steady_clock around each call).
// FLOP counts per example (bench/ROOFLINE.md):
//   forward: sum over the layers of K Hp N (outer product) + 2 K Hp N Ht (GEMM) + 3 K Ht
//            (bias, pooling) = 26.79 MFLOP;
//   forward+backward: 3x the GEMM FLOPs (forward, dW = Z^T dY, dZ = dY W^T, as frameworks
//            count it) = 3 x 26.68 = 80.03 MFLOP; the outer products and the reductions
//            that turn dZ into dX are not counted;
//   JVP: 3x the GEMM FLOPs (Z W, dZ W, Z dW) = 80.03 MFLOP.
//
//   ./bench_w2_cin --benchmark_min_time=0.2 [--peak_gflops=117] [--eigen_chunk=4]
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
#include <utility>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/cin.hpp"

#if defined(CTREC_BENCH_HAVE_TORCH)
#include <ATen/Parallel.h>
#include <torch/torch.h>
#endif

#include "bench_common.hpp"

namespace {
using bench::g_peak;
using bench::lcg;
using bench::timed;

// ---- the model ----------------------------------------------------------------------------
constexpr int N = 39, K = 16, H0 = 128, H1 = 128, OUT = H0 + H1;
constexpr int NN = N * N, HN = H0 * N;  // input channels of the two layers: 1521, 4992

namespace w2 {
using namespace ctrec;
constexpr auto x = input<"x", N, K>;
constexpr auto r = layers::cin<"cin", layers::cin_config<2>{.hidden_uints = {128, 128}}>(x);
constexpr auto out = r.out();
}  // namespace w2

using M = ctrec::program<float, w2::out>;
using G = ctrec::grad_program<float, w2::out>;
using J = ctrec::jvp_program<float, w2::out>;

constexpr int kMaxB = 1024, kGradB = 64;
constexpr double kFlopGemm = 2.0 * K * (double(NN) * H0 + double(HN) * H1);  // 26,677,248
constexpr double kFlopFwd = double(K) * NN + 2.0 * K * NN * H0 + 3.0 * K * H0 +  // layer 0
                            double(K) * HN + 2.0 * K * HN * H1 + 3.0 * K * H1;   // layer 1: 26,793,744
constexpr double kFlopFwdBwd = 3.0 * kFlopGemm;
constexpr double kFlopJvp = 3.0 * kFlopGemm;

int g_eigen_chunk = 4;  // examples per Eigen chunk (64 rows of Z)

// ---- shared data: weights, tangents, inputs, cotangent ---------------------------------------

using avec = std::vector<float, Eigen::aligned_allocator<float>>;  // 64-byte aligned

struct Data {
    avec W0, b0, W1, b1;      // W0 (N*N, H0), W1 (H0*N, H1), row-major: the ctrec kernels
    avec dW0, db0, dW1, db1;  // JVP tangents
    avec X, dX;               // kMaxB x N x K
    avec cot;                 // kGradB x 256
    Data() {
        lcg r{42};
        auto fill = [&](avec& v, std::size_t n, float scale) {
            v.resize(n);
            for (auto& e : v) e = scale * r.next();
        };
        // glorot_uniform with Conv1D fans (the layer's initializer); small non-zero biases so
        // that the checks see them
        fill(W0, std::size_t(NN) * H0, std::sqrt(6.f / float(NN + H0))), fill(b0, H0, 0.1f);
        fill(W1, std::size_t(HN) * H1, std::sqrt(6.f / float(HN + H1))), fill(b1, H1, 0.1f);
        fill(dW0, std::size_t(NN) * H0, 0.01f), fill(db0, H0, 0.01f);
        fill(dW1, std::size_t(HN) * H1, 0.01f), fill(db1, H1, 0.01f);
        fill(X, std::size_t(kMaxB) * N * K, 1.f);
        fill(dX, std::size_t(kMaxB) * N * K, 0.1f);
        fill(cot, std::size_t(kGradB) * OUT, 1.f / kGradB);
    }
};
const Data& data() {
    static const Data d;
    return d;
}

// ============================================ ctrec ============================================
template <class Params>
void load_params(Params& p, bool tangents) {
    const Data& d = data();
    p.set("cin/conv1d/kernel", d.W0), p.set("cin/conv1d/bias", d.b0);
    p.set("cin/conv1d_1/kernel", d.W1), p.set("cin/conv1d_1/bias", d.b1);
    if (tangents) {
        p.set("d.cin/conv1d/kernel", d.dW0), p.set("d.cin/conv1d/bias", d.db0);
        p.set("d.cin/conv1d_1/kernel", d.dW1), p.set("d.cin/conv1d_1/bias", d.db1);
    }
}

template <class Mp>
struct FwdOf {
    typename Mp::parameters p;
    typename Mp::workspace ws;
    avec y;
    typename Mp::io io;
    explicit FwdOf(std::size_t B) : y(B * OUT) {
        load_params(p, false);
        p.prepare();
        io.template input<"x">(data().X.data()).template output<0>(y.data());
    }
    // scoring: parameters prepared once and read through a const reference, as in serving
    void run(std::size_t B) { Mp::run(std::as_const(p), ws, B, io); }
};
using CtrecFwd = FwdOf<M>;

template <class Gp>  // every output bound
struct GradOf {
    typename Gp::parameters p;
    typename Gp::workspace ws;
    avec y, dx, dW0, db0, dW1, db1;
    typename Gp::io io;
    explicit GradOf(std::size_t B)
        : y(B * OUT), dx(B * N * K), dW0(std::size_t(NN) * H0), db0(H0), dW1(std::size_t(HN) * H1), db1(H1) {
        load_params(p, false);
        io.template input<"x">(data().X.data()).template input<"cotangent">(data().cot.data());
        io.template output<0>(y.data())
            .template output<Gp::template grad<"x">>(dx.data())
            .template output<Gp::template grad<"cin/conv1d/kernel">>(dW0.data())
            .template output<Gp::template grad<"cin/conv1d/bias">>(db0.data())
            .template output<Gp::template grad<"cin/conv1d_1/kernel">>(dW1.data())
            .template output<Gp::template grad<"cin/conv1d_1/bias">>(db1.data());
    }
    void run(std::size_t B) { Gp::run(p, ws, B, io); }
};
using CtrecGrad = GradOf<G>;

struct CtrecJvp {
    J::parameters p;
    J::workspace ws;
    avec y, ty;
    J::io io;
    explicit CtrecJvp(std::size_t B) : y(B * OUT), ty(B * OUT) {
        load_params(p, true);
        io.input<"x">(data().X.data()).input<"d.x">(data().dX.data()).output<0>(y.data()).output<1>(ty.data());
    }
    void run(std::size_t B) { J::run(p, ws, B, io); }
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
        benchmark::DoNotOptimize(g->dW1.data());
        benchmark::ClobberMemory();
    });
}
void BM_ctrec_jvp(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto j = std::make_unique<CtrecJvp>(B);
    timed(st, kFlopJvp * double(B), B, [&] {
        j->run(B);
        benchmark::DoNotOptimize(j->ty.data());
        benchmark::ClobberMemory();
    });
}

// ============================================ Eigen ============================================
// Written the way a careful engineer would: the batch is processed in chunks of C examples
// (default 4: 64 rows; the chunk's Z, up to 64 x 4992 floats = 1.3 MB, stays in L2 between
// its construction, its GEMM and, when training, the backward products). Per chunk and layer:
// Z (rows (b, d), columns h * N + m) built explicitly, Y = Z W as one GEMM against a row-major
// map of the same weight buffer, bias, pooling over d. Backward per chunk right after its
// forward (Z still in cache): dW += Z^T dY, db += column sums, dZ = dY W^T, then dXh[d, h] =
// sum_m dZ[d, h N + m] X0[d, m] and dX0[d, m] += sum_h dZ[d, h N + m] Xh[d, h] as per-row
// matrix-vector products; dY of the last layer and the pooled part of dY of the first are the
// output cotangent broadcast over d; layer 0 (Xh = X0) gets both contributions. Every buffer
// is allocated once (64-byte aligned); no allocation in the timed loop apart from Eigen's own
// GEMM packing buffers. B = 1 is the same code with a chunk of one example (16-row GEMMs).
// Not exploited (by any of the three): dY of the last layer is constant over d, so its dW and
// dZ products could be done per example instead of per row (16x fewer FLOPs there).
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVec = Eigen::Matrix<float, 1, Eigen::Dynamic>;
using MapM = Eigen::Map<RowMat, Eigen::Aligned64>;
using CMapM = Eigen::Map<const RowMat, Eigen::Aligned64>;
using CMapV = Eigen::Map<const RowVec, Eigen::Aligned64>;
using UMapM = Eigen::Map<RowMat>;  // rows of Z inside a buffer: not 64-byte aligned
using UCMapM = Eigen::Map<const RowMat>;

struct EigenCIN {
    int C;  // examples per chunk
    CMapM W0, W1;
    CMapV b0, b1;
    // forward, one chunk (rows = examples x K)
    avec x0, z0, y0, z1, y1;
    // backward
    avec dy0, dy1, dz0, dz1, dx0;
    RowMat gW0, gW1;
    RowVec gb0, gb1;
    // jvp
    avec tx0, tz0, ty0, tz1, ty1;
    // outputs over the whole batch
    avec out, tout, gx;

    EigenCIN(int B, int chunk)
        : C(std::max(1, std::min(chunk, B))), W0(data().W0.data(), NN, H0), W1(data().W1.data(), HN, H1),
          b0(data().b0.data(), H0), b1(data().b1.data(), H1), gW0(NN, H0), gW1(HN, H1), gb0(H0), gb1(H1) {
        const std::size_t R = std::size_t(C) * K;
        x0.resize(R * N), z0.resize(R * NN), y0.resize(R * H0), z1.resize(R * HN), y1.resize(R * H1);
        out.resize(std::size_t(B) * OUT);
    }
    void alloc_backward(int B) {
        const std::size_t R = std::size_t(C) * K;
        dy0.resize(R * H0), dy1.resize(R * H1), dz0.resize(R * NN), dz1.resize(R * HN), dx0.resize(R * N);
        gx.resize(std::size_t(B) * N * K);
    }
    void alloc_jvp(int B) {
        const std::size_t R = std::size_t(C) * K;
        tx0.resize(R * N), tz0.resize(R * NN), ty0.resize(R * H0), tz1.resize(R * HN), ty1.resize(R * H1);
        tout.resize(std::size_t(B) * OUT);
    }

    // X0 of examples [b0, b0 + nb): row b * K + d, column m
    static void load_x0(const float* x, int b0, int nb, float* dst) {
        for (int b = 0; b < nb; ++b) {
            const float* xb = x + std::size_t(b0 + b) * N * K;
            for (int d = 0; d < K; ++d)
                for (int m = 0; m < N; ++m) dst[(b * K + d) * N + m] = xb[m * K + d];
        }
    }
    // Z[r, h * N + m] = P[r, h] Q[r, m]
    static void outer(const float* P, int Hp, const float* Q, int rows, float* Z) {
        for (int r = 0; r < rows; ++r) {
            const float* q = Q + std::size_t(r) * N;
            for (int h = 0; h < Hp; ++h) {
                const float a = P[std::size_t(r) * Hp + h];
                float* z = Z + (std::size_t(r) * Hp + h) * N;
                for (int m = 0; m < N; ++m) z[m] = a * q[m];
            }
        }
    }
    // tZ[r, h * N + m] = tP[r, h] Q[r, m] + P[r, h] tQ[r, m]
    static void outer_t(const float* P, const float* tP, int Hp, const float* Q, const float* tQ, int rows, float* Z) {
        for (int r = 0; r < rows; ++r) {
            const float* q = Q + std::size_t(r) * N;
            const float* tq = tQ + std::size_t(r) * N;
            for (int h = 0; h < Hp; ++h) {
                const float a = P[std::size_t(r) * Hp + h], ta = tP[std::size_t(r) * Hp + h];
                float* z = Z + (std::size_t(r) * Hp + h) * N;
                for (int m = 0; m < N; ++m) z[m] = ta * q[m] + a * tq[m];
            }
        }
    }
    // out[b0 + b, off + j] = sum_d Y[b * K + d, j]
    static void pool(const float* y, int H, int b0, int nb, int off, float* o) {
        CMapM Y(y, nb * K, H);
        for (int b = 0; b < nb; ++b)
            Eigen::Map<RowVec>(o + std::size_t(b0 + b) * OUT + off, H).noalias() = Y.middleRows(b * K, K).colwise().sum();
    }

    void forward_chunk(const float* x, int b, int nb) {
        const int R = nb * K;
        load_x0(x, b, nb, x0.data());
        outer(x0.data(), N, x0.data(), R, z0.data());
        MapM Y0(y0.data(), R, H0);
        Y0.noalias() = CMapM(z0.data(), R, NN) * W0;
        Y0.rowwise() += b0;
        outer(y0.data(), H0, x0.data(), R, z1.data());
        MapM Y1(y1.data(), R, H1);
        Y1.noalias() = CMapM(z1.data(), R, HN) * W1;
        Y1.rowwise() += b1;
        pool(y0.data(), H0, b, nb, 0, out.data());
        pool(y1.data(), H1, b, nb, H0, out.data());
    }

    // needs forward_chunk(x, b, nb) just before
    void backward_chunk(const float* cot, int b, int nb) {
        const int R = nb * K;
        CMapM X0(x0.data(), R, N), Y0(y0.data(), R, H0);
        MapM dY1(dy1.data(), R, H1), dY0(dy0.data(), R, H0), dX0(dx0.data(), R, N);
        MapM dZ1(dz1.data(), R, HN), dZ0(dz0.data(), R, NN);
        for (int e = 0; e < nb; ++e)
            for (int d = 0; d < K; ++d) {
                const float* c = cot + std::size_t(b + e) * OUT;
                dY1.row(e * K + d) = CMapV(c + H0, H1);
                dY0.row(e * K + d) = CMapV(c, H0);  // the pooled part; dXh is added below
            }
        // layer 1: Z1 = Y0 (*) X0
        gW1.noalias() += CMapM(z1.data(), R, HN).transpose() * dY1;
        gb1 += dY1.colwise().sum();
        dZ1.noalias() = dY1 * W1.transpose();
        for (int r = 0; r < R; ++r) {
            UCMapM D(dz1.data() + std::size_t(r) * HN, H0, N);  // D[h, m]
            dY0.row(r).noalias() += X0.row(r) * D.transpose();  // dY0[h] += sum_m D[h, m] X0[m]
            dX0.row(r).noalias() = Y0.row(r) * D;               // dX0[m]  = sum_h D[h, m] Y0[h]
        }
        // layer 0: Z0 = X0 (*) X0, both factors are X0
        gW0.noalias() += CMapM(z0.data(), R, NN).transpose() * dY0;
        gb0 += dY0.colwise().sum();
        dZ0.noalias() = dY0 * W0.transpose();
        for (int r = 0; r < R; ++r) {
            UCMapM D(dz0.data() + std::size_t(r) * NN, N, N);
            dX0.row(r).noalias() += X0.row(r) * D.transpose();
            dX0.row(r).noalias() += X0.row(r) * D;
        }
        for (int e = 0; e < nb; ++e) {
            float* g = gx.data() + std::size_t(b + e) * N * K;
            for (int d = 0; d < K; ++d)
                for (int m = 0; m < N; ++m) g[m * K + d] = dx0[std::size_t(e * K + d) * N + m];
        }
    }

    void jvp_chunk(const float* x, const float* dx, int b, int nb) {
        const Data& dd = data();
        const int R = nb * K;
        CMapM dW0(dd.dW0.data(), NN, H0), dW1(dd.dW1.data(), HN, H1);
        CMapV db0(dd.db0.data(), H0), db1(dd.db1.data(), H1);
        load_x0(x, b, nb, x0.data());
        load_x0(dx, b, nb, tx0.data());
        outer(x0.data(), N, x0.data(), R, z0.data());
        outer_t(x0.data(), tx0.data(), N, x0.data(), tx0.data(), R, tz0.data());
        CMapM Z0(z0.data(), R, NN), tZ0(tz0.data(), R, NN);
        MapM Y0(y0.data(), R, H0), tY0(ty0.data(), R, H0);
        Y0.noalias() = Z0 * W0;
        Y0.rowwise() += b0;
        tY0.noalias() = tZ0 * W0;
        tY0.noalias() += Z0 * dW0;
        tY0.rowwise() += db0;
        outer(y0.data(), H0, x0.data(), R, z1.data());
        outer_t(y0.data(), ty0.data(), H0, x0.data(), tx0.data(), R, tz1.data());
        CMapM Z1(z1.data(), R, HN), tZ1(tz1.data(), R, HN);
        MapM Y1(y1.data(), R, H1), tY1(ty1.data(), R, H1);
        Y1.noalias() = Z1 * W1;
        Y1.rowwise() += b1;
        tY1.noalias() = tZ1 * W1;
        tY1.noalias() += Z1 * dW1;
        tY1.rowwise() += db1;
        pool(y0.data(), H0, b, nb, 0, out.data());
        pool(y1.data(), H1, b, nb, H0, out.data());
        pool(ty0.data(), H0, b, nb, 0, tout.data());
        pool(ty1.data(), H1, b, nb, H0, tout.data());
    }

    void forward(const float* x, int B) {
        for (int b = 0; b < B; b += C) forward_chunk(x, b, std::min(C, B - b));
    }
    void forward_backward(const float* x, const float* cot, int B) {
        gW0.setZero(), gW1.setZero(), gb0.setZero(), gb1.setZero();
        for (int b = 0; b < B; b += C) {
            const int nb = std::min(C, B - b);
            forward_chunk(x, b, nb);
            backward_chunk(cot, b, nb);
        }
    }
    void jvp(const float* x, const float* dx, int B) {
        for (int b = 0; b < B; b += C) jvp_chunk(x, dx, b, std::min(C, B - b));
    }
};

void BM_eigen_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenCIN>(B, g_eigen_chunk);
    timed(st, kFlopFwd * B, std::size_t(B), [&] {
        m->forward(data().X.data(), B);
        benchmark::DoNotOptimize(m->out.data());
        benchmark::ClobberMemory();
    });
}
void BM_eigen_fwdbwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenCIN>(B, g_eigen_chunk);
    m->alloc_backward(B);
    timed(st, kFlopFwdBwd * B, std::size_t(B), [&] {
        m->forward_backward(data().X.data(), data().cot.data(), B);
        benchmark::DoNotOptimize(m->gW1.data());
        benchmark::ClobberMemory();
    });
}
void BM_eigen_jvp(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenCIN>(B, g_eigen_chunk);
    m->alloc_jvp(B);
    timed(st, kFlopJvp * B, std::size_t(B), [&] {
        m->jvp(data().X.data(), data().dX.data(), B);
        benchmark::DoNotOptimize(m->tout.data());
        benchmark::ClobberMemory();
    });
}

// =========================================== LibTorch ==========================================
#if defined(CTREC_BENCH_HAVE_TORCH)
// The C++ frontend as users write xDeepFM's CIN in PyTorch: x (B, N, K); per layer the
// outer product z = (xh.unsqueeze(2) * x0.unsqueeze(1)).reshape({B, Hp * N, K}), then
// y = matmul(Wt, z) + bias, Wt (Ht, Hp * N) the transposed ctrec kernel: the same computation
// as the usual Conv1d(Hp * N, Ht, kernel_size = 1), written as the batched matmul it is;
// pooled y.sum(2), concat. One thread; InferenceMode for the forward, autograd for the
// gradients.
struct TorchCIN {
    torch::Tensor W0t, b0, W1t, b1;
    explicit TorchCIN(bool requires_grad) {
        const Data& d = data();
        auto kernel_t = [](const avec& W, int in, int out) {
            return torch::from_blob(const_cast<float*>(W.data()), {in, out}, torch::kFloat32).t().contiguous();
        };
        auto vec = [](const avec& v) {
            return torch::from_blob(const_cast<float*>(v.data()), {std::int64_t(v.size())}, torch::kFloat32).clone();
        };
        W0t = kernel_t(d.W0, NN, H0), b0 = vec(d.b0), W1t = kernel_t(d.W1, HN, H1), b1 = vec(d.b1);
        if (requires_grad)
            for (auto* t : {&W0t, &b0, &W1t, &b1}) t->requires_grad_(true);
    }
    torch::Tensor forward(const torch::Tensor& x0) const {  // (B, N, K) -> (B, 256)
        const std::int64_t B = x0.size(0);
        auto layer = [&](const torch::Tensor& xh, const torch::Tensor& Wt, const torch::Tensor& b) {
            auto z = (xh.unsqueeze(2) * x0.unsqueeze(1)).reshape({B, xh.size(1) * N, K});
            return torch::matmul(Wt, z) + b.view({1, -1, 1});
        };
        auto y0 = layer(x0, W0t, b0);
        auto y1 = layer(y0, W1t, b1);
        return torch::cat({y0.sum(2), y1.sum(2)}, 1);
    }
    void zero_grad() {
        for (auto* t : {&W0t, &b0, &W1t, &b1}) t->mutable_grad() = torch::Tensor();
    }
};

torch::Tensor torch_input(int B) {
    return torch::from_blob(const_cast<float*>(data().X.data()), {B, N, K}, torch::kFloat32);
}

void BM_torch_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    const TorchCIN m(false);
    auto x = torch_input(B);
    c10::InferenceMode guard;
    timed(st, kFlopFwd * B, std::size_t(B), [&] {
        auto y = m.forward(x);
        benchmark::DoNotOptimize(y.data_ptr());
        benchmark::ClobberMemory();
    });
}
void BM_torch_fwdbwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    TorchCIN m(true);
    auto x = torch_input(B).clone().requires_grad_(true);
    auto cot = torch::from_blob(const_cast<float*>(data().cot.data()), {B, OUT}, torch::kFloat32);
    timed(st, kFlopFwdBwd * B, std::size_t(B), [&] {
        m.zero_grad();
        x.mutable_grad() = torch::Tensor();
        auto y = m.forward(x);
        y.backward(cot);
        benchmark::DoNotOptimize(m.W1t.grad().data_ptr());
        benchmark::DoNotOptimize(x.grad().data_ptr());
        benchmark::ClobberMemory();
    });
}
#endif

// ========================================= verification ========================================
// max |a - b| / max |a|: the outputs are sums of thousands of products, so a relative measure
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
    // forward, B = 1 and 64
    for (int B : {1, kGradB}) {
        const std::string b = " (B=" + std::to_string(B) + ")";
        const std::size_t n = std::size_t(B) * OUT;
        auto c = std::make_unique<CtrecFwd>(B);
        c->run(B);
        EigenCIN e(B, g_eigen_chunk);
        e.forward(d.X.data(), B);
        out.push_back({"fwd y    ctrec vs eigen" + b, rel_diff(c->y.data(), e.out.data(), n), tol});
#if defined(CTREC_BENCH_HAVE_TORCH)
        const TorchCIN m(false);
        c10::InferenceMode guard;
        auto yt = m.forward(torch_input(B)).contiguous();
        out.push_back({"fwd y    ctrec vs torch" + b, rel_diff(c->y.data(), yt.data_ptr<float>(), n), tol});
#endif
    }
    // gradients, B = 64
    {
        auto g = std::make_unique<CtrecGrad>(kGradB);
        g->run(kGradB);
        auto e = std::make_unique<EigenCIN>(kGradB, g_eigen_chunk);
        e->alloc_backward(kGradB);
        e->forward_backward(d.X.data(), d.cot.data(), kGradB);
        out.push_back({"grad y   ctrec vs eigen", rel_diff(g->y, e->out.data()), tol});
        out.push_back({"grad dx  ctrec vs eigen", rel_diff(g->dx, e->gx.data()), tol});
        out.push_back({"grad dW0 ctrec vs eigen", rel_diff(g->dW0, e->gW0.data()), tol});
        out.push_back({"grad db0 ctrec vs eigen", rel_diff(g->db0, e->gb0.data()), tol});
        out.push_back({"grad dW1 ctrec vs eigen", rel_diff(g->dW1, e->gW1.data()), tol});
        out.push_back({"grad db1 ctrec vs eigen", rel_diff(g->db1, e->gb1.data()), tol});
#if defined(CTREC_BENCH_HAVE_TORCH)
        TorchCIN m(true);
        auto x = torch_input(kGradB).clone().requires_grad_(true);
        auto cot = torch::from_blob(const_cast<float*>(d.cot.data()), {kGradB, OUT}, torch::kFloat32);
        m.forward(x).backward(cot);
        auto tW0 = m.W0t.grad().t().contiguous();  // (in, out) like ctrec
        auto tW1 = m.W1t.grad().t().contiguous();
        auto tdx = x.grad().contiguous();
        out.push_back({"grad dx  ctrec vs torch", rel_diff(g->dx, tdx.data_ptr<float>()), tol});
        out.push_back({"grad dW0 ctrec vs torch", rel_diff(g->dW0, tW0.data_ptr<float>()), tol});
        out.push_back({"grad dW1 ctrec vs torch", rel_diff(g->dW1, tW1.data_ptr<float>()), tol});
#endif
    }
    // JVP, B = 64: against the Eigen JVP, and that against a central difference in double
    // (f is quadratic in x and W0, cubic overall, so the central difference is exact up to
    // an O(eps^2) term and rounding)
    {
        auto j = std::make_unique<CtrecJvp>(kGradB);
        j->run(kGradB);
        auto e = std::make_unique<EigenCIN>(kGradB, g_eigen_chunk);
        e->alloc_jvp(kGradB);
        e->jvp(d.X.data(), d.dX.data(), kGradB);
        out.push_back({"jvp y    ctrec vs eigen", rel_diff(j->y, e->out.data()), tol});
        out.push_back({"jvp dy   ctrec vs eigen", rel_diff(j->ty, e->tout.data()), tol});
        // finite difference on 2 examples through the ctrec forward (float: eps 1e-2 on
        // tangents of size <= 0.1, i.e. a step of ~1e-3 relative; error O(eps^2))
        constexpr int Bf = 2;
        constexpr float eps = 1e-2f;
        M::parameters pp, pm;
        load_params(pp, false), load_params(pm, false);
        auto shift = [&](M::parameters& p, float s) {
            auto add = [&](const char* name, const avec& t) {
                auto v = p.get(M::parameters::position(name));
                for (std::size_t i = 0; i < v.size(); ++i) v[i] += s * t[i];
            };
            add("cin/conv1d/kernel", d.dW0), add("cin/conv1d/bias", d.db0);
            add("cin/conv1d_1/kernel", d.dW1), add("cin/conv1d_1/bias", d.db1);
        };
        shift(pp, eps), shift(pm, -eps);
        avec xp(std::size_t(Bf) * N * K), xm(xp.size()), yp(std::size_t(Bf) * OUT), ym(yp.size()), fd(yp.size());
        for (std::size_t i = 0; i < xp.size(); ++i) xp[i] = d.X[i] + eps * d.dX[i], xm[i] = d.X[i] - eps * d.dX[i];
        M::workspace ws;
        M::io iop, iom;
        iop.input<"x">(xp.data()).output<0>(yp.data());
        iom.input<"x">(xm.data()).output<0>(ym.data());
        M::run(pp, ws, Bf, iop);
        M::run(pm, ws, Bf, iom);
        for (std::size_t i = 0; i < fd.size(); ++i) fd[i] = (yp[i] - ym[i]) / (2 * eps);
        out.push_back({"jvp dy   ctrec vs finite diff (B=2)", rel_diff(j->ty.data(), fd.data(), fd.size()), 2e-3});
    }
    return out;
}

void register_all() {
    auto reg = [](const std::string& name, void (*fn)(benchmark::State&), std::int64_t B) {
        benchmark::RegisterBenchmark(name.c_str(), fn)->Arg(B)->UseManualTime()->Unit(benchmark::kMicrosecond);
    };
    for (std::int64_t B : {1, 64, 1024}) {
        reg("W2/fwd/ctrec", BM_ctrec_fwd, B);
        reg("W2/fwd/eigen", BM_eigen_fwd, B);
#if defined(CTREC_BENCH_HAVE_TORCH)
        reg("W2/fwd/torch", BM_torch_fwd, B);
#endif
    }
    reg("W2/fwdbwd/ctrec", BM_ctrec_fwdbwd, kGradB);
    reg("W2/fwdbwd/eigen", BM_eigen_fwdbwd, kGradB);
#if defined(CTREC_BENCH_HAVE_TORCH)
    reg("W2/fwdbwd/torch", BM_torch_fwdbwd, kGradB);
#endif
    reg("W2/jvp/ctrec", BM_ctrec_jvp, kGradB);
    reg("W2/jvp/eigen", BM_eigen_jvp, kGradB);
}

}  // namespace

int main(int argc, char** argv) {
    bench::force_single_thread(argc, argv);
#if defined(CTREC_BENCH_HAVE_TORCH)
    at::set_num_threads(1);
    at::set_num_interop_threads(1);
#endif
    Eigen::setNbThreads(1);

    // --peak_gflops=X overrides the in-process measurement (e.g. 117, bench/ROOFLINE.md);
    // --eigen_chunk=C sets the examples per Eigen chunk (default 4)
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

    std::fprintf(stderr, "W2 CIN: FP32 peak %.1f GFLOP/s (%s), Eigen chunk %d examples\n", g_peak / 1e9,
                 peak_source.c_str(), g_eigen_chunk);
    bool ok = true;
    double worst = 0;
    for (const Check& c : verify()) {
        const bool pass = std::isfinite(c.diff) && c.diff <= c.tol;
        ok = ok && pass;
        worst = std::max(worst, c.diff);
        std::fprintf(stderr, "  verify %-36s rel max diff %.3g %s\n", c.what.c_str(), c.diff, pass ? "ok" : "MISMATCH");
        benchmark::AddCustomContext("verify " + c.what, std::to_string(c.diff));
    }
    benchmark::AddCustomContext("fp32_peak_gflops", std::to_string(g_peak / 1e9));
    benchmark::AddCustomContext("peak_source", peak_source);
    benchmark::AddCustomContext("verify", ok ? "ok" : "MISMATCH");
    benchmark::AddCustomContext("verify_worst_diff", std::to_string(worst));
    benchmark::AddCustomContext("eigen_chunk", std::to_string(g_eigen_chunk));
    benchmark::AddCustomContext("xsimd_arch", xsimd::default_arch::name());
#if defined(CTREC_BENCH_HAVE_TORCH)
    benchmark::AddCustomContext("torch_threads", std::to_string(at::get_num_threads()));
    {
        const char* core = bench::openblas_core();
        std::string c = core ? core : "n/a";
        if (const char* det = std::getenv("CTREC_BENCH_OPENBLAS_DETECTED"))
            c += std::string(" (OPENBLAS_CORETYPE set by the benchmark; OpenBLAS detected ") + det + ")";
        benchmark::AddCustomContext("openblas_core", c);
        std::fprintf(stderr, "W2 CIN: LibTorch threads %d, OpenBLAS core %s\n", at::get_num_threads(), c.c_str());
    }
#else
    benchmark::AddCustomContext("torch_threads", "n/a (built without LibTorch)");
#endif
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
