// iRazor (spec layers-trans-seq-multitask-nas.md 1.3): against a naive reference that builds
// P = softmax(nas_weight / t), the rigid masks R, M = P . R and Y = X * M literally; the
// spec's reference value; the auxiliary loss; derivatives (outputs and nas_loss, every
// parameter and input); nas_space with leading zero columns and with an empty group;
// out_type; the original test (ones (100, 10, 10)); variables, initializer, penalty; M is a
// derived parameter (per-example work is one step).
#include "support.hpp"

#include <cmath>

#include "ctrec/layers/initialize.hpp"
#include "ctrec/layers/irazor.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
constexpr std::size_t N = 3, K = 10, B = 4;
constexpr auto x = input<"x", N, K>;
constexpr irazor_config cfg{.nas_space = {0, 2, 5, 7, 10}, .t = 0.08};

// The spec's formulas, every intermediate built: P (N, L), R (L, K), M (N, K).
struct reference {
    std::vector<std::size_t> ns;
    double t;
    std::size_t n, k;
    test::value_fn f;
    std::vector<double> P, R, M;
    reference(std::vector<std::size_t> ns_, double t_, std::size_t n_, std::size_t k_, test::value_fn f_ = leaf_value,
              const char* w = "r/nas_weight")
        : ns(std::move(ns_)), t(t_), n(n_), k(k_), f(std::move(f_)) {
        const std::size_t L = ns.size();
        P.assign(n * L, 0);
        for (std::size_t a = 0; a < n; ++a) {
            double mx = -1e300, s = 0;
            for (std::size_t i = 0; i < L; ++i) mx = std::max(mx, f(w, a * L + i) / t);
            for (std::size_t i = 0; i < L; ++i) s += P[a * L + i] = std::exp(f(w, a * L + i) / t - mx);
            for (std::size_t i = 0; i < L; ++i) P[a * L + i] /= s;
        }
        R.assign(L * k, 0);  // row 0 zeros; row i ones on [ns[i-1], ns[i])
        for (std::size_t i = 1; i < L; ++i)
            for (std::size_t c = ns[i - 1]; c < ns[i]; ++c) R[i * k + c] = 1;
        M.assign(n * k, 0);
        for (std::size_t a = 0; a < n; ++a)
            for (std::size_t c = 0; c < k; ++c)
                for (std::size_t i = 0; i < L; ++i) M[a * k + c] += P[a * L + i] * R[i * k + c];
    }
    std::vector<double> y(std::size_t batch) const {
        std::vector<double> out;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t a = 0; a < n; ++a)
                for (std::size_t c = 0; c < k; ++c) out.push_back(f("x", (b * n + a) * k + c) * M[a * k + c]);
        return out;
    }
    double nas_loss(const char* fw = "fw") const {
        double s = 0;
        for (std::size_t a = 0; a < n; ++a)
            for (std::size_t c = 0; c < k; ++c) s += f(fw, a) * M[a * k + c];
        return s;
    }
};
template <class R>
using out_t = std::remove_cvref_t<decltype(R::out)>;
} // namespace

TEST_CASE("irazor: Y = X * (softmax(w / t) . R) and nas_loss, float64 and float32; derivatives") {
    constexpr auto fw = param<"fw", N>;
    constexpr auto r = irazor<"r", cfg>(x, fw);
    using Y = out_t<decltype(r)>;
    using Loss = std::remove_cvref_t<decltype(r.nas_loss)>;
    static_assert(Y::shape == make_dims<N * K>());  // concat (default)
    static_assert(Loss::shape.size() == 1 && !Loss::batched);
    const reference ref({0, 2, 5, 7, 10}, 0.08, N, K);
    test::check_forward<Y>(B, ref.y(B));
    auto outs = test::run_all<program<double, Y, Loss>>(B);
    CHECK(outs[1][0] == doctest::Approx(ref.nas_loss()).epsilon(1e-12));
    auto outs32 = test::run_all<program<float, Y, Loss>>(B);
    CHECK(outs32[1][0] == doctest::Approx(ref.nas_loss()).epsilon(1e-5));
    // sharp softmax (t = 0.08) kept in range for finite differences: logits in [-0.1, 0.1]
    auto small = [](std::string_view name, double v) { return name == "r/nas_weight" ? 0.1 * v : v; };
    test::check_ad<Y>(3, small);
    test::check_ad<Loss>(3, small);  // into nas_weight and into the feature weights
    // without feature weights the loss is a symbolic zero
    constexpr auto r0 = irazor<"r", cfg>(x);
    static_assert(is_zero_v<std::remove_cvref_t<decltype(r0.nas_loss)>>);
    static_assert(std::is_same_v<out_t<decltype(r0)>, Y>);
}

TEST_CASE("irazor: the spec's reference value (nas_space {0, 1, 3}, t = 1, logits [0, 0, ln 2])") {
    constexpr auto x1 = input<"x", 1, 3>;
    constexpr auto fw = param<"fw", 1, 1>;  // Monolith's [1, N] form
    constexpr auto r = irazor<"r", {.nas_space = {0, 1, 3}, .t = 1.0}>(x1, fw);
    auto f = [](std::string_view name, std::size_t i) -> double {
        if (name == "r/nas_weight") return i == 2 ? std::log(2.0) : 0.0;
        if (name == "fw") return 2.0;
        return 1.0;  // x = ones: Y = M
    };
    auto outs = test::run_all<program<double, out_t<decltype(r)>, std::remove_cvref_t<decltype(r.nas_loss)>>>(2, f);
    const double want[] = {0.25, 0.5, 0.5, 0.25, 0.5, 0.5};
    for (std::size_t i = 0; i < 6; ++i) CHECK(outs[0][i] == doctest::Approx(want[i]).epsilon(1e-14));
    CHECK(outs[1][0] == doctest::Approx(2.5).epsilon(1e-14));
}

TEST_CASE("irazor: nas_space[0] > 0 zeroes the leading columns; a repeated boundary is an empty group") {
    SUBCASE("{3, 5, 6, 10}: columns 0..2 get weight 0") {
        constexpr auto r = irazor<"r", {.nas_space = {3, 5, 6, 10}, .t = 0.7, .leading_zero_columns = true}>(x);
        using Y = out_t<decltype(r)>;
        const reference ref({3, 5, 6, 10}, 0.7, N, K);
        auto want = ref.y(B);
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t a = 0; a < N; ++a)
                for (std::size_t c = 0; c < 3; ++c) REQUIRE(want[(b * N + a) * K + c] == 0.0);
        test::check_forward<Y>(B, want);
        test::check_ad<Y>(2);
    }
    SUBCASE("K = 40 > 16 columns (M is a concatenation of concatenations)") {
        constexpr auto xw = input<"x", 2, 40>;
        constexpr auto r = irazor<"r", {.nas_space = {0, 3, 21, 40}, .t = 0.3}>(xw);
        const reference ref({0, 3, 21, 40}, 0.3, 2, 40);
        test::check_forward<out_t<decltype(r)>>(3, ref.y(3));
    }
    SUBCASE("{0, 4, 4, 10}: group 2 is empty, its probability weights nothing") {
        constexpr auto r = irazor<"r", {.nas_space = {0, 4, 4, 10}, .t = 0.5}>(x);
        using Y = out_t<decltype(r)>;
        const reference ref({0, 4, 4, 10}, 0.5, N, K);
        test::check_forward<Y>(B, ref.y(B));
        // P[n, 0] + P[n, 2] is the mass no column sees: the row sums of M say so
        for (std::size_t a = 0; a < N; ++a) {
            double rowsum = 0;
            for (std::size_t c = 0; c < K; ++c) rowsum += ref.M[a * K + c];
            CHECK(rowsum == doctest::Approx(4 * ref.P[a * 4 + 1] + 6 * ref.P[a * 4 + 3]));
        }
    }
}

TEST_CASE("irazor: out_type stack and none, keep_list") {
    const reference ref({0, 2, 5, 7, 10}, 0.08, N, K);
    const auto want = ref.y(B);
    SUBCASE("stack: (N, K)") {
        constexpr auto r = irazor<"r", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08, .out_type = merge_type::stack}>(x);
        using Y = out_t<decltype(r)>;
        static_assert(Y::shape == make_dims<N, K>());
        test::check_close(test::run<double, Y>(B), want, 1e-12);
    }
    SUBCASE("none: N tensors (K); keep_list ignored") {
        constexpr auto r =
            irazor<"r", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08, .out_type = merge_type::none, .keep_list = true}>(x);
        static_assert(std::tuple_size_v<std::remove_cvref_t<decltype(r.out)>> == N);
        using Y1 = std::remove_cvref_t<decltype(std::get<1>(r.out))>;
        static_assert(Y1::shape == make_dims<K>());
        auto got = test::run<double, Y1>(B);
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t c = 0; c < K; ++c) CHECK(got[b * K + c] == doctest::Approx(want[(b * N + 1) * K + c]));
    }
    SUBCASE("concat with keep_list: a one-element list") {
        constexpr auto r = irazor<"r", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08, .keep_list = true}>(x);
        static_assert(std::tuple_size_v<std::remove_cvref_t<decltype(r.out)>> == 1);
    }
}

TEST_CASE("irazor: the original test (nas_space {0, 2, 5, 7, 10}, t = 0.08, ones (100, 10, 10)); initializer") {
    constexpr auto xo = input<"x", 10, 10>;
    constexpr auto r = irazor<"i_razor", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08}>(xo);
    using Y = out_t<decltype(r)>;
    static_assert(Y::shape == make_dims<100>());  // (100, 100) for a batch of 100
    using P = program<float, Y>;
    CHECK(P::n_params == 1);
    CHECK(std::string_view(P::parameters::names[0]) == "i_razor/nas_weight");
    static_assert(P::parameters::shapes[0] == make_dims<10, 5>());
    typename P::parameters p;
    initialize<decltype(r)::inits>(p, 7);
    auto w = p.get<"i_razor/nas_weight">();
    const double lim = std::sqrt(6.0 / (10 + 5));  // GlorotUniform on (N, L)
    double mx = 0;
    for (float v : w) mx = std::max(mx, double(std::abs(v)));
    CHECK(mx <= lim);
    CHECK(mx > 0.5 * lim);
    std::vector<float> ones(100 * 100, 1.0f), out(100 * 100);
    typename P::workspace ws;
    typename P::io io;
    io.input<"x">(ones.data()).output<0>(out.data());
    P::run(p, ws, 100, io);
    auto wv = [&](std::string_view, std::size_t i) { return double(w[i]); };
    const reference ref({0, 2, 5, 7, 10}, 0.08, 10, 10, wv);
    double sum = 0, want_sum = 0;
    for (std::size_t b = 0; b < 100; ++b)
        for (std::size_t i = 0; i < 100; ++i) {
            CHECK(out[b * 100 + i] == doctest::Approx(ref.M[i]).epsilon(1e-5));
            sum += out[b * 100 + i];
            want_sum += ref.M[i];
        }
    CHECK(sum == doctest::Approx(want_sum).epsilon(1e-5));
    // every field keeps at most all K columns: 0 < sum_k M[n, k] < K
    for (std::size_t n = 0; n < 10; ++n) {
        double s = 0;
        for (std::size_t k = 0; k < 10; ++k) s += ref.M[n * 10 + k];
        CHECK(s > 0);
        CHECK(s < 10);
    }
}

TEST_CASE("irazor: initializer and regularizer options; M is computed with the parameters") {
    constexpr auto r = irazor<"r", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08, .initializer = init::Constant{0.25},
                                    .regularizer = regularizer{0.5, 0.25}}>(x);
    using Y = out_t<decltype(r)>;
    using Pen = std::remove_cvref_t<decltype(r.penalty)>;
    using P = program<double, Y, Pen>;
    auto outs = test::run_all<P>(2);
    double want = 0;
    for (std::size_t i = 0; i < N * 5; ++i) {
        const double v = leaf_value("r/nas_weight", i);
        want += 0.5 * std::abs(v) + 0.25 * v * v;
    }
    CHECK(outs[1][0] == doctest::Approx(want).epsilon(1e-12));
    typename P::parameters p;
    initialize<decltype(r)::inits>(p, 1);
    for (double v : p.get<"r/nas_weight">()) CHECK(v == 0.25);
    // the mask M reads only nas_weight: derived parameters, so each example costs one
    // elementwise step (X * M)
    using F = program<float, Y>;
    std::size_t derived = 0, batched_steps = 0;
    for (std::size_t i = 0; i < std::size(F::plan_type::data.rec); ++i) {
        derived += F::plan_type::data.derived[i];
        // (the output's reshape is a root copy, not work)
        batched_steps += F::plan_type::data.step[i] && F::plan_type::data.rec[i].batched &&
                         F::plan_type::data.rec[i].k != kind::reshape;
    }
    CHECK(derived > 0);
    CHECK(batched_steps == 1);
}
