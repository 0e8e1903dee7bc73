// Reductions, softmax / log-softmax / l2-normalize, and data movement (concat, stack, slice,
// reshape, stop_gradient, batch sums, batch statistics), ported from
// the type core's test_structure.cpp: values against naive loops (float64 and float32, CPU and
// reference backends), derivatives against central differences, JVP/VJP duality.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ref_core.hpp"

namespace f = ctrec;
using ctrec::make_dims;
using flat_core::check_ad;
using flat_core::check_close;
using flat_core::check_forward;
using test::leaf_value;

namespace {
constexpr std::size_t B = 3;
constexpr auto X = f::input<"X", 2, 3, 4>;
double xv(std::size_t b, std::size_t i, std::size_t j, std::size_t k) { return leaf_value("X", b * 24 + i * 12 + j * 4 + k); }

template <const auto& E, bool AD = true, class F>
void over_xyz(F fn, std::size_t d0, std::size_t d1, std::size_t d2) {
    std::vector<double> want;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t i = 0; i < d0; ++i)
            for (std::size_t j = 0; j < d1; ++j)
                for (std::size_t k = 0; k < d2; ++k) want.push_back(fn(b, i, j, k));
    REQUIRE(E.shape().size() == d0 * d1 * d2);
    check_forward<E>(B, want);
    if constexpr (AD) check_ad<E>(B);
}

// log_softmax as a flat model writes it: shifted by the (stop_gradient) max
constexpr f::expr log_softmax(const f::expr& x, std::size_t axis) {
    const ctrec::dims kd = ctrec::keepdims(x.shape(), 1u << axis);
    const f::expr z = x - f::reshape(f::stop_gradient(f::max(x, {axis})), kd);
    return z - f::reshape(f::log(f::sum(f::exp(z), {axis})), kd);
}

constexpr auto sum_last = f::sum(X, {2});
constexpr auto sum_02 = f::sum(X, {0, 2});
constexpr auto sum_all_mean1 = f::sum(X) + f::sum(X, {1}) / f::lit<3.0>;  // scalar + (2, 4): mean over axis 1
constexpr auto max_last = f::max(X, {2});
constexpr auto max_first = f::max(X, {0});
constexpr auto fused_reduce = f::sum(f::exp(X) * X, {2});
constexpr auto soft2 = f::softmax(X, 2);
constexpr auto logsoft2 = log_softmax(X, 2);
constexpr auto soft1 = f::softmax(X, 1);
constexpr auto l2n = f::l2_normalize(X, 2);
constexpr auto z3 = f::input<"z", 3>;
constexpr auto soft_z = f::softmax(z3, 0);
} // namespace

TEST_CASE("sum, mean and max over chosen axes") {
    SUBCASE("sum over the last axis") {
        over_xyz<sum_last>([](auto b, auto i, auto j, auto) { double s = 0; for (std::size_t k = 0; k < 4; ++k) s += xv(b, i, j, k); return s; }, 2, 3, 1);
    }
    SUBCASE("sum over axes 0 and 2") {
        over_xyz<sum_02>([](auto b, auto, auto j, auto) { double s = 0; for (std::size_t i = 0; i < 2; ++i) for (std::size_t k = 0; k < 4; ++k) s += xv(b, i, j, k); return s; }, 1, 3, 1);
    }
    SUBCASE("sum of everything and mean over the middle axis") {
        over_xyz<sum_all_mean1>([](auto b, auto i, auto, auto k) {
            double all = 0, m = 0;
            for (std::size_t a = 0; a < 2; ++a) for (std::size_t c = 0; c < 3; ++c) for (std::size_t d = 0; d < 4; ++d) all += xv(b, a, c, d);
            for (std::size_t c = 0; c < 3; ++c) m += xv(b, i, c, k) / 3;
            return all + m;
        }, 2, 1, 4);
    }
    SUBCASE("max over the last and over the first axis") {
        // with derivatives (no ties in these values; ties: the next test case)
        over_xyz<max_last>([](auto b, auto i, auto j, auto) { double s = -1e300; for (std::size_t k = 0; k < 4; ++k) s = std::max(s, xv(b, i, j, k)); return s; }, 2, 3, 1);
        over_xyz<max_first>([](auto b, auto, auto j, auto k) { return std::max(xv(b, 0, j, k), xv(b, 1, j, k)); }, 1, 3, 4);
    }
    SUBCASE("a fused elementwise tree feeding a reduction") {
        over_xyz<fused_reduce>([](auto b, auto i, auto j, auto) { double s = 0; for (std::size_t k = 0; k < 4; ++k) s += std::exp(xv(b, i, j, k)) * xv(b, i, j, k); return s; }, 2, 3, 1);
        CHECK(f::program<float, fused_reduce>::pl.steps == 1);
    }
}

namespace {
constexpr auto x4 = f::input<"x", 4>;
constexpr auto max4 = f::max(x4, {0});
} // namespace

TEST_CASE("max: the derivative is split equally among ties (TF's reduce_max gradient), VJP and JVP") {
    // per example: one maximum, two tied, all four tied; then the tangents 1, 10, 100, 1000
    const std::vector<double> xs = {1, 5, 2, 3, 1, 3, 3, 2, 7, 7, 7, 7};
    const std::vector<double> want_dx = {0, 1, 0, 0, 0, 0.5, 0.5, 0, 0.25, 0.25, 0.25, 0.25};
    test::leaves L;
    L["x"] = xs;
    L["cotangent"] = {1, 1, 1};
    const auto g = test::run<f::grad_program<double, max4>>(L, 3);
    check_close(g[0], {5, 3, 7}, 0.0);
    check_close(g[1], want_dx, 0.0);
    test::leaves T;
    T["x"] = xs;
    T["d.x"] = {1, 10, 100, 1000, 1, 10, 100, 1000, 1, 10, 100, 1000};
    const auto j = test::run<f::jvp_program<double, max4>>(T, 3);
    check_close(j[0], {5, 3, 7}, 0.0);
    check_close(j[1], {10, 55, 277.75}, 0.0);  // 10; (10 + 100) / 2; (1 + 10 + 100 + 1000) / 4
}

TEST_CASE("softmax, log_softmax and l2_normalize along an axis") {
    auto soft = [](auto b, auto i, auto j, auto k, bool logv) {
        double m = -1e300, s = 0;
        for (std::size_t c = 0; c < 4; ++c) m = std::max(m, xv(b, i, j, c));
        for (std::size_t c = 0; c < 4; ++c) s += std::exp(xv(b, i, j, c) - m);
        return logv ? xv(b, i, j, k) - m - std::log(s) : std::exp(xv(b, i, j, k) - m) / s;
    };
    SUBCASE("softmax") {
        over_xyz<soft2>([&](auto b, auto i, auto j, auto k) { return soft(b, i, j, k, false); }, 2, 3, 4);
    }
    SUBCASE("log_softmax") {
        over_xyz<logsoft2>([&](auto b, auto i, auto j, auto k) { return soft(b, i, j, k, true); }, 2, 3, 4);
    }
    SUBCASE("softmax over a middle axis") {
        over_xyz<soft1>([](auto b, auto i, auto j, auto k) {
            double m = -1e300, s = 0;
            for (std::size_t c = 0; c < 3; ++c) m = std::max(m, xv(b, i, c, k));
            for (std::size_t c = 0; c < 3; ++c) s += std::exp(xv(b, i, c, k) - m);
            return std::exp(xv(b, i, j, k) - m) / s;
        }, 2, 3, 4);
    }
    SUBCASE("l2_normalize") {
        over_xyz<l2n>([](auto b, auto i, auto j, auto k) {
            double s = 0;
            for (std::size_t c = 0; c < 4; ++c) s += xv(b, i, j, c) * xv(b, i, j, c);
            return xv(b, i, j, k) / std::sqrt(std::max(s, 1e-12));
        }, 2, 3, 4);
    }
    SUBCASE("softmax is stable for large logits") {
        auto big = [](std::string_view, std::size_t i) { return 1000.0 + static_cast<double>(i); };
        const double e0 = 1 / (1 + std::exp(1.0) + std::exp(2.0));
        const std::vector<double> want{e0, e0 * std::exp(1.0), e0 * std::exp(2.0)};
        check_close(flat_core::run<f::program<float, soft_z>>(1, big), want, 1e-6);
        check_close(flat_core::run<f::program<float, soft_z>::with_backend<f::reference_backend>>(1, big), want, 1e-6);
    }
}

namespace {
constexpr auto P = f::input<"P", 2, 3>;
constexpr auto Q = f::param<"Q", 1, 3>;
constexpr auto R = f::input<"R", 2, 2>;
double pv(std::size_t b, std::size_t i, std::size_t j) { return leaf_value("P", b * 6 + i * 3 + j); }
constexpr auto cat0 = f::concat<0>(P, Q);
constexpr auto cat1 = f::concat<1>(P, R, P);
// stack<1>(P, P * P): the core has no stack node; a new axis is a reshape, then a concat
constexpr auto stacked = f::concat<1>(f::reshape<2, 1, 3>(P), f::reshape<2, 1, 3>(P * P));
constexpr auto sliced = f::slice(X, 1, 1, 3);
constexpr auto reshaped = f::reshape<4, 6>(X) * f::lit<2.0>;
} // namespace

TEST_CASE("concat, stack, slice and reshape") {
    SUBCASE("concat along axis 0 with an unbatched operand") {
        over_xyz<cat0>([&](auto b, auto, auto i, auto j) { return i < 2 ? pv(b, i, j) : leaf_value("Q", j); }, 1, 3, 3);
    }
    SUBCASE("concat along axis 1") {
        over_xyz<cat1>([&](auto b, auto, auto i, auto j) {
            return j < 3 ? pv(b, i, j) : j < 5 ? leaf_value("R", b * 4 + i * 2 + (j - 3)) : pv(b, i, j - 5);
        }, 1, 2, 8);
    }
    SUBCASE("stack") {
        over_xyz<stacked>([&](auto b, auto i, auto s, auto j) { return s == 0 ? pv(b, i, j) : pv(b, i, j) * pv(b, i, j); }, 2, 2, 3);
    }
    SUBCASE("slice") {
        over_xyz<sliced>([](auto b, auto i, auto j, auto k) { return xv(b, i, j + 1, k); }, 2, 2, 4);
    }
    SUBCASE("reshape") {
        over_xyz<reshaped>([](auto b, auto, auto r, auto c) { std::size_t fl = r * 6 + c; return 2 * xv(b, fl / 12, fl / 4 % 3, fl % 4); }, 1, 4, 6);
    }
}

namespace {
constexpr auto v5 = f::input<"v", 5>;
constexpr auto stopped = v5 * f::stop_gradient(v5 * v5);
constexpr auto v3 = f::input<"v", 3>;
constexpr auto bsum = f::batch_sum(v3 * v3);
constexpr auto bm = f::batch_mean(v5);
constexpr auto bvar = f::batch_mean((v5 - bm) * (v5 - bm));
constexpr auto bnorm = (v5 - bm) * f::rsqrt(bvar + f::lit<1e-3>);
} // namespace

TEST_CASE("stop_gradient passes the value and blocks the derivative") {
    using G = f::grad_program<double, stopped>;
    auto check = [](auto tag) {
        using P = typename decltype(tag)::type;
        typename P::parameters p;
        typename P::workspace ws;
        std::vector<double> x{1, 2, 3, -1, 0.5}, ct(5, 1.0), y(5), dx(5);
        typename P::io io;
        io.template input<"v">(x.data()).template input<"cotangent">(ct.data()).template output<0>(y.data());
        io.template output<P::template grad<"v">>(dx.data());
        P::run(p, ws, 1, io);
        for (std::size_t i = 0; i < 5; ++i) {
            CHECK(y[i] == doctest::Approx(x[i] * x[i] * x[i]));
            CHECK(dx[i] == doctest::Approx(x[i] * x[i]));  // not 3 x^2
        }
    };
    check(std::type_identity<G>{});
    check(std::type_identity<G::with_backend<f::reference_backend>>{});
}

TEST_CASE("batch_sum reduces over the batch into an unbatched output") {
    for (std::size_t batch : {1, 5, 200}) {
        std::vector<double> want(3, 0.0);
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t i = 0; i < 3; ++i) want[i] += leaf_value("v", b * 3 + i) * leaf_value("v", b * 3 + i);
        check_close(flat_core::run<f::program<double, bsum>>(batch), want, 1e-12);
        check_close(flat_core::run<f::program<double, bsum>::with_backend<f::reference_backend>>(batch), want, 1e-12);
    }
}

TEST_CASE("batch statistics: values that depend on sums over the batch take extra passes") {
    CHECK(f::program<double, bnorm>::pl.passes == 3);
    for (std::size_t batch : {1, 4, 150}) {
        std::vector<double> mean(5, 0.0), vr(5, 0.0), want;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t i = 0; i < 5; ++i) mean[i] += leaf_value("v", b * 5 + i) / batch;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t i = 0; i < 5; ++i) vr[i] += std::pow(leaf_value("v", b * 5 + i) - mean[i], 2) / batch;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t i = 0; i < 5; ++i) want.push_back((leaf_value("v", b * 5 + i) - mean[i]) / std::sqrt(vr[i] + 1e-3));
        check_forward<bnorm>(batch, want);
    }
    // the gradient flows through the batch statistics (more passes, same machinery)
    check_ad<bnorm>(6);
}

namespace {
constexpr auto Y = f::input<"y", 3, 5, 37>;  // 37: SIMD runs and scalar tails in every row
constexpr auto sum_mid = f::sum(f::tanh(Y) * Y, {1});
constexpr auto max_lead = f::max(Y, {0, 1});
double yv(std::size_t b, std::size_t i, std::size_t j, std::size_t k) { return leaf_value("y", ((b * 3 + i) * 5 + j) * 37 + k); }
} // namespace

TEST_CASE_TEMPLATE("reductions over a leading or middle block of axes run whole rows in SIMD", T, float, double) {
    const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
    SUBCASE("sum over the middle axis of a fused tree") {
        const auto got = flat_core::run<f::program<T, sum_mid>>(2);
        REQUIRE(got.size() == 2 * 3 * 37);
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t i = 0; i < 3; ++i)
                for (std::size_t k = 0; k < 37; ++k) {
                    double s = 0;
                    for (std::size_t j = 0; j < 5; ++j) s += std::tanh(yv(b, i, j, k)) * yv(b, i, j, k);
                    CHECK(got[(b * 3 + i) * 37 + k] == doctest::Approx(s).epsilon(tol));
                }
    }
    SUBCASE("max over the two leading axes") {
        const auto got = flat_core::run<f::program<T, max_lead>>(2);
        REQUIRE(got.size() == 2 * 37);
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t k = 0; k < 37; ++k) {
                double s = -1e300;
                for (std::size_t i = 0; i < 3; ++i)
                    for (std::size_t j = 0; j < 5; ++j) s = std::max(s, yv(b, i, j, k));
                CHECK(got[b * 37 + k] == doctest::Approx(s).epsilon(tol));
            }
    }
}
