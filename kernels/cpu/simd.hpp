#pragma once
// SIMD specialisation of vmath for xsimd batches (AVX-512, AVX2, SSE, NEON:
// whatever -march gives). Comparisons return 1/0 values, like the scalar form.
#include <xsimd/xsimd.hpp>

#include "ctrec/core/vmath.hpp"

namespace ctrec {

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
    static V max(V a, V b) { return xsimd::select(a >= b, a, b); }
    static V min(V a, V b) { return xsimd::select(a <= b, a, b); }
    static V sign(V x) { return xsimd::select(x > V(T(0)), V(T(1)), xsimd::select(x < V(T(0)), V(T(-1)), V(T(0)))); }
    static V gt(V a, V b) { return xsimd::select(a > b, V(T(1)), V(T(0))); }
    static V ge(V a, V b) { return xsimd::select(a >= b, V(T(1)), V(T(0))); }
    static V eq(V a, V b) { return xsimd::select(a == b, V(T(1)), V(T(0))); }
    static V select(V c, V a, V b) { return xsimd::select(c != V(T(0)), a, b); }
    static V fma(V a, V b, V c) { return xsimd::fma(a, b, c); }
};

template <class T>
using simd_t = xsimd::batch<T>;

} // namespace ctrec
