// Reductions, softmax / log-softmax / l2-normalize, and data movement
// (concat, stack, slice, reshape, transpose, gather, stop_gradient).
#include "support.hpp"

using namespace ctrec;
using test::leaf_value;

namespace {
constexpr std::size_t B = 3;
constexpr auto X = input<"X", 2, 3, 4>;
double xv(std::size_t b, std::size_t i, std::size_t j, std::size_t k) { return leaf_value("X", b * 24 + i * 12 + j * 4 + k); }

template <class E, class F>
void over_xyz(F f, std::size_t d0, std::size_t d1, std::size_t d2) {
    std::vector<double> want;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t i = 0; i < d0; ++i)
            for (std::size_t j = 0; j < d1; ++j)
                for (std::size_t k = 0; k < d2; ++k) want.push_back(f(b, i, j, k));
    test::check_forward<E>(B, want);
    test::check_ad<E>(B);
}
} // namespace

TEST_CASE("sum, mean and max over chosen axes") {
    SUBCASE("sum over the last axis") {
        using E = std::remove_cvref_t<decltype(sum<2>(X))>;
        over_xyz<E>([](auto b, auto i, auto j, auto) { double s = 0; for (std::size_t k = 0; k < 4; ++k) s += xv(b, i, j, k); return s; }, 2, 3, 1);
    }
    SUBCASE("sum over axes 0 and 2") {
        using E = std::remove_cvref_t<decltype(sum<0, 2>(X))>;
        over_xyz<E>([](auto b, auto, auto j, auto) { double s = 0; for (std::size_t i = 0; i < 2; ++i) for (std::size_t k = 0; k < 4; ++k) s += xv(b, i, j, k); return s; }, 1, 3, 1);
    }
    SUBCASE("sum of everything and mean over the middle axis") {
        using E = std::remove_cvref_t<decltype(sum(X) + mean<1>(X))>;  // (2,4) + scalar
        over_xyz<E>([](auto b, auto i, auto, auto k) {
            double all = 0, m = 0;
            for (std::size_t a = 0; a < 2; ++a) for (std::size_t c = 0; c < 3; ++c) for (std::size_t d = 0; d < 4; ++d) all += xv(b, a, c, d);
            for (std::size_t c = 0; c < 3; ++c) m += xv(b, i, c, k) / 3;
            return all + m;
        }, 2, 1, 4);
    }
    SUBCASE("max over the last and over the first axis") {
        using E = std::remove_cvref_t<decltype(max<2>(X))>;
        over_xyz<E>([](auto b, auto i, auto j, auto) { double s = -1e300; for (std::size_t k = 0; k < 4; ++k) s = std::max(s, xv(b, i, j, k)); return s; }, 2, 3, 1);
        using F = std::remove_cvref_t<decltype(max<0>(X))>;
        over_xyz<F>([](auto b, auto, auto j, auto k) { return std::max(xv(b, 0, j, k), xv(b, 1, j, k)); }, 1, 3, 4);
    }
    SUBCASE("a fused elementwise tree feeding a reduction") {
        using E = std::remove_cvref_t<decltype(sum<2>(exp(X) * X))>;
        over_xyz<E>([](auto b, auto i, auto j, auto) { double s = 0; for (std::size_t k = 0; k < 4; ++k) s += std::exp(xv(b, i, j, k)) * xv(b, i, j, k); return s; }, 2, 3, 1);
        CHECK(program<float, E>::plan_type::steps == 1);
    }
}

TEST_CASE("max shares the derivative equally among ties (TF's reduce_max gradient)") {
    constexpr auto v = input<"v", 4>;
    using G = grad_program<double, std::remove_cvref_t<decltype(max<0>(v))>>;
    G::parameters p;
    G::workspace ws;
    std::vector<double> x{1, 3, 3, 2}, ct{1}, y(1), dx(4);
    G::io io;
    io.input<"v">(x.data()).input<"cotangent">(ct.data()).output<0>(y.data()).output<G::grad<"v">>(dx.data());
    G::run(p, ws, 1, io);
    CHECK(y[0] == 3);
    CHECK(dx == std::vector<double>{0, 0.5, 0.5, 0});
}

TEST_CASE("softmax, log_softmax and l2_normalize along an axis") {
    auto soft = [](auto b, auto i, auto j, auto k, bool logv) {
        double m = -1e300, s = 0;
        for (std::size_t c = 0; c < 4; ++c) m = std::max(m, xv(b, i, j, c));
        for (std::size_t c = 0; c < 4; ++c) s += std::exp(xv(b, i, j, c) - m);
        return logv ? xv(b, i, j, k) - m - std::log(s) : std::exp(xv(b, i, j, k) - m) / s;
    };
    SUBCASE("softmax") {
        using E = std::remove_cvref_t<decltype(softmax<2>(X))>;
        over_xyz<E>([&](auto b, auto i, auto j, auto k) { return soft(b, i, j, k, false); }, 2, 3, 4);
    }
    SUBCASE("log_softmax") {
        using E = std::remove_cvref_t<decltype(log_softmax<2>(X))>;
        over_xyz<E>([&](auto b, auto i, auto j, auto k) { return soft(b, i, j, k, true); }, 2, 3, 4);
    }
    SUBCASE("softmax over a middle axis") {
        using E = std::remove_cvref_t<decltype(softmax<1>(X))>;
        over_xyz<E>([](auto b, auto i, auto j, auto k) {
            double m = -1e300, s = 0;
            for (std::size_t c = 0; c < 3; ++c) m = std::max(m, xv(b, i, c, k));
            for (std::size_t c = 0; c < 3; ++c) s += std::exp(xv(b, i, c, k) - m);
            return std::exp(xv(b, i, j, k) - m) / s;
        }, 2, 3, 4);
    }
    SUBCASE("l2_normalize") {
        using E = std::remove_cvref_t<decltype(l2_normalize<2>(X))>;
        over_xyz<E>([](auto b, auto i, auto j, auto k) {
            double s = 0;
            for (std::size_t c = 0; c < 4; ++c) s += xv(b, i, j, c) * xv(b, i, j, c);
            return xv(b, i, j, k) / std::sqrt(std::max(s, 1e-12));
        }, 2, 3, 4);
    }
    SUBCASE("softmax is stable for large logits") {
        constexpr auto z = input<"z", 3>;
        using E = std::remove_cvref_t<decltype(softmax<0>(z))>;
        auto out = test::run<float, E>(1, [](std::string_view, std::size_t i) { return 1000.0 + static_cast<double>(i); });
        double e0 = 1 / (1 + std::exp(1.0) + std::exp(2.0));
        test::check_close(out, {e0, e0 * std::exp(1.0), e0 * std::exp(2.0)}, 1e-6);
    }
}

TEST_CASE("concat, stack, slice, reshape and transpose") {
    constexpr auto P = input<"P", 2, 3>;
    constexpr auto Q = param<"Q", 1, 3>;
    constexpr auto R = input<"R", 2, 2>;
    auto pv = [](auto b, auto i, auto j) { return leaf_value("P", b * 6 + i * 3 + j); };
    SUBCASE("concat along axis 0 with an unbatched operand") {
        using E = std::remove_cvref_t<decltype(concat<0>(P, Q))>;
        over_xyz<E>([&](auto b, auto, auto i, auto j) { return i < 2 ? pv(b, i, j) : leaf_value("Q", j); }, 1, 3, 3);
    }
    SUBCASE("concat along axis 1") {
        using E = std::remove_cvref_t<decltype(concat<1>(P, R, P))>;
        over_xyz<E>([&](auto b, auto, auto i, auto j) {
            return j < 3 ? pv(b, i, j) : j < 5 ? leaf_value("R", b * 4 + i * 2 + (j - 3)) : pv(b, i, j - 5);
        }, 1, 2, 8);
    }
    SUBCASE("stack") {
        using E = std::remove_cvref_t<decltype(stack<1>(P, P * P))>;
        over_xyz<E>([&](auto b, auto i, auto s, auto j) { return s == 0 ? pv(b, i, j) : pv(b, i, j) * pv(b, i, j); }, 2, 2, 3);
    }
    SUBCASE("slice") {
        using E = std::remove_cvref_t<decltype(slice<1, 1, 3>(X))>;
        over_xyz<E>([](auto b, auto i, auto j, auto k) { return xv(b, i, j + 1, k); }, 2, 2, 4);
    }
    SUBCASE("reshape") {
        using E = std::remove_cvref_t<decltype(reshape<4, 6>(X) * lit<2.0>)>;
        over_xyz<E>([](auto b, auto, auto r, auto c) { std::size_t f = r * 6 + c; return 2 * xv(b, f / 12, f / 4 % 3, f % 4); }, 1, 4, 6);
    }
    SUBCASE("transpose") {
        using E = std::remove_cvref_t<decltype(transpose<2, 0, 1>(X))>;
        over_xyz<E>([](auto b, auto k, auto i, auto j) { return xv(b, i, j, k); }, 4, 2, 3);
    }
}

TEST_CASE("gather rows of a table by ids, and its scatter-add gradient") {
    constexpr auto T = param<"T", 10, 4>;
    constexpr auto id = ids<"id", 3>;
    constexpr auto s = input<"s", 3, 4>;
    using E = std::remove_cvref_t<decltype(gather(T, id) * s)>;
    std::vector<double> want;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t p = 0; p < 3; ++p)
            for (std::size_t k = 0; k < 4; ++k) {
                auto row = static_cast<std::size_t>(test::id_value("id", b * 3 + p, 10));
                want.push_back(leaf_value("T", row * 4 + k) * leaf_value("s", b * 12 + p * 4 + k));
            }
    test::check_forward<E>(B, want, leaf_value, 10);
    test::check_ad<E>(B);
}

TEST_CASE("stop_gradient passes the value and blocks the derivative") {
    constexpr auto v = input<"v", 5>;
    using E = std::remove_cvref_t<decltype(v * stop_gradient(v * v))>;
    using G = grad_program<double, E>;
    G::parameters p;
    G::workspace ws;
    std::vector<double> x{1, 2, 3, -1, 0.5}, ct(5, 1.0), y(5), dx(5);
    G::io io;
    io.input<"v">(x.data()).input<"cotangent">(ct.data()).output<0>(y.data()).output<G::grad<"v">>(dx.data());
    G::run(p, ws, 1, io);
    for (std::size_t i = 0; i < 5; ++i) {
        CHECK(y[i] == doctest::Approx(x[i] * x[i] * x[i]));
        CHECK(dx[i] == doctest::Approx(x[i] * x[i]));  // not 3 x^2
    }
}

TEST_CASE("batch_sum reduces over the batch into an unbatched output") {
    constexpr auto v = input<"v", 3>;
    using E = std::remove_cvref_t<decltype(batch_sum(v * v))>;
    for (std::size_t batch : {1, 5, 200}) {
        std::vector<double> want(3, 0.0);
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t i = 0; i < 3; ++i) want[i] += leaf_value("v", b * 3 + i) * leaf_value("v", b * 3 + i);
        test::check_close(test::run<double, E>(batch), want, 1e-12);
    }
}

TEST_CASE("batch statistics: values that depend on sums over the batch take extra passes") {
    constexpr auto v = input<"v", 5>;
    constexpr auto m = batch_mean(v);
    constexpr auto var = batch_mean((v - m) * (v - m));
    using E = std::remove_cvref_t<decltype((v - m) * rsqrt(var + lit<1e-3>))>;
    using P = plan<E>;
    CHECK(P::data.passes == 3);
    for (std::size_t batch : {1, 4, 150}) {
        std::vector<double> mean(5, 0.0), vr(5, 0.0), want;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t i = 0; i < 5; ++i) mean[i] += leaf_value("v", b * 5 + i) / batch;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t i = 0; i < 5; ++i) vr[i] += std::pow(leaf_value("v", b * 5 + i) - mean[i], 2) / batch;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t i = 0; i < 5; ++i) want.push_back((leaf_value("v", b * 5 + i) - mean[i]) / std::sqrt(vr[i] + 1e-3));
        test::check_forward<E>(batch, want);
    }
    // the gradient flows through the batch statistics (more passes, same machinery)
    test::check_ad<E>(6);
}

TEST_CASE("matrix transpose of parameters and of computed values, block edges included") {
    // 37 x 45: partial 8 x 8 and 32 x 32 blocks on both axes; 40 x 64: whole blocks only
    auto check = [](auto w_node, auto tag) {
        using Wn = decltype(w_node);
        constexpr std::size_t R = Wn::shape.d[0], C = Wn::shape.d[1];
        using E = std::remove_cvref_t<decltype(transpose<1, 0>(w_node))>;
        std::vector<double> want;
        for (std::size_t j = 0; j < C; ++j)
            for (std::size_t i = 0; i < R; ++i) want.push_back(leaf_value(Wn::name.view(), i * C + j));
        test::check_close(test::run<double, E>(1), want, 0);
        test::check_close(test::run<float, E>(1), want, 1e-7);
        // a computed (per-example) operand goes through the same step
        using F = std::remove_cvref_t<decltype(transpose<1, 0>(w_node * input<"s", 1>))>;
        std::vector<double> want2;
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t j = 0; j < C; ++j)
                for (std::size_t i = 0; i < R; ++i) want2.push_back(leaf_value(Wn::name.view(), i * C + j) * leaf_value("s", b));
        test::check_close(test::run<double, F>(2), want2, 1e-15);
        (void)tag;
    };
    check(param<"W", 37, 45>, 0);
    check(param<"V", 40, 64>, 0);
}

TEST_CASE_TEMPLATE("reductions over a leading or middle block of axes run whole rows in SIMD", T, float, double) {
    constexpr auto Y = input<"y", 3, 5, 37>;  // 37: SIMD runs and scalar tails in every row
    auto yv = [](std::size_t b, std::size_t i, std::size_t j, std::size_t k) {
        return test::leaf_value("y", ((b * 3 + i) * 5 + j) * 37 + k);
    };
    const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
    SUBCASE("sum over the middle axis of a fused tree") {
        using E = std::remove_cvref_t<decltype(sum<1>(tanh(Y) * Y))>;
        auto got = test::run_all<program<T, E>>(2)[0];
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t i = 0; i < 3; ++i)
                for (std::size_t k = 0; k < 37; ++k) {
                    double s = 0;
                    for (std::size_t j = 0; j < 5; ++j) s += std::tanh(yv(b, i, j, k)) * yv(b, i, j, k);
                    CHECK(double(got[(b * 3 + i) * 37 + k]) == doctest::Approx(s).epsilon(tol));
                }
    }
    SUBCASE("max over the two leading axes") {
        using E = std::remove_cvref_t<decltype(max<0, 1>(Y))>;
        auto got = test::run_all<program<T, E>>(2)[0];
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t k = 0; k < 37; ++k) {
                double s = -1e300;
                for (std::size_t i = 0; i < 3; ++i)
                    for (std::size_t j = 0; j < 5; ++j) s = std::max(s, yv(b, i, j, k));
                CHECK(double(got[b * 37 + k]) == doctest::Approx(s).epsilon(tol));
            }
        test::check_ad<E>(2);
    }
}
