#pragma once
// IEEE binary16 (F16) and bfloat16 (BF16) as 16-bit patterns, for weight files.
//
// Decoding is exact (every F16 and BF16 value is a float and a double). Encoding rounds once,
// from the double value, to nearest with ties to even, whatever the current FP rounding mode:
// a float argument is widened exactly first, so float -> F16 is never rounded twice. Values
// beyond the largest finite one after rounding become infinities (F16: 65520 and above), tiny
// ones become subnormals or signed zeros, NaN stays NaN (quiet, sign kept, payload not).
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace ctrec::half {

namespace detail {

// Rounds q >= 0 to the nearest integer, ties to even.
inline double round_half_even(double q) {
    const double f = std::floor(q);
    const double d = q - f;  // exact: q < 2^53
    if (d > 0.5 || (d == 0.5 && std::fmod(f, 2.0) != 0.0)) return f + 1.0;
    return f;
}

// A binary floating-point format with E exponent bits and M stored mantissa bits.
template <int E, int M>
inline std::uint32_t encode(double x) {
    constexpr int bias = (1 << (E - 1)) - 1;
    constexpr std::uint32_t emax = (1u << E) - 1;  // all-ones exponent: inf / NaN
    const std::uint32_t sign = std::signbit(x) ? 1u << (E + M) : 0u;
    if (std::isnan(x)) return sign | emax << M | 1u << (M - 1);
    const double a = std::fabs(x);
    if (std::isinf(a)) return sign | emax << M;
    if (a == 0.0) return sign;
    int e2 = 0;
    std::frexp(a, &e2);  // a = f 2^e2, f in [0.5, 1)
    int e = e2 - 1;      // a in [2^e, 2^(e+1))
    if (e < 1 - bias) e = 1 - bias;  // subnormal range: the quantum stays 2^(1 - bias - M)
    // a in units of the quantum at exponent e: exact (a power-of-two scaling of a double)
    std::uint64_t m = static_cast<std::uint64_t>(round_half_even(std::ldexp(a, M - e)));
    if (m >= (std::uint64_t{1} << (M + 1))) m >>= 1, ++e;  // rounded up to the next binade
    if (m < (std::uint64_t{1} << M)) return sign | static_cast<std::uint32_t>(m);  // subnormal or zero
    const int biased = e + bias;
    if (biased >= static_cast<int>(emax)) return sign | emax << M;  // overflow
    return sign | static_cast<std::uint32_t>(biased) << M | static_cast<std::uint32_t>(m - (std::uint64_t{1} << M));
}

template <int E, int M>
inline double decode(std::uint32_t b) {
    constexpr int bias = (1 << (E - 1)) - 1;
    constexpr std::uint32_t emax = (1u << E) - 1;
    const std::uint32_t exp = (b >> M) & emax, man = b & ((1u << M) - 1);
    double v;
    if (exp == emax)
        v = man ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
    else if (exp == 0)
        v = std::ldexp(static_cast<double>(man), 1 - bias - M);
    else
        v = std::ldexp(static_cast<double>(man | 1u << M), static_cast<int>(exp) - bias - M);
    return std::copysign(v, (b >> (E + M)) & 1u ? -1.0 : 1.0);
}

} // namespace detail

inline std::uint16_t f16_from_double(double x) { return static_cast<std::uint16_t>(detail::encode<5, 10>(x)); }
inline double f16_to_double(std::uint16_t h) { return detail::decode<5, 10>(h); }
inline float f16_to_float(std::uint16_t h) { return static_cast<float>(f16_to_double(h)); }  // exact

inline std::uint16_t bf16_from_double(double x) { return static_cast<std::uint16_t>(detail::encode<8, 7>(x)); }
// BF16 is the top half of a float's bits.
inline float bf16_to_float(std::uint16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }
inline double bf16_to_double(std::uint16_t h) { return bf16_to_float(h); }

} // namespace ctrec::half
