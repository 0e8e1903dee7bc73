// LHUCTower (spec layers-trans-seq-multitask-nas.md 5) against a naive float64 reference written
// from the spec (tests/layer_reference.hpp's Dense and BatchNorm), CPU and reference backends,
// float and double; float64 central differences and JVP/VJP duality; the original test's
// configuration on initialised weights; variable names; the gates' stacked first-layer GEMM.
// LogitCorrection (spec 4) is in test_lhuc_logit_2.cpp (one TU would compile too long).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ctrec/core.hpp"
#include "ctrec/layers/lhuc_tower.hpp"
#include "ctrec/train/train_program.hpp"  // initialize
#include "layer_reference.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
using fl::mode;
using flat_ref::get;
using flat_ref::norm;
using flat_ref::vec;
using test::leaves;

namespace {

// ---- LHUCTower reference (spec 5.5) ----------------------------------------------------------------------
enum act { none, relu, tanh_, prelu, sigm };
struct lhuc_ref {
    std::string s = "lhuc_tower";
    std::size_t d = 0, dl = 0;  // input widths
    std::vector<std::size_t> out;
    std::vector<std::vector<std::size_t>> gates;
    std::vector<act> acts;
    bool bias = true, gate_bias = true, bn = false, gate_bn = false, train = false;
    norm nm = norm::trainable, gate_nm = norm::trainable;
};
vec apply(act a, vec h, leaves& L, const std::string& alpha, std::size_t w) {
    for (std::size_t e = 0; e < h.size(); ++e) {
        double& v = h[e];
        if (a == relu) v = flat_ref::relu(v);
        if (a == tanh_) v = std::tanh(v);
        if (a == sigm) v = flat_ref::sigmoid(v);
        if (a == prelu) v = v > 0 ? v : get(L, alpha)[e % w] * v;
    }
    return h;
}
// gate MLP: [BN/in] dense_0 [BN/out] relu dense_1 ... dense_last, then 2 sigmoid
vec gate_ref(const lhuc_ref& c, leaves& L, const vec& xl, std::size_t batch, std::size_t i) {
    const std::string gs = c.s + "/layer_" + std::to_string(i + 1) + "/lhuc";
    vec h = c.gate_bn ? flat_ref::bn(L, xl, batch, 1, c.dl, gs + "/BatchNorm/in", c.train) : xl;
    std::size_t in = c.dl;
    const auto& g = c.gates[i];
    for (std::size_t j = 0; j < g.size(); ++j) {
        h = flat_ref::dense(L, h, batch, in, g[j], gs + "/dense_" + std::to_string(j), c.gate_nm, c.gate_bias);
        if (j + 1 < g.size()) {
            if (c.gate_bn) h = flat_ref::bn(L, h, batch, 1, g[j], gs + (j == 0 ? "/BatchNorm/out" : "/BatchNorm/out_" + std::to_string(j)), c.train);
            h = apply(relu, h, L, "", g[j]);
        }
        in = g[j];
    }
    for (double& v : h) v = 2 * flat_ref::sigmoid(v);
    return h;
}
vec tower_ref(const lhuc_ref& c, leaves& L, const vec& xd, const vec& xl, std::size_t batch) {
    vec h = c.bn ? flat_ref::bn(L, xd, batch, 1, c.d, c.s + "/batch_norm", c.train) : xd;
    std::size_t in = c.d;
    for (std::size_t i = 0; i < c.out.size(); ++i) {
        const std::string ls = c.s + "/layer_" + std::to_string(i + 1);
        h = flat_ref::dense(L, h, batch, in, c.out[i], ls + "/dense", c.nm, c.bias);
        if (c.bn && i + 1 < c.out.size()) h = flat_ref::bn(L, h, batch, 1, c.out[i], ls + "/batch_norm", c.train);
        h = apply(c.acts[i], h, L, ls + "/p_re_lu/alpha", c.out[i]);
        const vec g = gate_ref(c, L, xl, batch, i);
        for (std::size_t e = 0; e < h.size(); ++e) h[e] *= g[e];
        in = c.out[i];
    }
    return h;
}
void positive_bn(leaves& L, const lhuc_ref& c) {
    if (c.bn) {
        flat_ref::positive_bn_state(L, c.s + "/batch_norm", c.d);
        for (std::size_t i = 0; i + 1 < c.out.size(); ++i)
            flat_ref::positive_bn_state(L, c.s + "/layer_" + std::to_string(i + 1) + "/batch_norm", c.out[i]);
    }
    if (c.gate_bn)
        for (std::size_t i = 0; i < c.out.size(); ++i) {
            const std::string gs = c.s + "/layer_" + std::to_string(i + 1) + "/lhuc";
            flat_ref::positive_bn_state(L, gs + "/BatchNorm/in", c.dl);
            for (std::size_t j = 0; j + 1 < c.gates[i].size(); ++j)
                flat_ref::positive_bn_state(L, gs + (j == 0 ? "/BatchNorm/out" : "/BatchNorm/out_" + std::to_string(j)), c.gates[i][j]);
        }
}

// ---- LHUC models -------------------------------------------------------------------------------------------
// the original test: output_dims [50, 20, 1], lhuc_output_dims [[50, 50], [50, 50, 20], [100, 1]],
// lhuc_use_bias False, He-uniform, activations None, inputs (100) and (50)
constexpr fl::lhuc_tower_config<3> cfg_orig{.output_dims = {50, 20, 1},
                                            .lhuc_output_dims = {{{50, 50}, {50, 50, 20}, {100, 1}}},
                                            .initializers = {f::init::HeUniform{}, f::init::HeUniform{}, f::init::HeUniform{}},
                                            .lhuc_use_bias = false};
constexpr auto orig = fl::lhuc_tower<"lhuc_tower", cfg_orig, mode::predict>(f::input<"xd", 100>, f::input<"xl", 50>);
constexpr auto orig_y = orig.out();
const lhuc_ref ref_orig{.d = 100, .dl = 50, .out = {50, 20, 1}, .gates = {{50, 50}, {50, 50, 20}, {100, 1}},
                        .acts = {relu, relu, none}, .gate_bias = false};

// the same form, small (derivatives)
constexpr fl::lhuc_tower_config<2> cfg_small{.output_dims = {4, 2}, .lhuc_output_dims = {{{3, 4}, {2}}}, .lhuc_use_bias = false};
constexpr auto small = fl::lhuc_tower<"lhuc_tower", cfg_small, mode::predict>(f::input<"xd", 5>, f::input<"xl", 3>);
constexpr auto small_y = small.out();
const lhuc_ref ref_small{.d = 5, .dl = 3, .out = {4, 2}, .gates = {{3, 4}, {2}}, .acts = {relu, none}, .gate_bias = false};

// one input for both paths; batch norm in the tower and (inherited) in the gates; the list-of-ints
// form (gate i = [4, d_i]); tanh; regularizers
constexpr fl::lhuc_tower_config<2> cfg_bn{.output_dims = {5, 3},
                                          .lhuc_hidden_dims = {4},
                                          .activation = fl::act_tanh,
                                          .kernel_regularizer = fl::regularizer(0.01, 0.02),
                                          .bias_regularizer = fl::regularizer(0.0, 0.5),
                                          .enable_batch_normalization = true,
                                          .batch_normalization_momentum = 0.9};
constexpr auto bn_pr = fl::lhuc_tower<"lhuc_tower", cfg_bn, mode::predict>(f::input<"x", 6>);
constexpr auto bn_pr_y = bn_pr.out();
constexpr auto bn_tr = fl::lhuc_tower<"lhuc_tower", cfg_bn, mode::train>(f::input<"x", 6>);
constexpr auto bn_tr_y = bn_tr.out();
constexpr auto bn_tr_loss = f::batch_mean(f::sum(f::tanh(bn_tr_y) * f::input<"w", 3>)) + bn_tr.penalty();
const lhuc_ref ref_bn{.d = 6, .dl = 6, .out = {5, 3}, .gates = {{4, 5}, {4, 3}}, .acts = {tanh_, none}, .bn = true, .gate_bn = true};

// batch norm in the tower only (lhuc override), so the gates' first layers are one GEMM; the
// default gate form [d_i]; an activation list with PReLU; the source's kernel norm without learnable
// scale (monolith_compat: unit columns); gate overrides
constexpr fl::lhuc_tower_config<3> cfg_st{.output_dims = {4, 3, 2},
                                          .activations = {fl::act_relu, fl::act_prelu, fl::act_sigmoid},
                                          .activation_list = true,
                                          .use_learnable_weight_norm = false,
                                          .enable_batch_normalization = true,
                                          .lhuc_kernel_regularizer = fl::regularizer(0.0, 0.3),
                                          .lhuc_use_weight_norm = false,
                                          .lhuc_enable_batch_normalization = false,
                                          .monolith_compat = true};
constexpr auto st_tr = fl::lhuc_tower<"lhuc_tower", cfg_st, mode::train>(f::input<"xd", 6>, f::input<"xl", 5>);
constexpr auto st_tr_y = st_tr.out();
constexpr auto st_tr_loss = f::batch_mean(f::sum(st_tr_y * f::input<"w", 2>)) + st_tr.penalty();
const lhuc_ref ref_st{.d = 6, .dl = 5, .out = {4, 3, 2}, .gates = {{4}, {3}, {2}}, .acts = {relu, prelu, sigm},
                      .bn = true, .train = true, .nm = norm::compat, .gate_nm = norm::none};

// double on both backends at batches 1, 5, 70; float too when `single`
template <const auto& Y>
void check_lhuc(const lhuc_ref& c, const char* xd, const char* xl, bool single) {
    auto ref = [&](leaves& L, std::size_t batch, bool prepare) {
        if (prepare) {
            positive_bn(L, c);
            return vec{};
        }
        return tower_ref(c, L, get(L, xd), get(L, xl), batch);
    };
    if (single) return test::check_forward_all<Y>(1e-11, ref);
    for (std::size_t batch : {1, 5, 70}) test::check_forward<f::program<double, Y>>(batch, 1e-11, ref);
}

} // namespace

TEST_CASE("lhuc_tower: the original test's configuration against the reference, on leaves and on initialised weights") {
    check_lhuc<orig_y>(ref_orig, "xd", "xl", true);
    test::check_backends<f::program<double, orig_y>>(70, 1e-12);
    // initialised (He-uniform kernels, norms = the kernels' column norms, zero biases), ones inputs
    using P = f::program<double, orig_y>;
    P::parameters p;
    fl::initialize<orig>(p, 5);
    leaves L;
    for (std::size_t k = 0; k < P::n_params; ++k) L[P::parameters::names[k]].assign(p.get(k).begin(), p.get(k).end());
    L["xd"] = vec(100 * 100, 1.0);
    L["xl"] = vec(100 * 50, 1.0);
    const vec got = test::forward<P>(L, 100);
    const vec want = tower_ref(ref_orig, L, get(L, "xd"), get(L, "xl"), 100);
    test::check_close(got, want, 1e-12);
    for (std::size_t b = 1; b < 100; ++b) CHECK(got[b] == got[0]);  // identical rows
    const double lim = std::sqrt(6.0 / 100);
    for (double v : get(L, "lhuc_tower/layer_1/dense/kernel")) CHECK(std::abs(v) <= lim);
    // variables (relative names of spec 5.4); lhuc_use_bias = False: no gate biases
    for (const char* n : {"lhuc_tower/layer_1/dense/kernel", "lhuc_tower/layer_1/dense/trainable_kernel_norm", "lhuc_tower/layer_1/dense/bias",
                          "lhuc_tower/layer_3/dense/bias", "lhuc_tower/layer_1/lhuc/dense_0/kernel",
                          "lhuc_tower/layer_1/lhuc/dense_0/trainable_kernel_norm", "lhuc_tower/layer_2/lhuc/dense_2/kernel",
                          "lhuc_tower/layer_3/lhuc/dense_1/kernel"})
        CHECK_MESSAGE(P::parameters::position(n) < P::n_params, std::string(n));
    CHECK(P::parameters::position("lhuc_tower/layer_1/lhuc/dense_0/bias") == P::n_params);
    CHECK(P::n_params == 3 * 3 + (2 + 3 + 2) * 2);
    CHECK(P::parameters::sizes[P::parameters::position("lhuc_tower/layer_2/lhuc/dense_2/kernel")] == 50 * 20);
    CHECK(P::parameters::sizes[P::parameters::position("lhuc_tower/layer_3/lhuc/dense_0/kernel")] == 50 * 100);
}

TEST_CASE("lhuc_tower: the gates' first layers are one GEMM of x_l (a derived concatenated kernel), without gate batch norm") {
    auto gemms_of = []<class P>(P*, std::string_view input) {
        std::size_t n = 0, id = P::tab.size;
        for (std::size_t i = 0; i < P::tab.size; ++i)
            if (P::tab.nodes[i].op == f::opcode::input && P::tab.name_of(i) == input) id = i;
        for (std::size_t i = 0; i < P::tab.size; ++i)
            if (P::tab.nodes[i].op == f::opcode::contract)
                for (std::size_t j = 0; j < P::tab.nodes[i].nops; ++j) n += P::tab.operand(i, j) == id;
        return n;
    };
    CHECK(gemms_of(static_cast<f::program<double, orig_y>*>(nullptr), "xl") == 1);
    CHECK(gemms_of(static_cast<f::program<double, st_tr_y>*>(nullptr), "xl") == 1);
    static_assert(f::program<double, orig_y>::pl.derived_steps >= 1);
}

TEST_CASE("lhuc_tower: batch norm (train and predict, gates inheriting it), one input, the list-of-ints form; derivatives") {
    check_lhuc<bn_pr_y>(ref_bn, "x", "x", true);
    lhuc_ref tr = ref_bn;
    tr.train = true;
    for (std::size_t batch : {1, 5, 70}) {
        test::check_forward<f::program<double, bn_tr_y>>(batch, 1e-9, [&](leaves& L, std::size_t b, bool prepare) {
            if (prepare) return vec{};
            return tower_ref(tr, L, get(L, "x"), get(L, "x"), b);
        });
    }
    // the gates' BatchNorm settings: lhuc_<name> when given, else the tower's
    static_assert(fl::detail::lhuc_bn(cfg_bn, true).momentum == 0.9 && fl::detail::lhuc_bn(cfg_bn, false).momentum == 0.9);
    static constexpr fl::lhuc_tower_config<1> over{.output_dims = {2}, .batch_normalization_momentum = 0.9, .renorm_rmax = 3.0,
                                                   .lhuc_batch_normalization_momentum = 0.5, .lhuc_renorm_rmin = 0.25};
    static_assert(fl::detail::lhuc_bn(over, true).momentum == 0.5 && fl::detail::lhuc_bn(over, false).momentum == 0.9);
    static_assert(fl::detail::lhuc_bn(over, true).rmin == 0.25 && fl::detail::lhuc_bn(over, false).rmin == 0.0);
    static_assert(fl::detail::lhuc_bn(over, true).rmax == 3.0);
    // 6 BatchNorms: the input's, layer_1's, and BatchNorm/in and BatchNorm/out of each gate
    static_assert(bn_tr.n_updates == 12);
    static_assert(bn_pr.n_updates == 0);
    using P = f::program<double, bn_tr_y>;
    for (const char* n : {"lhuc_tower/batch_norm/gamma", "lhuc_tower/layer_1/batch_norm/gamma", "lhuc_tower/layer_1/lhuc/BatchNorm/in/beta",
                          "lhuc_tower/layer_2/lhuc/BatchNorm/out/gamma", "lhuc_tower/layer_2/lhuc/dense_1/bias"})
        CHECK_MESSAGE(P::parameters::position(n) < P::n_params, std::string(n));
    CHECK(P::parameters::position("lhuc_tower/layer_2/batch_norm/gamma") == P::n_params);  // none after the last layer
    // the penalty: kernel and bias regularizers on the tower and (inherited) on the gates
    {
        leaves L;
        static constexpr auto pen = bn_tr.penalty();
        const double got = test::run<f::program<double, pen>>(L, 1)[0][0];
        double want = 0;
        for (const std::string l : {"layer_1/dense", "layer_2/dense", "layer_1/lhuc/dense_0", "layer_1/lhuc/dense_1", "layer_2/lhuc/dense_0",
                                    "layer_2/lhuc/dense_1"}) {
            for (double w : get(L, "lhuc_tower/" + l + "/kernel")) want += 0.01 * std::abs(w) + 0.02 * w * w;
            for (double b : get(L, "lhuc_tower/" + l + "/bias")) want += 0.5 * b * b;
        }
        CHECK(got == doctest::Approx(want).epsilon(1e-12));
    }
    test::check_ad<bn_tr_loss>(5, 2e-6);
}

TEST_CASE("lhuc_tower: stacked gates with tower batch norm, PReLU, source kernel norm, gate overrides; small original form; derivatives") {
    for (std::size_t batch : {1, 5, 70}) {
        test::check_forward<f::program<double, st_tr_y>>(batch, 1e-9, [&](leaves& L, std::size_t b, bool prepare) {
            if (prepare) return vec{};
            return tower_ref(ref_st, L, get(L, "xd"), get(L, "xl"), b);
        });
        test::check_forward<f::program<float, st_tr_y>>(batch, 1e-4, [&](leaves& L, std::size_t b, bool prepare) {
            if (prepare) return vec{};
            return tower_ref(ref_st, L, get(L, "xd"), get(L, "xl"), b);
        });
    }
    using P = f::program<double, st_tr_y>;
    for (const char* n : {"lhuc_tower/layer_1/dense/kernel", "lhuc_tower/layer_2/p_re_lu/alpha", "lhuc_tower/layer_3/lhuc/dense_0/bias"})
        CHECK_MESSAGE(P::parameters::position(n) < P::n_params, std::string(n));
    CHECK(P::parameters::position("lhuc_tower/layer_1/dense/trainable_kernel_norm") == P::n_params);
    CHECK(P::parameters::position("lhuc_tower/layer_1/dense/kernel_norm") == P::n_params);
    CHECK(P::parameters::position("lhuc_tower/layer_1/lhuc/dense_0/trainable_kernel_norm") == P::n_params);
    CHECK(P::parameters::position("lhuc_tower/layer_1/lhuc/BatchNorm/in/gamma") == P::n_params);
    static_assert(st_tr.n_updates == 2 * 3);  // batch_norm, layer_1/batch_norm, layer_2/batch_norm
    // gate kernels get the lhuc regularizer, the tower's none
    {
        leaves L;
        static constexpr auto pen = st_tr.penalty();
        const double got = test::run<f::program<double, pen>>(L, 1)[0][0];
        double want = 0;
        for (int i = 1; i <= 3; ++i)
            for (double w : get(L, "lhuc_tower/layer_" + std::to_string(i) + "/lhuc/dense_0/kernel")) want += 0.3 * w * w;
        CHECK(got == doctest::Approx(want).epsilon(1e-12));
    }
    test::check_ad<st_tr_loss>(4, 2e-6);
    check_lhuc<small_y>(ref_small, "xd", "xl", false);
    test::check_ad<small_y>(3);
}
