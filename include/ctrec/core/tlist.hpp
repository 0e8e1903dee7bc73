#pragma once
// tlist: a flat list of types, walked with fold expressions (never deep nesting).
#include <cstddef>
#include <tuple>
#include <type_traits>

namespace ctrec {

template <class... T>
struct tlist {
    static constexpr std::size_t size = sizeof...(T);
};

template <class L, class T> struct tl_append;
template <class... A, class T> struct tl_append<tlist<A...>, T> { using type = tlist<A..., T>; };
template <class L, class T> using tl_append_t = typename tl_append<L, T>::type;

template <class... L> struct tl_concat { using type = tlist<>; };
template <class... A> struct tl_concat<tlist<A...>> { using type = tlist<A...>; };
template <class... A, class... B, class... R>
struct tl_concat<tlist<A...>, tlist<B...>, R...> : tl_concat<tlist<A..., B...>, R...> {};
template <class... L> using tl_concat_t = typename tl_concat<L...>::type;

template <class T, class L> struct tl_contains;
template <class T, class... A> struct tl_contains<T, tlist<A...>> : std::bool_constant<(std::is_same_v<T, A> || ...)> {};
template <class T, class L> inline constexpr bool tl_contains_v = tl_contains<T, L>::value;

// Position of T in L (L.size if absent).
template <class T, class L> struct tl_index;
template <class T, class... A> struct tl_index<T, tlist<A...>> {
    static constexpr std::size_t value = [] {
        constexpr bool same[] = {std::is_same_v<T, A>..., false};
        std::size_t i = 0;
        while (i < sizeof...(A) && !same[i]) ++i;
        return i;
    }();
};
template <class T, class L> inline constexpr std::size_t tl_index_v = tl_index<T, L>::value;

template <std::size_t I, class L> struct tl_at;
template <std::size_t I, class... A> struct tl_at<I, tlist<A...>> { using type = std::tuple_element_t<I, std::tuple<A...>>; };
template <std::size_t I, class L> using tl_at_t = typename tl_at<I, L>::type;

// Keeps the elements for which P<T>::value holds.
template <template <class> class P, class L> struct tl_filter;
template <template <class> class P, class... A>
struct tl_filter<P, tlist<A...>> {
    using type = tl_concat_t<tlist<>, std::conditional_t<P<A>::value, tlist<A>, tlist<>>...>;
};
template <template <class> class P, class L> using tl_filter_t = typename tl_filter<P, L>::type;

template <class L, template <class...> class F> struct tl_apply;
template <class... A, template <class...> class F> struct tl_apply<tlist<A...>, F> { using type = F<A...>; };

} // namespace ctrec
