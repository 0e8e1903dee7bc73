// DCN (spec layers-core-and-cross.md section 8): forward against a naive scalar-loop
// reference written from the spec (vector, matrix, mixed with documented gating and the
// source's monolith_compat form, with and without kernel norm, rank 1 / 2 / 3 inputs),
// finite-difference gradients and JVP/VJP duality, the G gradient in both mixed forms, the
// frozen biases under kernel norm, dropout (mode, seed, mask statistics, scale, gradient
// through the mask), the original tests' configurations, variable names / shapes / init
// order, initializers and penalties.
#include "dcn_support.hpp"

#include <algorithm>
#include <string>

#include "ctrec/layers/dcn.hpp"
#include "ctrec/layers/initialize.hpp"
#include "ctrec/train/train_program.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
using namespace dcn_support;

using getter = std::function<double(std::string_view, std::size_t)>;

// Naive reference (spec 8.6), all in double.
struct ref_config {
    dcn_type type = dcn_type::matrix;
    std::size_t L = 1, E = 1, r = 0;
    bool kn = false, compat = false;
    bool dropout = false;
    double keep = 1.0;
    std::uint64_t seed = 0;
};
std::string ij(const char* p, std::size_t i, std::size_t j) { return p + std::to_string(i) + "_" + std::to_string(j); }
// effective (a x c) variable `name`: raw, or t_j * P_ij / sqrt(max(sum_i P_ij^2, 1e-6))
std::vector<double> eff(const getter& g, const std::string& name, std::size_t a, std::size_t c, bool kn) {
    std::vector<double> v(a * c);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = g(name, i);
    if (!kn) return v;
    for (std::size_t j = 0; j < c; ++j) {
        double s = 0;
        for (std::size_t i = 0; i < a; ++i) s += v[i * c + j] * v[i * c + j];
        const double n = std::sqrt(std::max(s, 1e-6)), t = g(name + "/trainable_norm", j);
        for (std::size_t i = 0; i < a; ++i) v[i * c + j] = v[i * c + j] / n * t;
    }
    return v;
}
std::uint64_t fnv1a(std::string_view s) {
    std::uint64_t h = 1469598103934665603ull;
    for (char ch : s) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
    return h;
}
// x: batch examples of `rows` rows of D values (flat); parameters from g under "dcn/".
std::vector<double> reference(const getter& g, const std::vector<double>& x, std::size_t batch, std::size_t rows,
                              std::size_t d, const ref_config& c) {
    std::vector<double> out(x.size());
    auto P = [&](const std::string& leaf, std::size_t a, std::size_t cols) { return eff(g, "dcn/" + leaf, a, cols, c.kn); };
    for (std::size_t e = 0; e < batch; ++e)
        for (std::size_t n = 0; n < rows; ++n) {
            const double* x0 = &x[(e * rows + n) * d];
            std::vector<double> xl(x0, x0 + d), next(d);
            for (std::size_t i = 0; i < c.L; ++i) {
                const auto b = P("bias_" + std::to_string(i), 1, d);
                if (c.type == dcn_type::vector) {
                    const auto w = P("kernel_" + std::to_string(i), d, 1);
                    double s = 0;
                    for (std::size_t k = 0; k < d; ++k) s += xl[k] * w[k];
                    for (std::size_t k = 0; k < d; ++k) next[k] = x0[k] * s + b[k] + xl[k];
                } else if (c.type == dcn_type::matrix) {
                    const auto w = P("kernel_" + std::to_string(i), d, d);
                    for (std::size_t k = 0; k < d; ++k) {
                        double s = b[k];
                        for (std::size_t m = 0; m < d; ++m) s += xl[m] * w[m * d + k];
                        next[k] = x0[k] * s + xl[k];
                    }
                } else {
                    std::vector<std::vector<double>> outs(c.E, std::vector<double>(d));
                    std::vector<double> gate(c.E);
                    for (std::size_t j = 0; j < c.E; ++j) {
                        const auto U = P(ij("U_", i, j), d, c.r), V = P(ij("V_", i, j), d, c.r);
                        const auto C = P(ij("C_", i, j), c.r, c.r), G = P(ij("G_", i, j), d, 1);
                        std::vector<double> v(c.r), cc(c.r);
                        for (std::size_t a = 0; a < c.r; ++a) {
                            double s = 0;
                            for (std::size_t k = 0; k < d; ++k) s += xl[k] * V[k * c.r + a];
                            v[a] = std::tanh(s);
                        }
                        for (std::size_t a = 0; a < c.r; ++a) {
                            double s = 0;
                            for (std::size_t q = 0; q < c.r; ++q) s += v[q] * C[q * c.r + a];
                            cc[a] = std::tanh(s);
                        }
                        for (std::size_t k = 0; k < d; ++k) {
                            double u = 0;
                            for (std::size_t a = 0; a < c.r; ++a) u += cc[a] * U[k * c.r + a];
                            outs[j][k] = x0[k] * (u + b[k]);
                        }
                        gate[j] = 0;
                        for (std::size_t k = 0; k < d; ++k) gate[j] += xl[k] * G[k];
                    }
                    // compat: softmax over a size-1 axis = 1; default: softmax over the experts
                    std::vector<double> w(c.E, 1.0);
                    if (!c.compat) {
                        const double mx = *std::max_element(gate.begin(), gate.end());
                        double z = 0;
                        for (std::size_t j = 0; j < c.E; ++j) z += std::exp(gate[j] - mx);
                        for (std::size_t j = 0; j < c.E; ++j) w[j] = std::exp(gate[j] - mx) / z;
                    }
                    for (std::size_t k = 0; k < d; ++k) {
                        next[k] = xl[k];
                        for (std::size_t j = 0; j < c.E; ++j) next[k] += w[j] * outs[j][k];
                    }
                }
                if (c.dropout) {
                    const std::uint64_t stream = fnv1a("dcn/dropout_" + std::to_string(i));
                    for (std::size_t k = 0; k < d; ++k) {
                        const double u = random_uniform_value<double>(c.seed, stream, e, n * d + k);
                        next[k] = u >= 1.0 - c.keep ? next[k] / c.keep : 0.0;
                    }
                }
                xl = next;
            }
            std::copy(xl.begin(), xl.end(), out.begin() + static_cast<std::ptrdiff_t>((e * rows + n) * d));
        }
    return out;
}
// (mixed with kernel norm: one layer in the derivative programs, whose compile cost grows
// steeply with depth; the two-layer form is checked forward and in the original config)
constexpr dcn_config mix_kn{.type = dcn_type::mixed, .layer_num = 1, .num_experts = 2, .low_rank = R, .allow_kernel_norm = true};
} // namespace

TEST_CASE("dcn forward against the naive reference: vector, matrix, mixed (gated, compat), kernel norm, f64 and f32") {
    const auto xs = leaf_values("x", B * N * D);
    SUBCASE("vector") {
        using E = out_t<decltype(dcn<"dcn", dcn_config{.type = dcn_type::vector, .layer_num = 2}>(x2))>;
        test::check_forward<E>(B, reference(leaf_value, xs, B, N, D, {.type = dcn_type::vector, .L = 2}));
    }
    SUBCASE("vector, kernel norm") {
        using E = out_t<decltype(dcn<"dcn", vec_kn>(x2))>;
        test::check_forward<E>(B, reference(leaf_value, xs, B, N, D, {.type = dcn_type::vector, .L = 2, .kn = true}));
    }
    SUBCASE("matrix") {
        using E = out_t<decltype(dcn<"dcn", mat>(x2))>;
        test::check_forward<E>(B, reference(leaf_value, xs, B, N, D, {.L = 2}));
    }
    SUBCASE("matrix, kernel norm") {
        using E = out_t<decltype(dcn<"dcn", mat_kn>(x2))>;
        test::check_forward<E>(B, reference(leaf_value, xs, B, N, D, {.L = 2, .kn = true}));
    }
    SUBCASE("mixed, documented softmax gating over the experts") {
        using E = out_t<decltype(dcn<"dcn", mix>(x2))>;
        test::check_forward<E>(B, reference(leaf_value, xs, B, N, D, {.type = dcn_type::mixed, .L = 2, .E = 2, .r = R}));
    }
    SUBCASE("mixed, kernel norm") {
        using E = out_t<decltype(dcn<"dcn", mix_kn>(x2))>;
        test::check_forward<E>(B, reference(leaf_value, xs, B, N, D, {.type = dcn_type::mixed, .L = 1, .E = 2, .r = R, .kn = true}));
    }
    SUBCASE("mixed, monolith_compat: the unweighted expert sum") {
        using E = out_t<decltype(dcn<"dcn", mix_compat>(x2))>;
        test::check_forward<E>(B, reference(leaf_value, xs, B, N, D, {.type = dcn_type::mixed, .L = 2, .E = 2, .r = R, .compat = true}));
        // and that is not the gated output
        auto gated = reference(leaf_value, xs, B, N, D, {.type = dcn_type::mixed, .L = 2, .E = 2, .r = R});
        auto got = test::run<double, E>(B);
        double diff = 0;
        for (std::size_t i = 0; i < got.size(); ++i) diff = std::max(diff, std::abs(got[i] - gated[i]));
        CHECK(diff > 1e-3);
    }
    SUBCASE("rank-1 input (D): one row per example") {
        using E = out_t<decltype(dcn<"dcn", dcn_config{.type = dcn_type::matrix, .layer_num = 3}>(input<"x", D>))>;
        static_assert(E::shape == make_dims<D>());
        test::check_forward<E>(B, reference(leaf_value, leaf_values("x", B * D), B, 1, D, {.L = 3}));
        using M = out_t<decltype(dcn<"dcn", mix>(input<"x", D>))>;
        test::check_forward<M>(B, reference(leaf_value, leaf_values("x", B * D), B, 1, D, {.type = dcn_type::mixed, .L = 2, .E = 2, .r = R}));
    }
    SUBCASE("rank-3 input (2, N, D): every row, shape kept") {
        using E = out_t<decltype(dcn<"dcn", dcn_config{.type = dcn_type::vector, .layer_num = 2}>(input<"x", 2, N, D>))>;
        static_assert(E::shape == make_dims<2, N, D>());
        test::check_forward<E>(B, reference(leaf_value, leaf_values("x", B * 2 * N * D), B, 2 * N, D, {.type = dcn_type::vector, .L = 2}));
    }
    SUBCASE("three experts, one layer") {
        constexpr dcn_config c{.type = dcn_type::mixed, .num_experts = 3, .low_rank = 2};
        using E = out_t<decltype(dcn<"dcn", c>(x2))>;
        test::check_forward<E>(B, reference(leaf_value, xs, B, N, D, {.type = dcn_type::mixed, .L = 1, .E = 3, .r = 2}));
    }
}

TEST_CASE("dcn matrix mode: one GEMM per cross layer over all rows, x0 * (acc + b) + x in its epilogue") {
    using M = program<float, out_t<decltype(dcn<"dcn", dcn_config{.type = dcn_type::matrix, .layer_num = 3}>(x2))>>;
    const std::string d = M::describe();
    INFO(d);
    CHECK(M::plan_type::steps == 3);
    std::size_t epilogues = 0;
    for (std::size_t at = d.find("contract-epilogue"); at != std::string::npos; at = d.find("contract-epilogue", at + 1)) ++epilogues;
    CHECK(epilogues == 3);
}

TEST_CASE("dcn dropout: train mode only, seeded masks, keep fraction, 1/keep_prob scale") {
    constexpr dcn_config drop1{.type = dcn_type::matrix, .layer_num = 1, .use_dropout = true, .keep_prob = 0.8};
    SUBCASE("eval and predict are the model without dropout (the same expression)") {
        using Ev = out_t<decltype(dcn<"dcn", drop1, mode::eval>(x2))>;
        using Pr = out_t<decltype(dcn<"dcn", drop1, mode::predict>(x2))>;
        using Off = out_t<decltype(dcn<"dcn", dcn_config{.type = dcn_type::matrix, .layer_num = 1}, mode::train>(x2))>;
        static_assert(std::is_same_v<Ev, Off> && std::is_same_v<Pr, Off>);
        using Tr = out_t<decltype(dcn<"dcn", drop1>(x2))>;  // the default mode is train
        static_assert(!std::is_same_v<Tr, Off>);
        test::check_forward<Ev>(B, reference(leaf_value, leaf_values("x", B * N * D), B, N, D, {.L = 1}));
    }
    SUBCASE("kept fraction ~ keep_prob, kept values scaled by 1/keep_prob, seed determines the mask") {
        using Tr = program<float, out_t<decltype(dcn<"dcn", drop1, mode::train>(x2))>>;
        using Ev = program<float, out_t<decltype(dcn<"dcn", drop1, mode::eval>(x2))>>;
        constexpr std::size_t batch = 256;
        std::vector<float> xs(batch * N * D);
        for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(leaf_value("x", i));
        Tr::parameters tp;
        Ev::parameters ep;
        fill_leaf_values<Tr>(tp), fill_leaf_values<Ev>(ep);
        const auto plain = run_with<Ev>(ep, xs, batch, 0);
        const auto a = run_with<Tr>(tp, xs, batch, 42), a2 = run_with<Tr>(tp, xs, batch, 42), b = run_with<Tr>(tp, xs, batch, 43);
        CHECK(a == a2);
        std::size_t kept = 0, differ = 0;
        for (std::size_t i = 0; i < a.size(); ++i) {
            REQUIRE(plain[i] != 0.0f);
            if (a[i] != 0.0f) {
                ++kept;
                CHECK(a[i] == doctest::Approx(plain[i] / 0.8f).epsilon(1e-6));
            }
            differ += (a[i] == 0.0f) != (b[i] == 0.0f);
        }
        const double frac = double(kept) / double(a.size());
        CHECK(frac == doctest::Approx(0.8).epsilon(0.02));  // n = 3840: sd 0.0065
        CHECK(differ > a.size() / 10);                        // another seed, another mask
    }
    SUBCASE("two layers against the reference with the spec's mask; the mask of a layer is its own stream") {
        constexpr dcn_config c{.type = dcn_type::vector, .layer_num = 2, .use_dropout = true, .keep_prob = 0.5};
        using E = out_t<decltype(dcn<"dcn", c>(x2))>;
        const auto xs = leaf_values("x", B * N * D);
        using M = program<double, E>;
        M::parameters p;
        fill_leaf_values<M>(p);
        const auto got = run_with<M>(p, xs, B, 7);
        const auto want = reference(leaf_value, xs, B, N, D, {.type = dcn_type::vector, .L = 2, .dropout = true, .keep = 0.5, .seed = 7});
        test::check_close(got, want, 1e-12);
        std::size_t zeros = 0;
        for (double v : got) zeros += v == 0.0;
        CHECK(zeros > 0);
        CHECK(zeros < got.size());
    }
}

TEST_CASE("dcn: the original tests' configurations, (128, 10, 10) ones, kernel norm, dropout 0.5, layer_num 2") {
    const std::vector<double> ones(128 * 10 * 10, 1.0);
    const auto one = std::vector<float>(ones.begin(), ones.end());
    auto check = [&](auto r, ref_config rc) {
        using M = program<float, out_t<decltype(r)>>;
        static_assert(M::template output_size<0> == 100);
        typename M::parameters p;
        initialize<typename decltype(r)::inits>(p, 2021);
        const auto y = run_with<M>(p, one, 128, 9);
        CHECK(y.size() == 128 * 100);
        getter g = [&](std::string_view n, std::size_t i) { return double(p.get(p.index_of(n))[i]); };
        rc.kn = true, rc.dropout = true, rc.keep = 0.5, rc.seed = 9, rc.L = 2;
        const auto want = reference(g, ones, 128, 10, 10, rc);
        std::vector<float> got(y.begin(), y.end());
        test::check_close(got, want, 2e-5);
    };
    constexpr auto x = input<"x", 10, 10>;
    check(dcn<"dcn", dcn_config{.type = dcn_type::vector, .layer_num = 2, .allow_kernel_norm = true, .use_dropout = true, .keep_prob = 0.5}>(x),
          {.type = dcn_type::vector});
    check(dcn<"dcn", dcn_config{.type = dcn_type::matrix, .layer_num = 2, .allow_kernel_norm = true, .use_dropout = true, .keep_prob = 0.5}>(x),
          {.type = dcn_type::matrix});
    check(dcn<"dcn", dcn_config{.type = dcn_type::mixed, .layer_num = 2, .num_experts = 2, .low_rank = 5, .allow_kernel_norm = true,
                                .use_dropout = true, .keep_prob = 0.5}>(x),
          {.type = dcn_type::mixed, .E = 2, .r = 5});
}

TEST_CASE("dcn variables: names, shapes and creation order (inits), trainable_norm shapes") {
    auto names = [](auto r) {
        std::vector<std::string> n;
        std::vector<dims> s;
        [&]<class... I>(tlist<I...>) { ((n.emplace_back(I::name.view()), s.push_back(I::shape)), ...); }(typename decltype(r)::inits{});
        return std::pair{n, s};
    };
    {
        auto [n, s] = names(dcn<"m/dcn", dcn_config{.layer_num = 2}>(x2));  // matrix is the default type
        CHECK(n == std::vector<std::string>{"m/dcn/kernel_0", "m/dcn/kernel_1", "m/dcn/bias_0", "m/dcn/bias_1"});
        CHECK(s == std::vector<dims>{make_dims<D, D>(), make_dims<D, D>(), make_dims<1, D>(), make_dims<1, D>()});
    }
    {
        auto [n, s] = names(dcn<"dcn", vec_kn>(x2));
        CHECK(n == std::vector<std::string>{"dcn/kernel_0", "dcn/kernel_0/trainable_norm", "dcn/kernel_1", "dcn/kernel_1/trainable_norm",
                                            "dcn/bias_0", "dcn/bias_0/trainable_norm", "dcn/bias_1", "dcn/bias_1/trainable_norm"});
        CHECK(s == std::vector<dims>{make_dims<D, 1>(), make_dims<1>(), make_dims<D, 1>(), make_dims<1>(), make_dims<1, D>(),
                                     make_dims<D>(), make_dims<1, D>(), make_dims<D>()});
        auto [nm, sm] = names(dcn<"dcn", mat_kn>(x2));
        CHECK(sm[1] == make_dims<D>());
    }
    {
        auto [n, s] = names(dcn<"dcn", mix>(x2));
        CHECK(n == std::vector<std::string>{"dcn/U_0_0", "dcn/U_0_1", "dcn/U_1_0", "dcn/U_1_1", "dcn/V_0_0", "dcn/V_0_1", "dcn/V_1_0",
                                            "dcn/V_1_1", "dcn/C_0_0", "dcn/C_0_1", "dcn/C_1_0", "dcn/C_1_1", "dcn/G_0_0", "dcn/G_0_1",
                                            "dcn/G_1_0", "dcn/G_1_1", "dcn/bias_0", "dcn/bias_1"});
        CHECK(s[0] == make_dims<D, R>());
        CHECK(s[4] == make_dims<D, R>());
        CHECK(s[8] == make_dims<R, R>());
        CHECK(s[12] == make_dims<D, 1>());
        CHECK(s[16] == make_dims<1, D>());
        auto [nk, sk] = names(dcn<"dcn", mix_kn>(x2));
        REQUIRE(nk.size() == 18);  // one layer, two experts, each with its norm
        CHECK(nk == std::vector<std::string>{"dcn/U_0_0", "dcn/U_0_0/trainable_norm", "dcn/U_0_1", "dcn/U_0_1/trainable_norm",
                                             "dcn/V_0_0", "dcn/V_0_0/trainable_norm", "dcn/V_0_1", "dcn/V_0_1/trainable_norm",
                                             "dcn/C_0_0", "dcn/C_0_0/trainable_norm", "dcn/C_0_1", "dcn/C_0_1/trainable_norm",
                                             "dcn/G_0_0", "dcn/G_0_0/trainable_norm", "dcn/G_0_1", "dcn/G_0_1/trainable_norm",
                                             "dcn/bias_0", "dcn/bias_0/trainable_norm"});
        CHECK(sk[1] == make_dims<R>());   // U (r,)
        CHECK(sk[9] == make_dims<R>());   // C (r,)
        CHECK(sk[13] == make_dims<1>());  // G (1,)
        CHECK(sk[17] == make_dims<D>());  // bias (D,)
    }
    // the program's parameter shapes agree with the declared ones
    using M = program<float, out_t<decltype(dcn<"dcn", mix_kn>(x2))>>;
    CHECK(M::parameters::count == 18);
    CHECK(M::parameters::shapes[M::parameters::position("dcn/C_0_1/trainable_norm")] == make_dims<R>());
    CHECK(M::parameters::shapes[M::parameters::position("dcn/bias_0")] == make_dims<1, D>());
    // dcn_type strings: exactly the source's, anything else rejected
    static_assert(dcn_type_from("vector") == dcn_type::vector && dcn_type_from("matrix") == dcn_type::matrix &&
                  dcn_type_from("mixed") == dcn_type::mixed);
    CHECK_THROWS_AS(dcn_type_from("Matrix"), ctrec::error);
}

TEST_CASE("dcn initial values: GlorotNormal kernels, zero biases, trainable_norm = column norms of the initial value") {
    constexpr std::size_t W = 64;
    constexpr auto r = dcn<"dcn", dcn_config{.type = dcn_type::matrix, .layer_num = 2, .allow_kernel_norm = true}>(input<"x", W>);
    // (forward program only: the initial values do not depend on the program)
    using M = program<double, out_t<decltype(r)>>;
    M::parameters p;
    initialize<decltype(r)::inits>(p, 3);
    auto k = p.get<"dcn/kernel_1">();
    double s = 0, mx = 0;
    for (double v : k) s += v * v, mx = std::max(mx, std::abs(v));
    const double sigma = std::sqrt(2.0 / (W + W));  // realised std of the truncated normal
    CHECK(std::sqrt(s / double(k.size())) == doctest::Approx(sigma).epsilon(0.05));
    CHECK(mx <= 2 * sigma / 0.87962566103423978);
    auto t = p.get<"dcn/kernel_1/trainable_norm">();
    for (std::size_t j = 0; j < W; ++j) {
        double c = 0;
        for (std::size_t i = 0; i < W; ++i) c += k[i * W + j] * k[i * W + j];
        CHECK(t[j] == doctest::Approx(std::sqrt(c)).epsilon(1e-14));
    }
    for (double v : p.get<"dcn/bias_0">()) CHECK(v == 0.0);
    for (double v : p.get<"dcn/bias_0/trainable_norm">()) CHECK(v == 0.0);
    // the kernels differ (independent streams per variable)
    CHECK(p.get<"dcn/kernel_0">()[0] != p.get<"dcn/kernel_1">()[0]);
    // a custom initializer reaches every kernel
    constexpr auto u = dcn<"dcn", dcn_config{.type = dcn_type::mixed, .initializer = init::Ones{}, .low_rank = 2}>(input<"x", 4>);
    using MU = program<double, out_t<decltype(u)>>;
    MU::parameters pu;
    initialize<decltype(u)::inits>(pu, 3);
    for (const char* n : {"dcn/U_0_0", "dcn/V_0_0", "dcn/C_0_0", "dcn/G_0_0"})
        for (double v : pu.get(pu.index_of(n))) CHECK(v == 1.0);
    for (double v : pu.get<"dcn/bias_0">()) CHECK(v == 0.0);
}

TEST_CASE("dcn penalties: the regularizer on every raw kernel / U / V / C / G, never biases or norms") {
    constexpr dcn_config c{.type = dcn_type::mixed, .layer_num = 2, .regularizer = regularizer{0.01, 0.02}, .num_experts = 2,
                           .low_rank = R, .allow_kernel_norm = true};
    constexpr auto r = dcn<"dcn", c>(x2);
    using Pen = std::remove_cvref_t<decltype(r.penalty)>;
    const auto got = test::run<double, Pen>(1);
    double want = 0;
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 2; ++j)
            for (auto [p, n] : {std::pair{"U_", D * R}, std::pair{"V_", D * R}, std::pair{"C_", R * R}, std::pair{"G_", D}})
                for (std::size_t e = 0; e < n; ++e) {
                    const double v = leaf_value("dcn/" + ij(p, i, j), e);
                    want += 0.01 * std::abs(v) + 0.02 * v * v;
                }
    CHECK(got[0] == doctest::Approx(want).epsilon(1e-12));
    const auto pn = names_of<program<float, Pen>::parameters>();
    CHECK(pn.size() == 16);
    for (auto n : pn) {
        CHECK(n.find("bias") == std::string_view::npos);
        CHECK(n.find("trainable_norm") == std::string_view::npos);
    }
    // no regularizer: a symbolic zero
    static_assert(is_zero_v<std::remove_cvref_t<decltype(dcn<"dcn", mat>(x2).penalty)>>);
}
