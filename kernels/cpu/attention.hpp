#pragma once
// Fused self-attention kernels (core/attention.hpp): per example, X (N, K) row-major,
//   S = X X^T,  A = softmax over the rows of S,  O = A X,
// and its two derivatives. No N x N matrix is ever written outside the kernel: a block of
// `rows` query rows is processed at a time and its scores live in registers and in a
// stack buffer of rows x N (L1), never in the workspace.
//
//   forward   online softmax (running max m, running sum l, rescaled O accumulator) over
//             key blocks of up to 3 SIMD vectors, so the scores of one block are in registers
//             and only `rows` x K accumulators persist across blocks (flash-attention style;
//             N is unbounded by the register file).
//   backward  dX = dS X + dS^T X + A^T dO, dS = A (dO X^T - rowsum(dO O)): per query block the
//             scores are recomputed, A is normalised with the exact row max and sum (a second
//             pass over the block's scores, still in L1), and the three terms are accumulated
//             (query term into the block's rows, key and value terms into every row of dX).
//   jvp       dO = A dX + (A (dS - rowsum(A dS))) X, dS = dX X^T + X dX^T, per query block.
//
// Keys are vectorised along j through a transposed, zero-padded copy X^T (K, Np), Np = N
// rounded up to the SIMD width (a per-example copy of N x K values); the value side (sums over
// j of a weight times a row of X) is vectorised along K. Padded keys are masked with -inf
// before the softmax; a query block past the last row repeats the last row and its weights
// are zeroed, so it contributes nothing. In float, weights below e^-60 of a row's largest are
// flushed to 0 (exp_nonpos: denormals would cost microcode assists).
// Block sizes: 8 query rows x up to 3 key vectors = 24 score registers (+3 key vectors) of the
// 32 AVX-512 registers; N = 39 in float is then 5 query blocks of one key block each.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/simd.hpp"
#include "cpu/transpose.hpp"

namespace ctrec::cpu {

namespace attention_detail {

inline constexpr std::size_t rows = 8;    // query rows per block: 8 x (up to 3) score vectors + 3 key vectors in registers
inline constexpr std::size_t max_kv = 3;  // SIMD vectors of keys per block (N = 39 floats: one block)
constexpr std::size_t round_up(std::size_t x, std::size_t m) { return (x + m - 1) / m * m; }

template <class T>
struct simd {
    using V = simd_t<T>;
    static constexpr std::size_t W = V::size;
};

// xt[c * Np + j] = x[j * K + c] for j < N, 0 for N <= j < Np.
template <class T, std::size_t N, std::size_t K, std::size_t Np>
inline void transpose_pad(const T* x, T* xt) {
    transpose_strided(x, N, K, K, xt, Np);  // 8 x 8 register blocks (cpu/transpose.hpp)
    if constexpr (Np > N)
        for (std::size_t c = 0; c < K; ++c) std::fill_n(xt + c * Np + N, Np - N, T(0));
}

// acc[r][v] lane l = <q[r], column j0 + v * W + l of xt>, for NV vectors of keys, in registers.
// Lanes from `valid` on (padded keys) are set to -inf.
template <class T, std::size_t K, std::size_t Np, std::size_t NV>
inline void score_tile(const T* const* q, const T* xt, std::size_t j0, std::size_t valid,
                       typename simd<T>::V (&acc)[rows][NV]) {
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W;
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t v = 0; v < NV; ++v) acc[r][v] = V(T(0));
    for (std::size_t c = 0; c < K; ++c) {
        V col[NV];
        for (std::size_t v = 0; v < NV; ++v) col[v] = V::load_aligned(xt + c * Np + j0 + v * W);
        for (std::size_t r = 0; r < rows; ++r) {
            const V qa(q[r][c]);
            for (std::size_t v = 0; v < NV; ++v) acc[r][v] = simd_fma(qa, col[v], acc[r][v]);
        }
    }
    if (valid < NV * W) {
        alignas(64) T lane[W];
        for (std::size_t i = 0; i < W; ++i) lane[i] = T(i);
        const V idx = V::load_aligned(lane), ninf(-std::numeric_limits<T>::infinity());
        for (std::size_t v = 0; v < NV; ++v) {
            const auto keep = idx + V(T(v * W)) < V(T(valid));
            for (std::size_t r = 0; r < rows; ++r) acc[r][v] = xsimd::select(keep, acc[r][v], ninf);
        }
    }
}

// s[r * ld + v * W + l]: the scores of score_tile, stored (mask_from plays `valid`).
template <class T, std::size_t K, std::size_t Np, std::size_t NV>
inline void dots_block(const T* const* q, const T* xt, std::size_t j0, T* s, std::size_t ld, std::size_t mask_from) {
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W;
    V acc[rows][NV];
    score_tile<T, K, Np, NV>(q, xt, j0, mask_from, acc);
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t v = 0; v < NV; ++v) acc[r][v].store_aligned(s + r * ld + v * W);
}
// Calls f(integral_constant<NV>) for a key block of nv (1..MaxV) vectors; only the forms up to
// MaxV = min(max_kv, Np / W) are instantiated (a wider one would index past a short X^T).
static_assert(max_kv == 3, "ctrec internal: with_nv lists 1..max_kv");
template <std::size_t MaxV, class F>
inline void with_nv(std::size_t nv, F&& f) {
    if constexpr (MaxV >= 3)
        if (nv >= 3) return f(std::integral_constant<std::size_t, 3>{});
    if constexpr (MaxV >= 2)
        if (nv == 2) return f(std::integral_constant<std::size_t, 2>{});
    f(std::integral_constant<std::size_t, 1>{});
}
// One key block of nv vectors: dispatch to the unrolled form.
template <class T, std::size_t K, std::size_t Np>
inline void dots(const T* const* q, const T* xt, std::size_t j0, std::size_t nv, T* s, std::size_t ld, std::size_t mask_from) {
    with_nv<std::min(max_kv, Np / simd<T>::W)>(nv, [&](auto v) { dots_block<T, K, Np, v()>(q, xt, j0, s, ld, mask_from); });
}
// All Np keys: s has row stride Np. Masked: keys from N on are -inf (scores for a softmax);
// otherwise they are 0 (X^T is zero-padded).
template <class T, std::size_t K, std::size_t Np, std::size_t N = Np>
inline void dots_all(const T* const* q, const T* xt, T* s) {
    constexpr std::size_t W = simd<T>::W;
    for (std::size_t j0 = 0; j0 < Np; j0 += max_kv * W) {
        const std::size_t nv = std::min(max_kv, (Np - j0) / W);
        dots<T, K, Np>(q, xt, j0, nv, s + j0, Np, N - std::min(N, j0));
    }
}

// acc[r][:] += sum_{j < n} w[r * ld + j] * m[j * K + :], the K axis in SIMD vectors (+ scalar tail).
template <class T, std::size_t K>
struct row_acc {
    using V = typename simd<T>::V;
    static constexpr std::size_t W = simd<T>::W, KV = K / W, KT = K % W;
    V v[rows][KV ? KV : 1];
    T t[rows][KT ? KT : 1];
    row_acc() { clear(); }
    void clear() {
        for (std::size_t r = 0; r < rows; ++r) {
            for (std::size_t k = 0; k < KV; ++k) v[r][k] = V(T(0));
            for (std::size_t k = 0; k < KT; ++k) t[r][k] = T(0);
        }
    }
    void scale(std::size_t r, T f) {
        for (std::size_t k = 0; k < KV; ++k) v[r][k] *= V(f);
        for (std::size_t k = 0; k < KT; ++k) t[r][k] *= f;
    }
    void add(const T* w, std::size_t ld, const T* m, std::size_t n) {
        std::size_t j = 0;
        if constexpr (KV == 1 && KT == 0) {
            // K one vector wide: two keys per step into a second accumulator set, so the FMA
            // chains (one per row) are half as long as the loop
            V u[rows];
            for (std::size_t r = 0; r < rows; ++r) u[r] = V(T(0));
            for (; j + 2 <= n; j += 2) {
                const V m0 = V::load_unaligned(m + j * K), m1 = V::load_unaligned(m + (j + 1) * K);
                for (std::size_t r = 0; r < rows; ++r) {
                    v[r][0] = simd_fma(V(w[r * ld + j]), m0, v[r][0]);
                    u[r] = simd_fma(V(w[r * ld + j + 1]), m1, u[r]);
                }
            }
            for (std::size_t r = 0; r < rows; ++r) v[r][0] += u[r];
        }
        for (; j < n; ++j) {
            const T* mj = m + j * K;
            V mv[KV ? KV : 1];
            for (std::size_t k = 0; k < KV; ++k) mv[k] = V::load_unaligned(mj + k * W);
            for (std::size_t r = 0; r < rows; ++r) {
                const T wr = w[r * ld + j];
                const V wv(wr);
                for (std::size_t k = 0; k < KV; ++k) v[r][k] = simd_fma(wv, mv[k], v[r][k]);
                for (std::size_t k = 0; k < KT; ++k) t[r][k] += wr * mj[KV * W + k];
            }
        }
    }
    // dst row r (K values) = f * acc[r] (+ dst when add)
    void store(std::size_t r, T* dst, T f, bool add) const {
        for (std::size_t k = 0; k < KV; ++k) {
            V x = v[r][k] * V(f);
            if (add) x += V::load_unaligned(dst + k * W);
            x.store_unaligned(dst + k * W);
        }
        for (std::size_t k = 0; k < KT; ++k) dst[KV * W + k] = t[r][k] * f + (add ? dst[KV * W + k] : T(0));
    }
};

// Largest lane of v (AVX-512 has a reduction sequence; elsewhere a tree over the lanes).
template <class T>
inline T hmax(typename simd<T>::V v) {
#if defined(__AVX512F__)
    if constexpr (simd<T>::W == 16 && std::is_same_v<T, float>) return _mm512_reduce_max_ps(v);
    else if constexpr (simd<T>::W == 8 && std::is_same_v<T, double>) return _mm512_reduce_max_pd(v);
    else
#endif
    {
        constexpr std::size_t W = simd<T>::W;
        alignas(64) T l[W];
        v.store_aligned(l);
        for (std::size_t h = W / 2; h > 0; h /= 2)
            for (std::size_t i = 0; i < h; ++i) l[i] = std::max(l[i], l[i + h]);
        return l[0];
    }
}
// Largest of s[0, n), n a multiple of W (no scalar dependency chain over n).
template <class T>
inline T max_of(const T* s, std::size_t n) {
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W;
    V m = V::load_aligned(s);
    for (std::size_t j = W; j < n; j += W) m = xsimd::max(m, V::load_aligned(s + j));
    return hmax<T>(m);
}
// sum of a[j] b[j] over n (a multiple of W), aligned.
template <class T>
inline T dot(const T* a, const T* b, std::size_t n) {
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W;
    V acc(T(0));
    for (std::size_t j = 0; j < n; j += W) acc = simd_fma(V::load_aligned(a + j), V::load_aligned(b + j), acc);
    return xsimd::hadd(acc);
}
// exp(x) for the softmax's shifted scores x <= 0 (or -inf, a masked key).
// Float: weights below e^-60 (~1e-26 of the row's largest weight, far below float's
// resolution of a sum that includes 1) are flushed to exactly 0: denormal weights, and the
// denormal products they make downstream (A, dS), each cost a microcode assist (~100+ cycles);
// before this flush the backward spent 3/4 of its time in them. Masked keys get exactly 0.
// With AVX-512: Cephes' expf polynomial (degree 6 after reduction by n ln 2, ~1-2 ulp) and
// vscalefps for the 2^n, the flush folded into its zero-masking: ~14 instructions against ~22
// for xsimd::exp (whose overflow / NaN checks cannot trigger here). Elsewhere xsimd::exp.
template <class T>
inline typename simd<T>::V exp_nonpos(typename simd<T>::V x) {
    using V = typename simd<T>::V;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float> && simd<T>::W == 16) {
        const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-60.0f), _CMP_GE_OQ);
        const __m512 v = _mm512_max_ps(x, _mm512_set1_ps(-60.0f));
        const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), v);
        r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
        __m512 p = _mm512_set1_ps(1.9875691500e-4f);
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
        p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
        return _mm512_maskz_scalef_ps(keep, p, n);
    } else
#endif
    if constexpr (std::is_same_v<T, float>) {
        return xsimd::select(x >= V(-60.0f), xsimd::exp(x), V(0.0f));
    } else {
        return xsimd::exp(x);
    }
}

// sum of a[k] b[k] over K (two rows, unaligned)
template <class T, std::size_t K>
inline T row_dot(const T* a, const T* b) {
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W, KV = K / W;
    T s = 0;
    if constexpr (KV > 0) {
        V acc(T(0));
        for (std::size_t k = 0; k < KV; ++k) acc = simd_fma(V::load_unaligned(a + k * W), V::load_unaligned(b + k * W), acc);
        s = xsimd::hadd(acc);
    }
    for (std::size_t k = KV * W; k < K; ++k) s += a[k] * b[k];
    return s;
}
// s[j] = exp(s[j] - m) over n (a multiple of W) values; returns their sum.
template <class T>
inline T exp_shift(T* s, std::size_t n, T m) {
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W;
    V sum(T(0));
    const V mv(m);
    for (std::size_t j = 0; j < n; j += W) {
        V e = exp_nonpos<T>(V::load_aligned(s + j) - mv);
        e.store_aligned(s + j);
        sum += e;
    }
    return xsimd::hadd(sum);
}
// Row pointers of a query block starting at i0 (rows past N repeat row N - 1).
template <class T, std::size_t N, std::size_t K>
inline void block_rows(const T* x, std::size_t i0, const T* q[rows]) {
    for (std::size_t r = 0; r < rows; ++r) q[r] = x + std::min(i0 + r, N - 1) * K;
}

// Exact softmax of a query block's rows (stride Np; padded keys already -inf: dots_all<..., N>):
// a[r] = softmax(s[r]); rows past mr set to 0. Phase by phase over the rows (max, exp and
// sum, scale), so the rows' latency chains (reductions, a division) overlap.
template <class T, std::size_t N, std::size_t Np>
inline void softmax_rows(T* s, std::size_t mr) {
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W;
    T m[rows], l[rows];
    for (std::size_t r = 0; r < mr; ++r) m[r] = max_of(s + r * Np, Np);
    for (std::size_t r = 0; r < mr; ++r) l[r] = exp_shift(s + r * Np, Np, m[r]);
    for (std::size_t r = 0; r < mr; ++r) {
        T* sr = s + r * Np;
        const V inv(T(1) / l[r]);
        for (std::size_t j = 0; j < Np; j += W) (V::load_aligned(sr + j) * inv).store_aligned(sr + j);
    }
    for (std::size_t r = mr; r < rows; ++r) std::fill_n(s + r * Np, Np, T(0));
}

// One key block of the forward pass (NV vectors of keys from j0, `valid` of them real keys):
// scores in registers, masked, the online-softmax update of the running max m and the lane-wise
// running sums l, the weights exp(s - m) written to p (rows x NV W, L1) and added into acc.
template <class T, std::size_t K, std::size_t Np, std::size_t NV>
inline void forward_block(const T* const* q, const T* xt, std::size_t j0, std::size_t valid, T* m,
                          typename simd<T>::V* l, row_acc<T, K>& acc, const T* xv, T* p) {
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W, Bk = NV * W;
    V sc[rows][NV];
    score_tile<T, K, Np, NV>(q, xt, j0, valid, sc);  // padded keys get -inf
    // phase by phase over the rows (maxima, rescaling, exponentials), so the rows' reduction
    // latencies overlap
    T mn[rows];
    for (std::size_t r = 0; r < rows; ++r) {
        V vm = sc[r][0];
        for (std::size_t v = 1; v < NV; ++v) vm = xsimd::max(vm, sc[r][v]);
        mn[r] = std::max(m[r], hmax<T>(vm));
    }
    if (j0 != 0)  // rescale what was accumulated under an older maximum (nothing on the first block)
        for (std::size_t r = 0; r < rows; ++r)
            if (mn[r] != m[r]) {
                const T f = std::exp(m[r] - mn[r]);
                l[r] *= V(f);
                acc.scale(r, f);
            }
    for (std::size_t r = 0; r < rows; ++r) {
        m[r] = mn[r];
        const V mv(mn[r]);
        for (std::size_t v = 0; v < NV; ++v) {
            const V e = exp_nonpos<T>(sc[r][v] - mv);
            l[r] += e;
            e.store_aligned(p + r * Bk + v * W);
        }
    }
    acc.add(p, Bk, xv, valid);
}

} // namespace attention_detail

// O = softmax(X X^T) X for nb examples (stride N * K each).
template <class T, std::size_t N, std::size_t K>
void attention_forward(const T* x, T* o, std::size_t nb) {
    using namespace attention_detail;
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W, Np = round_up(N, W), Bk = max_kv * W;
    alignas(64) T xt[K * Np];
    alignas(64) T p[rows * Bk];
    row_acc<T, K> acc;
    for (std::size_t b = 0; b < nb; ++b) {
        const T* xb = x + b * N * K;
        T* ob = o + b * N * K;
        transpose_pad<T, N, K, Np>(xb, xt);
        for (std::size_t i0 = 0; i0 < N; i0 += rows) {
            const T* q[rows];
            block_rows<T, N, K>(xb, i0, q);
            T m[rows];
            V l[rows];
            for (std::size_t r = 0; r < rows; ++r) m[r] = -std::numeric_limits<T>::infinity(), l[r] = V(T(0));
            acc.clear();
            for (std::size_t j0 = 0; j0 < Np; j0 += Bk) {
                const std::size_t nv = std::min(max_kv, (Np - j0) / W), valid = std::min(nv * W, N - j0);
                const T* xv = xb + j0 * K;
                with_nv<std::min(max_kv, Np / W)>(
                    nv, [&](auto v) { forward_block<T, K, Np, v()>(q, xt, j0, valid, m, l, acc, xv, p); });
            }
            for (std::size_t r = 0; r < rows && i0 + r < N; ++r) acc.store(r, ob + (i0 + r) * K, T(1) / xsimd::hadd(l[r]), false);
        }
    }
}

// dX for output gradient dO (O is the forward value, for rowsum(dO O)).
template <class T, std::size_t N, std::size_t K>
void attention_backward(const T* x, const T* o, const T* dout, T* dx, std::size_t nb) {
    using namespace attention_detail;
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W, Np = round_up(N, W), KV = K / W;
    alignas(64) T xt[K * Np];
    alignas(64) T a[rows * Np];   // A, then dS
    alignas(64) T dp[rows * Np];  // dO X^T, then A (kept for the value term)
    row_acc<T, K> acc;
    for (std::size_t b = 0; b < nb; ++b) {
        const T* xb = x + b * N * K;
        const T* ob = o + b * N * K;
        const T* gb = dout + b * N * K;
        T* db = dx + b * N * K;
        std::fill_n(db, N * K, T(0));
        transpose_pad<T, N, K, Np>(xb, xt);
        for (std::size_t i0 = 0; i0 < N; i0 += rows) {
            const std::size_t mr = std::min(rows, N - i0);
            const T *q[rows], *g[rows];
            block_rows<T, N, K>(xb, i0, q);
            block_rows<T, N, K>(gb, i0, g);
            dots_all<T, K, Np, N>(q, xt, a);
            softmax_rows<T, N, Np>(a, mr);
            dots_all<T, K, Np>(g, xt, dp);
            for (std::size_t r = 0; r < rows; ++r) {
                // dS = A (dP - rowsum(A dP)) with dP taken relative to the row's first entry p:
                // A (dP - p - rowsum(A (dP - p))). Equal dP (equal rows) give exactly 0 and a
                // one-hot A gives exactly 0, whatever the rounding of rowsum(A) and of |dP| (|x|
                // |dO|: rowsum(dO O) from the forward O left O(1) errors in float at |x| = 1e4).
                T* ar = a + r * Np;
                T* pr = dp + r * Np;
                const V p(pr[0]);
                V s(T(0));
                for (std::size_t j = 0; j < Np; j += W) s = simd_fma(V::load_aligned(ar + j), V::load_aligned(pr + j) - p, s);
                const V dv(xsimd::hadd(s));
                for (std::size_t j = 0; j < Np; j += W) {
                    const V aj = V::load_aligned(ar + j);
                    (aj * ((V::load_aligned(pr + j) - p) - dv)).store_aligned(ar + j);  // dS
                    aj.store_aligned(pr + j);
                }
            }
            // query term: dX_i += sum_j dS_ij X_j
            acc.clear();
            acc.add(a, Np, xb, N);
            for (std::size_t r = 0; r < mr; ++r) acc.store(r, db + (i0 + r) * K, T(1), true);
            // key and value terms: dX_j += sum_i dS_ij X_i + A_ij dO_i. With K one vector wide the
            // block's X and dO rows stay in registers (2 x rows), so per key only the weights are
            // loaded (broadcasts) next to the FMAs; two accumulator chains for the FMA latency.
            V qv[rows][1], gv[rows][1];
            if constexpr (KV == 1)
                for (std::size_t r = 0; r < rows; ++r) qv[r][0] = V::load_unaligned(q[r]), gv[r][0] = V::load_unaligned(g[r]);
            for (std::size_t j = 0; j < N; ++j) {
                T* dj = db + j * K;
                for (std::size_t k = 0; k < KV; ++k) {
                    V t = V::load_unaligned(dj + k * W), u(T(0));
                    for (std::size_t r = 0; r < rows; ++r) {
                        if constexpr (KV == 1) {
                            t = simd_fma(V(a[r * Np + j]), qv[r][0], t);
                            u = simd_fma(V(dp[r * Np + j]), gv[r][0], u);
                        } else {
                            t = simd_fma(V(a[r * Np + j]), V::load_unaligned(q[r] + k * W), t);
                            u = simd_fma(V(dp[r * Np + j]), V::load_unaligned(g[r] + k * W), u);
                        }
                    }
                    (t + u).store_unaligned(dj + k * W);
                }
                for (std::size_t k = KV * W; k < K; ++k)
                    for (std::size_t r = 0; r < rows; ++r) dj[k] += a[r * Np + j] * q[r][k] + dp[r * Np + j] * g[r][k];
            }
        }
    }
}

// Tangent dO along dX.
template <class T, std::size_t N, std::size_t K>
void attention_jvp(const T* x, const T* dx, T* dout, std::size_t nb) {
    using namespace attention_detail;
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W, Np = round_up(N, W);
    alignas(64) T xt[K * Np];
    alignas(64) T dxt[K * Np];
    alignas(64) T a[rows * Np];
    alignas(64) T ds[rows * Np];
    alignas(64) T ds2[rows * Np];
    row_acc<T, K> acc;
    for (std::size_t b = 0; b < nb; ++b) {
        const T* xb = x + b * N * K;
        const T* tb = dx + b * N * K;
        T* ob = dout + b * N * K;
        transpose_pad<T, N, K, Np>(xb, xt);
        transpose_pad<T, N, K, Np>(tb, dxt);
        for (std::size_t i0 = 0; i0 < N; i0 += rows) {
            const std::size_t mr = std::min(rows, N - i0);
            const T *q[rows], *t[rows];
            block_rows<T, N, K>(xb, i0, q);
            block_rows<T, N, K>(tb, i0, t);
            dots_all<T, K, Np, N>(q, xt, a);
            softmax_rows<T, N, Np>(a, mr);
            dots_all<T, K, Np>(t, xt, ds);    // dX_i . X_j
            dots_all<T, K, Np>(q, dxt, ds2);  // X_i . dX_j
            for (std::size_t r = 0; r < rows; ++r) {
                T* ar = a + r * Np;
                T* sr = ds + r * Np;
                for (std::size_t j = 0; j < Np; j += W)
                    (V::load_aligned(sr + j) + V::load_aligned(ds2 + r * Np + j)).store_aligned(sr + j);
                // rowsum(A dS) relative to the row's first dS, as in the backward
                const V p(sr[0]);
                V s(T(0));
                for (std::size_t j = 0; j < Np; j += W) s = simd_fma(V::load_aligned(ar + j), V::load_aligned(sr + j) - p, s);
                const V rs(xsimd::hadd(s));
                for (std::size_t j = 0; j < Np; j += W)
                    (V::load_aligned(ar + j) * ((V::load_aligned(sr + j) - p) - rs)).store_aligned(sr + j);  // dA
            }
            acc.clear();
            acc.add(a, Np, tb, N);   // A dX
            acc.add(ds, Np, xb, N);  // dA X
            for (std::size_t r = 0; r < mr; ++r) acc.store(r, ob + (i0 + r) * K, T(1), false);
        }
    }
}

} // namespace ctrec::cpu
