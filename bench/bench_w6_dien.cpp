// Workload W6: DIEN, T = 50 behaviours of K = E = 32 dims, GRU with 32 units, then AUGRU
// (att_type AUGRU), relu candidates (the layer's default), no mask; float32, one thread.
//
//   W6/fwd/<impl>/<B>      forward, B in {1, 64, 1024}; impl: ctrec, flat, torch
//   W6/fwdbwd/<impl>/64    forward + reverse-mode gradient w.r.t. q, k and every parameter
//
// ctrec: layers::dien on the type core (scan nodes); flat: the same layer on the graph-as-data
// core (ctrec/flat/layers/dien.hpp: both recurrences unrolled), with the type core's parameter
// values copied by name; main() checks once that flat and ctrec agree (outputs at B = 1, 64,
// 1024; output and every gradient at B = 64).
//
// LibTorch is written as per-step tensor ops (the input-side products hoisted into one matmul
// per scan, as ctrec does), with autograd for the gradient. main() checks once that both give
// the same outputs and gradients.
// FLOPs per example (spec 2.3.9): T (6 E U + 18 U^2) + 2 U^2 + 2 T U = 1.234 MFLOP forward;
// forward + backward counted as 3x.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/core.hpp"
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

constexpr std::size_t T = 50, E = 32, U = 32, kGradB = 64;
constexpr auto q = ctrec::input<"q", U>;
constexpr auto k = ctrec::input<"k", T, E>;
constexpr auto layer = ctrec::layers::dien<"dien", {.num_units = U, .att_type = ctrec::layers::agru_att::augru}>(q, k);
using Out = std::remove_cvref_t<decltype(layer.out)>;
using Fwd = ctrec::program<float, Out>;
using Grad = ctrec::grad_program<float, Out>;

// The same layer on the graph-as-data core (include/ctrec/flat): impl "flat".
namespace w6f {
namespace f = ctrec;
constexpr auto r = f::layers::dien<"dien", {.num_units = U, .att_type = ctrec::layers::agru_att::augru}>(f::input<"q", U>,
                                                                                                       f::input<"k", T, E>);
constexpr auto out = r.out();
}  // namespace w6f
using FFwd = ctrec::program<float, w6f::out>;
using FGrad = ctrec::grad_program<float, w6f::out>;
constexpr double kFlopFwd = double(T) * (6.0 * E * U + 18.0 * U * U) + 2.0 * U * U + 2.0 * T * U;
constexpr double kFlopFwdBwd = 3 * kFlopFwd;

struct Data {
    std::vector<float> Q, K, cot;
    Fwd::parameters p;
    Grad::parameters pg;
    FFwd::parameters pf;
    FGrad::parameters pfg;
    Data() {
        lcg r{7};
        Q.resize(1024 * U), K.resize(1024 * T * E), cot.resize(1024 * U);
        for (auto& v : Q) v = r.next();
        for (auto& v : K) v = r.next();
        for (auto& v : cot) v = r.next();
        lcg w{11};
        for (std::size_t i = 0; i < p.count; ++i)
            for (auto& v : p.get(i)) v = 0.3f * w.next();
        for (std::size_t i = 0; i < pg.count; ++i) {  // the same values by name
            auto src = p.get(p.index_of(Grad::parameters::names[i]));
            auto dst = pg.get(i);
            std::copy(src.begin(), src.end(), dst.begin());
        }
        static_assert(FFwd::parameters::count == Fwd::parameters::count && FGrad::parameters::count == Fwd::parameters::count);
        for (std::size_t i = 0; i < pf.count; ++i) {  // the flat programs too (set checks name and size)
            const auto n = FFwd::parameters::names[i];
            pf.set(n, p.get(p.index_of(n)));
        }
        for (std::size_t i = 0; i < pfg.count; ++i) {
            const auto n = FGrad::parameters::names[i];
            pfg.set(n, p.get(p.index_of(n)));
        }
        pf.prepare(), pfg.prepare();
    }
};
Data& data() {
    static Data d;
    return d;
}

void ctrec_fwd(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto& d = data();
    std::vector<float> out(B * U);
    auto ws = std::make_unique<Fwd::workspace>();
    Fwd::io io;
    io.input<"q">(d.Q.data()).input<"k">(d.K.data()).output<0>(out.data());
    timed(st, kFlopFwd * double(B), B, [&] { Fwd::run(d.p, *ws, B, io); });
}
void flat_fwd(benchmark::State& st) {
    const std::size_t B = static_cast<std::size_t>(st.range(0));
    auto& d = data();
    std::vector<float> out(B * U);
    auto ws = std::make_unique<FFwd::workspace>();
    FFwd::io io;
    io.input<"q">(d.Q.data()).input<"k">(d.K.data()).output<0>(out.data());
    timed(st, kFlopFwd * double(B), B, [&] { FFwd::run(d.pf, *ws, B, io); });
}
template <class Gp>  // either core's grad program
struct GradBufs {
    std::vector<std::vector<float>> outs;
    typename Gp::io io;
};
template <class Gp = Grad>
GradBufs<Gp> grad_io(std::size_t B) {
    auto& d = data();
    GradBufs<Gp> g;
    g.outs.resize(Gp::n_outputs);
    g.io.template input<"q">(d.Q.data()).template input<"k">(d.K.data()).template input<"cotangent">(d.cot.data());
    [&]<std::size_t... O>(std::index_sequence<O...>) {
        ((g.outs[O].resize(Gp::template output_size<O> * (Gp::template output_batched<O> ? B : 1)),
          g.io.template output<O>(g.outs[O].data())),
         ...);
    }(std::make_index_sequence<Gp::n_outputs>{});
    return g;
}
void ctrec_fwdbwd(benchmark::State& st) {
    auto& d = data();
    auto g = grad_io(kGradB);
    auto ws = std::make_unique<Grad::workspace>();
    timed(st, kFlopFwdBwd * double(kGradB), kGradB, [&] { Grad::run(d.pg, *ws, kGradB, g.io); });
}
void flat_fwdbwd(benchmark::State& st) {
    auto& d = data();
    auto g = grad_io<FGrad>(kGradB);
    auto ws = std::make_unique<FGrad::workspace>();
    timed(st, kFlopFwdBwd * double(kGradB), kGradB, [&] { FGrad::run(d.pfg, *ws, kGradB, g.io); });
}

#if defined(CTREC_BENCH_HAVE_TORCH)
struct TorchDien {
    torch::Tensor W, R, b, Watt, Wg, bg, Wc, bc;
    explicit TorchDien(const Fwd::parameters& p) {
        auto t = [&](std::string_view n, std::vector<std::int64_t> shape) {
            auto s = p.get(p.index_of(n));
            return torch::from_blob(const_cast<float*>(s.data()), shape, torch::kFloat32).clone().set_requires_grad(true);
        };
        W = t("dien/gru_cell/kernel", {E, 3 * U});
        R = t("dien/gru_cell/recurrent_kernel", {U, 3 * U});
        b = t("dien/gru_cell/bias", {2, 3 * U});
        Watt = t("dien/attention_weight", {U, U});
        Wg = t("dien/augru_cell/gates/kernel", {2 * U, 2 * U});
        bg = t("dien/augru_cell/gates/bias", {2 * U});
        Wc = t("dien/augru_cell/candidate/kernel", {2 * U, U});
        bc = t("dien/augru_cell/candidate/bias", {U});
    }
    torch::Tensor forward(const torch::Tensor& qt, const torch::Tensor& kt) const {  // (B, U), (B, T, E) -> (B, U)
        const auto Bn = qt.size(0);
        auto xp = torch::matmul(kt, W) + b[0];  // (B, T, 3U), hoisted
        auto h = torch::zeros({Bn, std::int64_t(U)});
        std::vector<torch::Tensor> hs;
        for (std::size_t t = 0; t < T; ++t) {
            auto x = xp.select(1, std::int64_t(t));
            auto g = torch::matmul(h, R) + b[1];
            auto xc = x.chunk(3, 1), gc = g.chunk(3, 1);
            auto z = torch::sigmoid(xc[0] + gc[0]), r = torch::sigmoid(xc[1] + gc[1]);
            auto hh = torch::relu(xc[2] + r * gc[2]);
            h = z * h + (1 - z) * hh;
            hs.push_back(h);
        }
        auto H = torch::stack(hs, 1);                              // (B, T, U)
        auto v = torch::matmul(qt, Watt.t());                      // v_i = sum_j Watt[i, j] q_j
        auto alpha = torch::softmax((H * v.unsqueeze(1)).sum(2), 1);  // (B, T)
        auto xg = torch::matmul(H, Wg.narrow(0, 0, U)) + bg, xc = torch::matmul(H, Wc.narrow(0, 0, U)) + bc;  // hoisted
        auto Wgh = Wg.narrow(0, U, U), Wch = Wc.narrow(0, U, U);
        auto e = torch::zeros({Bn, std::int64_t(U)});
        for (std::size_t t = 0; t < T; ++t) {
            auto gates = torch::sigmoid(xg.select(1, std::int64_t(t)) + torch::matmul(e, Wgh)).chunk(2, 1);
            auto c = torch::relu(xc.select(1, std::int64_t(t)) + torch::matmul(gates[0] * e, Wch));
            auto a = alpha.narrow(1, std::int64_t(t), 1);
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
    static TorchDien m(data().p);
    return m;
}
void torch_fwd(benchmark::State& st) {
    const std::int64_t B = st.range(0);
    auto& d = data();
    auto& m = torch_model();
    auto qt = torch::from_blob(d.Q.data(), {B, std::int64_t(U)}, torch::kFloat32);
    auto kt = torch::from_blob(d.K.data(), {B, std::int64_t(T), std::int64_t(E)}, torch::kFloat32);
    torch::NoGradGuard ng;
    timed(st, kFlopFwd * double(B), std::size_t(B), [&] { benchmark::DoNotOptimize(m.forward(qt, kt)); });
}
void torch_fwdbwd(benchmark::State& st) {
    auto& d = data();
    auto& m = torch_model();
    const std::int64_t B = kGradB;
    auto qt = torch::from_blob(d.Q.data(), {B, std::int64_t(U)}, torch::kFloat32).clone().set_requires_grad(true);
    auto kt = torch::from_blob(d.K.data(), {B, std::int64_t(T), std::int64_t(E)}, torch::kFloat32).clone().set_requires_grad(true);
    auto cot = torch::from_blob(d.cot.data(), {B, std::int64_t(U)}, torch::kFloat32);
    timed(st, kFlopFwdBwd * double(B), std::size_t(B), [&] {
        m.zero_grads();
        qt.mutable_grad() = torch::Tensor();
        kt.mutable_grad() = torch::Tensor();
        m.forward(qt, kt).backward(cot);
    });
}
#endif

// Once: flat agrees with ctrec (outputs at B = 1, 64, 1024; at B = 64 the output and the
// gradient of q, k and every parameter), max |a - b| / max |ctrec| < 1e-3 as for torch.
bool verify_flat() {
    bool ok = true;
    auto& d = data();
    auto cmp = [&](const std::string& what, const std::vector<float>& a, const std::vector<float>& ref) {
        double mx = a.size() == ref.size() ? 0 : INFINITY, scale = 1e-30;
        for (std::size_t i = 0; i < std::min(a.size(), ref.size()); ++i)
            mx = std::max(mx, double(std::abs(a[i] - ref[i]))), scale = std::max(scale, double(std::abs(ref[i])));
        std::fprintf(stderr, "W6 check %-36s max |flat - ctrec| / max |ctrec| = %.2e\n", what.c_str(), mx / scale);
        ok = ok && mx / scale < 1e-3;
    };
    for (std::size_t B : {std::size_t(1), kGradB, std::size_t(1024)}) {
        std::vector<float> yc(B * U), yf(B * U);
        auto ws = std::make_unique<Fwd::workspace>();
        auto wsf = std::make_unique<FFwd::workspace>();
        Fwd::io io;
        FFwd::io iof;
        io.input<"q">(d.Q.data()).input<"k">(d.K.data()).output<0>(yc.data());
        iof.input<"q">(d.Q.data()).input<"k">(d.K.data()).output<0>(yf.data());
        Fwd::run(d.p, *ws, B, io);
        FFwd::run(d.pf, *wsf, B, iof);
        cmp("fwd output (B=" + std::to_string(B) + ")", yf, yc);
    }
    auto g = grad_io(kGradB);
    auto gf = grad_io<FGrad>(kGradB);
    auto ws = std::make_unique<Grad::workspace>();
    auto wsf = std::make_unique<FGrad::workspace>();
    Grad::run(d.pg, *ws, kGradB, g.io);
    FGrad::run(d.pfg, *wsf, kGradB, gf.io);
    cmp("grad output", gf.outs[0], g.outs[0]);
    cmp("grad d q", gf.outs[FGrad::grad<"q">], g.outs[Grad::grad<"q">]);
    cmp("grad d k", gf.outs[FGrad::grad<"k">], g.outs[Grad::grad<"k">]);
    cmp("grad d gru_cell/kernel", gf.outs[FGrad::grad<"dien/gru_cell/kernel">], g.outs[Grad::grad<"dien/gru_cell/kernel">]);
    cmp("grad d gru_cell/recurrent_kernel", gf.outs[FGrad::grad<"dien/gru_cell/recurrent_kernel">],
        g.outs[Grad::grad<"dien/gru_cell/recurrent_kernel">]);
    cmp("grad d gru_cell/bias", gf.outs[FGrad::grad<"dien/gru_cell/bias">], g.outs[Grad::grad<"dien/gru_cell/bias">]);
    cmp("grad d attention_weight", gf.outs[FGrad::grad<"dien/attention_weight">], g.outs[Grad::grad<"dien/attention_weight">]);
    cmp("grad d augru_cell/gates/kernel", gf.outs[FGrad::grad<"dien/augru_cell/gates/kernel">],
        g.outs[Grad::grad<"dien/augru_cell/gates/kernel">]);
    cmp("grad d augru_cell/gates/bias", gf.outs[FGrad::grad<"dien/augru_cell/gates/bias">],
        g.outs[Grad::grad<"dien/augru_cell/gates/bias">]);
    cmp("grad d augru_cell/candidate/kernel", gf.outs[FGrad::grad<"dien/augru_cell/candidate/kernel">],
        g.outs[Grad::grad<"dien/augru_cell/candidate/kernel">]);
    cmp("grad d augru_cell/candidate/bias", gf.outs[FGrad::grad<"dien/augru_cell/candidate/bias">],
        g.outs[Grad::grad<"dien/augru_cell/candidate/bias">]);
    return ok;
}

// Once: both implementations agree (outputs, the gradient of k and of the recurrent kernel).
bool verify() {
    bool ok = true;
#if defined(CTREC_BENCH_HAVE_TORCH)
    auto& d = data();
    const std::int64_t B = kGradB;
    auto g = grad_io(kGradB);
    auto ws = std::make_unique<Grad::workspace>();
    Grad::run(d.pg, *ws, kGradB, g.io);
    auto& m = torch_model();
    auto qt = torch::from_blob(d.Q.data(), {B, std::int64_t(U)}, torch::kFloat32).clone().set_requires_grad(true);
    auto kt = torch::from_blob(d.K.data(), {B, std::int64_t(T), std::int64_t(E)}, torch::kFloat32).clone().set_requires_grad(true);
    auto out = m.forward(qt, kt);
    out.backward(torch::from_blob(d.cot.data(), {B, std::int64_t(U)}, torch::kFloat32));
    auto cmp = [&](const char* what, const std::vector<float>& a, const torch::Tensor& t) {
        auto c = t.contiguous();
        const float* p = c.data_ptr<float>();
        double mx = 0, scale = 1e-30;
        for (std::size_t i = 0; i < a.size(); ++i) mx = std::max(mx, double(std::abs(a[i] - p[i]))), scale = std::max(scale, double(std::abs(p[i])));
        std::fprintf(stderr, "W6 check %-28s max |ctrec - torch| / max |torch| = %.2e\n", what, mx / scale);
        ok = ok && mx / scale < 1e-3;
    };
    cmp("output", g.outs[0], out);
    cmp("d k", g.outs[Grad::grad<"k">], kt.grad());
    cmp("d q", g.outs[Grad::grad<"q">], qt.grad());
    cmp("d gru_cell/recurrent_kernel", g.outs[Grad::grad<"dien/gru_cell/recurrent_kernel">], m.R.grad());
    cmp("d augru_cell/gates/kernel", g.outs[Grad::grad<"dien/augru_cell/gates/kernel">], m.Wg.grad());
    m.zero_grads();
#endif
    return ok;
}
} // namespace

BENCHMARK(ctrec_fwd)->Name("W6/fwd/ctrec")->Arg(1)->Arg(64)->Arg(1024)->UseManualTime();
BENCHMARK(flat_fwd)->Name("W6/fwd/flat")->Arg(1)->Arg(64)->Arg(1024)->UseManualTime();
BENCHMARK(ctrec_fwdbwd)->Name("W6/fwdbwd/ctrec/64")->UseManualTime();
BENCHMARK(flat_fwdbwd)->Name("W6/fwdbwd/flat/64")->UseManualTime();
#if defined(CTREC_BENCH_HAVE_TORCH)
BENCHMARK(torch_fwd)->Name("W6/fwd/torch")->Arg(1)->Arg(64)->Arg(1024)->UseManualTime();
BENCHMARK(torch_fwdbwd)->Name("W6/fwdbwd/torch/64")->UseManualTime();
#endif

int main(int argc, char** argv) {
    bench::force_single_thread(argc, argv);
#if defined(CTREC_BENCH_HAVE_TORCH)
    at::set_num_threads(1);
    at::set_num_interop_threads(1);
#endif
    g_peak = bench::measure_fma_peak(0.3);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    std::fprintf(stderr, "W6 DIEN (T %zu, E %zu, U %zu, AUGRU): FP32 peak %.1f GFLOP/s\n", T, E, U, g_peak / 1e9);
    if (!verify_flat()) {
        std::fprintf(stderr, "W6: flat and ctrec disagree\n");
        return 1;
    }
    if (!verify()) {
        std::fprintf(stderr, "W6: ctrec and LibTorch disagree\n");
        return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
