// Workload W5 (bench/WORKLOADS.md): DCN matrix, D = 624 (39 x 16), 3 cross layers
// x_{l+1} = x0 * (x_l W_l + b_l) + x_l, one row per example, float32, one thread.
//
//   W5/fwd/<impl>/<B>     forward, B in {1, 64, 1024}; impl: ctrec, eigen, torch
//   W5/fwdbwd/<impl>/64   forward + reverse-mode gradient w.r.t. x and every parameter
//   W5/jvp/<impl>/64      forward + forward-mode directional derivative (ctrec, eigen)
//
// The same weights and inputs everywhere; main() checks once that outputs and gradients
// agree. Counters as in bench_w1_mlp.cpp: flops (3 (2 D^2 + 3 D) = 2.34 MFLOP per example
// forward; 3x for forward+backward and JVP), peak_frac, p50_us / p99_us, items_per_second.
//
//   ./bench_w5_dcn --benchmark_min_time=0.2 [--peak_gflops=117]
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
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/core.hpp"
#include "ctrec/layers/dcn.hpp"

#if defined(CTREC_BENCH_HAVE_TORCH)
#include <ATen/Parallel.h>
#include <torch/torch.h>
#endif

#include "bench_common.hpp"

namespace {
using bench::g_peak;
using bench::lcg;
using bench::timed;

constexpr int D = 624, L = 3;
constexpr int kMaxB = 1024, kGradB = 64;

namespace w5 {
using namespace ctrec;
constexpr auto x = input<"x", D>;
constexpr auto net = layers::dcn<"dcn", layers::dcn_config{.type = layers::dcn_type::matrix, .layer_num = L}, layers::mode::predict>(x);
constexpr auto y = net.out();
}  // namespace w5

using M = ctrec::program<float, w5::y>;
using G = ctrec::grad_program<float, w5::y>;
using J = ctrec::jvp_program<float, w5::y>;

constexpr double kFlopFwd = L * (2.0 * D * D + 3.0 * D);  // 2.34 M
constexpr double kFlopFwdBwd = 3.0 * kFlopFwd;
constexpr double kFlopJvp = 3.0 * kFlopFwd;


using avec = std::vector<float, Eigen::aligned_allocator<float>>;

struct Data {
    avec W[L], b[L], dW[L], db[L];  // row-major W[k * D + n], as in the ctrec parameters
    avec X, dX, cot;
    Data() {
        lcg r{5};
        auto fill = [&](avec& v, std::size_t n, float scale) {
            v.resize(n);
            for (auto& e : v) e = scale * r.next();
        };
        for (int l = 0; l < L; ++l) {
            fill(W[l], std::size_t(D) * D, 1.f / std::sqrt(float(D)));
            fill(b[l], D, 0.1f);
            fill(dW[l], std::size_t(D) * D, 0.01f);
            fill(db[l], D, 0.01f);
        }
        fill(X, std::size_t(kMaxB) * D, 1.f);
        fill(dX, std::size_t(kMaxB) * D, 0.1f);
        fill(cot, std::size_t(kGradB) * D, 1.f / kGradB);
    }
};
const Data& data() {
    static const Data d;
    return d;
}


// ============================================ ctrec ============================================
const char* const kKernel[L] = {"dcn/kernel_0", "dcn/kernel_1", "dcn/kernel_2"};
const char* const kBias[L] = {"dcn/bias_0", "dcn/bias_1", "dcn/bias_2"};
const char* const kDKernel[L] = {"d.dcn/kernel_0", "d.dcn/kernel_1", "d.dcn/kernel_2"};
const char* const kDBias[L] = {"d.dcn/bias_0", "d.dcn/bias_1", "d.dcn/bias_2"};

template <class Params>
void load_params(Params& p, bool tangents) {
    for (int l = 0; l < L; ++l) {
        p.set(kKernel[l], data().W[l]), p.set(kBias[l], data().b[l]);
        if (tangents) p.set(kDKernel[l], data().dW[l]), p.set(kDBias[l], data().db[l]);
    }
}

template <class Gp>
struct GradOf {
    typename Gp::parameters p;
    typename Gp::workspace ws;
    avec y, dx, dW[L], db[L];
    typename Gp::io io;
    explicit GradOf(std::size_t B) : y(B * D), dx(B * D) {
        load_params(p, false);
        for (int l = 0; l < L; ++l) dW[l].resize(std::size_t(D) * D), db[l].resize(D);
        io.template input<"x">(data().X.data()).template input<"cotangent">(data().cot.data());
        io.template output<0>(y.data()).template output<Gp::template grad<"x">>(dx.data());
        io.template output<Gp::template grad<"dcn/kernel_0">>(dW[0].data()).template output<Gp::template grad<"dcn/bias_0">>(db[0].data());
        io.template output<Gp::template grad<"dcn/kernel_1">>(dW[1].data()).template output<Gp::template grad<"dcn/bias_1">>(db[1].data());
        io.template output<Gp::template grad<"dcn/kernel_2">>(dW[2].data()).template output<Gp::template grad<"dcn/bias_2">>(db[2].data());
    }
    void run(std::size_t B) { Gp::run(p, ws, B, io); }
};
using CtrecGrad = GradOf<G>;

template <class Jp>
struct JvpOf {
    typename Jp::parameters p;
    typename Jp::workspace ws;
    avec y, ty;
    typename Jp::io io;
    explicit JvpOf(std::size_t B) : y(B * D), ty(B * D) {
        load_params(p, true);
        io.template input<"x">(data().X.data()).template input<"d.x">(data().dX.data()).template output<0>(y.data()).template output<1>(ty.data());
    }
    void run(std::size_t B) { Jp::run(p, ws, B, io); }
};
using CtrecJvp = JvpOf<J>;

template <class Mp>
void fwd_of(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto p = std::make_unique<typename Mp::parameters>();
    load_params(*p, false);
    p->prepare();
    const typename Mp::parameters& cp = *p;
    auto ws = std::make_unique<typename Mp::workspace>();
    avec y(B * D);
    typename Mp::io io;
    io.template input<"x">(data().X.data()).template output<0>(y.data());
    timed(st, kFlopFwd * double(B), B, [&] {
        Mp::run(cp, *ws, B, io);
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    });
}
void BM_ctrec_fwd(benchmark::State& st) { fwd_of<M>(st); }
void BM_ctrec_fwdbwd(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto g = std::make_unique<CtrecGrad>(B);
    timed(st, kFlopFwdBwd * double(B), B, [&] {
        g->run(B);
        benchmark::DoNotOptimize(g->dW[0].data());
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
// Batch-major row-major activations used in place, row-major weights, noalias GEMMs into
// buffers allocated once, the cross epilogue x0 * (z + b) + x as one coefficient-wise pass,
// fixed-size row vectors at B = 1.
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVec = Eigen::Matrix<float, 1, Eigen::Dynamic>;
template <class Mat>
using AMap = Eigen::Map<const Mat, Eigen::Aligned64>;

struct EigenDCN {
    int B;
    std::vector<AMap<RowMat>> W;
    std::vector<AMap<RowVec>> b;
    RowMat H[L + 1];  // H[0] = x0 (copy-free would need a Map; one copy of B x D is noise here)
    RowMat Z[L];      // x_l W + b (kept for the backward)
    RowMat Gc, dZ, dX0, dX;
    RowMat dW[L];
    RowVec db[L];
    RowMat T[L + 1];  // JVP tangents

    explicit EigenDCN(int b_) : B(b_) {
        for (int l = 0; l < L; ++l) {
            W.emplace_back(data().W[l].data(), D, D);
            b.emplace_back(data().b[l].data(), D);
            Z[l].resize(B, D);
            dW[l].resize(D, D);
            db[l].resize(D);
        }
        for (int l = 0; l <= L; ++l) H[l].resize(B, D), T[l].resize(B, D);
        Gc.resize(B, D), dZ.resize(B, D), dX0.resize(B, D), dX.resize(B, D);
    }
    void forward(const float* x) {
        AMap<RowMat> X0(x, B, D);
        const RowMat* prev = nullptr;
        for (int l = 0; l < L; ++l) {
            if (l == 0) Z[0].noalias() = X0 * W[0];
            else Z[l].noalias() = *prev * W[l];
            Z[l].rowwise() += b[l];
            if (l == 0) H[1] = (X0.array() * Z[0].array() + X0.array()).matrix();
            else H[l + 1] = (X0.array() * Z[l].array() + prev->array()).matrix();
            prev = &H[l + 1];
        }
    }
    // needs forward(); cotangent c (B x D)
    void backward(const float* x, const float* c) {
        AMap<RowMat> X0(x, B, D), C(c, B, D);
        Gc = C;
        dX0.setZero();
        for (int l = L - 1; l >= 0; --l) {
            dZ = (Gc.array() * X0.array()).matrix();
            dX0.array() += Gc.array() * Z[l].array();
            if (l == 0) dW[0].noalias() = X0.transpose() * dZ;
            else dW[l].noalias() = H[l].transpose() * dZ;
            db[l] = dZ.colwise().sum();
            Gc.noalias() += dZ * W[l].transpose();  // dx_l = dz W^T + g
        }
        dX = Gc + dX0;
    }
    void jvp(const float* x, const float* dx) {
        const Data& d = data();
        AMap<RowMat> X0(x, B, D), dX0m(dx, B, D);
        for (int l = 0; l < L; ++l) {
            AMap<RowMat> dWm(d.dW[l].data(), D, D);
            AMap<RowVec> dbm(d.db[l].data(), D);
            const auto& xl = l == 0 ? static_cast<const RowMat&>(H[0]) : H[l];
            if (l == 0) {
                Z[0].noalias() = X0 * W[0];
                dZ.noalias() = dX0m * W[0];
                dZ.noalias() += X0 * dWm;
            } else {
                Z[l].noalias() = xl * W[l];
                dZ.noalias() = T[l] * W[l];
                dZ.noalias() += xl * dWm;
            }
            Z[l].rowwise() += b[l];
            dZ.rowwise() += dbm;
            if (l == 0) {
                H[1] = (X0.array() * Z[0].array() + X0.array()).matrix();
                T[1] = (dX0m.array() * Z[0].array() + X0.array() * dZ.array() + dX0m.array()).matrix();
            } else {
                H[l + 1] = (X0.array() * Z[l].array() + H[l].array()).matrix();
                T[l + 1] = (dX0m.array() * Z[l].array() + X0.array() * dZ.array() + T[l].array()).matrix();
            }
        }
    }
    const RowMat& out() const { return H[L]; }
};

struct EigenDCN1 {
    using V = Eigen::Matrix<float, 1, D>;
    std::vector<AMap<RowMat>> W;
    std::vector<Eigen::Map<const V, Eigen::Aligned64>> b;
    V h, z;
    EigenDCN1() {
        for (int l = 0; l < L; ++l) W.emplace_back(data().W[l].data(), D, D), b.emplace_back(data().b[l].data());
    }
    void forward(const float* x) {
        Eigen::Map<const V, Eigen::Aligned64> x0(x);
        h = x0;
        for (int l = 0; l < L; ++l) {
            z.noalias() = h * W[l];
            h = (x0.array() * (z + b[l]).array() + h.array()).matrix();
        }
    }
};

void BM_eigen_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    const float* x = data().X.data();
    if (B == 1) {
        auto m = std::make_unique<EigenDCN1>();
        timed(st, kFlopFwd, 1, [&] {
            m->forward(x);
            benchmark::DoNotOptimize(m->h.data());
            benchmark::ClobberMemory();
        });
    } else {
        auto m = std::make_unique<EigenDCN>(B);
        timed(st, kFlopFwd * B, std::size_t(B), [&] {
            m->forward(x);
            benchmark::DoNotOptimize(m->H[L].data());
            benchmark::ClobberMemory();
        });
    }
}
void BM_eigen_fwdbwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenDCN>(B);
    timed(st, kFlopFwdBwd * B, std::size_t(B), [&] {
        m->forward(data().X.data());
        m->backward(data().X.data(), data().cot.data());
        benchmark::DoNotOptimize(m->dW[0].data());
        benchmark::ClobberMemory();
    });
}
void BM_eigen_jvp(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenDCN>(B);
    timed(st, kFlopJvp * B, std::size_t(B), [&] {
        m->jvp(data().X.data(), data().dX.data());
        benchmark::DoNotOptimize(m->T[L].data());
        benchmark::ClobberMemory();
    });
}

// =========================================== LibTorch ==========================================
#if defined(CTREC_BENCH_HAVE_TORCH)
// The C++ frontend as a user writes it: the cross layers as parameters, addmm for x W + b.
struct TorchDCNImpl : torch::nn::Module {
    std::vector<torch::Tensor> W, b;
    TorchDCNImpl() {
        torch::NoGradGuard ng;
        for (int l = 0; l < L; ++l) {
            W.push_back(register_parameter("W" + std::to_string(l),
                                           torch::from_blob(const_cast<float*>(data().W[l].data()), {D, D}, torch::kFloat32).clone()));
            b.push_back(register_parameter("b" + std::to_string(l),
                                           torch::from_blob(const_cast<float*>(data().b[l].data()), {D}, torch::kFloat32).clone()));
        }
    }
    torch::Tensor forward(const torch::Tensor& x0) {
        torch::Tensor x = x0;
        for (int l = 0; l < L; ++l) x = x0 * torch::addmm(b[l], x, W[l]) + x;
        return x;
    }
};
TORCH_MODULE(TorchDCN);

torch::Tensor torch_input(int B) { return torch::from_blob(const_cast<float*>(data().X.data()), {B, D}, torch::kFloat32); }

void BM_torch_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    TorchDCN m;
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
    TorchDCN m;
    auto x = torch_input(B).clone().requires_grad_(true);
    auto cot = torch::from_blob(const_cast<float*>(data().cot.data()), {B, D}, torch::kFloat32);
    timed(st, kFlopFwdBwd * B, std::size_t(B), [&] {
        m->zero_grad(/*set_to_none=*/true);
        x.mutable_grad() = torch::Tensor();
        m->forward(x).backward(cot);
        benchmark::DoNotOptimize(m->W[0].grad().data_ptr());
        benchmark::DoNotOptimize(x.grad().data_ptr());
        benchmark::ClobberMemory();
    });
}
#endif

// ========================================= verification ========================================
double rel_diff(const float* a, const float* b, std::size_t n) {
    double m = 0, s = 0;
    for (std::size_t i = 0; i < n; ++i) m = std::max(m, double(std::fabs(a[i] - b[i]))), s = std::max(s, double(std::fabs(b[i])));
    return m / std::max(s, 1e-30);
}
struct Check {
    std::string what;
    double diff, tol;
};
std::vector<Check> verify() {
    std::vector<Check> out;
    const Data& d = data();
    {
        M::parameters p;
        load_params(p, false);
        M::workspace ws;
        avec y(std::size_t(kMaxB) * D), y1(D);
        M::io io;
        io.input<"x">(d.X.data()).output<0>(y.data());
        M::run(p, ws, kMaxB, io);
        M::io io1;
        io1.input<"x">(d.X.data()).output<0>(y1.data());
        M::run(p, ws, 1, io1);
        EigenDCN e(kMaxB);
        e.forward(d.X.data());
        out.push_back({"fwd y  ctrec vs eigen (B=1024, rel)", rel_diff(y.data(), e.out().data(), y.size()), 1e-5});
        EigenDCN1 e1;
        e1.forward(d.X.data());
        out.push_back({"fwd y  ctrec vs eigen (B=1, rel)", rel_diff(y1.data(), e1.h.data(), D), 1e-5});
#if defined(CTREC_BENCH_HAVE_TORCH)
        TorchDCN m;
        c10::InferenceMode guard;
        auto yt = m->forward(torch_input(kMaxB)).contiguous();
        out.push_back({"fwd y  ctrec vs torch (B=1024, rel)", rel_diff(y.data(), yt.data_ptr<float>(), y.size()), 1e-5});
#endif
    }
    {
        auto g = std::make_unique<CtrecGrad>(kGradB);
        g->run(kGradB);
        EigenDCN e(kGradB);
        e.forward(d.X.data());
        e.backward(d.X.data(), d.cot.data());
        out.push_back({"grad dx  ctrec vs eigen (rel)", rel_diff(g->dx.data(), e.dX.data(), g->dx.size()), 1e-4});
        for (int l = 0; l < L; ++l) {
            out.push_back({"grad dW" + std::to_string(l) + " ctrec vs eigen (rel)", rel_diff(g->dW[l].data(), e.dW[l].data(), g->dW[l].size()), 1e-4});
            out.push_back({"grad db" + std::to_string(l) + " ctrec vs eigen (rel)", rel_diff(g->db[l].data(), e.db[l].data(), D), 1e-4});
        }
#if defined(CTREC_BENCH_HAVE_TORCH)
        TorchDCN m;
        auto x = torch_input(kGradB).clone().requires_grad_(true);
        auto cot = torch::from_blob(const_cast<float*>(d.cot.data()), {kGradB, D}, torch::kFloat32);
        m->forward(x).backward(cot);
        auto tW0 = m->W[0].grad().contiguous();
        auto tdx = x.grad().contiguous();
        out.push_back({"grad dW0 ctrec vs torch (rel)", rel_diff(g->dW[0].data(), tW0.data_ptr<float>(), g->dW[0].size()), 1e-4});
        out.push_back({"grad dx  ctrec vs torch (rel)", rel_diff(g->dx.data(), tdx.data_ptr<float>(), g->dx.size()), 1e-4});
#endif
    }
    {
        auto j = std::make_unique<CtrecJvp>(kGradB);
        j->run(kGradB);
        EigenDCN e(kGradB);
        e.jvp(d.X.data(), d.dX.data());
        out.push_back({"jvp y    ctrec vs eigen (rel)", rel_diff(j->y.data(), e.H[L].data(), j->y.size()), 1e-5});
        out.push_back({"jvp dy   ctrec vs eigen (rel)", rel_diff(j->ty.data(), e.T[L].data(), j->ty.size()), 1e-4});
    }
    return out;
}

void register_all() {
    auto reg = [](const std::string& name, void (*fn)(benchmark::State&), std::int64_t B) {
        benchmark::RegisterBenchmark(name.c_str(), fn)->Arg(B)->UseManualTime()->Unit(benchmark::kMicrosecond);
    };
    for (std::int64_t B : {1, 64, 1024}) {
        reg("W5/fwd/ctrec", BM_ctrec_fwd, B);
        reg("W5/fwd/eigen", BM_eigen_fwd, B);
#if defined(CTREC_BENCH_HAVE_TORCH)
        reg("W5/fwd/torch", BM_torch_fwd, B);
#endif
    }
    reg("W5/fwdbwd/ctrec", BM_ctrec_fwdbwd, kGradB);
    reg("W5/fwdbwd/eigen", BM_eigen_fwdbwd, kGradB);
#if defined(CTREC_BENCH_HAVE_TORCH)
    reg("W5/fwdbwd/torch", BM_torch_fwdbwd, kGradB);
#endif
    reg("W5/jvp/ctrec", BM_ctrec_jvp, kGradB);
    reg("W5/jvp/eigen", BM_eigen_jvp, kGradB);
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

    std::fprintf(stderr, "W5 DCN: FP32 peak %.1f GFLOP/s (%s)\n", g_peak / 1e9, peak_source.c_str());
    bool ok = true;
    double worst = 0;
    for (const Check& c : verify()) {
        const bool pass = std::isfinite(c.diff) && c.diff <= c.tol;
        ok = ok && pass;
        worst = std::max(worst, c.diff);
        std::fprintf(stderr, "  verify %-38s max diff %.3g %s\n", c.what.c_str(), c.diff, pass ? "ok" : "MISMATCH");
    }
    benchmark::AddCustomContext("fp32_peak_gflops", std::to_string(g_peak / 1e9));
    benchmark::AddCustomContext("peak_source", peak_source);
    benchmark::AddCustomContext("verify", ok ? "ok" : "MISMATCH");
    benchmark::AddCustomContext("verify_worst_diff", std::to_string(worst));
#if defined(CTREC_BENCH_HAVE_TORCH)
    benchmark::AddCustomContext("torch_threads", std::to_string(at::get_num_threads()));
#endif
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return ok ? 0 : 1;
}
