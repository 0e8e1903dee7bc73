#pragma once
// Derivative rules of the structural primitives (everything but elementwise
// maps, whose rules live next to their forward definition in core/ops.hpp).
//   jvp_rule<N, Tangents>::type     tangent of N from its operands' tangents
//   vjp_rule<N, I, Ct>::type        cotangent contribution of N to operand I,
//                                   already shaped (and batch-summed) like it
#include "ctrec/core/attention.hpp"
#include "ctrec/core/contract_plan.hpp"
#include "ctrec/core/ops.hpp"

namespace ctrec::ad {

namespace detail {
using ctrec::detail::zero_of;
// X broadcast to the shape and batchedness of node To (an explicit node, so the
// result has exactly that shape).
template <class X, class To, int Case = is_zero_v<X> ? 0 : (X::shape == To::shape && X::batched == To::batched) ? 1 : 2>
struct broadcast_to { using type = zero_node<To::shape, To::batched>; };
template <class X, class To>
struct broadcast_to<X, To, 1> { using type = X; };
template <class X, class To>
struct broadcast_to<X, To, 2> { using type = map_node<op_add, X, zero_node<To::shape, To::batched>>; };
template <class X, class To>
using broadcast_to_t = typename broadcast_to<X, To>::type;
// Spec letters rearranged for the transposed contraction "c,other->target".
constexpr contract_spec transpose_spec(contract_spec p, bool for_a) {
    contract_spec q;
    for (std::size_t i = 0; i < p.rc; ++i) q.a[i] = p.c[i];
    q.ra = p.rc;
    const char* other = for_a ? p.b : p.a;
    std::size_t ro = for_a ? p.rb : p.ra;
    for (std::size_t i = 0; i < ro; ++i) q.b[i] = other[i];
    q.rb = ro;
    const char* tgt = for_a ? p.a : p.b;
    std::size_t rt = for_a ? p.ra : p.rb;
    for (std::size_t i = 0; i < rt; ++i) q.c[i] = tgt[i];
    q.rc = rt;
    q.parsed = true;
    return q;
}
} // namespace detail

// ---- forward mode -------------------------------------------------------------------
template <class N, class Tans> struct jvp_rule;

template <class Op, class Y, class Tans, bool Smooth = Op::smooth_unary>
struct map_jvp { using type = typename Op::template jvp<Y, Tans>; };
template <class Op, class Y, class Tans>
struct map_jvp<Op, Y, Tans, true> {
    using type = mul_t<tl_at_t<0, Tans>, typename Op::template deriv<tl_at_t<0, typename Y::operands>, Y>>;
};
template <class Op, std::size_t I, class Y, class Ct, bool Smooth = Op::smooth_unary>
struct map_vjp { using type = typename Op::template vjp<I, Y, Ct>; };
template <class Op, std::size_t I, class Y, class Ct>
struct map_vjp<Op, I, Y, Ct, true> {
    using type = mul_t<Ct, typename Op::template deriv<tl_at_t<0, typename Y::operands>, Y>>;
};

template <class Op, class... A, class Tans>
struct jvp_rule<map_node<Op, A...>, Tans> { using type = typename map_jvp<Op, map_node<Op, A...>, Tans>::type; };
template <contract_spec S, class A, class B, bool K, class dA, class dB>
struct jvp_rule<contract_node<S, A, B, K>, tlist<dA, dB>> {
    using type = add_t<make_t<contract_node<S, dA, B, K>>, make_t<contract_node<S, A, dB, K>>>;
};
// Khatri-Rao product: trilinear in (P, Q, W). Rules exist for the forward role (out_j);
// the other roles and kr_gram appear only in gradient graphs (no second derivatives).
template <class P, class Q, class W, class dP, class dQ, class dW>
struct jvp_rule<kr_matmul_node<kr_role::out_j, P, Q, W>, tlist<dP, dQ, dW>> {
    using type = add_t<make_t<kr_matmul2_node<dP, Q, P, dQ, W>>, make_t<kr_matmul_node<kr_role::out_j, P, Q, dW>>>;
};
template <unsigned M, class A, class dA>
struct jvp_rule<reduce_node<reduce_sum_op, M, A>, tlist<dA>> {
    using type = make_t<reduce_node<reduce_sum_op, M, dA>>;
};
// max: the derivative is shared equally among tied maxima (TF's reduce_max gradient).
template <unsigned M, class A>
struct max_mask {
    using N = reduce_node<reduce_max_op, M, A>;
    using mask = map_node<op_eq, A, reshape_node<keepdims(A::shape, M), N>>;
    using count = reduce_node<reduce_sum_op, M, mask>;
};
template <unsigned M, class A, class dA>
struct jvp_rule<reduce_node<reduce_max_op, M, A>, tlist<dA>> {
    using mm = max_mask<M, A>;
    using type = div_t<make_t<reduce_node<reduce_sum_op, M, mul_t<typename mm::mask, dA>>>, typename mm::count>;
};
template <class A, class dA>
struct jvp_rule<batch_sum_node<A>, tlist<dA>> { using type = make_t<batch_sum_node<dA>>; };
template <dims S, class A, class dA>
struct jvp_rule<reshape_node<S, A>, tlist<dA>> { using type = make_t<reshape_node<S, dA>>; };
template <class A, class dA>
struct jvp_rule<stop_gradient_node<A>, tlist<dA>> { using type = zero_node<A::shape, A::batched>; };
template <dims P, class A, class dA>
struct jvp_rule<transpose_node<P, A>, tlist<dA>> { using type = make_t<transpose_node<P, dA>>; };
template <std::size_t X, std::size_t B, std::size_t E, class A, class dA>
struct jvp_rule<slice_node<X, B, E, A>, tlist<dA>> { using type = make_t<slice_node<X, B, E, dA>>; };
template <std::size_t X, std::size_t B, std::size_t E, class A, class dA>
struct jvp_rule<pad_node<X, B, E, A>, tlist<dA>> { using type = make_t<pad_node<X, B, E, dA>>; };
template <std::size_t X, class... A, class... dA>
struct jvp_rule<concat_node<X, A...>, tlist<dA...>> { using type = make_t<concat_node<X, dA...>>; };
template <class T, class I, class dT, class dI>
struct jvp_rule<gather_node<T, I>, tlist<dT, dI>> { using type = make_t<gather_node<dT, I>>; };
template <class I, class C, dims S, class dI, class dC>
struct jvp_rule<scatter_add_node<I, C, S>, tlist<dI, dC>> { using type = make_t<scatter_add_node<I, dC, S>>; };


// ---- gated recurrences (scan_node) ----------------------------------------------------
// The state products stay inside scan_jvp / scan_vjp; everything that does not depend on
// the recurrence (the weight tangents' products with the stored states, the weight
// gradients as sums over t and the batch of stored states times per-step gradients) is an
// ordinary contraction of record columns, so the existing GEMMs and batch sums do it.
namespace detail {
// h_{t-1} for t = 0..T-1 (h_{-1} = 0): the record's h columns shifted down one step
template <class Rec, std::size_t T, std::size_t U>
struct scan_hprev {
    using H = make_t<slice_node<1, 0, U, Rec>>;
    using type = make_t<pad_node<0, 1, 0, make_t<slice_node<0, 0, T - 1, H>>>>;
};
template <class Rec, std::size_t U>
struct scan_hprev<Rec, 1, U> { using type = zero_node<make_dims<1, U>(), true>; };
template <class N>
using scan_hprev_t = typename scan_hprev<N, N::shape.d[0], N::U>::type;
// agru / augru: r_t * h_{t-1}, the operand of the candidate's state product
template <class N>
using scan_rh_t = mul_t<make_t<slice_node<1, N::U, 2 * N::U, N>>, scan_hprev_t<N>>;
// keras_gru: h_{t-1} dW1 + dW2 (the tangent of g not due to h);
// agru / augru: [h_{t-1} dW1 | (r h_{t-1}) dW2], added to the pre-activations like dX
template <class N, class dW1, class dW2, bool Gru>
struct scan_ext {
    using type = add_t<make_t<contract_node<parse_contract(fixed_string("tu,ug->tg")), scan_hprev_t<N>, dW1>>,
                       broadcast_to_t<dW2, zero_node<make_dims<N::T, 3 * N::U>(), true>>>;
};
template <class N, class dW1, class dW2>
struct scan_ext<N, dW1, dW2, false> {
    using type = make_t<concat_node<
        1, broadcast_to_t<make_t<contract_node<parse_contract(fixed_string("tu,ug->tg")), scan_hprev_t<N>, dW1>>,
                          zero_node<make_dims<N::T, 2 * N::U>(), true>>,
        broadcast_to_t<make_t<contract_node<parse_contract(fixed_string("tu,uv->tv")), scan_rh_t<N>, dW2>>,
                       zero_node<make_dims<N::T, N::U>(), true>>>>;
};
} // namespace detail

template <scan_cell C, scan_act Ac, class X, class W1, class W2, class A, class... M, class dX, class dW1, class dW2, class dA, class... dM>
struct jvp_rule<scan_node<C, Ac, X, W1, W2, A, M...>, tlist<dX, dW1, dW2, dA, dM...>> {
    using N = scan_node<C, Ac, X, W1, W2, A, M...>;
    static constexpr std::size_t T = N::T, U = N::U;
    using Hp = detail::scan_hprev_t<N>;
    using ext = typename detail::scan_ext<N, dW1, dW2, C == scan_cell::keras_gru>::type;
    using dE = detail::broadcast_to_t<ext, zero_node<make_dims<T, 3 * U>(), true>>;
    using dXb = detail::broadcast_to_t<dX, zero_node<make_dims<T, 3 * U>(), true>>;
    using dAb = std::conditional_t<C == scan_cell::keras_gru, zero_node<make_dims<T>(), true>,
                                   detail::broadcast_to_t<dA, zero_node<make_dims<T>(), true>>>;
    using type = make_t<scan_jvp_node<C, Ac, N, W1, W2, A, dXb, dE, dAb, M...>>;
};

// ---- reverse mode ---------------------------------------------------------------------
template <class N, std::size_t I, class Ct> struct vjp_rule;

template <class Op, class... A, std::size_t I, class Ct>
struct vjp_rule<map_node<Op, A...>, I, Ct> {
    using Arg = std::tuple_element_t<I, std::tuple<A...>>;
    using type = unbroadcast_t<typename map_vjp<Op, I, map_node<Op, A...>, Ct>::type, Arg>;
};
namespace detail {
// The transposed contraction of a VJP, e.g. dy . W^T. W is read as stored: the GEMM
// packs strips of it (cpu/gemm.hpp, packed_b), so no transposed copy of a weight matrix
// has to be made per training step or kept in cache next to W and dW.
template <contract_spec Q, class Ct, class Other, bool Keep>
struct vjp_contraction { using type = make_t<contract_node<Q, Ct, Other, Keep>>; };
} // namespace detail

template <contract_spec S, class A, class B, bool K, std::size_t I, class Ct>
struct vjp_rule<contract_node<S, A, B, K>, I, Ct> {
    using Arg = std::conditional_t<I == 0, A, B>;
    using Other = std::conditional_t<I == 0, B, A>;
    using type = typename detail::vjp_contraction<detail::transpose_spec(S, I == 0), Ct, Other, Arg::batched>::type;
};
// d/dP: sum_{m, j} Q[r, m] Ct[r, j] W[h, m, j]; d/dQ: sum_{h, j} P[r, h] Ct[r, j] W[h, m, j];
// d/dW: the Khatri-Rao Gram product summed over the batch. W is read as stored each time.
// When W has at most kr_dual_max_j columns both come from one kr_dual step (sliced apart).
template <class P, class Q, class W, class Ct, std::size_t I, bool Dual = (W::shape.d[1] <= kr_dual_max_j)>
struct kr_input_vjp {
    using dual = make_t<kr_dual_node<P, Q, W, Ct>>;
    static constexpr std::size_t ka = P::shape.d[1], kb = Q::shape.d[1];
    using type = std::conditional_t<I == 0, make_t<slice_node<1, 0, ka, dual>>, make_t<slice_node<1, ka, ka + kb, dual>>>;
};
template <class P, class Q, class W, class Ct>
struct kr_input_vjp<P, Q, W, Ct, 0, false> { using type = make_t<kr_matmul_node<kr_role::out_h, Q, Ct, W>>; };
template <class P, class Q, class W, class Ct>
struct kr_input_vjp<P, Q, W, Ct, 1, false> { using type = make_t<kr_matmul_node<kr_role::out_m, P, Ct, W>>; };
template <class P, class Q, class W, class Ct>
struct vjp_rule<kr_matmul_node<kr_role::out_j, P, Q, W>, 0, Ct> { using type = typename kr_input_vjp<P, Q, W, Ct, 0>::type; };
template <class P, class Q, class W, class Ct>
struct vjp_rule<kr_matmul_node<kr_role::out_j, P, Q, W>, 1, Ct> { using type = typename kr_input_vjp<P, Q, W, Ct, 1>::type; };
template <class P, class Q, class W, class Ct>
struct vjp_rule<kr_matmul_node<kr_role::out_j, P, Q, W>, 2, Ct> { using type = make_t<kr_gram_node<P, Q, Ct>>; };

namespace detail {
template <class N, class Ct, bool Masked = N::masked>
struct scan_v;
template <scan_cell C, scan_act Ac, class X, class W1, class W2, class A, class... M, class Ct, bool Mk>
struct scan_v<scan_node<C, Ac, X, W1, W2, A, M...>, Ct, Mk> {
    using type = make_t<scan_vjp_node<C, Ac, scan_node<C, Ac, X, W1, W2, A, M...>, W1, W2, A, Ct, M...>>;
};
template <class N, class Ct> using scan_v_t = typename scan_v<N, Ct>::type;
} // namespace detail

namespace detail {
// Operand J's gradient from V (the scan_vjp rows) for a keras_gru scan N:
// X: V[:, :3U]; W1: sum over t and the batch of h_{t-1}^T dg, dg = [dz | dr | dhh * r];
// W2 (recurrent bias): dg summed over t and the batch.
template <class N, class V, std::size_t J, bool Gru = N::cell == scan_cell::keras_gru>
struct scan_operand_grad {
    static constexpr std::size_t U = N::U;
    using dG = make_t<concat_node<1, make_t<slice_node<1, 0, 2 * U, V>>, make_t<slice_node<1, 3 * U, 4 * U, V>>>>;
    using Op = tl_at_t<J, typename N::operands>;
    template <std::size_t K, class = void> struct pick { using type = zero_node<Op::shape, Op::batched>; };
    template <class Z> struct pick<0, Z> { using type = make_t<slice_node<1, 0, 3 * U, V>>; };
    template <class Z> struct pick<1, Z> {
        using type = make_t<contract_node<parse_contract(fixed_string("tu,tg->ug")), scan_hprev_t<N>, dG, Op::batched>>;
    };
    template <class Z> struct pick<2, Z> { using type = unbroadcast_t<dG, Op>; };
    using type = typename pick<J>::type;
};
// agru / augru: X: V[:, :3U]; W1: h_{t-1}^T [dr | du]; W2: (r h_{t-1})^T dc; A: V[:, 3U].
template <class N, class V, std::size_t J>
struct scan_operand_grad<N, V, J, false> {
    static constexpr std::size_t U = N::U, T = N::T;
    using Op = tl_at_t<J, typename N::operands>;
    template <std::size_t K, class = void> struct pick { using type = zero_node<Op::shape, Op::batched>; };
    template <class Z> struct pick<0, Z> { using type = make_t<slice_node<1, 0, 3 * U, V>>; };
    template <class Z> struct pick<1, Z> {
        using type = make_t<contract_node<parse_contract(fixed_string("tu,tg->ug")), scan_hprev_t<N>,
                                          make_t<slice_node<1, 0, 2 * U, V>>, Op::batched>>;
    };
    template <class Z> struct pick<2, Z> {
        using type = make_t<contract_node<parse_contract(fixed_string("tu,tv->uv")), scan_rh_t<N>,
                                          make_t<slice_node<1, 2 * U, 3 * U, V>>, Op::batched>>;
    };
    template <class Z> struct pick<3, Z> {
        using type = unbroadcast_t<make_t<reshape_node<make_dims<T>(), make_t<slice_node<1, 3 * U, 3 * U + 1, V>>>>, Op>;
    };
    using type = typename pick<J>::type;
};
} // namespace detail

template <scan_cell C, scan_act Ac, class X, class W1, class W2, class A, class... M, std::size_t I, class Ct>
struct vjp_rule<scan_node<C, Ac, X, W1, W2, A, M...>, I, Ct> {
    using N = scan_node<C, Ac, X, W1, W2, A, M...>;
    using type = typename detail::scan_operand_grad<N, detail::scan_v_t<N, Ct>, I>::type;
};
template <unsigned M, class A, std::size_t I, class Ct>
struct vjp_rule<reduce_node<reduce_sum_op, M, A>, I, Ct> {
    using type = detail::broadcast_to_t<make_t<reshape_node<keepdims(A::shape, M), Ct>>, A>;
};
template <unsigned M, class A, std::size_t I, class Ct>
struct vjp_rule<reduce_node<reduce_max_op, M, A>, I, Ct> {
    using mm = max_mask<M, A>;
    using share = div_t<Ct, typename mm::count>;
    using type = mul_t<make_t<reshape_node<keepdims(A::shape, M), share>>, typename mm::mask>;
};
template <class A, class Ct>
struct vjp_rule<batch_sum_node<A>, 0, Ct> { using type = detail::broadcast_to_t<Ct, A>; };
template <dims S, class A, class Ct>
struct vjp_rule<reshape_node<S, A>, 0, Ct> { using type = make_t<reshape_node<A::shape, Ct>>; };
template <class A, class Ct>
struct vjp_rule<stop_gradient_node<A>, 0, Ct> { using type = zero_node<A::shape, A::batched>; };
template <dims P, class A, class Ct>
struct vjp_rule<transpose_node<P, A>, 0, Ct> { using type = make_t<transpose_node<inverse_permutation(P), Ct>>; };
template <std::size_t X, std::size_t B, std::size_t E, class A, class Ct>
struct vjp_rule<slice_node<X, B, E, A>, 0, Ct> {
    using type = make_t<pad_node<X, B, A::shape.d[X] - E, Ct>>;
};
template <std::size_t X, std::size_t B, std::size_t E, class A, class Ct>
struct vjp_rule<pad_node<X, B, E, A>, 0, Ct> {
    using type = make_t<slice_node<X, B, B + A::shape.d[X], Ct>>;
};
template <std::size_t X, class... A, std::size_t I, class Ct>
struct vjp_rule<concat_node<X, A...>, I, Ct> {
    static constexpr std::size_t ext[] = {A::shape.d[X]...};
    static constexpr std::size_t begin = [] { std::size_t b = 0; for (std::size_t i = 0; i < I; ++i) b += ext[i]; return b; }();
    using Arg = std::tuple_element_t<I, std::tuple<A...>>;
    using sliced = make_t<slice_node<X, begin, begin + ext[I], Ct>>;
    // an unbatched operand of a batched concat receives the batch sum
    using type = std::conditional_t<(Arg::batched || !Ct::batched), sliced, make_t<batch_sum_node<sliced>>>;
};
template <class T, class Ids, class Ct>
struct vjp_rule<gather_node<T, Ids>, 0, Ct> { using type = make_t<scatter_add_node<Ids, Ct, T::shape>>; };
template <class T, class Ids, class Ct>
struct vjp_rule<gather_node<T, Ids>, 1, Ct> { using type = zero_node<Ids::shape, true>; };
template <class Ids, class C, dims S, class Ct>
struct vjp_rule<scatter_add_node<Ids, C, S>, 1, Ct> { using type = make_t<gather_node<Ct, Ids>>; };
template <class Ids, class C, dims S, class Ct>
struct vjp_rule<scatter_add_node<Ids, C, S>, 0, Ct> { using type = zero_node<Ids::shape, true>; };

// Fused self-attention (core/attention.hpp): one node per derivative, each recomputing the
// scores per query block. The gradient or tangent is broadcast to a per-example value first
// (the kernels read one (N, K) block per example).
template <class X, class dX>
struct jvp_rule<attention_node<X>, tlist<dX>> {
    using type = make_t<attention_jvp_node<X, detail::broadcast_to_t<dX, X>>>;
};
template <class X, class Ct>
struct vjp_rule<attention_node<X>, 0, Ct> {
    using type = make_t<attention_vjp_node<X, attention_node<X>, detail::broadcast_to_t<Ct, X>>>;
};

} // namespace ctrec::ad
