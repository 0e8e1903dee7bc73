// The type-core sequence tests' remaining checks (ported from
// tests/test_agru.cpp, test_agru_ad.cpp, test_dien.cpp, test_dien_ad.cpp, test_dien_ad_mask.cpp,
// test_dien_pad.cpp and test_dien_plan.cpp; what test_flat_sequence.cpp,
// test_flat_sequence_dien.cpp and test_flat_sequence_dien_2.cpp already check is not repeated).
// The naive references are flat_sequence_reference.hpp's (spec layers-trans-seq-multitask-nas.md
// 2.1, 2.3) plus, here, the AGRU cell's intermediates and its no-score branch; the type core's
// scan node (its per-step records) has no counterpart on this core, whose recurrences are
// unrolled, so the checks of that node are not ported.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ctrec/layers/agru.hpp"
#include "ctrec/layers/dien.hpp"
#include "sequence_reference.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using test::leaf_value;
using test::leaves;
using seq_ref::vec;

namespace {

// The type core's comparison: every element within tol of the reference, relative to max(1, |want|).
void check_close(const vec& got, const vec& want, double tol) {
    REQUIRE(got.size() == want.size());
    double worst = 0;
    std::size_t at = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double e = std::abs(got[i] - want[i]) / std::max(1.0, std::abs(want[i]));
        if (e > worst) worst = e, at = i;
    }
    INFO("worst element " << at << ": got " << got[at] << ", want " << want[at]);
    CHECK(worst <= tol);
}
template <const auto& Y>
void check_ad(std::size_t batch) {
    test::check_derivatives<f::grad_program<double, Y>, f::jvp_program<double, Y>>(batch);
}

// ---- the AGRU cell's intermediates (spec 2.1.5): r, u, c and the new state; cell 0 AGRU,
// 1 AUGRU, 2 the update without a score (h' = (1 - u) h + u c) -----------------------------------------
struct cell_state {
    vec r, u, c, h;
};
cell_state agru_cell(const vec& x, const vec& h, double att, const seq_ref::mat& Wg, const vec& bg, const seq_ref::mat& Wc,
                     const vec& bc, int act, int cell) {
    const std::size_t U = h.size();
    cell_state s{vec(U), vec(U), vec(U), vec(U)};
    const vec gates = seq_ref::vecmat(seq_ref::cat(x, h), Wg);
    for (std::size_t j = 0; j < U; ++j) s.r[j] = seq_ref::sig(gates[j] + bg[j]), s.u[j] = seq_ref::sig(gates[U + j] + bg[U + j]);
    vec rh(U);
    for (std::size_t j = 0; j < U; ++j) rh[j] = s.r[j] * h[j];
    const vec c = seq_ref::vecmat(seq_ref::cat(x, rh), Wc);
    for (std::size_t j = 0; j < U; ++j) {
        s.c[j] = seq_ref::act(act, c[j] + bc[j]);
        const double v = (1 - att) * s.u[j];
        s.h[j] = cell == 0 ? (1 - att) * h[j] + att * s.c[j] : cell == 1 ? v * h[j] + (1 - v) * s.c[j] : (1 - s.u[j]) * h[j] + s.u[j] * s.c[j];
    }
    return s;
}

// ---- the AGRU driver (T = 5, I = 3, U = 4, as test_flat_sequence.cpp) ------------------------------
constexpr std::size_t T = 5, I = 3, U = 4;
constexpr auto x = f::input<"x", T, I>;
constexpr auto a = f::input<"a", T>;
constexpr auto mask = f::input<"mask", T>;
constexpr auto rg = fl::agru_rnn<"c", {.units = U}>(x, a);  // AGRU, tanh
constexpr auto rg_all = rg.out();
constexpr auto rg_last = rg.final_state();
constexpr auto ru = fl::agru_rnn<"c", {.units = U, .att_type = fl::agru_att::augru, .activation = cl::act_relu}>(x, a);
constexpr auto ru_all = ru.out();
constexpr auto rs = fl::agru_rnn<"c", {.units = U, .att_type = fl::agru_att::augru, .activation = cl::act_sigmoid}>(x, a);
constexpr auto rs_last = rs.final_state();
constexpr auto rl = fl::agru_rnn<"c", {.units = U, .activation = cl::act_linear}>(x, a);
constexpr auto rl_last = rl.final_state();
constexpr auto mg = fl::agru_rnn<"c", {.units = U}>(x, a, mask);
constexpr auto mg_all = mg.out();
// U = 20 (the type core's SIMD reverse-mode blocks and tails), T = 3, AUGRU
constexpr auto r20 = fl::agru_rnn<"c", {.units = 20, .att_type = fl::agru_att::augru}>(f::input<"x", 3, I>, f::input<"a", 3>).out();

double agru_mask_value(std::size_t i) { return leaf_value("mask", i) > -0.3 ? 2.0 : 0.0; }

// ---- DIEN (T = 4, E = 3, U = 5, as test_flat_sequence_dien.cpp) -----------------------------------
constexpr std::size_t dT = 4, dE = 3, dU = 5;
constexpr auto q = f::input<"q", dU>;
constexpr auto k = f::input<"k", dT, dE>;
constexpr auto dmask = f::input<"mask", dT>;
constexpr auto d_agru = fl::dien<"d", {.num_units = dU}>(q, k).out();  // AGRU, relu (the default)
constexpr auto d_augru = fl::dien<"d", {.num_units = dU, .att_type = fl::agru_att::augru, .activation = cl::act_tanh}>(q, k).out();
constexpr auto d_masked = fl::dien<"d", {.num_units = dU}>(q, k, dmask).out();
constexpr auto d_augru_tanh = fl::dien<"d", {.num_units = dU, .att_type = fl::agru_att_of("AUGRU"), .activation = cl::act_tanh}>(q, k).out();
constexpr auto d_agru_sigmoid = fl::dien<"d", {.num_units = dU, .activation = cl::act_sigmoid}>(q, k).out();
constexpr auto d_compat = fl::dien<"d", {.num_units = dU, .att_type = fl::agru_att::augru, .monolith_compat = true,
                                         .acknowledge_compat_overrides = true}>(q, k, dmask).out();
// padded (0) / real (1, 2) steps; every example keeps at least one real step (test_dien.cpp's rule)
double dien_mask_value(std::size_t i) {
    const std::size_t b = i / dT, t = i % dT;
    if (t == b % dT) return 2.0;
    return leaf_value("mask", i) > 0 ? 1.0 : 0.0;
}

} // namespace

// ==== AGRU ================================================================================================

TEST_CASE("scan: the spec's reference steps (Keras GRU of 2.3, AGRU / AUGRU of 2.1)") {
    // (the type core's scan node, whose per-step records these rows were, has no counterpart here:
    // the values are checked on the naive cells, which the flat layers are tested against)
    // Keras GRU, E = U = 1, relu, from h = 0.5: W = [.1 .2 .3], R = [.4 .5 .6], bias rows [[.01 .02 .03] [.04 .05 .06]]
    leaves K;
    K["W"] = {0.1, 0.2, 0.3};
    K["R"] = {0.4, 0.5, 0.6};
    K["b"] = {0.01, 0.02, 0.03, 0.04, 0.05, 0.06};
    const vec h = seq_ref::keras_gru({1.0}, {0.5}, seq_ref::mat(K, "W", 1, 3), seq_ref::mat(K, "R", 1, 3), seq_ref::mat(K, "b", 2, 3), 1);
    CHECK(h[0] == doctest::Approx(0.5230557).epsilon(1e-7));
    // AGRU / AUGRU / no score, I = U = 1, tanh, x = 1, h = 0.5, a = 0.3: every intermediate
    leaves C;
    C["Wg"] = {0.1, 0.2, 0.3, 0.4};
    C["Wc"] = {0.5, -0.6};
    const seq_ref::mat Wg(C, "Wg", 2, 2), Wc(C, "Wc", 2, 1);
    for (int cell : {0, 1, 2}) {
        INFO("cell " << cell);
        const cell_state st = agru_cell({1.0}, {0.5}, 0.3, Wg, {1, 1}, Wc, {1}, 2, cell);
        CHECK(st.r[0] == doctest::Approx(0.7772999).epsilon(1e-7));
        CHECK(st.u[0] == doctest::Approx(0.8021839).epsilon(1e-7));
        CHECK(st.c[0] == doctest::Approx(0.8529307).epsilon(1e-7));
        CHECK(st.h[0] == doctest::Approx(cell == 0 ? 0.6058792 : cell == 1 ? 0.6547500 : 0.7831153).epsilon(1e-7));
        // flat_sequence_reference.hpp's step (what the flat tests compare against) is the same
        if (cell < 2) CHECK(seq_ref::agru_step({1.0}, {0.5}, 0.3, Wg, {1, 1}, Wc, {1}, 2, cell)[0] == st.h[0]);
    }
}

TEST_CASE("agru_rnn: AGRU and AUGRU against the naive reference, float64 and float32, with and without a mask") {
    for (std::size_t batch : {1, 3, 70}) {
        INFO("batch " << batch);
        leaves L;
        const auto g = test::run<f::program<float, rg_all, rg_last>>(L, batch);
        const seq_ref::rnn_out wg = seq_ref::agru_batch(L, "c", batch, T, I, U, 2, 0, false);
        check_close(g[0], wg.all, 2e-5);
        check_close(g[1], wg.last, 2e-5);
        check_close(test::run<f::program<float, rs_last>>(L, batch)[0], seq_ref::agru_batch(L, "c", batch, T, I, U, 3, 1, false).last, 2e-5);
        check_close(test::run<f::program<float, rl_last>>(L, batch)[0], seq_ref::agru_batch(L, "c", batch, T, I, U, 0, 0, false).last, 2e-5);
        leaves M;
        vec m(batch * T);
        for (std::size_t i = 0; i < m.size(); ++i) m[i] = agru_mask_value(i);
        M["mask"] = m;
        const vec gm = test::run<f::program<float, mg_all>>(M, batch)[0];
        check_close(gm, seq_ref::agru_batch(M, "c", batch, T, I, U, 2, 0, true).all, 2e-5);
    }
}

TEST_CASE("agru_rnn: derivatives for x, the scores and every variable through the recurrence (float64)") {
    // (AGRU tanh, masked AUGRU sigmoid and AGRU's zero update-gate gradient: test_flat_sequence.cpp)
    check_ad<ru_all>(3);
}

TEST_CASE("scan: derivatives with U = 20 (the SIMD dot products of the reverse mode: full vectors, 4-row blocks, tails)") {
    // (the scan node itself has no counterpart here: the AUGRU with U = 20 only)
    check_ad<r20>(2);
}

// ==== DIEN ================================================================================================

TEST_CASE("dien: AGRU and AUGRU, several activations, against the naive reference") {
    // float32 for AGRU relu and sigmoid and AUGRU tanh (float64, and AUGRU relu in float32:
    // test_flat_sequence_dien.cpp)
    for (std::size_t batch : {1, 3, 70}) {
        INFO("batch " << batch);
        leaves L;
        test::fill<f::program<float, d_agru>>(L, batch);
        check_close(test::run<f::program<float, d_agru>>(L, batch)[0], seq_ref::dien_batch(L, "d", batch, dT, dE, dU, 1, 0, false), 2e-5);
        check_close(test::run<f::program<float, d_augru_tanh>>(L, batch)[0], seq_ref::dien_batch(L, "d", batch, dT, dE, dU, 2, 1, false), 2e-5);
        check_close(test::run<f::program<float, d_agru_sigmoid>>(L, batch)[0], seq_ref::dien_batch(L, "d", batch, dT, dE, dU, 3, 0, false), 2e-5);
    }
}

TEST_CASE("dien: monolith_compat uses AGRU whatever att_type says, and ignores the mask") {
    // float32 (float64 and the rest: test_flat_sequence_dien.cpp)
    for (std::size_t batch : {1, 3, 70}) {
        INFO("batch " << batch);
        leaves L;
        vec m(batch * dT);
        for (std::size_t i = 0; i < m.size(); ++i) m[i] = dien_mask_value(i);
        L["mask"] = m;  // not an input of the model: the reference ignores it too
        test::fill<f::program<float, d_compat>>(L, batch);
        check_close(test::run<f::program<float, d_compat>>(L, batch)[0], seq_ref::dien_batch(L, "d", batch, dT, dE, dU, 1, 0, false), 2e-5);
    }
}

TEST_CASE("dien: the mask (default) - reference, padding invariance, padding anywhere, no real step") {
    // float32 for the AGRU (the rest: test_flat_sequence_dien.cpp)
    for (std::size_t batch : {1, 3, 70}) {
        INFO("batch " << batch);
        leaves L;
        vec m(batch * dT);
        for (std::size_t i = 0; i < m.size(); ++i) m[i] = dien_mask_value(i);
        L["mask"] = m;
        const vec got = test::run<f::program<float, d_masked>>(L, batch)[0];
        check_close(got, seq_ref::dien_batch(L, "d", batch, dT, dE, dU, 1, 0, true), 2e-5);
    }
}

TEST_CASE("dien: derivatives, AGRU (relu, the default) and AUGRU (tanh)") {
    check_ad<d_agru>(3);
    check_ad<d_augru>(3);
}

namespace {
constexpr auto d_t50 = fl::dien<"d", {.num_units = dU}>(q, f::input<"k", 50, dE>).out();
} // namespace

TEST_CASE("dien: the plan does not grow with T; the scan keeps O(T U) per example") {
    // (the type core's checks that the plan does not grow with T and that its scan nodes keep
    // O(T U) records are not ported: this core unrolls the recurrences, so the node count grows
    // with T by design (dien.hpp, agru.hpp); the memory per example still grows linearly)
    using F4 = f::program<float, d_agru>;  // T = 4
    using F50 = f::program<float, d_t50>;
    CHECK(F50::size > F4::size);  // unrolled
    CHECK(F50::workspace_size < 50 * F4::workspace_size);
    CHECK(F50::pl.tile_elems < 50 * F4::pl.tile_elems);
}
