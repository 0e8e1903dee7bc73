// DIEN (include/ctrec/layers/dien.hpp, spec
// layers-trans-seq-multitask-nas.md 2.3): variables, initializers and the regularizer's
// coverage; the original test against the naive float64 reference of flat_sequence_reference.hpp;
// float64 central differences and JVP/VJP duality with a mask and under monolith_compat.
// (Split from test_flat_sequence_dien.cpp for compile time.)
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
using test::leaves;
using seq_ref::vec;

namespace {

constexpr std::size_t T = 4, E = 3, U = 5;
constexpr auto q = f::input<"q", U>;
constexpr auto k = f::input<"k", T, E>;
// check_derivatives draws every leaf in [-1, 1]: a 0 / 1 mask made from a raw input
constexpr auto mask_of_raw = f::where(f::greater(f::input<"mask_raw", T>, f::lit<-0.4>), f::lit<1.0>, f::lit<0.0>);

constexpr auto r = fl::dien<"d", {.num_units = U}>(q, k);  // AGRU, relu
constexpr auto reg = fl::dien<"d", {.num_units = U, .regularizer = cl::regularizer{0.25, 0.5}}>(q, k);
constexpr auto reg_pen = reg.penalty();

} // namespace

TEST_CASE("dien: variables, initializers and the regularizer") {
    using W = ctrec::init::spec::which;
    REQUIRE(r.n_inits == 8);
    const char* names[] = {"d/gru_cell/kernel",         "d/gru_cell/recurrent_kernel",   "d/gru_cell/bias",
                           "d/attention_weight",        "d/augru_cell/gates/kernel",     "d/augru_cell/gates/bias",
                           "d/augru_cell/candidate/kernel", "d/augru_cell/candidate/bias"};
    const W kinds[] = {W::he_uniform, W::orthogonal, W::zeros, W::he_uniform, W::he_uniform, W::ones, W::he_uniform, W::ones};
    const ctrec::dims shapes[] = {ctrec::make_dims<E, 3 * U>(), ctrec::make_dims<U, 3 * U>(), ctrec::make_dims<2, 3 * U>(),
                                  ctrec::make_dims<U, U>(),     ctrec::make_dims<2 * U, 2 * U>(), ctrec::make_dims<2 * U>(),
                                  ctrec::make_dims<2 * U, U>(), ctrec::make_dims<U>()};
    for (std::size_t i = 0; i < 8; ++i) {
        INFO(names[i]);
        CHECK(r.g.name_of(r.inits[i].var) == names[i]);
        CHECK(r.inits[i].spec.w == kinds[i]);
        CHECK(r.g.nodes[r.inits[i].var].shape == shapes[i]);
    }
    CHECK(r.inits[1].spec.a == 1.0);  // Orthogonal gain 1
    CHECK(!r.has_penalty());
    // the penalty: GRU input kernel, attention matrix and all four AGRU variables (not the
    // recurrent kernel nor the GRU bias)
    leaves L;
    const double got = test::run<f::program<double, reg_pen>>(L, 1)[0][0];
    double want = 0;
    for (const char* n : {"d/gru_cell/kernel", "d/attention_weight", "d/augru_cell/gates/kernel", "d/augru_cell/gates/bias",
                          "d/augru_cell/candidate/kernel", "d/augru_cell/candidate/bias"})
        for (double v : seq_ref::get(L, n)) want += 0.25 * std::abs(v) + 0.5 * v * v;
    CHECK(got == doctest::Approx(want).epsilon(1e-12));
    CHECK(L.v.count("d/gru_cell/recurrent_kernel") == 0);  // not in the penalty's program
}

TEST_CASE("dien: the original test (num_units 10, ones q (100, 10), k (100, 15, 10)) with the initializers") {
    static constexpr auto qo = f::input<"q", 10>;
    static constexpr auto ko = f::input<"k", 15, 10>;
    static constexpr auto ro = fl::dien<"dien", {.num_units = 10}>(qo, ko);
    static constexpr auto ro_y = ro.out();
    using P = f::program<float, ro_y>;
    P::parameters p;
    fl::initialize<ro>(p, 3);
    // Orthogonal recurrent kernel (10, 30): rows orthonormal
    const auto R = p.get<"dien/gru_cell/recurrent_kernel">();
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
        for (float v : p.get(P::parameters::position(n))) mx = std::max(mx, double(std::abs(v)));
        CHECK(mx <= lim);
        CHECK(mx > 0.5 * lim);
    }
    leaves L;
    for (std::size_t i = 0; i < P::n_params; ++i) {
        const auto w = p.get(i);
        L[P::parameters::names[i]] = vec(w.begin(), w.end());
    }
    const std::size_t batch = 100;
    L["q"] = vec(batch * 10, 1.0);
    L["k"] = vec(batch * 150, 1.0);
    const vec got = test::run<P>(L, batch)[0];
    const vec want = seq_ref::dien(L, "dien", 0, 15, 10, 10, 1, 0, false);
    double sum = 0, want_sum = 0;
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t j = 0; j < 10; ++j) {
            CHECK(got[b * 10 + j] == doctest::Approx(want[j]).epsilon(1e-4).scale(1.0));
            sum += got[b * 10 + j], want_sum += want[j];
        }
    CHECK(sum == doctest::Approx(want_sum).epsilon(1e-4));
    CHECK(want_sum != 0.0);
}

TEST_CASE("dien: derivatives (float64) with a mask, and under monolith_compat") {
    static constexpr auto dm = fl::dien<"d", {.num_units = U, .att_type = fl::agru_att::augru, .activation = cl::act_tanh}>(q, k, mask_of_raw);
    static constexpr auto dm_y = dm.out();
    static constexpr auto dc = fl::dien<"d", {.num_units = U, .activation = cl::act_sigmoid, .monolith_compat = true,
                                              .acknowledge_compat_overrides = true}>(q, k, mask_of_raw);
    static constexpr auto dc_y = dc.out();
    test::check_derivatives<f::grad_program<double, dm_y>, f::jvp_program<double, dm_y>>(3);
    test::check_derivatives<f::grad_program<double, dc_y>, f::jvp_program<double, dc_y>>(3);
    // the mask really pads some steps
    leaves M;
    test::fill<f::program<double, dm_y>>(M, 3);
    std::size_t padded = 0;
    for (double v : M["mask_raw"]) padded += v <= -0.4;
    CHECK(padded > 0);
    CHECK(padded < 3 * T);
}
