#pragma once
// Counter-based random numbers: a pure function of (seed, stream, example, element), so every
// backend and every batch tiling draws the same values (dropout masks, gate noise, random leaves).
//
// A random leaf (opcode::random) carries its distribution in node::axis (random_kind), draws one
// set of values per example when batched, or one set per call shared by every example when not
// (example index `shared_example`), and takes its seed from io.seed (the call's step counter)
// unless node::begin is 1: then the seed is node::value (fixed when the model is built, e.g. a
// layer's mask_seed) and the values are constants of the model.
#include <cmath>
#include <cstdint>

namespace ctrec {

namespace detail {
constexpr std::uint64_t splitmix64(std::uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
constexpr std::uint64_t random_bits(std::uint64_t seed, std::uint64_t stream, std::uint64_t e, std::uint64_t i) {
    return splitmix64(splitmix64(splitmix64(seed ^ stream) + e) + i);
}
} // namespace detail

enum class random_kind : std::uint32_t {
    uniform = 0,       // [0, 1): 24 random bits for float, 53 for double (never rounds up to 1)
    open_uniform = 1,  // (0, 1): (m + 0.5) 2^-24 from 24 random bits m (spec 0.3), in T
    normal = 2,        // N(0, 1): Box-Muller of the open uniforms of elements 2i and 2i + 1
    gumbel = 3,        // Gumbel(0, 1): -ln(-ln u), u open uniform
    logistic = 4,      // Logistic(0, 1): ln u - ln(1 - u), u open uniform (binary-concrete noise)
};

// The example index of a random leaf shared by every example of a call.
inline constexpr std::uint64_t shared_example = ~std::uint64_t(0);

// Element i of example e of random stream `stream` under `seed`, in [0, 1): 24 random bits
// for float, 53 for double, so the value never rounds up to 1.
template <class T>
constexpr T random_uniform_value(std::uint64_t seed, std::uint64_t stream, std::uint64_t e, std::uint64_t i) {
    std::uint64_t h = detail::random_bits(seed, stream, e, i);
    if constexpr (sizeof(T) <= 4) return static_cast<T>(static_cast<double>(h >> 40) * 0x1p-24);
    else return static_cast<T>(static_cast<double>(h >> 11) * 0x1p-53);
}

// The open-interval uniform of spec 0.3, in double: (m + 0.5) 2^-24, m 24 random bits.
constexpr double random_open_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t e, std::uint64_t i) {
    return (static_cast<double>(detail::random_bits(seed, stream, e, i) >> 40) + 0.5) * 0x1p-24;
}

// Element i of a random leaf of kind k. The transforms run in double, then round to T once. An
// open uniform rounded to float can reach 1 (from 1 - 2^-25): it is kept below 1, so 1 - u > 0.
template <class T>
T random_value(random_kind k, std::uint64_t seed, std::uint64_t stream, std::uint64_t e, std::uint64_t i) {
    switch (k) {
    case random_kind::uniform:
        return random_uniform_value<T>(seed, stream, e, i);
    case random_kind::open_uniform: {
        const T u = static_cast<T>(random_open_uniform(seed, stream, e, i));
        return u < T(1) ? u : std::nextafter(T(1), T(0));
    }
    case random_kind::normal: {
        const double u1 = random_open_uniform(seed, stream, e, 2 * i);
        const double u2 = random_open_uniform(seed, stream, e, 2 * i + 1);
        return static_cast<T>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }
    case random_kind::gumbel:
        return static_cast<T>(-std::log(-std::log(random_open_uniform(seed, stream, e, i))));
    case random_kind::logistic: {
        const double u = random_open_uniform(seed, stream, e, i);
        return static_cast<T>(std::log(u) - std::log1p(-u));
    }
    }
    return T(0);
}

} // namespace ctrec
