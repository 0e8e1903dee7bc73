#pragma once
// Weight initializers with TF 2.4 Keras semantics (spec layers-core-and-cross.md 1.3).
//
//   std::vector<float> w(256 * 64);
//   ctrec::init::GlorotUniform{}(std::span{w}, ctrec::make_dims<256, 64>(), seed);
//
// Each initializer is an aggregate holding its parameters (Keras defaults) with
//   template <class T> void operator()(std::span<T> out, const dims& shape, std::uint64_t seed) const
// which fills `out` (row-major, shape.size() elements). Bad arguments throw ctrec::error.
//
// Random streams: TF draws from Philox; ctrec cannot and does not reproduce its values
// (parity comes from importing weights). Instead every call is deterministic in its
// seed: one std::mt19937_64 seeded with `seed` (its output sequence is fixed by the C++
// standard), and our own uniform / Box-Muller mappings, because std::*_distribution
// output is implementation-defined. The raw draws are therefore identical everywhere;
// values are then computed in double (std::log/sin/cos for normals, a multiply-add to
// scale), so a different libm or FMA contraction may move a value's last bit (and, with
// negligible probability, flip a truncation test at |z| = 2). There is no "seed = None"
// mode: a layer that wants distinct streams per variable derives them (derive_seed).
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <numbers>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "ctrec/core/dims.hpp"
#include "ctrec/core/error.hpp"

namespace ctrec::init {

// ---- fans: TF's _compute_fans ------------------------------------------------------
struct fan_counts {
    std::size_t fan_in = 1;
    std::size_t fan_out = 1;
};

// Rank 0: 1/1. Rank 1: s0/s0 (a bias counts as its own fan-in AND fan-out). Rank 2:
// s0/s1. Rank >= 3 is read as a convolution kernel (..., in, out): every leading axis
// is a receptive-field axis and multiplies both fans, so a (1, C_in, C_out) Conv1D
// kernel has fans C_in/C_out, but a (G, M, N) batch of matrices gets G*M / G*N.
constexpr fan_counts fans(const dims& s) {
    if (s.rank == 0) return {1, 1};
    if (s.rank == 1) return {s.d[0], s.d[0]};
    if (s.rank == 2) return {s.d[0], s.d[1]};
    std::size_t receptive = 1;
    for (std::size_t i = 0; i + 2 < s.rank; ++i) receptive *= s.d[i];
    return {s.d[s.rank - 2] * receptive, s.d[s.rank - 1] * receptive};
}

// A per-variable seed from a model seed and the variable's name (splitmix64 of the seed
// mixed with FNV-1a of the name), so "dense/kernel" and "dense_1/kernel" get unrelated
// streams. Not part of TF (which seeds per op); fixed here so results are reproducible.
constexpr std::uint64_t derive_seed(std::uint64_t seed, std::string_view name) {
    std::uint64_t h = 1469598103934665603ull;
    for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (h | 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

namespace detail {

// The one random source of this header.
class rng {
public:
    explicit rng(std::uint64_t seed) : e_(seed) {}
    // [0, 1), the top 53 bits of one draw (exact: every value is a multiple of 2^-53).
    double uniform() { return static_cast<double>(e_() >> 11) * 0x1p-53; }
    // Standard normal by Box-Muller. Both outputs of a pair are used, in order cos, sin.
    double normal() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        // u1 in (0, 1] so log(u1) is finite; |z| <= sqrt(-2 log 2^-53) ~ 8.57.
        double u1 = (static_cast<double>(e_() >> 11) + 1.0) * 0x1p-53;
        double t = 2.0 * std::numbers::pi * uniform();
        double r = std::sqrt(-2.0 * std::log(u1));
        spare_ = r * std::sin(t);
        has_spare_ = true;
        return r * std::cos(t);
    }
    // Standard normal redrawn until |z| < 2, strictly, as TF's TruncatedNormalDistribution.
    double truncated_normal() {
        for (;;) {
            double z = normal();
            if (std::abs(z) < 2.0) return z;
        }
    }

private:
    std::mt19937_64 e_;
    double spare_ = 0;
    bool has_spare_ = false;
};

[[noreturn]] inline void fail(std::string_view who, const std::string& what) {
    throw error("ctrec::init::" + std::string(who) + ": " + what);
}
inline void require(bool ok, std::string_view who, const std::string& what) {
    if (!ok) fail(who, what);
}
inline std::string num(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.17g", v);
    return b;
}

template <class T>
void check_out(std::span<T> out, const dims& shape, std::string_view who) {
    static_assert(std::floating_point<T>, "ctrec::init fills floating-point weights");
    require(out.size() == shape.size(), who,
            "output has " + std::to_string(out.size()) + " elements but the shape has " +
                std::to_string(shape.size()));
}

template <class T>
void fill_normal(std::span<T> out, double mean, double stddev, std::uint64_t seed, bool truncated) {
    rng g(seed);
    for (T& v : out) v = static_cast<T>(mean + stddev * (truncated ? g.truncated_normal() : g.normal()));
}

// Uniform on [lo, hi) as TF's random_uniform, with the bounds taken in T (TF converts
// them to the float32 dtype first). Rounding lo + (hi - lo) u to T could land on hi
// itself; such a value is moved to the largest T below hi, so the upper bound stays
// excluded (a one-ulp shift on the draws within half an ulp of hi).
template <class T>
void fill_uniform(std::span<T> out, double lo, double hi, std::uint64_t seed) {
    rng g(seed);
    const T tlo = static_cast<T>(lo), thi = static_cast<T>(hi);
    const T below = std::nextafter(thi, tlo);
    for (T& v : out) {
        T x = static_cast<T>(lo + (hi - lo) * g.uniform());
        v = (x >= thi && tlo < thi) ? below : x;
    }
}

// Q of the thin QR of the m x n matrix a (row-major, m >= n) by Householder reflections,
// with column j multiplied by sign(R_jj), as TF's Orthogonal does. That sign fix makes Q
// the unique factor with a positive R diagonal, so it does not depend on the QR algorithm.
inline std::vector<double> orthonormal_columns(std::vector<double> a, std::size_t m, std::size_t n) {
    std::vector<double> v(m * n, 0.0), rdiag(n), beta(n);
    for (std::size_t k = 0; k < n; ++k) {
        double norm2 = 0;
        for (std::size_t i = k; i < m; ++i) norm2 += a[i * n + k] * a[i * n + k];
        double norm = std::sqrt(norm2), x0 = a[k * n + k];
        double alpha = x0 >= 0 ? -norm : norm;  // R_kk; the sign avoids cancellation in v
        for (std::size_t i = k; i < m; ++i) v[i * n + k] = a[i * n + k];
        v[k * n + k] = x0 - alpha;
        double vnorm2 = 2.0 * norm * (norm + std::abs(x0));  // |x - alpha e1|^2, no cancellation
        beta[k] = vnorm2 > 0 ? 2.0 / vnorm2 : 0.0;
        rdiag[k] = alpha;
        for (std::size_t j = k + 1; j < n; ++j) {  // apply H_k = I - beta v v^T to the rest
            double s = 0;
            for (std::size_t i = k; i < m; ++i) s += v[i * n + k] * a[i * n + j];
            s *= beta[k];
            for (std::size_t i = k; i < m; ++i) a[i * n + j] -= s * v[i * n + k];
        }
    }
    // Q = H_0 H_1 ... H_{n-1} applied to the first n columns of I, back to front.
    std::vector<double> q(m * n, 0.0);
    for (std::size_t j = 0; j < n; ++j) q[j * n + j] = 1.0;
    for (std::size_t k = n; k-- > 0;) {
        for (std::size_t j = 0; j < n; ++j) {
            double s = 0;
            for (std::size_t i = k; i < m; ++i) s += v[i * n + k] * q[i * n + j];
            s *= beta[k];
            for (std::size_t i = k; i < m; ++i) q[i * n + j] -= s * v[i * n + k];
        }
    }
    for (std::size_t j = 0; j < n; ++j) {
        double sg = rdiag[j] > 0 ? 1.0 : rdiag[j] < 0 ? -1.0 : 0.0;  // TF: sign(0) = 0
        for (std::size_t i = 0; i < m; ++i) q[i * n + j] *= sg;
    }
    return q;
}

} // namespace detail

// ---- constants ------------------------------------------------------------------------
struct Zeros {
    static constexpr std::string_view name = "Zeros";
    template <class T>
    void operator()(std::span<T> out, const dims& shape, std::uint64_t = 0) const {
        detail::check_out(out, shape, name);
        for (T& v : out) v = T(0);
    }
};

struct Ones {
    static constexpr std::string_view name = "Ones";
    template <class T>
    void operator()(std::span<T> out, const dims& shape, std::uint64_t = 0) const {
        detail::check_out(out, shape, name);
        for (T& v : out) v = T(1);
    }
};

// Keras 2.4's v2 Constant takes a scalar only.
struct Constant {
    static constexpr std::string_view name = "Constant";
    double value = 0.0;
    template <class T>
    void operator()(std::span<T> out, const dims& shape, std::uint64_t = 0) const {
        detail::check_out(out, shape, name);
        for (T& v : out) v = static_cast<T>(value);
    }
};

// ---- plain distributions -----------------------------------------------------------------
namespace detail {
// RandomNormal and TruncatedNormal: the same checks, then (truncated) normal draws.
template <class T>
void fill_checked_normal(std::span<T> out, const dims& shape, std::uint64_t seed, std::string_view name, double mean,
                         double stddev, bool truncated) {
    check_out(out, shape, name);
    require(std::isfinite(mean), name, "mean must be finite, got " + num(mean));
    require(std::isfinite(stddev) && stddev >= 0, name, "stddev must be finite and >= 0, got " + num(stddev));
    fill_normal(out, mean, stddev, seed, truncated);
}
} // namespace detail
// TF does not validate stddev or the uniform bounds; ctrec rejects what cannot be meant:
// a negative or non-finite stddev / mean, and minval > maxval (minval == maxval gives
// the constant minval, as in TF).
struct RandomNormal {
    static constexpr std::string_view name = "RandomNormal";
    double mean = 0.0;
    double stddev = 0.05;
    template <class T>
    void operator()(std::span<T> out, const dims& shape, std::uint64_t seed) const {
        detail::fill_checked_normal(out, shape, seed, name, mean, stddev, false);
    }
};

// Normal redrawn outside (mean - 2 stddev, mean + 2 stddev). Unlike VarianceScaling's
// truncated_normal there is NO 0.8796 correction: the realised std is ~0.88 * stddev.
struct TruncatedNormal {
    static constexpr std::string_view name = "TruncatedNormal";
    double mean = 0.0;
    double stddev = 0.05;
    template <class T>
    void operator()(std::span<T> out, const dims& shape, std::uint64_t seed) const {
        detail::fill_checked_normal(out, shape, seed, name, mean, stddev, true);
    }
};

// Uniform on [minval, maxval).
struct RandomUniform {
    static constexpr std::string_view name = "RandomUniform";
    double minval = -0.05;
    double maxval = 0.05;
    template <class T>
    void operator()(std::span<T> out, const dims& shape, std::uint64_t seed) const {
        detail::check_out(out, shape, name);
        detail::require(std::isfinite(minval) && std::isfinite(maxval) && std::isfinite(maxval - minval), name,
                        "bounds must be finite, got [" + detail::num(minval) + ", " + detail::num(maxval) + ")");
        detail::require(minval <= maxval, name,
                        "minval " + detail::num(minval) + " is above maxval " + detail::num(maxval));
        detail::fill_uniform(out, minval, maxval, seed);
    }
};

// ---- VarianceScaling and its named presets -------------------------------------------------
enum class fan_mode { fan_in, fan_out, fan_avg };
enum class distribution { truncated_normal, untruncated_normal, uniform };

// Keras spellings. Modes are case-sensitive; the distribution is lower-cased first and
// "normal" means truncated_normal (TF's "compatibility with keras-team/keras" alias).
inline fan_mode parse_fan_mode(std::string_view s) {
    if (s == "fan_in") return fan_mode::fan_in;
    if (s == "fan_out") return fan_mode::fan_out;
    if (s == "fan_avg") return fan_mode::fan_avg;
    detail::fail("VarianceScaling", "unknown mode '" + std::string(s) + "' (expected fan_in, fan_out or fan_avg)");
}
inline distribution parse_distribution(std::string_view s) {
    std::string l(s);
    for (char& c : l) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (l == "truncated_normal" || l == "normal") return distribution::truncated_normal;
    if (l == "untruncated_normal") return distribution::untruncated_normal;
    if (l == "uniform") return distribution::uniform;
    detail::fail("VarianceScaling", "unknown distribution '" + std::string(s) +
                                        "' (expected truncated_normal, untruncated_normal or uniform)");
}

// Standard deviation of a unit normal truncated to [-2, 2]. VarianceScaling divides by
// it so that the *truncated* draw has variance exactly `s` (TF 2.4's constant).
inline constexpr double truncated_normal_std = 0.87962566103423978;

struct VarianceScaling {
    static constexpr std::string_view name = "VarianceScaling";
    double scale = 1.0;
    fan_mode mode = fan_mode::fan_in;
    distribution dist = distribution::truncated_normal;

    // s = scale / max(1, n): the target variance. fan_avg is (fan_in + fan_out) / 2 in
    // floating point (TF uses true division, so odd sums are not rounded down).
    double variance(const dims& shape) const {
        validate();
        auto [fi, fo] = fans(shape);
        double n = mode == fan_mode::fan_in    ? static_cast<double>(fi)
                   : mode == fan_mode::fan_out ? static_cast<double>(fo)
                                               : (static_cast<double>(fi) + static_cast<double>(fo)) / 2.0;
        return scale / (n > 1.0 ? n : 1.0);
    }
    // The normal's sigma: sqrt(s), divided by truncated_normal_std when truncated (the
    // realised std is then sqrt(s) again). For the uniform distribution see limit().
    double stddev(const dims& shape) const {
        double s = variance(shape);
        return dist == distribution::truncated_normal ? std::sqrt(s) / truncated_normal_std : std::sqrt(s);
    }
    double limit(const dims& shape) const { return std::sqrt(3.0 * variance(shape)); }

    template <class T>
    void operator()(std::span<T> out, const dims& shape, std::uint64_t seed) const {
        detail::check_out(out, shape, name);
        if (dist == distribution::uniform) {
            double l = limit(shape);
            detail::fill_uniform(out, -l, l, seed);
        } else {
            detail::fill_normal(out, 0.0, stddev(shape), seed, dist == distribution::truncated_normal);
        }
    }

    void validate() const {
        // TF rejects scale <= 0 ("`scale` must be positive float."); ctrec also rejects NaN/inf.
        detail::require(std::isfinite(scale) && scale > 0, name, "scale must be a positive number, got " + detail::num(scale));
        detail::require(mode == fan_mode::fan_in || mode == fan_mode::fan_out || mode == fan_mode::fan_avg, name,
                        "unknown mode " + std::to_string(static_cast<int>(mode)));
        detail::require(dist == distribution::truncated_normal || dist == distribution::untruncated_normal ||
                            dist == distribution::uniform,
                        name, "unknown distribution " + std::to_string(static_cast<int>(dist)));
    }
};

// VarianceScaling from Keras' strings, e.g. variance_scaling(2.0, "fan_out", "uniform").
inline VarianceScaling variance_scaling(double scale, std::string_view mode = "fan_in",
                                        std::string_view dist = "truncated_normal") {
    VarianceScaling v{scale, parse_fan_mode(mode), parse_distribution(dist)};
    v.validate();
    return v;
}

namespace detail {
// Self names itself and holds `as_variance_scaling` (a constexpr VarianceScaling, not
// template arguments: double NTTPs would needlessly shut out older compilers).
template <class Self>
struct preset {
    template <class T>
    void operator()(std::span<T> out, const dims& shape, std::uint64_t seed) const {
        check_out(out, shape, Self::name);  // so a size error names the preset
        Self::as_variance_scaling(out, shape, seed);
    }
};
} // namespace detail

// Glorot (Xavier): fan_avg, scale 1. Uniform limit sqrt(6 / (fan_in + fan_out)).
struct GlorotUniform : detail::preset<GlorotUniform> {
    static constexpr std::string_view name = "GlorotUniform";
    static constexpr VarianceScaling as_variance_scaling{1.0, fan_mode::fan_avg, distribution::uniform};
};
struct GlorotNormal : detail::preset<GlorotNormal> {
    static constexpr std::string_view name = "GlorotNormal";
    static constexpr VarianceScaling as_variance_scaling{1.0, fan_mode::fan_avg, distribution::truncated_normal};
};
// He: fan_in, scale 2.
struct HeNormal : detail::preset<HeNormal> {
    static constexpr std::string_view name = "HeNormal";
    static constexpr VarianceScaling as_variance_scaling{2.0, fan_mode::fan_in, distribution::truncated_normal};
};
struct HeUniform : detail::preset<HeUniform> {
    static constexpr std::string_view name = "HeUniform";
    static constexpr VarianceScaling as_variance_scaling{2.0, fan_mode::fan_in, distribution::uniform};
};
// LeCun: fan_in, scale 1.
struct LecunNormal : detail::preset<LecunNormal> {
    static constexpr std::string_view name = "LecunNormal";
    static constexpr VarianceScaling as_variance_scaling{1.0, fan_mode::fan_in, distribution::truncated_normal};
};
struct LecunUniform : detail::preset<LecunUniform> {
    static constexpr std::string_view name = "LecunUniform";
    static constexpr VarianceScaling as_variance_scaling{1.0, fan_mode::fan_in, distribution::uniform};
};

// ---- matrix initializers ----------------------------------------------------------------------
// TF: the shape is flattened to (prod s[:-1], s[-1]); a normal matrix of the taller of
// that shape and its transpose is QR-factored, Q's columns get sign(diag R), and Q
// (transposed back for a wide shape) times gain is reshaped to s. Rank >= 2 only.
// Rows (or columns, for a wide shape) are therefore orthonormal, scaled by gain.
struct Orthogonal {
    static constexpr std::string_view name = "Orthogonal";
    double gain = 1.0;
    template <class T>
    void operator()(std::span<T> out, const dims& shape, std::uint64_t seed) const {
        detail::check_out(out, shape, name);
        detail::require(shape.rank >= 2, name,
                        "the shape must be at least two-dimensional, got rank " + std::to_string(shape.rank));
        detail::require(std::isfinite(gain), name, "gain must be finite, got " + detail::num(gain));
        if (out.empty()) return;
        std::size_t rows = shape.size() / shape.last(), cols = shape.last();
        std::size_t m = rows > cols ? rows : cols, n = rows > cols ? cols : rows;
        detail::rng g(seed);
        std::vector<double> a(m * n);
        for (double& x : a) x = g.normal();
        std::vector<double> q = detail::orthonormal_columns(std::move(a), m, n);  // m x n
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t c = 0; c < cols; ++c)
                out[r * cols + c] = static_cast<T>(gain * (rows >= cols ? q[r * n + c] : q[c * n + r]));
    }
};

// gain * I for a 2-D shape; a non-square shape gets ones on the main diagonal (TF's eye(r, c)).
struct Identity {
    static constexpr std::string_view name = "Identity";
    double gain = 1.0;
    template <class T>
    void operator()(std::span<T> out, const dims& shape, std::uint64_t = 0) const {
        detail::check_out(out, shape, name);
        detail::require(shape.rank == 2, name,
                        "only 2-D shapes are supported, got rank " + std::to_string(shape.rank));
        detail::require(std::isfinite(gain), name, "gain must be finite, got " + detail::num(gain));
        for (std::size_t r = 0; r < shape.d[0]; ++r)
            for (std::size_t c = 0; c < shape.d[1]; ++c) out[r * shape.d[1] + c] = static_cast<T>(r == c ? gain : 0.0);
    }
};

// ---- by name (Keras initializers.get) ---------------------------------------------------------------
using any = std::variant<Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling,
                         GlorotUniform, GlorotNormal, HeNormal, HeUniform, LecunNormal, LecunUniform, Orthogonal,
                         Identity>;

// The spec's string names: snake_case or the class name, case-sensitive, each with its
// defaults. Keras' other aliases (e.g. "uniform", "normal", "zero") are not in the spec
// and are rejected. Keras' None (the layer's own default) is the caller's business.
inline any from_name(std::string_view s) {
    auto is = [&](std::string_view snake, std::string_view cls) { return s == snake || s == cls; };
    if (is("zeros", Zeros::name)) return Zeros{};
    if (is("ones", Ones::name)) return Ones{};
    if (is("constant", Constant::name)) return Constant{};
    if (is("random_normal", RandomNormal::name)) return RandomNormal{};
    if (is("random_uniform", RandomUniform::name)) return RandomUniform{};
    if (is("truncated_normal", TruncatedNormal::name)) return TruncatedNormal{};
    if (is("variance_scaling", VarianceScaling::name)) return VarianceScaling{};
    if (is("glorot_uniform", GlorotUniform::name)) return GlorotUniform{};
    if (is("glorot_normal", GlorotNormal::name)) return GlorotNormal{};
    if (is("he_normal", HeNormal::name)) return HeNormal{};
    if (is("he_uniform", HeUniform::name)) return HeUniform{};
    if (is("lecun_normal", LecunNormal::name)) return LecunNormal{};
    if (is("lecun_uniform", LecunUniform::name)) return LecunUniform{};
    if (is("orthogonal", Orthogonal::name)) return Orthogonal{};
    if (is("identity", Identity::name)) return Identity{};
    throw error("ctrec::init: unknown initializer name '" + std::string(s) + "'");
}

template <class T>
void fill(const any& init, std::span<T> out, const dims& shape, std::uint64_t seed) {
    std::visit([&](const auto& i) { i(out, shape, seed); }, init);
}

inline std::string_view name_of(const any& init) {
    return std::visit([](const auto& i) { return std::remove_cvref_t<decltype(i)>::name; }, init);
}

} // namespace ctrec::init
