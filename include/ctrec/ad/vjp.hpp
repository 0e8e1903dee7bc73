#pragma once
// Reverse mode. cotangent_t<G, N>: the expression for dL/dN in graph G, as
// the sum, over every use of N by a node C of G, of C's rule applied to C's own
// cotangent. A value used several times therefore accumulates every
// contribution. The root's cotangent is the seed leaf `seed_t<Root>`.
#include "ctrec/ad/rules.hpp"
#include "ctrec/core/graph.hpp"

namespace ctrec::ad {

// A per-example root is seeded by the input "cotangent" (its shape, per example); an
// unbatched scalar root (a training loss: batch mean plus penalties) by the constant 1.
template <class Root>
using seed_t = std::conditional_t<Root::batched, input_node<"cotangent", Root::shape>, const_node<1.0>>;

template <class G, class N> struct cotangent;
template <class G, class N> using cotangent_t = typename cotangent<G, N>::type;

namespace detail {
// Contributions of consumer C to node N: one per operand slot of C holding N.
template <class G, class C, class N, std::size_t... I>
auto contributions(std::index_sequence<I...>)
    -> tl_concat_t<tlist<>, std::conditional_t<std::is_same_v<tl_at_t<I, typename C::operands>, N>,
                                               tlist<typename vjp_rule<C, I, cotangent_t<G, C>>::type>, tlist<>>...>;
template <class G, class C, class N, bool Uses = tl_contains_v<N, typename C::operands>>
struct contributions_of { using type = tlist<>; };
template <class G, class C, class N>
struct contributions_of<G, C, N, true> {
    using type = decltype(contributions<G, C, N>(std::make_index_sequence<C::operands::size>{}));
};
template <class G, class C, class N>
using contributions_t = typename contributions_of<G, C, N>::type;

template <class Acc, class L> struct sum_all;
template <class Acc> struct sum_all<Acc, tlist<>> { using type = Acc; };
template <class Acc, class X, class... R>
struct sum_all<Acc, tlist<X, R...>> : sum_all<add_t<Acc, X>, tlist<R...>> {};

template <class G, class N> struct all_contributions;
template <class... C, class N>
struct all_contributions<tlist<C...>, N> {
    using type = tl_concat_t<tlist<>, contributions_t<tlist<C...>, C, N>...>;
};
} // namespace detail

template <class G, class N>
struct cotangent {
    using root = tl_at_t<G::size - 1, G>;
    using start = std::conditional_t<std::is_same_v<N, root>, seed_t<root>, zero_node<N::shape, N::batched>>;
    using type = typename detail::sum_all<start, typename detail::all_contributions<G, N>::type>::type;
};

// The gradient of Root w.r.t. leaf L, shaped like L (parameter gradients are
// summed over the batch).
template <class Root, class L>
using gradient_t = cotangent_t<graph_t<Root>, L>;

} // namespace ctrec::ad
