// Initializers and regularizers against the spec (layers-core-and-cross.md 1.3, 1.4):
// TF's fan rules, the VarianceScaling family checked statistically on large samples
// (tolerances derived from the sample size), exact bounds, determinism in the seed,
// constants, and penalties with their gradients against naive formulas and central
// finite differences.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "ctrec/layers/initializers.hpp"
#include "ctrec/layers/layer.hpp"
#include "ctrec/layers/regularizers.hpp"
#include "support.hpp"  // the core's test support (leaf values, runs, derivative checks)

using namespace ctrec;

namespace {

struct moments {
    double n = 0, mean = 0, var = 0, min = 0, max = 0;
};
template <class T>
moments stats(const std::vector<T>& v) {
    moments m;
    m.n = static_cast<double>(v.size());
    m.min = m.max = static_cast<double>(v[0]);
    for (T x : v) {
        m.mean += static_cast<double>(x);
        m.min = std::min(m.min, static_cast<double>(x));
        m.max = std::max(m.max, static_cast<double>(x));
    }
    m.mean /= m.n;
    for (T x : v) m.var += (static_cast<double>(x) - m.mean) * (static_cast<double>(x) - m.mean);
    m.var /= m.n;
    return m;
}

// Mean and variance within 6 standard errors: se(mean) = sigma / sqrt(n) and
// se(var) = sigma^2 sqrt((kurtosis - 1) / n). Kurtosis 3 (normal) bounds the truncated
// normal too; a uniform has 1.8.
void check_moments(const moments& m, double mean, double var, double kurtosis) {
    INFO("n " << m.n << ", mean " << m.mean << " (want " << mean << "), var " << m.var << " (want " << var << ")");
    CHECK(std::abs(m.mean - mean) <= 6 * std::sqrt(var / m.n));
    CHECK(std::abs(m.var - var) <= 6 * var * std::sqrt((kurtosis - 1) / m.n));
}

// The fraction of values inside [lo, hi] is p within 6 binomial standard errors.
template <class T>
void check_fraction(const std::vector<T>& v, double lo, double hi, double p) {
    double k = 0;
    for (T x : v) k += (x >= lo && x <= hi) ? 1 : 0;
    double n = static_cast<double>(v.size());
    INFO("fraction in [" << lo << ", " << hi << "]: " << k / n << ", want " << p);
    CHECK(std::abs(k / n - p) <= 6 * std::sqrt(p * (1 - p) / n));
}

template <class T, class I>
std::vector<T> draw(const I& init, dims shape, std::uint64_t seed = 7) {
    std::vector<T> v(shape.size());
    init(std::span{v}, shape, seed);
    return v;
}

double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

constexpr dims big2 = make_dims<512, 512>();  // 262144 samples
constexpr double k_normal = 3.0, k_uniform = 1.8;

} // namespace

// ---------------------------------------------------------------------------------------------
TEST_CASE("fans follow TF's _compute_fans") {
    using init::fans;
    static_assert(fans(dims{}).fan_in == 1 && fans(dims{}).fan_out == 1);
    static_assert(fans(make_dims<7>()).fan_in == 7 && fans(make_dims<7>()).fan_out == 7);
    static_assert(fans(make_dims<3, 5>()).fan_in == 3 && fans(make_dims<3, 5>()).fan_out == 5);
    // rank >= 3: leading axes are a receptive field multiplying both fans
    CHECK(fans(make_dims<1, 6, 5>()).fan_in == 6);  // CIN's Conv1D kernel (1, C_in, C_out)
    CHECK(fans(make_dims<1, 6, 5>()).fan_out == 5);
    CHECK(fans(make_dims<3, 4, 5>()).fan_in == 12);
    CHECK(fans(make_dims<3, 4, 5>()).fan_out == 15);
    CHECK(fans(make_dims<2, 3, 4, 5>()).fan_in == 24);  // receptive 2*3 = 6
    CHECK(fans(make_dims<2, 3, 4, 5>()).fan_out == 30);
    CHECK(fans(make_dims<3, 3, 16, 32>()).fan_in == 144);
    CHECK(fans(make_dims<3, 3, 16, 32>()).fan_out == 288);
}

TEST_CASE("VarianceScaling: the target variance scale / max(1, n)") {
    using init::fan_mode;
    using init::VarianceScaling;
    auto s = make_dims<3, 4>();
    CHECK(VarianceScaling{1.0, fan_mode::fan_in}.variance(s) == doctest::Approx(1.0 / 3));
    CHECK(VarianceScaling{1.0, fan_mode::fan_out}.variance(s) == doctest::Approx(1.0 / 4));
    CHECK(VarianceScaling{1.0, fan_mode::fan_avg}.variance(s) == doctest::Approx(1.0 / 3.5));  // true division
    CHECK(VarianceScaling{2.0, fan_mode::fan_in}.variance(make_dims<3, 4, 5>()) == doctest::Approx(2.0 / 12));
    CHECK(VarianceScaling{1.0, fan_mode::fan_avg}.variance(make_dims<2, 3, 4, 5>()) == doctest::Approx(1.0 / 27));
    // n < 1 (an empty axis) is clamped to 1
    CHECK(VarianceScaling{3.0, fan_mode::fan_in}.variance(make_dims<0, 5>()) == 3.0);
    // the truncated normal's sigma carries the 0.8796 correction; the others do not
    VarianceScaling tn{2.0, fan_mode::fan_in, init::distribution::truncated_normal};
    CHECK(tn.stddev(make_dims<8, 3>()) == doctest::Approx(0.5 / 0.87962566103423978));
    VarianceScaling un{2.0, fan_mode::fan_in, init::distribution::untruncated_normal};
    CHECK(un.stddev(make_dims<8, 3>()) == doctest::Approx(0.5));
    CHECK(un.limit(make_dims<8, 3>()) == doctest::Approx(std::sqrt(0.75)));
    // the constant is the std of a unit normal truncated to [-2, 2]
    double phi2 = std::exp(-2.0) / std::sqrt(2 * std::numbers::pi);
    CHECK(init::truncated_normal_std == doctest::Approx(std::sqrt(1 - 4 * phi2 / (Phi(2) - Phi(-2)))).epsilon(1e-15));
}

TEST_CASE("uniform initializers: exact bounds, moments, flat histogram") {
    SUBCASE("GlorotUniform 2-D: limit sqrt(6 / (fan_in + fan_out))") {
        auto v = draw<float>(init::GlorotUniform{}, big2);
        const float lim = static_cast<float>(std::sqrt(6.0 / 1024));
        auto m = stats(v);
        CHECK(m.min >= -lim);
        CHECK(m.max < lim);
        CHECK(m.min < -lim * (1 - 1e-4));  // the range is used up to the bounds
        CHECK(m.max > lim * (1 - 1e-4));
        check_moments(m, 0, 2.0 / 1024, k_uniform);
        for (int b = 0; b < 10; ++b) check_fraction(v, -lim + 2 * lim * b / 10.0, -lim + 2 * lim * (b + 1) / 10.0, 0.1);
    }
    SUBCASE("GlorotUniform 4-D uses the receptive field") {
        auto s = make_dims<3, 3, 64, 128>();  // fan_in 576, fan_out 1152
        auto v = draw<double>(init::GlorotUniform{}, s);
        double lim = std::sqrt(6.0 / (576 + 1152));
        auto m = stats(v);
        CHECK(m.min >= -lim);
        CHECK(m.max < lim);
        check_moments(m, 0, lim * lim / 3, k_uniform);
    }
    SUBCASE("HeUniform and LecunUniform: fan_in") {
        auto s = make_dims<8, 64, 512>();  // fan_in 512, fan_out 4096
        auto he = stats(draw<float>(init::HeUniform{}, s));
        double lim = std::sqrt(6.0 / 512);
        CHECK(he.min >= -static_cast<float>(lim));
        CHECK(he.max < static_cast<float>(lim));
        check_moments(he, 0, 2.0 / 512, k_uniform);
        auto lc = stats(draw<float>(init::LecunUniform{}, s));
        lim = std::sqrt(3.0 / 512);
        CHECK(lc.min >= -static_cast<float>(lim));
        CHECK(lc.max < static_cast<float>(lim));
        check_moments(lc, 0, 1.0 / 512, k_uniform);
    }
    SUBCASE("VarianceScaling uniform, fan_out, scale 3") {
        auto v = draw<double>(init::variance_scaling(3.0, "fan_out", "uniform"), make_dims<1024, 256>());
        double lim = std::sqrt(3.0 * 3.0 / 256);
        auto m = stats(v);
        CHECK(m.min >= -lim);
        CHECK(m.max < lim);
        check_moments(m, 0, 3.0 / 256, k_uniform);
    }
    SUBCASE("RandomUniform defaults [-0.05, 0.05) and custom bounds") {
        auto m = stats(draw<float>(init::RandomUniform{}, big2));
        CHECK(m.min >= -0.05f);
        CHECK(m.max < 0.05f);
        check_moments(m, 0, 0.1 * 0.1 / 12, k_uniform);
        auto c = stats(draw<double>(init::RandomUniform{2.0, 5.0}, big2));
        CHECK(c.min >= 2.0);
        CHECK(c.max < 5.0);
        check_moments(c, 3.5, 9.0 / 12, k_uniform);
        auto e = stats(draw<float>(init::RandomUniform{1.5, 1.5}, make_dims<10>()));  // empty range: constant
        CHECK(e.min == 1.5);
        CHECK(e.max == 1.5);
    }
    SUBCASE("the upper bound stays excluded after rounding to float") {
        // [1 - 2^-20, 1): the top 1/32 of it rounds to 1.0f, which must not be returned
        auto m = stats(draw<float>(init::RandomUniform{1.0 - 0x1p-20, 1.0}, make_dims<1000>()));
        CHECK(m.max < 1.0);
        CHECK(m.max == static_cast<double>(std::nextafter(1.0f, 0.0f)));
        CHECK(m.min >= 1.0 - 0x1p-20);
    }
}

TEST_CASE("normal initializers: truncation, the 0.8796 correction, moments") {
    const double trunc_mass = Phi(2) - Phi(-2);
    const double in_1sigma_trunc = (Phi(1) - Phi(-1)) / trunc_mass;  // 0.7152...
    SUBCASE("GlorotNormal: realised variance 2 / (fan_in + fan_out), cut at 2 sigma") {
        auto v = draw<float>(init::GlorotNormal{}, big2);
        double sigma = std::sqrt(2.0 / 1024) / 0.87962566103423978;
        auto m = stats(v);
        CHECK(m.max <= 2 * sigma * (1 + 1e-6));  // float rounding of mean + sigma * z
        CHECK(m.min >= -2 * sigma * (1 + 1e-6));
        CHECK(m.max > 1.99 * sigma);  // but the tails up to the cut are populated
        CHECK(m.min < -1.99 * sigma);
        check_moments(m, 0, 2.0 / 1024, k_normal);
        check_fraction(v, -sigma, sigma, in_1sigma_trunc);
    }
    SUBCASE("HeNormal 4-D and LecunNormal 3-D") {
        auto s4 = make_dims<3, 3, 64, 128>();  // fan_in 576
        auto he = stats(draw<double>(init::HeNormal{}, s4));
        check_moments(he, 0, 2.0 / 576, k_normal);
        CHECK(he.max <= 2 * std::sqrt(2.0 / 576) / 0.87962566103423978);
        auto s3 = make_dims<4, 128, 512>();  // fan_in 512
        auto lc = stats(draw<float>(init::LecunNormal{}, s3));
        check_moments(lc, 0, 1.0 / 512, k_normal);
    }
    SUBCASE("VarianceScaling untruncated_normal has the full tails") {
        auto v = draw<double>(init::variance_scaling(2.0, "fan_avg", "untruncated_normal"), big2);
        double sigma = std::sqrt(2.0 / 512);
        auto m = stats(v);
        check_moments(m, 0, sigma * sigma, k_normal);
        check_fraction(v, -sigma, sigma, Phi(1) - Phi(-1));
        check_fraction(v, -2 * sigma, 2 * sigma, trunc_mass);
        CHECK(m.max > 3.5 * sigma);
    }
    SUBCASE("RandomNormal: defaults and a shifted, scaled one") {
        auto d = draw<float>(init::RandomNormal{}, big2);
        check_moments(stats(d), 0, 0.05 * 0.05, k_normal);
        auto v = draw<double>(init::RandomNormal{1.5, 0.3}, big2);
        check_moments(stats(v), 1.5, 0.09, k_normal);
        check_fraction(v, 1.2, 1.8, Phi(1) - Phi(-1));
    }
    SUBCASE("TruncatedNormal: redrawn outside mean +- 2 stddev, no variance correction") {
        auto d = draw<float>(init::TruncatedNormal{}, big2);
        auto md = stats(d);
        CHECK(md.max <= 0.1 * (1 + 1e-6));
        CHECK(md.min >= -0.1 * (1 + 1e-6));
        double tvar = 0.87962566103423978 * 0.87962566103423978;  // realised variance of the unit case
        check_moments(md, 0, 0.05 * 0.05 * tvar, k_normal);
        auto v = draw<double>(init::TruncatedNormal{-1.0, 2.0}, big2);
        auto m = stats(v);
        CHECK(m.min >= -5.0);
        CHECK(m.max <= 3.0);
        CHECK(m.min < -4.98);
        check_moments(m, -1.0, 4.0 * tvar, k_normal);
        check_fraction(v, -3.0, 1.0, in_1sigma_trunc);
    }
}

TEST_CASE("presets are VarianceScaling with the spec's parameters") {
    using init::distribution;
    using init::fan_mode;
    auto same = [](auto preset, init::VarianceScaling vs) {
        auto s = make_dims<2, 3, 7, 5>();
        CHECK(draw<float>(preset, s, 99) == draw<float>(vs, s, 99));
        auto p = decltype(preset)::as_variance_scaling;
        CHECK(p.scale == vs.scale);
        CHECK(p.mode == vs.mode);
        CHECK(p.dist == vs.dist);
    };
    same(init::GlorotUniform{}, {1.0, fan_mode::fan_avg, distribution::uniform});
    same(init::GlorotNormal{}, {1.0, fan_mode::fan_avg, distribution::truncated_normal});
    same(init::HeNormal{}, {2.0, fan_mode::fan_in, distribution::truncated_normal});
    same(init::HeUniform{}, {2.0, fan_mode::fan_in, distribution::uniform});
    same(init::LecunNormal{}, {1.0, fan_mode::fan_in, distribution::truncated_normal});
    same(init::LecunUniform{}, {1.0, fan_mode::fan_in, distribution::uniform});
    // VarianceScaling's own defaults: scale 1, fan_in, truncated_normal
    init::VarianceScaling d;
    CHECK(d.scale == 1.0);
    CHECK(d.mode == fan_mode::fan_in);
    CHECK(d.dist == distribution::truncated_normal);
}

TEST_CASE("determinism: a seed fixes the values") {
    auto s = make_dims<64, 33>();
    auto check_seeded = [&](auto init) {
        auto a = draw<float>(init, s, 1234), b = draw<float>(init, s, 1234), c = draw<float>(init, s, 1235);
        CHECK(a == b);
        std::size_t differ = 0;
        for (std::size_t i = 0; i < a.size(); ++i) differ += a[i] != c[i];
        CHECK(differ > a.size() * 99 / 100);
    };
    check_seeded(init::GlorotUniform{});
    check_seeded(init::GlorotNormal{});
    check_seeded(init::RandomNormal{});
    check_seeded(init::TruncatedNormal{});
    check_seeded(init::RandomUniform{});
    check_seeded(init::Orthogonal{});
    check_seeded(init::variance_scaling(1.0, "fan_in", "untruncated_normal"));

    // The stream is std::mt19937_64(seed), whose output the C++ standard fixes (its
    // 10000th draw from the default seed 5489 is 9981545732273789042), mapped to [0, 1)
    // by its top 53 bits: pinned here so the documented stream cannot drift.
    auto u = draw<double>(init::RandomUniform{0.0, 1.0}, make_dims<10000>(), 5489);
    CHECK(u[9999] == static_cast<double>(9981545732273789042ull >> 11) * 0x1p-53);
    // Box-Muller: the first pair of draws gives z0 = r cos(t), z1 = r sin(t).
    std::mt19937_64 e(42);
    double u1 = (static_cast<double>(e() >> 11) + 1) * 0x1p-53, u2 = static_cast<double>(e() >> 11) * 0x1p-53;
    double r = std::sqrt(-2 * std::log(u1)), t = 2 * std::numbers::pi * u2;
    auto z = draw<double>(init::RandomNormal{0.0, 1.0}, make_dims<2>(), 42);
    CHECK(z[0] == doctest::Approx(r * std::cos(t)).epsilon(1e-15));
    CHECK(z[1] == doctest::Approx(r * std::sin(t)).epsilon(1e-15));

    // derive_seed separates variables and is stable
    static_assert(init::derive_seed(1, "dense/kernel") != init::derive_seed(1, "dense/bias"));
    static_assert(init::derive_seed(1, "dense/kernel") != init::derive_seed(2, "dense/kernel"));
    static_assert(init::derive_seed(1, "dense/kernel") == init::derive_seed(1, "dense/kernel"));
}

TEST_CASE("constants") {
    auto s = make_dims<3, 4>();
    for (float v : draw<float>(init::Zeros{}, s)) CHECK(v == 0.0f);
    for (double v : draw<double>(init::Ones{}, s)) CHECK(v == 1.0);
    for (float v : draw<float>(init::Constant{}, s)) CHECK(v == 0.0f);  // default value 0
    for (float v : draw<float>(init::Constant{0.25}, s)) CHECK(v == 0.25f);
    auto scalar = draw<double>(init::Constant{-3.0}, dims{});  // rank 0: one element
    CHECK(scalar == std::vector<double>{-3.0});
}

TEST_CASE("Orthogonal and Identity") {
    // max |M^T M - gain^2 I| over the Gram matrix of the columns of an r x c row-major M
    auto gram_error = [](const std::vector<double>& m, std::size_t r, std::size_t c, double g2) {
        double err = 0;
        for (std::size_t i = 0; i < c; ++i)
            for (std::size_t j = 0; j < c; ++j) {
                double s = 0;
                for (std::size_t k = 0; k < r; ++k) s += m[k * c + i] * m[k * c + j];
                err = std::max(err, std::abs(s - (i == j ? g2 : 0.0)));
            }
        return err;
    };
    auto transpose = [](const std::vector<double>& m, std::size_t r, std::size_t c) {
        std::vector<double> t(m.size());
        for (std::size_t i = 0; i < r; ++i)
            for (std::size_t j = 0; j < c; ++j) t[j * r + i] = m[i * c + j];
        return t;
    };
    SUBCASE("tall: orthonormal columns") {
        auto q = draw<double>(init::Orthogonal{}, make_dims<64, 24>());
        CHECK(gram_error(q, 64, 24, 1.0) < 1e-12);
    }
    SUBCASE("wide: orthonormal rows, gain scales") {
        auto q = draw<double>(init::Orthogonal{2.0}, make_dims<5, 9>());
        CHECK(gram_error(transpose(q, 5, 9), 9, 5, 4.0) < 1e-12);
    }
    SUBCASE("square, and rank 3 flattened to (prod s[:-1], s[-1])") {
        auto q = draw<double>(init::Orthogonal{}, make_dims<16, 16>());
        CHECK(gram_error(q, 16, 16, 1.0) < 1e-12);
        CHECK(gram_error(transpose(q, 16, 16), 16, 16, 1.0) < 1e-12);
        auto q3 = draw<float>(init::Orthogonal{}, make_dims<2, 3, 4>());  // (6, 4)
        CHECK(gram_error(std::vector<double>(q3.begin(), q3.end()), 6, 4, 1.0) < 1e-6);
    }
    SUBCASE("sign(diag R) convention: Q^T A is upper triangular with a positive diagonal") {
        // White box: A is the first m*n normals of the same stream, row-major (m x n).
        const std::size_t m = 12, n = 5;
        auto q = draw<double>(init::Orthogonal{}, make_dims<m, n>(), 77);
        init::detail::rng g(77);
        std::vector<double> a(m * n);
        for (double& x : a) x = g.normal();
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < n; ++j) {
                double rij = 0;
                for (std::size_t k = 0; k < m; ++k) rij += q[k * n + i] * a[k * n + j];
                if (i > j) CHECK(std::abs(rij) < 1e-12);
                if (i == j) CHECK(rij > 0);
            }
    }
    SUBCASE("Identity") {
        CHECK(draw<double>(init::Identity{}, make_dims<2, 2>()) == std::vector<double>{1, 0, 0, 1});
        CHECK(draw<float>(init::Identity{2.0}, make_dims<2, 3>()) == std::vector<float>{2, 0, 0, 0, 2, 0});
        CHECK(draw<float>(init::Identity{}, make_dims<3, 2>()) == std::vector<float>{1, 0, 0, 1, 0, 0});
    }
}

TEST_CASE("invalid arguments throw ctrec::error naming the initializer") {
    std::vector<float> v(12);
    std::span<float> out{v};
    auto s = make_dims<3, 4>();
    CHECK_THROWS_WITH_AS(init::RandomNormal({0.0, -1.0})(out, s, 1), doctest::Contains("RandomNormal: stddev"), error);
    CHECK_THROWS_WITH_AS(init::TruncatedNormal({0.0, NAN})(out, s, 1), doctest::Contains("TruncatedNormal: stddev"),
                         error);
    CHECK_THROWS_WITH_AS(init::RandomUniform({1.0, 0.0})(out, s, 1), doctest::Contains("RandomUniform: minval"), error);
    CHECK_THROWS_WITH_AS(init::VarianceScaling{0.0}(out, s, 1), doctest::Contains("VarianceScaling: scale"), error);
    CHECK_THROWS_WITH_AS(init::VarianceScaling{-2.0}(out, s, 1), doctest::Contains("positive"), error);
    init::VarianceScaling bad_mode{1.0, static_cast<init::fan_mode>(7)};
    CHECK_THROWS_WITH_AS(bad_mode(out, s, 1), doctest::Contains("unknown mode"), error);
    CHECK_THROWS_WITH_AS(init::variance_scaling(1.0, "FAN_IN"), doctest::Contains("unknown mode 'FAN_IN'"), error);
    CHECK_THROWS_WITH_AS(init::variance_scaling(1.0, "fan_in", "gaussian"),
                         doctest::Contains("unknown distribution 'gaussian'"), error);
    CHECK_THROWS_WITH_AS(init::variance_scaling(0.0, "fan_in"), doctest::Contains("scale"), error);
    // distributions are lower-cased first, and "normal" means truncated_normal (as TF)
    CHECK(init::variance_scaling(1.0, "fan_in", "Normal").dist == init::distribution::truncated_normal);
    CHECK(init::variance_scaling(1.0, "fan_avg", "UNIFORM").dist == init::distribution::uniform);
    // wrong output size, wrong rank
    CHECK_THROWS_WITH_AS(init::GlorotUniform{}(out, make_dims<3, 5>(), 1),
                         doctest::Contains("GlorotUniform: output has 12 elements but the shape has 15"), error);
    CHECK_THROWS_WITH_AS(init::Orthogonal{}(std::span{v}.first(4), make_dims<4>(), 1),
                         doctest::Contains("Orthogonal: the shape must be at least two-dimensional"), error);
    CHECK_THROWS_WITH_AS(init::Identity{}(out, make_dims<2, 2, 3>(), 1), doctest::Contains("Identity: only 2-D"),
                         error);
}

TEST_CASE("initializers by name (Keras initializers.get)") {
    auto s = make_dims<6, 10>();
    auto same_as = [&](std::string_view n, auto direct) {
        auto a = init::from_name(n);
        std::vector<float> x(s.size()), y(s.size());
        init::fill(a, std::span{x}, s, 5);
        direct(std::span{y}, s, 5);
        CHECK(x == y);
        CHECK(init::name_of(a) == decltype(direct)::name);
    };
    same_as("glorot_uniform", init::GlorotUniform{});
    same_as("GlorotUniform", init::GlorotUniform{});
    same_as("glorot_normal", init::GlorotNormal{});
    same_as("he_normal", init::HeNormal{});
    same_as("he_uniform", init::HeUniform{});
    same_as("lecun_normal", init::LecunNormal{});
    same_as("lecun_uniform", init::LecunUniform{});
    same_as("random_normal", init::RandomNormal{});
    same_as("random_uniform", init::RandomUniform{});
    same_as("truncated_normal", init::TruncatedNormal{});
    same_as("zeros", init::Zeros{});
    same_as("ones", init::Ones{});
    same_as("constant", init::Constant{});
    same_as("variance_scaling", init::VarianceScaling{});
    same_as("orthogonal", init::Orthogonal{});
    same_as("identity", init::Identity{});
    CHECK_THROWS_WITH_AS(init::from_name("glorot"), doctest::Contains("unknown initializer name 'glorot'"), error);
    CHECK_THROWS_AS(init::from_name("Glorot_Uniform"), error);
}

// ---------------------------------------------------------------------------------------------
namespace {
std::vector<double> weights(std::size_t n, std::string_view name = "w") {
    std::vector<double> w(n);
    for (std::size_t i = 0; i < n; ++i) w[i] = 2 * test::leaf_value(name, i);
    return w;
}
// central finite differences of r.value at every element
template <class R>
std::vector<double> fd_gradient(const R& r, std::vector<double> w, double h = 1e-6) {
    std::vector<double> g(w.size());
    for (std::size_t i = 0; i < w.size(); ++i) {
        double w0 = w[i];
        w[i] = w0 + h;
        double up = r.value(std::span<const double>(w));
        w[i] = w0 - h;
        double dn = r.value(std::span<const double>(w));
        w[i] = w0;
        g[i] = (up - dn) / (2 * h);
    }
    return g;
}
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
    double e = 0;
    for (std::size_t i = 0; i < a.size(); ++i) e = std::max(e, std::abs(a[i] - b[i]));
    return e;
}
} // namespace

TEST_CASE("regularizers: values and gradients against the formulas") {
    auto w = weights(50);
    std::span<const double> ws{w};
    double sa = 0, sq = 0;
    for (double x : w) sa += std::abs(x), sq += x * x;
    SUBCASE("defaults") {
        CHECK(reg::L1{}.l1 == 0.01);
        CHECK(reg::L2{}.l2 == 0.01);
        CHECK(reg::L1L2{}.l1 == 0.0);
        CHECK(reg::L1L2{}.l2 == 0.0);
        CHECK(reg::L1{}.value(ws) == doctest::Approx(0.01 * sa).epsilon(1e-14));
        CHECK(reg::L2{}.value(ws) == doctest::Approx(0.01 * sq).epsilon(1e-14));  // no 1/2
        CHECK(reg::L1L2{}.value(ws) == 0.0);
    }
    SUBCASE("gradients: formula and central differences") {
        reg::L1 l1{0.03};
        reg::L2 l2{0.2};
        reg::L1L2 both{0.003, 0.05};
        CHECK(both.value(ws) == doctest::Approx(0.003 * sa + 0.05 * sq).epsilon(1e-14));
        auto grad = [&](const auto& r) {
            std::vector<double> g(w.size(), 0.0);
            r.add_gradient(ws, std::span{g});
            return g;
        };
        std::vector<double> want1(w.size()), want2(w.size()), want12(w.size());
        for (std::size_t i = 0; i < w.size(); ++i) {
            double sg = w[i] > 0 ? 1 : -1;
            want1[i] = 0.03 * sg;
            want2[i] = 2 * 0.2 * w[i];
            want12[i] = 0.003 * sg + 2 * 0.05 * w[i];
        }
        CHECK(max_abs_diff(grad(l1), want1) < 1e-15);
        CHECK(max_abs_diff(grad(l2), want2) < 1e-15);
        CHECK(max_abs_diff(grad(both), want12) < 1e-15);
        // leaf values are multiples of 2e-6, none 0, so |w| is smooth within h = 1e-7
        for (double x : w) REQUIRE(x != 0.0);
        CHECK(max_abs_diff(grad(l1), fd_gradient(l1, w, 1e-7)) < 1e-7);
        CHECK(max_abs_diff(grad(l2), fd_gradient(l2, w)) < 1e-7);
        CHECK(max_abs_diff(grad(both), fd_gradient(both, w, 1e-7)) < 1e-7);
    }
    SUBCASE("add_gradient accumulates, and the L1 gradient at 0 is 0 (TF's sign(0))") {
        std::vector<double> z{0.0, -0.0, 1.0, -2.0}, g{1.0, 1.0, 1.0, 1.0};
        reg::L1L2{0.5, 0.25}.add_gradient(std::span<const double>(z), std::span{g});
        CHECK(g == std::vector<double>{1.0, 1.0, 1.0 + 0.5 + 0.5, 1.0 - 0.5 - 1.0});
    }
    SUBCASE("float weights") {
        std::vector<float> wf(w.begin(), w.end()), g(w.size(), 0.0f);
        std::span<const float> wfs{wf};
        CHECK(reg::L2{}.value(wfs) == doctest::Approx(0.01 * sq).epsilon(1e-6));
        reg::L2{}.add_gradient(wfs, std::span{g});
        for (std::size_t i = 0; i < w.size(); ++i) CHECK(g[i] == doctest::Approx(0.02 * wf[i]).epsilon(1e-6));
    }
    SUBCASE("a zero coefficient drops its term, as TF's L1L2 does") {
        std::vector<double> inf{1.0, INFINITY};
        std::span<const double> is{inf};
        CHECK(reg::L1L2{0.0, 0.01}.value(is) == INFINITY);  // not 0 * inf = NaN
        CHECK(reg::L1L2{0.0, 0.0}.value(is) == 0.0);
    }
    SUBCASE("by name: the l1_l2 string and the L1L2 class disagree on defaults") {
        auto a = reg::from_name("l1_l2");
        REQUIRE(std::holds_alternative<reg::L1L2>(a));
        CHECK(std::get<reg::L1L2>(a).l1 == 0.01);
        CHECK(std::get<reg::L1L2>(a).l2 == 0.01);
        auto b = reg::from_name("L1L2");
        CHECK(std::get<reg::L1L2>(b).l1 == 0.0);
        CHECK(std::get<reg::L1L2>(b).l2 == 0.0);
        CHECK(std::get<reg::L1>(reg::from_name("l1")).l1 == 0.01);
        CHECK(std::get<reg::L2>(reg::from_name("L2")).l2 == 0.01);
        CHECK(reg::name_of(reg::from_name("l2")) == "L2");
        CHECK(reg::value(reg::from_name("l1_l2"), ws) == doctest::Approx(0.01 * (sa + sq)).epsilon(1e-14));
        CHECK_THROWS_WITH_AS(reg::from_name("l3"), doctest::Contains("unknown regularizer name 'l3'"), error);
    }
    SUBCASE("invalid arguments") {
        CHECK_THROWS_WITH_AS(reg::L2{NAN}.value(ws), doctest::Contains("L2: l2 must be finite"), error);
        CHECK_THROWS_WITH_AS(reg::L1L2({0.0, INFINITY}).value(ws), doctest::Contains("L1L2: l2 must be finite"), error);
        std::vector<double> g(3);
        CHECK_THROWS_WITH_AS(reg::L1{}.add_gradient(ws, std::span{g}),
                             doctest::Contains("L1: gradient has 3 elements but the weights have 50"), error);
        CHECK(reg::L1{-0.5}.value(ws) == doctest::Approx(-0.5 * sa));  // negative coefficients pass, as in TF
    }
}

TEST_CASE("total: one penalty for the model, with gradients") {
    auto k = weights(12, "kernel"), b = weights(4, "bias"), n = weights(6, "norm");
    std::vector<double> gk(k.size(), 0.0), gb(b.size(), 1.0);
    double v = reg::total<double>({
        {"dense/kernel", reg::L2{0.1}, k, gk},
        {"dense/bias", reg::L1{0.2}, b, gb},
        {"ln/gamma", reg::from_name("l1_l2"), n},  // value only
    });
    double want = reg::L2{0.1}.value(std::span<const double>(k)) + reg::L1{0.2}.value(std::span<const double>(b)) +
                  reg::L1L2{0.01, 0.01}.value(std::span<const double>(n));
    CHECK(v == doctest::Approx(want).epsilon(1e-14));
    for (std::size_t i = 0; i < k.size(); ++i) CHECK(gk[i] == doctest::Approx(0.2 * k[i]));
    for (std::size_t i = 0; i < b.size(); ++i) CHECK(gb[i] == doctest::Approx(1.0 + (b[i] > 0 ? 0.2 : -0.2)));
    std::vector<double> short_g(3);
    CHECK_THROWS_WITH_AS(reg::total<double>({{"dense/kernel", reg::L2{}, k, short_g}}),
                         doctest::Contains("term 'dense/kernel'"), error);
    CHECK(reg::total<double>({}) == 0.0);
}

namespace {
// The penalty a layer adds for regularizer r on a (3, 4) variable "w" (layers/layer.hpp).
constexpr expr penalty_of(layers::regularizer r) {
    layers::result m;
    val w = make_param(m.g, "w", make_dims<3, 4>());
    layers::add_penalty(m, r, w);
    return m.penalty();
}
constexpr auto pen_l2 = penalty_of({0.0, 0.01});
constexpr auto pen_l1 = penalty_of({0.3, 0.0});
constexpr auto pen_l1l2 = penalty_of({0.3, 0.02});
constexpr auto pen_none = penalty_of({0.0, 0.0});
constexpr auto x_in = input<"x", 1>;
constexpr auto x_pen = x_in * pen_l1l2;
constexpr auto x_pen_l2 = x_in * penalty_of({0.0, 0.5});
} // namespace

TEST_CASE("DSL forms: value and reverse-mode gradient") {
    auto w = [](std::size_t i) { return test::leaf_value("w", i); };
    double sa = 0, sq = 0;
    for (std::size_t i = 0; i < 12; ++i) sa += std::abs(w(i)), sq += w(i) * w(i);
    auto value = []<class P>(P*) {
        test::leaves L;
        return test::run<P>(L, 1)[0][0];
    };
    CHECK(value(static_cast<program<double, pen_l2>*>(nullptr)) == doctest::Approx(0.01 * sq).epsilon(1e-14));
    CHECK(value(static_cast<program<double, pen_l1>*>(nullptr)) == doctest::Approx(0.3 * sa).epsilon(1e-14));
    CHECK(value(static_cast<program<double, pen_l1l2>*>(nullptr)) == doctest::Approx(0.3 * sa + 0.02 * sq).epsilon(1e-14));
    // a zero coefficient adds no term; no regularizer is the constant 0 (as TF returns)
    CHECK(pen_l2.g.n < pen_l1l2.g.n);
    CHECK(pen_none.rec().op == opcode::constant);
    CHECK(pen_none.rec().value == 0.0);

    // gradient: a per-example root x * penalty with x = 1, batch 1, cotangent 1
    using G = grad_program<double, x_pen>;
    typename G::parameters p;
    typename G::workspace ws;
    auto pw = p.template get<"w">();
    for (std::size_t i = 0; i < 12; ++i) pw[i] = i == 5 ? 0.0 : w(i);  // one exact zero
    std::vector<double> one{1.0}, ct{1.0}, y(1), dx(1), dw(12);
    typename G::io io;
    io.template input<"x">(one.data()).template input<"cotangent">(ct.data()).template output<0>(y.data());
    io.template output<G::template grad<"x">>(dx.data()).template output<G::template grad<"w">>(dw.data());
    G::run(p, ws, 1, io);
    CHECK(dx[0] == doctest::Approx(y[0]));  // d(x * penalty)/dx = penalty
    for (std::size_t i = 0; i < 12; ++i) {
        double wi = i == 5 ? 0.0 : w(i);
        double sg = wi > 0 ? 1 : wi < 0 ? -1 : 0;
        CHECK(dw[i] == doctest::Approx(0.3 * sg + 2 * 0.02 * wi).epsilon(1e-14));
    }
    // and it agrees with the runtime form
    std::vector<double> wv(pw.begin(), pw.end()), g(12, 0.0);
    reg::L1L2{0.3, 0.02}.add_gradient(std::span<const double>(wv), std::span{g});
    CHECK(max_abs_diff(g, dw) < 1e-14);
    test::check_derivatives<grad_program<double, x_pen_l2>, jvp_program<double, x_pen_l2>>(3);
}
