#pragma once
// Forward mode. tangent_t<N> is the expression for dN along the tangent
// leaves "d.<name>" (one per input and parameter). Built by the per-primitive
// rules; template instantiation memoises each node's tangent once.
#include "ctrec/ad/rules.hpp"
#include "ctrec/core/graph.hpp"

namespace ctrec::ad {

template <class N> struct tangent;
template <class N> using tangent_t = typename tangent<N>::type;

template <fixed_string Name, dims S, bool B>
struct tangent<input_node<Name, S, B>> { using type = input_node<join<"d.", Name>(), S, B>; };
template <fixed_string Name, dims S>
struct tangent<param_node<Name, S>> { using type = param_node<join<"d.", Name>(), S>; };
template <fixed_string Name, dims S>
struct tangent<index_node<Name, S>> { using type = zero_node<S, true>; };
template <double V>
struct tangent<const_node<V>> { using type = zero_node<dims{}, false>; };
template <dims S, bool B>
struct tangent<zero_node<S, B>> { using type = zero_node<S, B>; };
template <>
struct tangent<batch_size_node> { using type = zero_node<dims{}, false>; };
template <fixed_string Name, dims S>
struct tangent<random_node<Name, S>> { using type = zero_node<S, true>; };

template <class L> struct tangents_of;
template <class... O> struct tangents_of<tlist<O...>> { using type = tlist<tangent_t<O>...>; };

template <class N>
struct tangent {
    using type = typename jvp_rule<N, typename tangents_of<typename N::operands>::type>::type;
};

} // namespace ctrec::ad
