// The activations Monolith registers, against the formulas in the spec
// (layers-core-and-cross.md 1.2), with TF's derivative conventions at kinks.
#include "support.hpp"

using namespace ctrec;
using test::leaf_value;

namespace {
constexpr std::size_t B = 4;
constexpr auto x = input<"x", 10>;
// values in [-3, 3] so every branch is exercised
double wide(std::string_view n, std::size_t i) { return 3 * leaf_value(n, i); }
double wide_shape(std::string_view, double v) { return 3 * v; }

template <class E, class F>
void activation(E, F f) {
    std::vector<double> want(B * 10);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] = f(wide("x", i));
    test::check_forward<E>(B, want, wide);
    test::check_ad<E>(B, wide_shape);
}

// derivative of E at the given points (reverse mode, cotangent 1)
template <class E>
std::vector<double> derivative_at(std::vector<double> pts) {
    constexpr auto v = input<"v", 4>;
    (void)v;
    using G = grad_program<double, E>;
    typename G::parameters p;
    typename G::workspace ws;
    std::vector<double> ct(4, 1.0), y(4), dx(4);
    typename G::io io;
    io.template input<"v">(pts.data()).template input<"cotangent">(ct.data()).template output<0>(y.data());
    io.template output<G::template grad<"v">>(dx.data());
    G::run(p, ws, 1, io);
    return dx;
}
} // namespace

TEST_CASE("activation formulas and their derivatives") {
    const double sa = 1.6732632423543772, sl = 1.0507009873554805;
    SUBCASE("linear") { activation(act::linear(x), [](double v) { return v; }); }
    SUBCASE("exponential") { activation(act::exponential(x), [](double v) { return std::exp(v); }); }
    SUBCASE("sigmoid") { activation(act::sigmoid(x), [](double v) { return 1 / (1 + std::exp(-v)); }); }
    SUBCASE("sigmoid2") { activation(act::sigmoid2(x), [](double v) { return 2 / (1 + std::exp(-v)); }); }
    SUBCASE("tanh") { activation(act::tanh(x), [](double v) { return std::tanh(v); }); }
    SUBCASE("relu") { activation(act::relu(x), [](double v) { return v > 0 ? v : 0; }); }
    SUBCASE("leakyrelu alpha 0.3") { activation(act::leakyrelu(x), [](double v) { return v > 0 ? v : 0.3 * v; }); }
    SUBCASE("leakyrelu alpha 0.2") { activation(act::leakyrelu<0.2>(x), [](double v) { return v > 0 ? v : 0.2 * v; }); }
    SUBCASE("elu") { activation(act::elu(x), [](double v) { return v > 0 ? v : std::exp(v) - 1; }); }
    SUBCASE("selu") { activation(act::selu(x), [&](double v) { return sl * (v > 0 ? v : sa * (std::exp(v) - 1)); }); }
    SUBCASE("gelu (exact erf form)") {
        activation(act::gelu(x), [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); });
    }
    SUBCASE("hard_sigmoid (slope 0.2)") {
        activation(act::hard_sigmoid(x), [](double v) { return std::clamp(0.2 * v + 0.5, 0.0, 1.0); });
    }
    SUBCASE("softplus") { activation(act::softplus(x), [](double v) { return std::log1p(std::exp(v)); }); }
    SUBCASE("softsign") { activation(act::softsign(x), [](double v) { return v / (1 + std::abs(v)); }); }
    SUBCASE("swish") { activation(act::swish(x), [](double v) { return v / (1 + std::exp(-v)); }); }
    SUBCASE("thresholdedrelu theta 1") { activation(act::thresholdedrelu(x), [](double v) { return v > 1 ? v : 0; }); }
    SUBCASE("keras relu with max_value, negative_slope and threshold") {
        activation(act::keras_relu<2.0, 0.1, 0.5>(x), [](double v) {
            double p = v > 0.5 ? v : 0;
            p = std::clamp(p, 0.0, 2.0);
            return p - 0.1 * std::max(0.5 - v, 0.0);
        });
    }
}

TEST_CASE("derivatives at the kinks follow TF") {
    constexpr auto v = input<"v", 4>;
    CHECK(derivative_at<std::remove_cvref_t<decltype(act::relu(v))>>({0, 1, -1, 0}) == std::vector<double>{0, 1, 0, 0});
    CHECK(derivative_at<std::remove_cvref_t<decltype(act::leakyrelu(v))>>({0, 1, -1, 2}) ==
          std::vector<double>{0.3, 1, 0.3, 1});
    CHECK(derivative_at<std::remove_cvref_t<decltype(act::thresholdedrelu(v))>>({1, 1.5, 0.5, -1}) ==
          std::vector<double>{0, 1, 0, 0});
    // hard_sigmoid passes 0.2 on the closed interval [-2.5, 2.5] (the boundary tie itself
    // goes to the first operand of max/min, tested in test_elementwise; 0.2 x + 0.5 is not
    // exact at x = -2.5 once the compiler contracts it into an FMA, so probe just inside)
    auto hs = derivative_at<std::remove_cvref_t<decltype(act::hard_sigmoid(v))>>({-2.4999999, 2.5, 3, -3});
    CHECK(hs[0] == doctest::Approx(0.2));
    CHECK(hs[1] == doctest::Approx(0.2));
    CHECK(hs[2] == 0);
    CHECK(hs[3] == 0);
    auto sp = derivative_at<std::remove_cvref_t<decltype(act::softplus(v))>>({0, 50, -50, 1});
    CHECK(sp[0] == doctest::Approx(0.5));
    CHECK(sp[1] == doctest::Approx(1.0));
    CHECK(sp[2] == doctest::Approx(0.0));
    CHECK(sp[3] == doctest::Approx(1 / (1 + std::exp(-1.0))));
}

TEST_CASE("saturated inputs give finite values and derivatives") {
    constexpr auto v = input<"v", 4>;
    auto all_finite = [](const std::vector<double>& d) {
        for (double e : d)
            if (!std::isfinite(e)) return false;
        return true;
    };
    std::vector<double> big{-800, 800, -1e4, 1e4};
    CHECK(all_finite(derivative_at<std::remove_cvref_t<decltype(act::elu(v))>>(big)));
    CHECK(all_finite(derivative_at<std::remove_cvref_t<decltype(act::selu(v))>>(big)));
    CHECK(all_finite(derivative_at<std::remove_cvref_t<decltype(act::softplus(v))>>(big)));
    CHECK(all_finite(derivative_at<std::remove_cvref_t<decltype(act::sigmoid(v))>>(big)));
    auto sp = test::run<double, std::remove_cvref_t<decltype(act::softplus(v))>>(
        1, [&](std::string_view, std::size_t i) { return big[i]; });
    CHECK(sp[1] == doctest::Approx(800));
    CHECK(sp[0] == doctest::Approx(0.0));
}
