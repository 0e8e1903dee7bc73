#pragma once
// GEMMs whose A operand is a row-wise Khatri-Rao (face-splitting) product that is never
// stored: A[r, a * Kb + b] = P[r, a] * Q[r, b]. CIN's outer products (xDeepFM) are
// exactly this: Z[d, h * N + m] = Xh[d, h] * X0[d, m] feeds a 1x1 convolution. Z would be
// K * H * N values per example (80 K floats for W2's second layer); here only one packed
// panel of it (MR rows x KC) ever exists, built while packing, so the product costs one
// multiply per packed element (1/NB of the FMAs) and no memory traffic.
//
// Both drivers run on packed operands: an A panel (KC x MR, k-major) and a B strip
// (KC x NB, k-major, NB = NV vectors), then the register-blocked kernel of gemm.hpp.
// Edge blocks (fewer than MR rows or NB columns) go through a local tile.
#include <algorithm>
#include <cstddef>

#include "cpu/gemm.hpp"

namespace ctrec::cpu {

namespace detail {

// C[m, n] (+)= sum_k A[m, k] B[k, n] for the packed operands produced by pack_a(m0, mr, k0,
// kc, panel) and pack_b(k0, kc, n0, nb, strip); C row-major with row stride scm.
template <class T, class PackA, class PackB>
inline void packed_gemm(std::size_t M, std::size_t N, std::size_t K, const PackA& pack_a, const PackB& pack_b, T* C,
                        std::ptrdiff_t scm, bool acc) {
    constexpr int MR = blocking<T>::MR, NV = blocking<T>::NV;
    constexpr std::size_t W = simd_t<T>::size, NB = static_cast<std::size_t>(NV) * W, KC = 256;
    alignas(64) T strip[KC * NB];
    alignas(64) T panel[KC * MR];
    alignas(64) T tile[MR * NB];
    for (std::size_t n0 = 0; n0 < N; n0 += NB) {
        const std::size_t nb = std::min(NB, N - n0);
        for (std::size_t k0 = 0; k0 < K; k0 += KC) {
            const std::size_t kc = std::min(KC, K - k0);
            const bool a = acc || k0 > 0;
            pack_b(k0, kc, n0, nb, strip);
            const gemm_args g{M, NB, kc, 1, MR, static_cast<std::ptrdiff_t>(NB), 1, scm, 1};
            for (std::size_t m0 = 0; m0 < M; m0 += MR) {
                const std::size_t mr = std::min<std::size_t>(MR, M - m0);
                pack_a(m0, mr, k0, kc, panel);
                if (mr == MR && nb == NB) {
                    // the kernel writes C + (m0 + r) * scm + n0 + v * W
                    kernel_n<MR, NV>(panel, strip, C, g, m0, n0, a, no_epilogue{}, 0, 0);
                } else {
                    const gemm_args tg{MR, NB, kc, 1, MR, static_cast<std::ptrdiff_t>(NB), 1, static_cast<std::ptrdiff_t>(NB), 1};
                    kernel_n<MR, NV>(panel, strip, tile, tg, 0, 0, false, no_epilogue{}, 0, 0);
                    for (std::size_t i = 0; i < mr; ++i) {
                        T* c = C + static_cast<std::ptrdiff_t>(m0 + i) * scm + static_cast<std::ptrdiff_t>(n0);
                        for (std::size_t j = 0; j < nb; ++j) c[j] = (a ? c[j] : T(0)) + tile[i * NB + j];
                    }
                }
            }
        }
    }
}

// strip[k][j] = W(k0 + k, n0 + j) for W(kappa, n) = W[a * sa + b * sb + n * sn], kappa = a * kb + b;
// columns j >= nb are zero.
template <class T>
inline void pack_b_split(const T* Wp, std::size_t kb, std::ptrdiff_t sa, std::ptrdiff_t sb, std::ptrdiff_t sn,
                         std::size_t k0, std::size_t kc, std::size_t n0, std::size_t nb, T* strip, std::size_t NB) {
    std::size_t a = k0 / kb, b = k0 % kb;
    for (std::size_t k = 0; k < kc;) {
        const T* base = Wp + static_cast<std::ptrdiff_t>(a) * sa + static_cast<std::ptrdiff_t>(b) * sb +
                        static_cast<std::ptrdiff_t>(n0) * sn;
        // a run of kappa with the same a: b .. b + run - 1
        const std::size_t run = std::min(kc - k, kb - b);
        if (sn == 1) {
            for (std::size_t t = 0; t < run; ++t) {
                const T* src = base + static_cast<std::ptrdiff_t>(t) * sb;
                T* dst = strip + (k + t) * NB;
                std::copy_n(src, nb, dst);
                std::fill(dst + nb, dst + NB, T(0));
            }
        } else if (sb == 1) {
            // the run is contiguous along kappa: a blocked transpose of nb rows x run columns
            transpose_strided(base, nb, run, static_cast<std::size_t>(sn), strip + k * NB, NB);
            if (nb < NB)
                for (std::size_t t = 0; t < run; ++t) std::fill(strip + (k + t) * NB + nb, strip + (k + t + 1) * NB, T(0));
        } else {
            for (std::size_t t = 0; t < run; ++t) {
                const T* src = base + static_cast<std::ptrdiff_t>(t) * sb;
                T* dst = strip + (k + t) * NB;
                for (std::size_t j = 0; j < nb; ++j) dst[j] = src[static_cast<std::ptrdiff_t>(j) * sn];
                std::fill(dst + nb, dst + NB, T(0));
            }
        }
        k += run;
        b = 0;
        ++a;
    }
}

} // namespace detail

// C[r, o] (+)= sum_{a < ka, b < kb} P[r * sp + a] * Q[r * sq + b] * W(a * kb + b, o), r < R, o < O,
// with W(kappa, o) = W[(kappa / kb) * swa + (kappa % kb) * swb + o * swo] and C[r * sc + o].
template <class T>
inline void kr_matmul(const T* P, std::ptrdiff_t sp, const T* Q, std::ptrdiff_t sq, std::size_t R, std::size_t ka,
                      std::size_t kb, const T* Wp, std::ptrdiff_t swa, std::ptrdiff_t swb, std::ptrdiff_t swo,
                      std::size_t O, T* C, std::ptrdiff_t sc, bool acc) {
    constexpr int MR = detail::blocking<T>::MR;
    constexpr std::size_t NB = static_cast<std::size_t>(detail::blocking<T>::NV) * simd_t<T>::size;
    auto pack_a = [&](std::size_t m0, std::size_t mr, std::size_t k0, std::size_t kc, T* panel) {
        std::size_t a = k0 / kb, b = k0 % kb;
        for (std::size_t k = 0; k < kc; ++k) {
            for (std::size_t i = 0; i < mr; ++i) {
                const std::ptrdiff_t r = static_cast<std::ptrdiff_t>(m0 + i);
                panel[k * MR + i] = P[r * sp + static_cast<std::ptrdiff_t>(a)] * Q[r * sq + static_cast<std::ptrdiff_t>(b)];
            }
            for (std::size_t i = mr; i < static_cast<std::size_t>(MR); ++i) panel[k * MR + i] = T(0);
            if (++b == kb) b = 0, ++a;
        }
    };
    auto pack_b = [&](std::size_t k0, std::size_t kc, std::size_t n0, std::size_t nb, T* strip) {
        detail::pack_b_split(Wp, kb, swa, swb, swo, k0, kc, n0, nb, strip, NB);
    };
    detail::packed_gemm(R, O, ka * kb, pack_a, pack_b, C, sc, acc);
}

// C[a * kb + b, o] (+)= sum_{r < R} P[r * sp + a] * Q[r * sq + b] * G[r * sg + o]: the weight
// gradient of kr_matmul (the Khatri-Rao product transposed, times the output gradient).
template <class T>
inline void kr_gram(const T* P, std::ptrdiff_t sp, const T* Q, std::ptrdiff_t sq, std::size_t R, std::size_t ka,
                    std::size_t kb, const T* G, std::ptrdiff_t sg, std::size_t O, T* C, bool acc) {
    constexpr int MR = detail::blocking<T>::MR;
    constexpr std::size_t NB = static_cast<std::size_t>(detail::blocking<T>::NV) * simd_t<T>::size;
    auto pack_a = [&](std::size_t m0, std::size_t mr, std::size_t k0, std::size_t kc, T* panel) {
        std::size_t as[MR], bs[MR];
        for (std::size_t i = 0; i < mr; ++i) as[i] = (m0 + i) / kb, bs[i] = (m0 + i) % kb;
        for (std::size_t k = 0; k < kc; ++k) {
            const T* p = P + static_cast<std::ptrdiff_t>(k0 + k) * sp;
            const T* q = Q + static_cast<std::ptrdiff_t>(k0 + k) * sq;
            for (std::size_t i = 0; i < mr; ++i) panel[k * MR + i] = p[as[i]] * q[bs[i]];
            for (std::size_t i = mr; i < static_cast<std::size_t>(MR); ++i) panel[k * MR + i] = T(0);
        }
    };
    auto pack_b = [&](std::size_t k0, std::size_t kc, std::size_t n0, std::size_t nb, T* strip) {
        for (std::size_t k = 0; k < kc; ++k) {
            const T* src = G + static_cast<std::ptrdiff_t>(k0 + k) * sg + static_cast<std::ptrdiff_t>(n0);
            std::copy_n(src, nb, strip + k * NB);
            std::fill(strip + k * NB + nb, strip + (k + 1) * NB, T(0));
        }
    };
    detail::packed_gemm(ka * kb, O, R, pack_a, pack_b, C, static_cast<std::ptrdiff_t>(O), acc);
}

} // namespace ctrec::cpu
