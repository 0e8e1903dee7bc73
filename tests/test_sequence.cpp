// The AGRU / AUGRU attention RNN (include/ctrec/layers/agru.hpp,
// spec layers-trans-seq-multitask-nas.md 2.1): the spec's reference step through the layer,
// the unrolled driver against the naive float64 driver of flat_sequence_reference.hpp (four
// activations, AGRU and AUGRU, with and without a mask; CPU and reference backends; float),
// variables / initializers / penalty, the original test, float64 central differences and
// JVP/VJP duality, AGRU's zero gradient on the update gate. DIEN is in test_flat_sequence_dien.cpp
// (split for compile time).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/agru.hpp"
#include "sequence_reference.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using test::leaves;
using seq_ref::vec;

namespace {

// ---- the spec's step (2.1.10): I = U = 1, step 1 drives h from 0 to 0.5, step 2 is the spec's
constexpr auto x21 = f::input<"x", 2, 1>;
constexpr auto a2 = f::input<"a", 2>;
constexpr auto step_g = fl::agru_rnn<"c", {.units = 1}>(x21, a2);
constexpr auto step_g_all = step_g.out();
constexpr auto step_g_last = step_g.final_state();
constexpr auto step_u = fl::agru_rnn<"c", {.units = 1, .att_type = fl::agru_att_of("augru")}>(x21, a2);
constexpr auto step_u_last = step_u.final_state();

// ---- the driver ----------------------------------------------------------------------------------
constexpr std::size_t T = 5, I = 3, U = 4;
constexpr auto x = f::input<"x", T, I>;
constexpr auto a = f::input<"a", T>;
constexpr auto mask = f::input<"mask", T>;
// check_derivatives draws every leaf in [-1, 1]: a 0 / 2 mask made from a raw input
constexpr auto mask_of_raw = f::where(f::greater(f::input<"mask_raw", T>, f::lit<-0.3>), f::lit<2.0>, f::lit<0.0>);

constexpr auto rg = fl::agru_rnn<"c", {.units = U}>(x, a);  // AGRU, tanh (the source's None)
constexpr auto rg_all = rg.out();
constexpr auto rg_last = rg.final_state();
constexpr auto ru = fl::agru_rnn<"c", {.units = U, .att_type = fl::agru_att::augru, .activation = cl::act_relu}>(x, a);
constexpr auto ru_all = ru.out();
constexpr auto ru_last = ru.final_state();
constexpr auto rs = fl::agru_rnn<"c", {.units = U, .att_type = fl::agru_att::augru, .activation = cl::act_sigmoid}>(x, a);
constexpr auto rs_all = rs.out();
constexpr auto rs_last = rs.final_state();
constexpr auto rl = fl::agru_rnn<"c", {.units = U, .activation = cl::act_linear}>(x, a);
constexpr auto rl_all = rl.out();
constexpr auto rl_last = rl.final_state();
constexpr auto mg = fl::agru_rnn<"c", {.units = U}>(x, a, mask);
constexpr auto mg_all = mg.out();
constexpr auto mg_last = mg.final_state();
constexpr auto mu = fl::agru_rnn<"c", {.units = U, .att_type = fl::agru_att::augru}>(x, a, mask);
constexpr auto mu_all = mu.out();
constexpr auto mu_last = mu.final_state();
constexpr auto ms = fl::agru_rnn<"c", {.units = U, .att_type = fl::agru_att::augru, .activation = cl::act_sigmoid}>(x, a, mask_of_raw);
constexpr auto ms_all = ms.out();
constexpr auto reg = fl::agru_rnn<"c", {.units = U, .regularizer = cl::regularizer{0.25, 0.5}}>(x, a);
constexpr auto reg_pen = reg.penalty();

// padded (0) / real (2) steps from the leaf value
double mask_value(std::size_t i) { return test::leaf_value("mask", i) > -0.3 ? 2.0 : 0.0; }
void set_mask(leaves& L, std::size_t batch) {
    vec m(batch * T);
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = mask_value(i);
    L["mask"] = m;
}

// P's outputs (all, last) on CPU and reference backends against the naive driver
template <class P>
void check_driver(std::size_t batch, int act, int cell, bool masked, double tol) {
    leaves L;
    if (masked) set_mask(L, batch);
    const auto got = test::run<P>(L, batch);
    const auto ref = test::run<typename P::template with_backend<f::reference_backend>>(L, batch);
    const seq_ref::rnn_out want = seq_ref::agru_batch(L, "c", batch, T, I, U, act, cell, masked);
    INFO("batch " << batch << ", activation " << act << ", cell " << cell << ", masked " << masked);
    REQUIRE(got.size() == 2);
    CHECK(test::max_rel_diff(got[0], want.all) <= tol);
    CHECK(test::max_rel_diff(got[1], want.last) <= tol);
    CHECK(test::max_rel_diff(ref[0], want.all) <= tol);
    CHECK(test::max_rel_diff(ref[1], want.last) <= tol);
}

} // namespace

TEST_CASE("agru: the spec's reference step (2.1) through the layer, AGRU and AUGRU") {
    const double x1 = (std::atanh(0.5) - 1.0) / 0.5;  // c_1 = tanh(0.5 x1 + 1) = 0.5, and a_1 = 1
    leaves L;
    L["x"] = {x1, 1.0};
    L["a"] = {1.0, 0.3};
    L["c/gates/kernel"] = {0.1, 0.2, 0.3, 0.4};  // rows x, h; columns r, u
    L["c/gates/bias"] = {1.0, 1.0};
    L["c/candidate/kernel"] = {0.5, -0.6};
    L["c/candidate/bias"] = {1.0};
    const auto g = test::run<f::program<double, step_g_all, step_g_last>>(L, 1);
    CHECK(g[0][0] == doctest::Approx(0.5).epsilon(1e-12));
    CHECK(g[1][0] == doctest::Approx(0.6058792).epsilon(1e-7));
    CHECK(g[0][1] == g[1][0]);
    CHECK(test::run<f::program<double, step_u_last>>(L, 1)[0][0] == doctest::Approx(0.6547500).epsilon(1e-7));
    CHECK(test::run<f::program<float, step_u_last>>(L, 1)[0][0] == doctest::Approx(0.6547500).epsilon(1e-6));
    // the naive cell gives the same step
    leaves R;
    R["W"] = {0.1, 0.2, 0.3, 0.4};
    R["C"] = {0.5, -0.6};
    const seq_ref::mat Wg(R, "W", 2, 2), Wc(R, "C", 2, 1);
    CHECK(seq_ref::agru_step({1.0}, {0.5}, 0.3, Wg, {1, 1}, Wc, {1}, 2, 0)[0] == doctest::Approx(0.6058792).epsilon(1e-7));
    CHECK(seq_ref::agru_step({1.0}, {0.5}, 0.3, Wg, {1, 1}, Wc, {1}, 2, 1)[0] == doctest::Approx(0.6547500).epsilon(1e-7));
}

TEST_CASE("agru: AGRU and AUGRU, four activations, against the naive driver (CPU, reference, float)") {
    for (std::size_t batch : {1, 5, 70}) {
        check_driver<f::program<double, rg_all, rg_last>>(batch, 2, 0, false, 1e-12);
        check_driver<f::program<double, ru_all, ru_last>>(batch, 1, 1, false, 1e-12);
        check_driver<f::program<double, rs_all, rs_last>>(batch, 3, 1, false, 1e-12);
        check_driver<f::program<double, rl_all, rl_last>>(batch, 0, 0, false, 1e-12);
        check_driver<f::program<float, ru_all, ru_last>>(batch, 1, 1, false, 1e-5);
    }
    // AGRU and AUGRU (both tanh; a mask of 2s: every step real) differ
    leaves L;
    L["mask"] = vec(5 * T, 2.0);
    const auto g = test::run<f::program<double, rg_last>>(L, 5)[0];
    const auto u = test::run<f::program<double, mu_last>>(L, 5)[0];
    CHECK(test::max_rel_diff(u, seq_ref::agru_batch(L, "c", 5, T, I, U, 2, 1, false).last) <= 1e-12);
    double d = 0;
    for (std::size_t i = 0; i < g.size(); ++i) d += std::abs(g[i] - u[i]);
    CHECK(d > 1e-3);
}

TEST_CASE("agru: the mask - padded steps keep the state, whatever x holds there") {
    for (std::size_t batch : {1, 5, 70}) {
        check_driver<f::program<double, mg_all, mg_last>>(batch, 2, 0, true, 1e-12);
        check_driver<f::program<double, mu_all, mu_last>>(batch, 2, 1, true, 1e-12);
        check_driver<f::program<float, mu_all, mu_last>>(batch, 2, 1, true, 1e-5);
    }
    const std::size_t batch = 5;
    std::size_t padded = 0;
    for (std::size_t i = 0; i < batch * T; ++i) padded += mask_value(i) == 0.0;
    REQUIRE(padded > 0);
    REQUIRE(padded < batch * T);
    leaves L;
    set_mask(L, batch);
    using P = f::program<double, mu_all, mu_last>;
    const auto clean = test::run<P>(L, batch);
    // the mask changes the result
    CHECK(test::max_rel_diff(clean[1], seq_ref::agru_batch(L, "c", batch, T, I, U, 2, 1, false).last) > 1e-6);
    // garbage x at padded steps: the same outputs
    for (std::size_t i = 0; i < batch * T * I; ++i)
        if (mask_value(i / I) == 0.0) L["x"][i] = 40.0 * test::leaf_value("junk", i) - 3.0;
    const auto dirty = test::run<P>(L, batch);
    CHECK(test::max_rel_diff(dirty[0], clean[0]) <= 1e-12);
    CHECK(test::max_rel_diff(dirty[1], clean[1]) <= 1e-12);
    // a padded step repeats the previous output row (zeros before the first real step)
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t t = 0; t < T; ++t)
            if (mask_value(b * T + t) == 0.0)
                for (std::size_t j = 0; j < U; ++j)
                    CHECK(clean[0][(b * T + t) * U + j] == (t == 0 ? 0.0 : clean[0][(b * T + t - 1) * U + j]));
}

TEST_CASE("agru: variables, initializers, the regularizer on all four; the original test") {
    // creation order and initializers: kernels He-normal (the source's None), biases Ones
    using W = ctrec::init::spec::which;
    REQUIRE(rg.n_inits == 4);
    const char* names[] = {"c/gates/kernel", "c/gates/bias", "c/candidate/kernel", "c/candidate/bias"};
    const W kinds[] = {W::he_normal, W::ones, W::he_normal, W::ones};
    const ctrec::dims shapes[] = {ctrec::make_dims<I + U, 2 * U>(), ctrec::make_dims<2 * U>(), ctrec::make_dims<I + U, U>(),
                                  ctrec::make_dims<U>()};
    for (std::size_t i = 0; i < 4; ++i) {
        CHECK(rg.g.name_of(rg.inits[i].var) == names[i]);
        CHECK(rg.inits[i].spec.w == kinds[i]);
        CHECK(rg.g.nodes[rg.inits[i].var].shape == shapes[i]);
    }
    CHECK(!rg.has_penalty());
    {
        leaves L;
        const double got = test::run<f::program<double, reg_pen>>(L, 1)[0][0];
        double want = 0;
        for (const char* n : names)
            for (double v : seq_ref::get(L, n)) want += 0.25 * std::abs(v) + 0.5 * v * v;
        CHECK(got == doctest::Approx(want).epsilon(1e-12));
    }
    // original test: units 10, sigmoid, Glorot-normal; the driver on ones (100, 20, 10) / (100, 20)
    static constexpr auto xo = f::input<"x", 20, 10>;
    static constexpr auto ao = f::input<"a", 20>;
    static constexpr auto ro = fl::agru_rnn<"agru_cell", {.units = 10, .activation = cl::act_sigmoid, .initializer = ctrec::init::GlorotNormal{}}>(xo, ao);
    static constexpr auto ro_all = ro.out();
    static constexpr auto ro_last = ro.final_state();
    using P = f::program<float, ro_all, ro_last>;
    P::parameters p;
    fl::initialize<ro>(p, 5);
    for (float v : p.get<"agru_cell/gates/bias">()) CHECK(v == 1.0f);
    for (float v : p.get<"agru_cell/candidate/bias">()) CHECK(v == 1.0f);
    double mx = 0;
    for (float v : p.get<"agru_cell/gates/kernel">()) mx = std::max(mx, double(std::abs(v)));
    CHECK(mx > 0);
    CHECK(mx <= 2 * std::sqrt(2.0 / 40) / 0.87962566103423978 + 1e-6);  // truncated at 2 sigma
    leaves L;
    for (std::size_t k = 0; k < P::n_params; ++k) {
        const auto w = p.get(k);
        L[P::parameters::names[k]] = vec(w.begin(), w.end());
    }
    const std::size_t batch = 100;
    L["x"] = vec(batch * 200, 1.0);
    L["a"] = vec(batch * 20, 1.0);
    const auto got = test::run<P>(L, batch);
    std::vector<vec> xs(20, vec(10, 1.0));
    const seq_ref::mat Wg(L, "agru_cell/gates/kernel", 20, 20), Wc(L, "agru_cell/candidate/kernel", 20, 10);
    const auto hs = seq_ref::agru_rnn(xs, vec(20, 1.0), {}, 10, Wg, seq_ref::get(L, "agru_cell/gates/bias"), Wc,
                                      seq_ref::get(L, "agru_cell/candidate/bias"), 3, 0);
    double sum = 0, want_sum = 0;
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t j = 0; j < 10; ++j) {
            CHECK(got[1][b * 10 + j] == doctest::Approx(hs.back()[j]).epsilon(1e-5));
            sum += got[1][b * 10 + j], want_sum += hs.back()[j];
        }
    CHECK(sum == doctest::Approx(want_sum).epsilon(1e-5));
    CHECK(got[0][19 * 10] == got[1][0]);
}

TEST_CASE("agru: derivatives for x, the scores and every variable (float64); AGRU's update gate gets none") {
    test::check_derivatives<f::grad_program<double, rg_all>, f::jvp_program<double, rg_all>>(3);
    test::check_derivatives<f::grad_program<double, ru_last>, f::jvp_program<double, ru_last>>(3);
    test::check_derivatives<f::grad_program<double, ms_all>, f::jvp_program<double, ms_all>>(3);
    // AGRU: the u half of gates/kernel and gates/bias gets exactly zero gradient (spec 2.1.7)
    using G = f::grad_program<double, rg_all>;
    leaves L;
    const auto outs = test::run<G>(L, 3);
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
    // the masked program's mask really pads some steps
    leaves M;
    test::fill<f::program<double, ms_all>>(M, 3);
    std::size_t padded = 0;
    for (double v : M["mask_raw"]) padded += v <= -0.3;
    CHECK(padded > 0);
    CHECK(padded < 3 * T);
}
