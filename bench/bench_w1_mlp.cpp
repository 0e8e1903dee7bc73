// Workload W1 (bench/WORKLOADS.md): MLP tower 256 -> 512 -> 256 -> 128 -> 1, relu between,
// sigmoid at the end, float32, one thread.
//
//   W1/fwd/<impl>/<B>     forward, B in {1, 64, 1024}; impl: ctrec, ctrec_wn (the same tower
//                         with Monolith's default weight norm, folded by prepare()), eigen, torch
//   W1/fwdbwd/<impl>/64   forward + reverse-mode gradient w.r.t. x and every parameter
//   W1/jvp/<impl>/64      forward + forward-mode directional derivative (ctrec, eigen)
//
// Every implementation uses the same weights and inputs; main() checks once that their
// outputs and gradients agree (max abs diff printed, and in the JSON context).
//
// Counters: flops (FLOP/s, GEMM FLOPs only: 0.59 MFLOP per example forward, 3x that for
// forward+backward and for the JVP), peak_frac (flops / the FP32 FMA peak measured in-process
// at start-up, or --peak_gflops=X), p50_us / p99_us (per-iteration latency percentiles
// within one run), items_per_second (examples/s). Times are manual (steady_clock around
// each call).
//
//   ./bench_w1_mlp --benchmark_min_time=0.2 [--peak_gflops=117]
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
#include "ctrec/layers/mlp.hpp"

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
namespace w1 {
using namespace ctrec;
constexpr auto x = input<"x", 256>;
// W1 from the MLP layer: relu between the layers, none on the last (the MLP default), and a
// sigmoid on top. Weight norm off, so the baselines compute the same function.
constexpr layers::mlp_config<4> cfg{.output_dims = {512, 256, 128, 1}, .use_weight_norm = false};
constexpr auto tower = layers::mlp<"mlp", cfg, layers::mode::predict>(x);
constexpr auto y = sigmoid(tower.out());
// The same tower with Monolith's default weight norm (learnable per-unit scale): its
// effective kernels are derived parameters, folded once by prepare(), so scoring costs the same.
constexpr auto tower_wn = layers::mlp<"mlp", layers::mlp_config<4>{.output_dims = {512, 256, 128, 1}}, layers::mode::predict>(x);
constexpr auto y_wn = sigmoid(tower_wn.out());
}  // namespace w1

using M = ctrec::program<float, w1::y>;
using MWN = ctrec::program<float, w1::y_wn>;
using G = ctrec::grad_program<float, w1::y>;
using J = ctrec::jvp_program<float, w1::y>;

constexpr int D0 = 256, D1 = 512, D2 = 256, D3 = 128;
constexpr int kMaxB = 1024, kGradB = 64;
constexpr double kFlopFwd = 2.0 * (double(D0) * D1 + double(D1) * D2 + double(D2) * D3 + double(D3) * 1);  // 590080
constexpr double kFlopFwdBwd = 3.0 * kFlopFwd;  // forward + dX and dW products of every layer
constexpr double kFlopJvp = 3.0 * kFlopFwd;     // forward + (dh W + h dW) per layer


// ---- shared data: weights, tangents, inputs, cotangent ---------------------------------------

// 64-byte aligned, like ctrec's parameter block and Eigen's own matrices (AVX-512 loads that
// straddle cache lines make the L2-bound B = 1 GEMVs up to ~2x slower).
using avec = std::vector<float, Eigen::aligned_allocator<float>>;

struct Data {
    // row-major W[k * N + n], as in the ctrec parameters
    avec W1, b1, W2, b2, W3, b3, W4, b4;
    avec dW1, db1, dW2, db2, dW3, db3, dW4, db4;  // JVP tangents
    avec X, dX;                                   // kMaxB x 256
    avec cot;                                     // kGradB x 1, all 1/B
    Data() {
        lcg r{42};
        auto fill = [&](avec& v, std::size_t n, float scale) {
            v.resize(n);
            for (auto& e : v) e = scale * r.next();
        };
        // PyTorch's default Linear init range: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        fill(W1, D0 * D1, 1.f / std::sqrt(float(D0))), fill(b1, D1, 1.f / std::sqrt(float(D0)));
        fill(W2, D1 * D2, 1.f / std::sqrt(float(D1))), fill(b2, D2, 1.f / std::sqrt(float(D1)));
        fill(W3, D2 * D3, 1.f / std::sqrt(float(D2))), fill(b3, D3, 1.f / std::sqrt(float(D2)));
        fill(W4, D3 * 1, 1.f / std::sqrt(float(D3))), fill(b4, 1, 1.f / std::sqrt(float(D3)));
        fill(dW1, D0 * D1, 0.01f), fill(db1, D1, 0.01f), fill(dW2, D1 * D2, 0.01f), fill(db2, D2, 0.01f);
        fill(dW3, D2 * D3, 0.01f), fill(db3, D3, 0.01f), fill(dW4, D3, 0.01f), fill(db4, 1, 0.01f);
        fill(X, std::size_t(kMaxB) * D0, 1.f);
        fill(dX, std::size_t(kMaxB) * D0, 0.1f);
        cot.assign(kGradB, 1.f / kGradB);
    }
};
const Data& data() {
    static const Data d;
    return d;
}

// ============================================ ctrec ============================================
template <class Params>
void load_params(Params& p, bool tangents) {
    using P = Params;
    const Data& d = data();
    p.set("mlp/dense_0/kernel", d.W1), p.set("mlp/dense_0/bias", d.b1), p.set("mlp/dense_1/kernel", d.W2), p.set("mlp/dense_1/bias", d.b2);
    p.set("mlp/dense_2/kernel", d.W3), p.set("mlp/dense_2/bias", d.b3), p.set("mlp/dense_3/kernel", d.W4), p.set("mlp/dense_3/bias", d.b4);
    if (tangents) {
        p.set("d.mlp/dense_0/kernel", d.dW1), p.set("d.mlp/dense_0/bias", d.db1), p.set("d.mlp/dense_1/kernel", d.dW2), p.set("d.mlp/dense_1/bias", d.db2);
        p.set("d.mlp/dense_2/kernel", d.dW3), p.set("d.mlp/dense_2/bias", d.db3), p.set("d.mlp/dense_3/kernel", d.dW4), p.set("d.mlp/dense_3/bias", d.db4);
    }
    // weight-normalised tower: per-unit norms = the kernel's column norms, so W_eff = W
    auto norms = [&](std::string_view kernel, std::string_view norm) {
        if (P::position(norm) == P::count) return;
        auto k = p.get(P::position(kernel));
        auto g = p.get(P::position(norm));
        for (std::size_t j = 0; j < g.size(); ++j) {
            double s = 0;
            for (std::size_t i = 0; i < k.size() / g.size(); ++i) s += double(k[i * g.size() + j]) * k[i * g.size() + j];
            g[j] = float(std::sqrt(s));
        }
    };
    norms("mlp/dense_0/kernel", "mlp/dense_0/trainable_kernel_norm");
    norms("mlp/dense_1/kernel", "mlp/dense_1/trainable_kernel_norm");
    norms("mlp/dense_2/kernel", "mlp/dense_2/trainable_kernel_norm");
    norms("mlp/dense_3/kernel", "mlp/dense_3/trainable_kernel_norm");
}

template <class Gp>
struct GradOf {  // every output of a grad program, bound
    typename Gp::parameters p;
    typename Gp::workspace ws;
    avec y, dx, dW1, db1, dW2, db2, dW3, db3, dW4, db4;
    typename Gp::io io;
    explicit GradOf(std::size_t B)
        : y(B), dx(B * D0), dW1(D0 * D1), db1(D1), dW2(D1 * D2), db2(D2), dW3(D2 * D3), db3(D3), dW4(D3), db4(1) {
        load_params(p, false);
        io.template input<"x">(data().X.data()).template input<"cotangent">(data().cot.data());
        io.template output<0>(y.data())
            .template output<Gp::template grad<"x">>(dx.data())
            .template output<Gp::template grad<"mlp/dense_0/kernel">>(dW1.data())
            .template output<Gp::template grad<"mlp/dense_0/bias">>(db1.data())
            .template output<Gp::template grad<"mlp/dense_1/kernel">>(dW2.data())
            .template output<Gp::template grad<"mlp/dense_1/bias">>(db2.data())
            .template output<Gp::template grad<"mlp/dense_2/kernel">>(dW3.data())
            .template output<Gp::template grad<"mlp/dense_2/bias">>(db3.data())
            .template output<Gp::template grad<"mlp/dense_3/kernel">>(dW4.data())
            .template output<Gp::template grad<"mlp/dense_3/bias">>(db4.data());
    }
    void run(std::size_t B) { Gp::run(p, ws, B, io); }
};

using CtrecGrad = GradOf<G>;

struct CtrecJvp {
    J::parameters p;
    J::workspace ws;
    avec y, ty;
    J::io io;
    explicit CtrecJvp(std::size_t B) : y(B), ty(B) {
        load_params(p, true);
        io.input<"x">(data().X.data()).input<"d.x">(data().dX.data()).output<0>(y.data()).output<1>(ty.data());
    }
    void run(std::size_t B) { J::run(p, ws, B, io); }
};

// Scoring: parameters prepared once and read through a const reference, as in serving.
template <class P>
void ctrec_fwd(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto p = std::make_unique<typename P::parameters>();
    load_params(*p, false);
    p->prepare();
    const typename P::parameters& cp = *p;
    auto ws = std::make_unique<typename P::workspace>();
    avec y(B);
    typename P::io io;
    io.template input<"x">(data().X.data()).template output<0>(y.data());
    timed(st, kFlopFwd * double(B), B, [&] {
        P::run(cp, *ws, B, io);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    });
}
void BM_ctrec_fwd(benchmark::State& st) { ctrec_fwd<M>(st); }
// weight-normalised tower (kernel norms set to the column norms: the same function as W1)
void BM_ctrec_wn_fwd(benchmark::State& st) { ctrec_fwd<MWN>(st); }
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
// Written the way a careful engineer would: batch-major row-major activations (so the input
// and weight buffers are used in place, no copies), row-major weights (the layout measured
// fastest here among row/col-major choices, within a few %), noalias products into buffers
// allocated once, bias + relu as one fused coefficient-wise pass, fixed-size row vectors at
// B = 1 (GEMV), no allocation in the timed loop.
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVec = Eigen::Matrix<float, 1, Eigen::Dynamic>;
using ColVec = Eigen::Matrix<float, Eigen::Dynamic, 1>;
template <class Mat>
using AMap = Eigen::Map<const Mat, Eigen::Aligned64>;  // the Data buffers are 64-byte aligned

struct EigenWeights {
    AMap<RowMat> W1, W2, W3;
    AMap<ColVec> w4;
    AMap<RowVec> b1, b2, b3;
    float b4;
    EigenWeights()
        : W1(data().W1.data(), D0, D1), W2(data().W2.data(), D1, D2), W3(data().W3.data(), D2, D3),
          w4(data().W4.data(), D3), b1(data().b1.data(), D1), b2(data().b2.data(), D2), b3(data().b3.data(), D3),
          b4(data().b4[0]) {}
};

struct EigenMLP {
    EigenWeights w;
    int B;
    RowMat H1, H2, H3;  // activations (after relu), B x features
    ColVec Y;
    // backward
    RowMat dZ1, dZ2, dZ3, dX;
    ColVec dZ4;
    RowMat dW1, dW2, dW3;
    ColVec dW4;
    RowVec db1, db2, db3;
    float db4 = 0;
    // jvp
    RowMat T1, T2, T3;
    ColVec TY;

    explicit EigenMLP(int b)
        : B(b), H1(b, D1), H2(b, D2), H3(b, D3), Y(b), dZ1(b, D1), dZ2(b, D2), dZ3(b, D3), dX(b, D0), dZ4(b),
          dW1(D0, D1), dW2(D1, D2), dW3(D2, D3), dW4(D3), db1(D1), db2(D2), db3(D3), T1(b, D1), T2(b, D2),
          T3(b, D3), TY(b) {}

    void forward(const float* x) {
        AMap<RowMat> X(x, B, D0);
        H1.noalias() = X * w.W1;
        H1 = (H1.rowwise() + w.b1).cwiseMax(0.f);
        H2.noalias() = H1 * w.W2;
        H2 = (H2.rowwise() + w.b2).cwiseMax(0.f);
        H3.noalias() = H2 * w.W3;
        H3 = (H3.rowwise() + w.b3).cwiseMax(0.f);
        Y.noalias() = H3 * w.w4;
        Y = (1.f + (-(Y.array() + w.b4)).exp()).inverse().matrix();
    }

    // dL/d(everything) for the seed `cot` (B x 1); needs forward() first.
    void backward(const float* x, const float* cot) {
        AMap<RowMat> X(x, B, D0);
        AMap<ColVec> C(cot, B);
        dZ4 = (C.array() * Y.array() * (1.f - Y.array())).matrix();
        dW4.noalias() = H3.transpose() * dZ4;
        db4 = dZ4.sum();
        // relu'(z) = [z > 0] = [h > 0]
        dZ3.noalias() = dZ4 * w.w4.transpose();
        dZ3 = dZ3.cwiseProduct((H3.array() > 0.f).cast<float>().matrix());
        dW3.noalias() = H2.transpose() * dZ3;
        db3 = dZ3.colwise().sum();
        dZ2.noalias() = dZ3 * w.W3.transpose();
        dZ2 = dZ2.cwiseProduct((H2.array() > 0.f).cast<float>().matrix());
        dW2.noalias() = H1.transpose() * dZ2;
        db2 = dZ2.colwise().sum();
        dZ1.noalias() = dZ2 * w.W2.transpose();
        dZ1 = dZ1.cwiseProduct((H1.array() > 0.f).cast<float>().matrix());
        dW1.noalias() = X.transpose() * dZ1;
        db1 = dZ1.colwise().sum();
        dX.noalias() = dZ1 * w.W1.transpose();
    }

    // forward + tangent along (dx, dW, db)
    void jvp(const float* x, const float* dx) {
        const Data& d = data();
        AMap<RowMat> X(x, B, D0), dXm(dx, B, D0);
        AMap<RowMat> dW1m(d.dW1.data(), D0, D1), dW2m(d.dW2.data(), D1, D2), dW3m(d.dW3.data(), D2, D3);
        AMap<ColVec> dw4(d.dW4.data(), D3);
        AMap<RowVec> db1m(d.db1.data(), D1), db2m(d.db2.data(), D2), db3m(d.db3.data(), D3);
        H1.noalias() = X * w.W1;
        H1 = (H1.rowwise() + w.b1).cwiseMax(0.f);
        T1.noalias() = dXm * w.W1;
        T1.noalias() += X * dW1m;
        T1 = (T1.rowwise() + db1m).cwiseProduct((H1.array() > 0.f).cast<float>().matrix());
        H2.noalias() = H1 * w.W2;
        H2 = (H2.rowwise() + w.b2).cwiseMax(0.f);
        T2.noalias() = T1 * w.W2;
        T2.noalias() += H1 * dW2m;
        T2 = (T2.rowwise() + db2m).cwiseProduct((H2.array() > 0.f).cast<float>().matrix());
        H3.noalias() = H2 * w.W3;
        H3 = (H3.rowwise() + w.b3).cwiseMax(0.f);
        T3.noalias() = T2 * w.W3;
        T3.noalias() += H2 * dW3m;
        T3 = (T3.rowwise() + db3m).cwiseProduct((H3.array() > 0.f).cast<float>().matrix());
        Y.noalias() = H3 * w.w4;
        Y = (1.f + (-(Y.array() + w.b4)).exp()).inverse().matrix();
        TY.noalias() = T3 * w.w4;
        TY.noalias() += H3 * dw4;
        TY = ((TY.array() + d.db4[0]) * Y.array() * (1.f - Y.array())).matrix();
    }
};

// B = 1: fixed-size row vectors, matrix-vector products.
struct EigenMLP1 {
    EigenWeights w;
    Eigen::Matrix<float, 1, D1> h1;
    Eigen::Matrix<float, 1, D2> h2;
    Eigen::Matrix<float, 1, D3> h3;
    float y = 0;
    void forward(const float* x) {
        Eigen::Map<const Eigen::Matrix<float, 1, D0>, Eigen::Aligned64> xv(x);
        h1.noalias() = xv * w.W1;
        h1 = (h1 + w.b1).cwiseMax(0.f);
        h2.noalias() = h1 * w.W2;
        h2 = (h2 + w.b2).cwiseMax(0.f);
        h3.noalias() = h2 * w.W3;
        h3 = (h3 + w.b3).cwiseMax(0.f);
        y = 1.f / (1.f + std::exp(-(h3.dot(w.w4.transpose()) + w.b4)));
    }
};

void BM_eigen_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    const float* x = data().X.data();
    if (B == 1) {
        auto m = std::make_unique<EigenMLP1>();
        timed(st, kFlopFwd, 1, [&] {
            m->forward(x);
            benchmark::DoNotOptimize(m->y);
            benchmark::ClobberMemory();
        });
    } else {
        auto m = std::make_unique<EigenMLP>(B);
        timed(st, kFlopFwd * B, std::size_t(B), [&] {
            m->forward(x);
            benchmark::DoNotOptimize(m->Y.data());
            benchmark::ClobberMemory();
        });
    }
}
void BM_eigen_fwdbwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenMLP>(B);
    timed(st, kFlopFwdBwd * B, std::size_t(B), [&] {
        m->forward(data().X.data());
        m->backward(data().X.data(), data().cot.data());
        benchmark::DoNotOptimize(m->dW1.data());
        benchmark::ClobberMemory();
    });
}
void BM_eigen_jvp(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenMLP>(B);
    timed(st, kFlopJvp * B, std::size_t(B), [&] {
        m->jvp(data().X.data(), data().dX.data());
        benchmark::DoNotOptimize(m->TY.data());
        benchmark::ClobberMemory();
    });
}

// =========================================== LibTorch ==========================================
#if defined(CTREC_BENCH_HAVE_TORCH)
// The C++ frontend as a user writes it: torch::nn::Linear modules (weight stored (out, in),
// i.e. W^T, as PyTorch does), one thread, InferenceMode for the forward.
struct TorchMLPImpl : torch::nn::Module {
    torch::nn::Linear l1{nullptr}, l2{nullptr}, l3{nullptr}, l4{nullptr};
    TorchMLPImpl() {
        l1 = register_module("l1", torch::nn::Linear(D0, D1));
        l2 = register_module("l2", torch::nn::Linear(D1, D2));
        l3 = register_module("l3", torch::nn::Linear(D2, D3));
        l4 = register_module("l4", torch::nn::Linear(D3, 1));
        const Data& d = data();
        torch::NoGradGuard ng;
        auto load = [](torch::nn::Linear& l, const avec& W, const avec& b, int K, int N) {
            auto w = torch::from_blob(const_cast<float*>(W.data()), {K, N}, torch::kFloat32);
            l->weight.copy_(w.t());
            l->bias.copy_(torch::from_blob(const_cast<float*>(b.data()), {N}, torch::kFloat32));
        };
        load(l1, d.W1, d.b1, D0, D1), load(l2, d.W2, d.b2, D1, D2), load(l3, d.W3, d.b3, D2, D3);
        load(l4, d.W4, d.b4, D3, 1);
    }
    torch::Tensor forward(const torch::Tensor& x) {
        auto h = torch::relu(l1(x));
        h = torch::relu(l2(h));
        h = torch::relu(l3(h));
        return torch::sigmoid(l4(h));
    }
};
TORCH_MODULE(TorchMLP);

torch::Tensor torch_input(int B) {
    return torch::from_blob(const_cast<float*>(data().X.data()), {B, D0}, torch::kFloat32);
}

void BM_torch_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    TorchMLP m;
    m->eval();
    auto x = torch_input(B);
    c10::InferenceMode guard;
    timed(st, kFlopFwd * B, std::size_t(B), [&] {
        auto y = m->forward(x);
        benchmark::DoNotOptimize(y.data_ptr());
        benchmark::ClobberMemory();
    });
}
void BM_torch_fwdbwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    TorchMLP m;
    auto x = torch_input(B).clone().requires_grad_(true);
    auto cot = torch::from_blob(const_cast<float*>(data().cot.data()), {B, 1}, torch::kFloat32);
    timed(st, kFlopFwdBwd * B, std::size_t(B), [&] {
        m->zero_grad(/*set_to_none=*/true);
        x.mutable_grad() = torch::Tensor();
        auto y = m->forward(x);
        y.backward(cot);
        benchmark::DoNotOptimize(m->l1->weight.grad().data_ptr());
        benchmark::DoNotOptimize(x.grad().data_ptr());
        benchmark::ClobberMemory();
    });
}
#endif

// ========================================= verification ========================================
double max_abs_diff(const float* a, const float* b, std::size_t n) {
    double m = 0;
    for (std::size_t i = 0; i < n; ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
    return m;
}

struct Check {
    std::string what;
    double diff, tol;
};

std::vector<Check> verify() {
    std::vector<Check> out;
    const Data& d = data();
    // forward, B = 1024 (and B = 1 through the fixed-size Eigen path)
    {
        M::parameters p;
        load_params(p, false);
        M::workspace ws;
        avec y(kMaxB), y1(1);
        M::io io;
        io.input<"x">(d.X.data()).output<0>(y.data());
        M::run(p, ws, kMaxB, io);
        M::io io1;
        io1.input<"x">(d.X.data()).output<0>(y1.data());
        M::run(p, ws, 1, io1);
        // the weight-normalised tower, scored from prepared const parameters
        MWN::parameters pw;
        load_params(pw, false);
        pw.prepare();
        MWN::workspace wsw;
        avec yw(kMaxB);
        MWN::io iow;
        iow.input<"x">(d.X.data()).output<0>(yw.data());
        MWN::run(std::as_const(pw), wsw, kMaxB, iow);
        out.push_back({"fwd y  weight-norm tower vs plain (B=1024)", max_abs_diff(yw.data(), y.data(), kMaxB), 1e-5});
        EigenMLP e(kMaxB);
        e.forward(d.X.data());
        out.push_back({"fwd y  ctrec vs eigen (B=1024)", max_abs_diff(y.data(), e.Y.data(), kMaxB), 1e-5});
        EigenMLP1 e1;
        e1.forward(d.X.data());
        out.push_back({"fwd y  ctrec vs eigen (B=1)", max_abs_diff(y1.data(), &e1.y, 1), 1e-5});
#if defined(CTREC_BENCH_HAVE_TORCH)
        TorchMLP m;
        c10::InferenceMode guard;
        auto yt = m->forward(torch_input(kMaxB)).contiguous();
        out.push_back({"fwd y  ctrec vs torch (B=1024)", max_abs_diff(y.data(), yt.data_ptr<float>(), kMaxB), 1e-5});
#endif
    }
    // gradients, B = 64
    {
        auto g = std::make_unique<CtrecGrad>(kGradB);
        g->run(kGradB);
        EigenMLP e(kGradB);
        e.forward(d.X.data());
        e.backward(d.X.data(), d.cot.data());
        auto rel = [](const avec& a, const float* b) {
            double s = 0;
            for (float v : a) s = std::max(s, double(std::fabs(v)));
            return max_abs_diff(a.data(), b, a.size()) / std::max(s, 1e-30);
        };
        out.push_back({"grad y   ctrec vs eigen", max_abs_diff(g->y.data(), e.Y.data(), kGradB), 1e-5});
        out.push_back({"grad dx  ctrec vs eigen (rel)", rel(g->dx, e.dX.data()), 1e-4});
        out.push_back({"grad dW1 ctrec vs eigen (rel)", rel(g->dW1, e.dW1.data()), 1e-4});
        out.push_back({"grad db1 ctrec vs eigen (rel)", rel(g->db1, e.db1.data()), 1e-4});
        out.push_back({"grad dW2 ctrec vs eigen (rel)", rel(g->dW2, e.dW2.data()), 1e-4});
        out.push_back({"grad db2 ctrec vs eigen (rel)", rel(g->db2, e.db2.data()), 1e-4});
        out.push_back({"grad dW3 ctrec vs eigen (rel)", rel(g->dW3, e.dW3.data()), 1e-4});
        out.push_back({"grad db3 ctrec vs eigen (rel)", rel(g->db3, e.db3.data()), 1e-4});
        out.push_back({"grad dW4 ctrec vs eigen (rel)", rel(g->dW4, e.dW4.data()), 1e-4});
        out.push_back({"grad db4 ctrec vs eigen (rel)", rel(g->db4, &e.db4), 1e-4});
#if defined(CTREC_BENCH_HAVE_TORCH)
        TorchMLP m;
        auto x = torch_input(kGradB).clone().requires_grad_(true);
        auto cot = torch::from_blob(const_cast<float*>(d.cot.data()), {kGradB, 1}, torch::kFloat32);
        m->forward(x).backward(cot);
        auto tW1 = m->l1->weight.grad().t().contiguous();  // (in, out) like ctrec
        auto tdx = x.grad().contiguous();
        out.push_back({"grad dW1 ctrec vs torch (rel)", rel(g->dW1, tW1.data_ptr<float>()), 1e-4});
        out.push_back({"grad dx  ctrec vs torch (rel)", rel(g->dx, tdx.data_ptr<float>()), 1e-4});
#endif
    }
    // JVP, B = 64
    {
        auto j = std::make_unique<CtrecJvp>(kGradB);
        j->run(kGradB);
        EigenMLP e(kGradB);
        e.jvp(d.X.data(), d.dX.data());
        out.push_back({"jvp y    ctrec vs eigen", max_abs_diff(j->y.data(), e.Y.data(), kGradB), 1e-5});
        out.push_back({"jvp dy   ctrec vs eigen", max_abs_diff(j->ty.data(), e.TY.data(), kGradB), 1e-5});
    }
    return out;
}

void register_all() {
    auto reg = [](const std::string& name, void (*fn)(benchmark::State&), std::int64_t B) {
        benchmark::RegisterBenchmark(name.c_str(), fn)->Arg(B)->UseManualTime()->Unit(benchmark::kMicrosecond);
    };
    for (std::int64_t B : {1, 64, 1024}) {
        reg("W1/fwd/ctrec", BM_ctrec_fwd, B);
        reg("W1/fwd/ctrec_wn", BM_ctrec_wn_fwd, B);
        reg("W1/fwd/eigen", BM_eigen_fwd, B);
#if defined(CTREC_BENCH_HAVE_TORCH)
        reg("W1/fwd/torch", BM_torch_fwd, B);
#endif
    }
    reg("W1/fwdbwd/ctrec", BM_ctrec_fwdbwd, kGradB);
    reg("W1/fwdbwd/eigen", BM_eigen_fwdbwd, kGradB);
#if defined(CTREC_BENCH_HAVE_TORCH)
    reg("W1/fwdbwd/torch", BM_torch_fwdbwd, kGradB);
#endif
    reg("W1/jvp/ctrec", BM_ctrec_jvp, kGradB);
    reg("W1/jvp/eigen", BM_eigen_jvp, kGradB);
}

}  // namespace

int main(int argc, char** argv) {
    bench::force_single_thread(argc, argv);
#if defined(CTREC_BENCH_HAVE_TORCH)
    at::set_num_threads(1);
    at::set_num_interop_threads(1);
#endif
    Eigen::setNbThreads(1);

    // --peak_gflops=X overrides the in-process measurement (e.g. 117, bench/ROOFLINE.md).
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

    std::fprintf(stderr, "W1 MLP: FP32 peak %.1f GFLOP/s (%s)\n", g_peak / 1e9, peak_source.c_str());
    bool ok = true;
    double worst = 0;
    for (const Check& c : verify()) {
        const bool pass = std::isfinite(c.diff) && c.diff <= c.tol;
        ok = ok && pass;
        worst = std::max(worst, c.diff);
        std::fprintf(stderr, "  verify %-34s max diff %.3g %s\n", c.what.c_str(), c.diff, pass ? "ok" : "MISMATCH");
    }
    benchmark::AddCustomContext("fp32_peak_gflops", std::to_string(g_peak / 1e9));
    benchmark::AddCustomContext("peak_source", peak_source);
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
        std::fprintf(stderr, "W1 MLP: LibTorch threads %d, OpenBLAS core %s\n", at::get_num_threads(), c.c_str());
    }
#else
    benchmark::AddCustomContext("torch_threads", "n/a (built without LibTorch)");
#endif
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
