#pragma once
// vmath<V>: the maths an elementwise op may use, for a value type V. This file
// gives the scalar form (the reference and the fallback); kernels/cpu/simd.hpp
// specialises it for xsimd batches. Ops call vmath<V>::f, so one op definition
// serves every backend.
#include <cmath>
#include <type_traits>

namespace ctrec {

template <class V>
struct vmath {
    static_assert(std::is_floating_point_v<V>, "ctrec: vmath<V> is specialised for SIMD batches in kernels/cpu/simd.hpp");
    static V splat(double c) { return static_cast<V>(c); }
    static V exp(V x) { return std::exp(x); }
    static V log(V x) { return std::log(x); }
    static V log1p(V x) { return std::log1p(x); }
    static V sqrt(V x) { return std::sqrt(x); }
    static V abs(V x) { return std::abs(x); }
    static V erf(V x) { return std::erf(x); }
    static V tanh(V x) { return std::tanh(x); }
    static V pow(V x, double p) { return std::pow(x, static_cast<V>(p)); }
    // Ties pick the first operand, as TF does; a NaN in either operand gives NaN (a bare
    // comparison would turn max(NaN, 0) into 0, so relu and every clamp would hide a NaN input).
    static V max(V a, V b) { return a >= b || a != a ? a : b; }
    static V min(V a, V b) { return a <= b || a != a ? a : b; }
    static V sign(V x) { return x > 0 ? V(1) : x < 0 ? V(-1) : V(0); }
    static V gt(V a, V b) { return a > b ? V(1) : V(0); }
    static V ge(V a, V b) { return a >= b ? V(1) : V(0); }
    static V eq(V a, V b) { return a == b ? V(1) : V(0); }
    static V select(V c, V a, V b) { return c != V(0) ? a : b; }
    static V fma(V a, V b, V c) { return a * b + c; }
};

} // namespace ctrec
