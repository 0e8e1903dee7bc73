// GPU benchmark of the Thrust backend (kernels/gpu/executor.hpp) on one workload of
// ../shared/bench/WORKLOADS.md, chosen at compile time by -DCTREC_W=1|2|4|5|6|7 (one binary per
// workload: they build in parallel, and a slow build delays only its own). float32, forward.
//
//   nvcc -x cu -DCTREC_W=6 ... bench/gpu/bench_thrust.cpp -o bench_w6    (bench/gpu/device_check.sh)
//   ./bench_w6 [B=4096] [reps=30]
//
// Prints two lines:
//   parity W6 <max |thrust - cpu| / max(1, |cpu|)> at B = 64 (the CPU backend, same parameters and inputs)
//   time W6 ctrec_thrust <B> <median ms> <p90 ms> <MFLOP per example>
// and exits 1 when the parity error is above 1e-3. Parameters: uniform [-a, a], a = 1/sqrt(fan-in)
// (the last axis of each parameter's shape taken as fan-out), inputs uniform [-1, 1], from a fixed
// LCG: bench/gpu/torch_workloads.py draws its own values (timings do not depend on them).
// Built by g++ with THRUST_DEVICE_SYSTEM_OMP it runs on the CPU (a smoke test of this file).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <thrust/device_vector.h>

#include "ctrec/ctrec.hpp"
#include "gpu/executor.hpp"
#if CTREC_W == 7
#include "ctrec/layers/mmoe.hpp"
#endif

#ifndef CTREC_W
#error "define CTREC_W (1, 2, 4, 5, 6 or 7)"
#endif

namespace {
using namespace ctrec;
namespace L = ctrec::layers;

#if CTREC_W == 1  // MLP 256 -> 512 -> 256 -> 128 -> 1, relu, sigmoid at the end
constexpr auto x = input<"x", 256>;
constexpr auto y = sigmoid(L::mlp<"mlp", L::mlp_config<4>{.output_dims = {512, 256, 128, 1}, .use_weight_norm = false},
                                  L::mode::predict>(x).out());
constexpr double mflop = 2.0 * (256.0 * 512 + 512.0 * 256 + 256.0 * 128 + 128.0) / 1e6;
#elif CTREC_W == 2  // CIN N = 39, K = 16, [128, 128]
constexpr auto y = L::cin<"cin", L::cin_config<2>{.hidden_uints = {128, 128}}>(input<"x", 39, 16>).out();
constexpr double mflop = (16.0 * 1521 + 2.0 * 16 * 1521 * 128 + 3.0 * 16 * 128 + 16.0 * 4992 + 2.0 * 16 * 4992 * 128 +
                          3.0 * 16 * 128) / 1e6;
#elif CTREC_W == 4  // DIN, query 32, keys 50 x 32, attention MLP [80, 40, 1]
constexpr auto y = L::din<"din", L::din_config<3>{.hidden_units = {80, 40, 1}, .activation = L::act_relu, .use_weight_norm = false}>(
                       input<"q", 32>, input<"k", 50, 32>).out();
constexpr double mflop = 1.37;
#elif CTREC_W == 5  // DCN matrix, D = 624, 3 layers
constexpr auto y = L::dcn<"dcn", L::dcn_config{.type = L::dcn_type::matrix, .layer_num = 3}, L::mode::predict>(input<"x", 624>).out();
constexpr double mflop = 3 * (2.0 * 624 * 624 + 3.0 * 624) / 1e6;
#elif CTREC_W == 6  // DIEN T = 50, K = 32, GRU 32, AUGRU
constexpr auto y = L::dien<"dien", {.num_units = 32, .att_type = L::agru_att::augru}>(input<"q", 32>, input<"k", 50, 32>).out();
constexpr double mflop = (50.0 * (6.0 * 32 * 32 + 18.0 * 32 * 32) + 2.0 * 32 * 32 + 2.0 * 50 * 32) / 1e6;
#elif CTREC_W == 7  // MMoE, input 512, 8 experts [256, 128], 3 tasks, softmax gates
constexpr auto y = L::mmoe<"mmoe", L::mmoe_config{.num_tasks = 3, .expert_output_dims = {256, 128}, .expert_activations = L::act_relu,
                                                  .num_experts = 8, .use_weight_norm = false},
                           L::mode::predict>(input<"x", 512>).out();
constexpr double mflop = (8 * (2.0 * 512 * 256 + 2.0 * 256 * 128) + 2.0 * 512 * 24 + 2.0 * 3 * 8 * 128) / 1e6;
#endif

using Cpu = program<float, y>;
using Dev = Cpu::with_backend<thrust_backend>;

struct lcg {
    std::uint64_t s = 0x853c49e6748fea9bull;
    float next(float a) {  // uniform [-a, a]
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return a * (static_cast<float>((s >> 40) & 0xffffff) / 8388608.0f - 1.0f);
    }
};

template <class P>
void fill_params(typename P::parameters& p) {
    lcg g;
    for (std::size_t k = 0; k < P::n_params; ++k) {
        const dims s = P::tab.nodes[P::param_ids[k]].shape;
        const std::size_t fan_in = s.rank > 1 ? s.size() / s.d[s.rank - 1] : s.size();
        auto w = p.get(k);
        for (auto& v : w) v = g.next(1.0f / std::sqrt(static_cast<float>(fan_in)));
    }
    p.prepare();
}
std::vector<float> inputs_for(std::size_t k, std::size_t batch) {
    const auto& r = Cpu::tab.nodes[Cpu::input_ids[k]];
    std::vector<float> v(r.shape.size() * (r.batched ? batch : 1));
    lcg g;
    g.s += k;
    for (auto& x : v) x = g.next(1.0f);
    return v;
}

// Output 0 of P at `batch` on device (or host) buffers: returns it on the host; `times` gets the
// wall time of each of `reps` timed runs after 3 warm-ups (each run is synchronous).
template <class P>
std::vector<float> run(const typename P::parameters& p, std::size_t batch, int reps, std::vector<double>* times) {
    std::vector<thrust::device_vector<float>> in(P::n_inputs), out(P::n_outputs);
    typename P::io io;
    for (std::size_t k = 0; k < P::n_inputs; ++k) {
        const std::vector<float> h = inputs_for(k, batch);
        in[k] = thrust::device_vector<float>(h.begin(), h.end());
        io.in[k] = thrust::raw_pointer_cast(in[k].data());
    }
    for (std::size_t r = 0; r < P::n_outputs; ++r) {
        const auto& n = P::tab.nodes[P::tab.roots[r]];
        out[r].resize(n.shape.size() * (n.batched ? batch : 1));
        io.out[r] = thrust::raw_pointer_cast(out[r].data());
    }
    typename P::workspace ws;
    for (int i = 0; i < (times ? 3 : 1); ++i) P::run(p, ws, batch, io);
    for (int i = 0; times && i < reps; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        P::run(p, ws, batch, io);
        times->push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return std::vector<float>(out[0].begin(), out[0].end());
}
// CPU backend: host buffers.
std::vector<float> run_cpu(const Cpu::parameters& p, std::size_t batch) {
    std::vector<std::vector<float>> in(Cpu::n_inputs);
    Cpu::io io;
    for (std::size_t k = 0; k < Cpu::n_inputs; ++k) in[k] = inputs_for(k, batch), io.in[k] = in[k].data();
    std::vector<float> out(Cpu::output_size<0> * (Cpu::output_batched<0> ? batch : 1));
    io.out[0] = out.data();
    for (std::size_t r = 1; r < Cpu::n_outputs; ++r) io.out[r] = out.data();  // forward programs have one root
    Cpu::workspace ws;
    Cpu::run(p, ws, batch, io);
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t B = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 4096;
    const int reps = argc > 2 ? std::atoi(argv[2]) : 30;
    try {
        Cpu::parameters pc;
        Dev::parameters pd;
        fill_params<Cpu>(pc);
        fill_params<Dev>(pd);
        const std::vector<float> want = run_cpu(pc, 64), got = run<Dev>(pd, 64, 0, nullptr);
        double err = 0;
        for (std::size_t i = 0; i < want.size(); ++i)
            err = std::max(err, std::abs(double(got[i]) - want[i]) / std::max(1.0, std::abs(double(want[i]))));
        std::printf("parity W%d %.3g\n", CTREC_W, err);
        std::vector<double> t;
        run<Dev>(pd, B, reps, &t);
        std::sort(t.begin(), t.end());
        std::printf("time W%d ctrec_thrust %zu %.4f %.4f %.4f\n", CTREC_W, B, t[t.size() / 2], t[t.size() * 9 / 10], mflop);
        return err <= 1e-3 ? 0 : 1;
    } catch (const std::exception& e) {
        std::printf("error W%d %s\n", CTREC_W, e.what());
        return 2;
    }
}
