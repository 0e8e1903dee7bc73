// The type-core crossing tests' remaining checks (ported from
// tests/test_cdot.cpp, test_can.cpp, test_cin.cpp, test_allint.cpp and test_group_int.cpp; what
// test_flat_crossing.cpp, test_flat_crossing_2.cpp and test_flat_attention.cpp already check is
// not repeated; SeNet is in test_flat_attention_4.cpp, for compile time). References are naive
// float64 loops written from the spec (layers-core-and-cross.md 4-7, 9); tolerances are the
// type-core tests' (|got - want| / max(1, |want|)). Where several configurations' derivatives
// are checked in one program, each reads its own inputs, so every gradient output belongs to
// one configuration.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ctrec/layers/allint.hpp"
#include "ctrec/layers/can.hpp"
#include "ctrec/layers/cdot.hpp"
#include "ctrec/layers/cin.hpp"
#include "ctrec/layers/group_int.hpp"
#include "ctrec/train/train_program.hpp"  // initialize
#include "layer_reference.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
namespace init = ctrec::init;
using ctrec::make_dims;
using flat_ref::get;
using flat_ref::vec;
using test::leaf_value;
using test::leaves;
using W = ctrec::init::spec::which;

namespace {

// ---- shared helpers ------------------------------------------------------------------------------
using test::check_ad;
using test::check_close;
std::string var_name(const fl::result& r, std::size_t i) { return std::string(r.g.name_of(r.inits[i].var)); }
// name -> shape of every parameter of program P
template <class P>
std::map<std::string, std::vector<std::size_t>> param_shapes() {
    std::map<std::string, std::vector<std::size_t>> m;
    for (std::size_t k = 0; k < P::n_params; ++k) {
        const ctrec::dims s = P::tab.nodes[P::param_ids[k]].shape;
        m[std::string(P::parameters::names[k])] = std::vector<std::size_t>(s.d, s.d + s.rank);
    }
    return m;
}
template <class P>
std::vector<std::string> param_names() {
    return std::vector<std::string>(P::parameters::names.begin(), P::parameters::names.end());
}
template <class P>
std::size_t param_count() {
    std::size_t n = 0;
    for (std::size_t s : P::parameters::sizes) n += s;
    return n;
}
// the largest per-example value any node of P's table holds
template <class P>
std::size_t largest_node(bool batched_only) {
    std::size_t m = 0;
    for (std::size_t i = 0; i < P::size; ++i)
        if (!batched_only || P::tab.nodes[i].batched) m = std::max(m, P::tab.nodes[i].shape.size());
    return m;
}
double ident(double z) { return z; }
double relu_(double z) { return z > 0 ? z : 0; }
double tanh_(double z) { return std::tanh(z); }
double sigm(double z) { return 1 / (1 + std::exp(-z)); }
vec ones(std::size_t n) { return vec(n, 1.0); }

// ==== CDot (spec 6) ==================================================================================
constexpr std::size_t cN = 4, cK = 3, cP = 2, cKP = cK * cP, Bc = 3;
constexpr auto xf = f::input<"x", cN, cK>;

// Spec 6.5 for every example: Q = X^T Wp, q = flatten(Q), c = tower(q) (weight norm, act on the
// hidden layers, the last linear), M = reshape(c), Z = X M, out = [flatten(Z), c]. Writes
// example 0's Z into z0.
vec cdot_ref(leaves& L, std::size_t batch, const std::vector<std::size_t>& units, double (*act)(double), const std::string& s = "c",
             std::size_t n_ = cN, std::size_t k_ = cK, std::size_t p_ = cP, vec* z0 = nullptr) {
    const vec& X = get(L, "x");
    const vec& Wp = get(L, s + "/project_weight");
    const std::size_t kp = k_ * p_;
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        auto x = [&](std::size_t n, std::size_t k) { return X[(b * n_ + n) * k_ + k]; };
        vec q(kp, 0.0);
        for (std::size_t k = 0; k < k_; ++k)
            for (std::size_t p = 0; p < p_; ++p)
                for (std::size_t n = 0; n < n_; ++n) q[k * p_ + p] += x(n, k) * Wp[n * p_ + p];
        vec h = q;
        std::size_t in = kp;
        std::vector<std::size_t> widths = units;
        widths.push_back(kp);
        for (std::size_t i = 0; i < widths.size(); ++i) {
            h = flat_ref::dense(L, h, 1, in, widths[i], s + "/compress_tower/dense_" + std::to_string(i), flat_ref::norm::trainable);
            if (i + 1 < widths.size())
                for (double& v : h) v = act(v);
            in = widths[i];
        }
        vec Z(n_ * p_, 0.0);
        for (std::size_t n = 0; n < n_; ++n)
            for (std::size_t p = 0; p < p_; ++p)
                for (std::size_t k = 0; k < k_; ++k) Z[n * p_ + p] += x(n, k) * h[k * p_ + p];
        out.insert(out.end(), Z.begin(), Z.end());
        out.insert(out.end(), h.begin(), h.end());
        if (b == 0 && z0) *z0 = Z;
    }
    return out;
}

constexpr cl::cdot_config<2> cd_relu_cfg{.project_dim = cP, .compress_units = {5, 4}};
constexpr auto cd_relu = fl::cdot<"c", cd_relu_cfg>(xf);
constexpr auto cd_relu_y = cd_relu.out();
constexpr double cd_l1 = 0.01, cd_l2 = 0.02;
constexpr cl::cdot_config<1> cd_tanh_cfg{.project_dim = cP, .compress_units = {5}, .activation = cl::keras_activation("tanh"),
                                         .regularizer = cl::regularizer{cd_l1, cd_l2}};
constexpr auto cd_tanh = fl::cdot<"c", cd_tanh_cfg>(xf);
constexpr auto cd_tanh_y = cd_tanh.out();
constexpr auto cd_tanh_pen = cd_tanh.penalty();
constexpr auto cd_target = f::input<"y", cN * cP + cK * cP>;
// a squared error against a per-example target weights every output element differently
constexpr auto cd_loss = f::batch_mean(f::sum((cd_tanh_y - cd_target) * (cd_tanh_y - cd_target))) + cd_tanh_pen;
constexpr auto cd_empty = fl::cdot<"c", cl::cdot_config<0>{.project_dim = cP, .activation = cl::keras_activation("tanh")}>(xf);
constexpr auto cd_empty_y = cd_empty.out();
static_assert(cd_relu_y.shape() == make_dims<cN * cP + cK * cP>() && cd_empty_y.shape() == make_dims<cN * cP + cK * cP>());

double cd_penalty(leaves& L) {
    double pen = 0;
    for (const char* n : {"c/project_weight", "c/compress_tower/dense_0/kernel", "c/compress_tower/dense_1/kernel"})
        for (double w : get(L, n)) pen += cd_l1 * std::abs(w) + cd_l2 * w * w;
    return pen;
}

// the original test's model
constexpr std::size_t oN = 10, oK = 10, oP = 8;
constexpr auto cd_orig = fl::cdot<"CDot", cl::cdot_config<2>{.project_dim = oP, .compress_units = {128, 256},
                                                               .activation = cl::keras_activation("tanh")}>(f::input<"x", oN, oK>);
constexpr auto cd_orig_y = cd_orig.out();
static_assert(cd_orig_y.shape() == make_dims<160>());

// ==== CAN (spec 7) ====================================================================================
// user per example: G groups of S rows of D values; layer i reads W_i[p, q] = item[o_i + p D + q],
// beta_i[q] = item[o_i + D^2 + q], o_i = i (D^2 + D); act after every layer; out[g] = sum_s rows.
vec can_ref(leaves& L, std::size_t batch, std::size_t G, std::size_t S, std::size_t D, std::size_t layers, double (*act)(double)) {
    const vec& user = get(L, "user");
    const vec& item = get(L, "item");
    const std::size_t I = layers * (D * D + D);
    vec out;
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t g = 0; g < G; ++g) {
            vec acc(D, 0.0);
            for (std::size_t s = 0; s < S; ++s) {
                vec u(user.begin() + static_cast<std::ptrdiff_t>(((b * G + g) * S + s) * D),
                      user.begin() + static_cast<std::ptrdiff_t>(((b * G + g) * S + s + 1) * D));
                for (std::size_t i = 0; i < layers; ++i) {
                    const std::size_t o = b * I + i * (D * D + D);
                    vec z(D);
                    for (std::size_t q = 0; q < D; ++q) {
                        z[q] = item[o + D * D + q];
                        for (std::size_t p = 0; p < D; ++p) z[q] += u[p] * item[o + p * D + q];
                        z[q] = act(z[q]);
                    }
                    u = z;
                }
                for (std::size_t q = 0; q < D; ++q) acc[q] += u[q];
            }
            out.insert(out.end(), acc.begin(), acc.end());
        }
    return out;
}
constexpr std::size_t aF = 2, aS = 3, aD = 3;
constexpr auto can_item2 = f::input<"item", 2 * (aD * aD + aD)>;
constexpr auto can_a = fl::can<"CAN", cl::can_config{}>(f::input<"user", aF, aD>, can_item2);
constexpr auto can_a_y = can_a.out();
constexpr auto can_a_pen = can_a.penalty();
constexpr auto can_b = fl::can<"CAN", cl::can_config{.is_seq = true}>(f::input<"user", aF, aS, aD>, can_item2);
constexpr auto can_b_y = can_b.out();
constexpr auto can_c = fl::can<"CAN", cl::can_config{.layer_num = 3, .activation = cl::keras_activation("tanh"), .is_seq = true, .is_stacked = false}>(
    f::input<"user", aS, aD>, f::input<"item", 3 * (aD * aD + aD)>);
constexpr auto can_c_y = can_c.out();
constexpr auto can_d = fl::can<"CAN", cl::can_config{.layer_num = 1, .activation = cl::keras_activation("sigmoid"), .is_stacked = false}>(
    f::input<"user", aD>, f::input<"item", aD * aD + aD>);
constexpr auto can_d_y = can_d.out();
static_assert(can_a_y.shape() == make_dims<aF, aD>() && can_b_y.shape() == make_dims<aF, aD>());
static_assert(can_c_y.shape() == make_dims<aD>() && can_d_y.shape() == make_dims<aD>());
// the four modes in one derivative program: inputs "user_<i>" / "item_<i>" of mode i, so each
// gradient output is one mode's (the outputs concatenated)
constexpr fl::result can_modes_model() {
    fl::result m;
    const cl::can_config cfg[4] = {{}, {.is_seq = true}, {.layer_num = 3, .activation = cl::keras_activation("tanh"), .is_seq = true, .is_stacked = false},
                                   {.layer_num = 1, .activation = cl::keras_activation("sigmoid"), .is_stacked = false}};
    const ctrec::dims users[4] = {make_dims<aF, aD>(), make_dims<aF, aS, aD>(), make_dims<aS, aD>(), make_dims<aD>()};
    const std::size_t layers[4] = {2, 2, 3, 1};
    f::val parts[4]{};
    for (std::size_t i = 0; i < 4; ++i) {
        const f::val u = m.input((f::name_string("user_") + i).view(), users[i]);
        const f::val it = m.input((f::name_string("item_") + i).view(), f::dims_of({layers[i] * (aD * aD + aD)}));
        const f::val y = fl::can(m, "CAN", cfg[i], u, it);
        parts[i] = f::reshape(y, f::dims_of({y.shape().size()}));
    }
    m.set_out(f::concat(0, parts, 4));
    return m;
}
constexpr auto can_modes = can_modes_model().out();
// D = 1, not stacked: (B, 1) kept
constexpr auto can_1 = fl::can<"CAN", cl::can_config{.is_stacked = false}>(f::input<"user", 1>, f::input<"item", 2 * (1 + 1)>).out();
static_assert(can_1.shape() == make_dims<1>() && can_1.batched());
// the original tests
constexpr auto can_o1 = fl::can<"CAN", cl::can_config{}>(f::input<"user", 10, 10>, f::input<"item", 220>).out();
constexpr auto can_o2 = fl::can<"CAN", cl::can_config{.is_seq = true}>(f::input<"user", 10, 12, 10>, f::input<"item", 220>).out();
static_assert(can_o1.shape() == make_dims<10, 10>() && can_o2.shape() == make_dims<10, 10>());
// the construction test: 8 layers, sigmoid; Keras' None (linear)
constexpr std::size_t a8 = 2;
constexpr auto can_8 = fl::can<"CAN", cl::can_config{.layer_num = 8, .activation = cl::keras_activation("sigmoid")}>(
                           f::input<"user", aF, a8>, f::input<"item", 8 * (a8 * a8 + a8)>)
                           .out();
constexpr auto can_lin = fl::can<"CAN", cl::can_config{.layer_num = 1, .activation = cl::keras_activation("")}>(
                             f::input<"user", aF, a8>, f::input<"item", a8 * a8 + a8>)
                             .out();

} // namespace

// ==== CDot ==============================================================================================

TEST_CASE("cdot defaults (relu, GlorotNormal): forward against the reference in float64 and float32") {
    for (std::size_t batch : {std::size_t(1), Bc, std::size_t(70)}) {
        leaves L;
        test::fill<f::program<double, cd_relu_y>>(L, batch);
        test::check_values<cd_relu_y>(L, batch, cdot_ref(L, batch, {5, 4}, relu_));
    }
    leaves L;
    test::fill<f::program<double, cd_relu_y>>(L, Bc);
    // the cross part is not trivially small, so an error there shows
    vec z0;
    cdot_ref(L, 1, {5, 4}, relu_, "c", cN, cK, cP, &z0);
    double zsum = 0;
    for (double z : z0) zsum += std::abs(z);
    CHECK(zsum > 0.1);
    // relu is the default: the tanh reference differs
    const vec a = cdot_ref(L, Bc, {5, 4}, relu_), b = cdot_ref(L, Bc, {5, 4}, tanh_);
    double diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
    CHECK(diff > 1e-3);
    CHECK(cd_relu_cfg.initializer.w == W::glorot_normal);
    CHECK(cd_relu_cfg.activation == cl::act_relu);
}

TEST_CASE("cdot variables: names, shapes, creation order; no penalty without a regularizer") {
    using P = f::program<float, cd_relu_y>;
    using V = std::vector<std::size_t>;
    const std::map<std::string, V> want{
        {"c/project_weight", V{cN, cP}},
        {"c/compress_tower/dense_0/kernel", V{cKP, 5}},
        {"c/compress_tower/dense_0/trainable_kernel_norm", V{5}},
        {"c/compress_tower/dense_0/bias", V{5}},
        {"c/compress_tower/dense_1/kernel", V{5, 4}},
        {"c/compress_tower/dense_1/trainable_kernel_norm", V{4}},
        {"c/compress_tower/dense_1/bias", V{4}},
        {"c/compress_tower/dense_2/kernel", V{4, cKP}},
        {"c/compress_tower/dense_2/trainable_kernel_norm", V{cKP}},
        {"c/compress_tower/dense_2/bias", V{cKP}},
    };
    CHECK(param_shapes<P>() == want);
    // creation order (for import): project_weight first, then the tower layer by layer
    REQUIRE(cd_relu.n_inits == want.size());
    std::vector<std::string> names;
    for (std::size_t i = 0; i < cd_relu.n_inits; ++i) names.push_back(var_name(cd_relu, i));
    CHECK(names[0] == "c/project_weight");
    auto at = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
    CHECK(at("c/compress_tower/dense_0/kernel") < at("c/compress_tower/dense_1/kernel"));
    CHECK(at("c/compress_tower/dense_1/kernel") < at("c/compress_tower/dense_2/kernel"));
    CHECK(at("c/compress_tower/dense_2/kernel") < static_cast<std::ptrdiff_t>(names.size()));
    CHECK(!cd_relu.has_penalty());
}

TEST_CASE("cdot with tanh: forward; penalty over project_weight and the tower kernels; derivatives of x and every parameter") {
    leaves L;
    test::fill<f::grad_program<double, cd_loss>>(L, Bc);
    check_close(test::forward<f::program<double, cd_tanh_y>>(L, Bc), cdot_ref(L, Bc, {5}, tanh_), 1e-12);
    // penalty: l1 |w| + l2 w^2 over project_weight and the raw kernels; not over biases or norms
    CHECK(test::forward<f::program<double, cd_tanh_pen>>(L, 1)[0] == doctest::Approx(cd_penalty(L)).epsilon(1e-12));
    CHECK(param_shapes<f::program<double, cd_tanh_pen>>().size() == 3);
    // the loss value against the reference
    const vec out = cdot_ref(L, Bc, {5}, tanh_);
    const vec& y = get(L, "y");
    double want = 0;
    for (std::size_t i = 0; i < out.size(); ++i) want += (out[i] - y[i]) * (out[i] - y[i]) / Bc;
    CHECK(test::forward<f::program<double, cd_loss>>(L, Bc)[0] == doctest::Approx(want + cd_penalty(L)).epsilon(1e-12));
    // reverse mode vs central differences for x, y and every parameter, JVP, duality
    check_ad<cd_loss>(Bc);
    // every element of x, y and every parameter was differenced: nothing is held constant
    using G = f::grad_program<double, cd_loss>;
    CHECK(G::n_params == 1 + 2 * 3);
    CHECK(param_count<G>() == cN * cP + (cKP * 5 + 5 + 5) + (5 * cKP + cKP + cKP));
    std::size_t checked = 0;
    for (std::size_t k = 0; k < G::tab.n_wrt; ++k) {
        const auto& n = G::tab.nodes[G::tab.wrt[k]];
        checked += n.shape.size() * (n.batched ? Bc : 1);
    }
    CHECK(G::tab.n_wrt == 2 + G::n_params);
    CHECK(checked == Bc * (cN * cK + cN * cP + cK * cP) + param_count<G>());
}

TEST_CASE("cdot: one SGD step on the squared error lowers the loss by about lr |g|^2") {
    using G = f::grad_program<double, cd_loss>;
    leaves L;
    const auto g = test::run<G>(L, Bc);
    const double l0 = g[0][0];
    constexpr double lr = 1e-3;
    leaves next = L;
    double g2 = 0;
    for (std::size_t k = 0; k < G::tab.n_wrt; ++k) {
        if (G::tab.nodes[G::tab.wrt[k]].op != f::opcode::param) continue;
        const std::string name(G::tab.name_of(G::tab.wrt[k]));
        vec& w = next[name];
        REQUIRE(w.size() == g[1 + k].size());
        for (std::size_t e = 0; e < w.size(); ++e) w[e] -= lr * g[1 + k][e], g2 += g[1 + k][e] * g[1 + k][e];
    }
    const double l1v = test::forward<f::program<double, cd_loss>>(next, Bc)[0];
    CHECK(g2 > 0);
    CHECK(l1v < l0);
    CHECK((l0 - l1v) == doctest::Approx(lr * g2).epsilon(0.05).scale(0));  // relative: the drop is ~0.13
}

TEST_CASE("cdot with an empty compress_units: one linear tower layer (K P, K P); derivatives") {
    leaves L;
    test::fill<f::program<double, cd_empty_y>>(L, Bc);
    // the single layer is the last one: linear, whatever the activation
    check_close(test::forward<f::program<double, cd_empty_y>>(L, Bc), cdot_ref(L, Bc, {}, ident), 1e-12);
    check_ad<cd_empty_y>(Bc);
    using V = std::vector<std::size_t>;
    const std::map<std::string, V> want{{"c/project_weight", V{cN, cP}},
                                        {"c/compress_tower/dense_0/kernel", V{cKP, cKP}},
                                        {"c/compress_tower/dense_0/trainable_kernel_norm", V{cKP}},
                                        {"c/compress_tower/dense_0/bias", V{cKP}}};
    CHECK(param_shapes<f::program<double, cd_empty_y>>() == want);
}

TEST_CASE("cdot plan: the reshapes are views, the cross is one batched x batched contraction") {
    using P = f::program<double, cd_tanh_y>;
    const auto& t = P::tab;
    std::size_t reshapes = 0, cross = 0, projections = 0;
    for (std::size_t i = 0; i < P::size; ++i) {
        const auto& r = t.nodes[i];
        if (r.op == f::opcode::reshape && r.batched) {
            // flatten(Q), reshape(c) to M, flatten(Z): views over their operand's buffer
            ++reshapes;
            CHECK(P::pl.alias[i]);
            CHECK_FALSE(P::pl.step[i]);
            CHECK(t.nodes[t.operand(i, 0)].op != f::opcode::reshape);
        }
        if (r.op == f::opcode::contract && r.batched) {
            const auto a = t.operand(i, 0), b = t.operand(i, 1);
            if (t.nodes[a].batched && t.nodes[b].batched) {
                // Z = X . M: M is the view of the tower's output, read in place
                ++cross;
                const auto m = t.nodes[a].op == f::opcode::reshape ? a : b;
                CHECK(t.nodes[m].op == f::opcode::reshape);
                CHECK(t.nodes[m].shape == make_dims<cK, cP>());
            }
            projections += t.nodes[a].op == f::opcode::input && t.nodes[b].op == f::opcode::param;
            projections += t.nodes[b].op == f::opcode::input && t.nodes[a].op == f::opcode::param;
        }
    }
    CHECK(reshapes == 3);
    CHECK(cross == 1);
    CHECK(projections == 1);  // Q = X^T Wp
}

TEST_CASE("the original test: project_dim 8, compress_units [128, 256], tanh, ones (100, 10, 10) -> (100, 160); init") {
    constexpr std::size_t Bo = 100;
    using M = f::program<float, cd_orig_y>;
    M::parameters p;
    fl::initialize<cd_orig>(p, 3);
    M::workspace ws;
    std::vector<float> xs(Bo * oN * oK, 1.f), y(Bo * 160, -1.f);
    M::io io;
    io.input<"x">(xs.data()).output<0>(y.data());
    M::run(p, ws, Bo, io);
    for (float v : y) CHECK(std::isfinite(v));
    // with all-ones fields every example is the same, and Z[n, p] = sum_k M[k, p] for every n
    for (std::size_t b = 1; b < Bo; ++b)
        for (std::size_t i = 0; i < 160; ++i) CHECK(y[b * 160 + i] == y[i]);
    for (std::size_t n = 0; n < oN; ++n)
        for (std::size_t pp = 0; pp < oP; ++pp) {
            double s = 0;
            for (std::size_t k = 0; k < oK; ++k) s += y[oN * oP + k * oP + pp];
            CHECK(y[n * oP + pp] == doctest::Approx(s).epsilon(1e-4));
        }
    double sum = 0;
    for (float v : y) sum += std::abs(v);
    CHECK(sum > 0);

    // initialisation: GlorotNormal (truncated at 2 sigma) on project_weight and the kernels,
    // zero biases, trainable_kernel_norm = the column norms of the initial kernel
    auto glorot = [&](std::string_view name, std::size_t fi, std::size_t fo, bool stats) {
        auto w = p.get(M::parameters::position(name));
        REQUIRE(w.size() == fi * fo);
        const double sd = std::sqrt(2.0 / double(fi + fo)), sigma = sd / 0.87962566103423978;
        double m = 0, v = 0;
        for (float e : w) {
            CHECK(std::abs(e) <= 2 * sigma + 1e-6);
            m += e / double(w.size());
        }
        for (float e : w) v += (e - m) * (e - m) / double(w.size());
        // the shape of the distribution: GlorotUniform has the same std but no values
        // beyond sqrt(3) sd; the truncated normal has about 7% beyond 1.8 sd
        double tail = 0;
        for (float e : w) tail += std::abs(e) > 1.8 * sd;
        tail /= double(w.size());
        if (stats) {
            CHECK(std::abs(m) < 0.05 * sd);
            CHECK(std::sqrt(v) == doctest::Approx(sd).epsilon(0.05));
            CHECK(tail > 0.04);
            CHECK(tail < 0.10);
        } else {
            CHECK(tail > 0);  // too few values for statistics (80), but not uniform
        }
    };
    glorot("CDot/project_weight", oN, oP, false);
    glorot("CDot/compress_tower/dense_0/kernel", oK * oP, 128, true);
    glorot("CDot/compress_tower/dense_1/kernel", 128, 256, true);
    glorot("CDot/compress_tower/dense_2/kernel", 256, oK * oP, true);
    const std::size_t widths[] = {oK * oP, 128, 256, oK * oP};
    for (std::size_t i = 0; i < 3; ++i) {
        const std::string s = "CDot/compress_tower/dense_" + std::to_string(i);
        auto k = p.get(M::parameters::position(s + "/kernel"));
        auto g = p.get(M::parameters::position(s + "/trainable_kernel_norm"));
        auto b = p.get(M::parameters::position(s + "/bias"));
        const std::size_t in = widths[i], out = widths[i + 1];
        REQUIRE(g.size() == out);
        for (std::size_t j = 0; j < out; ++j) {
            double n2 = 0;
            for (std::size_t a = 0; a < in; ++a) n2 += double(k[a * out + j]) * k[a * out + j];
            CHECK(g[j] == doctest::Approx(std::sqrt(n2)).epsilon(1e-5));
            CHECK(b[j] == 0.f);
        }
    }
}

// ==== CAN ================================================================================================

TEST_CASE("can: the four is_seq / is_stacked modes against the reference, gradients of user and item") {
    // the derivatives of all four modes in one program (distinct inputs per mode)
    check_ad<can_modes>(Bc);
    SUBCASE("is_seq false, is_stacked true (default): (F, D) -> (F, D)") {
        leaves L;
        test::fill<f::program<double, can_a_y>>(L, Bc);
        test::check_values<can_a_y>(L, Bc, can_ref(L, Bc, aF, 1, aD, 2, relu_));
        CHECK(f::program<double, can_a_y>::n_params == 0);  // no variables: the weights are item
        CHECK(can_a.n_inits == 0);
        CHECK(!can_a.has_penalty());
        CHECK(test::forward<f::program<double, can_a_pen>>(L, 1)[0] == 0.0);
    }
    SUBCASE("is_seq true, is_stacked true: (F, S, D) -> (F, D), summed over S") {
        leaves L;
        test::fill<f::program<double, can_b_y>>(L, Bc);
        test::check_values<can_b_y>(L, Bc, can_ref(L, Bc, aF, aS, aD, 2, relu_));
    }
    SUBCASE("is_seq true, is_stacked false, tanh, 3 layers: (S, D) -> (D)") {
        leaves L;
        test::fill<f::program<double, can_c_y>>(L, Bc);
        test::check_values<can_c_y>(L, Bc, can_ref(L, Bc, 1, aS, aD, 3, tanh_));
        // no masking: all-zero (padded) steps still contribute act(act(act(beta_0) W_1 + beta_1) W_2 + beta_2)
        L["user"] = vec(Bc * aS * aD, 0.0);
        const vec padded = can_ref(L, Bc, 1, aS, aD, 3, tanh_);
        check_close(test::forward<f::program<double, can_c_y>>(L, Bc), padded, 1e-12);
        CHECK(std::any_of(padded.begin(), padded.end(), [](double v) { return std::abs(v) > 1e-3; }));
    }
    SUBCASE("is_seq false, is_stacked false, sigmoid, 1 layer: (D) -> (D), not squeezed") {
        leaves L;
        test::fill<f::program<double, can_d_y>>(L, Bc);
        test::check_values<can_d_y>(L, Bc, can_ref(L, Bc, 1, 1, aD, 1, sigm));
    }
}

TEST_CASE("can (false, false) keeps (B, D) where the source squeezes: B = 1 and D = 1") {
    leaves L;
    const vec y = test::forward<f::program<double, can_1>>(L, 1);
    REQUIRE(y.size() == 1);
    check_close(y, can_ref(L, 1, 1, 1, 1, 2, relu_), 1e-12);
    leaves L4;
    const vec y4 = test::forward<f::program<double, can_1>>(L4, 4);
    check_close(y4, can_ref(L4, 4, 1, 1, 1, 2, relu_), 1e-12);
}

TEST_CASE("can original tests: all-ones inputs, layer_num 2, relu, item (128, 220)") {
    SUBCASE("non-sequence, stacked: user (128, 10, 10) -> (128, 10, 10), every element 111, sum 1,420,800") {
        leaves L;
        L["user"] = ones(128 * 100);
        L["item"] = ones(128 * 220);
        const vec y = test::forward<f::program<float, can_o1>>(L, 128);
        REQUIRE(y.size() == 128 * 100);
        CHECK(std::all_of(y.begin(), y.end(), [](double v) { return v == 111.0; }));  // relu(10*1 + 1) = 11, relu(10*11 + 1)
        double s = 0;
        for (double v : y) s += v;
        CHECK(s == 1420800.0);
    }
    SUBCASE("sequence, stacked: user (128, 10, 12, 10) -> (128, 10, 10), every element 12 * 111, sum 17,049,600") {
        leaves L;
        L["user"] = ones(128 * 1200);
        L["item"] = ones(128 * 220);
        const vec y = test::forward<f::program<float, can_o2>>(L, 128);
        REQUIRE(y.size() == 128 * 100);
        CHECK(std::all_of(y.begin(), y.end(), [](double v) { return v == 1332.0; }));
        double s = 0;
        for (double v : y) s += v;
        CHECK(s == 17049600.0);
    }
}

TEST_CASE("can construction test: layer_num 8, sigmoid, stacked (the activation after all eight layers)") {
    leaves L;
    const vec y8 = test::forward<f::program<double, can_8>>(L, Bc);
    check_close(y8, can_ref(L, Bc, aF, 1, a8, 8, sigm), 1e-12);
    // Keras' None is linear: no activation at all
    leaves M;
    const vec y1 = test::forward<f::program<double, can_lin>>(M, Bc);
    check_close(y1, can_ref(M, Bc, aF, 1, a8, 1, ident), 1e-12);
}

// ==== CIN (spec 9) ========================================================================================
namespace {
// Naive CIN: builds the outer-product tensor Z[d, h N + m] explicitly (weights from the leaves).
vec cin_ref(leaves& L, std::size_t batch, std::size_t N, std::size_t K, const std::vector<std::size_t>& H, double (*act)(double)) {
    const vec& x = get(L, "x");
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        std::vector<vec> X0(K, vec(N));
        for (std::size_t d = 0; d < K; ++d)
            for (std::size_t m = 0; m < N; ++m) X0[d][m] = x[(b * N + m) * K + d];
        auto Xh = X0;
        for (std::size_t t = 0; t < H.size(); ++t) {
            const std::string conv = t == 0 ? "c/conv1d" : "c/conv1d_" + std::to_string(t);
            const vec& Wt = get(L, conv + "/kernel");
            const vec& bias = get(L, conv + "/bias");
            const std::size_t Hp = Xh[0].size();
            std::vector<vec> Y(K, vec(H[t]));
            for (std::size_t d = 0; d < K; ++d) {
                vec Z(Hp * N);
                for (std::size_t h = 0; h < Hp; ++h)
                    for (std::size_t m = 0; m < N; ++m) Z[h * N + m] = Xh[d][h] * X0[d][m];
                for (std::size_t j = 0; j < H[t]; ++j) {
                    double s = bias[j];
                    for (std::size_t i = 0; i < Hp * N; ++i) s += Z[i] * Wt[i * H[t] + j];
                    Y[d][j] = t + 1 < H.size() ? act(s) : s;
                }
            }
            for (std::size_t j = 0; j < H[t]; ++j) {
                double p = 0;
                for (std::size_t d = 0; d < K; ++d) p += Y[d][j];
                out.push_back(p);
            }
            Xh = Y;
        }
    }
    return out;
}
constexpr auto cin_relu3 = fl::cin<"c", cl::cin_config<3>{.hidden_uints = {4, 3, 2}, .activation = cl::act_relu}>(f::input<"x", 3, 4>).out();
constexpr auto cin_orig = fl::cin<"c", cl::cin_config<2>{.hidden_uints = {10, 5}, .activation = cl::act_relu}>(f::input<"x", 10, 10>);
constexpr auto cin_orig_y = cin_orig.out();
static_assert(cin_orig_y.shape() == make_dims<15>());
constexpr std::size_t wN = 39, wK = 16;
constexpr auto cin_w2 = fl::cin<"c", cl::cin_config<2>{.hidden_uints = {128, 128}}>(f::input<"x", wN, wK>).out();
} // namespace

TEST_CASE("cin: identity by default, the hidden_units alias, three layers with relu") {
    // (one layer with hidden_units and identity: test_flat_attention.cpp)
    SUBCASE("three layers, relu on the first two only") {
        leaves L;
        const vec y = test::forward<f::program<double, cin_relu3>>(L, 2);
        check_close(y, cin_ref(L, 2, 3, 4, {4, 3, 2}, relu_), 1e-12);
        check_ad<cin_relu3>(2);
    }
}

TEST_CASE("cin: the original test ([10, 5], relu, ones (128, 10, 10) -> (128, 15)), variables and initializers") {
    using P = f::program<float, cin_orig_y>;
    REQUIRE(P::n_params == 4);
    CHECK(P::parameters::names[0] == "c/conv1d/kernel");
    CHECK(P::parameters::names[1] == "c/conv1d/bias");
    CHECK(P::parameters::names[2] == "c/conv1d_1/kernel");
    CHECK(P::tab.nodes[P::param_ids[0]].shape == make_dims<1, 100, 10>());
    CHECK(P::tab.nodes[P::param_ids[2]].shape == make_dims<1, 100, 5>());
    CHECK(P::tab.nodes[P::param_ids[3]].shape == make_dims<5>());
    P::parameters p;
    fl::initialize<cin_orig>(p, 3);
    // glorot_uniform with Conv1D fans: limit sqrt(6 / (100 + 10)) for the first kernel
    const double lim = std::sqrt(6.0 / 110.0);
    double mx = 0;
    for (float v : p.get<"c/conv1d/kernel">()) mx = std::max(mx, double(std::abs(v)));
    CHECK(mx <= lim);
    CHECK(mx > 0.8 * lim);
    for (float v : p.get<"c/conv1d/bias">()) CHECK(v == 0.0f);
    leaves L;
    for (std::size_t k = 0; k < P::n_params; ++k) {
        const auto w = p.get(k);
        L[P::parameters::names[k]] = vec(w.begin(), w.end());
    }
    L["x"] = ones(128 * 100);
    const vec got = test::forward<P>(L, 128);
    const vec want = cin_ref(L, 128, 10, 10, {10, 5}, relu_);
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-4));
}

TEST_CASE("cin: at W2's sizes the outer-product tensor is absent from the forward and training plans (values only)") {
    // (the check that Z is absent from the plans is not ported: this core materialises Z,
    // cin.hpp; the values at these sizes are)
    leaves L;
    const vec got = test::forward<f::program<double, cin_w2>>(L, 2);
    check_close(got, cin_ref(L, 2, wN, wK, {128, 128}, ident), 1e-10);
}

// ==== AllInt (spec 5) ======================================================================================
namespace {
constexpr std::size_t iN = 6, iK = 5, iC = 3, iB = 4;
constexpr auto ix = f::input<"x", iN, iK>;
constexpr auto al_b = fl::allint<"a", {.cmp_dim = iC}>(ix);
constexpr auto al_b_y = al_b.out();
constexpr auto al_nb = fl::allint<"a", {.cmp_dim = iC, .use_bias = false}>(ix).out();
static_assert(al_b_y.shape() == make_dims<iN * iC>());  // concat
// stack, none (row 2) and keep_list with concat, flattened into one output
constexpr fl::result al_lists_model() {
    fl::result m;
    const f::val x = m.input("x", make_dims<iN, iK>());
    f::val parts[3]{};
    const fl::val_list st = fl::allint(m, "a", {.cmp_dim = iC, .out_type = cl::merge_type::stack}, x);
    if (st.list || st[0].rank() != 2 || st[0].dim(0) != iN || st[0].dim(1) != iC) throw "stack: (N, C)";
    parts[0] = f::reshape(st[0], f::dims_of({iN * iC}));
    const fl::val_list none = fl::allint(m, "a", {.cmp_dim = iC, .out_type = cl::merge_type::none, .keep_list = true}, x);
    if (!none.list || none.n != iN || none[2].rank() != 1 || none[2].dim(0) != iC) throw "none: N tensors (C), keep_list ignored";
    parts[1] = none[2];
    const fl::val_list kl = fl::allint(m, "a", {.cmp_dim = iC, .keep_list = true}, x);
    if (!kl.list || kl.n != 1 || kl[0].dim(0) != iN * iC) throw "keep_list with concat: a one-element list";
    parts[2] = kl[0];
    m.set_out(f::concat(0, parts, 3));
    return m;
}
constexpr auto al_lists = al_lists_model();
constexpr auto al_lists_y = al_lists.out();
constexpr auto al_orig = fl::allint<"a", {.cmp_dim = 4}>(f::input<"x", 10, 10>);
constexpr auto al_orig_y = al_orig.out();
static_assert(al_orig_y.shape() == make_dims<40>());
constexpr std::size_t jN = 39, jK = 16, jC = 8;
constexpr auto al_w = fl::allint<"a", {.cmp_dim = jC}>(f::input<"x", jN, jK>).out();

// source order: F[k, c] = sum_n X[n, k] Cm[n, c] + beta[c]; O[n, c] = sum_k X[n, k] F[k, c]
vec allint_source(leaves& L, std::size_t batch, bool bias, std::size_t n_ = iN, std::size_t k_ = iK, std::size_t c_ = iC) {
    const vec& x = get(L, "x");
    const vec& Cm = get(L, "a/allint_kernel");
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        vec F(k_ * c_, 0.0);
        for (std::size_t k = 0; k < k_; ++k)
            for (std::size_t c = 0; c < c_; ++c) {
                for (std::size_t n = 0; n < n_; ++n) F[k * c_ + c] += x[(b * n_ + n) * k_ + k] * Cm[n * c_ + c];
                if (bias) F[k * c_ + c] += get(L, "a/allint_bias")[c];
            }
        for (std::size_t n = 0; n < n_; ++n)
            for (std::size_t c = 0; c < c_; ++c) {
                double s = 0;
                for (std::size_t k = 0; k < k_; ++k) s += x[(b * n_ + n) * k_ + k] * F[k * c_ + c];
                out.push_back(s);
            }
    }
    return out;
}
// the documented form: O = (X X^T) Cm (+ (X 1) beta^T), the Gram matrix built explicitly
vec allint_gram(leaves& L, std::size_t batch) {
    const vec& x = get(L, "x");
    const vec& Cm = get(L, "a/allint_kernel");
    const vec& beta = get(L, "a/allint_bias");
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        auto X = [&](std::size_t n, std::size_t k) { return x[(b * iN + n) * iK + k]; };
        double G[iN][iN];
        for (std::size_t m = 0; m < iN; ++m)
            for (std::size_t n = 0; n < iN; ++n) {
                G[m][n] = 0;
                for (std::size_t k = 0; k < iK; ++k) G[m][n] += X(m, k) * X(n, k);
            }
        for (std::size_t m = 0; m < iN; ++m)
            for (std::size_t c = 0; c < iC; ++c) {
                double s = 0, rowsum = 0;
                for (std::size_t n = 0; n < iN; ++n) s += G[m][n] * Cm[n * iC + c];
                for (std::size_t k = 0; k < iK; ++k) rowsum += X(m, k);
                out.push_back(s + rowsum * beta[c]);
            }
    }
    return out;
}
} // namespace

TEST_CASE("allint: O = X (X^T Cm + beta) in float64 and float32, with and without bias; derivatives") {
    SUBCASE("bias (default)") {
        leaves L;
        test::fill<f::program<double, al_b_y>>(L, iB);
        test::check_values<al_b_y>(L, iB, allint_source(L, iB, true), 1e-12, 1e-4);
        check_close(test::forward<f::program<double, al_b_y>>(L, iB), allint_gram(L, iB), 1e-12);
    }
    SUBCASE("no bias") {
        leaves L;
        const vec y = test::forward<f::program<double, al_nb>>(L, iB);
        check_close(y, allint_source(L, iB, false), 1e-12);
        check_ad<al_nb>(2);
        CHECK(f::program<double, al_nb>::n_params == 1);
    }
}

TEST_CASE("allint: out_type stack, none and keep_list") {
    leaves L;
    const vec got = test::forward<f::program<double, al_lists_y>>(L, iB);
    const vec want = allint_source(L, iB, true);
    REQUIRE(got.size() == iB * (2 * iN * iC + iC));
    for (std::size_t b = 0; b < iB; ++b) {
        const double* g = &got[b * (2 * iN * iC + iC)];
        for (std::size_t i = 0; i < iN * iC; ++i) {
            CHECK(g[i] == doctest::Approx(want[b * iN * iC + i]).epsilon(1e-12));                 // stack: (N, C)
            CHECK(g[iN * iC + iC + i] == doctest::Approx(want[b * iN * iC + i]).epsilon(1e-12));  // keep_list: [(N C)]
        }
        for (std::size_t c = 0; c < iC; ++c) CHECK(g[iN * iC + c] == doctest::Approx(want[(b * iN + 2) * iC + c]).epsilon(1e-12));  // none: row 2
    }
}

TEST_CASE("allint: the original test's shapes and the all-ones relation O[n, c] = K sum_m Cm[m, c]") {
    using P = f::program<float, al_orig_y>;
    P::parameters p;
    fl::initialize<al_orig>(p, 5);  // GlorotNormal kernel, zero bias
    for (float b : p.get<"a/allint_bias">()) CHECK(b == 0.0f);
    std::vector<float> xs(100 * 100, 1.0f), out(100 * 40);
    P::workspace ws;
    P::io io;
    io.input<"x">(xs.data()).output<0>(out.data());
    P::run(p, ws, 100, io);
    auto k = p.get<"a/allint_kernel">();
    for (std::size_t b = 0; b < 100; ++b)
        for (std::size_t n = 0; n < 10; ++n)
            for (std::size_t c = 0; c < 4; ++c) {
                double s = 0;
                for (std::size_t m = 0; m < 10; ++m) s += k[m * 4 + c];
                CHECK(out[(b * 10 + n) * 4 + c] == doctest::Approx(10.0 * s).epsilon(1e-5));
            }
}

TEST_CASE("allint: the N x N matrix is absent from the forward and gradient plans (W-sized shapes)") {
    using F = f::program<float, al_w>;
    using G = f::grad_program<float, al_w>;
    CHECK(largest_node<F>(false) < jN * jN);
    CHECK(largest_node<G>(false) < jN * jN);
    CHECK(F::pl.tile_elems < jN * jN);  // workspace per example below the avoided matrix
    // and the values still match the source order at these sizes
    leaves L;
    const vec y = test::forward<f::program<double, al_w>>(L, 2);
    check_close(y, allint_source(L, 2, true, jN, jK, jC), 1e-12);
}

// ==== GroupInt / FFM (spec 4) ===============================================================================
namespace {
constexpr std::size_t gL = 3, gR = 2, gK = 4, gB = 3;
constexpr auto gls = f::input<"left", gL, gK>;
constexpr auto grs = f::input<"right", gR, gK>;
constexpr auto gl0 = f::input<"l0", gK>;
constexpr auto gl1 = f::input<"l1", gK>;
constexpr auto gl2 = f::input<"l2", gK>;
constexpr auto gr0 = f::input<"r0", gK>;
constexpr auto gr1 = f::input<"r1", gK>;
constexpr cl::group_int_config<> gi_mul_cfg{};
constexpr cl::group_int_config<> gi_dot_cfg{.interaction_type = cl::ffm_interaction::dot};
// sides: s stacked, t tuple (fields); multiply m, dot d
constexpr auto gi_ss_m = fl::group_int<"gi", gi_mul_cfg>({gls}, {grs}).out();
constexpr auto gi_ss_d = fl::group_int<"gi", gi_dot_cfg>({gls}, {grs}).out();
constexpr auto gi_tt_m = fl::group_int<"gi", gi_mul_cfg>({gl0, gl1, gl2}, {gr0, gr1}).out();
constexpr auto gi_tt_d = fl::group_int<"gi", gi_dot_cfg>({gl0, gl1, gl2}, {gr0, gr1}).out();
constexpr auto gi_ts_m = fl::group_int<"gi", gi_mul_cfg>({gl0, gl1, gl2}, {grs}).out();
constexpr auto gi_ts_d = fl::group_int<"gi", gi_dot_cfg>({gl0, gl1, gl2}, {grs}).out();
constexpr auto gi_st_m = fl::group_int<"gi", gi_mul_cfg>({gls}, {gr0, gr1}).out();
constexpr auto gi_st_d = fl::group_int<"gi", gi_dot_cfg>({gls}, {gr0, gr1}).out();
// the eight forms in one derivative program: form i (bit 0 left stacked, bit 1 right stacked,
// bit 2 dot) reads inputs suffixed "_<i>", so each gradient output is one form's
constexpr fl::result gi_forms_model() {
    fl::result m;
    f::val parts[8]{};
    for (std::size_t form = 0; form < 8; ++form) {
        const f::name_string sfx = f::name_string("_") + form;
        f::val l[gL]{}, r[gR]{};
        std::size_t nl = 0, nr = 0;
        if (form & 1) l[nl++] = m.input((f::name_string("left") + sfx).view(), make_dims<gL, gK>());
        else
            for (std::size_t i = 0; i < gL; ++i) l[nl++] = m.input((f::name_string("l") + i + sfx).view(), make_dims<gK>());
        if (form & 2) r[nr++] = m.input((f::name_string("right") + sfx).view(), make_dims<gR, gK>());
        else
            for (std::size_t i = 0; i < gR; ++i) r[nr++] = m.input((f::name_string("r") + i + sfx).view(), make_dims<gK>());
        parts[form] = fl::group_int(m, "gi", (form & 4) ? gi_dot_cfg : gi_mul_cfg, l, nl, r, nr).single();
    }
    m.set_out(f::concat(0, parts, 8));
    return m;
}
constexpr auto gi_forms = gi_forms_model().out();
// FFM is the same layer
constexpr auto ffm_tt_d = fl::FFM<"gi", gi_dot_cfg>({gl0, gl1, gl2}, {gr0, gr1}).out();
static_assert(ffm_tt_d.id == gi_tt_d.id && ffm_tt_d.g.n == gi_tt_d.g.n);

using fields = std::vector<std::vector<vec>>;  // [b][n][k]
fields stacked_values(leaves& L, const std::string& name, std::size_t n, std::size_t batch) {
    const vec& x = get(L, name);
    fields v(batch, std::vector<vec>(n, vec(gK)));
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < gK; ++j) v[b][i][j] = x[(b * n + i) * gK + j];
    return v;
}
fields tuple_values(leaves& L, const std::string& prefix, std::size_t n, std::size_t batch) {
    fields v(batch, std::vector<vec>(n, vec(gK)));
    for (std::size_t i = 0; i < n; ++i) {
        const vec& x = get(L, prefix + std::to_string(i));
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t j = 0; j < gK; ++j) v[b][i][j] = x[b * gK + j];
    }
    return v;
}
// pair products S[b][p][k], p = l R + r (spec 4.5 step 3.1)
std::vector<std::vector<vec>> pair_products(const fields& l, const fields& r) {
    std::vector<std::vector<vec>> s(l.size());
    for (std::size_t b = 0; b < l.size(); ++b)
        for (std::size_t i = 0; i < l[b].size(); ++i)
            for (std::size_t j = 0; j < r[b].size(); ++j) {
                vec p(l[b][i].size());
                for (std::size_t k = 0; k < p.size(); ++k) p[k] = l[b][i][k] * r[b][j][k];
                s[b].push_back(p);
            }
    return s;
}
// multiply (B, L R K) or dot (B, L R)
vec group_int_ref(const fields& l, const fields& r, bool dot) {
    vec out;
    for (const auto& ex : pair_products(l, r))
        for (const vec& p : ex) {
            if (dot) {
                double s = 0;
                for (double v : p) s += v;
                out.push_back(s);
            } else {
                out.insert(out.end(), p.begin(), p.end());
            }
        }
    return out;
}
// attention (spec 4.5): a = MLP(S row) (weight norm, act on hidden layers only), out = a * S
vec attention_ref(leaves& L, const fields& l, const fields& r, const std::vector<std::size_t>& units, double (*act)(double)) {
    vec out;
    for (const auto& ex : pair_products(l, r))
        for (const vec& p : ex) {
            vec h = p;
            for (std::size_t i = 0; i < units.size(); ++i) {
                h = flat_ref::dense(L, h, 1, h.size(), units[i], "gi/groupint_attention_mlp/dense_" + std::to_string(i), flat_ref::norm::trainable);
                if (i + 1 < units.size())
                    for (double& v : h) v = act(v);
            }
            for (double v : p) out.push_back(h[0] * v);  // raw score, no softmax, no sum
        }
    return out;
}

// one side form: forward in float64 / float32 (CPU and reference), no variables (derivatives: gi_forms);
// dot builds nothing of size L R K
template <const auto& Y>
void check_form(bool dot, bool left_stacked, bool right_stacked) {
    static_assert(Y.shape() == make_dims<gL * gR * gK>() || Y.shape() == make_dims<gL * gR>());
    CHECK(Y.shape().size() == (dot ? gL * gR : gL * gR * gK));
    leaves L;
    test::fill<f::program<double, Y>>(L, gB);
    const fields l = left_stacked ? stacked_values(L, "left", gL, gB) : tuple_values(L, "l", gL, gB);
    const fields r = right_stacked ? stacked_values(L, "right", gR, gB) : tuple_values(L, "r", gR, gB);
    test::check_values<Y>(L, gB, group_int_ref(l, r, dot));
    CHECK(f::program<double, Y>::n_params == 0);
    if (dot) CHECK(largest_node<f::program<double, Y>>(true) < gL * gR * gK);
}

// the FFM op (4.4) on the layer_ops_test shapes (8, 40) x (8, 48), K = 4
template <std::size_t Kf, cl::ffm_interaction T, std::size_t A, std::size_t B>
constexpr fl::result ffm_model() {
    fl::result m;
    const f::val l = m.input("left", make_dims<A>()), r = m.input("right", make_dims<B>());
    m.set_out(fl::ffm(Kf, T, l, r));
    return m;
}
constexpr std::size_t fN = 8, fK = 4, fL = 10, fR = 12;
constexpr auto ffm_mul = ffm_model<fK, cl::ffm_interaction::multiply, fL * fK, fR * fK>().out();
constexpr auto ffm_dot = ffm_model<fK, cl::ffm_interaction::dot, fL * fK, fR * fK>().out();
// multiply and dot on left (6), right (4), K = 2, in one derivative program (distinct inputs)
constexpr fl::result ffm_small_model() {
    fl::result m;
    const f::val lm = m.input("left_m", make_dims<6>()), rm = m.input("right_m", make_dims<4>());
    const f::val ld = m.input("left_d", make_dims<6>()), rd = m.input("right_d", make_dims<4>());
    m.set_out(f::concat(0, {fl::ffm(2, cl::ffm_interaction::multiply, lm, rm), fl::ffm(2, cl::ffm_interaction::dot, ld, rd)}));
    return m;
}
constexpr auto ffm_small = ffm_small_model().out();
static_assert(ffm_small.shape() == make_dims<3 * 2 * 2 + 3 * 2>());
static_assert(ffm_mul.shape() == make_dims<480>() && ffm_dot.shape() == make_dims<120>());
static_assert(cl::ffm_interaction_from("dot") == cl::ffm_interaction::dot);
static_assert(cl::ffm_interaction_from("multiply") == cl::ffm_interaction::multiply);

// attention
constexpr auto gi_att1 = fl::group_int<"gi", cl::group_int_config<1>{.use_attention = true, .attention_units = {1}}>({gls}, {grs});
constexpr auto gi_att1_y = gi_att1.out();
constexpr cl::group_int_config<2> gi_att2_cfg{.use_attention = true,
                                              .attention_units = {2, 1},
                                              .activation = cl::keras_activation("tanh"),
                                              .initializer = init::HeUniform{},
                                              .regularizer = ctrec::reg::L2{0.01}};
constexpr auto gi_att2 = fl::group_int<"gi", gi_att2_cfg>({gl0, gl1, gl2}, {gr0, gr1});
constexpr auto gi_att2_y = gi_att2.out();
constexpr auto gi_att2_pen = gi_att2.penalty();
constexpr auto gi_att2_default = fl::group_int<"gi", cl::group_int_config<2>{.use_attention = true, .attention_units = {2, 1}}>({gl0, gl1, gl2}, {gr0, gr1});
static_assert(gi_att1_y.shape() == make_dims<gL * gR * gK>() && gi_att2_y.shape() == make_dims<gL * gR * gK>());

// keep_list and out_type: ignored by default (the source), merge_tensor_list with apply_out_type
static_assert([] {
    fl::result m;
    const f::val l = m.input("left", make_dims<gL, gK>()), r = m.input("right", make_dims<gR, gK>());
    using cl::ffm_interaction;
    using cl::merge_type;
    auto gi = [&](auto cfg) { return fl::group_int(m, "gi", cfg, &l, 1, &r, 1); };
    const fl::val_list flat = gi(cl::group_int_config<>{}), flat_dot = gi(gi_dot_cfg);
    bool ok = !flat.list && flat[0].rank() == 1 && flat[0].dim(0) == gL * gR * gK && !flat_dot.list;
    // keep_list wraps the same value in a one-element list
    const fl::val_list kept = gi(cl::group_int_config<>{.keep_list = true});
    ok = ok && kept.list && kept.n == 1 && kept[0].id == flat[0].id;
    const fl::val_list kept_dot = gi(cl::group_int_config<>{.interaction_type = ffm_interaction::dot, .keep_list = true});
    ok = ok && kept_dot.list && kept_dot.n == 1 && kept_dot[0].id == flat_dot[0].id;
    // out_type is stored but ignored unless apply_out_type (acknowledged: otherwise a compile error)
    const fl::val_list ign_s = gi(cl::group_int_config<>{.out_type = merge_type::stack, .acknowledge_ignored_out_type = true});
    const fl::val_list ign_n = gi(cl::group_int_config<>{.out_type = merge_type::none, .acknowledge_ignored_out_type = true});
    ok = ok && !ign_s.list && ign_s[0].id == flat[0].id && !ign_n.list && ign_n[0].id == flat[0].id;
    // stack with keep_list: a one-element list of the (L R, K) value
    const fl::val_list st = gi(cl::group_int_config<>{.out_type = merge_type::stack, .apply_out_type = true});
    const fl::val_list stk = gi(cl::group_int_config<>{.out_type = merge_type::stack, .apply_out_type = true, .keep_list = true});
    ok = ok && !st.list && st[0].rank() == 2 && st[0].dim(0) == gL * gR && stk.list && stk.n == 1 && stk[0].id == st[0].id;
    // concat: the flat (L R K) default
    const fl::val_list cc = gi(cl::group_int_config<>{.out_type = merge_type::concat, .apply_out_type = true});
    ok = ok && !cc.list && cc[0].rank() == 1 && cc[0].dim(0) == gL * gR * gK;
    // none: L R pair vectors (K), keep_list ignored
    const fl::val_list nn = gi(cl::group_int_config<>{.out_type = merge_type::none, .apply_out_type = true, .keep_list = true});
    ok = ok && nn.list && nn.n == gL * gR && nn[4].rank() == 1 && nn[4].dim(0) == gK;
    // dot: the (L R) output is a (B, W) tensor, unchanged for every type
    const fl::val_list ds = gi(cl::group_int_config<>{.interaction_type = ffm_interaction::dot, .out_type = merge_type::stack, .apply_out_type = true});
    const fl::val_list dn = gi(cl::group_int_config<>{.interaction_type = ffm_interaction::dot, .out_type = merge_type::none, .apply_out_type = true});
    const fl::val_list dnk = gi(cl::group_int_config<>{.interaction_type = ffm_interaction::dot, .out_type = merge_type::none,
                                                       .apply_out_type = true, .keep_list = true});
    ok = ok && !ds.list && ds[0].id == flat_dot[0].id && !dn.list && dn[0].id == flat_dot[0].id && dnk.list && dnk.n == 1 &&
         dnk[0].id == flat_dot[0].id;
    return ok;
}());
static_assert([] {
    // attention with keep_list keeps the initialisers; with stack it is (L R, K)
    fl::result m;
    const f::val l = m.input("left", make_dims<gL, gK>()), r = m.input("right", make_dims<gR, gK>());
    const fl::val_list k = fl::group_int(m, "gi", cl::group_int_config<1>{.use_attention = true, .attention_units = {1}, .keep_list = true}, &l, 1, &r, 1);
    bool ok = k.list && k.n == 1 && m.n_inits == 3;  // kernel, trainable_kernel_norm, bias
    const fl::val_list s = fl::group_int(m, "gi", cl::group_int_config<1>{.use_attention = true, .attention_units = {1},
                                                                          .out_type = cl::merge_type::stack, .apply_out_type = true},
                                         &l, 1, &r, 1);
    return ok && !s.list && s[0].rank() == 2 && s[0].dim(0) == gL * gR && s[0].dim(1) == gK;
}());
constexpr auto gi_concat_apply = fl::group_int<"gi", cl::group_int_config<>{.out_type = cl::merge_type::concat, .apply_out_type = true}>({gls}, {grs}).out();

// the original tests: 5 x (10) fields with 3 x (10)
constexpr auto o_l0 = f::input<"l0", 10>;
constexpr auto o_l1 = f::input<"l1", 10>;
constexpr auto o_l2 = f::input<"l2", 10>;
constexpr auto o_l3 = f::input<"l3", 10>;
constexpr auto o_l4 = f::input<"l4", 10>;
constexpr auto o_r0 = f::input<"r0", 10>;
constexpr auto o_r1 = f::input<"r1", 10>;
constexpr auto o_r2 = f::input<"r2", 10>;
constexpr auto gi_o_mul = fl::group_int<"GroupInt", cl::group_int_config<>{}>({o_l0, o_l1, o_l2, o_l3, o_l4}, {o_r0, o_r1, o_r2}).out();
constexpr auto gi_o_dot = fl::group_int<"GroupInt", gi_dot_cfg>({o_l0, o_l1, o_l2, o_l3, o_l4}, {o_r0, o_r1, o_r2}).out();
constexpr auto gi_o_att = fl::group_int<"GroupInt", cl::group_int_config<3>{.use_attention = true, .attention_units = {15, 10, 1}}>(
    {f::input<"left", 5, 10>}, {f::input<"right", 3, 10>});
constexpr auto gi_o_att_y = gi_o_att.out();
static_assert(gi_o_mul.shape() == make_dims<150>() && gi_o_dot.shape() == make_dims<15>() && gi_o_att_y.shape() == make_dims<150>());
} // namespace

TEST_CASE("ffm op: the index formulas of 4.4 on the layer_ops_test shapes (8, 40) x (8, 48), K = 4") {
    leaves L;
    test::fill<f::grad_program<double, ffm_mul>>(L, fN);
    const vec& lv = get(L, "left");
    const vec& rv = get(L, "right");
    vec mul(fN * 480), dot(fN * 120, 0.0);
    for (std::size_t b = 0; b < fN; ++b)
        for (std::size_t l = 0; l < fL; ++l)
            for (std::size_t r = 0; r < fR; ++r)
                for (std::size_t k = 0; k < fK; ++k) {
                    mul[b * 480 + (l * fR + r) * fK + k] = lv[b * 40 + l * fK + k] * rv[b * 48 + r * fK + k];
                    dot[b * 120 + l * fR + r] += lv[b * 40 + l * fK + k] * rv[b * 48 + r * fK + k];
                }
    test::check_values<ffm_mul>(L, fN, mul);
    test::check_values<ffm_dot>(L, fN, dot);

    // FFMGrad (4.4) with upstream G = "cotangent": gradient shapes (8, 40) and (8, 48)
    auto grads = [&]<class G>(G*, bool is_dot) {
        leaves M = L;
        M.v.erase("cotangent");
        const auto out = test::run<G>(M, fN);
        const vec& ct = get(M, "cotangent");
        const vec& dl = out[G::template grad<"left">];
        const vec& dr = out[G::template grad<"right">];
        REQUIRE(dl.size() == fN * 40);
        REQUIRE(dr.size() == fN * 48);
        auto g = [&](std::size_t b, std::size_t l, std::size_t r, std::size_t k) {
            return ct[is_dot ? b * 120 + l * fR + r : b * 480 + (l * fR + r) * fK + k];
        };
        vec wl(fN * 40, 0.0), wr(fN * 48, 0.0);
        for (std::size_t b = 0; b < fN; ++b)
            for (std::size_t l = 0; l < fL; ++l)
                for (std::size_t r = 0; r < fR; ++r)
                    for (std::size_t k = 0; k < fK; ++k) {
                        wl[b * 40 + l * fK + k] += g(b, l, r, k) * rv[b * 48 + r * fK + k];
                        wr[b * 48 + r * fK + k] += g(b, l, r, k) * lv[b * 40 + l * fK + k];
                    }
        check_close(dl, wl, 1e-12);
        check_close(dr, wr, 1e-12);
    };
    grads(static_cast<f::grad_program<double, ffm_mul>*>(nullptr), false);
    grads(static_cast<f::grad_program<double, ffm_dot>*>(nullptr), true);

    // finite differences, JVP and duality on a smaller instance
    check_ad<ffm_small>(2);
    // dot is one contraction: nothing of the multiply's size
    CHECK(largest_node<f::program<double, ffm_dot>>(true) < 480);
}

TEST_CASE("group_int multiply and dot: stacked, tuple and mixed sides, left-major pairs, gradients") {
    // (the type core's check that no concatenation of the fields is built is not ported: this
    // core stacks each side's fields once, group_int.hpp)
    check_ad<gi_forms>(gB);  // the derivatives of all eight forms
    SUBCASE("both stacked") {
        check_form<gi_ss_m>(false, true, true);
        check_form<gi_ss_d>(true, true, true);
        // multiply is one fused broadcast product (then the output copy of the reshape)
        CHECK(f::program<float, gi_ss_m>::pl.steps <= 2);
    }
    SUBCASE("both tuples (the source's lists)") {
        check_form<gi_tt_m>(false, false, false);
        check_form<gi_tt_d>(true, false, false);
    }
    SUBCASE("tuple left, stacked right") {
        check_form<gi_ts_m>(false, false, true);
        check_form<gi_ts_d>(true, false, true);
    }
    SUBCASE("stacked left, tuple right") {
        check_form<gi_st_m>(false, true, false);
        check_form<gi_st_d>(true, true, false);
    }
}

TEST_CASE("group_int attention: raw MLP score per pair (no softmax, no sum), every gradient, names, inits, penalty") {
    SUBCASE("units [1]: forward in float64 / float32, gradients of left, right and every MLP variable") {
        leaves L;
        test::fill<f::program<double, gi_att1_y>>(L, gB);
        test::check_values<gi_att1_y>(L, gB, attention_ref(L, stacked_values(L, "left", gL, gB), stacked_values(L, "right", gR, gB), {1}, relu_));
        check_ad<gi_att1_y>(gB);
        CHECK(param_names<f::program<double, gi_att1_y>>() ==
              std::vector<std::string>{"gi/groupint_attention_mlp/dense_0/kernel", "gi/groupint_attention_mlp/dense_0/trainable_kernel_norm",
                                       "gi/groupint_attention_mlp/dense_0/bias"});
        CHECK(!gi_att1.has_penalty());  // no regularizer
    }
    SUBCASE("units [2, 1], tanh on the hidden layer only, L2 regularizer, HeUniform, tuple sides") {
        leaves L;
        test::fill<f::program<double, gi_att2_y>>(L, gB);
        const vec want = attention_ref(L, tuple_values(L, "l", gL, gB), tuple_values(L, "r", gR, gB), {2, 1}, tanh_);
        check_close(test::forward<f::program<double, gi_att2_y>>(L, gB), want, 1e-12);
        // kernels start from the given initializer (default GlorotNormal), biases zeros
        REQUIRE(gi_att2.n_inits == 6);
        CHECK(var_name(gi_att2, 0) == "gi/groupint_attention_mlp/dense_0/kernel");
        CHECK(gi_att2.inits[0].spec.w == W::he_uniform);
        CHECK(gi_att2.g.nodes[gi_att2.inits[0].var].shape == make_dims<gK, 2>());
        CHECK(var_name(gi_att2, 3) == "gi/groupint_attention_mlp/dense_1/kernel");
        CHECK(gi_att2.g.nodes[gi_att2.inits[3].var].shape == make_dims<2, 1>());
        CHECK(var_name(gi_att2, 2) == "gi/groupint_attention_mlp/dense_0/bias");
        CHECK(gi_att2.inits[2].spec.w == W::zeros);
        CHECK(gi_att2_default.inits[0].spec.w == W::glorot_normal);
        // the penalty: 0.01 * sum of squared raw kernels of both Denses, none on biases
        double pen = 0;
        for (const char* k : {"gi/groupint_attention_mlp/dense_0/kernel", "gi/groupint_attention_mlp/dense_1/kernel"})
            for (double w : get(L, k)) pen += 0.01 * w * w;
        CHECK(test::forward<f::program<double, gi_att2_pen>>(L, 1)[0] == doctest::Approx(pen).epsilon(1e-12));
    }
}

TEST_CASE("group_int keep_list and out_type: ignored by default (source), merge_tensor_list as the opt-in extension") {
    // (the list forms are the static_asserts above; stack and none values: test_flat_crossing.cpp)
    leaves L;
    const vec got = test::forward<f::program<double, gi_concat_apply>>(L, gB);
    check_close(got, group_int_ref(stacked_values(L, "left", gL, gB), stacked_values(L, "right", gR, gB), false), 1e-12);
}

TEST_CASE("group_int original tests: 5 x ones(100, 10) with 3 x ones(100, 10)") {
    auto all_ones = [](leaves& L) {
        for (const char* n : {"l0", "l1", "l2", "l3", "l4", "r0", "r1", "r2"}) L[n] = ones(100 * 10);
    };
    SUBCASE("multiply (default params): (100, 150), every product 1, sum exactly 15000") {
        leaves L;
        all_ones(L);
        const vec y = test::forward<f::program<float, gi_o_mul>>(L, 100);
        REQUIRE(y.size() == 100 * 150);
        double s = 0;
        for (double v : y) s += v;
        CHECK(s == 15000.0);
    }
    SUBCASE("dot: (100, 15), every dot 10") {
        leaves L;
        all_ones(L);
        const vec y = test::forward<f::program<float, gi_o_dot>>(L, 100);
        REQUIRE(y.size() == 100 * 15);
        double s = 0;
        for (double v : y) s += v;
        CHECK(s == 15000.0);
    }
    SUBCASE("attention [15, 10, 1], relu: (100, 150) from initialised weights") {
        using M = f::program<float, gi_o_att_y>;
        M::parameters p;
        fl::initialize<gi_o_att>(p, 5);
        M::workspace ws;
        std::vector<float> l(100 * 50, 1.f), r(100 * 30, 1.f), y(100 * 150, -1.f);
        M::io io;
        io.input<"left">(l.data()).input<"right">(r.data()).output<0>(y.data());
        M::run(p, ws, 100, io);
        // every pair vector is ones, so every pair gets the same raw score a: all outputs equal a
        REQUIRE(std::isfinite(y[0]));
        CHECK(std::all_of(y.begin(), y.end(), [&](float v) { return v == y[0]; }));
        std::vector<std::string> want;
        for (std::size_t i = 0; i < 3; ++i)
            for (const char* n : {"kernel", "trainable_kernel_norm", "bias"})
                want.push_back("GroupInt/groupint_attention_mlp/dense_" + std::to_string(i) + "/" + n);
        CHECK(param_names<M>() == want);
        CHECK(p.get<"GroupInt/groupint_attention_mlp/dense_0/kernel">().size() == 10 * 15);
        CHECK(p.get<"GroupInt/groupint_attention_mlp/dense_2/kernel">().size() == 10 * 1);
    }
}
