#pragma once
// The user-facing DSL: leaves are constexpr objects, and functions/operators
// on them return new (empty) expression objects whose types are the graph.
//
//   constexpr auto x = ctrec::input<"x", 256>;      // (B, 256), B at run time
//   constexpr auto W = ctrec::param<"W", 256, 64>;  // (256, 64)
//   constexpr auto y = ctrec::sigmoid(ctrec::matmul(x, W) + ctrec::param<"b", 64>);
//
// Shape mistakes fail to compile with the operation and both shapes named.
#include "ctrec/core/attention.hpp"
#include "ctrec/core/ops.hpp"

namespace ctrec {

// ---- leaves ---------------------------------------------------------------------
template <fixed_string Name, std::size_t... D>
inline constexpr input_node<Name, make_dims<D...>()> input{};
template <fixed_string Name, std::size_t... D>
inline constexpr param_node<Name, make_dims<D...>()> param{};
// An input that is the same for every example of a call (bound once, without a batch
// axis): the user side of one user scored against many candidates. Work that depends only
// on shared inputs and parameters runs once per call.
template <fixed_string Name, std::size_t... D>
inline constexpr input_node<Name, make_dims<D...>(), false> shared_input{};
template <fixed_string Name, std::size_t... D>
inline constexpr index_node<Name, make_dims<D...>()> ids{};
template <double V>
inline constexpr const_node<V> lit{};
// Per-example uniform [0, 1) numbers of stream Name (see random_node): seeded per call by
// io.seed, identical wherever they are read in that call, zero derivative.
template <fixed_string Name, std::size_t... D>
inline constexpr random_node<Name, make_dims<D...>()> random_uniform{};

// ---- elementwise ------------------------------------------------------------------
template <node A, node B> constexpr auto operator+(A, B) { return map_node<op_add, A, B>{}; }
template <node A, node B> constexpr auto operator-(A, B) { return map_node<op_sub, A, B>{}; }
template <node A, node B> constexpr auto operator*(A, B) { return map_node<op_mul, A, B>{}; }
template <node A, node B> constexpr auto operator/(A, B) { return map_node<op_div, A, B>{}; }
template <node A> constexpr auto operator-(A) { return map_node<op_neg, A>{}; }

template <node A> constexpr auto exp(A) { return map_node<op_exp, A>{}; }
template <node A> constexpr auto log(A) { return map_node<op_log, A>{}; }
template <node A> constexpr auto log1p(A) { return map_node<op_log1p, A>{}; }
template <node A> constexpr auto sqrt(A) { return map_node<op_sqrt, A>{}; }
template <node A> constexpr auto rsqrt(A) { return map_node<op_rsqrt, A>{}; }
template <node A> constexpr auto abs(A) { return map_node<op_abs, A>{}; }
template <node A> constexpr auto sign(A) { return map_node<op_sign, A>{}; }
template <node A> constexpr auto sigmoid(A) { return map_node<op_sigmoid, A>{}; }
template <node A> constexpr auto tanh(A) { return map_node<op_tanh, A>{}; }
template <node A> constexpr auto erf(A) { return map_node<op_erf, A>{}; }
template <double P, node A> constexpr auto pow(A) { return map_node<op_pow<P>, A>{}; }
template <node A, node B> constexpr auto maximum(A, B) { return map_node<op_max, A, B>{}; }
template <node A, node B> constexpr auto minimum(A, B) { return map_node<op_min, A, B>{}; }
template <node A, node B> constexpr auto greater(A, B) { return map_node<op_gt, A, B>{}; }
template <node A, node B> constexpr auto greater_equal(A, B) { return map_node<op_ge, A, B>{}; }
template <node A, node B> constexpr auto equal(A, B) { return map_node<op_eq, A, B>{}; }
// where(c, a, b): a where c != 0, else b.
template <node C, node A, node B> constexpr auto where(C, A, B) { return map_node<op_where, C, A, B>{}; }

// ---- contraction ---------------------------------------------------------------------
// einsum<"ik,kj->ij">(a, b), over per-example axes (the batch axis is implicit).
template <fixed_string Spec, node A, node B>
constexpr auto einsum(A, B) {
    constexpr contract_spec s = parse_contract(Spec);
    static_assert(check_shapes<Spec, A::shape, B::shape, detail::contract_ok(s, A::shape, B::shape)>,
                  "ctrec: einsum spec does not fit the operand shapes");
    return contract_node<s, A, B>{};
}
// matmul: (K)x(K,N), (M,K)x(K,N), (G,M,K)x(G,K,N), (G,M,K)x(K,N)
template <node A, node B>
constexpr auto matmul(A a, B b) {
    constexpr dims sa = A::shape, sb = B::shape;
    constexpr bool ok = (sa.rank >= 1 && sa.rank <= 3 && (sb.rank == 2 || (sb.rank == 3 && sa.rank == 3)) &&
                         sa.d[sa.rank - 1] == sb.d[sb.rank - 2] && (sb.rank < 3 || sa.d[0] == sb.d[0]));
    static_assert(check_shapes<"matmul", sa, sb, ok>, "ctrec: matmul needs (..., K) x (K, N)");
    if constexpr (sa.rank == 1) return einsum<"k,kn->n">(a, b);
    else if constexpr (sa.rank == 2) return einsum<"mk,kn->mn">(a, b);
    else if constexpr (sb.rank == 2) return einsum<"gmk,kn->gmn">(a, b);
    else return einsum<"gmk,gkn->gmn">(a, b);
}
// khatri_rao_matmul(P, Q, W): out[r, j] = sum_{h, m} P[r, h] Q[r, m] W[h * M + m, j] per example,
// P (R, H) and Q (R, M) per-example, W (H * M, J) unbatched. The product P[r, h] Q[r, m]
// (R x H x M per example: CIN's outer-product tensor) is never stored.
template <node P, node Q, node W>
constexpr auto khatri_rao_matmul(P, Q, W) { return kr_matmul_node<kr_role::out_j, P, Q, W>{}; }
template <node A, node B>
constexpr auto outer(A a, B b) {
    static_assert(check_shapes<"outer", A::shape, B::shape, A::shape.rank == 1 && B::shape.rank == 1>,
                  "ctrec: outer takes two vectors");
    return einsum<"i,j->ij">(a, b);
}

// ---- reductions (axes as template arguments; none = all axes) ---------------------------
namespace detail {
template <class A, std::size_t... Ax>
constexpr unsigned axes_mask() {
    if constexpr (sizeof...(Ax) == 0) return all_axes(A::shape.rank);
    else {
        static_assert(((Ax < A::shape.rank) && ...), "ctrec: reduction axis out of range");
        return ((1u << Ax) | ...);
    }
}
template <class A, unsigned M>
constexpr double count(dims s) {
    double n = 1;
    for (std::size_t i = 0; i < s.rank; ++i)
        if (M >> i & 1u) n *= static_cast<double>(s.d[i]);
    return n;
}
} // namespace detail

template <std::size_t... Ax, node A>
constexpr auto sum(A) { return reduce_node<reduce_sum_op, detail::axes_mask<A, Ax...>(), A>{}; }
template <std::size_t... Ax, node A>
constexpr auto max(A) { return reduce_node<reduce_max_op, detail::axes_mask<A, Ax...>(), A>{}; }
template <std::size_t... Ax, node A>
constexpr auto mean(A a) {
    constexpr unsigned m = detail::axes_mask<A, Ax...>();
    return sum<Ax...>(a) * lit<1.0 / detail::count<A, m>(A::shape)>;
}
// Sum over the batch axis: an unbatched result (e.g. a batch-summed loss).
template <node A> constexpr auto batch_sum(A) { return batch_sum_node<A>{}; }
// The number of examples in the current call.
inline constexpr batch_size_node batch_size{};
// Mean over the batch (batch statistics); values computed from it are evaluated in a
// second pass over the batch.
template <node A> constexpr auto batch_mean(A a) { return batch_sum(a) / batch_size; }

// ---- shape ops ----------------------------------------------------------------------
template <std::size_t... D, node A>
constexpr auto reshape(A) { return reshape_node<make_dims<D...>(), A>{}; }
template <std::size_t... P, node A>
constexpr auto transpose(A) { return transpose_node<make_dims<P...>(), A>{}; }
template <std::size_t Axis, std::size_t Begin, std::size_t End, node A>
constexpr auto slice(A) { return slice_node<Axis, Begin, End, A>{}; }
template <std::size_t Axis, node... A>
constexpr auto concat(A...) { return concat_node<Axis, A...>{}; }
// stack<Axis>(a, b, ...): a new axis of size sizeof...(A) at Axis.
template <std::size_t Axis, node... A>
constexpr auto stack(A...) {
    return concat_node<Axis, reshape_node<insert_axis(A::shape, Axis, 1), A>...>{};
}
template <node T, node I>
constexpr auto gather(T, I) { return gather_node<T, I>{}; }
template <node A> constexpr auto stop_gradient(A) { return stop_gradient_node<A>{}; }
// broadcast_to<D...>(a): a broadcast (numpy rules) to the per-example shape (D...), as an
// explicit node (see op_broadcast).
template <std::size_t... D, node A>
constexpr auto broadcast_to(A) {
    constexpr dims s = make_dims<D...>();
    static_assert(check_shapes<"broadcast_to", A::shape, s, can_broadcast(A::shape, s) && broadcast(A::shape, s) == s>,
                  "ctrec: broadcast_to needs a shape the operand broadcasts to");
    if constexpr (A::shape == s) return A{};
    else return map_node<op_broadcast, A, zero_node<s, false>>{};
}

// ---- composites (derivatives follow from their parts) ------------------------------------
// Softmax along Axis. The max shift is a stop_gradient: the softmax does not
// depend on it, and this keeps its derivative exact and cheap.
template <std::size_t Axis, node A>
constexpr auto softmax(A x) {
    constexpr dims kd = keepdims(A::shape, 1u << Axis);
    auto z = x - reshape_node<kd, decltype(stop_gradient(max<Axis>(x)))>{};
    auto e = exp(z);
    return e / reshape_node<kd, decltype(sum<Axis>(e))>{};
}
template <std::size_t Axis, node A>
constexpr auto log_softmax(A x) {
    constexpr dims kd = keepdims(A::shape, 1u << Axis);
    auto z = x - reshape_node<kd, decltype(stop_gradient(max<Axis>(x)))>{};
    return z - reshape_node<kd, decltype(log(sum<Axis>(exp(z))))>{};
}
// TF's l2_normalize: x * rsqrt(max(sum(x^2, axis), epsilon)).
template <std::size_t Axis, double Eps = 1e-12, node A>
constexpr auto l2_normalize(A x) {
    constexpr dims kd = keepdims(A::shape, 1u << Axis);
    return x * reshape_node<kd, decltype(rsqrt(maximum(sum<Axis>(x * x), lit<Eps>)))>{};
}

} // namespace ctrec
