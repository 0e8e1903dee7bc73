// DIEN (spec layers-trans-seq-multitask-nas.md 2.3), forward: against a naive reference that
// builds every GRU / attention / AGRU intermediate (AGRU and AUGRU, several activations, with
// and without a mask, monolith_compat), float64 and float32; padding invariance (garbage at
// padded steps, padding anywhere, nothing real); variables, initializers (Orthogonal recurrent
// kernel), the regularizer's coverage; the original test shapes. The plan test is in
// test_dien_plan.cpp (split for compile time).
#include "dien_reference.hpp"

#include "ctrec/layers/dien.hpp"
#include "ctrec/layers/initialize.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
constexpr std::size_t T = 4, E = 3, U = 5, B = 3;
constexpr auto q = input<"q", U>;
constexpr auto k = input<"k", T, E>;
constexpr auto mask = input<"mask", T>;
template <class R>
using out_t = std::remove_cvref_t<decltype(R::out)>;

// padded (0) / real (2) steps from the leaf value; every example keeps at least one real step
double mask_value(std::size_t i) {
    const std::size_t b = i / T, t = i % T;
    if (t == b % T) return 2.0;
    return leaf_value("mask", i) > 0 ? 1.0 : 0.0;
}
double masked_fn(std::string_view n, std::size_t i) { return n == "mask" ? mask_value(i) : leaf_value(n, i); }
// the same, with garbage keys at the padded steps
double garbage_fn(std::string_view n, std::size_t i) {
    if (n == "k" && mask_value(i / E) == 0.0) return 50.0 * leaf_value("junk", i) + 7.0;
    return masked_fn(n, i);
}
} // namespace

TEST_CASE("dien: AGRU and AUGRU, several activations, against the naive reference") {
    constexpr auto r = dien<"d", {.num_units = U}>(q, k);
    static_assert(out_t<decltype(r)>::shape == make_dims<U>());
    test::check_forward<out_t<decltype(r)>>(B, ref::dien_batch(leaf_value, "d", B, T, E, U, 1, 0, false));
    constexpr auto ru = dien<"d", {.num_units = U, .att_type = agru_att::augru}>(q, k);
    test::check_forward<out_t<decltype(ru)>>(B, ref::dien_batch(leaf_value, "d", B, T, E, U, 1, 1, false));
    constexpr auto rt = dien<"d", {.num_units = U, .att_type = agru_att_of("AUGRU"), .activation = act_tanh}>(q, k);
    test::check_forward<out_t<decltype(rt)>>(B, ref::dien_batch(leaf_value, "d", B, T, E, U, 2, 1, false));
    constexpr auto rs = dien<"d", {.num_units = U, .activation = act_sigmoid}>(q, k);
    test::check_forward<out_t<decltype(rs)>>(B, ref::dien_batch(leaf_value, "d", B, T, E, U, 3, 0, false));
    // AGRU and AUGRU differ
    auto a = test::run<double, out_t<decltype(r)>>(B), b = test::run<double, out_t<decltype(ru)>>(B);
    double diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) diff += std::abs(a[i] - b[i]);
    CHECK(diff > 1e-3);
}

TEST_CASE("dien: monolith_compat uses AGRU whatever att_type says, and ignores the mask") {
    constexpr auto rc = dien<"d", {.num_units = U, .att_type = agru_att::augru, .monolith_compat = true}>(q, k, mask);
    const auto want = ref::dien_batch(masked_fn, "d", B, T, E, U, 1, 0, false);  // AGRU, every step processed
    test::check_forward<out_t<decltype(rc)>>(B, want, masked_fn);
    // the mask has padded steps, so honouring it would give another result
    CHECK(std::abs(want[0] - ref::dien_batch(masked_fn, "d", B, T, E, U, 1, 0, true)[0]) +
              std::abs(want[U] - ref::dien_batch(masked_fn, "d", B, T, E, U, 1, 0, true)[U]) > 1e-6);
    // and garbage at padded steps does change its output (the source's behaviour)
    auto g = test::run<double, out_t<decltype(rc)>>(B, garbage_fn);
    auto m = test::run<double, out_t<decltype(rc)>>(B, masked_fn);
    double diff = 0;
    for (std::size_t i = 0; i < g.size(); ++i) diff += std::abs(g[i] - m[i]);
    CHECK(diff > 1e-6);
}

TEST_CASE("dien: the mask (default) - reference, padding invariance, padding anywhere, no real step") {
    constexpr auto r = dien<"d", {.num_units = U}>(q, k, mask);
    constexpr auto ru = dien<"d", {.num_units = U, .att_type = agru_att::augru, .activation = act_tanh}>(q, k, mask);
    using O = out_t<decltype(r)>;
    using Ou = out_t<decltype(ru)>;
    std::size_t padded = 0;
    for (std::size_t i = 0; i < B * T; ++i) padded += mask_value(i) == 0.0;
    REQUIRE(padded > 0);
    test::check_forward<O>(B, ref::dien_batch(masked_fn, "d", B, T, E, U, 1, 0, true), masked_fn);
    test::check_forward<Ou>(B, ref::dien_batch(masked_fn, "d", B, T, E, U, 2, 1, true), masked_fn);
    // garbage keys at padded steps: the same output
    test::check_close(test::run<double, O>(B, garbage_fn), ref::dien_batch(masked_fn, "d", B, T, E, U, 1, 0, true), 1e-12);
    test::check_close(test::run<double, Ou>(B, garbage_fn), ref::dien_batch(masked_fn, "d", B, T, E, U, 2, 1, true), 1e-12);
    test::check_close(test::run<float, Ou>(B, garbage_fn), ref::dien_batch(masked_fn, "d", B, T, E, U, 2, 1, true), 2e-5);
    // a sequence of length L padded at the end equals the same L steps in a model of length L
    // (T = 2 here: example 0 has real steps 0 and 1 only)
    constexpr auto k2 = input<"k", 2, E>;
    constexpr auto r2 = dien<"d", {.num_units = U, .att_type = agru_att::augru, .activation = act_tanh}>(q, k2);
    auto tail = [](std::string_view n, std::size_t i) -> double {
        if (n == "mask") return i % T < 2 ? 1.0 : 0.0;
        if (n == "k" && (i / E) % T >= 2) return 100.0;  // garbage
        if (n == "k") return leaf_value("k", (i / (T * E)) * 2 * E + i % (T * E));  // rows 0, 1 of the short model
        return leaf_value(n, i);
    };
    auto full = test::run<double, Ou>(B, tail), short_ = test::run<double, out_t<decltype(r2)>>(B);
    test::check_close(full, std::vector<double>(short_.begin(), short_.end()), 1e-12);
    // no real step: every attention weight is 0 and both states stay 0
    auto none = [](std::string_view n, std::size_t i) { return n == "mask" ? 0.5 : leaf_value(n, i); };
    for (double v : test::run<double, Ou>(B, none)) CHECK(v == 0.0);
    for (float v : test::run<float, O>(B, none)) CHECK(v == 0.0f);
}

TEST_CASE("dien: variables, initializers and the regularizer") {
    constexpr auto r = dien<"d", {.num_units = U, .regularizer = regularizer{0.25, 0.5}}>(q, k);
    using Pen = std::remove_cvref_t<decltype(r.penalty)>;
    using P = program<double, out_t<decltype(r)>, Pen>;
    std::vector<std::string_view> names(P::parameters::names.begin(), P::parameters::names.end());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string_view>{"d/attention_weight", "d/augru_cell/candidate/bias", "d/augru_cell/candidate/kernel",
                                                 "d/augru_cell/gates/bias", "d/augru_cell/gates/kernel", "d/gru_cell/bias",
                                                 "d/gru_cell/kernel", "d/gru_cell/recurrent_kernel"});
    auto shape_of = [](std::string_view n) { return P::parameters::shapes[P::parameters::position(n)]; };
    CHECK(shape_of("d/gru_cell/kernel") == make_dims<E, 3 * U>());
    CHECK(shape_of("d/gru_cell/recurrent_kernel") == make_dims<U, 3 * U>());
    CHECK(shape_of("d/gru_cell/bias") == make_dims<2, 3 * U>());
    CHECK(shape_of("d/augru_cell/gates/kernel") == make_dims<2 * U, 2 * U>());
    CHECK(shape_of("d/augru_cell/gates/bias") == make_dims<2 * U>());
    CHECK(shape_of("d/augru_cell/candidate/kernel") == make_dims<2 * U, U>());
    CHECK(shape_of("d/augru_cell/candidate/bias") == make_dims<U>());
    CHECK(shape_of("d/attention_weight") == make_dims<U, U>());
    // penalty: GRU input kernel, attention matrix, all four AGRU variables (not the recurrent
    // kernel nor the GRU bias)
    double want = 0;
    for (auto [n, size] : {std::pair{"d/gru_cell/kernel", E * 3 * U}, std::pair{"d/attention_weight", U * U},
                           std::pair{"d/augru_cell/gates/kernel", 4 * U * U}, std::pair{"d/augru_cell/gates/bias", 2 * U},
                           std::pair{"d/augru_cell/candidate/kernel", 2 * U * U}, std::pair{"d/augru_cell/candidate/bias", U}})
        for (std::size_t i = 0; i < size; ++i) {
            const double v = leaf_value(n, i);
            want += 0.25 * std::abs(v) + 0.5 * v * v;
        }
    CHECK(test::run_all<P>(B)[1][0] == doctest::Approx(want).epsilon(1e-12));
}

TEST_CASE("dien: the original test (num_units 10, ones q (100, 10), k (100, 15, 10)) with the initializers") {
    constexpr auto qo = input<"q", 10>;
    constexpr auto ko = input<"k", 15, 10>;
    constexpr auto r = dien<"dien", {.num_units = 10}>(qo, ko);
    using O = out_t<decltype(r)>;
    static_assert(O::shape == make_dims<10>());
    using P = program<float, O>;
    typename P::parameters p;
    initialize<decltype(r)::inits>(p, 3);
    // Orthogonal recurrent kernel (10, 30): rows orthonormal
    auto R = p.get<"dien/gru_cell/recurrent_kernel">();
    for (std::size_t i = 0; i < 10; ++i)
        for (std::size_t j = 0; j < 10; ++j) {
            double s = 0;
            for (std::size_t c = 0; c < 30; ++c) s += double(R[i * 30 + c]) * R[j * 30 + c];
            CHECK(s == doctest::Approx(i == j ? 1.0 : 0.0).epsilon(1e-5).scale(1.0));
        }
    for (float v : p.get<"dien/gru_cell/bias">()) CHECK(v == 0.0f);
    for (float v : p.get<"dien/augru_cell/gates/bias">()) CHECK(v == 1.0f);
    for (float v : p.get<"dien/augru_cell/candidate/bias">()) CHECK(v == 1.0f);
    // He-uniform limits sqrt(6 / fan_in)
    for (auto [n, lim] : {std::pair{"dien/gru_cell/kernel", std::sqrt(6.0 / 10)}, std::pair{"dien/attention_weight", std::sqrt(6.0 / 10)},
                          std::pair{"dien/augru_cell/gates/kernel", std::sqrt(6.0 / 20)},
                          std::pair{"dien/augru_cell/candidate/kernel", std::sqrt(6.0 / 20)}}) {
        INFO(n);
        double mx = 0;
        for (float v : p.get(p.index_of(n))) mx = std::max(mx, double(std::abs(v)));
        CHECK(mx <= lim);
        CHECK(mx > 0.5 * lim);
    }
    std::vector<float> ones_q(100 * 10, 1.0f), ones_k(100 * 150, 1.0f), out(100 * 10);
    typename P::workspace ws;
    typename P::io io;
    io.input<"q">(ones_q.data()).input<"k">(ones_k.data()).output<0>(out.data());
    P::run(p, ws, 100, io);
    auto fp = [&](std::string_view n, std::size_t i) -> double {
        if (n == "q" || n == "k") return 1.0;
        return p.get(p.index_of(n))[i];
    };
    const auto want = ref::dien(fp, "dien", 0, 15, 10, 10, 1, 0, false).out;
    double sum = 0, want_sum = 0;
    for (std::size_t b = 0; b < 100; ++b)
        for (std::size_t j = 0; j < 10; ++j) {
            CHECK(out[b * 10 + j] == doctest::Approx(want[j]).epsilon(1e-4).scale(1.0));
            sum += out[b * 10 + j], want_sum += want[j];
        }
    CHECK(sum == doctest::Approx(want_sum).epsilon(1e-4));
    CHECK(want_sum != 0.0);
}

