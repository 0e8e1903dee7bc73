#pragma once
// Strided GEMM micro-kernels over xsimd batches:
//   C[m, n] = (C[m, n] if accumulate) + sum_k A[m*sam + k*sak] * B[k*sbk + n*sbn]   (see "Batch invariance")
// then `epi` (a fused elementwise epilogue) on each result before the store.
//   vec-N  (sbn == 1, scn == 1): register-blocked MR x NV vectors, A broadcast,
//          B rows streamed; the main kernel (x.W, x^T.dy).
//   dot    (sak == 1, sbk == 1): blocked dot products along contiguous k (dy.W^T).
//   scalar fallback for any other strides.
// Epilogue contract: Epi::identity, Epi::vector_ok, epi.vec(m, n, V), epi.scalar(m, n, T).
//
// Batch invariance: C[m, n] is the same chain c = fma(A[m, k], B[k, n], c) over k = 0 .. K-1
// whatever M is and whichever kernel, row block, column window or k block computes it: an
// accumulating call (acc, and every k block after the first) starts the chain from C's value
// instead of adding a separate partial sum to it, and the scalar paths use fma_like_simd, the
// rounding of the vector FMA (cpu/simd.hpp). A kernel chosen by M (gemv_rows for one row)
// computes the same chains. So an example's results are
// bit-identical whatever batch (size, position, tile) it is scored in; the batch is M.
// The dot kernel (contiguous k on both sides) sums in SIMD lanes: a different, also fixed order.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "cpu/simd.hpp"
#include "cpu/transpose.hpp"

namespace ctrec::cpu {

struct gemm_args {
    std::size_t M, N, K;
    std::ptrdiff_t sam, sak, sbk, sbn, scm, scn;
};

struct no_epilogue {
    static constexpr bool identity = true;
    static constexpr bool vector_ok = true;
    template <class V> V vec(std::size_t, std::size_t, V v) const { return v; }
    template <class T> T scalar(std::size_t, std::size_t, T v) const { return v; }
};

namespace detail {

template <class T>
struct blocking {
    using V = simd_t<T>;
    // 32 vector registers on AVX-512 (and NEON): 6x4 accumulators; 16 elsewhere: 4x3.
    static constexpr bool wide = sizeof(V) >= 64;
    static constexpr int MR = wide ? 6 : 4;
    static constexpr int NV = wide ? 4 : 3;
};

template <class T, class Epi>
inline void finish_vec(T* cp, std::size_t m, std::size_t n, simd_t<T> v, const Epi& epi) {
    using V = simd_t<T>;
    if constexpr (!Epi::identity) {
        if constexpr (Epi::vector_ok) {
            v = epi.vec(m, n, v);
        } else {
            alignas(64) T lanes[V::size];
            v.store_aligned(lanes);
            for (std::size_t l = 0; l < V::size; ++l) lanes[l] = epi.scalar(m, n + l, lanes[l]);
            v = V::load_aligned(lanes);
        }
    }
    v.store_unaligned(cp);
}

// A's rows are read from row am0 (the packed panel starts at 0), C's and the epilogue's at m0.
template <int MR, int NV, class T, class Epi>
inline void kernel_n(const T* A, const T* B, T* C, const gemm_args& g, std::size_t m0, std::size_t n0, bool acc,
                     const Epi& epi, std::size_t am0, std::size_t bn0) {
    using V = simd_t<T>;
    constexpr std::size_t W = V::size;
    V c[MR][NV];
    for (int r = 0; r < MR; ++r)  // accumulating: the chain continues from C (see the top)
        for (int v = 0; v < NV; ++v)
            c[r][v] = acc ? V::load_unaligned(C + static_cast<std::ptrdiff_t>(m0 + r) * g.scm + n0 + v * W) : V(T(0));
    const T* a = A + static_cast<std::ptrdiff_t>(am0) * g.sam;
    const T* b = B + bn0;
    for (std::size_t k = 0; k < g.K; ++k) {
        V bv[NV];
        const T* bk = b + static_cast<std::ptrdiff_t>(k) * g.sbk;
        for (int v = 0; v < NV; ++v) bv[v] = V::load_unaligned(bk + v * W);
        const T* ak = a + static_cast<std::ptrdiff_t>(k) * g.sak;
        for (int r = 0; r < MR; ++r) {
            V av(ak[r * g.sam]);
            for (int v = 0; v < NV; ++v) c[r][v] = simd_fma(av, bv[v], c[r][v]);
        }
    }
    for (int r = 0; r < MR; ++r)
        for (int v = 0; v < NV; ++v)
            finish_vec(C + static_cast<std::ptrdiff_t>(m0 + r) * g.scm + n0 + v * W, m0 + r, n0 + v * W, c[r][v], epi);
}

// The last g.N % W columns (fewer than one vector) from a K x W panel of them, zero padded
// (pack_b_tail): one vector FMA per row and k instead of W scalar ones. Only the real
// columns are stored (the next row or another buffer follows them).
template <int MR, class T, class Epi>
inline void kernel_tail(const T* A, const T* tail, T* C, const gemm_args& g, std::size_t m0, std::size_t n0,
                        std::size_t rem, bool acc, const Epi& epi, std::size_t am0) {
    using V = simd_t<T>;
    constexpr std::size_t W = V::size;
    V c[MR];
    for (int r = 0; r < MR; ++r) {
        alignas(64) T lanes[W] = {};
        const T* cp = C + static_cast<std::ptrdiff_t>(m0 + r) * g.scm + n0;
        if (acc)
            for (std::size_t l = 0; l < rem; ++l) lanes[l] = cp[l];
        c[r] = V::load_aligned(lanes);
    }
    const T* a = A + static_cast<std::ptrdiff_t>(am0) * g.sam;
    for (std::size_t k = 0; k < g.K; ++k) {
        const V bv = V::load_aligned(tail + k * W);
        const T* ak = a + static_cast<std::ptrdiff_t>(k) * g.sak;
        for (int r = 0; r < MR; ++r) c[r] = simd_fma(V(ak[r * g.sam]), bv, c[r]);
    }
    for (int r = 0; r < MR; ++r) {
        alignas(64) T lanes[W];
        c[r].store_aligned(lanes);
        T* cp = C + static_cast<std::ptrdiff_t>(m0 + r) * g.scm + n0;
        for (std::size_t l = 0; l < rem; ++l) cp[l] = Epi::identity ? lanes[l] : epi.scalar(m0 + r, n0 + l, lanes[l]);
    }
}
inline constexpr std::size_t max_tail_k = 1024;  // the tail panel lives on the stack (32 KiB of float)
template <class T>
inline void pack_b_tail(const T* B, const gemm_args& g, std::size_t n0, T* tail) {
    constexpr std::size_t W = simd_t<T>::size;
    const std::size_t rem = g.N - n0;
    for (std::size_t k = 0; k < g.K; ++k) {
        const T* bk = B + static_cast<std::ptrdiff_t>(k) * g.sbk + n0;
        for (std::size_t l = 0; l < W; ++l) tail[k * W + l] = l < rem ? bk[l] : T(0);
    }
}

template <int MR, class T, class Epi>
inline void rows_n(const T* A, const T* B, T* C, const gemm_args& g, std::size_t m0, bool acc, const Epi& epi,
                   std::size_t am0, const T* tail = nullptr) {
    using V = simd_t<T>;
    constexpr std::size_t W = V::size;
    // one row (B = 1, weight streaming): a long contiguous run of each weight row per k
    constexpr int NV = MR == 1 ? (blocking<T>::wide ? 16 : 8) : blocking<T>::NV;
    std::size_t n = 0;
    for (; n + NV * W <= g.N; n += NV * W) kernel_n<MR, NV>(A, B, C, g, m0, n, acc, epi, am0, n);
    for (; n + W <= g.N; n += W) kernel_n<MR, 1>(A, B, C, g, m0, n, acc, epi, am0, n);
    if (n < g.N && !acc && g.N >= W) {
        // the last W columns as one full vector window: the columns it shares with the
        // blocks above are recomputed with the same FMA sequence and stored again with the
        // same value, and the epilogue runs in SIMD with every read in bounds (a step's
        // output never shares a buffer with its operands: plan.hpp's liveness)
        kernel_n<MR, 1>(A, B, C, g, m0, g.N - W, acc, epi, am0, g.N - W);
        return;
    }
    if (n < g.N && tail) {  // accumulating into C: each column exactly once
        kernel_tail<MR>(A, tail, C, g, m0, n, g.N - n, acc, epi, am0);
        return;
    }
    for (; n < g.N; ++n)  // fewer than W columns left, no panel of them
        for (int r = 0; r < MR; ++r) {
            T* cp = C + static_cast<std::ptrdiff_t>(m0 + r) * g.scm + n;
            T s = acc ? *cp : T(0);
            for (std::size_t k = 0; k < g.K; ++k)
                s = fma_like_simd(A[static_cast<std::ptrdiff_t>(am0 + r) * g.sam + static_cast<std::ptrdiff_t>(k) * g.sak],
                                  B[static_cast<std::ptrdiff_t>(k) * g.sbk + n], s);
            *cp = Epi::identity ? s : epi.scalar(m0 + r, n, s);
        }
}

// Packs the MR rows of A starting at m0 as a K x MR panel (k-major): the kernel then
// reads its broadcasts from one contiguous block. Used when A is strided along k (e.g.
// x^T . dy, where k is the batch and a row of x^T sits at the stride of a whole example):
// unpacked, every k step would touch a new cache line, and lines at that stride fall into
// few L1 sets and evict each other.
template <int MR, class T>
inline void pack_a(const T* A, const gemm_args& g, std::size_t m0, T* panel) {
    const T* a = A + static_cast<std::ptrdiff_t>(m0) * g.sam;
    for (std::size_t k = 0; k < g.K; ++k) {
        const T* ak = a + static_cast<std::ptrdiff_t>(k) * g.sak;
        for (int r = 0; r < MR; ++r) panel[k * MR + r] = ak[r * g.sam];
    }
}
inline constexpr std::size_t max_packed_k = 512;

template <class T, class Epi>
inline void gemm_vec_n(const T* A, const T* B, T* C, const gemm_args& g, bool acc, const Epi& epi) {
    constexpr int MR = blocking<T>::MR;
    constexpr std::size_t W = simd_t<T>::size;
    // columns past the last whole vector, when accumulating into C (else rows_n runs an
    // overlapping full window): packed once, zero padded, for every row block
    alignas(64) T tail_panel[max_tail_k * W];
    const T* tail = nullptr;
    if (acc && g.N % W && g.M > 1 && g.K <= max_tail_k) {
        pack_b_tail(B, g, g.N / W * W, tail_panel);
        tail = tail_panel;
    }
    std::size_t m = 0;
    if (g.sak != 1 && g.K <= max_packed_k && g.N >= blocking<T>::NV * simd_t<T>::size) {
        alignas(64) T panel[max_packed_k * MR];
        const gemm_args pg{g.M, g.N, g.K, 1, MR, g.sbk, g.sbn, g.scm, g.scn};
        for (; m + MR <= g.M; m += MR) {
            pack_a<MR>(A, g, m, panel);
            // the panel holds rows m .. m+MR-1 as its rows 0 .. MR-1 (sam = 1, sak = MR)
            rows_n<MR>(panel, B, C, pg, m, acc, epi, 0, tail);
        }
    }
    for (; m + MR <= g.M; m += MR) rows_n<MR>(A, B, C, g, m, acc, epi, m, tail);
    switch (g.M - m) {
        case 5: if constexpr (MR > 5) rows_n<5>(A, B, C, g, m, acc, epi, m, tail); break;
        case 4: if constexpr (MR > 4) rows_n<4>(A, B, C, g, m, acc, epi, m, tail); break;
        case 3: rows_n<3>(A, B, C, g, m, acc, epi, m, tail); break;
        case 2: rows_n<2>(A, B, C, g, m, acc, epi, m, tail); break;
        case 1: rows_n<1>(A, B, C, g, m, acc, epi, m, tail); break;
        default: break;
    }
}

// Dot-product form: both operands contiguous along k (e.g. dy . W^T). Blocks of
// MB rows x NB columns keep MB*NB vector accumulators; the A rows stay in L1
// while the B rows stream, and each result is one horizontal sum.
template <std::size_t MB, std::size_t NB, class T, class Epi>
inline void dot_block(const T* A, const T* B, T* C, const gemm_args& g, std::size_t m0, std::size_t n0, bool acc,
                      const Epi& epi) {
    using V = simd_t<T>;
    constexpr std::size_t W = V::size;
    const std::size_t kv = g.K - g.K % W;
    V s[MB][NB];
    const T* a[MB];
    const T* b[NB];
    for (std::size_t r = 0; r < MB; ++r) a[r] = A + static_cast<std::ptrdiff_t>(m0 + r) * g.sam;
    for (std::size_t j = 0; j < NB; ++j) b[j] = B + static_cast<std::ptrdiff_t>(n0 + j) * g.sbn;
    for (std::size_t r = 0; r < MB; ++r)
        for (std::size_t j = 0; j < NB; ++j) s[r][j] = V(T(0));
    for (std::size_t k = 0; k < kv; k += W) {
        V bv[NB];
        for (std::size_t j = 0; j < NB; ++j) bv[j] = V::load_unaligned(b[j] + k);
        for (std::size_t r = 0; r < MB; ++r) {
            V av = V::load_unaligned(a[r] + k);
            for (std::size_t j = 0; j < NB; ++j) s[r][j] = simd_fma(av, bv[j], s[r][j]);
        }
    }
    for (std::size_t r = 0; r < MB; ++r)
        for (std::size_t j = 0; j < NB; ++j) {
            T t = xsimd::hadd(s[r][j]);
            for (std::size_t k = kv; k < g.K; ++k) t += a[r][k] * b[j][k];
            T* cp = C + static_cast<std::ptrdiff_t>(m0 + r) * g.scm + static_cast<std::ptrdiff_t>(n0 + j) * g.scn;
            if (acc) t += *cp;
            *cp = Epi::identity ? t : epi.scalar(m0 + r, n0 + j, t);
        }
}

template <std::size_t MB, class T, class Epi>
inline void dot_rows(const T* A, const T* B, T* C, const gemm_args& g, std::size_t m0, bool acc, const Epi& epi) {
    constexpr std::size_t NB = 4;
    std::size_t n = 0;
    for (; n + NB <= g.N; n += NB) dot_block<MB, NB>(A, B, C, g, m0, n, acc, epi);
    for (; n < g.N; ++n) dot_block<MB, 1>(A, B, C, g, m0, n, acc, epi);
}

template <class T, class Epi>
inline void gemm_dot(const T* A, const T* B, T* C, const gemm_args& g, bool acc, const Epi& epi) {
    constexpr std::size_t MB = blocking<T>::wide ? 6 : 3;  // MB x 4 accumulators fit the register file
    std::size_t m = 0;
    for (; m + MB <= g.M; m += MB) dot_rows<MB>(A, B, C, g, m, acc, epi);
    switch (g.M - m) {
        case 5: if constexpr (MB > 5) dot_rows<5>(A, B, C, g, m, acc, epi); break;
        case 4: if constexpr (MB > 4) dot_rows<4>(A, B, C, g, m, acc, epi); break;
        case 3: if constexpr (MB > 3) dot_rows<3>(A, B, C, g, m, acc, epi); break;
        case 2: dot_rows<2>(A, B, C, g, m, acc, epi); break;
        case 1: dot_rows<1>(A, B, C, g, m, acc, epi); break;
        default: break;
    }
}

// B read across its rows (sbk == 1: e.g. dy . W^T with W stored as (out, in)): pack one
// block of NV vectors of columns, up to KC deep, as a contiguous k-major strip (a small
// transpose, which stays in L1/L2), then run the streaming kernel on it for every row
// block. W itself is read once per call and no transposed copy of it has to live in cache.
// One column block [n0, n0 + NVc * W) of B read across its rows: strips of kc rows are
// transposed into k-major order and streamed against every row block of A.
template <int NVc, class T, class Epi>
inline void packed_b_block(const T* A, const T* B, T* C, const gemm_args& g, bool acc, const Epi& epi, std::size_t n0,
                           T* strip) {
    constexpr int MR = blocking<T>::MR;
    constexpr std::size_t W = simd_t<T>::size, NB = static_cast<std::size_t>(NVc) * W, KC = 256;
    for (std::size_t k0 = 0; k0 < g.K; k0 += KC) {
        const std::size_t kc = g.K - k0 < KC ? g.K - k0 : KC;
        const bool last = k0 + kc == g.K;
        const bool a = acc || k0 > 0;
        // strip[k][j] = B[k0 + k, n0 + j]: columns of B are rows of the stored matrix
        transpose_strided(B + static_cast<std::ptrdiff_t>(n0) * g.sbn + static_cast<std::ptrdiff_t>(k0), NB, kc,
                          static_cast<std::size_t>(g.sbn), strip, NB);
        // the strip is B for columns n0 .. n0 + NB - 1 (column n0 at strip column 0)
        const gemm_args pg{g.M, g.N, kc, g.sam, g.sak, static_cast<std::ptrdiff_t>(NB), 1, g.scm, g.scn};
        const T* ap = A + static_cast<std::ptrdiff_t>(k0) * g.sak;
        auto run = [&](const auto& e) {
            std::size_t m = 0;
            for (; m + MR <= g.M; m += MR) kernel_n<MR, NVc>(ap, strip, C, pg, m, n0, a, e, m, 0);
            switch (g.M - m) {
                case 5: if constexpr (MR > 5) kernel_n<5, NVc>(ap, strip, C, pg, m, n0, a, e, m, 0); break;
                case 4: if constexpr (MR > 4) kernel_n<4, NVc>(ap, strip, C, pg, m, n0, a, e, m, 0); break;
                case 3: kernel_n<3, NVc>(ap, strip, C, pg, m, n0, a, e, m, 0); break;
                case 2: kernel_n<2, NVc>(ap, strip, C, pg, m, n0, a, e, m, 0); break;
                case 1: kernel_n<1, NVc>(ap, strip, C, pg, m, n0, a, e, m, 0); break;
                default: break;
            }
        };
        if (last) run(epi);
        else run(no_epilogue{});
    }
}

// B read across its rows (sbk == 1: e.g. dy . W^T with W stored as (out, in)): pack one
// block of NV vectors of columns, up to KC deep, as a contiguous k-major strip (a small
// transpose, which stays in L1/L2), then run the streaming kernel on it for every row
// block. W itself is read once per call and no transposed copy of it has to live in cache.
// A last block narrower than NV vectors runs with fewer vectors (W5: 624 = 9 x 64 + 3 x 16);
// only the columns past the last whole vector are plain dot products.
template <class T, class Epi>
inline void gemm_packed_b(const T* A, const T* B, T* C, const gemm_args& g, bool acc, const Epi& epi) {
    constexpr int NV = blocking<T>::NV;
    constexpr std::size_t W = simd_t<T>::size, NB = static_cast<std::size_t>(NV) * W, KC = 256;
    alignas(64) T strip[KC * NB];  // 64 KiB of float
    const std::size_t nfull = g.N / NB * NB;
    for (std::size_t n0 = 0; n0 < nfull; n0 += NB) packed_b_block<NV>(A, B, C, g, acc, epi, n0, strip);
    const std::size_t nvr = (g.N - nfull) / W;
    switch (nvr) {
        case 3: if constexpr (NV > 3) packed_b_block<3>(A, B, C, g, acc, epi, nfull, strip); break;
        case 2: if constexpr (NV > 2) packed_b_block<2>(A, B, C, g, acc, epi, nfull, strip); break;
        case 1: packed_b_block<1>(A, B, C, g, acc, epi, nfull, strip); break;
        default: break;
    }
    // columns left over (fewer than one vector): plain dot products
    for (std::size_t m = 0; m < g.M; ++m)
        for (std::size_t n = nfull + nvr * W; n < g.N; ++n) {
            T* cp = C + static_cast<std::ptrdiff_t>(m) * g.scm + static_cast<std::ptrdiff_t>(n) * g.scn;
            T s = acc ? *cp : T(0);
            for (std::size_t k = 0; k < g.K; ++k)
                s = fma_like_simd(A[static_cast<std::ptrdiff_t>(m) * g.sam + static_cast<std::ptrdiff_t>(k) * g.sak],
                                  B[static_cast<std::ptrdiff_t>(k) + static_cast<std::ptrdiff_t>(n) * g.sbn], s);
            *cp = Epi::identity ? s : epi.scalar(m, n, s);
        }
}

// The epilogue of a column block that starts at n0 (blocked GEMMs call kernels on
// sub-problems whose columns start at 0).
template <class Epi>
struct offset_epilogue {
    const Epi& e;
    std::size_t n0;
    static constexpr bool identity = Epi::identity;
    static constexpr bool vector_ok = Epi::vector_ok;
    template <class V> V vec(std::size_t m, std::size_t n, V v) const { return e.vec(m, n + n0, v); }
    template <class T> T scalar(std::size_t m, std::size_t n, T v) const { return e.scalar(m, n + n0, v); }
};

// Cache blocking for the vec-N kernel: with a large B (W5: 624 x 624 floats, 1.5 MiB) every
// row block would stream all of B from L3. Blocks of at most KCB x NCB of B (768 KiB of
// float) stay in L2 while every row block uses them; C takes partial sums between k blocks
// and the epilogue runs on the last.
inline constexpr std::size_t vec_n_kcb = 384, vec_n_ncb = 512;
template <class T, class Epi>
inline void gemm_vec_n_blocked(const T* A, const T* B, T* C, const gemm_args& g, bool acc, const Epi& epi) {
    constexpr std::size_t W = simd_t<T>::size;
    const std::size_t nk = (g.K + vec_n_kcb - 1) / vec_n_kcb, nn = (g.N + vec_n_ncb - 1) / vec_n_ncb;
    const std::size_t kc = (g.K + nk - 1) / nk, nc = ((g.N + nn - 1) / nn + W - 1) / W * W;
    for (std::size_t n0 = 0; n0 < g.N; n0 += nc) {
        const std::size_t ncur = g.N - n0 < nc ? g.N - n0 : nc;
        for (std::size_t k0 = 0; k0 < g.K; k0 += kc) {
            const std::size_t kcur = g.K - k0 < kc ? g.K - k0 : kc;
            const gemm_args s{g.M, ncur, kcur, g.sam, g.sak, g.sbk, g.sbn, g.scm, g.scn};
            const T* a = A + static_cast<std::ptrdiff_t>(k0) * g.sak;
            const T* b = B + static_cast<std::ptrdiff_t>(k0) * g.sbk + static_cast<std::ptrdiff_t>(n0) * g.sbn;
            T* c = C + static_cast<std::ptrdiff_t>(n0) * g.scn;
            const bool a_acc = acc || k0 > 0;
            if (k0 + kcur == g.K) gemm_vec_n(a, b, c, s, a_acc, offset_epilogue<Epi>{epi, n0});
            else gemm_vec_n(a, b, c, s, a_acc, no_epilogue{});
        }
    }
}

// One row (scoring one example: x . W with W (K, N) row-major): W is streamed row by row, in
// order, with the result row held in L1 (N <= gemv_max_n) and four k per pass over it. The
// blocked kernels would walk W in column strips (K strided runs of NV vectors each), which
// streams at ~70% of the bandwidth a sequential read gets. Each element is the same chain
// c = fma(a_k, b_kn, c) over ascending k as in every other path (see the top).
inline constexpr std::size_t gemv_max_n = 4096;
template <class T, class Epi>
inline void gemv_rows(const T* A, const T* B, T* C, const gemm_args& g, bool acc, const Epi& epi) {
    using V = simd_t<T>;
    constexpr std::size_t W = V::size;
    const std::size_t nv = g.N / W * W;
    if (!acc) std::fill_n(C, g.N, T(0));
    auto row = [&](std::size_t k) { return B + static_cast<std::ptrdiff_t>(k) * g.sbk; };
    auto a = [&](std::size_t k) { return A[static_cast<std::ptrdiff_t>(k) * g.sak]; };
    std::size_t k = 0;
    for (; k + 4 <= g.K; k += 4) {
        const T s0 = a(k), s1 = a(k + 1), s2 = a(k + 2), s3 = a(k + 3);
        const V a0(s0), a1(s1), a2(s2), a3(s3);
        const T *b0 = row(k), *b1 = row(k + 1), *b2 = row(k + 2), *b3 = row(k + 3);
        for (std::size_t n = 0; n < nv; n += W) {
            V c = V::load_unaligned(C + n);
            c = simd_fma(a0, V::load_unaligned(b0 + n), c);
            c = simd_fma(a1, V::load_unaligned(b1 + n), c);
            c = simd_fma(a2, V::load_unaligned(b2 + n), c);
            c = simd_fma(a3, V::load_unaligned(b3 + n), c);
            c.store_unaligned(C + n);
        }
        for (std::size_t n = nv; n < g.N; ++n)
            C[n] = fma_like_simd(s3, b3[n], fma_like_simd(s2, b2[n], fma_like_simd(s1, b1[n], fma_like_simd(s0, b0[n], C[n]))));
    }
    for (; k < g.K; ++k) {
        const T s0 = a(k);
        const V a0(s0);
        const T* b0 = row(k);
        for (std::size_t n = 0; n < nv; n += W) simd_fma(a0, V::load_unaligned(b0 + n), V::load_unaligned(C + n)).store_unaligned(C + n);
        for (std::size_t n = nv; n < g.N; ++n) C[n] = fma_like_simd(s0, b0[n], C[n]);
    }
    if constexpr (!Epi::identity) {
        for (std::size_t n = 0; n < nv; n += W) finish_vec(C + n, 0, n, V::load_unaligned(C + n), epi);
        for (std::size_t n = nv; n < g.N; ++n) C[n] = epi.scalar(0, n, C[n]);
    }
}

template <class T, class Epi>
inline void gemm_scalar(const T* A, const T* B, T* C, const gemm_args& g, bool acc, const Epi& epi) {
    for (std::size_t m = 0; m < g.M; ++m)
        for (std::size_t n = 0; n < g.N; ++n) {
            T* cp = C + static_cast<std::ptrdiff_t>(m) * g.scm + static_cast<std::ptrdiff_t>(n) * g.scn;
            T s = acc ? *cp : T(0);
            for (std::size_t k = 0; k < g.K; ++k)
                s = fma_like_simd(A[static_cast<std::ptrdiff_t>(m) * g.sam + static_cast<std::ptrdiff_t>(k) * g.sak],
                                  B[static_cast<std::ptrdiff_t>(k) * g.sbk + static_cast<std::ptrdiff_t>(n) * g.sbn], s);
            *cp = Epi::identity ? s : epi.scalar(m, n, s);
        }
}

} // namespace detail

enum class gemm_kernel { vec_n, packed_b, dot, scalar };

template <class T>
constexpr gemm_kernel choose_gemm(const gemm_args& g) {
    constexpr std::size_t W = simd_t<T>::size;
    if (g.sbn == 1 && g.scn == 1 && g.N >= W) return gemm_kernel::vec_n;
    // (not on M: the dot kernel sums in another order, see the top)
    if (g.sbk == 1 && g.scn == 1 && g.N >= detail::blocking<T>::NV * W && g.K >= W) return gemm_kernel::packed_b;
    if (g.sak == 1 && g.sbk == 1 && g.K >= W) return gemm_kernel::dot;
    return gemm_kernel::scalar;
}

template <class T, class Epi = no_epilogue>
inline void gemm(const T* A, const T* B, T* C, const gemm_args& g, bool accumulate, const Epi& epi = {}) {
    switch (choose_gemm<T>(g)) {
        case gemm_kernel::vec_n:
            if (g.M == 1 && g.N <= detail::gemv_max_n && g.K >= 4)
                detail::gemv_rows(A, B, C, g, accumulate, epi);
            else if (g.M >= 4 * static_cast<std::size_t>(detail::blocking<T>::MR) && (g.K > detail::vec_n_kcb || g.N > detail::vec_n_ncb))
                detail::gemm_vec_n_blocked(A, B, C, g, accumulate, epi);
            else
                detail::gemm_vec_n(A, B, C, g, accumulate, epi);
            break;
        case gemm_kernel::packed_b: detail::gemm_packed_b(A, B, C, g, accumulate, epi); break;
        case gemm_kernel::dot: detail::gemm_dot(A, B, C, g, accumulate, epi); break;
        default: detail::gemm_scalar(A, B, C, g, accumulate, epi); break;
    }
}

} // namespace ctrec::cpu
