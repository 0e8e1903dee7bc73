// Sparse NAS gate primitives (spec layers-trans-seq-multitask-nas.md 6.2, P1-P4: nas_gates.hpp)
// with injected noise against float64 references written from the spec (nas_reference.hpp),
// the published kernel test values, the surrogate gradients by their formulas (reverse and
// forward mode), the P3 knee against the kernel's sort + float32 prefix sum; and
// NASGatingLayer (6.3): TRAIN against the generator's noise, EVAL / PREDICT, seeds, Bernoulli
// frequencies, gradients (x by finite differences, arch_weights by the surrogate), variable
// and initializer; SimpleNasLayer / SimpleNasV2Layer (6.5, 6.6): the published P3 values as
// layers, the null slot, TRAIN with the generator's Gumbel noise against the kernel's knee,
// gradients, seeds. CPU against the reference backend throughout.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ctrec/core.hpp"
#include "ctrec/layers/nas_gating.hpp"
#include "ctrec/layers/simple_nas.hpp"
#include "ctrec/train/train_program.hpp"
#include "nas_reference.hpp"
#include "support.hpp"

namespace {

namespace cl = ctrec::layers;
namespace nas = ctrec::layers::nas;
using cl::mode;
using ctrec::dims_of;
using ctrec::expr;
using ctrec::val;
using nas_ref::vec;
using test::leaves;

// ---- P1: six gates on their own logits a0..a5 ------------------------------------------------------
// TRAIN on u: ste none / softplus / clip; TRAIN logistic (none, tau 0.7) on L; EVAL plain (none);
// EVAL logistic (none, tau 0.7)
constexpr std::size_t P1N = 7;
constexpr nas::bernoulli_config p1_cfg[6] = {{cl::nas_ste::none},       {cl::nas_ste::softplus}, {cl::nas_ste::clip},
                                             {cl::nas_ste::none, true, 0.7}, {cl::nas_ste::none}, {cl::nas_ste::none, true, 0.7}};
constexpr nas_ref::ste p1_ste[6] = {nas_ref::ste::none, nas_ref::ste::softplus, nas_ref::ste::clip,
                                    nas_ref::ste::none, nas_ref::ste::none,     nas_ref::ste::none};
constexpr std::string_view p1_names[6] = {"a0", "a1", "a2", "a3", "a4", "a5"};
constexpr expr p1_gates = [] {
    expr e;
    ctrec::graph& g = e.g;
    const val u = ctrec::make_shared_input(g, "u", dims_of({P1N})), L = ctrec::make_shared_input(g, "L", dims_of({P1N}));
    val parts[6]{};
    for (std::size_t k = 0; k < 6; ++k) {
        const val a = ctrec::make_param(g, p1_names[k], dims_of({P1N}));
        parts[k] = nas::bernoulli_gate(a, k < 3 ? u : k == 3 ? L : val{}, p1_cfg[k]).out;
    }
    e.id = ctrec::concat(0, parts, 6).id;
    return e;
}();
constexpr expr p1_loss = [] {
    expr e = p1_gates;
    const val gates{&e.g, e.id};
    e.id = ctrec::sum(ctrec::make_shared_input(e.g, "c", dims_of({6 * P1N})) * gates).id;
    return e;
}();

// ---- P2: five gates on logits b0..b4, tau 1.5 --------------------------------------------------------
// soft; one-hot Gumbel; one-hot categorical (Gumbel-max on alpha / tau); one-hot EVAL (no
// noise); soft with Gumbel (a relaxed sample)
constexpr std::size_t P2C = 4;
constexpr double p2_tau = 1.5;
constexpr nas::discrete_config p2_cfg[5] = {
    {false, false, p2_tau}, {true, true, p2_tau}, {true, false, p2_tau}, {true, false, p2_tau}, {false, true, p2_tau}};
constexpr std::string_view p2_names[5] = {"b0", "b1", "b2", "b3", "b4"};
constexpr expr p2_gates = [] {
    expr e;
    ctrec::graph& g = e.g;
    const val G = ctrec::make_shared_input(g, "G", dims_of({P2C}));
    val parts[5]{};
    for (std::size_t k = 0; k < 5; ++k)
        parts[k] = nas::discrete_gate(ctrec::make_param(g, p2_names[k], dims_of({P2C})), k == 3 ? val{} : G, p2_cfg[k]).out;
    e.id = ctrec::concat(0, parts, 5).id;
    return e;
}();
constexpr expr p2_loss = [] {
    expr e = p2_gates;
    const val gates{&e.g, e.id};
    e.id = ctrec::sum(ctrec::make_shared_input(e.g, "c", dims_of({5 * P2C})) * gates).id;
    return e;
}();

// ---- P3: the published case (drop_first_dim, no Gumbel), V2's (no drop), drop with Gumbel -----------
constexpr std::size_t P3C = 5;
constexpr expr p3_gates = [] {
    expr e;
    ctrec::graph& g = e.g;
    const val G = ctrec::make_shared_input(g, "G", dims_of({P3C}));
    const val t0 = nas::truncated_gate(ctrec::make_param(g, "t0", dims_of({P3C})), {}, {0.9, true, false, 1.5}).out;
    const val t1 = nas::truncated_gate(ctrec::make_param(g, "t1", dims_of({P3C})), {}, {0.9, false, false, 1.5}).out;
    const val t2 = nas::truncated_gate(ctrec::make_param(g, "t2", dims_of({P3C})), G, {0.9, true, true, 1.5}).out;
    e.id = ctrec::concat(0, {t0, t1, t2}).id;  // 4 + 5 + 4
    return e;
}();
constexpr std::size_t P3OUT = 2 * (P3C - 1) + P3C;
constexpr expr p3_loss = [] {
    expr e = p3_gates;
    const val gates{&e.g, e.id};
    e.id = ctrec::sum(ctrec::make_shared_input(e.g, "c", dims_of({P3OUT})) * gates).id;
    return e;
}();
// the knee at five thresholds on one logit vector k (6), tau 0.8, Gumbel noise injected
constexpr double knee_theta[5] = {0.3, 0.6, 0.9, 0.99, 1.5};
constexpr expr knee_gates = [] {
    expr e;
    ctrec::graph& g = e.g;
    const val k = ctrec::make_param(g, "k", dims_of({6})), G = ctrec::make_shared_input(g, "G", dims_of({6}));
    val parts[5]{};
    for (std::size_t i = 0; i < 5; ++i) parts[i] = nas::truncated_gate(k, G, {knee_theta[i], false, true, 0.8}).out;
    e.id = ctrec::concat(0, parts, 5).id;
    return e;
}();

// ---- P4: an arbitrary (non-contiguous) mask ------------------------------------------------------------
constexpr bool p4_bits[3][7] = {{1, 0, 1, 1, 0, 0, 1}, {0, 0, 1, 1, 1, 0, 1}, {1, 0, 0, 1, 1, 0, 0}};
constexpr expr p4_y = [] {
    expr e = ctrec::input<"x", 7>;
    const val x{&e.g, e.id}, w = ctrec::make_param(e.g, "w", dims_of({3}));
    e.id = (x * nas::mask_to_slot(w, 7, [](std::size_t j, std::size_t d) { return p4_bits[j][d]; })).id;
    return e;
}();

// ---- NASGatingLayer ------------------------------------------------------------------------------------
constexpr cl::nas_gating_config ng_cfg{.segment_sizes = {3, 1, 4, 2}};
constexpr cl::nas_gating_config ng_log_cfg{.segment_sizes = {3, 1, 4, 2},
                                           .ste_type = cl::nas_ste::softplus,
                                           .use_logistic = true,
                                           .temperature = 0.6,
                                           .seed = 7};
constexpr cl::nas_gating_config ng_init_cfg{.segment_sizes = {3, 1, 4, 2}, .initializer = ctrec::init::Constant{0.25}};
const std::vector<std::size_t> ng_widths = {3, 1, 4, 2};
constexpr std::size_t NGD = 10;
constexpr auto xg = ctrec::input<"x", NGD>;
constexpr auto ng_train = cl::nas_gating<"g", ng_cfg>(xg);
constexpr auto ng_train_y = ng_train.out();
constexpr auto ng_eval = cl::nas_gating<"g", ng_cfg, cl::mode::eval>(xg);
constexpr auto ng_eval_y = ng_eval.out();
constexpr auto ng_pred = cl::nas_gating<"g", ng_cfg, cl::mode::predict>(xg);
constexpr auto ng_log = cl::nas_gating<"h", ng_log_cfg>(xg);
constexpr auto ng_log_y = ng_log.out();
constexpr auto ng_init = cl::nas_gating<"g", ng_init_cfg>(xg);
// EVAL and PREDICT build the same graph (no noise in either)
static_assert(ng_eval.g.n == ng_pred.g.n && ng_eval.out_id == ng_pred.out_id);
// TRAIN draws one shared (unbatched) open-uniform leaf of N values on "<scope>/noise_<seed>"
constexpr bool has_leaf(const cl::result& r, ctrec::opcode op, std::string_view name, bool batched, std::size_t n) {
    for (std::uint32_t i = 0; i < r.g.n; ++i)
        if (r.g.nodes[i].op == op && r.g.name_of(i) == name)
            return r.g.nodes[i].batched == batched && r.g.nodes[i].shape.size() == n;
    return false;
}
static_assert(has_leaf(ng_train, ctrec::opcode::random, "g/noise_0", false, 4));
static_assert(has_leaf(ng_log, ctrec::opcode::random, "h/noise_7", false, 4));
static_assert(!has_leaf(ng_eval, ctrec::opcode::random, "g/noise_0", false, 4));
// the gates are computed once per call: the scale, gates and probabilities are unbatched
constexpr bool per_call = [] {
    cl::result m;
    const val x = m.input("x", dims_of({NGD}));
    const nas::nas_values a = cl::nas_gating_values(m, "g", ng_cfg, mode::train, x);
    const nas::nas_values b = cl::simple_nas_values(m, "s", {.segment_sizes = {3, 1, 4, 2}}, mode::train, x);
    const nas::nas_values c = cl::simple_nas_v2_values(m, "t", {.segment_sizes = {3, 1, 4, 2}}, mode::train, x);
    bool ok = true;
    for (const nas::nas_values& v : {a, b, c})
        ok = ok && v.out.batched() && !v.scale.batched() && !v.gate.batched() && !v.prob.batched() && v.scale.dim(0) == NGD;
    return ok && a.gate.dim(0) == 4 && b.prob.dim(0) == 5 && b.gate.dim(0) == 4 && c.prob.dim(0) == 4;
}();
static_assert(per_call);

// ---- SimpleNas: the published P3 case as layers (EVAL: no noise), and TRAIN with Gumbel ----------------
constexpr cl::result sn_pub_model = [] {
    cl::result m;
    const val v1 = cl::simple_nas(m, "v1", {.segment_sizes = {1, 1, 1, 1}}, mode::eval, m.input("x4", dims_of({4})));
    const val v2 = cl::simple_nas_v2(m, "v2", {.segment_sizes = {1, 1, 1, 1, 1}}, mode::eval, m.input("x5", dims_of({5})));
    m.set_out(ctrec::concat(0, {v1, v2}));
    return m;
}();
constexpr auto sn_pub_y = sn_pub_model.out();
const std::vector<std::size_t> sn_widths = {2, 1, 3, 2};
constexpr cl::result sn_tr_model = [] {
    cl::result m;
    const val x = m.input("x", dims_of({8}));
    const cl::simple_nas_config c{.segment_sizes = {2, 1, 3, 2}};
    m.set_out(ctrec::concat(0, {cl::simple_nas(m, "s1", c, mode::train, x), cl::simple_nas_v2(m, "s2", {.segment_sizes = {2, 1, 3, 2}, .seed = 9}, mode::train, x)}));
    return m;
}();
constexpr auto sn_tr_y = sn_tr_model.out();
// without use_gumbel the layer draws nothing, even in TRAIN
constexpr auto sn_det = cl::simple_nas<"d", {.segment_sizes = {2, 1, 3, 2}, .use_gumbel = false}>(ctrec::input<"x", 8>);
constexpr bool has_random(const cl::result& r) {
    for (std::uint32_t i = 0; i < r.g.n; ++i)
        if (r.g.nodes[i].op == ctrec::opcode::random) return true;
    return false;
}
static_assert(!has_random(sn_det) && has_random(sn_tr_model) && !has_random(sn_pub_model));
static_assert(sn_tr_model.g.nodes[sn_tr_model.inits[0].var].shape == ctrec::make_dims<5>() &&
              sn_tr_model.g.nodes[sn_tr_model.inits[1].var].shape == ctrec::make_dims<4>());

// The layer's scale from the reference: TRAIN with the generator's noise, or EVAL.
vec ng_scale(const vec& alpha, bool train, bool logistic, std::uint64_t seed, std::string_view stream, double tau,
             nas_ref::ste s, vec* D = nullptr) {
    vec u;
    if (train) u = nas_ref::noise(logistic ? ctrec::random_kind::logistic : ctrec::random_kind::open_uniform, seed, stream, 4);
    const nas_ref::p1_result r = nas_ref::p1(alpha, train ? &u : nullptr, s, logistic, tau);
    if (D) *D = r.D;
    return nas_ref::expand(r.b, ng_widths);
}

} // namespace

TEST_CASE("P1 BernoulliGate: forward as spec 6.2, the published gradients, the softplus / clip / logistic surrogates") {
    const vec alpha = {-0.5, 1.0, 0.8, -5.0, 85.0, -85.0, 0.0};
    const vec u = {0.3, 0.9, 0.6, 0.001, 0.99, 0.5, 0.5};       // u = 0.5 at alpha = 0: the tie u <= pi keeps
    const vec Lg = {0.2, -2.0, 0.1, 4.9, -100.0, 3.0, 0.0};      // L = 0 at alpha = 0: pi = 0.5 >= 0.5 keeps
    leaves L;
    for (auto n : p1_names) L[n] = alpha;
    L["u"] = u, L["L"] = Lg;
    vec c(6 * P1N);
    for (std::size_t i = 0; i < c.size(); ++i) c[i] = i < P1N ? 1.0 : test::leaf_value("c", i);  // gate 0: loss = sum b
    L["c"] = c;
    const vec gates = nas_ref::run_both<ctrec::program<double, p1_gates>>(L, 1, 0)[0];
    const vec gates32 = nas_ref::run_seeded<ctrec::program<float, p1_gates>>(L, 1, 0)[0];
    CHECK(gates32 == gates);
    std::vector<nas_ref::p1_result> ref;
    for (std::size_t k = 0; k < 6; ++k) {
        const vec* noise = k < 3 ? &u : k == 3 ? &Lg : nullptr;
        ref.push_back(nas_ref::p1(alpha, noise, p1_ste[k], p1_cfg[k].use_logistic, p1_cfg[k].tau));
        INFO("gate " << k);
        CHECK(vec(gates.begin() + k * P1N, gates.begin() + (k + 1) * P1N) == ref[k].b);
    }
    CHECK(ref[0].b == vec{1, 0, 1, 1, 1, 0, 1});
    CHECK(ref[3].b == vec{0, 0, 1, 0, 0, 0, 1});
    CHECK(ref[4].b == vec{0, 1, 1, 0, 1, 0, 1});

    using G = ctrec::grad_program<double, p1_loss>;
    const auto gr = nas_ref::run_both<G>(L, 1, 0);
    // published (ste none, loss sum b): [0.2350037, 0.1966119, 0.2139097, 0.0066481]
    const double published[4] = {0.2350037, 0.1966119, 0.2139097, 0.0066481};
    for (std::size_t i = 0; i < 4; ++i) CHECK(std::abs(gr[G::grad<"a0">][i] - published[i]) < 1e-7);
    // the clamps: D = 0 (none), alpha (softplus), 1 (clip) above 80; 0 below -80
    CHECK(gr[G::grad<"a0">][4] == 0.0);
    CHECK(gr[G::grad<"a0">][5] == 0.0);
    const std::size_t gi[6] = {G::grad<"a0">, G::grad<"a1">, G::grad<"a2">, G::grad<"a3">, G::grad<"a4">, G::grad<"a5">};
    for (std::size_t k = 0; k < 6; ++k) {
        vec want(P1N);
        for (std::size_t i = 0; i < P1N; ++i) want[i] = c[k * P1N + i] * ref[k].D[i];
        INFO("gate " << k);
        test::check_close(gr[gi[k]], want, 1e-12);
    }
    CHECK(gr[G::grad<"a1">][4] == doctest::Approx(85.0 * c[P1N + 4]));
    CHECK(gr[G::grad<"a2">][4] == doctest::Approx(c[2 * P1N + 4]));
    // no gradient reaches the noise
    for (double v : gr[G::grad<"u">]) CHECK(v == 0.0);

    // forward mode: the tangent is sum c D da + sum dc gates (the noise's tangent does not count)
    using J = ctrec::jvp_program<double, p1_loss>;
    const auto jv = nas_ref::run_both<J>(L, 1, 0);
    double want = 0;
    for (std::size_t k = 0; k < 6; ++k)
        for (std::size_t i = 0; i < P1N; ++i) want += c[k * P1N + i] * ref[k].D[i] * L[std::string("d.") + std::string(p1_names[k])][i];
    for (std::size_t i = 0; i < 6 * P1N; ++i) want += L["d.c"][i] * gates[i];
    CHECK(jv[1][0] == doctest::Approx(want).epsilon(1e-12));
}

TEST_CASE("P2 DiscreteGate: the published soft values, one-hot Gumbel / categorical / EVAL, ties, gradients") {
    using F = ctrec::program<double, p2_gates>;
    using G = ctrec::grad_program<double, p2_loss>;
    const std::size_t gi[5] = {G::grad<"b0">, G::grad<"b1">, G::grad<"b2">, G::grad<"b3">, G::grad<"b4">};
    auto check = [&](const vec& alpha, const vec& noise, const vec& c) {
        leaves L;
        for (auto n : p2_names) L[n] = alpha;
        L["G"] = noise, L["c"] = c;
        const vec gates = nas_ref::run_both<F>(L, 1, 0)[0];
        const auto gr = nas_ref::run_both<G>(L, 1, 0);
        for (std::size_t k = 0; k < 5; ++k) {
            INFO("gate " << k << ", alpha " << alpha[0] << " " << alpha[1] << " " << alpha[2] << " " << alpha[3]);
            const vec got(gates.begin() + k * P2C, gates.begin() + (k + 1) * P2C), ck(c.begin() + k * P2C, c.begin() + (k + 1) * P2C);
            if (!p2_cfg[k].one_hot) {
                vec v(P2C);
                for (std::size_t i = 0; i < P2C; ++i) v[i] = (alpha[i] + (p2_cfg[k].use_gumbel ? noise[i] : 0.0)) / p2_tau;
                const vec q = nas_ref::softmax(v);
                test::check_close(got, q, 1e-14);
                test::check_close(gr[gi[k]], nas_ref::softmax_vjp(q, ck, p2_tau), 1e-13);
            } else {
                const nas_ref::p2_result r = nas_ref::p2_onehot(alpha, k == 3 ? nullptr : &noise, p2_cfg[k].use_gumbel, p2_tau);
                vec h(P2C, 0.0);
                h[r.j] = 1;
                CHECK(got == h);  // exact zeros and one
                test::check_close(gr[gi[k]], nas_ref::p2_onehot_vjp(r, ck[r.j], p2_tau), 1e-13);
            }
        }
        return gates;
    };
    // published: alpha = [6.0, 1.8, 3.8, -5.0], tau 1.5: soft q = softmax(alpha / 1.5) sums to 1
    // and the gradient of its sum is 0; one-hot with Gumbel sums to 1
    const vec published = {6.0, 1.8, 3.8, -5.0};
    const vec ones(5 * P2C, 1.0);
    const vec gates = check(published, {0.3, 2.5, -0.4, 1.0}, ones);
    double s0 = 0, s1 = 0;
    for (std::size_t i = 0; i < P2C; ++i) s0 += gates[i], s1 += gates[P2C + i];
    CHECK(s0 == doctest::Approx(1.0).epsilon(1e-15));
    CHECK(s1 == 1.0);
    {
        leaves L;
        for (auto n : p2_names) L[n] = published;
        L["G"] = {0.3, 2.5, -0.4, 1.0}, L["c"] = ones;
        const auto outs = nas_ref::run_both<G>(L, 1, 0);  // kept: a range-for over a temporary's element dangles
        for (double v : outs[G::grad<"b0">]) CHECK(std::abs(v) < 1e-15);
    }
    // ties go to the lowest index: [1, 3, 3, 0] (EVAL), + G = [0.25, 0.5, 0.5, 2] (Gumbel and
    // categorical keys tie exactly at 1 and 2)
    vec c(5 * P2C);
    for (std::size_t i = 0; i < c.size(); ++i) c[i] = test::leaf_value("c", i);
    const vec tied = check({1.0, 3.0, 3.0, 0.0}, {0.25, 0.5, 0.5, 2.0}, c);
    for (std::size_t k : {1, 2, 3}) CHECK(tied[k * P2C + 1] == 1.0);
    // random logits and noise, and small integer logits (many ties)
    for (int t = 0; t < 60; ++t) {
        vec a(P2C), g(P2C);
        for (std::size_t i = 0; i < P2C; ++i) {
            a[i] = t % 2 ? std::floor(3 * (test::leaf_value("ai", t * 8 + i) + 1)) : 4 * test::leaf_value("a", t * 8 + i);
            g[i] = t % 2 ? 0.0 : -std::log(-std::log(0.5 * (test::leaf_value("g", t * 8 + i) + 1.0) * 0.999 + 0.0005));
        }
        check(a, g, c);
    }
}

TEST_CASE("P3 DiscreteTruncatedGate: the published case, V2's, Gumbel, and the knee against the kernel's sort") {
    using F = ctrec::program<double, p3_gates>;
    using G = ctrec::grad_program<double, p3_loss>;
    const vec alpha = {1.5, 1.0, 0.8, -3.0, 2.5};
    const vec noise = {0.4, -0.7, 1.9, 0.05, -1.1};
    leaves L;
    L["t0"] = alpha, L["t1"] = alpha, L["t2"] = alpha, L["G"] = noise;
    vec c(P3OUT, 1.0);  // gbar = 1 for the published cases (t0, t1)
    for (std::size_t i = P3C - 1 + P3C; i < P3OUT; ++i) c[i] = test::leaf_value("c", i);
    L["c"] = c;
    const vec gates = nas_ref::run_both<F>(L, 1, 0)[0];
    const auto gr = nas_ref::run_both<G>(L, 1, 0);
    // published: q = [0.2303542, 0.1650560, 0.1444526, 0.0114687, 0.4486686], pivot 0.1444526,
    // g = [1, 1, 0, 1], alphabar = [-0.11643284, 0.02660953, 0.02328796, -0.00579685, 0.07233221]
    const nas_ref::p3_result r = nas_ref::p3_kernel(alpha, nullptr, 0.9, 1.5);
    const double q_pub[5] = {0.2303542, 0.1650560, 0.1444526, 0.0114687, 0.4486686};
    for (std::size_t i = 0; i < 5; ++i) CHECK(std::abs(r.q[i] - q_pub[i]) < 1e-7);
    CHECK(vec(gates.begin(), gates.begin() + 4) == vec{1, 1, 0, 1});
    const double g_pub[5] = {-0.11643284, 0.02660953, 0.02328796, -0.00579685, 0.07233221};
    for (std::size_t i = 0; i < 5; ++i) CHECK(std::abs(gr[G::grad<"t0">][i] - g_pub[i]) < 1e-8);
    // V2 (no drop): g = [1, 1, 1, 0, 1], alphabar = [0.00176124, 0.00126198, 0.00110445, -0.00755809, 0.00343042]
    CHECK(vec(gates.begin() + 4, gates.begin() + 9) == vec{1, 1, 1, 0, 1});
    const double v2_pub[5] = {0.00176124, 0.00126198, 0.00110445, -0.00755809, 0.00343042};
    for (std::size_t i = 0; i < 5; ++i) CHECK(std::abs(gr[G::grad<"t1">][i] - v2_pub[i]) < 1e-8);
    test::check_close(gr[G::grad<"t0">], nas_ref::p3_vjp(r.q, r.gate, vec(4, 1.0), true, 1.5), 1e-14);
    // with Gumbel: through the perturbed q
    const nas_ref::p3_result rg = nas_ref::p3_kernel(alpha, &noise, 0.9, 1.5);
    CHECK(vec(gates.begin() + 9, gates.end()) == vec(rg.gate.begin() + 1, rg.gate.end()));
    test::check_close(gr[G::grad<"t2">], nas_ref::p3_vjp(rg.q, rg.gate, vec(c.begin() + 9, c.end()), true, 1.5), 1e-13);

    // the pairwise knee against the kernel's sort + float32 prefix sum, thresholds 0.3 ... 1.5,
    // random logits, and logits with ties (tied entries are selected together)
    using K = ctrec::program<double, knee_gates>;
    int compared = 0, skipped = 0;
    for (int t = 0; t < 300; ++t) {
        vec k(6), gn(6);
        for (std::size_t i = 0; i < 6; ++i) {
            k[i] = t % 3 == 0 ? std::floor(2 * (test::leaf_value("kt", t * 8 + i) + 1)) : 3 * test::leaf_value("k", t * 8 + i);
            gn[i] = t % 3 == 0 ? 0.0 : test::leaf_value("gk", t * 8 + i);
        }
        leaves LK;
        LK["k"] = k, LK["G"] = gn;
        const vec got = nas_ref::run_both<K>(LK, 1, 0)[0];
        for (std::size_t j = 0; j < 5; ++j) {
            const nas_ref::p3_result kr = nas_ref::p3_kernel(k, &gn, knee_theta[j], 0.8);
            if (kr.near) {
                ++skipped;
                continue;
            }
            ++compared;
            INFO("trial " << t << ", theta " << knee_theta[j]);
            CHECK(vec(got.begin() + j * 6, got.begin() + (j + 1) * 6) == kr.gate);
        }
    }
    CHECK(compared > 1400);
    CHECK(skipped < 20);
    // threshold 1.5 is never reached: everything selected
    leaves LK;
    const vec got = nas_ref::run_both<K>(LK, 1, 0)[0];
    CHECK(vec(got.begin() + 24, got.end()) == vec(6, 1.0));
}

TEST_CASE("P4 mask to slot: s = M^T w for an arbitrary mask, linear: derivatives by central differences") {
    leaves L;
    const vec w = {0.5, -1.25, 2.0};
    L["w"] = w;
    const std::size_t batch = 3;
    const vec y = nas_ref::run_both<ctrec::program<double, p4_y>>(L, batch, 0)[0];
    vec s(7, 0.0);
    for (std::size_t d = 0; d < 7; ++d)
        for (std::size_t j = 0; j < 3; ++j) s[d] += w[j] * p4_bits[j][d];
    test::check_close(y, nas_ref::scale_rows(L["x"], s, batch), 1e-15);
    test::check_ad<p4_y>(2);
}

TEST_CASE("NASGatingLayer TRAIN: the generator's Bernoulli draws, shared by the batch; seeds; CPU = reference; float") {
    using F = ctrec::program<double, ng_train_y>;
    const vec alpha = {-0.3, 0.9, 0.05, -1.7};
    const std::size_t batch = 5;
    int differ = 0;
    vec first;
    for (std::uint64_t seed = 0; seed < 40; ++seed) {
        leaves L;
        L["g/arch_weights"] = alpha;
        const vec y = nas_ref::run_both<F>(L, batch, seed)[0];
        const vec s = ng_scale(alpha, true, false, seed, "g/noise_0", 1.0, nas_ref::ste::none);
        INFO("seed " << seed);
        CHECK(y == nas_ref::scale_rows(L["x"], s, batch));  // dropped columns exact zeros, kept exact
        // same seed: bit-identical
        CHECK(nas_ref::run_seeded<F>(L, batch, seed)[0] == y);
        if (seed == 0) first = y;
        else differ += y != first;
        if (seed < 8) {  // float: the same gates (x rounded to float)
            vec x32 = L["x"];
            for (double& v : x32) v = static_cast<float>(v);
            CHECK(nas_ref::run_seeded<ctrec::program<float, ng_train_y>>(L, batch, seed)[0] == nas_ref::scale_rows(x32, s, batch));
        }
    }
    CHECK(differ > 20);  // P(all four gates equal to seed 0's) is small per seed
    // use_logistic, softplus, tau 0.6, seed 7: stream "h/noise_7", b = 1[sigma^((L + alpha) / tau) >= 0.5]
    for (std::uint64_t seed = 0; seed < 20; ++seed) {
        leaves L;
        L["h/arch_weights"] = alpha;
        const vec y = nas_ref::run_both<ctrec::program<double, ng_log_y>>(L, batch, seed)[0];
        INFO("seed " << seed);
        CHECK(y == nas_ref::scale_rows(L["x"], ng_scale(alpha, true, true, seed, "h/noise_7", 0.6, nas_ref::ste::softplus), batch));
    }
}

TEST_CASE("NASGatingLayer EVAL / PREDICT: b = 1[alpha >= 0], no noise, the same for every seed") {
    const vec alpha = {-0.3, 0.0, 0.05, -1e-9};
    for (std::uint64_t seed : {0u, 1u, 99u}) {
        leaves L;
        L["g/arch_weights"] = alpha;
        const vec y = nas_ref::run_both<ctrec::program<double, ng_eval_y>>(L, 3, seed)[0];
        CHECK(y == nas_ref::scale_rows(L["x"], nas_ref::expand({0, 1, 1, 0}, ng_widths), 3));
    }
}

TEST_CASE("NASGatingLayer: Bernoulli frequencies match pi = sigma(alpha), plain and logistic") {
    const vec alpha = {-1.0, 0.0, 0.5, 2.0};
    const int n = 3000;
    vec f(4, 0.0), fl(4, 0.0);
    leaves L;
    L["g/arch_weights"] = alpha, L["h/arch_weights"] = alpha, L["x"] = vec(NGD, 1.0);
    for (int seed = 0; seed < n; ++seed) {
        const vec y = nas_ref::run_seeded<ctrec::program<double, ng_train_y>>(L, 1, seed)[0];
        const vec yl = nas_ref::run_seeded<ctrec::program<double, ng_log_y>>(L, 1, seed)[0];
        for (std::size_t i = 0, o = 0; i < 4; o += ng_widths[i], ++i) f[i] += y[o], fl[i] += yl[o];
    }
    for (std::size_t i = 0; i < 4; ++i) {
        const double pi = nas_ref::sig_hat(alpha[i]), sd = std::sqrt(pi * (1 - pi) / n);
        INFO("segment " << i << ": pi " << pi << ", plain " << f[i] / n << ", logistic " << fl[i] / n);
        CHECK(std::abs(f[i] / n - pi) < 4.5 * sd);
        CHECK(std::abs(fl[i] / n - pi) < 4.5 * sd);  // 1[L + alpha >= 0], L logistic: P = sigma(alpha)
    }
}

namespace {
// grad program G of a NASGating output at `seed`: xbar = ybar * s exactly and against central
// differences (reference backend), arch_weights (output ga) = D * the segment sums of rho
template <class G>
void ng_grad_check(std::string_view pname, std::size_t ga, bool train, bool logistic, std::string_view stream, double tau,
                   nas_ref::ste ste, std::uint64_t seed) {
    using R = typename G::template with_backend<ctrec::reference_backend>;
    const vec alpha = {-0.3, 0.9, 0.05, -1.7};
    const std::size_t batch = 4;
    leaves L;
    L[pname] = alpha;
    const auto gr = nas_ref::run_both<G>(L, batch, seed);
    vec D;
    const vec s = ng_scale(alpha, train, logistic, seed, stream, tau, ste, &D);
    const vec x = L["x"], cot = L["cotangent"];
    INFO("seed " << seed << ", gates " << s[0] << s[3] << s[4] << s[8]);
    CHECK(gr[G::template grad<"x">] == nas_ref::scale_rows(cot, s, batch));
    for (std::size_t e = 0; e < x.size(); e += 3) {
        leaves P = L, M = L;
        P["x"][e] += 1e-6, M["x"][e] -= 1e-6;
        const vec yp = nas_ref::run_seeded<R>(P, batch, seed)[0], ym = nas_ref::run_seeded<R>(M, batch, seed)[0];
        double fd = 0;
        for (std::size_t i = 0; i < yp.size(); ++i) fd += cot[i] * (yp[i] - ym[i]) / 2e-6;
        CHECK(gr[G::template grad<"x">][e] == doctest::Approx(fd).epsilon(1e-7));
    }
    const vec gb = nas_ref::segment_sums(nas_ref::rho(x, cot, batch, NGD), ng_widths);
    vec want(4);
    for (std::size_t i = 0; i < 4; ++i) want[i] = gb[i] * D[i];
    test::check_close(gr[ga], want, 1e-12);
}
} // namespace

TEST_CASE("NASGatingLayer gradients: x by central differences, arch_weights by the P1 surrogate (TRAIN and EVAL)") {
    using GT = ctrec::grad_program<double, ng_train_y>;
    using GE = ctrec::grad_program<double, ng_eval_y>;
    using GL = ctrec::grad_program<double, ng_log_y>;
    for (std::uint64_t seed : {0u, 5u, 11u}) {
        ng_grad_check<GT>("g/arch_weights", GT::grad<"g/arch_weights">, true, false, "g/noise_0", 1.0, nas_ref::ste::none, seed);
        ng_grad_check<GL>("h/arch_weights", GL::grad<"h/arch_weights">, true, true, "h/noise_7", 0.6, nas_ref::ste::softplus, seed);
    }
    ng_grad_check<GE>("g/arch_weights", GE::grad<"g/arch_weights">, false, false, "", 1.0, nas_ref::ste::none, 3);
}

TEST_CASE("NASGatingLayer: one variable arch_weights (N), RandomUniform(-0.001, 0.001) unless overridden") {
    static_assert(ng_train.n_inits == 1 && ng_train.g.name_of(ng_train.inits[0].var) == "g/arch_weights");
    static_assert(ng_train.g.nodes[ng_train.inits[0].var].shape == ctrec::make_dims<4>());
    static_assert(ng_train.inits[0].spec.w == ctrec::init::spec::which::random_uniform && ng_train.inits[0].spec.a == -0.001 &&
                  ng_train.inits[0].spec.b == 0.001);
    static_assert(ng_init.inits[0].spec.w == ctrec::init::spec::which::constant && ng_init.inits[0].spec.a == 0.25);
    using P = ctrec::program<double, ng_train_y>;
    static_assert(P::n_params == 1 && P::n_inputs == 1);
    P::parameters p;
    cl::initialize<ng_train>(p, 3);
    double mx = 0;
    bool nonzero = true;
    for (double v : p.get<"g/arch_weights">()) mx = std::max(mx, std::abs(v)), nonzero = nonzero && v != 0.0;
    CHECK(nonzero);
    CHECK(mx <= 0.001);
}

TEST_CASE("SimpleNas V1 / V2: the published P3 values as layers (EVAL), the null slot") {
    using G = ctrec::grad_program<double, sn_pub_y>;
    leaves L;
    const vec alpha = {1.5, 1.0, 0.8, -3.0, 2.5};
    L["v1/arch_weights"] = alpha, L["v2/arch_weights"] = alpha;
    L["x4"] = vec(4, 1.0), L["x5"] = vec(5, 1.0), L["cotangent"] = vec(9, 1.0);  // gbar = 1
    for (std::uint64_t seed : {0u, 4u}) {
        const auto gr = nas_ref::run_both<G>(L, 1, seed);
        CHECK(gr[0] == vec{1, 1, 0, 1, 1, 1, 1, 0, 1});
        const double v1[5] = {-0.11643284, 0.02660953, 0.02328796, -0.00579685, 0.07233221};
        const double v2[5] = {0.00176124, 0.00126198, 0.00110445, -0.00755809, 0.00343042};
        for (std::size_t i = 0; i < 5; ++i) {
            CHECK(std::abs(gr[G::grad<"v1/arch_weights">][i] - v1[i]) < 1e-8);
            CHECK(std::abs(gr[G::grad<"v2/arch_weights">][i] - v2[i]) < 1e-8);
        }
    }
}

TEST_CASE("SimpleNas V1 / V2 TRAIN with Gumbel: the knee on perturbed q from the generator, gradients, seeds") {
    using G = ctrec::grad_program<double, sn_tr_y>;
    const vec a1 = {0.2, 1.1, 0.4, -0.3, 0.8}, a2 = {1.1, 0.4, -0.3, 0.8};
    const std::size_t batch = 3;
    int compared = 0, differ = 0;
    vec first;
    for (std::uint64_t seed = 0; seed < 40; ++seed) {
        leaves L;
        L["s1/arch_weights"] = a1, L["s2/arch_weights"] = a2;
        const auto gr = nas_ref::run_both<G>(L, batch, seed);
        CHECK(nas_ref::run_seeded<G>(L, batch, seed)[0] == gr[0]);
        if (seed == 0) first = gr[0];
        else differ += gr[0] != first;
        const vec G1 = nas_ref::noise(ctrec::random_kind::gumbel, seed, "s1/noise_0", 5);
        const vec G2 = nas_ref::noise(ctrec::random_kind::gumbel, seed, "s2/noise_9", 4);
        const nas_ref::p3_result r1 = nas_ref::p3_kernel(a1, &G1, 0.9, 1.5), r2 = nas_ref::p3_kernel(a2, &G2, 0.9, 1.5);
        if (r1.near || r2.near) continue;
        ++compared;
        const vec s1 = nas_ref::expand(vec(r1.gate.begin() + 1, r1.gate.end()), sn_widths), s2 = nas_ref::expand(r2.gate, sn_widths);
        const vec& x = L["x"];
        const vec& cot = L["cotangent"];
        vec want, rho1(8, 0.0), rho2(8, 0.0);
        for (std::size_t b = 0; b < batch; ++b) {
            for (std::size_t d = 0; d < 8; ++d) want.push_back(x[b * 8 + d] * s1[d]);
            for (std::size_t d = 0; d < 8; ++d) want.push_back(x[b * 8 + d] * s2[d]);
            for (std::size_t d = 0; d < 8; ++d) rho1[d] += cot[b * 16 + d] * x[b * 8 + d], rho2[d] += cot[b * 16 + 8 + d] * x[b * 8 + d];
        }
        INFO("seed " << seed);
        CHECK(gr[0] == want);
        test::check_close(gr[G::grad<"s1/arch_weights">], nas_ref::p3_vjp(r1.q, r1.gate, nas_ref::segment_sums(rho1, sn_widths), true, 1.5), 1e-13);
        test::check_close(gr[G::grad<"s2/arch_weights">], nas_ref::p3_vjp(r2.q, r2.gate, nas_ref::segment_sums(rho2, sn_widths), false, 1.5), 1e-13);
        vec xbar;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t d = 0; d < 8; ++d) xbar.push_back(cot[b * 16 + d] * s1[d] + cot[b * 16 + 8 + d] * s2[d]);
        test::check_close(gr[G::grad<"x">], xbar, 1e-15);
    }
    CHECK(compared >= 38);
    CHECK(differ >= 10);
}
