// DMR_U2I (spec layers-trans-seq-multitask-nas.md 2.4): against a naive reference that builds
// c, l, alpha, m and the projection literally (default PReLU with non-zero alpha); the spec's
// reference value; derivatives for both inputs and every variable; the original test (relu,
// cmp_dim 5, ones item (100, 10) and seq (100, 15, 10)) with the initializers; variable
// names and shapes; the regularizer penalty; padded steps take part in the softmax (no mask,
// as in the source).
#include "support.hpp"

#include <cmath>

#include "ctrec/layers/dmr_u2i.hpp"
#include "ctrec/layers/initialize.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
constexpr std::size_t T = 5, U = 3, Cd = 4, I = 6, B = 4;
constexpr auto item = input<"item", I>;
constexpr auto seq = input<"seq", T, U>;

template <class R>
using out_t = std::remove_cvref_t<decltype(R::out)>;

// Every intermediate of spec 2.4.5 for one example; act: 0 identity, 1 PReLU, 2 relu.
struct reference {
    std::size_t t_, u_, c_, i_;
    test::value_fn f;
    int act;
    std::vector<double> c, l, alpha, m, h, z, out;  // z: pre-activation of every example
    void example(std::size_t b) {
        auto S = [&](std::size_t t, std::size_t u) { return f("seq", (b * t_ + t) * u_ + u); };
        c.assign(t_ * c_, 0);
        l.assign(t_, 0);
        for (std::size_t t = 0; t < t_; ++t)
            for (std::size_t k = 0; k < c_; ++k) {
                double v = f("d/pos_emb", t * c_ + k) + f("d/bias", k);
                for (std::size_t u = 0; u < u_; ++u) v += S(t, u) * f("d/emb_weight", u * c_ + k);
                c[t * c_ + k] = v;
                l[t] += v * f("d/z_weight", k);
            }
        double mx = -1e300, s = 0;
        for (double v : l) mx = std::max(mx, v);
        alpha.assign(t_, 0);
        for (std::size_t t = 0; t < t_; ++t) s += alpha[t] = std::exp(l[t] - mx);
        for (double& a : alpha) a /= s;
        m.assign(u_, 0);
        for (std::size_t u = 0; u < u_; ++u)
            for (std::size_t t = 0; t < t_; ++t) m[u] += alpha[t] * S(t, u);
        h.assign(i_, 0);
        for (std::size_t j = 0; j < i_; ++j) {
            double zj = f("d/dense/bias", j);
            for (std::size_t u = 0; u < u_; ++u) zj += m[u] * f("d/dense/kernel", u * i_ + j);
            z.push_back(zj);
            h[j] = act == 0 ? zj : act == 2 ? std::max(zj, 0.0) : zj > 0 ? zj : f("d/dense/p_re_lu/alpha", j) * zj;
            out.push_back(h[j] * f("item", b * i_ + j));
        }
    }
    reference(std::size_t batch, std::size_t t, std::size_t u, std::size_t cd, std::size_t i, int a,
              test::value_fn fn = leaf_value)
        : t_(t), u_(u), c_(cd), i_(i), f(std::move(fn)), act(a) {
        for (std::size_t b = 0; b < batch; ++b) example(b);
    }
};
} // namespace

TEST_CASE("dmr_u2i: default PReLU, float64 and float32 against the reference; derivatives") {
    constexpr auto r = dmr_u2i<"d", {.cmp_dim = Cd}>(item, seq);
    using E = out_t<decltype(r)>;
    static_assert(E::shape == make_dims<I>());
    test::check_forward<E>(B, reference(B, T, U, Cd, I, 1).out);
    test::check_ad<E>(3);  // item, seq, pos_emb, emb_weight, z_weight, bias, dense/kernel, dense/bias, alpha
    using P = program<double, E>;
    std::vector<std::string_view> names(P::parameters::names.begin(), P::parameters::names.end());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string_view>{"d/bias", "d/dense/bias", "d/dense/kernel", "d/dense/p_re_lu/alpha",
                                                 "d/emb_weight", "d/pos_emb", "d/z_weight"});
    auto shape_of = [](std::string_view n) { return P::parameters::shapes[P::parameters::position(n)]; };
    CHECK(shape_of("d/pos_emb") == make_dims<T, Cd>());
    CHECK(shape_of("d/emb_weight") == make_dims<U, Cd>());
    CHECK(shape_of("d/z_weight") == make_dims<Cd, 1>());
    CHECK(shape_of("d/bias") == make_dims<Cd>());
    CHECK(shape_of("d/dense/kernel") == make_dims<U, I>());
    CHECK(shape_of("d/dense/bias") == make_dims<I>());
    CHECK(shape_of("d/dense/p_re_lu/alpha") == make_dims<I>());
}

TEST_CASE("dmr_u2i: the spec's reference value (T = 2, U_e = C = I_e = 1)") {
    constexpr auto item1 = input<"item", 1>;
    constexpr auto seq1 = input<"seq", 2, 1>;
    constexpr auto r = dmr_u2i<"d", {.cmp_dim = 1}>(item1, seq1);
    auto f = [](std::string_view n, std::size_t i) -> double {
        if (n == "d/pos_emb") return i == 0 ? 0.1 : 0.2;
        if (n == "seq") return i % 2 == 0 ? 1.0 : 3.0;
        if (n == "d/dense/kernel") return 0.5;
        if (n == "item") return 3.0;
        if (n == "d/emb_weight" || n == "d/z_weight") return 1.0;
        return 0.0;  // bias, dense/bias, PReLU alpha
    };
    const reference ref(1, 2, 1, 1, 1, 1, f);
    CHECK(ref.l[0] == doctest::Approx(1.1).epsilon(1e-14));
    CHECK(ref.l[1] == doctest::Approx(3.2).epsilon(1e-14));
    CHECK(ref.alpha[0] == doctest::Approx(0.1090968).epsilon(1e-6));
    CHECK(ref.m[0] == doctest::Approx(2.7818064).epsilon(1e-7));
    CHECK(ref.h[0] == doctest::Approx(1.3909032).epsilon(1e-7));
    auto got = test::run<double, out_t<decltype(r)>>(2, f);
    CHECK(got[0] == doctest::Approx(4.1727095).epsilon(1e-7));
    CHECK(got[1] == doctest::Approx(4.1727095).epsilon(1e-7));
}

TEST_CASE("dmr_u2i: the original test (relu, cmp_dim 5, ones item (100, 10), seq (100, 15, 10)); initializers") {
    constexpr auto itemo = input<"item", 10>;
    constexpr auto seqo = input<"seq", 15, 10>;
    constexpr auto r = dmr_u2i<"dmr__u2i", {.cmp_dim = 5, .activation = keras_activation("relu")}>(itemo, seqo);
    using E = out_t<decltype(r)>;
    static_assert(E::shape == make_dims<10>());
    using P = program<float, E>;
    CHECK(P::n_params == 6);  // no PReLU alpha with relu
    CHECK(P::parameters::position("dmr__u2i/dense/p_re_lu/alpha") == P::parameters::count);
    typename P::parameters p;
    initialize<decltype(r)::inits>(p, 11);
    auto maxabs = [&](std::string_view n) {
        double mx = 0;
        for (float v : p.get(p.index_of(n))) mx = std::max(mx, double(std::abs(v)));
        return mx;
    };
    // GlorotUniform limits sqrt(6 / (fan_in + fan_out))
    for (auto [n, lim] : {std::pair{"dmr__u2i/pos_emb", std::sqrt(6.0 / 20)}, std::pair{"dmr__u2i/emb_weight", std::sqrt(6.0 / 15)},
                          std::pair{"dmr__u2i/dense/kernel", std::sqrt(6.0 / 20)}}) {
        INFO(n);
        CHECK(maxabs(n) <= lim);
        CHECK(maxabs(n) > 0.5 * lim);
    }
    for (float v : p.get<"dmr__u2i/z_weight">()) CHECK(v == 1.0f);
    CHECK(maxabs("dmr__u2i/bias") == 0.0);
    CHECK(maxabs("dmr__u2i/dense/bias") == 0.0);
    // all-ones steps: alpha sums to 1, so m = 1 and out_j = relu(sum_u W[u, j])
    std::vector<float> ones_item(100 * 10, 1.0f), ones_seq(100 * 150, 1.0f), out(100 * 10);
    typename P::workspace ws;
    typename P::io io;
    io.input<"item">(ones_item.data()).input<"seq">(ones_seq.data()).output<0>(out.data());
    P::run(p, ws, 100, io);
    auto W = p.get<"dmr__u2i/dense/kernel">();
    double sum = 0, want_sum = 0;
    for (std::size_t b = 0; b < 100; ++b)
        for (std::size_t j = 0; j < 10; ++j) {
            double z = 0;
            for (std::size_t u = 0; u < 10; ++u) z += W[u * 10 + j];
            CHECK(out[b * 10 + j] == doctest::Approx(std::max(z, 0.0)).epsilon(1e-5));
            sum += out[b * 10 + j], want_sum += std::max(z, 0.0);
        }
    CHECK(sum == doctest::Approx(want_sum).epsilon(1e-5));
}

TEST_CASE("dmr_u2i: regularizer on pos_emb, emb_weight and dense/kernel only; other activations") {
    constexpr auto r = dmr_u2i<"d", {.cmp_dim = Cd, .activation = act_tanh, .regularizer = regularizer{0.25, 0.5}}>(item, seq);
    using E = out_t<decltype(r)>;
    using Pen = std::remove_cvref_t<decltype(r.penalty)>;
    auto outs = test::run_all<program<double, E, Pen>>(B);
    double want = 0;
    for (auto [n, size] : {std::pair{"d/pos_emb", T * Cd}, std::pair{"d/emb_weight", U * Cd}, std::pair{"d/dense/kernel", U * I}})
        for (std::size_t i = 0; i < size; ++i) {
            const double v = leaf_value(n, i);
            want += 0.25 * std::abs(v) + 0.5 * v * v;
        }
    CHECK(outs[1][0] == doctest::Approx(want).epsilon(1e-12));
    // tanh projection against the identity reference's pre-activations
    reference ref(B, T, U, Cd, I, 0);
    std::vector<double> want_tanh;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t j = 0; j < I; ++j) {
            want_tanh.push_back(std::tanh(ref.z[b * I + j]) * leaf_value("item", b * I + j));
        }
    test::check_close(outs[0], want_tanh, 1e-10);
}

TEST_CASE("dmr_u2i: the attention bias shifts every score by bias . z, so it cannot change the output") {
    constexpr auto r = dmr_u2i<"d", {.cmp_dim = Cd}>(item, seq);
    using E = out_t<decltype(r)>;
    auto other_bias = [](std::string_view n, std::size_t i) { return n == "d/bias" ? 3.0 + leaf_value("b2", i) : leaf_value(n, i); };
    const auto a = test::run<double, E>(B), b = test::run<double, E>(B, other_bias);
    test::check_close(b, reference(B, T, U, Cd, I, 1, other_bias).out, 1e-12);
    test::check_close(b, std::vector<double>(a.begin(), a.end()), 1e-12);
    // and its gradient is zero up to rounding
    using G = grad_program<double, E>;
    auto outs = test::run_all<G>(B);
    const auto& gb = outs[G::grad<"d/bias">];
    REQUIRE(gb.size() == Cd);
    for (double v : gb) CHECK(std::abs(v) < 1e-12);
}

TEST_CASE("dmr_u2i: no mask - a zero-padded step still takes part in the softmax (source behaviour)") {
    constexpr auto r = dmr_u2i<"d", {.cmp_dim = Cd}>(item, seq);
    using E = out_t<decltype(r)>;
    // the last two steps of every sequence are zero padding
    auto padded = [](std::string_view n, std::size_t i) {
        if (n == "seq" && (i / U) % T >= T - 2) return 0.0;
        return leaf_value(n, i);
    };
    const reference ref(B, T, U, Cd, I, 1, padded);
    test::check_close(test::run<double, E>(B, padded), ref.out, 1e-12);
    // (the padded steps got weight exp(pos_emb[t] . z + bias . z) / sum, not 0)
    CHECK(ref.alpha[T - 1] > 1e-3);
}
