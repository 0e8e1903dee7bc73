// Derivatives of the recurrence primitive and the AGRU attention RNN (spec 2.1, 2.3): reverse
// mode vs central finite differences in float64 for inputs, scores and every variable through
// the recurrence, JVP vs a directional difference, JVP/VJP duality (check_derivatives), with
// and without a mask; AGRU's zero gradient on the update gate. (Split from test_agru.cpp to
// keep each translation unit's compile time down.)
#include "dien_reference.hpp"

#include "ctrec/layers/agru.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
template <class R, std::size_t I = 0>
using out_t = std::remove_cvref_t<std::tuple_element_t<I, decltype(R::out)>>;
constexpr std::size_t T = 4, I = 3, U = 5, B = 3;
constexpr auto x = input<"x", T, I>;
constexpr auto a = input<"a", T>;
constexpr auto mask = input<"mask", T>;
} // namespace

TEST_CASE("agru_rnn: derivatives for x, the scores and every variable through the recurrence (float64)") {
    constexpr auto rg = agru_rnn<"c", {.units = U}>(x, a);
    constexpr auto ru = agru_rnn<"c", {.units = U, .att_type = agru_att::augru, .activation = act_relu}>(x, a);
    constexpr auto mu = agru_rnn<"c", {.units = U, .att_type = agru_att::augru, .activation = act_sigmoid}>(x, a, mask);
    test::check_ad<out_t<decltype(rg), 0>>(B);
    test::check_ad<out_t<decltype(ru), 0>>(B);
    test::check_ad<out_t<decltype(mu), 1>>(B, [](std::string_view n, double v) { return n == "mask" ? (v > -0.3 ? 2.0 : 0.0) : v; });
    // AGRU: the u half of gates/kernel and gates/bias gets zero gradient (spec 2.1.7)
    using G = grad_program<double, out_t<decltype(rg), 0>>;
    auto outs = test::run_all<G>(B);
    const auto& gk = outs[G::grad<"c/gates/kernel">];
    const auto& gb = outs[G::grad<"c/gates/bias">];
    double r_part = 0;
    for (std::size_t i = 0; i < I + U; ++i)
        for (std::size_t j = 0; j < 2 * U; ++j) {
            if (j >= U) CHECK(gk[i * 2 * U + j] == 0.0);
            else r_part += std::abs(gk[i * 2 * U + j]);
        }
    for (std::size_t j = U; j < 2 * U; ++j) CHECK(gb[j] == 0.0);
    CHECK(r_part > 0);
}

TEST_CASE("scan: Keras GRU primitive derivatives (X, recurrent kernel, recurrent bias), masked and not") {
    using X = input_node<"X", make_dims<T, 3 * U>()>;
    using R = param_node<"R", make_dims<U, 3 * U>()>;
    using br = param_node<"br", make_dims<3 * U>()>;
    using G = scan_node<scan_cell::keras_gru, scan_act::tanh, X, R, br, const_node<0.0>>;
    using Gm = scan_node<scan_cell::keras_gru, scan_act::relu, X, R, br, const_node<0.0>, input_node<"mask", make_dims<T>()>>;
    test::check_ad<slice_node<1, 0, U, G>>(B);
    test::check_ad<slice_node<1, 0, U, Gm>>(B, [](std::string_view n, double v) { return n == "mask" ? (v > -0.3 ? 2.0 : 0.0) : v; });
    // against the naive Keras step with input projections given directly
    auto rec = test::run<double, G>(B);
    auto fk = [](std::string_view n, std::size_t i) { return leaf_value(n, i); };
    ref::mat R0(fk, "R", U, 3 * U);
    for (std::size_t b = 0; b < B; ++b) {
        ref::vec h(U, 0.0);
        for (std::size_t t = 0; t < T; ++t) {
            // a "kernel" of identity on 3U inputs: x W = X_t, and the input bias is 0
            auto id = [](std::string_view n, std::size_t i) -> double {
                if (n == "I") return i / (3 * U) == i % (3 * U) ? 1.0 : 0.0;
                if (n == "b") return i < 3 * U ? 0.0 : leaf_value("br", i - 3 * U);
                return 0.0;
            };
            auto s = ref::keras_gru(ref::leaf_vec(fk, "X", 3 * U, (b * T + t) * 3 * U), h, ref::mat(id, "I", 3 * U, 3 * U), R0,
                                    ref::mat(id, "b", 2, 3 * U), 2);
            h = s.h;
            for (std::size_t j = 0; j < U; ++j) {
                const double* row = &rec[((b * T + t) * 5 * U)];
                CHECK(row[j] == doctest::Approx(s.h[j]).epsilon(1e-12));
                CHECK(row[U + j] == doctest::Approx(s.z[j]).epsilon(1e-12));
                CHECK(row[2 * U + j] == doctest::Approx(s.r[j]).epsilon(1e-12));
                CHECK(row[3 * U + j] == doctest::Approx(s.hh[j]).epsilon(1e-12));
                CHECK(row[4 * U + j] == doctest::Approx(s.gh[j]).epsilon(1e-12));
            }
        }
    }
}


TEST_CASE("scan: derivatives with U = 20 (the SIMD dot products of the reverse mode: full vectors, 4-row blocks, tails)") {
    constexpr std::size_t T2 = 3, U2 = 20;
    using X = input_node<"X", make_dims<T2, 3 * U2>()>;
    using R = param_node<"R", make_dims<U2, 3 * U2>()>;
    using br = param_node<"br", make_dims<3 * U2>()>;
    using G = scan_node<scan_cell::keras_gru, scan_act::tanh, X, R, br, const_node<0.0>>;
    test::check_ad<slice_node<1, 0, U2, G>>(2);
    constexpr auto x2 = input<"x", T2, I>;
    constexpr auto a2 = input<"a", T2>;
    test::check_ad<out_t<decltype(agru_rnn<"c", {.units = U2, .att_type = agru_att::augru}>(x2, a2))>>(2);
}
