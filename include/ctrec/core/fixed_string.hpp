#pragma once
// fixed_string: a string usable as a template argument, so tensor names are part of types.
#include <cstddef>
#include <string_view>

namespace ctrec {

template <std::size_t N>
struct fixed_string {
    char v[N]{};
    constexpr fixed_string() = default;
    constexpr fixed_string(const char (&s)[N]) {
        for (std::size_t i = 0; i < N; ++i) v[i] = s[i];
    }
    constexpr std::string_view view() const { return {v, N - 1}; }
    constexpr std::size_t size() const { return N - 1; }
    constexpr const char* c_str() const { return v; }
    template <std::size_t M>
    constexpr bool operator==(const fixed_string<M>& o) const { return view() == o.view(); }
};

// Joins two names at compile time ("d." + "W" -> "d.W"): used to name tangent leaves.
template <fixed_string A, fixed_string B>
constexpr auto join() {
    fixed_string<A.size() + B.size() + 1> r;
    for (std::size_t i = 0; i < A.size(); ++i) r.v[i] = A.v[i];
    for (std::size_t i = 0; i < B.size(); ++i) r.v[A.size() + i] = B.v[i];
    return r;
}

} // namespace ctrec
