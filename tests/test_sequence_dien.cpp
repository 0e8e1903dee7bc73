// DIEN (include/ctrec/layers/dien.hpp, spec
// layers-trans-seq-multitask-nas.md 2.3): against the naive float64 reference of
// flat_sequence_reference.hpp (AGRU and AUGRU, four activations, with and without a mask,
// monolith_compat; CPU and reference backends; float); padding invariance (garbage at padded
// steps, padding at the end equals a shorter model, no real step gives 0); padding changes no
// gradient and padded keys get none. Variables, the original test and the derivative checks
// are in test_flat_sequence_dien_2.cpp (split for compile time).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
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

constexpr std::size_t T = 4, E = 3, U = 5;
constexpr auto q = f::input<"q", U>;
constexpr auto k = f::input<"k", T, E>;
constexpr auto mask = f::input<"mask", T>;

constexpr auto r = fl::dien<"d", {.num_units = U}>(q, k);  // AGRU, relu
constexpr auto r_y = r.out();
constexpr auto ru = fl::dien<"d", {.num_units = U, .att_type = fl::agru_att::augru}>(q, k);
constexpr auto ru_y = ru.out();
constexpr auto rt = fl::dien<"d", {.num_units = U, .att_type = fl::agru_att_of("AUGRU"), .activation = cl::act_tanh}>(q, k);
constexpr auto rt_y = rt.out();
constexpr auto rs = fl::dien<"d", {.num_units = U, .activation = cl::act_sigmoid}>(q, k);
constexpr auto rs_y = rs.out();
constexpr auto rc = fl::dien<"d", {.num_units = U, .att_type = fl::agru_att::augru, .monolith_compat = true,
                                   .acknowledge_compat_overrides = true}>(q, k, mask);
constexpr auto rc_y = rc.out();
constexpr auto m = fl::dien<"d", {.num_units = U}>(q, k, mask);
constexpr auto m_y = m.out();
constexpr auto mu = fl::dien<"d", {.num_units = U, .att_type = fl::agru_att::augru, .activation = cl::act_tanh}>(q, k, mask);
constexpr auto mu_y = mu.out();

// padded (0) / real (1, 2) steps; every example keeps at least one real step
double mask_value(std::size_t i) {
    const std::size_t b = i / T, t = i % T;
    if (t == b % T) return 2.0;
    return leaf_value("mask", i) > 0 ? 1.0 : 0.0;
}
void set_mask(leaves& L, std::size_t batch) {
    vec v(batch * T);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = mask_value(i);
    L["mask"] = v;
}
// garbage keys at the padded steps
void garble(leaves& L, std::size_t batch) {
    for (std::size_t i = 0; i < batch * T * E; ++i)
        if (mask_value(i / E) == 0.0) L["k"][i] = 50.0 * leaf_value("junk", i) + 7.0;
}

// P (CPU and reference backends) against the naive DIEN
template <class P>
void check_dien(std::size_t batch, int act, int cell, bool masked, double tol) {
    leaves L;
    if (masked) set_mask(L, batch);
    const vec got = test::run<P>(L, batch)[0];
    const vec ref = test::run<typename P::template with_backend<f::reference_backend>>(L, batch)[0];
    const vec want = seq_ref::dien_batch(L, "d", batch, T, E, U, act, cell, masked);
    INFO("batch " << batch << ", activation " << act << ", cell " << cell << ", masked " << masked);
    CHECK(test::max_rel_diff(got, want) <= tol);
    CHECK(test::max_rel_diff(ref, want) <= tol);
}

} // namespace

TEST_CASE("dien: AGRU and AUGRU, several activations, against the naive reference (CPU, reference, float)") {
    static_assert(r.shape() == ctrec::make_dims<U>());
    for (std::size_t batch : {1, 5, 70}) {
        check_dien<f::program<double, r_y>>(batch, 1, 0, false, 1e-12);
        check_dien<f::program<double, ru_y>>(batch, 1, 1, false, 1e-12);
        check_dien<f::program<double, rt_y>>(batch, 2, 1, false, 1e-12);
        check_dien<f::program<double, rs_y>>(batch, 3, 0, false, 1e-12);
        check_dien<f::program<float, ru_y>>(batch, 1, 1, false, 1e-5);
    }
    // AGRU and AUGRU differ
    leaves L;
    const vec a = test::run<f::program<double, r_y>>(L, 5)[0], b = test::run<f::program<double, ru_y>>(L, 5)[0];
    double diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) diff += std::abs(a[i] - b[i]);
    CHECK(diff > 1e-3);
}

TEST_CASE("dien: monolith_compat uses AGRU whatever att_type says, and ignores the mask") {
    using P = f::program<double, rc_y>;
    CHECK(P::n_inputs == 2);  // q, k: the mask is not in the model
    for (std::size_t batch : {1, 5, 70}) {
        leaves L;
        set_mask(L, batch);
        const vec got = test::run<P>(L, batch)[0];
        const vec want = seq_ref::dien_batch(L, "d", batch, T, E, U, 1, 0, false);  // AGRU, every step processed
        CHECK(test::max_rel_diff(got, want) <= 1e-12);
        CHECK(test::max_rel_diff(test::run<P::with_backend<f::reference_backend>>(L, batch)[0], want) <= 1e-12);
        if (batch == 1) continue;
        // the mask has padded steps, so honouring it would give another result
        CHECK(test::max_rel_diff(got, seq_ref::dien_batch(L, "d", batch, T, E, U, 1, 0, true)) > 1e-6);
        // and garbage at padded steps changes it (the source's behaviour)
        garble(L, batch);
        CHECK(test::max_rel_diff(test::run<P>(L, batch)[0], got) > 1e-6);
    }
}

TEST_CASE("dien: the mask (default) - reference, padding invariance, padding at the end, no real step") {
    using O = f::program<double, m_y>;
    using Ou = f::program<double, mu_y>;
    for (std::size_t batch : {1, 5, 70}) {
        check_dien<O>(batch, 1, 0, true, 1e-12);
        check_dien<Ou>(batch, 2, 1, true, 1e-12);
        check_dien<f::program<float, mu_y>>(batch, 2, 1, true, 1e-5);
    }
    const std::size_t B = 5;
    std::size_t padded = 0;
    for (std::size_t i = 0; i < B * T; ++i) padded += mask_value(i) == 0.0;
    REQUIRE(padded > 0);
    // garbage keys at padded steps: the same output
    {
        leaves L;
        set_mask(L, B);
        const vec clean_m = test::run<O>(L, B)[0], clean_u = test::run<Ou>(L, B)[0];
        const vec want_u = seq_ref::dien_batch(L, "d", B, T, E, U, 2, 1, true);
        garble(L, B);
        CHECK(test::max_rel_diff(test::run<O>(L, B)[0], clean_m) <= 1e-12);
        CHECK(test::max_rel_diff(test::run<Ou>(L, B)[0], clean_u) <= 1e-12);
        CHECK(test::max_rel_diff(test::run<Ou::with_backend<f::reference_backend>>(L, B)[0], clean_u) <= 1e-12);
        CHECK(test::max_rel_diff(test::run<f::program<float, mu_y>>(L, B)[0], want_u) <= 2e-5);
    }
    // a sequence of length 2 padded at the end equals the same 2 steps in a model of length 2
    {
        static constexpr auto k2 = f::input<"k", 2, E>;
        static constexpr auto r2 = fl::dien<"d", {.num_units = U, .att_type = fl::agru_att::augru, .activation = cl::act_tanh}>(q, k2);
        static constexpr auto r2_y = r2.out();
        leaves S;
        const vec short_ = test::run<f::program<double, r2_y>>(S, B)[0];
        leaves L = S;
        vec kk(B * T * E), mm(B * T);
        for (std::size_t i = 0; i < kk.size(); ++i) {
            const std::size_t b = i / (T * E), t = i / E % T, e = i % E;
            kk[i] = t < 2 ? S["k"][(b * 2 + t) * E + e] : 100.0;
        }
        for (std::size_t i = 0; i < mm.size(); ++i) mm[i] = i % T < 2 ? 1.0 : 0.0;
        L["k"] = kk;
        L["mask"] = mm;
        CHECK(test::max_rel_diff(test::run<Ou>(L, B)[0], short_) <= 1e-12);
    }
    // no real step: every attention weight is 0 and both states stay 0
    {
        leaves L;
        L["mask"] = vec(B * T, 0.5);
        const vec zu = test::run<Ou>(L, B)[0], zf = test::run<f::program<float, m_y>>(L, B)[0];
        REQUIRE(zu.size() == B * U);
        for (double v : zu) CHECK(v == 0.0);
        for (double v : zf) CHECK(v == 0.0);
    }
}

TEST_CASE("dien: padding changes no gradient; padded keys get zero gradient") {
    using G = f::grad_program<double, mu_y>;
    const std::size_t B = 3;
    auto pad_value = [](std::size_t i) { return i % T == 1 || (i / T == 2 && i % T == 3) ? 0.0 : 1.0; };
    leaves clean;
    vec mv(B * T);
    for (std::size_t i = 0; i < mv.size(); ++i) mv[i] = pad_value(i);
    clean["mask"] = mv;
    const auto a = test::run<G>(clean, B);
    leaves dirty = clean;
    for (std::size_t i = 0; i < B * T * E; ++i)
        if (pad_value(i / E) == 0.0) dirty["k"][i] = 30.0 * leaf_value("junk", i) - 4.0;
    const auto b = test::run<G>(dirty, B);
    REQUIRE(a.size() == b.size());
    for (std::size_t o = 0; o < a.size(); ++o) {
        INFO("output " << o);
        CHECK(test::max_rel_diff(b[o], a[o]) <= 1e-12);
    }
    const vec& gk = b[G::grad<"k">];
    double real_grad = 0;
    for (std::size_t i = 0; i < gk.size(); ++i) {
        if (pad_value(i / E) == 0.0) CHECK(gk[i] == 0.0);
        else real_grad += std::abs(gk[i]);
    }
    CHECK(real_grad > 0);
    double gw = 0;
    for (double v : b[G::grad<"d/gru_cell/recurrent_kernel">]) gw += std::abs(v);
    CHECK(gw > 0);
}
