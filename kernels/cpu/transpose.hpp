#pragma once
// Matrix transpose dst (C x R) = src (R x C)^T, both row-major and dense. Used for
// hoisted transposes (W^T for dy . W^T), which run once per parameter change but in
// training that is every step, so the copy has to go at memory speed: 8 x 8 float blocks
// are transposed in AVX registers (rows read and written whole), and a scalar blocked
// loop covers double, edges and builds without AVX.
#include <algorithm>
#include <cstddef>

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace ctrec::cpu {

namespace detail {
#if defined(__AVX__)
inline void transpose8x8(const float* src, std::size_t ls, float* dst, std::size_t ld) {
    __m256 r0 = _mm256_loadu_ps(src + 0 * ls), r1 = _mm256_loadu_ps(src + 1 * ls);
    __m256 r2 = _mm256_loadu_ps(src + 2 * ls), r3 = _mm256_loadu_ps(src + 3 * ls);
    __m256 r4 = _mm256_loadu_ps(src + 4 * ls), r5 = _mm256_loadu_ps(src + 5 * ls);
    __m256 r6 = _mm256_loadu_ps(src + 6 * ls), r7 = _mm256_loadu_ps(src + 7 * ls);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst + 0 * ld, _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_storeu_ps(dst + 1 * ld, _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_storeu_ps(dst + 2 * ld, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_storeu_ps(dst + 3 * ld, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_storeu_ps(dst + 4 * ld, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_storeu_ps(dst + 5 * ld, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_storeu_ps(dst + 6 * ld, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_storeu_ps(dst + 7 * ld, _mm256_permute2f128_ps(s3, s7, 0x31));
}
#endif
} // namespace detail

// dst (C x R, row stride ld) = src (R x C, row stride ls)^T
// (GCC 12 warns that an iteration count near 2^62 of the tail loop would overflow the
// address space; the counts are bounded by R and C, so the warning is a false positive.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Waggressive-loop-optimizations"
#endif
template <class T>
inline void transpose_strided(const T* src, std::size_t R, std::size_t C, std::size_t ls, T* dst, std::size_t ld) {
    constexpr std::size_t BS = 32;  // a 32 x 32 block: 4 KiB in, 4 KiB out, both in L1
    for (std::size_t i0 = 0; i0 < R; i0 += BS)
        for (std::size_t j0 = 0; j0 < C; j0 += BS) {
            const std::size_t ie = std::min(R, i0 + BS), je = std::min(C, j0 + BS);
            std::size_t i = i0;
#if defined(__AVX__)
            if constexpr (sizeof(T) == 4) {
                for (; i + 8 <= ie; i += 8) {
                    std::size_t j = j0;
                    for (; j + 8 <= je; j += 8) detail::transpose8x8(src + i * ls + j, ls, dst + j * ld + i, ld);
                    for (; j < je; ++j)
                        for (std::size_t ii = i; ii < i + 8; ++ii) dst[j * ld + ii] = src[ii * ls + j];
                }
            }
#endif
            for (; i < ie; ++i)
                for (std::size_t j = j0; j < je; ++j) dst[j * ld + i] = src[i * ls + j];
        }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

template <class T>
inline void transpose(const T* src, std::size_t R, std::size_t C, T* dst) {
    transpose_strided(src, R, C, C, dst, R);
}

} // namespace ctrec::cpu
