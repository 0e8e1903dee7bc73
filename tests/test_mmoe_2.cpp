// MMoE (include/ctrec/layers/mmoe.hpp, spec layers-trans-seq-multitask-nas.md 3.1, 0.2, 0.3,
// 7 #10): the noisy top-k gate against the reference with the executor's noise
// (random_value(normal, io.seed, stream_hash("<scope>/noise_<seed>"), example, logit)) in
// train, eval, predict and monolith_compat; seeded reproducibility; the noise's moments; and
// float64 central differences + JVP/VJP duality for top-k gates away from ties (the mask is
// constant there) with d CV^2, and the reparameterised noise (softmax gates: test_mmoe.cpp).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/mmoe.hpp"
#include "mmoe_reference.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace cl = ctrec::layers;
using cl::mode;
using flat_ref::get;
using flat_ref::vec;
using mmoe_ref::check_mmoe;
using mmoe_ref::run_seeded;
using test::leaves;

namespace {

// ---- C: noisy top-2 of 4 experts, the pair input -------------------------------------------------
constexpr auto xe = f::input<"xe", 4>;
constexpr auto xg = f::input<"xg", 3>;
constexpr cl::mmoe_config cfg_c{.num_tasks = 2, .expert_output_dims = {5, 3}, .expert_activations = cl::act_relu,
                                .gate_type = cl::mmoe_gate::noise_topk, .top_k = 2, .num_experts = 4};
constexpr auto rc_tr = cl::mmoe<"m_mo_e", cfg_c, mode::train>(xe, xg);
constexpr auto c_tr_out = rc_tr.out();
constexpr auto c_tr_cv2 = rc_tr.cv2();
constexpr auto c_tr_gates = rc_tr.gates();
constexpr auto c_tr_logits = rc_tr.logits();
constexpr auto rc_ev = cl::mmoe<"m_mo_e", cfg_c, mode::eval>(xe, xg);
constexpr auto c_ev_out = rc_ev.out();
constexpr auto rc_pr = cl::mmoe<"m_mo_e", cfg_c, mode::predict>(xe, xg);
constexpr auto c_pr_out = rc_pr.out();
constexpr auto c_pr_cv2 = rc_pr.cv2();
constexpr auto c_pr_gates = rc_pr.gates();
constexpr cl::mmoe_config cfg_c_compat = [] {
    cl::mmoe_config c = cfg_c;
    c.monolith_compat = true;
    c.acknowledge_compat_overrides = true;  // noise in mode::predict, as the source draws it
    return c;
}();
constexpr auto rc_cp = cl::mmoe<"m_mo_e", cfg_c_compat, mode::predict>(xe, xg);
constexpr auto c_cp_out = rc_cp.out();
constexpr auto c_cp_cv2 = rc_cp.cv2();
constexpr auto c_cp_gates = rc_cp.gates();
constexpr cl::mmoe_config cfg_c_seed5 = [] {
    cl::mmoe_config c = cfg_c;
    c.seed = 5;
    return c;
}();
constexpr auto rc_s5 = cl::mmoe<"m_mo_e", cfg_c_seed5, mode::train>(xe, xg);
constexpr auto c_s5_out = rc_s5.out();
constexpr auto c_s5_cv2 = rc_s5.cv2();
constexpr auto c_s5_gates = rc_s5.gates();

// ---- C1: noisy gate on one input: gate_weight and gate_noise join the experts' GEMM --------------
constexpr auto x4 = f::input<"x", 4>;
constexpr auto rc1 = cl::mmoe<"m_mo_e", cfg_c, mode::train>(x4);
constexpr auto c1_out = rc1.out();
constexpr auto c1_cv2 = rc1.cv2();
constexpr auto c1_gates = rc1.gates();

mmoe_ref::config ref_c(bool noise, std::uint64_t io_seed, std::string stream = "m_mo_e/noise_0") {
    mmoe_ref::config c;
    c.E = 4, c.T = 2, c.D = 4, c.Dg = 3;
    c.dims = {{5, 3}, {5, 3}, {5, 3}, {5, 3}};
    c.act = {1, 1, 1, 1};
    c.gate = 2, c.k = 2;
    c.noise = noise, c.seed = io_seed, c.stream = stream;
    c.xe = "xe", c.xg = "xg";
    return c;
}

// ---- derivatives ---------------------------------------------------------------------------------------
// top-2 of 3 experts with their own structures; the loss includes sum(CV^2)
constexpr cl::mmoe_config cfg_gb{.num_tasks = 2, .expert_output_dims = {{4, 3}, {3, 3}, {3}},
                                 .expert_activations = {cl::act_tanh, cl::act_relu, cl::act_tanh},
                                 .gate_type = cl::mmoe_gate::topk, .top_k = 2};
constexpr auto rgb = cl::mmoe<"m_mo_e", cfg_gb, mode::train>(x4);
constexpr auto gb_loss = f::batch_sum(f::sum(rgb.out() * f::input<"w", 2, 3>)) + f::sum(rgb.cv2());
// the noisy gate (the noise of io.seed 0) with CV^2
constexpr auto gc_loss = f::batch_sum(f::sum(rc_tr.out() * f::input<"w", 2, 3>)) + f::sum(rc_tr.cv2());

template <class P>
std::size_t count_random() {
    std::size_t n = 0;
    for (std::size_t i = 0; i < P::size; ++i) n += P::tab.nodes[i].op == f::opcode::random;
    return n;
}

} // namespace

TEST_CASE("mmoe noise_topk: train draws the executor's noise per example and logit (pair and single input)") {
    check_mmoe<c_tr_out, c_tr_cv2, c_tr_gates>(ref_c(true, 7));
    check_mmoe<c_tr_out, c_tr_cv2, c_tr_gates>(ref_c(true, 0));
    mmoe_ref::config one = ref_c(true, 3);
    one.xe = one.xg = "x", one.Dg = 4;
    check_mmoe<c1_out, c1_cv2, c1_gates>(one);
    // the layer's seed is part of the stream name
    check_mmoe<c_s5_out, c_s5_cv2, c_s5_gates>(ref_c(true, 7, "m_mo_e/noise_5"));
}

TEST_CASE("mmoe noise_topk: eval draws the same noise as train, predict none, monolith_compat in predict too") {
    using PT = f::program<double, c_tr_out>;
    using PE = f::program<double, c_ev_out>;
    using PP = f::program<double, c_pr_out>;
    {
        leaves L;
        const vec tr = run_seeded<PT>(L, 9, 4)[0];
        const vec ev = run_seeded<PE>(L, 9, 4)[0];
        CHECK(tr == ev);
        const vec pr = run_seeded<PP>(L, 9, 4)[0];
        CHECK(pr != tr);
        // predict is deterministic: no random leaf, the same scores whatever io.seed
        CHECK(count_random<PP>() == 0);
        CHECK(count_random<PT>() == 1);
        CHECK(run_seeded<PP>(L, 9, 5)[0] == pr);
        // gate_noise is not a parameter of the scoring program
        CHECK(PP::parameters::position("m_mo_e/gate_noise") >= PP::n_params);
        CHECK(PT::parameters::position("m_mo_e/gate_noise") < PT::n_params);
    }
    check_mmoe<c_pr_out, c_pr_cv2, c_pr_gates>(ref_c(false, 4));
    check_mmoe<c_cp_out, c_cp_cv2, c_cp_gates>(ref_c(true, 4));
}

TEST_CASE("mmoe noise_topk: the same io.seed gives bit-identical outputs, another seed or layer seed others") {
    using P = f::program<float, c_tr_out, c_tr_cv2>;
    using P5 = f::program<float, c_s5_out>;
    leaves L;
    const auto a = run_seeded<P>(L, 33, 7), b = run_seeded<P>(L, 33, 7), c = run_seeded<P>(L, 33, 8);
    CHECK(a[0] == b[0]);
    CHECK(a[1] == b[1]);
    CHECK(a[0] != c[0]);
    CHECK(a[1] != c[1]);
    CHECK(run_seeded<P5>(L, 33, 7)[0] != a[0]);
    // the reference backend draws the same numbers
    test::check_close(run_seeded<P::with_backend<f::reference_backend>>(L, 33, 7)[0], a[0], 1e-5);
}

TEST_CASE("mmoe noise_topk: the noise is the executor's standard normal stream (moments)") {
    // gate_weight = 0 and gate_noise = 0: logit = eps * softplus(0) = eps ln 2
    using P = f::program<double, c_tr_logits>;
    const std::size_t B = 3000, C = 8;
    leaves L;
    L["m_mo_e/gate_weight"].assign(3 * C, 0.0);
    L["m_mo_e/gate_noise"].assign(3 * C, 0.0);
    const vec l = run_seeded<P>(L, B, 12)[0];
    REQUIRE(l.size() == B * C);
    const std::uint64_t h = f::stream_hash("m_mo_e/noise_0");
    double mean = 0, var = 0, lag = 0;
    std::size_t exact = 0;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t c = 0; c < C; ++c) {
            const double eps = l[b * C + c] / std::log(2.0);
            exact += std::abs(eps - f::random_value<double>(f::random_kind::normal, 12, h, b, c)) < 1e-12;
            mean += eps / (B * C);
            var += eps * eps / (B * C);
            if (c > 0) lag += eps * l[b * C + c - 1] / std::log(2.0) / (B * (C - 1));
        }
    CHECK(exact == B * C);
    CHECK(std::abs(mean) < 0.03);        // 4.6 standard errors
    CHECK(std::abs(var - 1.0) < 0.04);   // 4.4 standard errors
    CHECK(std::abs(lag) < 0.03);         // neighbouring logits uncorrelated
}

TEST_CASE("mmoe: float64 central differences and JVP/VJP duality (top-k away from ties, with CV^2; noisy)") {
    test::check_ad<gb_loss>(3);
    test::check_ad<gc_loss>(3);
}
