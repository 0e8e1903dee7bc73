// The recurrence primitive (scan_node: Keras GRU, AGRU, AUGRU) and the AGRU attention RNN
// (spec layers-trans-seq-multitask-nas.md 2.1 and the GRU step of 2.3): the spec's reference
// values, the driver against a naive reference (literal concatenations, every intermediate),
// masks, derivatives (reverse vs finite differences in float64, JVP, duality) for inputs,
// scores and every variable, names / shapes / initializers / penalty, the original test.
#include "dien_reference.hpp"

#include "ctrec/layers/agru.hpp"
#include "ctrec/layers/initialize.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
template <class R, std::size_t I = 0>
using out_t = std::remove_cvref_t<std::tuple_element_t<I, decltype(R::out)>>;

// step 1 drives h from 0 to 0.5 exactly, step 2 is the spec's step (h = 0.5)
using X2t = input_node<"X", make_dims<2, 3>()>;
using A2t = input_node<"a", make_dims<2>()>;
constexpr auto A2 = A2t{};
} // namespace

TEST_CASE("scan: the spec's reference steps (Keras GRU of 2.3, AGRU / AUGRU of 2.1)") {
    // Keras GRU, E = U = 1, relu: row 1 gives z = r = 0.5, hh = 1, so h_1 = 0.5; row 2 is x W + b_in
    using R = param_node<"R", make_dims<1, 3>()>;
    using br = param_node<"br", make_dims<3>()>;
    using G = scan_node<scan_cell::keras_gru, scan_act::relu, X2t, R, br, const_node<0.0>>;
    auto fg = [](std::string_view n, std::size_t i) -> double {
        const double x[] = {-0.04, -0.05, 0.97, 0.1 + 0.01, 0.2 + 0.02, 0.3 + 0.03};
        if (n == "X") return x[i % 6];
        if (n == "R") return 0.4 + 0.1 * double(i);
        return 0.04 + 0.01 * double(i);  // br
    };
    auto rec = test::run<double, G>(2, fg);
    REQUIRE(rec.size() == 2 * 2 * 5);
    CHECK(rec[0] == doctest::Approx(0.5).epsilon(1e-15));
    // row 2: [h | z | r | hh | g_h]
    CHECK(rec[5 + 1] == doctest::Approx(0.5866176).epsilon(1e-7));
    CHECK(rec[5 + 2] == doctest::Approx(0.6271478).epsilon(1e-7));
    CHECK(rec[5 + 3] == doctest::Approx(0.5557732).epsilon(1e-7));
    CHECK(rec[5 + 0] == doctest::Approx(0.5230557).epsilon(1e-7));
    CHECK(test::run<float, G>(2, fg)[5] == doctest::Approx(0.5230557).epsilon(1e-6));
    // the naive Keras step from the spec's variables
    auto fk = [](std::string_view n, std::size_t i) -> double {
        if (n == "W") return 0.1 * double(i + 1);
        if (n == "R") return 0.4 + 0.1 * double(i);
        return 0.01 * double(i + 1);  // bias rows [[.01 .02 .03] [.04 .05 .06]]
    };
    auto s = ref::keras_gru({1.0}, {0.5}, ref::mat(fk, "W", 1, 3), ref::mat(fk, "R", 1, 3), ref::mat(fk, "b", 2, 3), 1);
    CHECK(s.h[0] == doctest::Approx(0.5230557).epsilon(1e-7));

    // AGRU / AUGRU, I = U = 1, tanh: row 1 has a = 1 and X_c = atanh(0.5), so h_1 = c_1 = 0.5
    using W1 = param_node<"W1", make_dims<1, 2>()>;
    using W2 = param_node<"W2", make_dims<1, 1>()>;
    auto fa = [](std::string_view n, std::size_t i) -> double {
        const double x[] = {0.0, 0.0, std::atanh(0.5), 0.1 + 1, 0.2 + 1, 0.5 + 1};
        if (n == "X") return x[i % 6];
        if (n == "a") return i % 2 == 0 ? 1.0 : 0.3;
        if (n == "W1") return i == 0 ? 0.3 : 0.4;
        return -0.6;  // W2
    };
    using Ag = scan_node<scan_cell::agru, scan_act::tanh, X2t, W1, W2, A2t>;
    using Au = scan_node<scan_cell::augru, scan_act::tanh, X2t, W1, W2, A2t>;
    auto ra = test::run<double, Ag>(2, fa), ru = test::run<double, Au>(2, fa);
    CHECK(ra[0] == doctest::Approx(0.5).epsilon(1e-15));
    // row 2: [h | r | u | c]
    CHECK(ra[4 + 1] == doctest::Approx(0.7772999).epsilon(1e-7));
    CHECK(ra[4 + 2] == doctest::Approx(0.8021839).epsilon(1e-7));
    CHECK(ra[4 + 3] == doctest::Approx(0.8529307).epsilon(1e-7));
    CHECK(ra[4] == doctest::Approx(0.6058792).epsilon(1e-7));
    CHECK(ru[4] == doctest::Approx(0.6547500).epsilon(1e-7));
    CHECK(test::run<float, Au>(2, fa)[4] == doctest::Approx(0.6547500).epsilon(1e-6));
    // the naive cell (all three branches, including the one without a score)
    auto fc = [](std::string_view n, std::size_t i) -> double {
        if (n == "Wg") return 0.1 * double(i + 1);
        return i == 0 ? 0.5 : -0.6;  // Wc
    };
    ref::mat Wg(fc, "Wg", 2, 2), Wc(fc, "Wc", 2, 1);
    for (int cell : {0, 1, 2}) {
        auto st = ref::agru({1.0}, {0.5}, 0.3, Wg, {1, 1}, Wc, {1}, 2, cell);
        CHECK(st.r[0] == doctest::Approx(0.7772999).epsilon(1e-7));
        CHECK(st.u[0] == doctest::Approx(0.8021839).epsilon(1e-7));
        CHECK(st.c[0] == doctest::Approx(0.8529307).epsilon(1e-7));
        CHECK(st.h[0] == doctest::Approx(cell == 0 ? 0.6058792 : cell == 1 ? 0.6547500 : 0.7831153).epsilon(1e-7));
    }
}

TEST_CASE("agru_rnn: the spec's step through the layer (kernels sliced into x rows and state rows)") {
    constexpr auto x = input<"x", 2, 1>;
    const double x1 = (std::atanh(0.5) - 1.0) / 0.5;  // c_1 = tanh(0.5 x1 + 1) = 0.5 with a_1 = 1
    auto f = [x1](std::string_view n, std::size_t i) -> double {
        if (n == "x") return i % 2 == 0 ? x1 : 1.0;
        if (n == "a") return i % 2 == 0 ? 1.0 : 0.3;
        if (n == "c/gates/kernel") return 0.1 * double(i + 1);
        if (n == "c/candidate/kernel") return i == 0 ? 0.5 : -0.6;
        return 1.0;  // biases
    };
    constexpr auto rg = agru_rnn<"c", {.units = 1}>(x, A2);
    constexpr auto ru = agru_rnn<"c", {.units = 1, .att_type = agru_att_of("augru")}>(x, A2);
    CHECK(test::run<double, out_t<decltype(rg), 1>>(1, f)[0] == doctest::Approx(0.6058792).epsilon(1e-7));
    CHECK(test::run<double, out_t<decltype(ru), 1>>(1, f)[0] == doctest::Approx(0.6547500).epsilon(1e-7));
    auto all = test::run<double, out_t<decltype(rg), 0>>(1, f);
    CHECK(all[0] == doctest::Approx(0.5).epsilon(1e-12));
}

namespace {
constexpr std::size_t T = 4, I = 3, U = 5, B = 3;
constexpr auto x = input<"x", T, I>;
constexpr auto a = input<"a", T>;
constexpr auto mask = input<"mask", T>;

// the naive driver for every example: outputs (B, T, U) flattened, and the final states
struct rnn_ref {
    std::vector<double> all, last;
    rnn_ref(int act, int cell, bool masked, test::value_fn f = leaf_value) {
        ref::mat Wg(f, "c/gates/kernel", I + U, 2 * U), Wc(f, "c/candidate/kernel", I + U, U);
        auto bg = ref::leaf_vec(f, "c/gates/bias", 2 * U), bc = ref::leaf_vec(f, "c/candidate/bias", U);
        for (std::size_t b = 0; b < B; ++b) {
            std::vector<ref::vec> xs;
            for (std::size_t t = 0; t < T; ++t) xs.push_back(ref::leaf_vec(f, "x", I, (b * T + t) * I));
            auto hs = ref::agru_rnn(xs, ref::leaf_vec(f, "a", T, b * T), masked ? ref::leaf_vec(f, "mask", T, b * T) : ref::vec{},
                                    U, Wg, bg, Wc, bc, act, cell);
            for (auto& h : hs) all.insert(all.end(), h.begin(), h.end());
            last.insert(last.end(), hs.back().begin(), hs.back().end());
        }
    }
};
// mask values 0 / 2 (padded / real) from the leaf value's sign
double mask_fn(std::string_view n, std::size_t i) {
    if (n == "mask") return leaf_value("mask", i) > -0.3 ? 2.0 : 0.0;
    return leaf_value(n, i);
}
} // namespace

TEST_CASE("agru_rnn: AGRU and AUGRU against the naive reference, float64 and float32, with and without a mask") {
    constexpr auto rg = agru_rnn<"c", {.units = U}>(x, a);
    constexpr auto ru = agru_rnn<"c", {.units = U, .att_type = agru_att::augru, .activation = act_relu}>(x, a);
    constexpr auto rs = agru_rnn<"c", {.units = U, .att_type = agru_att::augru, .activation = act_sigmoid}>(x, a);
    constexpr auto rl = agru_rnn<"c", {.units = U, .activation = act_linear}>(x, a);
    test::check_forward<out_t<decltype(rg), 0>>(B, rnn_ref(2, 0, false).all);
    test::check_forward<out_t<decltype(rg), 1>>(B, rnn_ref(2, 0, false).last);
    test::check_forward<out_t<decltype(ru), 0>>(B, rnn_ref(1, 1, false).all);
    test::check_forward<out_t<decltype(rs), 1>>(B, rnn_ref(3, 1, false).last);
    test::check_forward<out_t<decltype(rl), 1>>(B, rnn_ref(0, 0, false).last);
    constexpr auto mg = agru_rnn<"c", {.units = U}>(x, a, mask);
    constexpr auto mu = agru_rnn<"c", {.units = U, .att_type = agru_att::augru}>(x, a, mask);
    const rnn_ref rmg(2, 0, true, mask_fn), rmu(2, 1, true, mask_fn);
    test::check_forward<out_t<decltype(mg), 0>>(B, rmg.all, mask_fn);
    test::check_forward<out_t<decltype(mu), 0>>(B, rmu.all, mask_fn);
    // the mask pattern has padded steps, and they change the unmasked result
    std::size_t padded = 0;
    for (std::size_t i = 0; i < B * T; ++i) padded += mask_fn("mask", i) == 0.0;
    CHECK(padded > 0);
    CHECK(padded < B * T);
    CHECK(std::abs(rmu.last[0] - rnn_ref(2, 1, false, mask_fn).last[0]) + std::abs(rmu.last[U] - rnn_ref(2, 1, false, mask_fn).last[U]) > 1e-6);
}

TEST_CASE("agru_rnn: variables, initializers, the regularizer on all four; the original test") {
    constexpr auto r = agru_rnn<"c", {.units = U, .regularizer = regularizer{0.25, 0.5}}>(x, a);
    using E = out_t<decltype(r), 1>;
    using Pen = std::remove_cvref_t<decltype(r.penalty)>;
    using P = program<double, E, Pen>;
    std::vector<std::string_view> names(P::parameters::names.begin(), P::parameters::names.end());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string_view>{"c/candidate/bias", "c/candidate/kernel", "c/gates/bias", "c/gates/kernel"});
    auto shape_of = [](std::string_view n) { return P::parameters::shapes[P::parameters::position(n)]; };
    CHECK(shape_of("c/gates/kernel") == make_dims<I + U, 2 * U>());
    CHECK(shape_of("c/gates/bias") == make_dims<2 * U>());
    CHECK(shape_of("c/candidate/kernel") == make_dims<I + U, U>());
    CHECK(shape_of("c/candidate/bias") == make_dims<U>());
    auto outs = test::run_all<P>(B);
    double want = 0;
    for (auto [n, size] : {std::pair{"c/gates/kernel", (I + U) * 2 * U}, std::pair{"c/gates/bias", 2 * U},
                           std::pair{"c/candidate/kernel", (I + U) * U}, std::pair{"c/candidate/bias", U}})
        for (std::size_t i = 0; i < size; ++i) {
            const double v = leaf_value(n, i);
            want += 0.25 * std::abs(v) + 0.5 * v * v;
        }
    CHECK(outs[1][0] == doctest::Approx(want).epsilon(1e-12));

    // original test: units 10, sigmoid, Glorot-normal; static driver on ones (100, 20, 10) / (100, 20)
    constexpr auto xo = input<"x", 20, 10>;
    constexpr auto ao = input<"a", 20>;
    constexpr auto ro = agru_rnn<"agru_cell", {.units = 10, .activation = act_sigmoid, .initializer = init::GlorotNormal{}}>(xo, ao);
    using Po = program<float, out_t<decltype(ro), 0>, out_t<decltype(ro), 1>>;
    typename Po::parameters p;
    initialize<decltype(ro)::inits>(p, 5);
    for (float v : p.get<"agru_cell/gates/bias">()) CHECK(v == 1.0f);
    for (float v : p.get<"agru_cell/candidate/bias">()) CHECK(v == 1.0f);
    double mx = 0;
    for (float v : p.get<"agru_cell/gates/kernel">()) mx = std::max(mx, double(std::abs(v)));
    CHECK(mx > 0);
    CHECK(mx <= 2 * std::sqrt(2.0 / 40) / 0.87962566103423978 + 1e-6);  // truncated at 2 sigma
    std::vector<float> ones_x(100 * 200, 1.0f), ones_a(100 * 20, 1.0f), outs_all(100 * 200), outs_last(100 * 10);
    typename Po::workspace ws;
    typename Po::io io;
    io.input<"x">(ones_x.data()).input<"a">(ones_a.data()).output<0>(outs_all.data()).output<1>(outs_last.data());
    Po::run(p, ws, 100, io);
    auto fp = [&](std::string_view n, std::size_t i) -> double {
        if (n == "x" || n == "a") return 1.0;
        return p.get(p.index_of(n))[i];
    };
    ref::mat Wg(fp, "agru_cell/gates/kernel", 20, 20), Wc(fp, "agru_cell/candidate/kernel", 20, 10);
    std::vector<ref::vec> xs(20, ref::vec(10, 1.0));
    auto hs = ref::agru_rnn(xs, ref::vec(20, 1.0), {}, 10, Wg, ref::leaf_vec(fp, "agru_cell/gates/bias", 20), Wc,
                            ref::leaf_vec(fp, "agru_cell/candidate/bias", 10), 3, 0);
    double sum = 0, want_sum = 0;
    for (std::size_t b = 0; b < 100; ++b)
        for (std::size_t j = 0; j < 10; ++j) {
            CHECK(outs_last[b * 10 + j] == doctest::Approx(hs.back()[j]).epsilon(1e-5));
            sum += outs_last[b * 10 + j], want_sum += hs.back()[j];
        }
    CHECK(sum == doctest::Approx(want_sum).epsilon(1e-5));
    CHECK(outs_all[19 * 10] == outs_last[0]);
}
