// Elementwise primitives: value against the formula (float64 and float32),
// gradients against finite differences, JVP/VJP duality.
#include "support.hpp"

using namespace ctrec;
using test::leaf_value;

namespace {
constexpr std::size_t B = 3;
constexpr auto x = input<"x", 3, 4>;

double positive(std::string_view n, std::size_t i) { return 0.25 + std::abs(leaf_value(n, i)); }
double shift_pos(std::string_view, double v) { return 0.25 + std::abs(v); }

template <class E, class F>
void unary(E, F f, bool pos = false) {
    test::value_fn vf = pos ? test::value_fn(positive) : test::value_fn(leaf_value);
    std::vector<double> want(B * 12);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] = f(vf("x", i));
    test::check_forward<E>(B, want, vf);
    test::check_ad<E>(B, pos ? std::function<double(std::string_view, double)>(shift_pos) : nullptr);
}
} // namespace

TEST_CASE("unary primitives match their formulas and derivatives") {
    SUBCASE("neg") { unary(-x, [](double v) { return -v; }); }
    SUBCASE("exp") { unary(exp(x), [](double v) { return std::exp(v); }); }
    SUBCASE("log") { unary(log(x), [](double v) { return std::log(v); }, true); }
    SUBCASE("log1p") { unary(log1p(x), [](double v) { return std::log1p(v); }, true); }
    SUBCASE("sqrt") { unary(sqrt(x), [](double v) { return std::sqrt(v); }, true); }
    SUBCASE("rsqrt") { unary(rsqrt(x), [](double v) { return 1 / std::sqrt(v); }, true); }
    SUBCASE("abs") { unary(abs(x), [](double v) { return std::abs(v); }); }
    SUBCASE("sigmoid") { unary(sigmoid(x), [](double v) { return 1 / (1 + std::exp(-v)); }); }
    SUBCASE("tanh") { unary(tanh(x), [](double v) { return std::tanh(v); }); }
    SUBCASE("erf") { unary(erf(x), [](double v) { return std::erf(v); }); }
    SUBCASE("pow 3") { unary(pow<3.0>(x), [](double v) { return v * v * v; }); }
    SUBCASE("pow 2") { unary(pow<2.0>(x), [](double v) { return v * v; }); }
    SUBCASE("pow 0.5") { unary(pow<0.5>(x), [](double v) { return std::sqrt(v); }, true); }
    SUBCASE("pow -1.5") { unary(pow<-1.5>(x), [](double v) { return std::pow(v, -1.5); }, true); }
    SUBCASE("constants") { unary(x * lit<2.5> + lit<1.0>, [](double v) { return 2.5 * v + 1.0; }); }
}

namespace {
// a: (B, 2, 3) input, w: (3) parameter, c: (B, 2, 1) input -> broadcast to (B, 2, 3)
constexpr auto a = input<"a", 2, 3>;
constexpr auto w = param<"w", 3>;
constexpr auto c = input<"c", 2, 1>;

template <class E, class F>
void binary(E, F f) {
    std::vector<double> want;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t i = 0; i < 2; ++i)
            for (std::size_t j = 0; j < 3; ++j)
                want.push_back(f(leaf_value("a", b * 6 + i * 3 + j), leaf_value("w", j), leaf_value("c", b * 2 + i)));
    test::check_forward<E>(B, want);
    test::check_ad<E>(B);
}
} // namespace

TEST_CASE("binary primitives broadcast like NumPy, over the batch too") {
    SUBCASE("add") { binary(a + w, [](double x, double y, double) { return x + y; }); }
    SUBCASE("sub") { binary(c - a, [](double x, double, double z) { return z - x; }); }
    SUBCASE("mul") { binary(a * w * c, [](double x, double y, double z) { return x * y * z; }); }
    SUBCASE("div") {
        binary(a / (lit<2.0> + c), [](double x, double, double z) { return x / (2 + z); });
    }
    SUBCASE("maximum") { binary(maximum(a, w), [](double x, double y, double) { return x >= y ? x : y; }); }
    SUBCASE("minimum") { binary(minimum(c, a), [](double x, double, double z) { return z <= x ? z : x; }); }
    SUBCASE("where") {
        binary(where(greater(a, w), a * c, w), [](double x, double y, double z) { return x > y ? x * z : y; });
    }
    SUBCASE("comparisons are piecewise constant") {
        // plus a smooth term, so that every leaf has a derivative to check: the
        // comparisons must add exactly nothing to it
        binary(greater(a, w) + greater_equal(c, a) + equal(a, a) + lit<0.5> * a * w * c,
               [](double x, double y, double z) { return (x > y) + (z >= x) + 1.0 + 0.5 * x * y * z; });
    }
    SUBCASE("a value used several times accumulates every contribution") {
        binary(a * a + exp(a) * a - a / (lit<3.0> + w * w),
               [](double x, double y, double) { return x * x + std::exp(x) * x - x / (3 + y * y); });
    }
}

TEST_CASE("max/min ties send the derivative to the first operand, as TF does") {
    constexpr auto p = input<"p", 4>;
    constexpr auto q = input<"q", 4>;
    using E = std::remove_cvref_t<decltype(maximum(p, q) + lit<2.0> * minimum(p, q))>;
    using G = grad_program<double, E>;
    G::parameters gp;
    G::workspace ws;
    std::vector<double> pv{1, 2, 3, 4}, qv{1, 0, 3, 5}, ct{1, 1, 1, 1}, y(4), dp(4), dq(4);
    G::io io;
    io.input<"p">(pv.data()).input<"q">(qv.data()).input<"cotangent">(ct.data());
    io.output<0>(y.data()).output<G::grad<"p">>(dp.data()).output<G::grad<"q">>(dq.data());
    G::run(gp, ws, 1, io);
    // ties at 0 and 2: both max and min pick p
    CHECK(dp == std::vector<double>{3, 1, 3, 2});
    CHECK(dq == std::vector<double>{0, 2, 0, 1});
}

TEST_CASE("a fused select over runs shorter than one SIMD vector is right for every example") {
    // Regression: GCC 12.2 -O3 -march=native (AVX-512) auto-vectorised the scalar tail of a
    // fused map step across examples and gave wrong rows for examples 2 and 3 (6 doubles per
    // example, 7 examples). executor.hpp keeps that tail scalar.
    constexpr auto w = input<"w", 6>;
    constexpr auto m = input<"m", 6>;
    constexpr auto e = where(greater_equal(m, lit<1.0>), w, lit<0.0>) * lit<2.0>;
    auto f = [](std::string_view n, std::size_t i) { return n == "m" ? ((i % 6) < 4 ? 1.0 : 0.0) : leaf_value(n, i); };
    std::vector<double> want(7 * 6);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] = f("m", i) >= 1 ? 2 * leaf_value("w", i) : 0.0;
    test::check_forward<std::remove_cvref_t<decltype(e)>>(7, want, f);
}
