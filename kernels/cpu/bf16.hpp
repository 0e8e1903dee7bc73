#pragma once
// bfloat16 weight storage for scoring (cpu_bf16_backend, kernels/cpu/executor.hpp).
//
// At batch 1 a model like W7 (MMoE) is bound by streaming its float32 weights from the L3
// (bench/README.md); bf16 halves those bytes. The weights are rounded once, to nearest even
// (bf16_round), and the products are float32 FMAs of the rounded value: a bf16 value converts to
// float32 exactly (its 16 bits are the top half of the float's), so the GEMV that reads the
// bf16 copy computes bit for bit what every float32 kernel computes on the rounded float32
// copy. That keeps scoring batch-invariant (gemm.hpp, "Batch invariance"): batch 1 streams
// the halves, larger batches run the usual GEMMs on the rounded floats.
//
// The halves live as raw bytes (a `const std::byte*`): read with vector loads (the intrinsics'
// may-alias types) and memcpy, never through a uint16_t lvalue of float storage.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cpu/gemm.hpp"
#include "cpu/simd.hpp"

namespace ctrec::cpu {

// float32 -> bf16 bits, round to nearest even; NaN stays NaN (quiet), overflow gives infinity.
// (io/half.hpp has the weight files' encoder from double; this one is the kernel's own, on the
// float bits, and tests/test_bf16_weights.cpp checks the two agree: an independent reference.)
inline std::uint16_t bf16_round(float x) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
    return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float bf16_float(std::uint16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }
inline float bf16_at(const std::byte* p, std::size_t i) {
    std::uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return bf16_float(h);
}
// Rounds n floats: `rounded` gets the float32 values (may be `src`), `halves` the bf16 bits.
inline void bf16_round_into(const float* src, std::size_t n, float* rounded, std::byte* halves) {
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint16_t h = bf16_round(src[i]);
        rounded[i] = bf16_float(h);
        std::memcpy(halves + 2 * i, &h, 2);
    }
}

// V::size bf16 values at p as a float batch (exact).
template <class V>
inline V load_bf16(const std::byte* p) {
#if defined(__AVX512F__)
    if constexpr (sizeof(V) == 64)
        return V(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16)));
    else
#endif
#if defined(__AVX2__)
    if constexpr (sizeof(V) == 32)
        return V(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16)));
    else
#endif
#if defined(__SSE2__)
    if constexpr (sizeof(V) == 16)  // zeros as the low halves: the bf16 bits become the float's top half
        return V(_mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)))));
    else
#endif
    {
        alignas(64) float lanes[V::size];
        for (std::size_t l = 0; l < V::size; ++l) lanes[l] = bf16_at(p, l);
        return V::load_aligned(lanes);
    }
}

namespace detail {
// gemv_rows (gemm.hpp) with W read as bf16: the same loop, the same chains, half the bytes.
template <class Epi>
inline void gemv_rows_bf16(const float* A, const std::byte* Bh, float* C, const gemm_args& g, bool acc, const Epi& epi) {
    using V = simd_t<float>;
    constexpr std::size_t W = V::size;
    const std::size_t nv = g.N / W * W;
    if (!acc) std::fill_n(C, g.N, 0.0f);
    auto row = [&](std::size_t k) { return Bh + 2 * static_cast<std::ptrdiff_t>(k) * g.sbk; };
    auto a = [&](std::size_t k) { return A[static_cast<std::ptrdiff_t>(k) * g.sak]; };
    std::size_t k = 0;
    for (; k + 4 <= g.K; k += 4) {
        const float s0 = a(k), s1 = a(k + 1), s2 = a(k + 2), s3 = a(k + 3);
        const V a0(s0), a1(s1), a2(s2), a3(s3);
        const std::byte *b0 = row(k), *b1 = row(k + 1), *b2 = row(k + 2), *b3 = row(k + 3);
        for (std::size_t n = 0; n < nv; n += W) {
            V c = V::load_unaligned(C + n);
            c = simd_fma(a0, load_bf16<V>(b0 + 2 * n), c);
            c = simd_fma(a1, load_bf16<V>(b1 + 2 * n), c);
            c = simd_fma(a2, load_bf16<V>(b2 + 2 * n), c);
            c = simd_fma(a3, load_bf16<V>(b3 + 2 * n), c);
            c.store_unaligned(C + n);
        }
        for (std::size_t n = nv; n < g.N; ++n)
            C[n] = fma_like_simd(s3, bf16_at(b3, n),
                                 fma_like_simd(s2, bf16_at(b2, n), fma_like_simd(s1, bf16_at(b1, n), fma_like_simd(s0, bf16_at(b0, n), C[n]))));
    }
    for (; k < g.K; ++k) {
        const float s0 = a(k);
        const V a0(s0);
        const std::byte* b0 = row(k);
        for (std::size_t n = 0; n < nv; n += W) simd_fma(a0, load_bf16<V>(b0 + 2 * n), V::load_unaligned(C + n)).store_unaligned(C + n);
        for (std::size_t n = nv; n < g.N; ++n) C[n] = fma_like_simd(s0, bf16_at(b0, n), C[n]);
    }
    if constexpr (!Epi::identity) {
        for (std::size_t n = 0; n < nv; n += W) finish_vec(C + n, 0, n, V::load_unaligned(C + n), epi);
        for (std::size_t n = nv; n < g.N; ++n) C[n] = epi.scalar(0, n, C[n]);
    }
}
} // namespace detail

// gemm (gemm.hpp) whose B is held twice: B, the rounded float32 values, and Bh, the same values
// as bf16 with B's strides. One row (scoring one example) streams Bh; anything else runs the
// float32 kernels on B. Both give the same bits (see the top).
template <class T, class Epi = no_epilogue>
inline void gemm_bf16_b(const T* A, const T* B, const std::byte* Bh, T* C, const gemm_args& g, bool accumulate, const Epi& epi = {}) {
    if constexpr (std::is_same_v<T, float>) {
        if (choose_gemm<T>(g) == gemm_kernel::vec_n && g.M == 1 && g.N <= detail::gemv_max_n && g.K >= 4) {
            detail::gemv_rows_bf16(A, Bh, C, g, accumulate, epi);
            return;
        }
    }
    gemm(A, B, C, g, accumulate, epi);
}

} // namespace ctrec::cpu
