// AddBias, LayerNorm, Sum/Avg/MaxPooling and the merge helpers (spec
// layers-core-and-cross.md 1.7, 1.8, 1.10, 1.1) against references written from the spec.
#include "support.hpp"

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
std::vector<std::string_view> names() {
    using P = typename program<double, E>::parameters;
    return {P::names.begin(), P::names.end()};
}
} // namespace

TEST_CASE("add_bias: the whole per-example shape, a zero bias is the identity, penalty on the bias") {
    constexpr auto x = input<"x", 3, 5>;
    constexpr auto r = add_bias<"ab", add_bias_config{.regularizer = reg::L2{0.5}}>(x);
    using E = std::remove_cvref_t<decltype(r.out)>;
    std::vector<double> want;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t i = 0; i < 15; ++i) want.push_back(leaf_value("x", b * 15 + i) + leaf_value("ab/bias", i));
    test::check_forward<E>(B, want);
    test::check_ad<E>(B);
    CHECK(names<E>() == std::vector<std::string_view>{"ab/bias"});
    static_assert(program<double, E>::parameters::shapes[0] == make_dims<3, 5>());
    double pen = 0;
    for (std::size_t i = 0; i < 15; ++i) pen += 0.5 * leaf_value("ab/bias", i) * leaf_value("ab/bias", i);
    CHECK(test::run<double, std::remove_cvref_t<decltype(r.penalty)>>(1)[0] == doctest::Approx(pen).epsilon(1e-12));
    // the original test: with its default zeros initializer the output is the input
    using M = program<double, E>;
    M::parameters p;
    initialize<decltype(r)::inits>(p, 1);
    M::workspace ws;
    std::vector<double> xs(2 * 15), y(2 * 15);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("u", i);
    M::io io;
    io.input<"x">(xs.data()).output<0>(y.data());
    M::run(p, ws, 2, io);
    CHECK(y == xs);
    // channels_first with equal axes is the same layer
    constexpr auto sq = add_bias<"ab", add_bias_config{.format = data_format::channels_first}>(input<"x", 4, 4>);
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(sq.out)>,
                                 std::remove_cvref_t<decltype(add_bias<"ab">(input<"x", 4, 4>).out)>>);
}

TEST_CASE("layer_norm: last axis only, epsilon 1e-6, beta then gamma, regularizer on both") {
    constexpr auto x = input<"x", 2, 6>;
    constexpr auto r = layer_norm<"ln", layer_norm_config{.initializer = init::HeUniform{}, .regularizer = reg::L1{0.1}}>(x);
    using E = std::remove_cvref_t<decltype(r.out)>;
    std::vector<double> want;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t row = 0; row < 2; ++row) {
            double mu = 0, var = 0;
            for (std::size_t i = 0; i < 6; ++i) mu += leaf_value("x", (b * 2 + row) * 6 + i) / 6;
            for (std::size_t i = 0; i < 6; ++i) {
                double d = leaf_value("x", (b * 2 + row) * 6 + i) - mu;
                var += d * d / 6;
            }
            for (std::size_t i = 0; i < 6; ++i)
                want.push_back(leaf_value("ln/gamma", i) * (leaf_value("x", (b * 2 + row) * 6 + i) - mu) / std::sqrt(var + 1e-6) +
                               leaf_value("ln/beta", i));
        }
    test::check_forward<E>(B, want);
    test::check_ad<E>(B);
    using Pen = std::remove_cvref_t<decltype(r.penalty)>;
    double pen = 0;
    for (std::size_t i = 0; i < 6; ++i) pen += 0.1 * (std::abs(leaf_value("ln/beta", i)) + std::abs(leaf_value("ln/gamma", i)));
    CHECK(test::run<double, Pen>(1)[0] == doctest::Approx(pen).epsilon(1e-12));
    // the original test: all-ones rows have zero variance, so the output is exactly beta = 0
    constexpr auto o = layer_norm<"LayerNorm", layer_norm_config{.initializer = init::HeUniform{}}>(input<"x", 100>);
    using M = program<float, std::remove_cvref_t<decltype(o.out)>>;
    M::parameters p;
    initialize<decltype(o)::inits>(p, 3);
    M::workspace ws;
    std::vector<float> ones(100 * 100, 1.f), y(100 * 100, 5.f);
    M::io io;
    io.input<"x">(ones.data()).output<0>(y.data());
    M::run(p, ws, 100, io);
    double sum = 0;
    for (float v : y) sum += v;
    CHECK(sum == 0.0);
    CHECK(names<std::remove_cvref_t<decltype(o.out)>>().size() == 2);
}

TEST_CASE("sum / avg / max pooling: one input passes through, max splits ties") {
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
    using S = std::remove_cvref_t<decltype(sum_pooling(a, b, c))>;
    using A = std::remove_cvref_t<decltype(avg_pooling(a, b, c))>;
    using X = std::remove_cvref_t<decltype(max_pooling(a, b, c))>;
    test::check_forward<S>(B, ref([](double p, double q, double r) { return p + q + r; }));
    test::check_forward<A>(B, ref([](double p, double q, double r) { return (p + q + r) / 3; }));
    test::check_forward<X>(B, ref([](double p, double q, double r) { return std::max({p, q, r}); }));
    test::check_ad<S>(B);
    test::check_ad<A>(B);
    test::check_ad<X>(B);
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(avg_pooling(a))>, std::remove_cvref_t<decltype(a)>>);
    static_assert(std::is_same_v<std::remove_cvref_t<decltype(max_pooling(a))>, std::remove_cvref_t<decltype(a)>>);
    // ties: a == b > c everywhere -> half of the cotangent to each of a and b, none to c
    using G = grad_program<double, X>;
    G::parameters p;
    G::workspace ws;
    std::vector<double> av(3, 2.0), cv(3, -1.0), ct{1.0, 4.0, -2.0}, y(3), da(3), db(3), dc(3);
    G::io io;
    io.input<"a">(av.data()).input<"b">(av.data()).input<"c">(cv.data()).input<"cotangent">(ct.data()).output<0>(y.data());
    io.output<G::grad<"a">>(da.data()).output<G::grad<"b">>(db.data()).output<G::grad<"c">>(dc.data());
    G::run(p, ws, 1, io);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(da[i] == ct[i] / 2);
        CHECK(db[i] == ct[i] / 2);
        CHECK(dc[i] == 0.0);
    }
}

TEST_CASE("merge helpers: stack, concat and none for single tensors, features and lists; keep_list") {
    constexpr auto x = input<"x", 3, 4>;
    // (N, K) stack: unchanged; concat: (N*K) row-major; none: N tensors (K)
    static_assert(std::is_same_v<decltype(merge<merge_type::stack>(x)), std::remove_cvref_t<decltype(x)>>);
    using Cc = std::remove_cvref_t<decltype(merge<merge_type::concat>(x))>;
    static_assert(Cc::shape == make_dims<12>());
    std::vector<double> flat;
    for (std::size_t i = 0; i < B * 12; ++i) flat.push_back(leaf_value("x", i));
    test::check_forward<Cc>(B, flat);
    constexpr auto parts = merge<merge_type::none>(x);
    static_assert(std::tuple_size_v<decltype(parts)> == 3);
    using P1 = std::remove_cvref_t<decltype(std::get<1>(parts))>;
    static_assert(P1::shape == make_dims<4>());
    std::vector<double> row1;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t k = 0; k < 4; ++k) row1.push_back(leaf_value("x", b * 12 + 4 + k));
    test::check_forward<P1>(B, row1);
    // keep_list
    constexpr auto kept = merge<merge_type::concat, true>(x);
    static_assert(std::tuple_size_v<decltype(kept)> == 1);
    // (W) with num_feature: stack -> (F, W/F); concat unchanged; none -> F parts
    constexpr auto w = input<"w", 6>;
    static_assert(std::remove_cvref_t<decltype(merge_features<merge_type::stack, 2>(w))>::shape == make_dims<2, 3>());
    static_assert(std::is_same_v<decltype(merge_features<merge_type::concat, 2>(w)), std::remove_cvref_t<decltype(w)>>);
    static_assert(std::tuple_size_v<decltype(merge_features<merge_type::none, 3>(w))> == 3);
    // (W) without num_feature: unchanged whatever the type (no list, even for none)
    static_assert(std::is_same_v<decltype(merge<merge_type::none>(w)), std::remove_cvref_t<decltype(w)>>);
    // lists: stack along a new axis 0, concat along axis 0, none keeps the list
    constexpr auto u = input<"u", 4>;
    constexpr auto v = input<"v", 4>;
    using St = std::remove_cvref_t<decltype(merge_list<merge_type::stack>(u, v))>;
    using Co = std::remove_cvref_t<decltype(merge_list<merge_type::concat>(u, v))>;
    static_assert(St::shape == make_dims<2, 4>() && Co::shape == make_dims<8>());
    std::vector<double> uv;
    for (std::size_t b = 0; b < B; ++b) {
        for (std::size_t k = 0; k < 4; ++k) uv.push_back(leaf_value("u", b * 4 + k));
        for (std::size_t k = 0; k < 4; ++k) uv.push_back(leaf_value("v", b * 4 + k));
    }
    test::check_forward<St>(B, uv);
    test::check_forward<Co>(B, uv);
    static_assert(std::tuple_size_v<decltype(merge_list<merge_type::none>(u, v))> == 2);
}
