// CIN (spec layers-core-and-cross.md section 9): against a naive reference that builds the
// outer-product tensor Z explicitly; derivatives of the input and every kernel and bias;
// the activation rule (none on the last layer); the hidden_units alias; the original
// test's shapes; variable names, initializers, penalties; plan inspection at W2's sizes:
// Z (and dZ) are absent from the forward and training plans.
#include "support.hpp"

#include <functional>

#include "ctrec/layers/cin.hpp"
#include "ctrec/layers/initialize.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
using weight_fn = std::function<double(const std::string&, std::size_t)>;
double leaf_weight(const std::string& n, std::size_t i) { return leaf_value(n, i); }

// Naive CIN for one batch: builds Z[d, h * N + m] and every intermediate.
std::vector<double> reference(std::size_t batch, std::size_t N, std::size_t K, const std::vector<std::size_t>& H,
                              double (*act)(double), const std::function<double(std::size_t)>& xin,
                              const weight_fn& w = leaf_weight) {
    std::vector<double> out;
    for (std::size_t b = 0; b < batch; ++b) {
        std::vector<std::vector<double>> X0(K, std::vector<double>(N));
        for (std::size_t d = 0; d < K; ++d)
            for (std::size_t m = 0; m < N; ++m) X0[d][m] = xin((b * N + m) * K + d);
        auto Xh = X0;
        for (std::size_t t = 0; t < H.size(); ++t) {
            const std::string conv = t == 0 ? "c/conv1d" : "c/conv1d_" + std::to_string(t);
            const std::size_t Hp = Xh[0].size();
            std::vector<std::vector<double>> Z(K, std::vector<double>(Hp * N));
            for (std::size_t d = 0; d < K; ++d)
                for (std::size_t h = 0; h < Hp; ++h)
                    for (std::size_t m = 0; m < N; ++m) Z[d][h * N + m] = Xh[d][h] * X0[d][m];
            std::vector<std::vector<double>> Y(K, std::vector<double>(H[t]));
            for (std::size_t d = 0; d < K; ++d)
                for (std::size_t j = 0; j < H[t]; ++j) {
                    double s = w(conv + "/bias", j);
                    for (std::size_t i = 0; i < Hp * N; ++i) s += Z[d][i] * w(conv + "/kernel", i * H[t] + j);
                    Y[d][j] = t + 1 < H.size() ? act(s) : s;
                }
            for (std::size_t j = 0; j < H[t]; ++j) {
                double p = 0;
                for (std::size_t d = 0; d < K; ++d) p += Y[d][j];
                out.push_back(p);
            }
            Xh = Y;
        }
    }
    return out;
}
double identity(double z) { return z; }
double tanh_(double z) { return std::tanh(z); }
double relu(double z) { return z > 0 ? z : 0; }
std::function<double(std::size_t)> x_leaf = [](std::size_t i) { return leaf_value("x", i); };

template <class T>
void check_close(const std::vector<T>& got, const std::vector<double>& want, double tol) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(double(got[i]) == doctest::Approx(want[i]).epsilon(tol));
}
template <class D>
std::size_t largest_batched(const D& data) {
    std::size_t n = 0;
    for (const auto& r : data.rec)
        if (r.batched && r.shape.size() > n) n = r.shape.size();
    return n;
}
} // namespace

TEST_CASE("cin: two layers with tanh, float64 and float32, against the explicit outer products; derivatives") {
    constexpr std::size_t N = 4, K = 5, B = 3;
    constexpr auto x = input<"x", N, K>;
    constexpr cin_config<2> cfg{.hidden_uints = {3, 2}, .activation = act_tanh};
    constexpr auto r = cin<"c", cfg>(x);
    using E = std::remove_cvref_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<5>());
    const auto want = reference(B, N, K, {3, 2}, tanh_, x_leaf);
    check_close(test::run_all<program<double, E>>(B)[0], want, 1e-12);
    check_close(test::run_all<program<float, E>>(B)[0], want, 1e-4);
    test::check_ad<E>(3);
}

TEST_CASE("cin: identity by default, the hidden_units alias, three layers with relu") {
    constexpr std::size_t N = 3, K = 4, B = 2;
    constexpr auto x = input<"x", N, K>;
    SUBCASE("one layer, hidden_units, identity") {
        constexpr auto r = cin<"c", cin_config<1>{.hidden_units = {6}}>(x);
        using E = std::remove_cvref_t<decltype(r.out)>;
        check_close(test::run_all<program<double, E>>(B)[0], reference(B, N, K, {6}, identity, x_leaf), 1e-12);
        test::check_ad<E>(2);
    }
    SUBCASE("three layers, relu on the first two only") {
        constexpr auto r = cin<"c", cin_config<3>{.hidden_uints = {4, 3, 2}, .activation = act_relu}>(x);
        using E = std::remove_cvref_t<decltype(r.out)>;
        static_assert(E::shape == make_dims<9>());
        check_close(test::run_all<program<double, E>>(B)[0], reference(B, N, K, {4, 3, 2}, relu, x_leaf), 1e-12);
        test::check_ad<E>(2);
    }
}

TEST_CASE("cin: the original test ([10, 5], relu, ones (128, 10, 10) -> (128, 15)), variables and initializers") {
    constexpr auto x = input<"x", 10, 10>;
    constexpr auto r = cin<"c", cin_config<2>{.hidden_uints = {10, 5}, .activation = act_relu}>(x);
    using E = std::remove_cvref_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<15>());
    using P = program<float, E>;
    using names = typename P::param_leaves;
    static_assert(tl_at_t<0, names>::name == fixed_string("c/conv1d/kernel"));
    static_assert(tl_at_t<0, names>::shape == make_dims<1, 100, 10>());
    static_assert(tl_at_t<1, names>::name == fixed_string("c/conv1d/bias"));
    static_assert(tl_at_t<2, names>::name == fixed_string("c/conv1d_1/kernel"));
    static_assert(tl_at_t<2, names>::shape == make_dims<1, 100, 5>());
    static_assert(tl_at_t<3, names>::shape == make_dims<5>());
    typename P::parameters p;
    initialize<decltype(r)::inits>(p, 3);
    // glorot_uniform with Conv1D fans: limit sqrt(6 / (100 + 10)) for the first kernel
    const double lim = std::sqrt(6.0 / 110.0);
    double mx = 0;
    for (float v : p.get<"c/conv1d/kernel">()) mx = std::max(mx, double(std::abs(v)));
    CHECK(mx <= lim);
    CHECK(mx > 0.8 * lim);
    for (float v : p.get<"c/conv1d/bias">()) CHECK(v == 0.0f);
    std::vector<float> ones(128 * 100, 1.0f), out(128 * 15);
    typename P::workspace ws;
    typename P::io io;
    io.input<"x">(ones.data()).output<0>(out.data());
    P::run(p, ws, 128, io);
    auto from_params = [&](const std::string& n, std::size_t i) -> double {
        if (n == "c/conv1d/kernel") return p.get<"c/conv1d/kernel">()[i];
        if (n == "c/conv1d/bias") return p.get<"c/conv1d/bias">()[i];
        if (n == "c/conv1d_1/kernel") return p.get<"c/conv1d_1/kernel">()[i];
        return p.get<"c/conv1d_1/bias">()[i];
    };
    const auto want = reference(128, 10, 10, {10, 5}, relu, [](std::size_t) { return 1.0; }, from_params);
    check_close(out, want, 1e-4);
}

TEST_CASE("cin: regularizer penalty on the kernels only") {
    constexpr auto x = input<"x", 3, 4>;
    constexpr auto r = cin<"c", cin_config<2>{.hidden_uints = {2, 2}, .regularizer = regularizer{0.25, 0.0}}>(x);
    using P = program<double, std::remove_cvref_t<decltype(r.out)>, std::remove_cvref_t<decltype(r.penalty)>>;
    auto outs = test::run_all<P>(1);
    double want = 0;
    for (std::size_t i = 0; i < 9 * 2; ++i) want += 0.25 * std::abs(leaf_value("c/conv1d/kernel", i));
    for (std::size_t i = 0; i < 6 * 2; ++i) want += 0.25 * std::abs(leaf_value("c/conv1d_1/kernel", i));
    CHECK(outs[1][0] == doctest::Approx(want));
}

TEST_CASE("cin: at W2's sizes the outer-product tensor is absent from the forward and training plans") {
    constexpr std::size_t N = 39, K = 16;
    constexpr auto x = input<"x", N, K>;
    constexpr auto r = cin<"c", cin_config<2>{.hidden_uints = {128, 128}}>(x);
    using E = std::remove_cvref_t<decltype(r.out)>;
    constexpr std::size_t Z = K * 128 * N;  // 79,872 values per example
    using F = program<float, E>;
    using G = grad_program<float, E>;
    CHECK(largest_batched(F::plan_type::data) < Z);
    CHECK(largest_batched(G::plan_type::data) < Z);
    CHECK(F::plan_type::data.tile_elems < Z);  // the whole per-example workspace is below Z
    CHECK(G::plan_type::data.tile_elems < Z);
    MESSAGE("forward: " << F::plan_type::data.tile_elems << " workspace values per example; gradient: "
                        << G::plan_type::data.tile_elems << "; Z would be " << Z);
    // and it still computes CIN (batch of 2, against the explicit reference)
    check_close(test::run_all<program<double, E>>(2)[0], reference(2, N, K, {128, 128}, identity, x_leaf), 1e-10);
}
