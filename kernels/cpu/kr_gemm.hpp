#pragma once
// GEMMs whose A operand is a row-wise Khatri-Rao (face-splitting) product that is never
// stored: A[r, a * kb + b] = P[r, a] * Q[r, b]. CIN's outer products (xDeepFM) are
// exactly this: Z[d, h * N + m] = Xh[d, h] * X0[d, m] feeds a 1x1 convolution. Z would be
// K * H * N values per example (80 K floats for W2's second layer); nothing of it is
// formed here:
//   kr_matmul  C = A W: only a panel of A (one row block x one strip of kappa) exists at a
//              time, formed with vector multiplies, times an L1-resident strip of W.
//   kr_gram    C[(a, b), :] += sum_r Q[r, b] (P[r, a] G[r, :]): the weight gradient, as
//              Q^T (packed once per chunk of rows) times G strips scaled per a.
//   kr_dual    both input gradients in one pass: tiles of dZ = G W^T reduced against Q and P.
// Edge blocks (fewer rows or columns than a register block) go through a local tile.
#include <algorithm>
#include <cstddef>

#include "cpu/gemm.hpp"

namespace ctrec::cpu {

namespace detail {

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
            using V = simd_t<T>;
            constexpr std::size_t W = V::size;
            for (std::size_t t = 0; t < run; ++t) {
                const T* src = base + static_cast<std::ptrdiff_t>(t) * sb;
                T* dst = strip + (k + t) * NB;
                std::size_t j = 0;
                for (; j + W <= nb; j += W) V::load_unaligned(src + j).store_aligned(dst + j);
                std::copy(src + j, src + nb, dst + j);
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

namespace detail {
template <class T>
struct kr_blocking {
    static constexpr std::size_t strip_bytes = 24 * 1024;  // half of a 48 KiB L1 (24 and 48 measured alike)
    // up to this many row blocks W is read in place instead of packed (measured at W2's sizes:
    // 16 rows 420 -> 230 us, 64 rows 1.07 -> 0.81 ms; 1024 rows unchanged)
    static constexpr std::size_t direct_row_blocks = 16;
};

} // namespace detail

// C[r, o] (+)= sum_{a < ka, b < kb} P[r * sp + a] * Q[r * sq + b] * W(a * kb + b, o), r < R, o < O,
// with W(kappa, o) = W[(kappa / kb) * swa + (kappa % kb) * swb + o * swo] and C[r * sc + o].
// A register-blocked GEMM (kernel_n) over a packed panel of the Khatri-Rao rows: for a row
// block and a chunk of kappa, panel[i][(a, b)] = P[r_i, a] * Q[r_i, b] is formed with vector
// multiplies (a scalar times a run of Q's row: about 1% of the FMAs it feeds; measured
// 15-20% faster than summing over b first in a second accumulator set, which spills). W is
// packed in strips of rows (whole a's, or part of one a when kb is deep) for a group of
// column blocks, so it is read row after row; with few rows it is read in place.
template <class T>
inline void kr_matmul(const T* P, std::ptrdiff_t sp, const T* Q, std::ptrdiff_t sq, std::size_t R, std::size_t ka,
                      std::size_t kb, const T* Wp, std::ptrdiff_t swa, std::ptrdiff_t swb, std::ptrdiff_t swo,
                      std::size_t O, T* C, std::ptrdiff_t sc, bool acc, const T* P2 = nullptr, const T* Q2 = nullptr) {
    // with P2 and Q2 (same strides as P and Q) the rows are P[r, a] Q[r, b] + P2[r, a] Q2[r, b]:
    // the tangent dP (*) Q + P (*) dQ of a forward-mode step, as one product
    using V = simd_t<T>;
    using Bk = detail::kr_blocking<T>;
    constexpr int MR = detail::blocking<T>::MR, NV = detail::blocking<T>::NV;
    constexpr std::size_t W = V::size, NB = static_cast<std::size_t>(NV) * W;
    constexpr std::size_t strip_elems = Bk::strip_bytes / sizeof(T);
    // Column blocks are grouped so that one panel feeds as many of them as possible (the
    // panel costs one multiply per element; every column block it feeds adds MR x NV FMAs
    // per element), keeping at least one whole a (or 32 rows) of each in the strip.
    const std::size_t nblocks = (O + NB - 1) / NB;
    const std::size_t min_rows = std::min<std::size_t>(kb, 32);
    const std::size_t group = std::max<std::size_t>(1, std::min(nblocks, strip_elems / (NB * min_rows)));
    const std::size_t strip_rows = strip_elems / (NB * group);
    const std::size_t kbc = std::min(kb, strip_rows);
    const std::size_t achunk = kb <= strip_rows ? std::max<std::size_t>(1, strip_rows / kb) : 1;
    alignas(64) T strip[strip_elems];
    alignas(64) T panel[MR * (strip_elems / NB + W)];
    alignas(64) T tile[MR * NB];
    for (std::size_t g0 = 0; g0 < nblocks; g0 += group) {
        const std::size_t ng = std::min(group, nblocks - g0);
        for (std::size_t a0 = 0, b0 = 0; a0 < ka;) {
            const std::size_t na = kbc == kb ? std::min(achunk, ka - a0) : 1;
            const std::size_t nbk = kbc == kb ? kb : std::min(kbc, kb - b0);
            const std::size_t rows = na * nbk;
            const bool direct = R <= Bk::direct_row_blocks * static_cast<std::size_t>(MR) && swo == 1 &&
                                swb == static_cast<std::ptrdiff_t>(O) && swa == static_cast<std::ptrdiff_t>(kb * O);
            if (!direct)
                for (std::size_t j = 0; j < ng; ++j) {
                    const std::size_t n0 = (g0 + j) * NB;
                    detail::pack_b_split(Wp, kb, swa, swb, swo, a0 * kb + b0, rows, n0, std::min(NB, O - n0),
                                         strip + j * rows * NB, NB);
                }
            const bool accumulate = acc || a0 > 0 || b0 > 0;
            const std::size_t ld = rows;  // panel row stride
            for (std::size_t m0 = 0; m0 < R; m0 += MR) {
                const std::size_t mr = std::min<std::size_t>(MR, R - m0);
                // panel[i][a * nbk + b] = P[m0 + i, a0 + a] * Q[m0 + i, b0 + b]
                for (std::size_t i = 0; i < mr; ++i) {
                    const T* p = P + static_cast<std::ptrdiff_t>(m0 + i) * sp + static_cast<std::ptrdiff_t>(a0);
                    const T* q = Q + static_cast<std::ptrdiff_t>(m0 + i) * sq + static_cast<std::ptrdiff_t>(b0);
                    T* d = panel + i * ld;
                    if (!P2) {
                        for (std::size_t a = 0; a < na; ++a, d += nbk) {
                            const V pa(p[a]);
                            std::size_t b = 0;
                            for (; b + W <= nbk; b += W) (pa * V::load_unaligned(q + b)).store_unaligned(d + b);
                            for (; b < nbk; ++b) d[b] = p[a] * q[b];
                        }
                    } else {
                        const T* p2 = P2 + (p - P);
                        const T* q2 = Q2 + (q - Q);
                        for (std::size_t a = 0; a < na; ++a, d += nbk) {
                            const V pa(p[a]), pa2(p2[a]);
                            std::size_t b = 0;
                            for (; b + W <= nbk; b += W)
                                simd_fma(pa2, V::load_unaligned(q2 + b), pa * V::load_unaligned(q + b)).store_unaligned(d + b);
                            for (; b < nbk; ++b) d[b] = p[a] * q[b] + p2[a] * q2[b];
                        }
                    }
                }
                for (std::size_t j = 0; j < ng; ++j) {
                    const std::size_t n0 = (g0 + j) * NB, nb = std::min(NB, O - n0);
                    const T* st = direct ? Wp + static_cast<std::ptrdiff_t>((a0 * kb + b0) * O + n0) : strip + j * rows * NB;
                    const std::ptrdiff_t sbk = static_cast<std::ptrdiff_t>(direct ? O : NB);
                    T* c = C + static_cast<std::ptrdiff_t>(m0) * sc + static_cast<std::ptrdiff_t>(n0);
                    const gemm_args g{mr, NB, rows, static_cast<std::ptrdiff_t>(ld), 1, sbk, 1, sc, 1};
                    if (nb == NB) {
                        switch (mr) {
                            case 6: if constexpr (MR > 5) detail::kernel_n<6, NV>(panel, st, c, g, 0, 0, accumulate, no_epilogue{}, 0, 0); break;
                            case 5: if constexpr (MR > 4) detail::kernel_n<5, NV>(panel, st, c, g, 0, 0, accumulate, no_epilogue{}, 0, 0); break;
                            case 4: detail::kernel_n<4, NV>(panel, st, c, g, 0, 0, accumulate, no_epilogue{}, 0, 0); break;
                            case 3: detail::kernel_n<3, NV>(panel, st, c, g, 0, 0, accumulate, no_epilogue{}, 0, 0); break;
                            case 2: detail::kernel_n<2, NV>(panel, st, c, g, 0, 0, accumulate, no_epilogue{}, 0, 0); break;
                            default: detail::kernel_n<1, NV>(panel, st, c, g, 0, 0, accumulate, no_epilogue{}, 0, 0); break;
                        }
                        continue;
                    }
                    // a partial column block (zero-padded when packed; in place, only whole
                    // vectors past nb may not be read): vectors of it, then a scalar tail
                    const gemm_args tg{mr, NB, rows, static_cast<std::ptrdiff_t>(ld), 1, sbk, 1, static_cast<std::ptrdiff_t>(NB), 1};
                    const std::size_t nvf = nb / W;
                    auto run = [&](auto nvc) {
                        constexpr int NVc = decltype(nvc)::value;
                        for (std::size_t i = 0; i < mr; ++i)
                            detail::kernel_n<1, NVc>(panel + i * ld, st, tile + i * NB, tg, 0, 0, false, no_epilogue{}, 0, 0);
                    };
                    switch (nvf) {
                        case 3: if constexpr (NV > 3) run(std::integral_constant<int, 3>{}); break;
                        case 2: if constexpr (NV > 2) run(std::integral_constant<int, 2>{}); break;
                        case 1: run(std::integral_constant<int, 1>{}); break;
                        default: break;
                    }
                    for (std::size_t i = 0; i < mr; ++i) {
                        T* cr = c + static_cast<std::ptrdiff_t>(i) * sc;
                        for (std::size_t jj = 0; jj < nb; ++jj) {
                            T v;
                            if (jj < nvf * W) {
                                v = tile[i * NB + jj];
                            } else {
                                v = T(0);
                                for (std::size_t k = 0; k < rows; ++k) v += panel[i * ld + k] * st[static_cast<std::ptrdiff_t>(k) * sbk + static_cast<std::ptrdiff_t>(jj)];
                            }
                            cr[jj] = (accumulate ? cr[jj] : T(0)) + v;
                        }
                    }
                }
            }
            if (kbc == kb) {
                a0 += na;
            } else if ((b0 += nbk) == kb) {
                b0 = 0;
                ++a0;
            }
        }
    }
}

// C[a * kb + b, o] += sum_{r < R} P[r * sp + a] * Q[r * sq + b] * G[r * sg + o]: the weight
// gradient of kr_matmul. For each a, C's rows (a, .) = Q^T . (P[:, a] * G): Q^T is packed
// once per chunk of rows r and reused for every a; the scaled G strip is one vector
// multiply per element, shared by all row blocks of b.
template <class T>
inline void kr_gram(const T* P, std::ptrdiff_t sp, const T* Q, std::ptrdiff_t sq, std::size_t R, std::size_t ka,
                    std::size_t kb, const T* G, std::ptrdiff_t sg, std::size_t O, T* C, bool acc) {
    using V = simd_t<T>;
    constexpr int MR = detail::blocking<T>::MR, NV = detail::blocking<T>::NV;
    constexpr std::size_t W = V::size, NB = static_cast<std::size_t>(NV) * W, KC = 256, BG = 48;
    alignas(64) T qp[((BG + MR - 1) / MR) * MR * KC];
    alignas(64) T strip[KC * NB];
    alignas(64) T tile[MR * NB];
    for (std::size_t n0 = 0; n0 < O; n0 += NB) {
        const std::size_t nb = std::min(NB, O - n0);
        for (std::size_t r0 = 0; r0 < R; r0 += KC) {
            const std::size_t kc = std::min(KC, R - r0);
            for (std::size_t b0 = 0; b0 < kb; b0 += BG) {  // groups of b whose Q^T panels fit qp
                const std::size_t bg = std::min(BG, kb - b0), nblk = (bg + MR - 1) / MR;
                // qp[blk][k][i] = Q[r0 + k, b0 + blk * MR + i] (zero past bg)
                for (std::size_t blk = 0; blk < nblk; ++blk)
                    for (std::size_t k = 0; k < kc; ++k) {
                        const T* q = Q + static_cast<std::ptrdiff_t>(r0 + k) * sq + static_cast<std::ptrdiff_t>(b0 + blk * MR);
                        T* d = qp + (blk * KC + k) * MR;
                        for (std::size_t i = 0; i < static_cast<std::size_t>(MR); ++i) d[i] = blk * MR + i < bg ? q[i] : T(0);
                    }
                for (std::size_t a = 0; a < ka; ++a) {
                    // strip[k][j] = P[r0 + k, a] * G[r0 + k, n0 + j] (zero past nb)
                    for (std::size_t k = 0; k < kc; ++k) {
                        const T s = P[static_cast<std::ptrdiff_t>(r0 + k) * sp + static_cast<std::ptrdiff_t>(a)];
                        const T* g = G + static_cast<std::ptrdiff_t>(r0 + k) * sg + static_cast<std::ptrdiff_t>(n0);
                        T* d = strip + k * NB;
                        std::size_t j = 0;
                        for (; j + W <= nb; j += W) (V(s) * V::load_unaligned(g + j)).store_aligned(d + j);
                        for (; j < nb; ++j) d[j] = s * g[j];
                        for (; j < NB; ++j) d[j] = T(0);
                    }
                    const gemm_args g{MR, NB, kc, 1, MR, static_cast<std::ptrdiff_t>(NB), 1, static_cast<std::ptrdiff_t>(O), 1};
                    for (std::size_t blk = 0; blk < nblk; ++blk) {
                        const std::size_t row0 = a * kb + b0 + blk * MR, mr = std::min<std::size_t>(MR, bg - blk * MR);
                        const T* panel = qp + blk * KC * MR;
                        if (nb == NB) {
                            // kernel_n writes C + (row0 + i) * O + n0 + v * W (only the mr rows it has)
                            switch (mr) {
                                case 6: if constexpr (MR > 5) detail::kernel_n<6, NV>(panel, strip, C, g, row0, n0, true, no_epilogue{}, 0, 0); break;
                                case 5: if constexpr (MR > 4) detail::kernel_n<5, NV>(panel, strip, C, g, row0, n0, true, no_epilogue{}, 0, 0); break;
                                case 4: detail::kernel_n<4, NV>(panel, strip, C, g, row0, n0, true, no_epilogue{}, 0, 0); break;
                                case 3: detail::kernel_n<3, NV>(panel, strip, C, g, row0, n0, true, no_epilogue{}, 0, 0); break;
                                case 2: detail::kernel_n<2, NV>(panel, strip, C, g, row0, n0, true, no_epilogue{}, 0, 0); break;
                                default: detail::kernel_n<1, NV>(panel, strip, C, g, row0, n0, true, no_epilogue{}, 0, 0); break;
                            }
                        } else {
                            const gemm_args tg{MR, NB, kc, 1, MR, static_cast<std::ptrdiff_t>(NB), 1, static_cast<std::ptrdiff_t>(NB), 1};
                            detail::kernel_n<MR, NV>(panel, strip, tile, tg, 0, 0, false, no_epilogue{}, 0, 0);
                            for (std::size_t i = 0; i < mr; ++i)
                                for (std::size_t j = 0; j < nb; ++j) C[(row0 + i) * O + n0 + j] += tile[i * NB + j];
                        }
                    }
                }
            }
        }
    }
    (void)acc;  // the buffer is zeroed before the first tile (program::zero_reducers): always accumulates
}

// Both input gradients of kr_matmul (forward layout, W(kappa, j) = W[kappa * J + j]) in one
// pass, from the output gradient G:
//   dZ[r, kappa] = sum_j G[r, j] W[kappa, j]                   (a register tile, never stored)
//   D[r, a]      += sum_b dZ[r, (a, b)] Q[r, b]                 (d/dP)
//   D[r, ka + b] += sum_a dZ[r, (a, b)] P[r, a]                 (d/dQ)
// D is (R, ka + kb), row stride sd, and must start at zero. One GEMM's worth of FMAs for both
// gradients (separate kr_matmul roles would take two); the reductions run on each finished
// tile as vector dot products and axpys over runs of constant a. J is taken in chunks of at most
// max_dual_j columns (dZ is linear in them: each chunk's tile adds into D).
inline constexpr std::size_t max_dual_j = 256;
template <class T>
inline void kr_dual(const T* P, std::ptrdiff_t sp, const T* Q, std::ptrdiff_t sq, std::size_t R, std::size_t ka,
                    std::size_t kb, const T* Wp, std::size_t J, const T* G, std::ptrdiff_t sg, T* D, std::ptrdiff_t sd) {
    using V = simd_t<T>;
    constexpr int MR = detail::blocking<T>::MR, NV = detail::blocking<T>::NV;
    constexpr std::size_t W = V::size, NB = static_cast<std::size_t>(NV) * W;
    alignas(64) T strip[max_dual_j * NB];
    alignas(64) T tile[MR * NB];
    const std::size_t K = ka * kb;
    for (std::size_t j0 = 0; j0 < J; j0 += max_dual_j) {
        const std::size_t jc = std::min(max_dual_j, J - j0);
        const gemm_args tg{static_cast<std::size_t>(MR), NB, jc, sg, 1, static_cast<std::ptrdiff_t>(NB), 1,
                           static_cast<std::ptrdiff_t>(NB), 1};
        for (std::size_t k0 = 0; k0 < K; k0 += NB) {
            const std::size_t nb = std::min(NB, K - k0);
            // strip[j][c] = W[k0 + c, j0 + j]: rows of W are columns of the strip
            transpose_strided(Wp + k0 * J + j0, nb, jc, J, strip, NB);
            if (nb < NB)
                for (std::size_t j = 0; j < jc; ++j) std::fill(strip + j * NB + nb, strip + (j + 1) * NB, T(0));
            for (std::size_t m0 = 0; m0 < R; m0 += MR) {
                const std::size_t mr = std::min<std::size_t>(MR, R - m0);
                const T* g = G + static_cast<std::ptrdiff_t>(m0) * sg + static_cast<std::ptrdiff_t>(j0);
                switch (mr) {
                    case 6: if constexpr (MR > 5) detail::kernel_n<6, NV>(g, strip, tile, tg, 0, 0, false, no_epilogue{}, 0, 0); break;
                    case 5: if constexpr (MR > 4) detail::kernel_n<5, NV>(g, strip, tile, tg, 0, 0, false, no_epilogue{}, 0, 0); break;
                    case 4: detail::kernel_n<4, NV>(g, strip, tile, tg, 0, 0, false, no_epilogue{}, 0, 0); break;
                    case 3: detail::kernel_n<3, NV>(g, strip, tile, tg, 0, 0, false, no_epilogue{}, 0, 0); break;
                    case 2: detail::kernel_n<2, NV>(g, strip, tile, tg, 0, 0, false, no_epilogue{}, 0, 0); break;
                    default: detail::kernel_n<1, NV>(g, strip, tile, tg, 0, 0, false, no_epilogue{}, 0, 0); break;
                }
                for (std::size_t i = 0; i < mr; ++i) {
                    const std::ptrdiff_t r = static_cast<std::ptrdiff_t>(m0 + i);
                    const T* p = P + r * sp;
                    const T* q = Q + r * sq;
                    T* dp = D + r * sd;
                    T* dq = dp + ka;
                    const T* z = tile + i * NB;
                    std::size_t a = k0 / kb, b = k0 % kb;
                    for (std::size_t pos = 0; pos < nb;) {
                        const std::size_t len = std::min(nb - pos, kb - b);
                        const V pa(p[a]);
                        V dot(T(0));
                        std::size_t t = 0;
                        for (; t + W <= len; t += W) {
                            const V zv = V::load_unaligned(z + pos + t);
                            dot = simd_fma(zv, V::load_unaligned(q + b + t), dot);
                            simd_fma(pa, zv, V::load_unaligned(dq + b + t)).store_unaligned(dq + b + t);
                        }
                        T s = xsimd::hadd(dot);
                        for (; t < len; ++t) {
                            s += z[pos + t] * q[b + t];
                            dq[b + t] += p[a] * z[pos + t];
                        }
                        dp[a] += s;
                        pos += len;
                        b = 0;
                        ++a;
                    }
                }
            }
        }
    }
}

} // namespace ctrec::cpu
