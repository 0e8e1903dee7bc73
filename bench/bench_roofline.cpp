// This machine's single-core limits, measured with our own kernels:
//   BM_fma_*   FP32 FMA throughput (counter FLOPS, in FLOP/s) with independent accumulator
//              chains: AVX-512 (16 lanes), AVX2+FMA (8 lanes), and xsimd's default batch
//              (the vector type ctrec's kernels use). The accumulator count is the argument.
//   BM_read    read bandwidth (counter bytes_per_second) over a buffer of the given size in
//              KiB, read again and again: L1 / L2 / L3 / DRAM as the size grows.
//
//   ./bench_roofline --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>

#include "bench_common.hpp"

namespace {

constexpr std::size_t kChunk = 1 << 14;  // FMA iterations per benchmark iteration

template <float (*Kernel)(std::size_t), int NACC, int Lanes>
void BM_fma(benchmark::State& state) {
    float sink = 0;
    for (auto _ : state) {
        sink += Kernel(kChunk);
        benchmark::DoNotOptimize(sink);
    }
    const double flops = double(kChunk) * NACC * Lanes * 2.0;
    state.counters["FLOPS"] = benchmark::Counter(flops * double(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["accumulators"] = NACC;
    state.counters["lanes"] = Lanes;
}

#if defined(__AVX512F__)
BENCHMARK(BM_fma<bench::fma_chain_avx512<8>, 8, 16>)->Name("BM_fma_avx512/8");
BENCHMARK(BM_fma<bench::fma_chain_avx512<12>, 12, 16>)->Name("BM_fma_avx512/12");
BENCHMARK(BM_fma<bench::fma_chain_avx512<16>, 16, 16>)->Name("BM_fma_avx512/16");
BENCHMARK(BM_fma<bench::fma_chain_avx512<24>, 24, 16>)->Name("BM_fma_avx512/24");
#endif
#if defined(__AVX2__) && defined(__FMA__)
BENCHMARK(BM_fma<bench::fma_chain_avx2<8>, 8, 8>)->Name("BM_fma_avx2/8");
BENCHMARK(BM_fma<bench::fma_chain_avx2<12>, 12, 8>)->Name("BM_fma_avx2/12");
#endif
BENCHMARK(BM_fma<bench::fma_chain_xsimd<12>, 12, int(bench::xsimd_lanes)>)->Name("BM_fma_xsimd/12");
BENCHMARK(BM_fma<bench::fma_chain_xsimd<16>, 16, int(bench::xsimd_lanes)>)->Name("BM_fma_xsimd/16");

// ---- read bandwidth ----------------------------------------------------------------------
struct aligned_free {
    void operator()(float* p) const { std::free(p); }
};

// Sum of n floats (n a multiple of 128), 8 independent vector accumulators.
[[gnu::noinline]] float read_sum(const float* p, std::size_t n) {
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (std::size_t i = 0; i < n; i += 128) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
        a4 = _mm512_add_ps(a4, _mm512_load_ps(p + i + 64));
        a5 = _mm512_add_ps(a5, _mm512_load_ps(p + i + 80));
        a6 = _mm512_add_ps(a6, _mm512_load_ps(p + i + 96));
        a7 = _mm512_add_ps(a7, _mm512_load_ps(p + i + 112));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    return _mm512_reduce_add_ps(s);
#else
    using V = xsimd::batch<float>;
    constexpr std::size_t W = V::size;
    V a[8];
    for (auto& v : a) v = V(0.f);
    for (std::size_t i = 0; i < n; i += 8 * W)
        for (std::size_t j = 0; j < 8; ++j) a[j] += V::load_aligned(p + i + j * W);
    V s = a[0];
    for (std::size_t j = 1; j < 8; ++j) s += a[j];
    return xsimd::hadd(s);
#endif
}

void BM_read(benchmark::State& state) {
    const std::size_t bytes = static_cast<std::size_t>(state.range(0)) * 1024;
    const std::size_t n = bytes / sizeof(float) / 128 * 128;
    std::unique_ptr<float, aligned_free> buf(static_cast<float*>(std::aligned_alloc(64, n * sizeof(float))));
    if (!buf) {
        state.SkipWithError("allocation failed");
        return;
    }
    for (std::size_t i = 0; i < n; ++i) buf.get()[i] = float(i & 7) * 0.125f;
    float sink = 0;
    for (auto _ : state) {
        sink += read_sum(buf.get(), n);
        benchmark::DoNotOptimize(sink);
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(n * sizeof(float)));
    state.counters["KiB"] = double(bytes) / 1024.0;
}
// 16 KiB .. 1 GiB (KiB units). L1d here 48 KiB, L2 2 MiB per core, L3 shared (large on
// this host), DRAM beyond.
BENCHMARK(BM_read)
    ->Arg(16)->Arg(32)->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->Arg(1536)->Arg(4 << 10)->Arg(8 << 10)
    ->Arg(16 << 10)->Arg(32 << 10)->Arg(64 << 10)->Arg(128 << 10)->Arg(512 << 10)->Arg(1 << 20);

}  // namespace

int main(int argc, char** argv) {
    bench::force_single_thread(argc, argv);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("xsimd_arch", xsimd::default_arch::name());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
