#pragma once
// Elementwise ops. Each op is one struct holding, side by side:
//   apply(v...)   its value, for scalars and SIMD batches alike (via vmath<V>)
//   jvp / vjp     its derivative rules as expressions (forward and reverse)
//   zero_if       when the result is zero because operands are (symbolic zeros
//                 from differentiation are pruned instead of computed)
// Derivative rules are written with the simplifying builders of build.hpp.
#include <cmath>
#include <numbers>
#include <string_view>

#include "ctrec/core/build.hpp"
#include "ctrec/core/vmath.hpp"

namespace ctrec {

namespace detail {
template <class Y> using arg0 = tl_at_t<0, typename Y::operands>;
template <class Y> using arg1 = tl_at_t<1, typename Y::operands>;
template <class Y> using arg2 = tl_at_t<2, typename Y::operands>;
template <class Tans> using tan0 = tl_at_t<0, Tans>;
template <class Tans> using tan1 = tl_at_t<1, Tans>;
template <class Tans> using tan2 = tl_at_t<2, Tans>;
template <class Y> using zero_like = zero_node<Y::shape, Y::batched>;
template <double V> using lit = const_node<V>;
} // namespace detail

// Unary ops with a smooth derivative f'(x) written as an expression `deriv<X, Y>`
// (Y is the op's own output node, so rules may reuse the forward value). Their
// jvp (dx * f') and vjp (ct * f') are formed generically in ad/rules.hpp.
template <class Self>
struct unary_rules {
    static constexpr std::size_t arity = 1;
    static constexpr bool smooth_unary = true;
    static constexpr bool zero_if(const bool*) { return false; }
};

// Ops that are piecewise constant (comparisons, sign): zero derivative.
template <std::size_t N>
struct flat_rules {
    static constexpr std::size_t arity = N;
    static constexpr bool smooth_unary = false;
    static constexpr bool zero_if(const bool*) { return false; }
    template <class Y, class Tans> using jvp = detail::zero_like<Y>;
    template <std::size_t I, class Y, class Ct> using vjp = detail::zero_like<Y>;
};

// ---- unary ---------------------------------------------------------------------
struct op_neg {
    static constexpr bool smooth_unary = false;
    static constexpr fixed_string name = "neg";
    static constexpr std::size_t arity = 1;
    static constexpr bool zero_if(const bool* z) { return z[0]; }
    template <class V> static V apply(V x) { return -x; }
    template <class Y, class Tans> using jvp = neg_t<detail::tan0<Tans>>;
    template <std::size_t I, class Y, class Ct> using vjp = neg_t<Ct>;
};
struct op_exp : unary_rules<op_exp> {
    static constexpr fixed_string name = "exp";
    template <class V> static V apply(V x) { return vmath<V>::exp(x); }
    template <class X, class Y> using deriv = Y;
};
struct op_log : unary_rules<op_log> {
    static constexpr fixed_string name = "log";
    template <class V> static V apply(V x) { return vmath<V>::log(x); }
    template <class X, class Y> using deriv = div_t<detail::lit<1.0>, X>;
};
struct op_log1p : unary_rules<op_log1p> {
    static constexpr fixed_string name = "log1p";
    template <class V> static V apply(V x) { return vmath<V>::log1p(x); }
    template <class X, class Y> using deriv = div_t<detail::lit<1.0>, add_t<detail::lit<1.0>, X>>;
};
struct op_sqrt : unary_rules<op_sqrt> {
    static constexpr fixed_string name = "sqrt";
    template <class V> static V apply(V x) { return vmath<V>::sqrt(x); }
    template <class X, class Y> using deriv = div_t<detail::lit<0.5>, Y>;
};
struct op_rsqrt : unary_rules<op_rsqrt> {  // exact 1/sqrt(x), not the hardware estimate
    static constexpr fixed_string name = "rsqrt";
    template <class V> static V apply(V x) { return vmath<V>::splat(1.0) / vmath<V>::sqrt(x); }
    template <class X, class Y> using deriv = mul_t<detail::lit<-0.5>, mul_t<Y, mul_t<Y, Y>>>;
};
struct op_abs : unary_rules<op_abs> {
    static constexpr fixed_string name = "abs";
    template <class V> static V apply(V x) { return vmath<V>::abs(x); }
    template <class X, class Y> using deriv = map_t<struct op_sign, X>;
};
struct op_sign : flat_rules<1> {
    static constexpr fixed_string name = "sign";
    template <class V> static V apply(V x) { return vmath<V>::sign(x); }
};
struct op_sigmoid : unary_rules<op_sigmoid> {
    static constexpr fixed_string name = "sigmoid";
    template <class V> static V apply(V x) {
        using M = vmath<V>;
        return M::splat(1.0) / (M::splat(1.0) + M::exp(-x));
    }
    template <class X, class Y> using deriv = mul_t<Y, sub_t<detail::lit<1.0>, Y>>;
};
// relu as one op (TF's Relu): the derivative is read from the output, y > 0 (relu'(0) = 0),
// so a fused forward keeps only y and the backward rebuilds the mask from it in its own
// loop, instead of storing z, the mask and y.
struct op_relu : unary_rules<op_relu> {
    static constexpr fixed_string name = "relu";
    template <class V> static V apply(V x) { return vmath<V>::max(x, vmath<V>::splat(0.0)); }
    template <class X, class Y> using deriv = map_t<struct op_gt, Y, detail::lit<0.0>>;
};
struct op_tanh : unary_rules<op_tanh> {
    static constexpr fixed_string name = "tanh";
    template <class V> static V apply(V x) { return vmath<V>::tanh(x); }
    template <class X, class Y> using deriv = sub_t<detail::lit<1.0>, mul_t<Y, Y>>;
};
struct op_erf : unary_rules<op_erf> {
    static constexpr fixed_string name = "erf";
    template <class V> static V apply(V x) { return vmath<V>::erf(x); }
    // d erf(x) = 2/sqrt(pi) * exp(-x^2)
    template <class X, class Y>
    using deriv = mul_t<detail::lit<1.1283791670955126>, map_t<op_exp, neg_t<mul_t<X, X>>>>;
};
template <double P>
struct op_pow : unary_rules<op_pow<P>> {
    static constexpr fixed_string name = "pow";
    template <class V> static V apply(V x) {
        if constexpr (P == 2.0) return x * x;
        else if constexpr (P == 1.0) return x;
        else return vmath<V>::pow(x, P);
    }
    template <class X, class Y>
    using deriv = mul_t<detail::lit<P>, map_t<op_pow<P - 1.0>, X>>;
};

// ---- binary --------------------------------------------------------------------
struct op_add {
    static constexpr bool smooth_unary = false;
    static constexpr fixed_string name = "add";
    static constexpr std::size_t arity = 2;
    static constexpr bool zero_if(const bool* z) { return z[0] && z[1]; }
    template <class V> static V apply(V a, V b) { return a + b; }
    template <class Y, class Tans> using jvp = add_t<detail::tan0<Tans>, detail::tan1<Tans>>;
    template <std::size_t I, class Y, class Ct> using vjp = Ct;
};
struct op_sub {
    static constexpr bool smooth_unary = false;
    static constexpr fixed_string name = "sub";
    static constexpr std::size_t arity = 2;
    static constexpr bool zero_if(const bool* z) { return z[0] && z[1]; }
    template <class V> static V apply(V a, V b) { return a - b; }
    template <class Y, class Tans> using jvp = sub_t<detail::tan0<Tans>, detail::tan1<Tans>>;
    template <std::size_t I, class Y, class Ct> using vjp = std::conditional_t<I == 0, Ct, neg_t<Ct>>;
};
struct op_mul {
    static constexpr bool smooth_unary = false;
    static constexpr fixed_string name = "mul";
    static constexpr std::size_t arity = 2;
    static constexpr bool zero_if(const bool* z) { return z[0] || z[1]; }
    template <class V> static V apply(V a, V b) { return a * b; }
    template <class Y, class Tans>
    using jvp = add_t<mul_t<detail::tan0<Tans>, detail::arg1<Y>>, mul_t<detail::arg0<Y>, detail::tan1<Tans>>>;
    template <std::size_t I, class Y, class Ct>
    using vjp = mul_t<Ct, std::conditional_t<I == 0, detail::arg1<Y>, detail::arg0<Y>>>;
};
struct op_div {
    static constexpr bool smooth_unary = false;
    static constexpr fixed_string name = "div";
    static constexpr std::size_t arity = 2;
    static constexpr bool zero_if(const bool* z) { return z[0]; }
    template <class V> static V apply(V a, V b) { return a / b; }
    // d(a/b) = (da - y db) / b
    template <class Y, class Tans>
    using jvp = div_t<sub_t<detail::tan0<Tans>, mul_t<Y, detail::tan1<Tans>>>, detail::arg1<Y>>;
    template <std::size_t I, class Y, class Ct>
    using vjp = std::conditional_t<I == 0, div_t<Ct, detail::arg1<Y>>, neg_t<div_t<mul_t<Ct, Y>, detail::arg1<Y>>>>;
};
struct op_gt : flat_rules<2> {
    static constexpr fixed_string name = "greater";
    template <class V> static V apply(V a, V b) { return vmath<V>::gt(a, b); }
};
struct op_ge : flat_rules<2> {
    static constexpr fixed_string name = "greater_equal";
    template <class V> static V apply(V a, V b) { return vmath<V>::ge(a, b); }
};
struct op_eq : flat_rules<2> {
    static constexpr fixed_string name = "equal";
    template <class V> static V apply(V a, V b) { return vmath<V>::eq(a, b); }
};

// broadcast(a, s): a, broadcast (numpy rules, right-aligned) to the shape of s, whose value is
// never read (s is a zero_node carrying the shape). It makes a broadcast explicit, so the
// rewrite passes (core/rewrite.hpp) can see that a value is constant along an axis and
// hoist work on it out of that axis. The reverse rule sums the broadcast axes back
// (rules.hpp unbroadcasts every map operand's cotangent).
struct op_broadcast {
    static constexpr bool smooth_unary = false;
    static constexpr fixed_string name = "broadcast";
    static constexpr std::size_t arity = 2;
    static constexpr bool zero_if(const bool* z) { return z[0]; }
    template <class V> static V apply(V a, V) { return a; }
    template <class Y, class Tans> using jvp = map_t<op_broadcast, detail::tan0<Tans>, detail::arg1<Y>>;
    template <std::size_t I, class Y, class Ct> using vjp = std::conditional_t<I == 0, Ct, detail::zero_like<detail::arg1<Y>>>;
};

// where(c, a, b): c is a 0/1 (or zero/non-zero) mask. Derivatives select too,
// so a non-finite value in the unselected branch never leaks into a gradient.
struct op_where {
    static constexpr bool smooth_unary = false;
    static constexpr fixed_string name = "where";
    static constexpr std::size_t arity = 3;
    static constexpr bool zero_if(const bool* z) { return z[1] && z[2]; }
    template <class V> static V apply(V c, V a, V b) { return vmath<V>::select(c, a, b); }
    template <class Y, class Tans>
    using jvp = where_t<detail::arg0<Y>, detail::tan1<Tans>, detail::tan2<Tans>>;
    template <std::size_t I, class Y, class Ct>
    using vjp = std::conditional_t<I == 0, detail::zero_like<Y>,
                                   std::conditional_t<I == 1, where_t<detail::arg0<Y>, Ct, detail::lit<0.0>>,
                                                      where_t<detail::arg0<Y>, detail::lit<0.0>, Ct>>>;
};

// max/min: ties send the derivative to the first operand (TF's convention).
struct op_max {
    static constexpr bool smooth_unary = false;
    static constexpr fixed_string name = "maximum";
    static constexpr std::size_t arity = 2;
    static constexpr bool zero_if(const bool*) { return false; }
    template <class V> static V apply(V a, V b) { return vmath<V>::max(a, b); }
    template <class Y> using first = map_t<op_ge, detail::arg0<Y>, detail::arg1<Y>>;
    template <class Y, class Tans> using jvp = where_t<first<Y>, detail::tan0<Tans>, detail::tan1<Tans>>;
    template <std::size_t I, class Y, class Ct>
    using vjp = std::conditional_t<I == 0, where_t<first<Y>, Ct, detail::lit<0.0>>, where_t<first<Y>, detail::lit<0.0>, Ct>>;
};
struct op_min {
    static constexpr bool smooth_unary = false;
    static constexpr fixed_string name = "minimum";
    static constexpr std::size_t arity = 2;
    static constexpr bool zero_if(const bool*) { return false; }
    template <class V> static V apply(V a, V b) { return vmath<V>::min(a, b); }
    template <class Y> using first = map_t<op_ge, detail::arg1<Y>, detail::arg0<Y>>;
    template <class Y, class Tans> using jvp = where_t<first<Y>, detail::tan0<Tans>, detail::tan1<Tans>>;
    template <std::size_t I, class Y, class Ct>
    using vjp = std::conditional_t<I == 0, where_t<first<Y>, Ct, detail::lit<0.0>>, where_t<first<Y>, detail::lit<0.0>, Ct>>;
};

} // namespace ctrec
