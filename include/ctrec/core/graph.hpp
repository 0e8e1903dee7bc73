#pragma once
// graph_t<Roots...>: every node reachable from the roots, each once, operands
// before their users (post-order). Equal subexpressions are equal types, so
// this is also where common subexpressions merge.
#include "ctrec/core/expr.hpp"

namespace ctrec {

namespace detail {
template <class L, class N, bool Seen = tl_contains_v<N, L>> struct visit;
template <class L, class Ops> struct visit_all;

template <class L, class N>
struct visit<L, N, true> { using type = L; };
template <class L, class N>
struct visit<L, N, false> { using type = tl_append_t<typename visit_all<L, typename N::operands>::type, N>; };

template <class L>
struct visit_all<L, tlist<>> { using type = L; };
template <class L, class O, class... Os>
struct visit_all<L, tlist<O, Os...>> : visit_all<typename visit<L, O>::type, tlist<Os...>> {};
} // namespace detail

template <class... Roots>
using graph_t = typename detail::visit_all<tlist<>, tlist<Roots...>>::type;

// Leaves of a graph by kind, in graph order.
template <class N> struct is_input_leaf : std::bool_constant<N::node_kind == kind::input> {};
template <class N> struct is_param_leaf : std::bool_constant<N::node_kind == kind::param> {};
template <class N> struct is_index_leaf : std::bool_constant<N::node_kind == kind::index_input> {};

} // namespace ctrec
