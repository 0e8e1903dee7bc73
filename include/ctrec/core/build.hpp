#pragma once
// Simplifying node builders, used by differentiation (ad/) and by composite
// primitives: make_t<N> returns N, or a symbolic zero when N is known to be
// zero because of zero operands, or the non-zero operand of a sum. This keeps
// derivative graphs as small as a hand-written gradient.
#include <type_traits>

#include "ctrec/core/expr.hpp"

namespace ctrec {

struct op_add;
struct op_sub;
struct op_mul;
struct op_div;
struct op_neg;
struct op_where;

namespace detail {
template <class... A>
constexpr bool all_zero() { return (is_zero_v<A> && ...); }
template <class... A>
constexpr bool any_zero() { return (is_zero_v<A> || ...); }
template <class N> using zero_of = zero_node<N::shape, N::batched>;
// Linear in its (single or all) operands: zero in, zero out.
template <class N, class... A>
using linear_t = std::conditional_t<all_zero<A...>(), zero_of<N>, N>;
} // namespace detail

template <class N> struct make { using type = N; };
template <class N> using make_t = typename make<N>::type;

template <class Op, class... A>
struct make<map_node<Op, A...>> {
    using N = map_node<Op, A...>;
    static constexpr bool z[] = {is_zero_v<A>..., false};
    template <class X>
    static constexpr bool same_as_result = X::shape == N::shape && X::batched == N::batched;
    using A0 = std::tuple_element_t<0, std::tuple<A...>>;
    using Al = std::tuple_element_t<sizeof...(A) - 1, std::tuple<A...>>;
    // x + 0 -> x, 0 + x -> x, x - 0 -> x (only where no broadcast is lost)
    static constexpr int pass = !(std::is_same_v<Op, op_add> || std::is_same_v<Op, op_sub>) ? -1
                                : (z[1] && same_as_result<A0>)                               ? 0
                                : (std::is_same_v<Op, op_add> && z[0] && same_as_result<Al>) ? 1
                                                                                             : -1;
    using type = std::conditional_t<
        Op::zero_if(z), detail::zero_of<N>,
        std::conditional_t<pass == 0, A0, std::conditional_t<pass == 1, Al, N>>>;
};

template <contract_spec S, class A, class B, bool K>
struct make<contract_node<S, A, B, K>> {
    using N = contract_node<S, A, B, K>;
    using type = std::conditional_t<detail::any_zero<A, B>(), detail::zero_of<N>, N>;
};
template <kr_role R, class P, class Q, class W>
struct make<kr_matmul_node<R, P, Q, W>> {
    using N = kr_matmul_node<R, P, Q, W>;
    using type = std::conditional_t<detail::any_zero<P, Q, W>(), detail::zero_of<N>, N>;
};
template <class P, class Q, class W, class G>
struct make<kr_dual_node<P, Q, W, G>> {
    using N = kr_dual_node<P, Q, W, G>;
    using type = std::conditional_t<detail::any_zero<P, Q, W, G>(), detail::zero_of<N>, N>;
};
// dropping a zero product leaves a plain Khatri-Rao product
template <class P, class Q, class P2, class Q2, class W>
struct make<kr_matmul2_node<P, Q, P2, Q2, W>> {
    using N = kr_matmul2_node<P, Q, P2, Q2, W>;
    static constexpr bool z1 = detail::any_zero<P, Q>(), z2 = detail::any_zero<P2, Q2>();
    using type = std::conditional_t<
        detail::any_zero<W>() || (z1 && z2), detail::zero_of<N>,
        std::conditional_t<z1, kr_matmul_node<kr_role::out_j, P2, Q2, W>, std::conditional_t<z2, kr_matmul_node<kr_role::out_j, P, Q, W>, N>>>;
};
template <class P, class Q, class G>
struct make<kr_gram_node<P, Q, G>> {
    using N = kr_gram_node<P, Q, G>;
    using type = std::conditional_t<detail::any_zero<P, Q, G>(), detail::zero_of<N>, N>;
};
// a recurrence's reverse mode is linear in the cotangent, its forward mode in the tangents
template <scan_cell C, scan_act Ac, class Rec, class W1, class W2, class A, class Ct, class... M>
struct make<scan_vjp_node<C, Ac, Rec, W1, W2, A, Ct, M...>> {
    using type = detail::linear_t<scan_vjp_node<C, Ac, Rec, W1, W2, A, Ct, M...>, Ct>;
};
template <scan_cell C, scan_act Ac, class Rec, class W1, class W2, class A, class dX, class dE, class dA, class... M>
struct make<scan_jvp_node<C, Ac, Rec, W1, W2, A, dX, dE, dA, M...>> {
    using type = detail::linear_t<scan_jvp_node<C, Ac, Rec, W1, W2, A, dX, dE, dA, M...>, dX, dE, dA>;
};
template <class Op, unsigned M, class A>
struct make<reduce_node<Op, M, A>> { using type = detail::linear_t<reduce_node<Op, M, A>, A>; };
template <class A>
struct make<batch_sum_node<A>> { using type = detail::linear_t<batch_sum_node<A>, A>; };
template <dims S, class A>
struct make<reshape_node<S, A>> {
    using type = std::conditional_t<A::shape == S, A, detail::linear_t<reshape_node<S, A>, A>>;
};
template <dims P, class A>
struct make<transpose_node<P, A>> { using type = detail::linear_t<transpose_node<P, A>, A>; };
template <std::size_t X, std::size_t B, std::size_t E, class A>
struct make<slice_node<X, B, E, A>> { using type = detail::linear_t<slice_node<X, B, E, A>, A>; };
template <std::size_t X, std::size_t B, std::size_t E, class A>
struct make<pad_node<X, B, E, A>> { using type = detail::linear_t<pad_node<X, B, E, A>, A>; };
template <std::size_t X, class... A>
struct make<concat_node<X, A...>> { using type = detail::linear_t<concat_node<X, A...>, A...>; };
template <class T, class I>
struct make<gather_node<T, I>> { using type = detail::linear_t<gather_node<T, I>, T>; };
template <class I, class C, dims S>
struct make<scatter_add_node<I, C, S>> { using type = detail::linear_t<scatter_add_node<I, C, S>, C>; };

template <class Op, class... A> using map_t = make_t<map_node<Op, A...>>;
template <class A, class B> using add_t = map_t<op_add, A, B>;
template <class A, class B> using sub_t = map_t<op_sub, A, B>;
template <class A, class B> using mul_t = map_t<op_mul, A, B>;
template <class A, class B> using div_t = map_t<op_div, A, B>;
template <class A> using neg_t = map_t<op_neg, A>;
template <class C, class A, class B> using where_t = map_t<op_where, C, A, B>;

// unbroadcast: the transpose of broadcasting a value up to E's shape: sums E
// over the broadcast axes, and over the batch when E is batched but the target
// is not.
namespace detail {
constexpr unsigned unbroadcast_mask(dims e, dims s) {
    unsigned m = 0;
    for (std::size_t i = 0; i < e.rank; ++i) {
        std::size_t k = e.rank - 1 - i;  // distance from the right
        if (k >= s.rank) m |= 1u << i;
        else if (s.d[s.rank - 1 - k] == 1 && e.d[i] != 1) m |= 1u << i;
    }
    return m;
}
template <class E, class To, bool Reduce = (unbroadcast_mask(E::shape, To::shape) != 0)>
struct unbroadcast_axes { using type = make_t<reshape_node<To::shape, E>>; };
template <class E, class To>
struct unbroadcast_axes<E, To, true> {
    static constexpr unsigned mask = unbroadcast_mask(E::shape, To::shape);
    using type = make_t<reshape_node<To::shape, make_t<reduce_node<reduce_sum_op, mask, E>>>>;
};

template <class E, class To, int Case = is_zero_v<E> ? 0 : (E::batched && !To::batched) ? 2 : 1>
struct unbroadcast { using type = zero_node<To::shape, To::batched>; };  // E is zero
template <class E, class To>
struct unbroadcast<E, To, 1> { using type = typename unbroadcast_axes<E, To>::type; };
template <class E, class To>
struct unbroadcast<E, To, 2> {  // batched contribution to an unbatched value: sum over the batch
    using type = make_t<batch_sum_node<typename unbroadcast_axes<E, To>::type>>;
};
} // namespace detail

// unbroadcast_t<E, To>: E summed down to the shape and batchedness of node To.
template <class E, class To>
using unbroadcast_t = typename detail::unbroadcast<E, To>::type;

} // namespace ctrec
