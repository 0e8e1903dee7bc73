// AllInt (spec layers-core-and-cross.md section 5): against the source's evaluation order
// written naively (F = X^T Cm + beta, O = X F) and against the Gram-matrix form (X X^T) Cm
// + (X 1) beta^T; derivatives; every out_type; the all-ones relation; plan inspection: the
// N x N matrix is absent from the forward and the gradient plans.
#include "support.hpp"

#include "ctrec/layers/allint.hpp"
#include "ctrec/layers/initialize.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
constexpr std::size_t N = 6, K = 5, Cd = 3, B = 4;
constexpr auto x = input<"x", N, K>;

// source order: F[k, c] = sum_n X[n, k] Cm[n, c] + beta[c]; O[n, c] = sum_k X[n, k] F[k, c]
std::vector<double> reference_source(std::size_t batch, bool bias, std::size_t n_ = N, std::size_t k_ = K,
                                     std::size_t c_ = Cd) {
    std::vector<double> out;
    for (std::size_t b = 0; b < batch; ++b) {
        std::vector<double> F(k_ * c_, 0.0);
        for (std::size_t k = 0; k < k_; ++k)
            for (std::size_t c = 0; c < c_; ++c) {
                for (std::size_t n = 0; n < n_; ++n) F[k * c_ + c] += leaf_value("x", (b * n_ + n) * k_ + k) * leaf_value("a/allint_kernel", n * c_ + c);
                if (bias) F[k * c_ + c] += leaf_value("a/allint_bias", c);
            }
        for (std::size_t n = 0; n < n_; ++n)
            for (std::size_t c = 0; c < c_; ++c) {
                double s = 0;
                for (std::size_t k = 0; k < k_; ++k) s += leaf_value("x", (b * n_ + n) * k_ + k) * F[k * c_ + c];
                out.push_back(s);
            }
    }
    return out;
}
// the documented form: O = (X X^T) Cm (+ (X 1) beta^T), the Gram matrix built explicitly
std::vector<double> reference_gram(std::size_t batch, bool bias) {
    std::vector<double> out;
    for (std::size_t b = 0; b < batch; ++b) {
        auto X = [&](std::size_t n, std::size_t k) { return leaf_value("x", (b * N + n) * K + k); };
        double G[N][N];
        for (std::size_t m = 0; m < N; ++m)
            for (std::size_t n = 0; n < N; ++n) {
                G[m][n] = 0;
                for (std::size_t k = 0; k < K; ++k) G[m][n] += X(m, k) * X(n, k);
            }
        for (std::size_t m = 0; m < N; ++m)
            for (std::size_t c = 0; c < Cd; ++c) {
                double s = 0, rowsum = 0;
                for (std::size_t n = 0; n < N; ++n) s += G[m][n] * leaf_value("a/allint_kernel", n * Cd + c);
                for (std::size_t k = 0; k < K; ++k) rowsum += X(m, k);
                out.push_back(s + (bias ? rowsum * leaf_value("a/allint_bias", c) : 0.0));
            }
    }
    return out;
}
template <class T>
void check_close(const std::vector<T>& got, const std::vector<double>& want, double tol) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(double(got[i]) == doctest::Approx(want[i]).epsilon(tol));
}
} // namespace

TEST_CASE("allint: O = X (X^T Cm + beta) in float64 and float32, with and without bias; derivatives") {
    SUBCASE("bias (default)") {
        constexpr auto r = allint<"a", {.cmp_dim = Cd}>(x);
        using E = std::remove_cvref_t<decltype(r.out)>;
        static_assert(E::shape == make_dims<N * Cd>());  // concat
        check_close(test::run_all<program<double, E>>(B)[0], reference_source(B, true), 1e-12);
        check_close(test::run_all<program<double, E>>(B)[0], reference_gram(B, true), 1e-12);
        check_close(test::run_all<program<float, E>>(B)[0], reference_source(B, true), 1e-4);
        test::check_ad<E>(3);
    }
    SUBCASE("no bias") {
        constexpr auto r = allint<"a", {.cmp_dim = Cd, .use_bias = false}>(x);
        using E = std::remove_cvref_t<decltype(r.out)>;
        check_close(test::run_all<program<double, E>>(B)[0], reference_source(B, false), 1e-12);
        test::check_ad<E>(2);
        using P = program<double, E>;
        CHECK(P::n_params == 1);
    }
}

TEST_CASE("allint: out_type stack, none and keep_list") {
    const auto want = reference_source(B, true);
    SUBCASE("stack: (N, C)") {
        constexpr auto r = allint<"a", {.cmp_dim = Cd, .out_type = merge_type::stack}>(x);
        using E = std::remove_cvref_t<decltype(r.out)>;
        static_assert(E::shape == make_dims<N, Cd>());
        check_close(test::run_all<program<double, E>>(B)[0], want, 1e-12);
    }
    SUBCASE("none: a list of N tensors (B, C), row n = O[:, n, :]; keep_list ignored") {
        constexpr auto r = allint<"a", {.cmp_dim = Cd, .out_type = merge_type::none, .keep_list = true}>(x);
        static_assert(std::tuple_size_v<std::remove_cvref_t<decltype(r.out)>> == N);
        using E2 = std::remove_cvref_t<decltype(std::get<2>(r.out))>;
        static_assert(E2::shape == make_dims<Cd>());
        auto got = test::run_all<program<double, E2>>(B)[0];
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t c = 0; c < Cd; ++c) CHECK(got[b * Cd + c] == doctest::Approx(want[(b * N + 2) * Cd + c]));
    }
    SUBCASE("keep_list with concat: a one-element list") {
        constexpr auto r = allint<"a", {.cmp_dim = Cd, .keep_list = true}>(x);
        static_assert(std::tuple_size_v<std::remove_cvref_t<decltype(r.out)>> == 1);
        using E = std::remove_cvref_t<decltype(std::get<0>(r.out))>;
        check_close(test::run_all<program<double, E>>(B)[0], want, 1e-12);
    }
}

TEST_CASE("allint: the original test's shapes and the all-ones relation O[n, c] = K sum_m Cm[m, c]") {
    constexpr auto xo = input<"x", 10, 10>;
    constexpr auto r = allint<"a", {.cmp_dim = 4}>(xo);
    using E = std::remove_cvref_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<40>());  // (100, 40) for a batch of 100
    using P = program<float, E>;
    typename P::parameters p;
    initialize<decltype(r)::inits>(p, 5);  // GlorotNormal kernel, zero bias
    for (float b : p.get<"a/allint_bias">()) CHECK(b == 0.0f);
    std::vector<float> ones(100 * 100, 1.0f), out(100 * 40);
    typename P::workspace ws;
    typename P::io io;
    io.input<"x">(ones.data()).output<0>(out.data());
    P::run(p, ws, 100, io);
    auto k = p.get<"a/allint_kernel">();
    for (std::size_t b = 0; b < 100; ++b)
        for (std::size_t n = 0; n < 10; ++n)
            for (std::size_t c = 0; c < 4; ++c) {
                double s = 0;
                for (std::size_t m = 0; m < 10; ++m) s += k[m * 4 + c];
                CHECK(out[(b * 10 + n) * 4 + c] == doctest::Approx(10.0 * s).epsilon(1e-5));
            }
}

TEST_CASE("allint: variables, initializers and the regularizer penalty") {
    constexpr auto r = allint<"a", {.cmp_dim = Cd, .regularizer = regularizer{0.0, 0.5}}>(x);
    using P = program<double, std::remove_cvref_t<decltype(r.out)>, std::remove_cvref_t<decltype(r.penalty)>>;
    CHECK(std::string_view(P::parameters::names[0]) == "a/allint_kernel");
    CHECK(std::string_view(P::parameters::names[1]) == "a/allint_bias");
    auto outs = test::run_all<P>(2);
    double want = 0;
    for (std::size_t i = 0; i < N * Cd; ++i) want += 0.5 * leaf_value("a/allint_kernel", i) * leaf_value("a/allint_kernel", i);
    CHECK(outs[1][0] == doctest::Approx(want));
}

TEST_CASE("allint: the N x N matrix is absent from the forward and gradient plans (W-sized shapes)") {
    constexpr std::size_t Nf = 39, Kf = 16, Cf = 8;
    constexpr auto xw = input<"x", Nf, Kf>;
    constexpr auto r = allint<"a", {.cmp_dim = Cf}>(xw);
    using E = std::remove_cvref_t<decltype(r.out)>;
    auto has_nn = [](const auto& data) {
        for (const auto& rec : data.rec)
            if (rec.shape.size() >= Nf * Nf) return true;
        return false;
    };
    using F = program<float, E>;
    using G = grad_program<float, E>;
    CHECK_FALSE(has_nn(F::plan_type::data));
    CHECK_FALSE(has_nn(G::plan_type::data));
    CHECK(F::plan_type::data.tile_elems < Nf * Nf);  // workspace per example below the avoided matrix
    // and the values still match the source order at these sizes
    check_close(test::run_all<program<double, E>>(2)[0], reference_source(2, true, Nf, Kf, Cf), 1e-12);
}
