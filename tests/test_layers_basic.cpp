// AddBias, LayerNorm, Sum/Avg/MaxPooling and the merge helpers (spec
// layers-core-and-cross.md 1.7, 1.8, 1.10, 1.1) against naive float64 references written
// from the spec, plus derivatives, variable names, initializers, penalties and the
// original tests' checks.
#include "support.hpp"

#include <algorithm>
#include <array>

#include "ctrec/layers/add_bias.hpp"
#include "ctrec/layers/initialize.hpp"
#include "ctrec/layers/layer_norm.hpp"
#include "ctrec/layers/merge.hpp"
#include "ctrec/layers/pooling.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
constexpr std::size_t B = 4;

template <class E>
using expr_t = std::remove_cvref_t<E>;
template <std::size_t N>
using names_t = std::array<std::string_view, N>;

// Runs program M on the given input values (leaf "x", `batch` examples) with parameters
// initialised from a layer's inits, and returns output 0.
template <class T, class E, class Inits>
std::vector<T> run_initialized(const std::vector<T>& xs, std::size_t batch, std::uint64_t seed = 1) {
    using M = program<T, E>;
    typename M::parameters p;
    initialize<Inits>(p, seed);
    typename M::workspace ws;
    std::vector<T> y(batch * E::shape.size(), T(-12345));
    typename M::io io;
    io.template input<"x">(xs.data()).template output<0>(y.data());
    M::run(p, ws, batch, io);
    return y;
}

// The naive LayerNorm of the spec (1.8.5) over rows of D consecutive values of leaf `x`.
std::vector<double> layer_norm_ref(std::string_view x, std::string_view scope, std::size_t rows, std::size_t D) {
    const std::string beta = std::string(scope) + "/beta", gamma = std::string(scope) + "/gamma";
    std::vector<double> want;
    for (std::size_t r = 0; r < rows; ++r) {
        double mu = 0, var = 0;
        for (std::size_t i = 0; i < D; ++i) mu += leaf_value(x, r * D + i);
        mu /= static_cast<double>(D);
        for (std::size_t i = 0; i < D; ++i) var += (leaf_value(x, r * D + i) - mu) * (leaf_value(x, r * D + i) - mu);
        var /= static_cast<double>(D);
        for (std::size_t i = 0; i < D; ++i)
            want.push_back(leaf_value(gamma, i) * (leaf_value(x, r * D + i) - mu) / std::sqrt(var + 1e-6) + leaf_value(beta, i));
    }
    return want;
}
} // namespace

// ---- AddBias (1.7) ----------------------------------------------------------------------

TEST_CASE("add_bias: bias of the whole per-example shape, its name, init and penalty") {
    constexpr auto x = input<"x", 3, 5>;
    constexpr auto r = add_bias<"ab", add_bias_config{.regularizer = reg::L2{0.5}}>(x);
    using E = expr_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<3, 5>() && E::batched);
    using P = program<float, E>::parameters;
    static_assert(P::names == names_t<1>{"ab/bias"});
    static_assert(P::shapes[0] == make_dims<3, 5>());
    using I = decltype(r)::inits;
    static_assert(I::size == 1 && tl_at_t<0, I>::name.view() == "ab/bias" && tl_at_t<0, I>::shape == make_dims<3, 5>());
    static_assert(tl_at_t<0, I>::spec.w == init::spec::which::zeros);  // initializer None -> Zeros

    std::vector<double> want;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t i = 0; i < 15; ++i) want.push_back(leaf_value("x", b * 15 + i) + leaf_value("ab/bias", i));
    test::check_forward<E>(B, want);
    test::check_ad<E>(B);

    // Keras L2: l2 * sum w^2 (no 1/2), and its gradient
    using Pen = expr_t<decltype(r.penalty)>;
    static_assert(!Pen::batched && Pen::shape.rank == 0);
    double pen = 0;
    for (std::size_t i = 0; i < 15; ++i) pen += 0.5 * leaf_value("ab/bias", i) * leaf_value("ab/bias", i);
    CHECK(test::run<double, Pen>(1)[0] == doctest::Approx(pen).epsilon(1e-12));
    test::check_ad<Pen>(1);

    // no regularizer: a symbolic zero penalty
    static_assert(std::is_same_v<expr_t<decltype(add_bias<"ab">(x).penalty)>, scalar_zero>);
}

TEST_CASE("add_bias: the original (100, 10) test, a zero bias is the identity; other ranks") {
    // rank 2 in the source's terms: (B, 10), B = 100, initializer Zeros -> y == x exactly
    constexpr auto r = add_bias<"AddBias">(input<"x", 10>);
    using E = expr_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<10>());
    std::vector<float> xs(100 * 10);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(leaf_value("u", i));
    CHECK(run_initialized<float, E, decltype(r)::inits>(xs, 100) == xs);

    // rank 3 per example, with a configured initializer reaching the inits
    constexpr auto r3 = add_bias<"s/ab", add_bias_config{.initializer = init::Constant{0.25}}>(input<"x", 2, 3, 4>);
    using E3 = expr_t<decltype(r3.out)>;
    static_assert(program<double, E3>::parameters::names == names_t<1>{"s/ab/bias"});
    static_assert(program<double, E3>::parameters::shapes[0] == make_dims<2, 3, 4>());
    std::vector<double> want;
    for (std::size_t i = 0; i < B * 24; ++i) want.push_back(leaf_value("x", i) + leaf_value("s/ab/bias", i % 24));
    test::check_forward<E3>(B, want);
    test::check_ad<E3>(B);
    std::vector<double> x3(2 * 24), y3 = x3;
    for (std::size_t i = 0; i < x3.size(); ++i) y3[i] = (x3[i] = leaf_value("v", i)) + 0.25;
    CHECK(run_initialized<double, E3, decltype(r3)::inits>(x3, 2) == y3);
}

TEST_CASE("add_bias: channels_first is accepted where it equals channels_last") {
    // all per-example axes equal: the source's reshaped bias keeps the flat order
    constexpr auto cf = add_bias<"ab", add_bias_config{.format = data_format::channels_first}>(input<"x", 4, 4>);
    static_assert(std::is_same_v<expr_t<decltype(cf.out)>, expr_t<decltype(add_bias<"ab">(input<"x", 4, 4>).out)>>);
    constexpr auto cf3 = add_bias<"ab", add_bias_config{.format = data_format::channels_first}>(input<"x", 3, 3, 3>);
    static_assert(std::is_same_v<expr_t<decltype(cf3.out)>, expr_t<decltype(add_bias<"ab">(input<"x", 3, 3, 3>).out)>>);
    // (3, 4) with channels_first does not compile (static_assert, see add_bias.hpp)
    using E = expr_t<decltype(cf.out)>;
    std::vector<double> want;
    for (std::size_t i = 0; i < B * 16; ++i) want.push_back(leaf_value("x", i) + leaf_value("ab/bias", i % 16));
    test::check_forward<E>(B, want);
}

// ---- LayerNorm (1.8) ----------------------------------------------------------------------

TEST_CASE("layer_norm: last axis only, epsilon 1e-6, beta then gamma, regularizer on both") {
    constexpr auto r = layer_norm<"ln", layer_norm_config{.initializer = init::HeUniform{}, .regularizer = reg::L1{0.1}}>(
        input<"x", 2, 6>);
    using E = expr_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<2, 6>());
    test::check_forward<E>(B, layer_norm_ref("x", "ln", B * 2, 6));
    test::check_ad<E>(B);

    // variables: beta (D) zeros, then gamma (D) from the initializer, in creation order
    using I = decltype(r)::inits;
    static_assert(I::size == 2);
    static_assert(tl_at_t<0, I>::name.view() == "ln/beta" && tl_at_t<0, I>::spec.w == init::spec::which::zeros);
    static_assert(tl_at_t<1, I>::name.view() == "ln/gamma" && tl_at_t<1, I>::spec.w == init::spec::which::he_uniform);
    static_assert(tl_at_t<0, I>::shape == make_dims<6>() && tl_at_t<1, I>::shape == make_dims<6>());
    using P = program<float, E>::parameters;
    static_assert(P::count == 2 && P::shapes[0] == make_dims<6>() && P::shapes[1] == make_dims<6>());
    // a program lists its parameters in graph order (gamma, beta here); creation order is the inits'
    static_assert(P::position("ln/beta") < 2 && P::position("ln/gamma") < 2);

    // Keras L1 on both: 0.1 * (sum |beta| + sum |gamma|), and its gradient
    using Pen = expr_t<decltype(r.penalty)>;
    double pen = 0;
    for (std::size_t i = 0; i < 6; ++i) pen += 0.1 * (std::abs(leaf_value("ln/beta", i)) + std::abs(leaf_value("ln/gamma", i)));
    CHECK(test::run<double, Pen>(1)[0] == doctest::Approx(pen).epsilon(1e-12));
    test::check_ad<Pen>(1);
}

TEST_CASE("layer_norm: rank 1 and rank 3 per example; default gamma is ones; no regularizer, no penalty") {
    SUBCASE("(B, D)") {
        constexpr auto r = layer_norm<"n">(input<"x", 7>);
        using E = expr_t<decltype(r.out)>;
        test::check_forward<E>(B, layer_norm_ref("x", "n", B, 7));
        test::check_ad<E>(B);
        static_assert(tl_at_t<1, decltype(r)::inits>::spec.w == init::spec::which::ones);
        static_assert(std::is_same_v<expr_t<decltype(r.penalty)>, scalar_zero>);
    }
    SUBCASE("(B, 2, 3, 5): rows of the last axis, nothing mixed across the other axes") {
        constexpr auto r = layer_norm<"a/ln", layer_norm_config{.regularizer = reg::L1L2{0.01, 0.02}}>(input<"x", 2, 3, 5>);
        using E = expr_t<decltype(r.out)>;
        static_assert(program<double, E>::parameters::shapes[0] == make_dims<5>());
        test::check_forward<E>(B, layer_norm_ref("x", "a/ln", B * 6, 5));
        test::check_ad<E>(B);
        double pen = 0;
        for (std::string_view v : {"a/ln/beta", "a/ln/gamma"})
            for (std::size_t i = 0; i < 5; ++i) pen += 0.01 * std::abs(leaf_value(v, i)) + 0.02 * leaf_value(v, i) * leaf_value(v, i);
        CHECK(test::run<double, expr_t<decltype(r.penalty)>>(1)[0] == doctest::Approx(pen).epsilon(1e-12));
    }
}

TEST_CASE("layer_norm: the original test, all-ones (100, 100) input gives exactly beta = 0") {
    // every row has mu = 1, x - mu = 0 and s2 = 0, so y = 0 * rsqrt(1e-6) * gamma + 0 = 0 exactly
    constexpr auto r = layer_norm<"LayerNorm", layer_norm_config{.initializer = init::HeUniform{}}>(input<"x", 100>);
    using E = expr_t<decltype(r.out)>;
    std::vector<float> ones(100 * 100, 1.f);
    auto y = run_initialized<float, E, decltype(r)::inits>(ones, 100, 3);
    CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 0.f; }));
    std::vector<double> ones64(100 * 100, 1.0);
    auto y64 = run_initialized<double, E, decltype(r)::inits>(ones64, 100, 3);
    CHECK(std::all_of(y64.begin(), y64.end(), [](double v) { return v == 0.0; }));
    // and a constant row with gamma != 1 and beta != 0 gives beta: no division blow-up
    std::vector<double> want;
    for (std::size_t i = 0; i < B * 100; ++i) want.push_back(leaf_value("LayerNorm/beta", i % 100));
    test::check_forward<E>(B, want, [](std::string_view n, std::size_t i) { return n == "x" ? -0.5 : leaf_value(n, i); });
}

// ---- Sum / Avg / MaxPooling (1.10) ----------------------------------------------------------

TEST_CASE("pooling: sum, avg and max of three (3) inputs against the spec, and their derivatives") {
    constexpr auto a = input<"a", 3>;
    constexpr auto b = input<"b", 3>;
    constexpr auto c = input<"c", 3>;
    auto ref = [](auto f) {
        std::vector<double> w;
        for (std::size_t e = 0; e < B; ++e)
            for (std::size_t i = 0; i < 3; ++i)
                w.push_back(f(leaf_value("a", e * 3 + i), leaf_value("b", e * 3 + i), leaf_value("c", e * 3 + i)));
        return w;
    };
    using S = expr_t<decltype(sum_pooling(a, b, c))>;
    using A = expr_t<decltype(avg_pooling(a, b, c))>;
    using X = expr_t<decltype(max_pooling(a, b, c))>;
    static_assert(S::shape == make_dims<3>() && A::shape == make_dims<3>() && X::shape == make_dims<3>());
    test::check_forward<S>(B, ref([](double p, double q, double r) { return p + q + r; }));
    test::check_forward<A>(B, ref([](double p, double q, double r) { return (p + q + r) / 3; }));
    test::check_forward<X>(B, ref([](double p, double q, double r) { return std::max({p, q, r}); }));
    test::check_ad<S>(B);
    test::check_ad<A>(B);
    test::check_ad<X>(B);  // random data: no ties
}

TEST_CASE("pooling: the original test, five (100, 10) inputs; rank-2 inputs; one input is returned unchanged") {
    constexpr auto x0 = input<"x0", 10>;
    constexpr auto x1 = input<"x1", 10>;
    constexpr auto x2 = input<"x2", 10>;
    constexpr auto x3 = input<"x3", 10>;
    constexpr auto x4 = input<"x4", 10>;
    using S = expr_t<decltype(sum_pooling(x0, x1, x2, x3, x4))>;
    using A = expr_t<decltype(avg_pooling(x0, x1, x2, x3, x4))>;
    using X = expr_t<decltype(max_pooling(x0, x1, x2, x3, x4))>;
    static_assert(S::shape == make_dims<10>() && A::shape == make_dims<10>() && X::shape == make_dims<10>());
    static_assert(S::batched && A::batched && X::batched);
    std::vector<double> ws, wa, wx;
    for (std::size_t i = 0; i < 100 * 10; ++i) {
        double s = 0, m = -1e300;
        for (std::string_view n : {"x0", "x1", "x2", "x3", "x4"}) s += leaf_value(n, i), m = std::max(m, leaf_value(n, i));
        ws.push_back(s);
        wa.push_back(s / 5);
        wx.push_back(m);
    }
    test::check_forward<S>(100, ws);
    test::check_forward<A>(100, wa);
    test::check_forward<X>(100, wx);

    // (B, 2, 3) inputs: the output keeps the shape, max is elementwise
    constexpr auto p = input<"p", 2, 3>;
    constexpr auto q = input<"q", 2, 3>;
    using X2 = expr_t<decltype(max_pooling(p, q))>;
    using A2 = expr_t<decltype(avg_pooling(p, q))>;
    static_assert(X2::shape == make_dims<2, 3>() && A2::shape == make_dims<2, 3>());
    std::vector<double> w2x, w2a;
    for (std::size_t i = 0; i < B * 6; ++i) {
        w2x.push_back(std::max(leaf_value("p", i), leaf_value("q", i)));
        w2a.push_back((leaf_value("p", i) + leaf_value("q", i)) / 2);
    }
    test::check_forward<X2>(B, w2x);
    test::check_forward<A2>(B, w2a);
    test::check_ad<X2>(B);

    // M = 1: the input itself, for all three (Avg does not divide by 1)
    static_assert(std::is_same_v<decltype(sum_pooling(x0)), expr_t<decltype(x0)>>);
    static_assert(std::is_same_v<decltype(avg_pooling(x0)), expr_t<decltype(x0)>>);
    static_assert(std::is_same_v<decltype(max_pooling(p)), expr_t<decltype(p)>>);
}

TEST_CASE("max_pooling splits the gradient equally among tied inputs") {
    constexpr auto a = input<"a", 4>;
    constexpr auto b = input<"b", 4>;
    constexpr auto c = input<"c", 4>;
    using G = grad_program<double, expr_t<decltype(max_pooling(a, b, c))>>;
    // element 0: a == b > c; 1: a == b == c; 2: c alone is the max; 3: a alone
    std::vector<double> av{2, 5, -1, 0.75}, bv{2, 5, -1, 0.5}, cv{-1, 5, 3, 0.5}, ct{1.0, 4.0, -2.0, 3.0};
    std::vector<double> y(4), da(4), db(4), dc(4);
    G::parameters p;
    G::workspace ws;
    G::io io;
    io.input<"a">(av.data()).input<"b">(bv.data()).input<"c">(cv.data()).input<"cotangent">(ct.data()).output<0>(y.data());
    io.output<G::grad<"a">>(da.data()).output<G::grad<"b">>(db.data()).output<G::grad<"c">>(dc.data());
    G::run(p, ws, 1, io);
    CHECK(y == std::vector<double>{2, 5, 3, 0.75});
    const double wa[] = {0.5, 4.0 / 3, 0, 3}, wb[] = {0.5, 4.0 / 3, 0, 0}, wc[] = {0, 4.0 / 3, -2, 0};
    for (std::size_t i = 0; i < 4; ++i) {
        CAPTURE(i);
        CHECK(da[i] == doctest::Approx(wa[i]).epsilon(1e-15));
        CHECK(db[i] == doctest::Approx(wb[i]).epsilon(1e-15));
        CHECK(dc[i] == doctest::Approx(wc[i]).epsilon(1e-15));
    }
    CHECK(da[0] + db[0] + dc[0] == ct[0]);  // the split loses nothing
}

// ---- merge_tensor_list (1.1) -----------------------------------------------------------------

TEST_CASE("merge: one (N, K) tensor with stack, concat and none; keep_list") {
    constexpr auto x = input<"x", 3, 4>;
    using X = expr_t<decltype(x)>;
    // stack: unchanged
    static_assert(std::is_same_v<decltype(merge<merge_type::stack>(x)), X>);
    // concat: (N*K), out[n*K + k] = x[n, k]
    using Cc = expr_t<decltype(merge<merge_type::concat>(x))>;
    static_assert(Cc::shape == make_dims<12>());
    std::vector<double> flat;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t n = 0; n < 3; ++n)
            for (std::size_t k = 0; k < 4; ++k) flat.push_back(leaf_value("x", b * 12 + n * 4 + k));
    test::check_forward<Cc>(B, flat);
    test::check_ad<Cc>(B);
    // none: N expressions of shape (K), row n of each example
    constexpr auto parts = merge<merge_type::none>(x);
    static_assert(std::tuple_size_v<decltype(parts)> == 3);
    using P1 = expr_t<decltype(std::get<1>(parts))>;
    using P2 = expr_t<decltype(std::get<2>(parts))>;
    static_assert(P1::shape == make_dims<4>() && P2::shape == make_dims<4>());
    std::vector<double> row1, row2;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t k = 0; k < 4; ++k) {
            row1.push_back(leaf_value("x", b * 12 + 4 + k));
            row2.push_back(leaf_value("x", b * 12 + 8 + k));
        }
    test::check_forward<P1>(B, row1);
    test::check_forward<P2>(B, row2);
    test::check_ad<P2>(B);
    // keep_list: stack / concat results in a one-element tuple; none ignores it
    constexpr auto kept_s = merge<merge_type::stack, true>(x);
    constexpr auto kept_c = merge<merge_type::concat, true>(x);
    static_assert(std::tuple_size_v<decltype(kept_s)> == 1 && std::is_same_v<std::tuple_element_t<0, expr_t<decltype(kept_s)>>, X>);
    static_assert(std::tuple_size_v<decltype(kept_c)> == 1 && std::is_same_v<std::tuple_element_t<0, expr_t<decltype(kept_c)>>, Cc>);
    static_assert(std::is_same_v<decltype(merge<merge_type::none, true>(x)), expr_t<decltype(parts)>>);
}

TEST_CASE("merge: one (W) tensor, with and without num_feature") {
    constexpr auto w = input<"w", 6>;
    using W = expr_t<decltype(w)>;
    // num_feature F = 2: stack -> (F, W/F) holding the same row-major values; concat unchanged
    using St = expr_t<decltype(merge_features<merge_type::stack, 2>(w))>;
    static_assert(St::shape == make_dims<2, 3>());
    std::vector<double> wv;
    for (std::size_t i = 0; i < B * 6; ++i) wv.push_back(leaf_value("w", i));
    test::check_forward<St>(B, wv);
    static_assert(std::is_same_v<decltype(merge_features<merge_type::concat, 2>(w)), W>);
    static_assert(std::is_same_v<decltype(merge_features<merge_type::concat, 2, true>(w)), std::tuple<W>>);
    static_assert(std::tuple_size_v<decltype(merge_features<merge_type::stack, 2, true>(w))> == 1);
    // none with F = 3: three (2) parts, part f = w[2f, 2f + 2) of each example; keep_list ignored
    constexpr auto parts = merge_features<merge_type::none, 3>(w);
    static_assert(std::tuple_size_v<decltype(parts)> == 3);
    static_assert(std::is_same_v<decltype(merge_features<merge_type::none, 3, true>(w)), expr_t<decltype(parts)>>);
    using P2 = expr_t<decltype(std::get<2>(parts))>;
    static_assert(P2::shape == make_dims<2>());
    std::vector<double> p2;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t k = 0; k < 2; ++k) p2.push_back(leaf_value("w", b * 6 + 4 + k));
    test::check_forward<P2>(B, p2);
    // without num_feature (or F <= 1): unchanged whatever the type, no list even for none;
    // keep_list gives [tensor] for every type
    static_assert(std::is_same_v<decltype(merge<merge_type::none>(w)), W>);
    static_assert(std::is_same_v<decltype(merge<merge_type::stack>(w)), W>);
    static_assert(std::is_same_v<decltype(merge<merge_type::concat>(w)), W>);
    static_assert(std::is_same_v<decltype(merge<merge_type::none, true>(w)), std::tuple<W>>);
    static_assert(std::is_same_v<decltype(merge_features<merge_type::stack, 1>(w)), W>);
    static_assert(std::is_same_v<decltype(merge_features<merge_type::none, 1, true>(w)), std::tuple<W>>);
}

TEST_CASE("merge: lists of two or more tensors") {
    constexpr auto u = input<"u", 4>;
    constexpr auto v = input<"v", 4>;
    // stack along a new axis 0 ((B, n, K) in the spec), concat along axis 0 ((B, n*K))
    using St = expr_t<decltype(merge_list<merge_type::stack>(u, v))>;
    using Co = expr_t<decltype(merge_list<merge_type::concat>(u, v))>;
    static_assert(St::shape == make_dims<2, 4>() && Co::shape == make_dims<8>());
    std::vector<double> uv;
    for (std::size_t b = 0; b < B; ++b) {
        for (std::size_t k = 0; k < 4; ++k) uv.push_back(leaf_value("u", b * 4 + k));
        for (std::size_t k = 0; k < 4; ++k) uv.push_back(leaf_value("v", b * 4 + k));
    }
    test::check_forward<St>(B, uv);
    test::check_forward<Co>(B, uv);
    test::check_ad<St>(B);
    // none: the list itself, keep_list ignored; stack / concat with keep_list: [merged]
    static_assert(std::is_same_v<decltype(merge_list<merge_type::none>(u, v)),
                                 std::tuple<expr_t<decltype(u)>, expr_t<decltype(v)>>>);
    static_assert(std::is_same_v<decltype(merge_list<merge_type::none, true>(u, v)), decltype(merge_list<merge_type::none>(u, v))>);
    static_assert(std::is_same_v<decltype(merge_list<merge_type::stack, true>(u, v)), std::tuple<St>>);
    static_assert(std::is_same_v<decltype(merge_list<merge_type::concat, true>(u, v)), std::tuple<Co>>);
    // three (2, 3) parts: stack -> (3, 2, 3); concat -> (6, 3), part i at rows [2i, 2i + 2)
    constexpr auto p = input<"p", 2, 3>;
    constexpr auto q = input<"q", 2, 3>;
    constexpr auto r = input<"r", 2, 3>;
    using St3 = expr_t<decltype(merge_list<merge_type::stack>(p, q, r))>;
    using Co3 = expr_t<decltype(merge_list<merge_type::concat>(p, q, r))>;
    static_assert(St3::shape == make_dims<3, 2, 3>() && Co3::shape == make_dims<6, 3>());
    std::vector<double> pqr;
    for (std::size_t b = 0; b < B; ++b)
        for (std::string_view n : {"p", "q", "r"})
            for (std::size_t i = 0; i < 6; ++i) pqr.push_back(leaf_value(n, b * 6 + i));
    test::check_forward<St3>(B, pqr);
    test::check_forward<Co3>(B, pqr);
}
