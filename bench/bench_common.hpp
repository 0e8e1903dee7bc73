#pragma once
// Shared pieces of the ctrec benchmarks: single-thread environment, the FP32 FMA
// peak kernels (also used by bench_roofline), and latency percentiles.
#include <dlfcn.h>
#include <immintrin.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <xsimd/xsimd.hpp>

namespace bench {

// ---- one thread everywhere ----------------------------------------------------------------
// OpenBLAS and libgomp read OPENBLAS_NUM_THREADS / OMP_NUM_THREADS when they are loaded,
// i.e. before main() runs in a binary linked against LibTorch. So: set them, and if they
// were not already set when the process started, re-execute the binary once so that every
// library sees them from its start.
//
// OpenBLAS's core: Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not know recent CPUs (e.g.
// Intel family 6 model 207, Emerald Rapids) and then falls back to its SSE3 "Prescott"
// kernels, ~4-5x slower than its AVX-512 ones: LibTorch's matrix products would be measured
// on the wrong kernels. When the loaded OpenBLAS reports such a fallback core and the CPU has
// AVX-512 (AVX2), OPENBLAS_CORETYPE=SKYLAKEX (HASWELL) is set for the re-executed process.
// An OPENBLAS_CORETYPE already in the environment is left alone;
// CTREC_BENCH_KEEP_OPENBLAS_CORE=1 disables the override.
inline const char* openblas_core() {
    using fn = char* (*)();
    auto f = reinterpret_cast<fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
    return f ? f() : nullptr;
}

inline void force_single_thread(int argc, char** argv) {
    (void)argc;
    const char* vars[] = {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"};
    bool changed = false;
    for (const char* v : vars) {
        const char* cur = std::getenv(v);
        if (!cur || std::strcmp(cur, "1") != 0) {
            setenv(v, "1", 1);
            changed = true;
        }
    }
    if (const char* core = openblas_core();
        core && !std::getenv("OPENBLAS_CORETYPE") && !std::getenv("CTREC_BENCH_KEEP_OPENBLAS_CORE")) {
        const bool fallback = !std::strcmp(core, "Prescott") || !std::strcmp(core, "Core2") ||
                              !std::strcmp(core, "Nehalem") || !std::strcmp(core, "Katmai") ||
                              !std::strcmp(core, "Atom") || !std::strcmp(core, "Unknown");
        const char* better = nullptr;
        if (fallback && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
            better = "SKYLAKEX";
        else if (fallback && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            better = "HASWELL";
        if (better) {
            setenv("OPENBLAS_CORETYPE", better, 1);
            setenv("CTREC_BENCH_OPENBLAS_DETECTED", core, 1);
            changed = true;
        }
    }
    if (changed && !std::getenv("CTREC_BENCH_REEXEC")) {
        setenv("CTREC_BENCH_REEXEC", "1", 1);
        execv("/proc/self/exe", argv);  // returns only on failure: carry on with setenv alone
    }
}

// ---- FP32 FMA peak -----------------------------------------------------------------------
// acc = acc * a + b on NACC independent vector accumulators: enough independent chains to
// cover FMA latency (4 cycles) x FMA ports (2). The values converge (|a| < 1), so no
// overflow or denormals. FLOPs = iters * NACC * lanes * 2.
#if defined(__AVX512F__)
template <int NACC>
[[gnu::noinline]] float fma_chain_avx512(std::size_t iters) {
    __m512 acc[NACC];
    for (int j = 0; j < NACC; ++j) acc[j] = _mm512_set1_ps(float(j));
    __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
    // keep a and b opaque so the chain cannot be folded
    asm volatile("" : "+v"(a), "+v"(b));
    for (std::size_t i = 0; i < iters; ++i) {
#pragma GCC unroll 32
        for (int j = 0; j < NACC; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
    }
    __m512 s = acc[0];
    for (int j = 1; j < NACC; ++j) s = _mm512_add_ps(s, acc[j]);
    return _mm512_reduce_add_ps(s);
}
#endif

#if defined(__AVX2__) && defined(__FMA__)
template <int NACC>
[[gnu::noinline]] float fma_chain_avx2(std::size_t iters) {
    __m256 acc[NACC];
    for (int j = 0; j < NACC; ++j) acc[j] = _mm256_set1_ps(float(j));
    __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
    asm volatile("" : "+x"(a), "+x"(b));
    for (std::size_t i = 0; i < iters; ++i) {
#pragma GCC unroll 32
        for (int j = 0; j < NACC; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
    }
    __m256 s = acc[0];
    for (int j = 1; j < NACC; ++j) s = _mm256_add_ps(s, acc[j]);
    alignas(32) float l[8];
    _mm256_store_ps(l, s);
    float t = 0;
    for (float v : l) t += v;
    return t;
}
#endif

// The same chain on xsimd's default batch (the vector type ctrec's kernels use).
template <int NACC>
[[gnu::noinline]] float fma_chain_xsimd(std::size_t iters) {
    using V = xsimd::batch<float>;
    V acc[NACC];
    for (int j = 0; j < NACC; ++j) acc[j] = V(float(j));
    typename V::register_type ra = V(0.9999999f), rb = V(1e-7f);
    asm volatile("" : "+v"(ra), "+v"(rb));  // opaque constants: the chain cannot be folded
    const V a(ra), b(rb);
    for (std::size_t i = 0; i < iters; ++i) {
#pragma GCC unroll 32
        for (int j = 0; j < NACC; ++j) acc[j] = xsimd::fma(acc[j], a, b);
    }
    V s = acc[0];
    for (int j = 1; j < NACC; ++j) s += acc[j];
    return xsimd::hadd(s);
}

inline constexpr std::size_t xsimd_lanes = xsimd::batch<float>::size;

// Quick in-process peak (FLOP/s): best of many short runs of the widest FMA chain.
inline double measure_fma_peak(double seconds = 0.15) {
    using clk = std::chrono::steady_clock;
#if defined(__AVX512F__)
    constexpr int nacc = 24;
    constexpr std::size_t lanes = 16;
    auto kern = [](std::size_t n) { return fma_chain_avx512<nacc>(n); };
#elif defined(__AVX2__) && defined(__FMA__)
    constexpr int nacc = 12;
    constexpr std::size_t lanes = 8;
    auto kern = [](std::size_t n) { return fma_chain_avx2<nacc>(n); };
#else
    constexpr int nacc = 16;
    constexpr std::size_t lanes = xsimd_lanes;
    auto kern = [](std::size_t n) { return fma_chain_xsimd<nacc>(n); };
#endif
    const std::size_t chunk = 1 << 15;
    double best = 0;
    volatile float sink = 0;
    auto t_end = clk::now() + std::chrono::duration<double>(seconds);
    while (clk::now() < t_end) {
        auto t0 = clk::now();
        sink = sink + kern(chunk);
        double dt = std::chrono::duration<double>(clk::now() - t0).count();
        best = std::max(best, double(chunk) * nacc * lanes * 2.0 / dt);
    }
    return best;
}

// ---- latency percentiles ------------------------------------------------------------------
inline double percentile(std::vector<double>& v, double q) {
    if (v.empty()) return 0;
    std::size_t k = static_cast<std::size_t>(q * double(v.size() - 1) + 0.5);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
}


// ---- shared by the workload benchmarks ----------------------------------------------------
// FLOP/s the peak_frac counters divide by (measured at start-up or given by --peak_gflops).
inline double g_peak = 0;

// Deterministic data for weights and inputs.
struct lcg {
    std::uint64_t s;
    float next() {  // uniform in [-1, 1)
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return float((s >> 40) & 0xffffff) / float(1 << 23) - 1.0f;
    }
};


// CPU time of the calling thread (seconds): on a machine shared with other work the wall time
// of an iteration includes time spent descheduled, this does not.
inline double thread_cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Manual timing around each call: FLOP/s, fraction of peak, p50 / p99 latency (wall), the mean
// thread CPU time per call (cpu_mean_us), batch, items.
// The thread CPU time is read once around the whole loop, not around each call: reading it is a
// system call, and on the project's VM (KPTI, a paravirtualised guest) the first call after a
// system call streams its weights ~25% slower (W7 at B = 1: the 4 MB first layer 40.5 -> 50.8 us,
// the 8 second layers 10.0 -> 13.7 us; bench/README.md "W7 at B = 1 without system calls"),
// which Eigen and LibTorch pay alike. Call latency is then measured between requests that make no
// system call; a server's receive path adds that cost to every engine.
template <class F>
inline void timed(benchmark::State& st, double flop_per_iter, std::size_t batch, F&& f) {
    using clk = std::chrono::steady_clock;
    std::vector<double> lat;
    const auto cap = static_cast<std::size_t>(std::min<benchmark::IterationCount>(st.max_iterations, 1 << 22));
    lat.reserve(cap);
    double c0 = 0;
    bool started = false;
    for (auto _ : st) {
        if (!started) c0 = thread_cpu_seconds(), started = true;
        auto t0 = clk::now();
        f();
        auto t1 = clk::now();
        double dt = std::chrono::duration<double>(t1 - t0).count();
        st.SetIterationTime(dt);
        if (lat.size() < lat.capacity()) lat.push_back(dt);
    }
    const double cpu_total = thread_cpu_seconds() - c0;
    const double it = double(st.iterations());
    st.counters["flops"] = benchmark::Counter(flop_per_iter * it, benchmark::Counter::kIsRate);
    st.counters["peak_frac"] = benchmark::Counter(flop_per_iter * it / g_peak, benchmark::Counter::kIsRate);
    st.counters["p50_us"] = percentile(lat, 0.50) * 1e6;
    st.counters["p99_us"] = percentile(lat, 0.99) * 1e6;
    st.counters["cpu_mean_us"] = it > 0 ? cpu_total / it * 1e6 : 0.0;
    st.counters["B"] = double(batch);
    st.SetItemsProcessed(static_cast<std::int64_t>(it) * static_cast<std::int64_t>(batch));
}


}  // namespace bench
