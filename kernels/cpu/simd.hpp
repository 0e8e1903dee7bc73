#pragma once
// SIMD specialisation of vmath for xsimd batches (AVX-512, AVX2, SSE, NEON:
// whatever -march gives). Comparisons return 1/0 values, like the scalar form.
#include <cmath>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "ctrec/core/vmath.hpp"

namespace ctrec {

// a * b + c with one rounding wherever the target has an FMA instruction. xsimd 8.1 has no FMA
// for its AVX-512 archs (its generic x * y + z rounds twice, and GCC contracts it or not
// depending on -O): AVX-512 batches call the instruction directly, the rest go through xsimd
// (FMA3 and NEON64 fused, the SSE2 / AVX baselines a * b + c).
template <class T, class A>
inline xsimd::batch<T, A> simd_fma(const xsimd::batch<T, A>& a, const xsimd::batch<T, A>& b, const xsimd::batch<T, A>& c) {
#if defined(__AVX512F__)
    if constexpr (sizeof(xsimd::batch<T, A>) == 64) {
        if constexpr (std::is_same_v<T, float>) return _mm512_fmadd_ps(a, b, c);
        else return _mm512_fmadd_pd(a, b, c);
    } else
#endif
    return xsimd::fma(a, b, c);
}
// The same rounding for one scalar (the GEMM's column tails, kernels/cpu/gemm.hpp): fused where
// simd_fma is.
template <class T>
inline T fma_like_simd(T a, T b, T c) {
#if defined(__FMA__) || defined(__AVX512F__) || defined(__aarch64__)
    return std::fma(a, b, c);
#else
    return a * b + c;
#endif
}

template <class T, class A>
struct vmath<xsimd::batch<T, A>> {
    using V = xsimd::batch<T, A>;
    static V splat(double c) { return V(static_cast<T>(c)); }
    static V exp(V x) { return xsimd::exp(x); }
    static V log(V x) { return xsimd::log(x); }
    static V log1p(V x) { return xsimd::log1p(x); }
    static V sqrt(V x) { return xsimd::sqrt(x); }
    static V abs(V x) { return xsimd::abs(x); }
    static V erf(V x) { return xsimd::erf(x); }
    static V tanh(V x) { return xsimd::tanh(x); }
    static V pow(V x, double p) { return xsimd::pow(x, V(static_cast<T>(p))); }
    // NaN-propagating, ties to the first operand: the scalar form's rule (core/vmath.hpp).
    // xsimd::isnan, not a != a: xsimd 8.1's AVX-512 != is an ordered compare (false for NaN).
    static V max(V a, V b) { return xsimd::select((a >= b) | xsimd::isnan(a), a, b); }
    static V min(V a, V b) { return xsimd::select((a <= b) | xsimd::isnan(a), a, b); }
    static V sign(V x) { return xsimd::select(x > V(T(0)), V(T(1)), xsimd::select(x < V(T(0)), V(T(-1)), V(T(0)))); }
    static V gt(V a, V b) { return xsimd::select(a > b, V(T(1)), V(T(0))); }
    static V ge(V a, V b) { return xsimd::select(a >= b, V(T(1)), V(T(0))); }
    static V eq(V a, V b) { return xsimd::select(a == b, V(T(1)), V(T(0))); }
    // a NaN condition is nonzero (true), as in the scalar form: not c != 0 (see max)
    static V select(V c, V a, V b) { return xsimd::select(!(c == V(T(0))), a, b); }
    static V fma(V a, V b, V c) { return simd_fma(a, b, c); }
};

template <class T>
using simd_t = xsimd::batch<T>;

} // namespace ctrec
