// SeNet (spec layers-trans-seq-multitask-nas.md 1.2): forward against a naive reference that
// builds the means, both weight-normalised tower layers and the weights; cmp_dim = None (raw
// means, the spec's reference value); the list path (different widths, equal widths = the
// tensor path, one element, std::tuple input); every out_type / keep_list row; derivatives;
// variable names and shapes; initializers (the original test's GlorotNormal / HeUniform on
// ones (100, 10, 10)); regularizer penalties and their aliases.
#include "support.hpp"

#include <tuple>

#include "ctrec/layers/initialize.hpp"
#include "ctrec/layers/senet.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
constexpr std::size_t N = 4, K = 3, C = 2, B = 3;
constexpr auto x = input<"x", N, K>;

using vec = std::vector<double>;
vec values(std::string_view name, std::size_t n, test::value_fn f = leaf_value) {
    vec v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = f(name, i);
    return v;
}
// Weight-normalised kernel (spec 0.6.1): W_eff[:, j] = g_j W[:, j] / sqrt(max(sum_i W[i, j]^2, 1e-6))
vec effective(const vec& w, const vec& g, std::size_t rows, std::size_t cols) {
    vec e(w.size());
    for (std::size_t j = 0; j < cols; ++j) {
        double s = 0;
        for (std::size_t i = 0; i < rows; ++i) s += w[i * cols + j] * w[i * cols + j];
        for (std::size_t i = 0; i < rows; ++i) e[i * cols + j] = g[j] * w[i * cols + j] / std::sqrt(std::max(s, 1e-6));
    }
    return e;
}
// The tower's values, read through f (leaf values, or initialised parameters).
struct tower {
    std::size_t n, c;
    vec w1, b1, w2, b2;  // effective kernels
    tower(std::size_t n_, std::size_t c_, test::value_fn f = leaf_value) : n(n_), c(c_) {
        w1 = effective(values("s/cmp_tower/dense_0/kernel", n * c, f), values("s/cmp_tower/dense_0/trainable_kernel_norm", c, f), n, c);
        b1 = values("s/cmp_tower/dense_0/bias", c, f);
        w2 = effective(values("s/cmp_tower/dense_1/kernel", c * n, f), values("s/cmp_tower/dense_1/trainable_kernel_norm", n, f), c, n);
        b2 = values("s/cmp_tower/dense_1/bias", n, f);
    }
    // a = sigmoid(relu(z W1 + b1) W2 + b2)
    vec operator()(const vec& z) const {
        vec h(c), a(n);
        for (std::size_t j = 0; j < c; ++j) {
            double s = b1[j];
            for (std::size_t i = 0; i < n; ++i) s += z[i] * w1[i * c + j];
            h[j] = std::max(s, 0.0);
        }
        for (std::size_t j = 0; j < n; ++j) {
            double s = b2[j];
            for (std::size_t i = 0; i < c; ++i) s += h[i] * w2[i * n + j];
            a[j] = 1.0 / (1.0 + std::exp(-s));
        }
        return a;
    }
};
// Per example: z_n = mean of row n (row n has widths[n] values), a = tower(z) (or z without
// a tower), y_n = a_n row_n. Rows are read from row(b, n, k). Output: the rows of y, in order.
template <class Row>
vec reference(std::size_t batch, const std::vector<std::size_t>& widths, const tower* t, Row row) {
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        vec z(widths.size(), 0.0);
        for (std::size_t n = 0; n < widths.size(); ++n) {
            for (std::size_t k = 0; k < widths[n]; ++k) z[n] += row(b, n, k);
            z[n] /= static_cast<double>(widths[n]);
        }
        const vec a = t ? (*t)(z) : z;
        for (std::size_t n = 0; n < widths.size(); ++n)
            for (std::size_t k = 0; k < widths[n]; ++k) out.push_back(a[n] * row(b, n, k));
    }
    return out;
}
// the tensor input x: row n of example b
double x_at(std::size_t b, std::size_t n, std::size_t k) { return leaf_value("x", (b * N + n) * K + k); }
vec reference_x(std::size_t batch, const tower* t) { return reference(batch, std::vector<std::size_t>(N, K), t, x_at); }

template <class T, class Tuple>
using program_of = typename decltype(std::apply(
    [](auto... e) { return std::type_identity<program<T, decltype(e)...>>{}; }, Tuple{}))::type;
template <class P>
std::vector<std::string_view> names_of() { return {P::names.begin(), P::names.end()}; }

constexpr senet_config base{.num_feature = N, .cmp_dim = C};
constexpr auto main_r = senet<"s", base>(x);
using E = std::remove_cvref_t<decltype(main_r.out)>;
} // namespace

TEST_CASE("senet: defaults; Y = sigmoid(relu(z W1 + b1) W2 + b2) * X with weight norm, float64 and float32; derivatives") {
    constexpr senet_config d{};
    static_assert(d.cmp_dim == 0 && !d.on_gpu && d.out_type == merge_type::concat && !d.keep_list);
    static_assert(!d.regularizer.active() && !d.kernel_regularizer.active() && !d.bias_regularizer.active());
    static_assert(E::shape == make_dims<N * K>());
    const tower t(N, C);
    const auto want = reference_x(B, &t);
    test::check_forward<E>(B, want);
    // the weights are really in (0, 1) and not all equal (the tower is not degenerate)
    vec z(N);
    for (std::size_t n = 0; n < N; ++n) z[n] = (x_at(0, n, 0) + x_at(0, n, 1) + x_at(0, n, 2)) / 3;
    auto a = t(z);
    CHECK(*std::min_element(a.begin(), a.end()) > 0.0);
    CHECK(*std::max_element(a.begin(), a.end()) < 1.0);
    CHECK(*std::max_element(a.begin(), a.end()) - *std::min_element(a.begin(), a.end()) > 1e-3);
    test::check_ad<E>(B);  // x and all six tower variables
    // on_gpu selects nothing: the same expression
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(senet<"s", {.num_feature = N, .cmp_dim = C, .on_gpu = true}>(x).out)>, E>);
}

TEST_CASE("senet: variable names and shapes (cmp_tower, weight norm on)") {
    using P = program<double, E>::parameters;
    CHECK(names_of<P>() == std::vector<std::string_view>{
                               "s/cmp_tower/dense_0/kernel", "s/cmp_tower/dense_0/trainable_kernel_norm", "s/cmp_tower/dense_0/bias",
                               "s/cmp_tower/dense_1/kernel", "s/cmp_tower/dense_1/trainable_kernel_norm", "s/cmp_tower/dense_1/bias"});
    static_assert(P::shapes[0] == make_dims<N, C>() && P::shapes[1] == make_dims<C>() && P::shapes[2] == make_dims<C>());
    static_assert(P::shapes[3] == make_dims<C, N>() && P::shapes[4] == make_dims<N>() && P::shapes[5] == make_dims<N>());
    // initializers declared for all six: two kernels, two column norms, two biases
    static_assert(decltype(main_r)::inits::size == 6);
}

TEST_CASE("senet: cmp_dim None: the raw means, no sigmoid, no variables") {
    SUBCASE("the spec's reference value: X = [[1, 3], [2, 2]] -> a = [2, 2], Y = [[2, 6], [4, 4]]") {
        constexpr auto r = senet<"s", {.num_feature = 2, .out_type = merge_type::stack}>(input<"x", 2, 2>);
        using S = std::remove_cvref_t<decltype(r.out)>;
        static_assert(S::shape == make_dims<2, 2>());
        auto f = [](std::string_view, std::size_t i) { return std::array{1.0, 3.0, 2.0, 2.0}[i % 4]; };
        test::check_forward<S>(2, {2, 6, 4, 4, 2, 6, 4, 4}, f);
    }
    SUBCASE("random values, derivatives (the weights depend on the input: two paths into dL/dX)") {
        constexpr auto r = senet<"s", {.num_feature = N}>(x);
        using Z = std::remove_cvref_t<decltype(r.out)>;
        static_assert(std::is_same_v<decltype(r)::inits, tlist<>>);
        static_assert(is_zero_v<std::remove_cvref_t<decltype(r.penalty)>>);
        CHECK(program<double, Z>::n_params == 0);
        test::check_forward<Z>(B, reference_x(B, nullptr));
        test::check_ad<Z>(B);
    }
}

TEST_CASE("senet: out_type stack, none and keep_list (tensor input)") {
    // every row in one program (one instantiation; the tower is shared by all roots)
    constexpr auto rs = senet<"s", {.num_feature = N, .cmp_dim = C, .out_type = merge_type::stack}>(x);
    constexpr auto rn = senet<"s", {.num_feature = N, .cmp_dim = C, .out_type = merge_type::none, .keep_list = true}>(x);
    constexpr auto rc = senet<"s", {.num_feature = N, .cmp_dim = C, .keep_list = true}>(x);
    constexpr auto rk = senet<"s", {.num_feature = N, .cmp_dim = C, .out_type = merge_type::stack, .keep_list = true}>(x);
    using S = std::remove_cvref_t<decltype(rs.out)>;
    using T = std::remove_cvref_t<decltype(rn.out)>;
    static_assert(S::shape == make_dims<N, K>());
    static_assert(std::tuple_size_v<T> == N);  // none: N tensors (B, K); keep_list ignored
    static_assert(std::tuple_element_t<0, T>::shape == make_dims<K>());
    // keep_list: a one-element list of exactly the concat / stack outputs
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(rc.out)>, std::tuple<E>>);
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(rk.out)>, std::tuple<S>>);
    const tower t(N, C);
    const auto want = reference_x(B, &t);
    auto outs = test::run_all<program_of<double, decltype(std::tuple_cat(std::tuple<S>{}, T{}))>>(B);
    REQUIRE(outs.size() == 1 + N);
    test::check_close(outs[0], want, 1e-12);  // stack
    for (std::size_t n = 0; n < N; ++n)          // none: element n = Y[:, n, :]
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t k = 0; k < K; ++k)
                CHECK(outs[1 + n][b * K + k] == doctest::Approx(want[(b * N + n) * K + k]).epsilon(1e-12));
}

TEST_CASE("senet: list input of different widths (2, 3, 4): concat, none, keep_list, derivatives") {
    constexpr auto e0 = input<"e0", 2>;
    constexpr auto e1 = input<"e1", 3>;
    constexpr auto e2 = input<"e2", 4>;
    const std::vector<std::size_t> widths{2, 3, 4};
    auto row = [&](std::size_t b, std::size_t n, std::size_t k) {
        return leaf_value(std::array{"e0", "e1", "e2"}[n], b * widths[n] + k);
    };
    SUBCASE("with the tower: concat (2 + 3 + 4) and none (B, 2), (B, 3), (B, 4) in one program") {
        constexpr senet_config cfg{.num_feature = 3, .cmp_dim = C};
        constexpr auto r = senet<"s", cfg>(e0, e1, e2);
        constexpr auto rn = senet<"s", {.num_feature = 3, .cmp_dim = C, .out_type = merge_type::none, .keep_list = true}>(e0, e1, e2);
        constexpr auto rk = senet<"s", {.num_feature = 3, .cmp_dim = C, .keep_list = true}>(e0, e1, e2);
        using L = std::remove_cvref_t<decltype(r.out)>;
        using T = std::remove_cvref_t<decltype(rn.out)>;
        static_assert(L::shape == make_dims<9>());
        static_assert(std::tuple_size_v<T> == 3 && std::tuple_element_t<2, T>::shape == make_dims<4>());
        static_assert(std::is_same_v<std::remove_cvref_t<decltype(rk.out)>, std::tuple<L>>);
        // a std::tuple input is the same layer
        static_assert(std::is_same_v<std::remove_cvref_t<decltype(senet<"s", cfg>(std::tuple{e0, e1, e2}).out)>, L>);
        const tower t(3, C);
        const auto want = reference(B, widths, &t, row);  // (B, 9): the concat rows
        auto outs = test::run_all<program_of<double, decltype(std::tuple_cat(std::tuple<L>{}, T{}))>>(B);
        REQUIRE(outs.size() == 4);
        test::check_close(outs[0], want, 1e-12);
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t n = 0, off = 0; n < 3; off += widths[n], ++n)
                for (std::size_t k = 0; k < widths[n]; ++k)
                    CHECK(outs[1 + n][b * widths[n] + k] == doctest::Approx(want[b * 9 + off + k]).epsilon(1e-12));
    }
    SUBCASE("derivatives of the list path (means of each element, per-element scales), without the tower") {
        // the tower's derivatives are checked on the tensor path; this keeps the TU cheap
        using L = std::remove_cvref_t<decltype(senet<"s", {.num_feature = 3}>(e0, e1, e2).out)>;
        test::check_forward<L>(B, reference(B, widths, nullptr, row));
        test::check_ad<L>(B);
    }
}

TEST_CASE("senet: list input of equal widths: stack equals the tensor path on the same rows") {
    // e_n[b, k] = x[b, n, k]
    auto f = [](std::string_view name, std::size_t i) {
        if (name.size() == 2 && name[0] == 'e') {
            const std::size_t n = static_cast<std::size_t>(name[1] - '0'), b = i / K, k = i % K;
            return x_at(b, n, k);
        }
        return leaf_value(name, i);
    };
    constexpr auto e0 = input<"e0", K>;
    constexpr auto e1 = input<"e1", K>;
    constexpr auto e2 = input<"e2", K>;
    constexpr auto e3 = input<"e3", K>;
    using S = std::remove_cvref_t<decltype(senet<"s", {.num_feature = N, .out_type = merge_type::stack}>(e0, e1, e2, e3).out)>;
    static_assert(S::shape == make_dims<N, K>());
    test::check_close(test::run<double, S>(B, f), reference_x(B, nullptr), 1e-12);
}

TEST_CASE("senet: a one-element list returns its bare (B, K) element (keep_list wraps it)") {
    constexpr auto e0 = input<"e0", 5>;
    const auto want = reference(B, {5}, nullptr, [](std::size_t b, std::size_t, std::size_t k) { return leaf_value("e0", b * 5 + k); });
    constexpr auto r = senet<"s", {.num_feature = 1, .out_type = merge_type::none}>(e0);
    using O = std::remove_cvref_t<decltype(r.out)>;
    static_assert(O::shape == make_dims<5>());  // none, stack and concat alike
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(senet<"s", {.num_feature = 1}>(e0).out)>, O>);
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(senet<"s", {.num_feature = 1, .out_type = merge_type::stack}>(e0).out)>, O>);
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(senet<"s", {.num_feature = 1}>(std::tuple{e0}).out)>, O>);
    constexpr auto k = senet<"s", {.num_feature = 1, .keep_list = true}>(e0);
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(k.out)>, std::tuple<O>>);
    test::check_close(test::run<double, O>(B), want, 1e-12);
}

TEST_CASE("senet: the original test: num_feature 10, cmp_dim 4 on ones (100, 10, 10); GlorotNormal, HeUniform, default") {
    constexpr auto xo = input<"x", 10, 10>;
    constexpr auto rg = senet<"s", {.num_feature = 10, .cmp_dim = 4, .initializer = init::GlorotNormal{}}>(xo);
    constexpr auto rh = senet<"s", {.num_feature = 10, .cmp_dim = 4, .initializer = init::HeUniform{}}>(xo);
    constexpr auto rd = senet<"s", {.num_feature = 10, .cmp_dim = 4}>(xo);
    using O = std::remove_cvref_t<decltype(rd.out)>;
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(rg.out)>, O> && std::is_same_v<std::remove_cvref_t<decltype(rh.out)>, O>);
    static_assert(O::shape == make_dims<100>());  // (100, 100) for a batch of 100
    using P = program<double, O>;
    const double trunc = 0.87962566103423978;
    // kernel bounds per initializer: (fan_in, fan_out) of dense_0 (10, 4) and dense_1 (4, 10)
    auto check_and_run = [&](auto r, auto bound, const char* what) {
        INFO(what);
        P::parameters p;
        initialize<typename decltype(r)::inits>(p, 3);
        for (auto [kn, gn, bn, fi, fo] : {std::tuple{"s/cmp_tower/dense_0/kernel", "s/cmp_tower/dense_0/trainable_kernel_norm", "s/cmp_tower/dense_0/bias", 10, 4},
                                          std::tuple{"s/cmp_tower/dense_1/kernel", "s/cmp_tower/dense_1/trainable_kernel_norm", "s/cmp_tower/dense_1/bias", 4, 10}}) {
            auto k = p.get(p.index_of(kn)), g = p.get(p.index_of(gn)), b = p.get(p.index_of(bn));
            double biggest = 0;
            for (double v : k) biggest = std::max(biggest, std::abs(v));
            CHECK(biggest <= bound(fi, fo));
            CHECK(biggest > 0.3 * bound(fi, fo));  // really drawn at that scale
            for (double v : b) CHECK(v == 0.0);
            for (std::size_t j = 0; j < std::size_t(fo); ++j) {  // norms = initial column norms
                double s = 0;
                for (std::size_t i = 0; i < std::size_t(fi); ++i) s += k[i * fo + j] * k[i * fo + j];
                CHECK(g[j] == doctest::Approx(std::sqrt(s)).epsilon(1e-14));
            }
        }
        auto pv = [&](std::string_view name, std::size_t i) { return double(p.get(p.index_of(name))[i]); };
        const tower t(10, 4, pv);
        P::workspace ws;
        std::vector<double> ones(100 * 100, 1.0), out(100 * 100);
        P::io io;
        io.input<"x">(ones.data()).output<0>(out.data());
        P::run(p, ws, 100, io);
        // z = 1 everywhere, so every example gives Y[n, k] = a_n: W_eff = W0 at initialisation
        const vec a = t(vec(10, 1.0));
        double sum = 0, want = 0;
        for (std::size_t b = 0; b < 100; ++b)
            for (std::size_t n = 0; n < 10; ++n)
                for (std::size_t k = 0; k < 10; ++k) {
                    CHECK(out[(b * 10 + n) * 10 + k] == doctest::Approx(a[n]).epsilon(1e-12));
                    sum += out[(b * 10 + n) * 10 + k], want += a[n];
                }
        CHECK(sum == doctest::Approx(want).epsilon(1e-12));
        return a;
    };
    auto a_g = check_and_run(rg, [&](int fi, int fo) { return 2 * std::sqrt(2.0 / (fi + fo)) / trunc; }, "GlorotNormal");
    auto a_h = check_and_run(rh, [](int fi, int) { return std::sqrt(6.0 / fi); }, "HeUniform");
    auto a_d = check_and_run(rd, [](int fi, int fo) { return std::sqrt(6.0 / (fi + fo)); }, "GlorotUniform (default)");
    CHECK(a_g != a_h);
    CHECK(a_d != a_h);
}

TEST_CASE("senet: regularizer penalties: regularizer / kernel_regularizer aliases on the raw kernels, bias_regularizer") {
    auto sum_sq = [](std::string_view name, std::size_t n) {
        double s = 0;
        for (std::size_t i = 0; i < n; ++i) s += leaf_value(name, i) * leaf_value(name, i);
        return s;
    };
    auto sum_abs = [](std::string_view name, std::size_t n) {
        double s = 0;
        for (std::size_t i = 0; i < n; ++i) s += std::abs(leaf_value(name, i));
        return s;
    };
    const double kernels_l1 = sum_abs("s/cmp_tower/dense_0/kernel", N * C) + sum_abs("s/cmp_tower/dense_1/kernel", C * N);
    const double kernels_l2 = sum_sq("s/cmp_tower/dense_0/kernel", N * C) + sum_sq("s/cmp_tower/dense_1/kernel", C * N);
    const double biases_l2 = sum_sq("s/cmp_tower/dense_0/bias", C) + sum_sq("s/cmp_tower/dense_1/bias", N);

    constexpr auto rs = senet<"s", {.num_feature = N, .cmp_dim = C, .regularizer = regularizer{0.1, 0.5}}>(x);
    constexpr auto rk = senet<"s", {.num_feature = N, .cmp_dim = C, .kernel_regularizer = regularizer{0.1, 0.5}}>(x);
    using Pen = std::remove_cvref_t<decltype(rs.penalty)>;
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(rk.penalty)>, Pen>);  // the aliases are one option
    static_assert(is_zero_v<std::remove_cvref_t<decltype(main_r.penalty)>>);        // none by default
    auto got = test::run<double, Pen>(1);
    REQUIRE(got.size() == 1);
    CHECK(got[0] == doctest::Approx(0.1 * kernels_l1 + 0.5 * kernels_l2).epsilon(1e-12));

    constexpr auto rb = senet<"s", {.num_feature = N, .cmp_dim = C, .regularizer = reg::L2{0.5}, .bias_regularizer = reg::L2{0.25}}>(x);
    auto gb = test::run<double, std::remove_cvref_t<decltype(rb.penalty)>>(1);
    CHECK(gb[0] == doctest::Approx(0.5 * kernels_l2 + 0.25 * biases_l2).epsilon(1e-12));
}
