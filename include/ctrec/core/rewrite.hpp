#pragma once
// Rewrite passes: type-to-type transformations of an expression, run before the plan is
// built. basic_program (program.hpp) applies rewrite_t to every root, and the derivative
// programs differentiate the rewritten root and rewrite their derivative roots again, so
// the passes apply in forward, gradient and JVP graphs alike. Each pass keeps the value
// (up to float rounding: sums are reassociated) and is applied only where it saves work.
//
// The passes act at contractions C = contract(A, W) with an unbatched W (weights, or
// values computed once per call):
//
//   1. concat split + linear collection. When A is a concatenation along a contracted axis,
//      C = sum_i contract(A_i, W_i) with W_i the matching slice of W; each A_i is further
//      expanded through +, - and unary - into signed atoms, and equal atoms are merged with
//      their weight slices combined (W_i + W_j, W_i - W_j: unbatched, so computed once and,
//      for parameters, cached as derived values). DIN's [q, k, q - k, q * k] W becomes
//      q (W_a + W_c) + k (W_b - W_c) + (q * k) W_d: the 4H-wide row is never built.
//      Applied only when it merges atoms or enables pass 2 (splitting a plain concat of
//      independent features would trade one GEMM for several small-K ones).
//   2. hoisting. When an operand is a broadcast (op_broadcast, or an atom whose shape is
//      smaller than the piece it was added to) along axes whose letters only index the
//      output, the contraction runs on the unbroadcast operand and the result is broadcast:
//      the query's share of DIN's first layer is computed once per example instead of T
//      times (contract(broadcast(q), W) = broadcast(contract(q, W))).
//
// Nodes this file does not know (added by later primitives) are left as they are, with
// their operands not visited: a rewrite is an optimisation, never needed for correctness.
#include <utility>

#include "ctrec/core/build.hpp"
#include "ctrec/core/ops.hpp"

namespace ctrec {

template <class N> struct rewrite { using type = N; };
template <class N> using rewrite_t = typename rewrite<N>::type;

namespace rw {

// ---- spec helpers ----------------------------------------------------------------------
constexpr int find_letter(const char* s, std::size_t n, char ch) {
    for (std::size_t i = 0; i < n; ++i)
        if (s[i] == ch) return static_cast<int>(i);
    return -1;
}
// contract(A, B, s) == contract(B, A, swap_spec(s))
constexpr contract_spec swap_spec(contract_spec s) {
    contract_spec q = s;
    for (std::size_t i = 0; i < max_rank; ++i) { q.a[i] = s.b[i]; q.b[i] = s.a[i]; }
    q.ra = s.rb;
    q.rb = s.ra;
    return q;
}
// Axes of `a` along which an operand of shape `x` is broadcast (numpy rules).
constexpr unsigned bcast_mask(dims x, dims a) {
    unsigned m = 0;
    for (std::size_t i = 0; i < a.rank; ++i) {
        std::size_t k = a.rank - 1 - i;  // distance from the right
        bool missing = k >= x.rank;
        if (missing || (x.d[x.rank - 1 - k] == 1 && a.d[i] != 1)) m |= 1u << i;
    }
    return m;
}
// A broadcast along `mask` of operand A can be hoisted when every broadcast letter indexes
// the output and not the other operand (then the contraction is constant along it).
constexpr bool hoistable(contract_spec s, unsigned mask) {
    if (mask == 0) return false;
    for (std::size_t i = 0; i < s.ra; ++i)
        if (mask >> i & 1u)
            if (find_letter(s.b, s.rb, s.a[i]) >= 0 || find_letter(s.c, s.rc, s.a[i]) < 0) return false;
    return true;
}
// The spec without A's masked letters (dropped from A and from the output).
constexpr contract_spec drop_letters(contract_spec s, unsigned mask) {
    contract_spec q;
    q.parsed = true;
    for (std::size_t i = 0; i < s.rb; ++i) q.b[q.rb++] = s.b[i];
    for (std::size_t i = 0; i < s.ra; ++i)
        if (!(mask >> i & 1u)) q.a[q.ra++] = s.a[i];
    for (std::size_t i = 0; i < s.rc; ++i) {
        int j = find_letter(s.a, s.ra, s.c[i]);
        if (j < 0 || !(mask >> j & 1u)) q.c[q.rc++] = s.c[i];
    }
    return q;
}
constexpr dims drop_axes(dims a, unsigned mask) {
    dims o;
    for (std::size_t i = 0; i < a.rank; ++i)
        if (!(mask >> i & 1u)) o.d[o.rank++] = a.d[i];
    return o;
}
// The output shape with extent 1 where a dropped letter was.
constexpr dims ones_at_dropped(contract_spec s, dims c, unsigned mask) {
    dims o = c;
    for (std::size_t i = 0; i < s.rc; ++i) {
        int j = find_letter(s.a, s.ra, s.c[i]);
        if (j >= 0 && (mask >> j & 1u)) o.d[i] = 1;
    }
    return o;
}

// ---- pass 2: hoisting a broadcast operand out of a contraction -----------------------------
template <class A> struct bcast_source { using type = void; };
template <class X, class Z> struct bcast_source<map_node<op_broadcast, X, Z>> { using type = X; };

template <contract_spec S, class A, class B, bool K, class X = typename bcast_source<A>::type>
struct hoist_a { using type = void; };
template <contract_spec S, class A, class B, bool K, class X>
    requires(!std::is_void_v<X> && K && hoistable(S, bcast_mask(X::shape, A::shape)))
struct hoist_a<S, A, B, K, X> {
    static constexpr unsigned mask = bcast_mask(X::shape, A::shape);
    static constexpr contract_spec s2 = drop_letters(S, mask);
    using small = make_t<contract_node<s2, make_t<reshape_node<drop_axes(A::shape, mask), X>>, B, K>>;
    using full = contract_node<S, A, B, K>;
    using type = make_t<map_node<op_broadcast, make_t<reshape_node<ones_at_dropped(S, full::shape, mask), small>>,
                                 zero_node<full::shape, false>>>;
};

// contract(A, B) with either operand hoisted when it can be, else as it is.
template <contract_spec S, class A, class B, bool K>
struct hoist {
    using ha = typename hoist_a<S, A, B, K>::type;
    using hb = typename hoist_a<swap_spec(S), B, A, K>::type;
    using type = std::conditional_t<!std::is_void_v<ha>, ha,
                                    std::conditional_t<!std::is_void_v<hb>, hb, make_t<contract_node<S, A, B, K>>>>;
};
template <contract_spec S, class A, class B, bool K>
using hoist_t = typename hoist<S, A, B, K>::type;

// ---- pass 1: concat split and linear collection --------------------------------------------
template <class Atom, bool Neg, class W> struct term {};
template <class Atom, class W> struct group {};  // W already signed

// The atoms of X (a piece of shape PS): +, - and unary - are expanded; zeros vanish; an
// operand of another shape is a broadcast (made explicit so pass 2 can hoist it).
template <class X, bool Neg, class W, dims PS> struct expand;
template <class X, bool Neg, class W, dims PS>
struct expand_operand {
    using type = std::conditional_t<
        is_zero_v<X>, tlist<>,
        std::conditional_t<X::shape == PS, typename expand<X, Neg, W, PS>::type,
                           tlist<term<map_node<op_broadcast, X, zero_node<PS, false>>, Neg, W>>>>;
};
template <class X, bool Neg, class W, dims PS> struct expand { using type = tlist<term<X, Neg, W>>; };
template <class L, class R, bool Neg, class W, dims PS>
struct expand<map_node<op_add, L, R>, Neg, W, PS> {
    using type = tl_concat_t<typename expand_operand<L, Neg, W, PS>::type, typename expand_operand<R, Neg, W, PS>::type>;
};
template <class L, class R, bool Neg, class W, dims PS>
struct expand<map_node<op_sub, L, R>, Neg, W, PS> {
    using type = tl_concat_t<typename expand_operand<L, Neg, W, PS>::type, typename expand_operand<R, !Neg, W, PS>::type>;
};
template <class X, bool Neg, class W, dims PS>
struct expand<map_node<op_neg, X>, Neg, W, PS> { using type = typename expand_operand<X, !Neg, W, PS>::type; };

// The pieces of A with their weight slices: the operands of a concat along a contracted
// axis, else A itself.
template <contract_spec S, class A, class B> struct pieces {
    using type = typename expand_operand<A, false, B, A::shape>::type;
};
template <contract_spec S, std::size_t Ax, class... P, class B>
    requires(find_letter(S.b, S.rb, S.a[Ax]) >= 0 && find_letter(S.c, S.rc, S.a[Ax]) < 0)
struct pieces<S, concat_node<Ax, P...>, B> {
    static constexpr std::size_t bx = static_cast<std::size_t>(find_letter(S.b, S.rb, S.a[Ax]));
    static constexpr std::size_t n = sizeof...(P);
    static constexpr std::array<std::size_t, n + 1> off = [] {
        std::array<std::size_t, n + 1> o{};
        std::size_t w[] = {P::shape.d[Ax]...};
        for (std::size_t i = 0; i < n; ++i) o[i + 1] = o[i] + w[i];
        return o;
    }();
    template <std::size_t... I>
    static auto build(std::index_sequence<I...>)
        -> tl_concat_t<typename expand_operand<tl_at_t<I, tlist<P...>>, false,
                                               make_t<slice_node<bx, off[I], off[I + 1], B>>,
                                               tl_at_t<I, tlist<P...>>::shape>::type...>;
    using type = decltype(build(std::make_index_sequence<n>{}));
};

// Merge terms with equal atoms, in order of first appearance.
template <class Acc, class Terms> struct collect;
template <class Acc> struct collect<Acc, tlist<>> { using type = Acc; };
template <class Acc, class Atom, bool Neg, class W, class... Rest>
struct collect<Acc, tlist<term<Atom, Neg, W>, Rest...>> {
    template <class G> struct same_atom : std::false_type {};
    template <class Wg> struct same_atom<group<Atom, Wg>> : std::true_type {};
    template <class G> struct merged { using type = G; };
    template <class Wg> struct merged<group<Atom, Wg>> {
        using type = group<Atom, std::conditional_t<Neg, sub_t<Wg, W>, add_t<Wg, W>>>;
    };
    template <class L> struct merge_into;
    template <class... G> struct merge_into<tlist<G...>> {
        static constexpr bool found = (same_atom<G>::value || ... || false);
        using type = std::conditional_t<found, tlist<typename merged<G>::type...>,
                                        tlist<G..., group<Atom, std::conditional_t<Neg, neg_t<W>, W>>>>;
    };
    using type = typename collect<typename merge_into<Acc>::type, tlist<Rest...>>::type;
};

template <contract_spec S, bool K, class G> struct group_contract;
template <contract_spec S, bool K, class Atom, class W>
struct group_contract<S, K, group<Atom, W>> { using type = hoist_t<S, Atom, W, K>; };

template <class L> struct sum_all;
template <class X> struct sum_all<tlist<X>> { using type = X; };
template <class X, class Y, class... R>
struct sum_all<tlist<X, Y, R...>> : sum_all<tlist<add_t<X, Y>, R...>> {};

template <contract_spec S, bool K, class Terms, class Groups> struct profitable;
template <contract_spec S, bool K, class Terms, class... G>
struct profitable<S, K, Terms, tlist<G...>> {
    template <class Gi> struct hoists : std::false_type {};
    template <class Atom, class W>
    struct hoists<group<Atom, W>> : std::bool_constant<!std::is_void_v<typename hoist_a<S, Atom, W, K>::type>> {};
    static constexpr bool value = sizeof...(G) > 0 && (sizeof...(G) < Terms::size || (hoists<G>::value || ...));
};

// Passes 1 and 2 at one contraction whose operands are already rewritten. Pass 1 needs the
// other operand unbatched (combined weights are computed once per call).
template <class A> inline constexpr bool linear_candidate = false;
template <std::size_t X, class... P> inline constexpr bool linear_candidate<concat_node<X, P...>> = true;
template <class L, class R> inline constexpr bool linear_candidate<map_node<op_add, L, R>> = true;
template <class L, class R> inline constexpr bool linear_candidate<map_node<op_sub, L, R>> = true;
template <class X> inline constexpr bool linear_candidate<map_node<op_neg, X>> = true;

template <contract_spec S, class A, class B, bool K, bool Try = K && !B::batched && linear_candidate<A>>
struct split_a { using type = void; };
template <contract_spec S, class A, class B, bool K>
struct split_a<S, A, B, K, true> {
    using terms = typename pieces<S, A, B>::type;
    using groups = typename collect<tlist<>, terms>::type;
    static constexpr bool ok = profitable<S, K, terms, groups>::value;
    template <class L> struct build;
    template <class... G> struct build<tlist<G...>> {
        using type = typename sum_all<tlist<typename group_contract<S, K, G>::type...>>::type;
    };
    using type = typename std::conditional_t<ok, build<groups>, std::type_identity<void>>::type;
};
template <contract_spec S, class A, class B, bool K>
struct contract_rewrite {
    using sa = typename split_a<S, A, B, K>::type;
    using sb = typename split_a<swap_spec(S), B, A, K>::type;
    using type = std::conditional_t<!std::is_void_v<sa>, sa, std::conditional_t<!std::is_void_v<sb>, sb, hoist_t<S, A, B, K>>>;
};

} // namespace rw

// ---- the recursion: rebuild every known node from rewritten operands ----------------------
template <contract_spec S, class A, class B, bool K>
struct rewrite<contract_node<S, A, B, K>> {
    using Ar = rewrite_t<A>;
    using Br = rewrite_t<B>;
    using plain = make_t<contract_node<S, Ar, Br, K>>;
    template <bool Zero, class = void> struct pick { using type = plain; };
    template <class V> struct pick<false, V> {
        using cand = typename rw::contract_rewrite<S, Ar, Br, K>::type;
        // a rewrite never changes what the node is (shape, batchedness)
        using type = std::conditional_t<cand::shape == plain::shape && cand::batched == plain::batched, cand, plain>;
    };
    using type = typename pick<is_zero_v<plain>>::type;
};
template <class Op, class... A>
struct rewrite<map_node<Op, A...>> { using type = make_t<map_node<Op, rewrite_t<A>...>>; };
template <class Op, unsigned M, class A>
struct rewrite<reduce_node<Op, M, A>> { using type = make_t<reduce_node<Op, M, rewrite_t<A>>>; };
template <class A>
struct rewrite<batch_sum_node<A>> { using type = make_t<batch_sum_node<rewrite_t<A>>>; };
template <dims S, class A>
struct rewrite<reshape_node<S, A>> { using type = make_t<reshape_node<S, rewrite_t<A>>>; };
template <class A>
struct rewrite<stop_gradient_node<A>> { using type = make_t<stop_gradient_node<rewrite_t<A>>>; };
template <dims P, class A>
struct rewrite<transpose_node<P, A>> { using type = make_t<transpose_node<P, rewrite_t<A>>>; };
template <std::size_t X, std::size_t Bg, std::size_t E, class A>
struct rewrite<slice_node<X, Bg, E, A>> { using type = make_t<slice_node<X, Bg, E, rewrite_t<A>>>; };
template <std::size_t X, std::size_t Bf, std::size_t Af, class A>
struct rewrite<pad_node<X, Bf, Af, A>> { using type = make_t<pad_node<X, Bf, Af, rewrite_t<A>>>; };
template <std::size_t X, class... A>
struct rewrite<concat_node<X, A...>> { using type = make_t<concat_node<X, rewrite_t<A>...>>; };
template <class T, class I>
struct rewrite<gather_node<T, I>> { using type = make_t<gather_node<rewrite_t<T>, I>>; };
template <class I, class C, dims S>
struct rewrite<scatter_add_node<I, C, S>> { using type = make_t<scatter_add_node<I, rewrite_t<C>, S>>; };
template <kr_role R, class P, class Q, class W>
struct rewrite<kr_matmul_node<R, P, Q, W>> { using type = make_t<kr_matmul_node<R, rewrite_t<P>, rewrite_t<Q>, rewrite_t<W>>>; };
template <class P, class Q, class G>
struct rewrite<kr_gram_node<P, Q, G>> { using type = make_t<kr_gram_node<rewrite_t<P>, rewrite_t<Q>, rewrite_t<G>>>; };
template <class P, class Q, class W, class G>
struct rewrite<kr_dual_node<P, Q, W, G>> { using type = make_t<kr_dual_node<rewrite_t<P>, rewrite_t<Q>, rewrite_t<W>, rewrite_t<G>>>; };
template <class P, class Q, class P2, class Q2, class W>
struct rewrite<kr_matmul2_node<P, Q, P2, Q2, W>> {
    using type = make_t<kr_matmul2_node<rewrite_t<P>, rewrite_t<Q>, rewrite_t<P2>, rewrite_t<Q2>, rewrite_t<W>>>;
};

} // namespace ctrec
