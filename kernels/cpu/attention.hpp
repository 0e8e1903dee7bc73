#pragma once
// Fused self-attention kernels (core/attention.hpp): per example, X (N, K) row-major,
//   S = X X^T,  A = softmax over the rows of S,  O = A X,
// and its two derivatives. No N x N matrix is ever written outside the kernel: a block of
// `rows` query rows is processed at a time and its scores live in registers and in a
// stack buffer of rows x N (L1), never in the workspace.
//
//   forward   online softmax (running max m, running sum l, rescaled O accumulator) over
//             key blocks of up to 4 SIMD vectors, so the scores of one block are in registers
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
// are zeroed, so it contributes nothing.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "cpu/simd.hpp"

namespace ctrec::cpu {

namespace attention_detail {

inline constexpr std::size_t rows = 4;     // query rows per block: 4 x (up to 4) score vectors in registers
inline constexpr std::size_t max_kv = 4;   // SIMD vectors of keys per block
constexpr std::size_t round_up(std::size_t x, std::size_t m) { return (x + m - 1) / m * m; }

template <class T>
struct simd {
    using V = simd_t<T>;
    static constexpr std::size_t W = V::size;
};

// xt[c * Np + j] = x[j * K + c] for j < N, 0 for N <= j < Np.
template <class T, std::size_t N, std::size_t K, std::size_t Np>
inline void transpose_pad(const T* x, T* xt) {
    for (std::size_t c = 0; c < K; ++c) {
        T* d = xt + c * Np;
        for (std::size_t j = 0; j < N; ++j) d[j] = x[j * K + c];
        for (std::size_t j = N; j < Np; ++j) d[j] = T(0);
    }
}

// s[r * ld + v * W + l] = <q[r], column j0 + v * W + l of xt> for NV vectors of keys.
template <class T, std::size_t K, std::size_t Np, std::size_t NV>
inline void dots_block(const T* const* q, const T* xt, std::size_t j0, T* s, std::size_t ld) {
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W;
    V acc[rows][NV];
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t v = 0; v < NV; ++v) acc[r][v] = V(T(0));
    for (std::size_t c = 0; c < K; ++c) {
        V col[NV];
        for (std::size_t v = 0; v < NV; ++v) col[v] = V::load_aligned(xt + c * Np + j0 + v * W);
        for (std::size_t r = 0; r < rows; ++r) {
            const V qa(q[r][c]);
            for (std::size_t v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(qa, col[v], acc[r][v]);
        }
    }
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t v = 0; v < NV; ++v) acc[r][v].store_aligned(s + r * ld + v * W);
}
// One key block of nv (1..max_kv) vectors: dispatch to the unrolled form.
template <class T, std::size_t K, std::size_t Np>
inline void dots(const T* const* q, const T* xt, std::size_t j0, std::size_t nv, T* s, std::size_t ld) {
    switch (nv) {
    case 1: dots_block<T, K, Np, 1>(q, xt, j0, s, ld); break;
    case 2: dots_block<T, K, Np, 2>(q, xt, j0, s, ld); break;
    case 3: dots_block<T, K, Np, 3>(q, xt, j0, s, ld); break;
    default: dots_block<T, K, Np, 4>(q, xt, j0, s, ld); break;
    }
}
// All Np keys: s has row stride Np.
template <class T, std::size_t K, std::size_t Np>
inline void dots_all(const T* const* q, const T* xt, T* s) {
    constexpr std::size_t W = simd<T>::W;
    for (std::size_t j0 = 0; j0 < Np; j0 += max_kv * W)
        dots<T, K, Np>(q, xt, j0, std::min(max_kv, (Np - j0) / W), s + j0, Np);
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
        for (std::size_t j = 0; j < n; ++j) {
            const T* mj = m + j * K;
            V mv[KV ? KV : 1];
            for (std::size_t k = 0; k < KV; ++k) mv[k] = V::load_unaligned(mj + k * W);
            for (std::size_t r = 0; r < rows; ++r) {
                const T wr = w[r * ld + j];
                const V wv(wr);
                for (std::size_t k = 0; k < KV; ++k) v[r][k] = xsimd::fma(wv, mv[k], v[r][k]);
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

template <class T>
inline T hmax(const T* s, std::size_t n) {
    T m = s[0];
    for (std::size_t j = 1; j < n; ++j) m = std::max(m, s[j]);
    return m;
}
// s[j] = exp(s[j] - m) over n (a multiple of W) values; returns their sum.
template <class T>
inline T exp_shift(T* s, std::size_t n, T m) {
    using V = typename simd<T>::V;
    constexpr std::size_t W = simd<T>::W;
    V sum(T(0));
    const V mv(m);
    for (std::size_t j = 0; j < n; j += W) {
        V e = xsimd::exp(V::load_aligned(s + j) - mv);
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

// Exact softmax of a query block's rows (stride Np, N valid keys): a[r] = softmax(s[r]),
// rows past mr and padded keys set to 0.
template <class T, std::size_t N, std::size_t Np>
inline void softmax_rows(T* s, std::size_t mr) {
    for (std::size_t r = 0; r < rows; ++r) {
        T* sr = s + r * Np;
        if (r >= mr) {
            std::fill_n(sr, Np, T(0));
            continue;
        }
        for (std::size_t j = N; j < Np; ++j) sr[j] = -std::numeric_limits<T>::infinity();
        const T l = exp_shift(sr, Np, hmax(sr, N));
        const T inv = T(1) / l;
        for (std::size_t j = 0; j < N; ++j) sr[j] *= inv;
    }
}

} // namespace attention_detail

// O = softmax(X X^T) X for nb examples (stride N * K each).
template <class T, std::size_t N, std::size_t K>
void attention_forward(const T* x, T* o, std::size_t nb) {
    using namespace attention_detail;
    constexpr std::size_t W = simd<T>::W, Np = round_up(N, W), Bk = max_kv * W;
    alignas(64) T xt[K * Np];
    alignas(64) T s[rows * Bk];
    row_acc<T, K> acc;
    for (std::size_t b = 0; b < nb; ++b) {
        const T* xb = x + b * N * K;
        T* ob = o + b * N * K;
        transpose_pad<T, N, K, Np>(xb, xt);
        for (std::size_t i0 = 0; i0 < N; i0 += rows) {
            const T* q[rows];
            block_rows<T, N, K>(xb, i0, q);
            T m[rows], l[rows];
            for (std::size_t r = 0; r < rows; ++r) m[r] = -std::numeric_limits<T>::infinity(), l[r] = T(0);
            acc.clear();
            for (std::size_t j0 = 0; j0 < Np; j0 += Bk) {
                const std::size_t nv = std::min(max_kv, (Np - j0) / W), nk = nv * W, valid = std::min(nk, N - j0);
                dots<T, K, Np>(q, xt, j0, nv, s, Bk);
                for (std::size_t r = 0; r < rows; ++r) {
                    T* sr = s + r * Bk;
                    for (std::size_t j = valid; j < nk; ++j) sr[j] = -std::numeric_limits<T>::infinity();
                    // online softmax: rescale what was accumulated under the old maximum
                    const T mn = std::max(m[r], hmax(sr, valid));
                    const T f = std::exp(m[r] - mn);  // 0 on the first block (m = -inf)
                    l[r] = l[r] * f + exp_shift(sr, nk, mn);
                    acc.scale(r, f);
                    m[r] = mn;
                }
                acc.add(s, Bk, xb + j0 * K, valid);
            }
            for (std::size_t r = 0; r < rows && i0 + r < N; ++r) acc.store(r, ob + (i0 + r) * K, T(1) / l[r], false);
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
            dots_all<T, K, Np>(q, xt, a);
            softmax_rows<T, N, Np>(a, mr);
            dots_all<T, K, Np>(g, xt, dp);
            for (std::size_t r = 0; r < rows; ++r) {
                T d = 0;  // rowsum(dO O) of row i
                if (r < mr)
                    for (std::size_t k = 0; k < K; ++k) d += g[r][k] * ob[(i0 + r) * K + k];
                T* ar = a + r * Np;
                T* pr = dp + r * Np;
                for (std::size_t j = 0; j < Np; ++j) {
                    const T aj = ar[j];
                    ar[j] = aj * (pr[j] - d);  // dS
                    pr[j] = aj;
                }
            }
            // query term: dX_i += sum_j dS_ij X_j
            acc.clear();
            acc.add(a, Np, xb, N);
            for (std::size_t r = 0; r < mr; ++r) acc.store(r, db + (i0 + r) * K, T(1), true);
            // key and value terms: dX_j += sum_i dS_ij X_i + A_ij dO_i
            for (std::size_t j = 0; j < N; ++j) {
                T* dj = db + j * K;
                for (std::size_t k = 0; k < KV; ++k) {
                    V t = V::load_unaligned(dj + k * W);
                    for (std::size_t r = 0; r < rows; ++r) {
                        t = xsimd::fma(V(a[r * Np + j]), V::load_unaligned(q[r] + k * W), t);
                        t = xsimd::fma(V(dp[r * Np + j]), V::load_unaligned(g[r] + k * W), t);
                    }
                    t.store_unaligned(dj + k * W);
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
            dots_all<T, K, Np>(q, xt, a);
            softmax_rows<T, N, Np>(a, mr);
            dots_all<T, K, Np>(t, xt, ds);    // dX_i . X_j
            dots_all<T, K, Np>(q, dxt, ds2);  // X_i . dX_j
            for (std::size_t r = 0; r < rows; ++r) {
                T* ar = a + r * Np;
                T* sr = ds + r * Np;
                T rs = 0;  // rowsum(A dS)
                for (std::size_t j = 0; j < Np; ++j) sr[j] += ds2[r * Np + j], rs += ar[j] * sr[j];
                for (std::size_t j = 0; j < Np; ++j) sr[j] = ar[j] * (sr[j] - rs);  // dA
            }
            acc.clear();
            acc.add(a, Np, tb, N);   // A dX
            acc.add(ds, Np, xb, N);  // dA X
            for (std::size_t r = 0; r < mr; ++r) acc.store(r, ob + (i0 + r) * K, T(1), false);
        }
    }
}

} // namespace ctrec::cpu
