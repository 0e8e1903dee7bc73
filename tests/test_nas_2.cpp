// MixedNASLayer (spec layers-trans-seq-multitask-nas.md 6.4; nas_gates.hpp, mixed_nas.hpp)
// against float64 references written from the spec (nas_reference.hpp): the doc's four mask
// examples verbatim, the 'random' masks
// (nested, last row ones, the generator recomputed, the doc's [110100] from injected u),
// explicit masks, the spec's reference values, TRAIN sampling with the generator's noise
// (discrete / gumbel, categorical frequencies), EVAL / PREDICT, seeds, gradients (x exact and by
// central differences, arch_weights by the straight-through formulas, 'none' by central
// differences and JVP duality), the published P3 values as layers; CPU against the reference
// backend throughout.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "ctrec/core.hpp"
#include "ctrec/layers/mixed_nas.hpp"
#include "nas_reference.hpp"
#include "support.hpp"

namespace {

namespace cl = ctrec::layers;
namespace nas = ctrec::layers::nas;
using cl::mode;
using cl::nas_share_mode;
using cl::nas_weight_grad;
using ctrec::dims_of;
using ctrec::expr;
using ctrec::val;
using nas_ref::vec;
using test::leaves;

// ---- masks: sizes [2, 4, 6] in the four share modes, a wider random layout, explicit masks ---------
constexpr cl::mixed_nas_config mk_left{.segment_sizes = {{2, 4, 6}}, .embedding_share_mode = nas_share_mode::left};
constexpr cl::mixed_nas_config mk_diff{.segment_sizes = {{2, 4, 6}},
                                      .embedding_share_mode = nas_share_mode::diff,
                                      .weight_grad_mode = nas_weight_grad::gumbel};  // EVAL: argmax alpha too
constexpr cl::mixed_nas_config mk_none{.segment_sizes = {{2, 4, 6}}, .embedding_share_mode = nas_share_mode::none};
constexpr cl::mixed_nas_config mk_rand{.segment_sizes = {{2, 4, 6}}, .embedding_share_mode = nas_share_mode::random, .mask_seed = 12345};
constexpr cl::mixed_nas_config mk_rand2{.segment_sizes = {{1, 1}, {0, 3, 5, 9, 9}},
                                        .embedding_share_mode = nas_share_mode::random,
                                        .mask_seed = 77};
constexpr cl::mixed_nas_config mk_expl{.segment_sizes = {{0, 2, 4}}, .embedding_share_mode = nas_share_mode::left};
constexpr std::array<std::uint8_t, 12> expl_masks = {0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1};

// The doc's examples verbatim, as the configuration's masks when the model is built.
constexpr bool rows_are(const cl::mixed_nas_config& c, std::size_t W, const char* const (&rows)[3]) {
    for (std::size_t j = 0; j < 3; ++j)
        for (std::size_t d = 0; d < W; ++d)
            if (cl::mixed_nas_mask_bit(c, 0, j, d) != (rows[j][d] == '1')) return false;
    return true;
}
constexpr const char* left_rows[3] = {"000000", "111100", "111111"};
constexpr const char* diff_rows[3] = {"000000", "001100", "000011"};
constexpr const char* none_rows[3] = {"000000000000", "001111000000", "000000111111"};
static_assert(rows_are(mk_left, 6, left_rows) && rows_are(mk_diff, 6, diff_rows) && rows_are(mk_none, 12, none_rows));
static_assert(cl::mixed_nas_layout_of(mk_none).W[0] == 12 && cl::mixed_nas_layout_of(mk_left).W[0] == 6 &&
              cl::mixed_nas_layout_of(mk_rand2).W[1] == 9 && cl::mixed_nas_layout_of(mk_rand2).total_choices == 7);

// EVAL, weight_grad_mode discrete (gumbel for diff): w = onehot(argmax alpha), so x = ones gives
// y = the chosen row
constexpr cl::result masks_model = [] {
    cl::result m;
    const val yl = cl::mixed_nas(m, "left", mk_left, mode::eval, m.input("xl", dims_of({6})));
    const val yd = cl::mixed_nas(m, "diff", mk_diff, mode::eval, m.input("xd", dims_of({6})));
    const val yn = cl::mixed_nas(m, "none", mk_none, mode::eval, m.input("xn", dims_of({12})));
    const val yr = cl::mixed_nas(m, "rand", mk_rand, mode::eval, m.input("xr", dims_of({6})));
    const val yr2 = cl::mixed_nas(m, "rand2", mk_rand2, mode::eval, m.input("xq", dims_of({1 + 9})));
    const val ye = cl::mixed_nas(m, "expl", mk_expl, mode::eval, m.input("xe", dims_of({4})),
                                 std::span<const std::uint8_t>(expl_masks.data(), expl_masks.size()));
    m.set_out(ctrec::concat(0, {yl, yd, yn, yr, yr2, ye}));  // 6 + 6 + 12 + 6 + 10 + 4
    return m;
}();
constexpr auto masks_y = masks_model.out();
constexpr std::size_t masks_width = 44;
// the generated masks when the model is built (row-major per feature, features concatenated)
constexpr auto rand_bits = cl::mixed_nas_generated_masks<mk_rand>();
constexpr auto rand2_bits = cl::mixed_nas_generated_masks<mk_rand2>();
static_assert(rand_bits.size() == 18 && rand2_bits.size() == 2 + 45 && rand2_bits[0] == 0 && rand2_bits[1] == 1);
static_assert(cl::mixed_nas_generated_masks<mk_left>() ==
              std::array<std::uint8_t, 18>{0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1});
// the facade with explicit masks builds the same layer
constexpr auto expl_facade = cl::mixed_nas<"expl", mk_expl, mode::eval, expl_masks>(ctrec::input<"xe", 4>);
static_assert(expl_facade.n_inits == 1 && expl_facade.g.name_of(expl_facade.inits[0].var) == "expl/arch_weights");

// the 'random' rule on injected u: s = M^T w, M[j, d] = 1[u_d < s_j / 6] for sizes [2, 4, 6]
constexpr expr rule_y = [] {
    expr e = ctrec::input<"x", 6>;
    ctrec::graph& g = e.g;
    const val x{&g, e.id}, w = ctrec::make_param(g, "w", dims_of({3})), u = ctrec::make_shared_input(g, "u", dims_of({6}));
    double thr[3]{};
    const std::size_t sizes[3] = {2, 4, 6};
    for (std::size_t j = 0; j < 3; ++j) thr[j] = cl::mixed_nas_random_threshold(j, sizes[j], 6);
    e.id = (x * nas::threshold_mask_to_slot(w, u, thr)).id;
    return e;
}();

// ---- the spec's reference values: sizes [0, 2, 4], left, tau 1, TRAIN ---------------------------------
// n: weight_grad_mode none; d: discrete, u: gumbel, both with injected noise (Gd, Gu)
constexpr cl::mixed_nas_config rv_none{.segment_sizes = {{0, 2, 4}}, .embedding_share_mode = nas_share_mode::left, .weight_grad_mode = nas_weight_grad::none};
constexpr cl::mixed_nas_config rv_disc{.segment_sizes = {{0, 2, 4}}, .embedding_share_mode = nas_share_mode::left, .weight_grad_mode = nas_weight_grad::discrete};
constexpr cl::mixed_nas_config rv_gumb{.segment_sizes = {{0, 2, 4}}, .embedding_share_mode = nas_share_mode::left, .weight_grad_mode = nas_weight_grad::gumbel};
constexpr cl::result rv_model = [] {
    cl::result m;
    const val x = m.input("x", dims_of({4}));
    const val yn = cl::mixed_nas(m, "n", rv_none, mode::train, x);
    const val yd = cl::mixed_nas(m, "d", rv_disc, mode::train, x, {}, m.shared_input("Gd", dims_of({3})));
    const val yu = cl::mixed_nas(m, "u", rv_gumb, mode::train, x, {}, m.shared_input("Gu", dims_of({3})));
    m.set_out(ctrec::concat(0, {yn, yd, yu}));
    return m;
}();
constexpr auto rv_y = rv_model.out();

// ---- 'none' (smooth), PREDICT: central differences and JVP duality -------------------------------------
constexpr cl::mixed_nas_config sm_cfg{.segment_sizes = {{0, 2, 4}, {1, 3}, {2, 2, 5}},
                                      .temperature = 0.7,
                                      .embedding_share_mode = nas_share_mode::diff,
                                      .weight_grad_mode = nas_weight_grad::none};
constexpr auto sm_y = cl::mixed_nas<"sm", sm_cfg, mode::predict>(ctrec::input<"x", 4 + 3 + 5>).out();

// ---- TRAIN sampling: three features, discrete ('diff') and gumbel ('left'), tau 0.7 -------------------
constexpr cl::mixed_nas_config tr_disc{.segment_sizes = {{0, 2, 4}, {0, 1, 3, 5}, {2, 4}},
                                       .temperature = 0.7,
                                       .embedding_share_mode = nas_share_mode::diff,
                                       .weight_grad_mode = nas_weight_grad::discrete};
constexpr cl::mixed_nas_config tr_gumb{.segment_sizes = {{0, 2, 4}, {0, 1, 3, 5}, {2, 4}},
                                       .temperature = 0.7,
                                       .embedding_share_mode = nas_share_mode::left,
                                       .weight_grad_mode = nas_weight_grad::gumbel,
                                       .seed = 3};
const std::vector<std::vector<std::size_t>> tr_sizes = {{0, 2, 4}, {0, 1, 3, 5}, {2, 4}};
constexpr std::size_t TRD = 4 + 5 + 4;
constexpr cl::result tr_model = [] {
    cl::result m;
    const val x = m.input("x", dims_of({TRD}));
    m.set_out(ctrec::concat(0, {cl::mixed_nas(m, "md", tr_disc, mode::train, x), cl::mixed_nas(m, "mg", tr_gumb, mode::train, x)}));
    return m;
}();
constexpr auto tr_y = tr_model.out();
// TRAIN draws one shared Gumbel leaf (sum C_i) per sampling layer on "<scope>/noise_<seed>"; EVAL
// and 'none' draw nothing but the fixed-seed 'random' masks
constexpr int leaf(const cl::result& r, std::string_view name) {  // 1: shared Gumbel of 9, 0: absent, -1: other
    for (std::uint32_t i = 0; i < r.g.n; ++i)
        if (r.g.name_of(i) == name)
            return r.g.nodes[i].op == ctrec::opcode::random && !r.g.nodes[i].batched && r.g.nodes[i].shape.size() == 9 &&
                           r.g.nodes[i].axis == static_cast<std::uint32_t>(ctrec::random_kind::gumbel)
                       ? 1
                       : -1;
    return 0;
}
constexpr int random_leaves(const cl::result& r) {
    int n = 0;
    for (std::uint32_t i = 0; i < r.g.n; ++i) n += r.g.nodes[i].op == ctrec::opcode::random;
    return n;
}
static_assert(leaf(tr_model, "md/noise_0") == 1 && leaf(tr_model, "mg/noise_3") == 1 && random_leaves(tr_model) == 2);
static_assert(random_leaves(masks_model) == 3 && leaf(masks_model, "mixed_nas/mask_0") == -1);  // rand, rand2's two features
static_assert(random_leaves(rv_model) == 0);
// the gates are computed once per call: the scale, gates and probabilities are unbatched
constexpr bool per_call = [] {
    cl::result m;
    const nas::nas_values v = cl::mixed_nas_values(m, "md", tr_disc, mode::train, m.input("x", dims_of({TRD})));
    return v.out.batched() && !v.scale.batched() && !v.gate.batched() && !v.prob.batched() && v.scale.dim(0) == TRD &&
           v.gate.dim(0) == 9 && v.prob.dim(0) == 9;
}();
static_assert(per_call);

// the spec's masks, written from the table of 6.4 (row 0 zero)
std::vector<vec> spec_masks(const std::vector<std::size_t>& s, nas_share_mode mode_) {
    const std::size_t C = s.size();
    std::size_t W = s.back();
    if (mode_ == nas_share_mode::none) W = std::accumulate(s.begin(), s.end(), std::size_t(0));
    std::vector<vec> M(C, vec(W, 0.0));
    std::size_t S = s[0];
    for (std::size_t j = 1; j < C; ++j) {
        for (std::size_t d = 0; d < W; ++d) {
            if (mode_ == nas_share_mode::left) M[j][d] = d < s[j];
            if (mode_ == nas_share_mode::diff) M[j][d] = d >= s[j - 1] && d < s[j];
            if (mode_ == nas_share_mode::none) M[j][d] = d >= S && d < S + s[j];
        }
        S += s[j];
    }
    return M;
}

} // namespace

TEST_CASE("MixedNAS masks: the doc's four examples for sizes [2, 4, 6], random masks from the generator, explicit masks") {
    using F = ctrec::program<double, masks_y>;
    using F32 = ctrec::program<float, masks_y>;
    const char* const* expect[3] = {left_rows, diff_rows, none_rows};
    std::vector<vec> rnd(3), rnd2(5), expl(3);
    for (std::size_t j = 0; j < 5; ++j) {
        leaves L;
        for (auto n : {"xl", "xd", "xn", "xr", "xq", "xe"})  // batch 2
            L[n] = vec(2 * (n == std::string("xn") ? 12 : n == std::string("xq") ? 10 : n == std::string("xe") ? 4 : 6), 1.0);
        vec a3(3, 0.0), a7(7, 0.0);
        a3[j % 3] = 1.0;  // argmax j
        a7[2 + j] = 1.0;  // feature 1 of rand2 (feature 0 has one choice)
        for (auto n : {"left/arch_weights", "diff/arch_weights", "none/arch_weights", "rand/arch_weights", "expl/arch_weights"}) L[n] = a3;
        L["rand2/arch_weights"] = a7;
        const vec y = nas_ref::run_both<F>(L, 2, j)[0];
        CHECK(nas_ref::run_seeded<F32>(L, 2, j)[0] == y);  // float draws the same masks
        CHECK(vec(y.begin(), y.begin() + masks_width) == vec(y.begin() + masks_width, y.end()));  // every example
        if (j < 3) {
            std::size_t o = 0;
            for (std::size_t k = 0; k < 3; ++k) {
                const std::string row = expect[k][j];
                vec want;
                for (char ch : row) want.push_back(ch == '1');
                INFO("mode " << k << ", row " << j);
                CHECK(vec(y.begin() + o, y.begin() + o + row.size()) == want);
                o += row.size();
            }
            rnd[j] = vec(y.begin() + 24, y.begin() + 30);
            expl[j] = vec(y.begin() + 40, y.begin() + 44);
        }
        CHECK(y[30] == 0.0);  // rand2's feature 0: one candidate, row 0: dropped
        rnd2[j] = vec(y.begin() + 31, y.begin() + 40);
    }
    // random: row 0 zero, the last row all ones, nested, and M[j, d] = 1[u_d < s_j / s_max] for
    // the generator's 24-bit uniform u_d of stream "mixed_nas/mask_<i>" at mask_seed
    auto u24 = [](std::uint64_t seed, std::size_t i, std::size_t d) {
        return static_cast<double>(ctrec::random_uniform_value<float>(seed, ctrec::stream_hash(cl::mixed_nas_mask_stream(i).view()),
                                                                      ctrec::shared_example, d));
    };
    CHECK(rnd[0] == vec(6, 0.0));
    CHECK(rnd[2] == vec(6, 1.0));
    for (std::size_t d = 0; d < 6; ++d) {
        CHECK(rnd[1][d] == (u24(12345, 0, d) * 6 < 4));  // exact: u24 is a multiple of 2^-24
        CHECK(rnd[1][d] == rand_bits[6 + d]);
    }
    const std::size_t s2[5] = {0, 3, 5, 9, 9};
    for (std::size_t j = 0; j < 5; ++j)
        for (std::size_t d = 0; d < 9; ++d) {
            INFO("rand2 row " << j << ", column " << d);
            CHECK(rnd2[j][d] == (j > 0 && u24(77, 1, d) * 9 < double(s2[j])));
            CHECK(rnd2[j][d] == rand2_bits[2 + j * 9 + d]);
            if (j > 0) CHECK(rnd2[j][d] >= rnd2[j - 1][d]);  // nested
        }
    CHECK(rnd2[4] == vec(9, 1.0));
    CHECK(std::accumulate(rnd2[1].begin(), rnd2[1].end(), 0.0) < 9);  // a proper subset at this seed
    // explicit masks replace the generated ones
    CHECK(expl[0] == vec{0, 0, 0, 0});
    CHECK(expl[1] == vec{1, 0, 1, 0});
    CHECK(expl[2] == vec{0, 1, 1, 1});
}

TEST_CASE("MixedNAS 'random' rule on injected u: u_0, u_1, u_3 < 2/3 <= u_2, u_4, u_5 gives the doc's [110100]") {
    using F = ctrec::program<double, rule_y>;
    leaves L;
    L["u"] = {0.1, 0.2, 0.9, 0.3, 0.8, 0.7};
    L["x"] = vec(6, 1.0);
    const vec rows[3] = {{0, 0, 0, 0, 0, 0}, {1, 1, 0, 1, 0, 0}, {1, 1, 1, 1, 1, 1}};
    for (std::size_t j = 0; j < 3; ++j) {
        vec w(3, 0.0);
        w[j] = 1;
        L["w"] = w;
        CHECK(nas_ref::run_both<F>(L, 1, 0)[0] == rows[j]);
    }
    // the thresholds are s_j / s_max rounded up to the 2^-24 grid
    CHECK(cl::mixed_nas_random_threshold(1, 4, 6) >= 4.0 / 6.0);
    CHECK(cl::mixed_nas_random_threshold(1, 4, 6) - 4.0 / 6.0 < 0x1p-24);
    CHECK(cl::mixed_nas_random_threshold(2, 6, 6) == 1.0);
    CHECK(cl::mixed_nas_random_threshold(0, 2, 6) == 0.0);
}

TEST_CASE("MixedNAS: the spec's reference values (sizes [0, 2, 4], left, alpha = [0, ln 2, ln 3])") {
    using G = ctrec::grad_program<double, rv_y>;
    const vec alpha = {0.0, std::log(2.0), std::log(3.0)};
    leaves L;
    L["n/arch_weights"] = alpha, L["d/arch_weights"] = alpha, L["u/arch_weights"] = alpha;
    L["Gd"] = {0.0, 10.0, 0.0}, L["Gu"] = {0.0, 10.0, 0.0};  // forces j* = 1
    L["x"] = vec(4, 1.0), L["cotangent"] = vec(12, 1.0);     // rho = [1, 1, 1, 1]: wbar = [0, 2, 4]
    const auto gr = nas_ref::run_both<G>(L, 1, 0);
    const vec& y = gr[0];
    test::check_close(vec(y.begin(), y.begin() + 4), {5.0 / 6, 5.0 / 6, 0.5, 0.5}, 1e-15);
    CHECK(vec(y.begin() + 4, y.begin() + 8) == vec{1, 1, 0, 0});
    CHECK(vec(y.begin() + 8, y.end()) == vec{1, 1, 0, 0});
    test::check_close(gr[G::grad<"n/arch_weights">], {-4.0 / 9, -2.0 / 9, 2.0 / 3}, 1e-15);
    test::check_close(gr[G::grad<"d/arch_weights">], {-1.0 / 9, 4.0 / 9, -1.0 / 3}, 1e-15);
    // gumbel: through yhat = softmax(alpha + G)
    const vec yhat = nas_ref::softmax({alpha[0], alpha[1] + 10.0, alpha[2]});
    test::check_close(gr[G::grad<"u/arch_weights">], nas_ref::p2_onehot_vjp({1, yhat}, 2.0, 1.0), 1e-15);
    // xbar = ybar * s, summed over the three layers
    test::check_close(gr[G::grad<"x">], {5.0 / 6 + 2, 5.0 / 6 + 2, 0.5, 0.5}, 1e-15);
}

TEST_CASE("MixedNAS weight_grad_mode none (PREDICT, soft masks): s = M^T softmax(alpha / tau); central differences, JVP / VJP duality") {
    leaves L;
    const vec alpha = {0.4, -0.3, 0.9, 0.2, -0.5, 0.7, 0.1, -0.8};
    L["sm/arch_weights"] = alpha;
    const std::size_t batch = 3;
    const vec y = nas_ref::run_both<ctrec::grad_program<double, sm_y>>(L, batch, 5)[0];
    const std::vector<std::vector<std::size_t>> sizes = {{0, 2, 4}, {1, 3}, {2, 2, 5}};
    vec s;
    for (std::size_t i = 0, off = 0; i < 3; off += sizes[i].size(), ++i) {
        vec v(alpha.begin() + off, alpha.begin() + off + sizes[i].size());
        for (double& e : v) e /= 0.7;
        const vec p = nas_ref::softmax(v);
        const auto M = spec_masks(sizes[i], nas_share_mode::diff);
        for (std::size_t d = 0; d < M[0].size(); ++d) {
            double sd = 0;
            for (std::size_t j = 0; j < p.size(); ++j) sd += p[j] * M[j][d];
            s.push_back(sd);
        }
    }
    test::check_close(y, nas_ref::scale_rows(L["x"], s, batch), 1e-14);
    test::check_ad<sm_y>(3);
}

TEST_CASE("MixedNAS TRAIN: discrete and gumbel samples from the generator, gradients, seeds") {
    using G = ctrec::grad_program<double, tr_y>;
    using R = G::with_backend<ctrec::reference_backend>;
    const vec alpha = {0.3, -0.2, 0.5, 0.1, 0.9, -0.4, 0.0, 0.2, -0.6};
    const std::size_t batch = 3;
    const auto Md = [] {
        std::vector<std::vector<vec>> r;
        for (const auto& s : tr_sizes) r.push_back(spec_masks(s, nas_share_mode::diff));
        return r;
    }();
    const auto Mg = [] {
        std::vector<std::vector<vec>> r;
        for (const auto& s : tr_sizes) r.push_back(spec_masks(s, nas_share_mode::left));
        return r;
    }();
    std::vector<vec> ys;
    for (std::uint64_t seed = 0; seed < 12; ++seed) {
        leaves L;
        L["md/arch_weights"] = alpha, L["mg/arch_weights"] = alpha;
        const auto gr = nas_ref::run_both<G>(L, batch, seed);
        CHECK(nas_ref::run_seeded<G>(L, batch, seed)[0] == gr[0]);  // same seed: bit-identical
        ys.push_back(gr[0]);
        const vec& x = L["x"];
        const vec& cot = L["cotangent"];
        vec s, ga_d, ga_g, rho_d(TRD, 0.0), rho_g(TRD, 0.0);
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t d = 0; d < TRD; ++d)
                rho_d[d] += cot[b * 2 * TRD + d] * x[b * TRD + d], rho_g[d] += cot[b * 2 * TRD + TRD + d] * x[b * TRD + d];
        for (int layer = 0; layer < 2; ++layer) {
            const vec Gn = nas_ref::noise(ctrec::random_kind::gumbel, seed, layer == 0 ? "md/noise_0" : "mg/noise_3", 9);
            const auto& M = layer == 0 ? Md : Mg;
            const vec& rho = layer == 0 ? rho_d : rho_g;
            vec& ga = layer == 0 ? ga_d : ga_g;
            for (std::size_t i = 0, off = 0, col = 0; i < 3; off += tr_sizes[i].size(), col += M[i][0].size(), ++i) {
                const std::size_t C = tr_sizes[i].size(), W = M[i][0].size();
                const vec a(alpha.begin() + off, alpha.begin() + off + C), g(Gn.begin() + off, Gn.begin() + off + C);
                const nas_ref::p2_result r = nas_ref::p2_onehot(a, &g, layer == 1, 0.7);
                for (std::size_t d = 0; d < W; ++d) s.push_back(M[i][r.j][d]);
                double wbar = 0;  // wbar_j* = sum_d M[j*, d] rho_d
                for (std::size_t d = 0; d < W; ++d) wbar += M[i][r.j][d] * rho[col + d];
                for (double v : nas_ref::p2_onehot_vjp(r, wbar, 0.7)) ga.push_back(v);
            }
        }
        INFO("seed " << seed);
        vec want;
        for (std::size_t b = 0; b < batch; ++b)
            for (int layer = 0; layer < 2; ++layer)
                for (std::size_t d = 0; d < TRD; ++d) want.push_back(x[b * TRD + d] * s[layer * TRD + d]);
        CHECK(gr[0] == want);
        test::check_close(gr[G::grad<"md/arch_weights">], ga_d, 1e-13);
        test::check_close(gr[G::grad<"mg/arch_weights">], ga_g, 1e-13);
        vec xbar(batch * TRD, 0.0);
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t d = 0; d < TRD; ++d)
                xbar[b * TRD + d] = cot[b * 2 * TRD + d] * s[d] + cot[b * 2 * TRD + TRD + d] * s[TRD + d];
        test::check_close(gr[G::grad<"x">], xbar, 1e-15);
        if (seed < 2) {  // x by central differences
            for (std::size_t e = 0; e < x.size(); e += 4) {
                leaves P = L, Mn = L;
                P["x"][e] += 1e-6, Mn["x"][e] -= 1e-6;
                const vec yp = nas_ref::run_seeded<R>(P, batch, seed)[0], ym = nas_ref::run_seeded<R>(Mn, batch, seed)[0];
                double fd = 0;
                for (std::size_t i = 0; i < yp.size(); ++i) fd += cot[i] * (yp[i] - ym[i]) / 2e-6;
                CHECK(gr[G::grad<"x">][e] == doctest::Approx(fd).epsilon(1e-7));
            }
        }
    }
    int differ = 0;
    for (std::size_t k = 1; k < ys.size(); ++k) differ += ys[k] != ys[0];
    CHECK(differ >= 8);
}

TEST_CASE("MixedNAS TRAIN: categorical frequencies, softmax(alpha / tau) for discrete, softmax(alpha) for gumbel") {
    using G = ctrec::grad_program<double, tr_y>;
    const vec alpha = {0.3, -0.2, 0.5, 0.1, 0.9, -0.4, 0.0, 0.2, -0.6};
    const int n = 3000;
    // x = ones: a chosen row is read off the output; rows of each feature differ in both layouts
    std::vector<vec> cnt(2, vec(9, 0.0));
    leaves L;
    L["md/arch_weights"] = alpha, L["mg/arch_weights"] = alpha, L["x"] = vec(TRD, 1.0), L["cotangent"] = vec(2 * TRD, 0.0);
    const auto Md = [] {
        std::vector<std::vector<vec>> r;
        for (const auto& s : tr_sizes) r.push_back(spec_masks(s, nas_share_mode::diff));
        return r;
    }();
    const auto Mg = [] {
        std::vector<std::vector<vec>> r;
        for (const auto& s : tr_sizes) r.push_back(spec_masks(s, nas_share_mode::left));
        return r;
    }();
    for (int seed = 0; seed < n; ++seed) {
        const vec y = nas_ref::run_seeded<G>(L, 1, seed)[0];
        for (int layer = 0; layer < 2; ++layer) {
            const auto& M = layer == 0 ? Md : Mg;
            for (std::size_t i = 0, off = 0, col = 0; i < 3; off += tr_sizes[i].size(), col += M[i][0].size(), ++i) {
                const vec got(y.begin() + layer * TRD + col, y.begin() + layer * TRD + col + M[i][0].size());
                std::size_t hits = 0;
                for (std::size_t j = 0; j < tr_sizes[i].size(); ++j)
                    if (got == M[i][j]) cnt[layer][off + j] += 1, ++hits;
                REQUIRE(hits == 1);
            }
        }
    }
    for (int layer = 0; layer < 2; ++layer)
        for (std::size_t i = 0, off = 0; i < 3; off += tr_sizes[i].size(), ++i) {
            const std::size_t C = tr_sizes[i].size();
            vec v(alpha.begin() + off, alpha.begin() + off + C);
            if (layer == 0)
                for (double& e : v) e /= 0.7;
            const vec p = nas_ref::softmax(v);
            for (std::size_t j = 0; j < C; ++j) {
                INFO("layer " << layer << ", feature " << i << ", choice " << j << ": p " << p[j] << ", frequency " << cnt[layer][off + j] / n);
                CHECK(std::abs(cnt[layer][off + j] / n - p[j]) < 4.5 * std::sqrt(p[j] * (1 - p[j]) / n));
            }
        }
}

