#pragma once
// Kernels of the gated recurrences (core/expr.hpp: scan_node, scan_vjp_node, scan_jvp_node),
// one example at a time: the recurrence is sequential over T, and per step the state products
// are vector x matrix products (h (U) x W (U, G)), written as rank-1 updates over contiguous
// rows of W (the inner loop runs over G contiguous columns: the compiler vectorises it) or,
// for the transposed products of the reverse mode, as SIMD dot products of contiguous rows.
// Scratch is on the stack, sized by the template constants (no allocation).
//
// The input-side products are not here: the node's X operand already holds them for all T.
// Record layouts (per example, row t): keras_gru [h | z | r | hh | g_h] (5U);
// agru / augru [h | r | u | c] (4U). A padded step (mask < 1) copies h_{t-1} and zeroes the
// gate columns; its reverse passes the state gradient through unchanged.
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "ctrec/core/expr.hpp"
#include "cpu/simd.hpp"

namespace ctrec::cpu::scan {

template <scan_act A, class T>
inline T act(T x) {
    if constexpr (A == scan_act::linear) return x;
    else if constexpr (A == scan_act::relu) return x > T(0) ? x : T(0);
    else if constexpr (A == scan_act::tanh) return std::tanh(x);
    else return T(1) / (T(1) + std::exp(-x));
}
// derivative from the activation's output y (relu'(0) = 0, as op_relu)
template <scan_act A, class T>
inline T dact(T y) {
    if constexpr (A == scan_act::linear) return T(1);
    else if constexpr (A == scan_act::relu) return y > T(0) ? T(1) : T(0);
    else if constexpr (A == scan_act::tanh) return T(1) - y * y;
    else return y * (T(1) - y);
}
template <class T>
inline T sigm(T x) { return T(1) / (T(1) + std::exp(-x)); }

// y[0..G) += x (U) . W (U, G), W row-major
template <std::size_t U, std::size_t G, class T>
inline void vec_mat(const T* x, const T* W, T* y) {
    for (std::size_t i = 0; i < U; ++i) {
        const T xi = x[i];
        const T* w = W + i * G;
        for (std::size_t j = 0; j < G; ++j) y[j] += xi * w[j];
    }
}
// y[i] += sum_j W[i, off + j] d[j] for j < n (a slice of columns of W (U, G) times d): dot
// products of contiguous rows, in SIMD (a plain float reduction loop would stay scalar: the
// compiler may not reorder it), four rows at a time so each load of d serves four rows.
template <std::size_t U, std::size_t G, class T>
inline void mat_vec(const T* W, std::size_t off, std::size_t n, const T* d, T* y) {
    using V = simd_t<T>;
    constexpr std::size_t L = V::size;
    const std::size_t nv = n / L * L;
    std::size_t i = 0;
    for (; i + 4 <= U; i += 4) {
        const T* w0 = W + i * G + off;
        V a0(T(0)), a1(T(0)), a2(T(0)), a3(T(0));
        for (std::size_t j = 0; j < nv; j += L) {
            const V dv = V::load_unaligned(d + j);
            a0 = xsimd::fma(V::load_unaligned(w0 + j), dv, a0);
            a1 = xsimd::fma(V::load_unaligned(w0 + G + j), dv, a1);
            a2 = xsimd::fma(V::load_unaligned(w0 + 2 * G + j), dv, a2);
            a3 = xsimd::fma(V::load_unaligned(w0 + 3 * G + j), dv, a3);
        }
        T s0 = xsimd::hadd(a0), s1 = xsimd::hadd(a1), s2 = xsimd::hadd(a2), s3 = xsimd::hadd(a3);
        for (std::size_t j = nv; j < n; ++j) {
            s0 += w0[j] * d[j], s1 += w0[G + j] * d[j], s2 += w0[2 * G + j] * d[j], s3 += w0[3 * G + j] * d[j];
        }
        y[i] += s0, y[i + 1] += s1, y[i + 2] += s2, y[i + 3] += s3;
    }
    for (; i < U; ++i) {
        const T* w = W + i * G + off;
        V a(T(0));
        for (std::size_t j = 0; j < nv; j += L) a = xsimd::fma(V::load_unaligned(w + j), V::load_unaligned(d + j), a);
        T s = xsimd::hadd(a);
        for (std::size_t j = nv; j < n; ++j) s += w[j] * d[j];
        y[i] += s;
    }
}

template <class T>
inline bool is_real(const T* m, std::size_t t) { return m == nullptr || m[t] >= T(1); }

// ---- forward ------------------------------------------------------------------------------
// X (T, 3U); W1, W2 the cell's state weights; a (T) scores (agru / augru); m (T) or null.
template <class T, scan_cell C, scan_act A, std::size_t Tn, std::size_t U>
void forward(const T* X, const T* W1, const T* W2, const T* a, const T* m, T* rec) {
    constexpr std::size_t S = scan_record_width(C, U), G = 3 * U;
    T zero[U] = {};
    T g[G];
    for (std::size_t t = 0; t < Tn; ++t) {
        T* row = rec + t * S;
        const T* hp = t ? rec + (t - 1) * S : zero;
        const T* x = X + t * G;
        if (!is_real(m, t)) {
            std::copy_n(hp, U, row);
            std::fill_n(row + U, S - U, T(0));
            continue;
        }
        if constexpr (C == scan_cell::keras_gru) {
            std::copy_n(W2, G, g);  // recurrent bias
            vec_mat<U, G>(hp, W1, g);
            for (std::size_t j = 0; j < U; ++j) {
                const T z = sigm(x[j] + g[j]), r = sigm(x[U + j] + g[U + j]);
                const T hh = act<A>(x[2 * U + j] + r * g[2 * U + j]);
                row[j] = z * hp[j] + (T(1) - z) * hh;
                row[U + j] = z, row[2 * U + j] = r, row[3 * U + j] = hh, row[4 * U + j] = g[2 * U + j];
            }
        } else {
            std::copy_n(x, 2 * U, g);
            vec_mat<U, 2 * U>(hp, W1, g);
            T rh[U];
            for (std::size_t j = 0; j < U; ++j) {
                row[U + j] = sigm(g[j]);           // r
                row[2 * U + j] = sigm(g[U + j]);   // u
                rh[j] = row[U + j] * hp[j];
            }
            T* cp = g;  // reuse: candidate pre-activation
            std::copy_n(x + 2 * U, U, cp);
            vec_mat<U, U>(rh, W2, cp);
            const T at = a[t];
            for (std::size_t j = 0; j < U; ++j) {
                const T c = act<A>(cp[j]);
                row[3 * U + j] = c;
                if constexpr (C == scan_cell::agru) {
                    row[j] = (T(1) - at) * hp[j] + at * c;
                } else {
                    const T v = (T(1) - at) * row[2 * U + j];
                    row[j] = v * hp[j] + (T(1) - v) * c;
                }
            }
        }
    }
}

// ---- reverse mode (BPTT) ----------------------------------------------------------------------
// ct (T, S): the record's cotangent, only its h columns are read. out (T, scan_vjp_width).
template <class T, scan_cell C, scan_act A, std::size_t Tn, std::size_t U>
void backward(const T* rec, const T* W1, const T* W2, const T* a, const T* ct, const T* m, T* out) {
    constexpr std::size_t S = scan_record_width(C, U), O = scan_vjp_width(C, U);
    T zero[U] = {};
    T dh[U] = {};  // gradient reaching h_t from the steps after t
    T dn[U];
    for (std::size_t t = Tn; t-- > 0;) {
        const T* row = rec + t * S;
        const T* hp = t ? rec + (t - 1) * S : zero;
        T* o = out + t * O;
        T d[U];
        for (std::size_t j = 0; j < U; ++j) d[j] = (ct ? ct[t * S + j] : T(0)) + dh[j];
        if (!is_real(m, t)) {
            std::fill_n(o, O, T(0));
            std::copy_n(d, U, dh);
            continue;
        }
        if constexpr (C == scan_cell::keras_gru) {
            for (std::size_t j = 0; j < U; ++j) {
                const T z = row[U + j], r = row[2 * U + j], hh = row[3 * U + j], gh = row[4 * U + j];
                const T dzp = d[j] * (hp[j] - hh) * z * (T(1) - z);
                const T dhhp = d[j] * (T(1) - z) * dact<A>(hh);
                o[j] = dzp;
                o[U + j] = dhhp * gh * r * (T(1) - r);
                o[2 * U + j] = dhhp;
                o[3 * U + j] = dhhp * r;
                dn[j] = d[j] * z;
            }
            // + dg . W1^T with dg = [dz | dr | dhh * r]
            mat_vec<U, 3 * U>(W1, 0, 2 * U, o, dn);
            mat_vec<U, 3 * U>(W1, 2 * U, U, o + 3 * U, dn);
        } else {
            const T at = a[t];
            T dc[U], drh[U] = {};
            T da = 0;
            for (std::size_t j = 0; j < U; ++j) {
                const T u = row[2 * U + j], c = row[3 * U + j];
                T dcj, du;
                if constexpr (C == scan_cell::agru) {
                    dn[j] = (T(1) - at) * d[j];
                    dcj = at * d[j];
                    du = T(0);
                    da += d[j] * (c - hp[j]);
                } else {
                    const T v = (T(1) - at) * u, dv = d[j] * (hp[j] - c);
                    dn[j] = v * d[j];
                    dcj = (T(1) - v) * d[j];
                    du = (T(1) - at) * dv;
                    da -= dv * u;
                }
                dc[j] = dcj * dact<A>(c);
                o[U + j] = du * u * (T(1) - u);
                o[2 * U + j] = dc[j];
            }
            mat_vec<U, U>(W2, 0, U, dc, drh);  // d(r * h_{t-1})
            for (std::size_t j = 0; j < U; ++j) {
                const T r = row[U + j];
                o[j] = drh[j] * hp[j] * r * (T(1) - r);
                dn[j] += drh[j] * r;
            }
            o[3 * U] = da;
            mat_vec<U, 2 * U>(W1, 0, 2 * U, o, dn);  // + [dr | du] . W1^T
        }
        std::copy_n(dn, U, dh);
    }
}

// ---- forward mode ---------------------------------------------------------------------------
// dX, dE (T, 3U) and da (T) may be null (zero). out (T, S): the h tangent, gate columns 0.
template <class T, scan_cell C, scan_act A, std::size_t Tn, std::size_t U>
void tangent(const T* rec, const T* W1, const T* W2, const T* a, const T* dX, const T* dE, const T* da,
             const T* m, T* out) {
    constexpr std::size_t S = scan_record_width(C, U), G = 3 * U;
    T zero[U] = {};
    T dhp[U] = {};
    T g[G];
    for (std::size_t t = 0; t < Tn; ++t) {
        const T* row = rec + t * S;
        const T* hp = t ? rec + (t - 1) * S : zero;
        T* o = out + t * S;
        std::fill_n(o + U, S - U, T(0));
        if (!is_real(m, t)) {
            std::copy_n(dhp, U, o);
            continue;
        }
        // tangents entering from outside: g = dX + dE (keras_gru keeps dE's h block apart)
        if constexpr (C == scan_cell::keras_gru) {
            T dg[G];
            for (std::size_t j = 0; j < G; ++j) dg[j] = dE ? dE[t * G + j] : T(0);
            vec_mat<U, G>(dhp, W1, dg);
            for (std::size_t j = 0; j < U; ++j) {
                const T z = row[U + j], r = row[2 * U + j], hh = row[3 * U + j], gh = row[4 * U + j];
                const T xz = dX ? dX[t * G + j] : T(0), xr = dX ? dX[t * G + U + j] : T(0), xh = dX ? dX[t * G + 2 * U + j] : T(0);
                const T dz = z * (T(1) - z) * (xz + dg[j]);
                const T dr = r * (T(1) - r) * (xr + dg[U + j]);
                const T dhh = dact<A>(hh) * (xh + dr * gh + r * dg[2 * U + j]);
                o[j] = dz * (hp[j] - hh) + z * dhp[j] + (T(1) - z) * dhh;
            }
        } else {
            for (std::size_t j = 0; j < G; ++j) g[j] = (dX ? dX[t * G + j] : T(0)) + (dE ? dE[t * G + j] : T(0));
            vec_mat<U, 2 * U>(dhp, W1, g);
            T drh[U];
            for (std::size_t j = 0; j < U; ++j) {
                const T r = row[U + j];
                const T dr = r * (T(1) - r) * g[j];
                drh[j] = dr * hp[j] + r * dhp[j];
            }
            vec_mat<U, U>(drh, W2, g + 2 * U);
            const T at = a[t], dat = da ? da[t] : T(0);
            for (std::size_t j = 0; j < U; ++j) {
                const T u = row[2 * U + j], c = row[3 * U + j];
                const T du = u * (T(1) - u) * g[U + j];
                const T dc = dact<A>(c) * g[2 * U + j];
                if constexpr (C == scan_cell::agru) {
                    o[j] = dat * (c - hp[j]) + (T(1) - at) * dhp[j] + at * dc;
                } else {
                    const T v = (T(1) - at) * u, dv = -dat * u + (T(1) - at) * du;
                    o[j] = dv * (hp[j] - c) + v * dhp[j] + (T(1) - v) * dc;
                }
            }
        }
        std::copy_n(o, U, dhp);
    }
}

} // namespace ctrec::cpu::scan
