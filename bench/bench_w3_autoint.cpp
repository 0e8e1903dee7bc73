// Workload W3 (bench/WORKLOADS.md): AutoInt in Monolith's form, N = 39 fields, K = 16
// embedding dims, 3 layers of O = softmax(X X^T) X (no projections, no scaling), output the
// concat (N * K = 624) of the last layer; float32, one thread.
//
//   W3/fwd/<impl>/<B>     forward, B in {1, 64, 1024}; impl: ctrec, eigen, torch
//   W3/fwdbwd/<impl>/64   forward + reverse-mode gradient w.r.t. x (the layer has no variables)
//   W3/jvp/<impl>/64      forward + forward-mode directional derivative (ctrec, eigen)
//
// ctrec: layers::autoint (include/ctrec/layers/autoint.hpp; its comment says how it runs).
//
// FLOP counts per example (bench/ROOFLINE.md: 0.31 M): per layer the two products X X^T and
// A X (2 x 2 N^2 K) plus ~4 N^2 for the softmax (max, subtract, sum, scale; the N^2 exp are
// not counted): 3 x (4 N^2 K + 4 N^2) = 310,284. Forward+backward and JVP: 3x that (the
// backward has four N x N x K products per layer, dO X^T, A^T dO, dS X, dS^T X; the JVP has
// dX X^T, X dX^T, dA X, A dX), as frameworks count it.
//
// Counters (bench_common.hpp): flops, peak_frac, p50_us / p99_us (wall), cpu_mean_us (thread
// CPU time of the same iterations: on this shared machine wall time includes time spent
// descheduled), items_per_second.
//
//   ./bench_w3_autoint --benchmark_min_time=0.2 [--peak_gflops=179]
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
#include "ctrec/layers/autoint.hpp"

#if defined(CTREC_BENCH_HAVE_TORCH)
#include <ATen/Parallel.h>
#include <torch/torch.h>
#endif

#include "bench_common.hpp"

namespace {

using bench::g_peak;
using bench::lcg;
using bench::timed;

constexpr int N = 39, K = 16, L = 3, OUT = N * K;

namespace w3 {
using namespace ctrec;
constexpr auto x = input<"x", N, K>;
constexpr auto r = layers::autoint<"auto_int", {.layer_num = L}>(x);
constexpr auto out = r.out();
}  // namespace w3

using M = ctrec::program<float, w3::out>;
using G = ctrec::grad_program<float, w3::out>;
using J = ctrec::jvp_program<float, w3::out>;

constexpr int kMaxB = 1024, kGradB = 64;
constexpr double kFlopFwd = L * (4.0 * N * N * K + 4.0 * N * N);  // 310,284
constexpr double kFlopFwdBwd = 3.0 * kFlopFwd;
constexpr double kFlopJvp = 3.0 * kFlopFwd;

using avec = std::vector<float, Eigen::aligned_allocator<float>>;  // 64-byte aligned

struct Data {
    avec X, dX;  // kMaxB x N x K
    avec cot;    // kGradB x N x K
    Data() {
        lcg r{7};
        auto fill = [&](avec& v, std::size_t n, float scale) {
            v.resize(n);
            for (auto& e : v) e = scale * r.next();
        };
        // embeddings of size ~0.5: logits of a few units, so the softmax is neither uniform
        // nor one-hot and all three layers matter
        fill(X, std::size_t(kMaxB) * N * K, 0.5f);
        fill(dX, std::size_t(kMaxB) * N * K, 0.1f);
        fill(cot, std::size_t(kGradB) * N * K, 1.f / kGradB);
    }
};
const Data& data() {
    static const Data d;
    return d;
}

// ============================================ ctrec ============================================
template <class Mp>
struct FwdOf {
    typename Mp::parameters p;
    typename Mp::workspace ws;
    avec y;
    typename Mp::io io;
    explicit FwdOf(std::size_t B) : y(B * OUT) { io.template input<"x">(data().X.data()).template output<0>(y.data()); }
    void run(std::size_t B) { Mp::run(std::as_const(p), ws, B, io); }
};
using CtrecFwd = FwdOf<M>;
template <class Gp>
struct GradOf {
    typename Gp::parameters p;
    typename Gp::workspace ws;
    avec y, dx;
    typename Gp::io io;
    explicit GradOf(std::size_t B) : y(B * OUT), dx(B * N * K) {
        io.template input<"x">(data().X.data()).template input<"cotangent">(data().cot.data());
        io.template output<0>(y.data()).template output<Gp::template grad<"x">>(dx.data());
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
        benchmark::DoNotOptimize(g->dx.data());
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
// Written the way a careful engineer would: fixed-size row-major matrices (X 39 x 16, S / A
// 39 x 39, all on the stack, no allocation), one example at a time: S = X X^T,
// A = exp(S - rowmax) / rowsum, O = A X per layer. Products are lazyProduct (coefficient-based,
// unrolled for fixed sizes): ~10% faster here than Eigen's blocked GEMM path for these sizes.
// Backward: the forward keeps X_l and A_l of the three layers (per example, in L1), then per
// layer from the top: dA = G X^T, dS = A (dA - rowsum(A dA)), dX = A^T G + (dS + dS^T) X.
// JVP: dS = P + P^T with P = dX X^T, dA = A (dS - rowsum(A dS)), dO = dA X + A dX.
using MatNK = Eigen::Matrix<float, N, K, Eigen::RowMajor>;
using MatNN = Eigen::Matrix<float, N, N, Eigen::RowMajor>;
using ColN = Eigen::Matrix<float, N, 1>;
using CMapNK = Eigen::Map<const MatNK, Eigen::Aligned64>;
using MapNKu = Eigen::Map<MatNK>;
using CMapNKu = Eigen::Map<const MatNK>;

inline void eigen_softmax_rows(MatNN& a) {
    const ColN m = a.rowwise().maxCoeff();
    a = (a.colwise() - m).array().exp().matrix();
    const ColN s = a.rowwise().sum();
    a.array().colwise() /= s.array();
}

struct EigenAutoInt {
    avec out, gx, tout;
    explicit EigenAutoInt(int B) : out(std::size_t(B) * OUT) {}
    void alloc_backward(int B) { gx.resize(std::size_t(B) * N * K); }
    void alloc_jvp(int B) { tout.resize(std::size_t(B) * OUT); }

    void forward(const float* X, int B) {
        MatNN a;
        MatNK x, o;
        for (int b = 0; b < B; ++b) {
            x = CMapNKu(X + std::size_t(b) * OUT);
            for (int l = 0; l < L; ++l) {
                a.noalias() = x.lazyProduct(x.transpose());
                eigen_softmax_rows(a);
                o.noalias() = a.lazyProduct(x);
                x = o;
            }
            MapNKu(out.data() + std::size_t(b) * OUT) = x;
        }
    }
    void forward_backward(const float* X, const float* cot, int B) {
        MatNK xs[L + 1];
        MatNN as[L];
        MatNN da, ds;
        MatNK g, gxl;
        for (int b = 0; b < B; ++b) {
            xs[0] = CMapNKu(X + std::size_t(b) * OUT);
            for (int l = 0; l < L; ++l) {
                as[l].noalias() = xs[l].lazyProduct(xs[l].transpose());
                eigen_softmax_rows(as[l]);
                xs[l + 1].noalias() = as[l].lazyProduct(xs[l]);
            }
            MapNKu(out.data() + std::size_t(b) * OUT) = xs[L];
            g = CMapNKu(cot + std::size_t(b) * OUT);
            for (int l = L - 1; l >= 0; --l) {
                da.noalias() = g.lazyProduct(xs[l].transpose());
                const ColN rs = as[l].cwiseProduct(da).rowwise().sum();
                ds = as[l].cwiseProduct(da.colwise() - rs);
                gxl.noalias() = as[l].transpose().lazyProduct(g);
                gxl.noalias() += ds.lazyProduct(xs[l]);
                gxl.noalias() += ds.transpose().lazyProduct(xs[l]);
                g = gxl;
            }
            MapNKu(gx.data() + std::size_t(b) * OUT) = g;
        }
    }
    void jvp(const float* X, const float* dX, int B) {
        MatNN a, p, ds, da;
        MatNK x, t, o, to;
        for (int b = 0; b < B; ++b) {
            x = CMapNKu(X + std::size_t(b) * OUT);
            t = CMapNKu(dX + std::size_t(b) * OUT);
            for (int l = 0; l < L; ++l) {
                a.noalias() = x.lazyProduct(x.transpose());
                eigen_softmax_rows(a);
                p.noalias() = t.lazyProduct(x.transpose());
                ds = p + p.transpose();
                const ColN rs = a.cwiseProduct(ds).rowwise().sum();
                da = a.cwiseProduct(ds.colwise() - rs);
                o.noalias() = a.lazyProduct(x);
                to.noalias() = da.lazyProduct(x);
                to.noalias() += a.lazyProduct(t);
                x = o, t = to;
            }
            MapNKu(out.data() + std::size_t(b) * OUT) = x;
            MapNKu(tout.data() + std::size_t(b) * OUT) = t;
        }
    }
};

void BM_eigen_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenAutoInt>(B);
    timed(st, kFlopFwd * B, std::size_t(B), [&] {
        m->forward(data().X.data(), B);
        benchmark::DoNotOptimize(m->out.data());
        benchmark::ClobberMemory();
    });
}
void BM_eigen_fwdbwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenAutoInt>(B);
    m->alloc_backward(B);
    timed(st, kFlopFwdBwd * B, std::size_t(B), [&] {
        m->forward_backward(data().X.data(), data().cot.data(), B);
        benchmark::DoNotOptimize(m->gx.data());
        benchmark::ClobberMemory();
    });
}
void BM_eigen_jvp(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto m = std::make_unique<EigenAutoInt>(B);
    m->alloc_jvp(B);
    timed(st, kFlopJvp * B, std::size_t(B), [&] {
        m->jvp(data().X.data(), data().dX.data(), B);
        benchmark::DoNotOptimize(m->tout.data());
        benchmark::ClobberMemory();
    });
}

// =========================================== LibTorch ==========================================
#if defined(CTREC_BENCH_HAVE_TORCH)
// The C++ frontend as users write Monolith's AutoInt in PyTorch: x (B, N, K); per layer
// a = softmax(bmm(x, x^T), -1), x = bmm(a, x); the output reshaped to (B, N * K). One
// thread; InferenceMode for the forward, autograd for the gradient. No JVP baseline.
torch::Tensor torch_autoint(torch::Tensor x) {
    const std::int64_t B = x.size(0);
    for (int l = 0; l < L; ++l) x = torch::bmm(torch::softmax(torch::bmm(x, x.transpose(1, 2)), -1), x);
    return x.reshape({B, OUT});
}
torch::Tensor torch_input(int B) {
    return torch::from_blob(const_cast<float*>(data().X.data()), {B, N, K}, torch::kFloat32);
}
void BM_torch_fwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto x = torch_input(B);
    c10::InferenceMode guard;
    timed(st, kFlopFwd * B, std::size_t(B), [&] {
        auto y = torch_autoint(x);
        benchmark::DoNotOptimize(y.data_ptr());
        benchmark::ClobberMemory();
    });
}
void BM_torch_fwdbwd(benchmark::State& st) {
    const int B = static_cast<int>(st.range(0));
    auto x = torch_input(B).clone().requires_grad_(true);
    auto cot = torch::from_blob(const_cast<float*>(data().cot.data()), {B, OUT}, torch::kFloat32);
    timed(st, kFlopFwdBwd * B, std::size_t(B), [&] {
        x.mutable_grad() = torch::Tensor();
        auto y = torch_autoint(x);
        y.backward(cot);
        benchmark::DoNotOptimize(x.grad().data_ptr());
        benchmark::ClobberMemory();
    });
}
#endif

// ========================================= verification ========================================
double rel_diff(const float* a, const float* b, std::size_t n) {  // max |a - b| / max |a|
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
    for (int B : {1, kGradB}) {
        const std::string b = " (B=" + std::to_string(B) + ")";
        const std::size_t n = std::size_t(B) * OUT;
        CtrecFwd c(B);
        c.run(B);
        EigenAutoInt e(B);
        e.forward(d.X.data(), B);
        out.push_back({"fwd y    ctrec vs eigen" + b, rel_diff(c.y.data(), e.out.data(), n), tol});
#if defined(CTREC_BENCH_HAVE_TORCH)
        c10::InferenceMode guard;
        auto yt = torch_autoint(torch_input(B)).contiguous();
        out.push_back({"fwd y    ctrec vs torch" + b, rel_diff(c.y.data(), yt.data_ptr<float>(), n), tol});
#endif
    }
    {
        auto g = std::make_unique<CtrecGrad>(kGradB);
        g->run(kGradB);
        auto e = std::make_unique<EigenAutoInt>(kGradB);
        e->alloc_backward(kGradB);
        e->forward_backward(d.X.data(), d.cot.data(), kGradB);
        out.push_back({"grad y   ctrec vs eigen", rel_diff(g->y, e->out.data()), tol});
        out.push_back({"grad dx  ctrec vs eigen", rel_diff(g->dx, e->gx.data()), tol});
#if defined(CTREC_BENCH_HAVE_TORCH)
        auto x = torch_input(kGradB).clone().requires_grad_(true);
        auto cot = torch::from_blob(const_cast<float*>(d.cot.data()), {kGradB, OUT}, torch::kFloat32);
        torch_autoint(x).backward(cot);
        auto tdx = x.grad().contiguous();
        out.push_back({"grad dx  ctrec vs torch", rel_diff(g->dx, tdx.data_ptr<float>()), tol});
#endif
    }
    {
        auto j = std::make_unique<CtrecJvp>(kGradB);
        j->run(kGradB);
        auto e = std::make_unique<EigenAutoInt>(kGradB);
        e->alloc_jvp(kGradB);
        e->jvp(d.X.data(), d.dX.data(), kGradB);
        out.push_back({"jvp y    ctrec vs eigen", rel_diff(j->y, e->out.data()), tol});
        out.push_back({"jvp dy   ctrec vs eigen", rel_diff(j->ty, e->tout.data()), tol});
        // central difference through the ctrec forward on 2 examples (step 1e-2 on tangents of 0.1)
        constexpr int Bf = 2;
        constexpr float eps = 1e-2f;
        avec xp(std::size_t(Bf) * OUT), xm(xp.size()), yp(xp.size()), ym(xp.size()), fd(xp.size());
        for (std::size_t i = 0; i < xp.size(); ++i) xp[i] = d.X[i] + eps * d.dX[i], xm[i] = d.X[i] - eps * d.dX[i];
        M::parameters p;
        M::workspace ws;
        M::io iop, iom;
        iop.input<"x">(xp.data()).output<0>(yp.data());
        iom.input<"x">(xm.data()).output<0>(ym.data());
        M::run(p, ws, Bf, iop);
        M::run(p, ws, Bf, iom);
        for (std::size_t i = 0; i < fd.size(); ++i) fd[i] = (yp[i] - ym[i]) / (2 * eps);
        out.push_back({"jvp dy   ctrec vs finite diff (B=2)", rel_diff(j->ty.data(), fd.data(), fd.size()), 5e-3});
    }
    return out;
}

void register_all() {
    auto reg = [](const std::string& name, void (*fn)(benchmark::State&), std::int64_t B) {
        benchmark::RegisterBenchmark(name.c_str(), fn)->Arg(B)->UseManualTime()->Unit(benchmark::kMicrosecond);
    };
    for (std::int64_t B : {1, 64, 1024}) {
        reg("W3/fwd/ctrec", BM_ctrec_fwd, B);
        reg("W3/fwd/eigen", BM_eigen_fwd, B);
#if defined(CTREC_BENCH_HAVE_TORCH)
        reg("W3/fwd/torch", BM_torch_fwd, B);
#endif
    }
    reg("W3/fwdbwd/ctrec", BM_ctrec_fwdbwd, kGradB);
    reg("W3/fwdbwd/eigen", BM_eigen_fwdbwd, kGradB);
#if defined(CTREC_BENCH_HAVE_TORCH)
    reg("W3/fwdbwd/torch", BM_torch_fwdbwd, kGradB);
#endif
    reg("W3/jvp/ctrec", BM_ctrec_jvp, kGradB);
    reg("W3/jvp/eigen", BM_eigen_jvp, kGradB);
}

}  // namespace

int main(int argc, char** argv) {
    bench::force_single_thread(argc, argv);
#if defined(CTREC_BENCH_HAVE_TORCH)
    at::set_num_threads(1);
    at::set_num_interop_threads(1);
#endif
    Eigen::setNbThreads(1);

    // --peak_gflops=X overrides the in-process measurement (e.g. 179 on this Xeon)
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

    std::fprintf(stderr, "W3 AutoInt: FP32 peak %.1f GFLOP/s (%s)\n", g_peak / 1e9, peak_source.c_str());
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
    benchmark::AddCustomContext("xsimd_arch", xsimd::default_arch::name());
#if defined(CTREC_BENCH_HAVE_TORCH)
    benchmark::AddCustomContext("torch_threads", std::to_string(at::get_num_threads()));
    {
        const char* core = bench::openblas_core();
        std::string c = core ? core : "n/a";
        if (const char* det = std::getenv("CTREC_BENCH_OPENBLAS_DETECTED"))
            c += std::string(" (OPENBLAS_CORETYPE set by the benchmark; OpenBLAS detected ") + det + ")";
        benchmark::AddCustomContext("openblas_core", c);
        std::fprintf(stderr, "W3 AutoInt: LibTorch threads %d, OpenBLAS core %s\n", at::get_num_threads(), c.c_str());
    }
#else
    benchmark::AddCustomContext("torch_threads", "n/a (built without LibTorch)");
#endif
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return ok ? 0 : 1;
}
