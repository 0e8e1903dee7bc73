// MMoE (include/ctrec/layers/mmoe.hpp, spec layers-trans-seq-multitask-nas.md 3.1): the spec's
// reference values, forward passes of softmax / top-k gates with shared and per-expert
// structures, the pair input, batch norm inside the experts, the execution strategies against
// the naive float64 reference (tests/mmoe_reference.hpp) on the CPU and reference backends,
// the variables (names, shapes, initializers) and the plan's one GEMM for the first layers, and
// the original test's configuration, derivatives of softmax gates. Noise, seeds and the
// derivatives of top-k and noisy gates: test_mmoe_2.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/mmoe.hpp"
#include "mmoe_reference.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace cl = ctrec::layers;
namespace init = ctrec::init;
using cl::mode;
using flat_ref::get;
using flat_ref::vec;
using mmoe_ref::check_mmoe;
using mmoe_ref::run_seeded;
using test::check_close;
using test::leaves;

namespace {

static_assert(cl::mmoe_gate_from("softmax") == cl::mmoe_gate::softmax);
static_assert(cl::mmoe_gate_from("topk") == cl::mmoe_gate::topk);
static_assert(cl::mmoe_gate_from("noise_topk") == cl::mmoe_gate::noise_topk);
// a shared list, lists per expert (one-element lists included)
static_assert(!cl::mmoe_dims{128, 64}.per_expert && cl::mmoe_dims{128, 64}.depth(5) == 2);
static_assert(cl::mmoe_dims{{128}, {64}}.per_expert && cl::mmoe_dims{{128}, {64}}.lists == 2);
static_assert(cl::mmoe_dims{{128, 64, 64}, {64, 64}}.width(1, 1) == 64);

// ---- the spec's reference values: E = 3, one task, logits = x gate_weight with x = [1] ------------
constexpr auto x1 = f::input<"x", 1>;
constexpr cl::mmoe_config cfg_k1{.num_tasks = 1, .expert_output_dims = {2}, .expert_activations = cl::act_relu,
                                 .gate_type = cl::mmoe_gate::topk, .top_k = 1, .num_experts = 3};
constexpr cl::mmoe_config cfg_k2{.num_tasks = 1, .expert_output_dims = {2}, .expert_activations = cl::act_relu,
                                 .gate_type = cl::mmoe_gate::topk, .topk = 2, .num_experts = 3};
constexpr cl::mmoe_config cfg_sm{.num_tasks = 1, .expert_output_dims = {2}, .expert_activations = cl::act_relu, .num_experts = 3};
constexpr auto r_k1 = cl::mmoe<"m_mo_e", cfg_k1, mode::train>(x1);
constexpr auto k1_gates = r_k1.gates();
constexpr auto k1_cv2 = r_k1.cv2();
constexpr auto r_k2 = cl::mmoe<"m_mo_e", cfg_k2, mode::train>(x1);
constexpr auto k2_gates = r_k2.gates();
constexpr auto k2_cv2 = r_k2.cv2();
constexpr auto r_sm = cl::mmoe<"m_mo_e", cfg_sm, mode::train>(x1);
constexpr auto sm_gates = r_sm.gates();
constexpr auto sm_cv2 = r_sm.cv2();

// gates and CV^2 on one example with gate_weight = w, on both backends
template <const auto& G, const auto& C>
void gates_for(const vec& w, const vec& want_g, double want_cv2, double tol) {
    using P = f::program<double, G, C>;
    for (int backend = 0; backend < 2; ++backend) {
        leaves L;
        L["x"] = {1.0};
        L["m_mo_e/gate_weight"] = w;
        const auto o = backend == 0 ? test::run<P>(L, 1) : test::run<typename P::template with_backend<f::reference_backend>>(L, 1);
        INFO("backend " << backend);
        REQUIRE(o[0].size() == 3);
        for (std::size_t e = 0; e < 3; ++e) CHECK(o[0][e] == doctest::Approx(want_g[e]).epsilon(tol));
        CHECK(o[1][0] == doctest::Approx(want_cv2).epsilon(tol));
    }
}

// ---- A: softmax, one shared list: the first layers and the gate in one GEMM, then per expert ----
constexpr auto x5 = f::input<"x", 5>;
constexpr cl::mmoe_config cfg_a{.num_tasks = 2, .expert_output_dims = {6, 4}, .expert_activations = cl::act_relu, .num_experts = 3};
constexpr auto ra = cl::mmoe<"m_mo_e", cfg_a, mode::predict>(x5);
constexpr auto a_out = ra.out();
constexpr auto a_cv2 = ra.cv2();
constexpr auto a_gates = ra.gates();
// A2: the same model with a separate gate GEMM and the deeper layer batched over the experts
constexpr cl::mmoe_config cfg_a2 = [] {
    cl::mmoe_config c = cfg_a;
    c.join_gate = false;
    c.batch_deeper_layers = true;
    return c;
}();
constexpr auto ra2 = cl::mmoe<"m_mo_e", cfg_a2, mode::predict>(x5);
constexpr auto a2_out = ra2.out();
constexpr auto a2_cv2 = ra2.cv2();
constexpr auto a2_gates = ra2.gates();

// ---- B: top-2 of 3 experts with their own widths, activations and initializers, 3 tasks -----------
constexpr cl::mmoe_config cfg_b{.num_tasks = 3,
                                .expert_output_dims = {{6, 4}, {5, 4}, {4}},
                                .expert_activations = {cl::act_relu, cl::act_tanh, cl::act_relu},
                                .expert_initializers = {init::Ones{}, init::Zeros{}, init::GlorotUniform{}},
                                .gate_type = cl::mmoe_gate::topk,
                                .top_k = 2};
constexpr auto rb = cl::mmoe<"m_mo_e", cfg_b, mode::predict>(x5);
constexpr auto b_out = rb.out();
constexpr auto b_cv2 = rb.cv2();
constexpr auto b_gates = rb.gates();
constexpr auto b_task2 = rb.task(2);
// B literal: the per-expert MLPs as written (stack_experts = false)
constexpr cl::mmoe_config cfg_b_lit = [] {
    cl::mmoe_config c = cfg_b;
    c.stack_experts = false;
    return c;
}();
constexpr auto rb_lit = cl::mmoe<"m_mo_e", cfg_b_lit, mode::predict>(x5);
constexpr auto b_lit_out = rb_lit.out();
constexpr auto b_lit_cv2 = rb_lit.cv2();
constexpr auto b_lit_gates = rb_lit.gates();

// ---- D: batch norm inside the experts, the pair input, fixed weight norm, top-1 ------------------
constexpr auto xe = f::input<"xe", 5>;
constexpr auto xg = f::input<"xg", 3>;
constexpr cl::mmoe_config cfg_d{.num_tasks = 2, .expert_output_dims = {4, 3}, .expert_activations = cl::keras_activation("tanh"),
                                .gate_type = cl::mmoe_gate::topk, .topk = 1, .num_experts = 2, .use_learnable_weight_norm = false,
                                .enable_batch_normalization = true};
constexpr auto rd_tr = cl::mmoe<"m_mo_e", cfg_d, mode::train>(xe, xg);
constexpr auto d_tr_out = rd_tr.out();
constexpr auto d_tr_cv2 = rd_tr.cv2();
constexpr auto d_tr_gates = rd_tr.gates();
constexpr auto rd_pr = cl::mmoe<"m_mo_e", cfg_d, mode::predict>(xe, xg);
constexpr auto d_pr_out = rd_pr.out();
constexpr auto d_pr_cv2 = rd_pr.cv2();
constexpr auto d_pr_gates = rd_pr.gates();

// ---- F: three linear layers (activation None), no weight norm, no bias, a kernel regularizer ------
constexpr cl::mmoe_config cfg_f{.num_tasks = 1, .expert_output_dims = {5, 4, 3}, .expert_activations = cl::keras_activation(""),
                                .gate_type = cl::mmoe_gate::topk, .top_k = 1, .num_experts = 2,
                                .kernel_regularizer = cl::regularizer(0.01, 0.02), .use_weight_norm = false, .use_bias = false};
constexpr auto rf = cl::mmoe<"m_mo_e", cfg_f, mode::predict>(x5);
constexpr auto f_out = rf.out();
constexpr auto f_cv2 = rf.cv2();
constexpr auto f_gates = rf.gates();
constexpr auto f_pen = rf.penalty();

// ---- G: PReLU experts (alpha per unit, named as the MLP names them), softmax -----------------------
constexpr cl::mmoe_config cfg_g{.num_tasks = 1, .expert_output_dims = {4, 3, 2}, .expert_activations = cl::act_prelu, .num_experts = 2};
constexpr auto rg = cl::mmoe<"m_mo_e", cfg_g, mode::predict>(x5);
constexpr auto g_out = rg.out();
constexpr auto g_cv2 = rg.cv2();
constexpr auto g_gates = rg.gates();

// ---- derivatives of softmax gates with smooth experts -------------------------------------------
constexpr auto x4 = f::input<"x", 4>;
constexpr cl::mmoe_config cfg_ga{.num_tasks = 2, .expert_output_dims = {4, 3}, .expert_activations = cl::act_tanh, .num_experts = 3};
constexpr auto rga = cl::mmoe<"m_mo_e", cfg_ga, mode::train>(x4);
constexpr auto ga_loss = f::batch_sum(f::sum(rga.out() * f::input<"w", 2, 3>));

mmoe_ref::config ref_a() {
    mmoe_ref::config c;
    c.E = 3, c.T = 2, c.D = 5, c.Dg = 5;
    c.dims = {{6, 4}, {6, 4}, {6, 4}};
    c.act = {1, 1, 1};
    return c;
}
mmoe_ref::config ref_b() {
    mmoe_ref::config c;
    c.E = 3, c.T = 3, c.D = 5, c.Dg = 5;
    c.dims = {{6, 4}, {5, 4}, {4}};
    c.act = {1, 2, 1};
    c.gate = 1, c.k = 2;
    return c;
}
mmoe_ref::config ref_d(bool train) {
    mmoe_ref::config c;
    c.E = 2, c.T = 2, c.D = 5, c.Dg = 3;
    c.dims = {{4, 3}, {4, 3}};
    c.act = {2, 2};
    c.nrm = flat_ref::norm::fixed;
    c.bn = true, c.bn_train = train;
    c.gate = 1, c.k = 1;
    c.xe = "xe", c.xg = "xg";
    return c;
}
mmoe_ref::config ref_f() {
    mmoe_ref::config c;
    c.E = 2, c.T = 1, c.D = 5, c.Dg = 5;
    c.dims = {{5, 4, 3}, {5, 4, 3}};
    c.act = {0, 0};
    c.nrm = flat_ref::norm::none;
    c.bias = false;
    c.gate = 1, c.k = 1;
    return c;
}
mmoe_ref::config ref_g() {
    mmoe_ref::config c;
    c.E = 2, c.T = 1, c.D = 5, c.Dg = 5;
    c.dims = {{4, 3, 2}, {4, 3, 2}};
    c.act = {3, 3};
    return c;
}
void positive_bn(leaves& L) {
    for (std::size_t e = 0; e < 2; ++e) {
        const std::string ex = "m_mo_e/expert_" + std::to_string(e);
        flat_ref::positive_bn_state(L, ex + "/BatchNorm/in", 5);
        flat_ref::positive_bn_state(L, ex + "/BatchNorm/out", 4);
    }
}

// Contraction nodes of P reading the input named `in`.
template <class P>
std::size_t contractions_reading(std::string_view in) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < P::size; ++i) {
        const auto& r = P::tab.nodes[i];
        if (r.op != f::opcode::contract) continue;
        for (std::size_t j = 0; j < r.nops; ++j) {
            const auto o = P::tab.operand(i, j);
            n += P::tab.nodes[o].op == f::opcode::input && P::tab.name_of(o) == in;
        }
    }
    return n;
}
// Batched contraction nodes of P of per-example shape (a, b).
template <class P>
std::size_t contractions_shaped(std::size_t a, std::size_t b) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < P::size; ++i) {
        const auto& r = P::tab.nodes[i];
        n += r.op == f::opcode::contract && r.batched && r.shape.rank == 2 && r.shape.d[0] == a && r.shape.d[1] == b;
    }
    return n;
}
template <class P>
std::set<std::string> parameter_names() {
    std::set<std::string> s;
    for (std::size_t k = 0; k < P::n_params; ++k) s.insert(std::string(P::parameters::names[k]) + ":" + std::to_string(P::parameters::sizes[k]));
    return s;
}

// ---- the original test (spec 3.1.8) ----------------------------------------------------------------
constexpr auto x128 = f::input<"x", 128>;
constexpr cl::mmoe_config cfg_orig{.num_tasks = 2, .expert_output_dims = {{128, 64, 64}, {64, 64}, {128, 64}},
                                   .expert_activations = cl::act_relu, .gate_type = cl::mmoe_gate::topk, .top_k = 2, .num_experts = 3};
constexpr auto r_orig = cl::mmoe<"m_mo_e", cfg_orig, mode::train>(x128);
constexpr auto orig_out = r_orig.out();
constexpr auto orig_cv2 = r_orig.cv2();
constexpr auto orig_gates = r_orig.gates();

} // namespace

TEST_CASE("mmoe: the spec's reference gates and CV^2 (3.1), zero gates tie and keep every expert") {
    const double s0 = 0.1553624, s1 = 0.4223188;
    gates_for<sm_gates, sm_cv2>({1, 2, 2}, {s0, s1, s1}, 0.0, 1e-6);  // softmax: no CV^2 (zeros)
    gates_for<k1_gates, k1_cv2>({1, 2, 2}, {0, 0.5, 0.5}, 0.5, 1e-12);  // the tie at the threshold keeps both
    gates_for<k2_gates, k2_cv2>({1, 2, 3}, {0, 0.2689414, 0.7310586}, mmoe_ref::cv2_of({0, 0.2689414, 0.7310586}), 1e-6);
    gates_for<k1_gates, k1_cv2>({0, 0, 0}, {1.0 / 3, 1.0 / 3, 1.0 / 3}, 0.0, 1e-12);  // zero-initialised gates
    gates_for<k2_gates, k2_cv2>({0, 0, 0}, {1.0 / 3, 1.0 / 3, 1.0 / 3}, 0.0, 1e-12);
    CHECK(mmoe_ref::cv2_of({0, 0.5, 0.5}) == doctest::Approx(0.5).epsilon(1e-15));
    CHECK(r_k1.has_cv2());
    CHECK(!r_sm.has_cv2());
}

TEST_CASE("mmoe: softmax gates, one shared structure, stacked (gate joined or not, deeper layers batched or not)") {
    check_mmoe<a_out, a_cv2, a_gates>(ref_a());
    check_mmoe<a2_out, a2_cv2, a2_gates>(ref_a());
}

TEST_CASE("mmoe: softmax gates: float64 central differences and JVP/VJP duality") { test::check_ad<ga_loss>(3); }

TEST_CASE("mmoe: top-k gates, per-expert structures, activations and initializers; stacked and literal") {
    check_mmoe<b_out, b_cv2, b_gates>(ref_b());
    check_mmoe<b_lit_out, b_lit_cv2, b_lit_gates>(ref_b());
    // task(t) is row t of out()
    leaves L;
    const auto all = test::run<f::program<double, b_out, b_task2>>(L, 4);
    for (std::size_t b = 0; b < 4; ++b)
        for (std::size_t d = 0; d < 4; ++d) CHECK(all[1][b * 4 + d] == all[0][(b * 3 + 2) * 4 + d]);
}

TEST_CASE("mmoe: batch norm inside the experts (train and predict), the pair input, fixed weight norm") {
    check_mmoe<d_tr_out, d_tr_cv2, d_tr_gates>(ref_d(true), positive_bn);
    check_mmoe<d_pr_out, d_pr_cv2, d_pr_gates>(ref_d(false), positive_bn);
    // the moving statistics of both BatchNorms of both experts are updated in training only
    CHECK(rd_tr.n_updates == 2 * 2 * 2);
    CHECK(rd_pr.n_updates == 0);
}

TEST_CASE("mmoe: linear experts of three layers without weight norm or bias; the kernel regularizer") {
    check_mmoe<f_out, f_cv2, f_gates>(ref_f());
    leaves L;
    const double got = test::run<f::program<double, f_pen>>(L, 1)[0][0];
    double want = 0;
    for (std::size_t e = 0; e < 2; ++e)
        for (std::size_t j = 0; j < 3; ++j)
            for (double w : get(L, "m_mo_e/expert_" + std::to_string(e) + "/dense_" + std::to_string(j) + "/kernel"))
                want += 0.01 * std::abs(w) + 0.02 * w * w;
    CHECK(got == doctest::Approx(want).epsilon(1e-12));
}

TEST_CASE("mmoe: PReLU experts") {
    check_mmoe<g_out, g_cv2, g_gates>(ref_g());
    const std::set<std::string> names = parameter_names<f::program<float, g_out>>();
    for (const char* n : {"m_mo_e/expert_0/p_re_lu/alpha:4", "m_mo_e/expert_1/p_re_lu_1/alpha:3"}) {
        INFO(std::string(n));
        CHECK(names.count(n) == 1);
    }
}

TEST_CASE("mmoe: variables keep the spec's names and shapes; one GEMM for every expert's first layer") {
    using PB = f::program<float, b_out>;
    using PBL = f::program<float, b_lit_out>;
    const std::set<std::string> want_b = {
        "m_mo_e/expert_0/dense_0/kernel:30", "m_mo_e/expert_0/dense_0/trainable_kernel_norm:6", "m_mo_e/expert_0/dense_0/bias:6",
        "m_mo_e/expert_0/dense_1/kernel:24", "m_mo_e/expert_0/dense_1/trainable_kernel_norm:4", "m_mo_e/expert_0/dense_1/bias:4",
        "m_mo_e/expert_1/dense_0/kernel:25", "m_mo_e/expert_1/dense_0/trainable_kernel_norm:5", "m_mo_e/expert_1/dense_0/bias:5",
        "m_mo_e/expert_1/dense_1/kernel:20", "m_mo_e/expert_1/dense_1/trainable_kernel_norm:4", "m_mo_e/expert_1/dense_1/bias:4",
        "m_mo_e/expert_2/dense_0/kernel:20", "m_mo_e/expert_2/dense_0/trainable_kernel_norm:4", "m_mo_e/expert_2/dense_0/bias:4",
        "m_mo_e/gate_weight:45"};
    CHECK(parameter_names<PB>() == want_b);
    CHECK(parameter_names<PBL>() == want_b);
    CHECK(rb.n_inits == 16);
    CHECK(rb.g.name_of(rb.inits[0].var) == "m_mo_e/expert_0/dense_0/kernel");
    CHECK(rb.g.name_of(rb.inits[15].var) == "m_mo_e/gate_weight");
    // BN and fixed norms: the MLP's names (predict reads the moving statistics)
    using PD = f::program<float, d_pr_out>;
    const std::set<std::string> names_d = parameter_names<PD>();
    for (const char* n : {"m_mo_e/expert_1/BatchNorm/in/gamma:5", "m_mo_e/expert_1/BatchNorm/out/moving_variance:4",
                          "m_mo_e/expert_0/dense_1/kernel_norm:3", "m_mo_e/gate_weight:12"}) {
        INFO(std::string(n));
        CHECK(names_d.count(n) == 1);
    }
    CHECK(names_d.size() == 2 * (3 + 3 + 4 + 4) + 1);  // per expert: 2 dense x 3, 2 BN x 4; gate_weight

    // x is read by one contraction (every first layer and the gate) when stacked ...
    CHECK(contractions_reading<f::program<float, a_out>>("x") == 1);
    CHECK(contractions_reading<PB>("x") == 1);
    CHECK(contractions_reading<f::program<float, a2_out>>("x") == 2);  // the gate apart
    CHECK(contractions_reading<PBL>("x") == 4);                        // ... and 3 + 1 as written
    // A2's second layers: one contraction of shape (E, 4), A's one per expert
    CHECK(contractions_shaped<f::program<float, a_out>>(3, 4) == 0);
    CHECK(contractions_shaped<f::program<float, a2_out>>(3, 4) == 1);
    // the stacked kernels are derived parameters (computed by prepare, not per call)
    CHECK(f::program<float, a_out>::pl.derived_steps > 0);
}

TEST_CASE("mmoe: per-expert and shared initializers; zero gate_weight") {
    using P = f::program<double, b_out>;
    P::parameters p;
    cl::initialize<rb>(p, 3);
    auto at = [&](std::string_view n) { return p.get(P::parameters::position(n)); };
    for (double v : at("m_mo_e/expert_0/dense_0/kernel")) CHECK(v == 1.0);
    for (double v : at("m_mo_e/expert_0/dense_1/kernel")) CHECK(v == 1.0);
    for (double v : at("m_mo_e/expert_0/dense_0/trainable_kernel_norm")) CHECK(v == doctest::Approx(std::sqrt(5.0)));
    for (double v : at("m_mo_e/expert_1/dense_0/kernel")) CHECK(v == 0.0);
    for (double v : at("m_mo_e/gate_weight")) CHECK(v == 0.0);
    const auto g = at("m_mo_e/expert_2/dense_0/kernel");
    const double lim = std::sqrt(6.0 / (5 + 4));
    CHECK(*std::max_element(g.begin(), g.end()) > *std::min_element(g.begin(), g.end()));
    for (double v : g) CHECK(std::abs(v) <= lim);
}

TEST_CASE("mmoe: the original test (2 tasks, 3 experts [[128,64,64],[64,64],[128,64]], top-2, ones [100,128])") {
    using P = f::program<float, orig_out, orig_cv2, orig_gates>;
    P::parameters p;
    cl::initialize<r_orig>(p, 11);
    const std::size_t B = 100;
    leaves L;
    for (std::size_t k = 0; k < P::n_params; ++k) L[P::parameters::names[k]].assign(p.get(k).begin(), p.get(k).end());
    L["x"].assign(B * 128, 1.0);
    for (int backend = 0; backend < 2; ++backend) {
        INFO("backend " << backend);
        leaves Lb = L;
        const auto got = backend == 0 ? run_seeded<P>(Lb, B, 0) : run_seeded<P::with_backend<f::reference_backend>>(Lb, B, 0);
        mmoe_ref::config rc;
        rc.E = 3, rc.T = 2, rc.D = 128, rc.Dg = 128;
        rc.dims = {{128, 64, 64}, {64, 64}, {128, 64}};
        rc.act = {1, 1, 1};
        rc.gate = 1, rc.k = 2;
        const mmoe_ref::outputs want = mmoe_ref::run(L, B, rc);
        check_close(got[0], want.out, 2e-5);
        // gate_weight starts at zero: every gate ties at 1/3 and top-2 keeps all three; CV^2 = 0
        for (double g : got[2]) CHECK(g == doctest::Approx(1.0 / 3).epsilon(1e-6));
        for (double c : got[1]) CHECK(std::abs(c) < 1e-10);
        double sum = 0;
        for (double v : got[0]) sum += v;
        CHECK(std::isfinite(sum));
        CHECK(got[0].size() == B * 2 * 64);
    }
}
