#pragma once
// Counter-based random numbers: a pure function of (seed, stream, example, element), so every
// backend and every batch tiling draws the same values (dropout masks, random leaves).
#include <cstdint>

namespace ctrec {

namespace detail {
constexpr std::uint64_t splitmix64(std::uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
} // namespace detail

// Element i of example e of random stream `stream` under `seed`, in [0, 1): 24 random bits
// for float, 53 for double, so the value never rounds up to 1.
template <class T>
constexpr T random_uniform_value(std::uint64_t seed, std::uint64_t stream, std::uint64_t e, std::uint64_t i) {
    std::uint64_t h = detail::splitmix64(detail::splitmix64(detail::splitmix64(seed ^ stream) + e) + i);
    if constexpr (sizeof(T) <= 4) return static_cast<T>(static_cast<double>(h >> 40) * 0x1p-24);
    else return static_cast<T>(static_cast<double>(h >> 11) * 0x1p-53);
}

} // namespace ctrec
