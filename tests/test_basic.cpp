// AddBias, LayerNorm, pooling, merge_tensor_list, GradNorm and the MLP:
// the checks of the type-core tests test_layers_basic.cpp, test_grad_norm.cpp and test_mlp.cpp
// that test_flat_crossing_2.cpp, test_flat_attention_3.cpp and test_flat_layers.cpp do not
// already make, with the same references (spec layers-core-and-cross.md 1.7, 1.8, 1.10, 1.1,
// 1.9, 3), tolerances and error formulas (flat_ref_dense_dcn.hpp), on the CPU and reference
// backends. (The MLP cases are here rather than in test_flat_dense_bn.cpp, which has
// test_mlp_bn.cpp's, to keep each file's compile time down.) Each TEST_CASE name is the
// type-core case's, prefixed with "flat ".
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "layer_reference.hpp"
#include "ref_dense_dcn.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
namespace init = ctrec::init;
namespace reg = ctrec::reg;
using ctrec::make_dims;
using cl::mode;
using flat_port::check_close;
using flat_port::check_derivatives;
using flat_port::check_forward;
using flat_ref::get;
using flat_ref::vec;
using test::leaf_value;
using test::leaves;

namespace {
constexpr std::size_t B = 4;

// ================================ AddBias (1.7) ==================================================
constexpr auto ab = fl::add_bias<"ab", {.regularizer = reg::L2{0.5}}>(f::input<"x", 3, 5>);
constexpr auto ab_y = ab.out();
constexpr auto ab_pen = ab.penalty();
constexpr auto ab_none = fl::add_bias<"ab">(f::input<"x", 3, 5>);
constexpr auto ab10 = fl::add_bias<"AddBias">(f::input<"x", 10>);
constexpr auto ab10_y = ab10.out();
constexpr auto ab3 = fl::add_bias<"s/ab", {.initializer = init::Constant{0.25}}>(f::input<"x", 2, 3, 4>);
constexpr auto ab3_y = ab3.out();
constexpr auto ab_cf44_y = fl::add_bias<"ab", {.format = cl::data_format::channels_first}>(f::input<"x", 4, 4>).out();
constexpr auto ab_cl44_y = fl::add_bias<"ab">(f::input<"x", 4, 4>).out();
constexpr auto ab_cf333_y = fl::add_bias<"ab", {.format = cl::data_format::channels_first}>(f::input<"x", 3, 3, 3>).out();
constexpr auto ab_cl333_y = fl::add_bias<"ab">(f::input<"x", 3, 3, 3>).out();

// Runs program M on input values xs (leaf "x", batch examples) with the parameters initialised
// from result R's initializers; output 0.
template <class T, const auto& R, const auto& Y>
std::vector<T> run_initialized(const std::vector<T>& xs, std::size_t batch, std::uint64_t seed = 1) {
    using M = f::program<T, Y>;
    typename M::parameters p;
    fl::initialize<R>(p, seed);
    typename M::workspace ws;
    std::vector<T> y(batch * M::template output_size<0>, T(-12345));
    typename M::io io;
    io.template input<"x">(xs.data()).template output<0>(y.data());
    M::run(p, ws, batch, io);
    return y;
}

// ================================ LayerNorm (1.8) ================================================
constexpr auto ln = fl::layer_norm<"ln", {.initializer = init::HeUniform{}, .regularizer = reg::L1{0.1}}>(f::input<"x", 2, 6>);
constexpr auto ln_y = ln.out();
constexpr auto ln_pen = ln.penalty();
constexpr auto ln1 = fl::layer_norm<"n">(f::input<"x", 7>);
constexpr auto ln1_y = ln1.out();
constexpr auto ln3 = fl::layer_norm<"a/ln", {.regularizer = reg::L1L2{0.01, 0.02}}>(f::input<"x", 2, 3, 5>);
constexpr auto ln3_y = ln3.out();
constexpr auto ln3_pen = ln3.penalty();
constexpr auto ln100 = fl::layer_norm<"LayerNorm", {.initializer = init::HeUniform{}}>(f::input<"x", 100>);
constexpr auto ln100_y = ln100.out();

// The naive LayerNorm of the spec (1.8.5) over rows of width D of leaf x.
vec layer_norm_ref(leaves& L, const std::string& scope, std::size_t D) {
    const vec& x = get(L, "x");
    const vec &beta = get(L, scope + "/beta"), &gamma = get(L, scope + "/gamma");
    vec y;
    for (std::size_t r = 0; r < x.size() / D; ++r) {
        double mu = 0, var = 0;
        for (std::size_t i = 0; i < D; ++i) mu += x[r * D + i];
        mu /= static_cast<double>(D);
        for (std::size_t i = 0; i < D; ++i) var += (x[r * D + i] - mu) * (x[r * D + i] - mu);
        var /= static_cast<double>(D);
        for (std::size_t i = 0; i < D; ++i) y.push_back(gamma[i] * (x[r * D + i] - mu) / std::sqrt(var + 1e-6) + beta[i]);
    }
    return y;
}

// ================================ pooling (1.10) =================================================
constexpr auto p0 = f::input<"x0", 10>;
constexpr auto p1 = f::input<"x1", 10>;
constexpr auto p2 = f::input<"x2", 10>;
constexpr auto p3 = f::input<"x3", 10>;
constexpr auto p4 = f::input<"x4", 10>;
constexpr auto sum5_y = fl::sum_pooling({p0, p1, p2, p3, p4});
constexpr auto avg5_y = fl::avg_pooling({p0, p1, p2, p3, p4});
constexpr auto max5_y = fl::max_pooling({p0, p1, p2, p3, p4});
constexpr auto pp = f::input<"p", 2, 3>;
constexpr auto pq = f::input<"q", 2, 3>;
constexpr auto max2_y = fl::max_pooling({pp, pq});
constexpr auto avg2_y = fl::avg_pooling({pp, pq});

// ================================ merge_tensor_list (1.1) ========================================
using T = cl::merge_type;
// (N, K) = (3, 4): concat and the rows of none, as one output for the derivative check
constexpr fl::result merge_nk_model() {
    fl::result m;
    const f::val x = m.input("x", make_dims<3, 4>());
    const fl::val_list c = fl::merge_tensor(T::concat, false, x);
    const fl::val_list n = fl::merge_tensor(T::none, false, x);
    m.set_out(f::concat(0, {c.single(), n[1], n[2]}));
    return m;
}
constexpr auto merge_nk = merge_nk_model();
constexpr auto merge_nk_y = merge_nk.out();
// (W) = (6) with and without num_feature: the structure of every case (a val_list's values and
// list flag), and the values of stack F = 2 and the third part of none F = 3
constexpr bool merge_w_structure() {
    fl::result m;
    const f::val w = m.input("w", make_dims<6>());
    auto is_w = [&](const fl::val_list& l, bool list) { return l.n == 1 && l.list == list && l[0].id == w.id; };
    bool ok = true;
    ok = ok && is_w(fl::merge_features(T::concat, 2, false, w), false);  // concat: unchanged
    ok = ok && is_w(fl::merge_features(T::concat, 2, true, w), true);    // keep_list: [w]
    const fl::val_list st = fl::merge_features(T::stack, 2, true, w);
    ok = ok && st.n == 1 && st.list && st[0].rank() == 2 && st[0].dim(0) == 2 && st[0].dim(1) == 3;
    const fl::val_list none3 = fl::merge_features(T::none, 3, false, w), none3k = fl::merge_features(T::none, 3, true, w);
    ok = ok && none3.n == 3 && none3.list && none3k.n == 3 && none3k.list;  // keep_list ignored
    for (std::size_t i = 0; i < 3; ++i) ok = ok && none3[i].rank() == 1 && none3[i].dim(0) == 2 && none3[i].id == none3k[i].id;
    // without num_feature (or F <= 1): unchanged whatever the type, no list even for none;
    // keep_list gives [w] for every type
    for (T t : {T::none, T::stack, T::concat}) {
        ok = ok && is_w(fl::merge_tensor(t, false, w), false) && is_w(fl::merge_tensor(t, true, w), true);
        ok = ok && is_w(fl::merge_features(t, 1, false, w), false) && is_w(fl::merge_features(t, 1, true, w), true);
    }
    return ok;
}
static_assert(merge_w_structure());
constexpr fl::result merge_w_model() {
    fl::result m;
    const f::val w = m.input("w", make_dims<6>());
    const f::val st = fl::merge_features(T::stack, 2, false, w).single();
    const f::val part2 = fl::merge_features(T::none, 3, false, w)[2];
    m.set_out(f::concat(0, {f::reshape(st, f::dims_of({6})), part2}));
    return m;
}
constexpr auto merge_w = merge_w_model();
constexpr auto merge_w_y = merge_w.out();
// lists: u, v (4) stack (2, 4) and concat (8); three (2, 3) parts stack (3, 2, 3) and concat (6, 3)
constexpr fl::result merge_lists_model(bool stack, bool three) {
    fl::result m;
    f::val xs[3]{};
    if (three) {
        xs[0] = m.input("p", make_dims<2, 3>()), xs[1] = m.input("q", make_dims<2, 3>()), xs[2] = m.input("r", make_dims<2, 3>());
    } else {
        xs[0] = m.input("u", make_dims<4>()), xs[1] = m.input("v", make_dims<4>());
    }
    const std::size_t n = three ? 3 : 2;
    m.set_out(fl::merge_list(stack ? T::stack : T::concat, false, xs, n).single());
    return m;
}
constexpr auto ml_st = merge_lists_model(true, false);
constexpr auto ml_st_y = ml_st.out();
constexpr auto ml_co = merge_lists_model(false, false);
constexpr auto ml_co_y = ml_co.out();
constexpr auto ml_st3 = merge_lists_model(true, true);
constexpr auto ml_st3_y = ml_st3.out();
constexpr auto ml_co3 = merge_lists_model(false, true);
constexpr auto ml_co3_y = ml_co3.out();
constexpr bool merge_list_structure() {
    fl::result m;
    const f::val u = m.input("u", make_dims<4>()), v = m.input("v", make_dims<4>());
    const f::val uv[2] = {u, v};
    const fl::val_list none = fl::merge_list(T::none, false, uv, 2), nonek = fl::merge_list(T::none, true, uv, 2);
    bool ok = none.n == 2 && none.list && none[0].id == u.id && none[1].id == v.id;
    ok = ok && nonek.n == 2 && nonek.list && nonek[0].id == u.id && nonek[1].id == v.id;  // keep_list ignored
    const fl::val_list sk = fl::merge_list(T::stack, true, uv, 2), ck = fl::merge_list(T::concat, true, uv, 2);
    ok = ok && sk.n == 1 && sk.list && sk[0].id == fl::merge_list(T::stack, false, uv, 2).single().id;
    ok = ok && ck.n == 1 && ck.list && ck[0].id == fl::merge_list(T::concat, false, uv, 2).single().id;
    return ok;
}
static_assert(merge_list_structure());

// ================================ GradNorm (1.9) =================================================
constexpr std::size_t GB = 5, In = 3, H = 4;
constexpr auto gx = f::input<"x", In>;
constexpr auto gt = f::input<"t", H>;
constexpr auto gW = f::param<"W", In, H>;
constexpr auto gV = f::param<"V", H, 1>;
constexpr auto gs = f::matmul(gx, gW);
constexpr auto l1 = f::batch_mean(f::sum(gs * gs));                         // dl1/ds = 2 s / B
constexpr auto l2 = f::batch_mean(f::sum(f::tanh(gs) * gt));                // dl2/ds = (1 - tanh^2 s) t / B
constexpr auto l3 = f::sum(f::batch_mean(f::sigmoid(f::matmul(gs, gV))));  // dl3/ds = sig'(s V) V^T / B
constexpr cl::grad_norm_config gn_pow3{.loss_pow = 3.0};
constexpr auto gn3 = fl::grad_norm<"gn", gn_pow3>({&l1, &l2, &l3}, {&gs});
constexpr auto gn3_g = gn3.gnorm_loss();
constexpr auto gn3_w = gn3.weighted_loss();
// several shared inputs
constexpr auto gW2 = f::param<"W2", In, 2>;
constexpr auto ga = f::matmul(gx, gW);
constexpr auto gb = f::tanh(f::matmul(gx, gW2));
constexpr auto m1 = f::batch_mean(f::sum(ga * ga) + f::sum(gb));      // d/da = 2a/B, d/db = 1/B
constexpr auto m2 = f::batch_mean(f::sum(ga * gt) + f::sum(gb * gb));  // d/da = t/B,  d/db = 2b/B
constexpr auto gn_two = fl::grad_norm<"gn">({&m1, &m2}, {&ga, &gb});
constexpr auto gn_two_g = gn_two.gnorm_loss();
constexpr auto gn_two_w = gn_two.weighted_loss();
// over a max(z, 0) tower
constexpr auto hs = f::maximum(f::matmul(gx, gW), f::lit<0.0>);
constexpr auto r1 = f::batch_mean(f::sum(hs * hs));
constexpr auto r2 = f::sum(f::batch_mean(f::sigmoid(f::matmul(hs, gV))));
constexpr auto gn_max = fl::grad_norm<"gn">({&r1, &r2}, {&hs});
constexpr auto gn_max_g = gn_max.gnorm_loss();

double sig(double z) { return 1 / (1 + std::exp(-z)); }
struct gn_ref {
    double gnorm_loss = 0, weighted_loss = 0;
    vec gnorm, w;
};
// The naive reference of spec 1.9 with the per-task gradients written by hand.
gn_ref gn_reference(const cl::grad_norm_config& c, leaves& L) {
    const vec &x = get(L, "x"), &W = get(L, "W"), &V = get(L, "V"), &t = get(L, "t");
    vec sv(GB * H, 0.0), z(GB, 0.0);
    for (std::size_t b = 0; b < GB; ++b)
        for (std::size_t j = 0; j < H; ++j)
            for (std::size_t i = 0; i < In; ++i) sv[b * H + j] += x[b * In + i] * W[i * H + j];
    for (std::size_t b = 0; b < GB; ++b)
        for (std::size_t j = 0; j < H; ++j) z[b] += sv[b * H + j] * V[j];
    double Ls[3] = {0, 0, 0}, G2[3] = {0, 0, 0};
    for (std::size_t b = 0; b < GB; ++b) {
        Ls[2] += sig(z[b]) / GB;
        for (std::size_t j = 0; j < H; ++j) {
            const double sj = sv[b * H + j], tj = t[b * H + j];
            Ls[0] += sj * sj / GB;
            Ls[1] += std::tanh(sj) * tj / GB;
            const double g[3] = {2 * sj / GB, (1 - std::tanh(sj) * std::tanh(sj)) * tj / GB, sig(z[b]) * (1 - sig(z[b])) * V[j] / GB};
            for (int k = 0; k < 3; ++k) G2[k] += g[k] * g[k];
        }
    }
    gn_ref o;
    const vec& th = get(L, "gn/grad_norm_weights");
    const double m = std::max({th[0], th[1], th[2]});
    double se = 0;
    for (double v : th) se += std::exp(v - m);
    for (double v : th) o.w.push_back(std::exp(v - m) / se);
    double avg = 0;
    for (std::size_t k = 0; k < 3; ++k) o.gnorm.push_back(std::sqrt(G2[k])), avg += o.gnorm[k] * o.w[k] / 3;
    for (std::size_t k = 0; k < 3; ++k) {
        double diff = std::abs(o.gnorm[k] * o.w[k] - avg);
        if (c.relative_diff) diff /= avg + c.epsilon;
        o.gnorm_loss += c.scale * std::pow(diff, c.loss_pow);
        o.weighted_loss += Ls[k] * o.w[k];
    }
    return o;
}

// Gradients of the scalar model Y against central differences of its forward program for every
// leaf except `constants`, whose gradient must be a symbolic, exact zero (stop_gradient'ed:
// differences see their real influence). The type core's check_fd.
template <const auto& Y>
void check_fd(std::size_t batch, std::vector<std::string> constants) {
    using G = f::grad_program<double, Y>;
    using F = f::program<double, Y>;
    leaves L;
    const auto g = flat_port::run<G>(L, batch);
    double worst = 0;
    std::string where;
    std::size_t checked = 0;
    for (std::size_t k = 0; k < G::tab.n_wrt; ++k) {
        const std::string name(G::tab.name_of(G::tab.wrt[k]));
        INFO("leaf " << name);
        const bool constant = std::find(constants.begin(), constants.end(), name) != constants.end();
        CHECK(flat_port::gradient_is_symbolic_zero<G>(name) == constant);
        if (constant) {
            for (double v : g[1 + k]) CHECK(v == 0.0);
            continue;
        }
        vec& x = L[name];
        for (std::size_t e = 0; e < x.size(); ++e, ++checked) {
            const double x0 = x[e], h = 1e-6;
            x[e] = x0 + h;
            const double fp = flat_port::run<F>(L, batch)[0][0];
            x[e] = x0 - h;
            const double fm = flat_port::run<F>(L, batch)[0][0];
            x[e] = x0;
            const double fd = (fp - fm) / (2 * h);
            const double err = std::abs(fd - g[1 + k][e]) / std::max({1.0, std::abs(fd), std::abs(g[1 + k][e])});
            if (err > worst) worst = err, where = name + "[" + std::to_string(e) + "]";
        }
    }
    INFO("worst: " << where);
    CHECK(checked > 0);
    CHECK(worst < 1e-6);
}

// ================================ MLP (test_mlp.cpp) ============================================
double relu(double z) { return z > 0 ? z : 0; }
constexpr std::size_t MB = 5, D0 = 4;
constexpr auto xm = f::input<"x", D0>;
constexpr auto mlp_def = fl::mlp<"mlp", cl::mlp_config<3>{.output_dims = {6, 5, 2}}, mode::predict>(xm);
constexpr auto mlp_def_y = mlp_def.out();
constexpr auto mlp_one = fl::mlp<"m", cl::mlp_config<1>{.output_dims = {3}, .activation = cl::ad_activation("tanh"), .use_weight_norm = false}, mode::predict>(xm);
constexpr auto mlp_one_y = mlp_one.out();
constexpr cl::mlp_config<4> list_cfg{.output_dims = {5, 4, 3, 2},
                                     .activations = {cl::ad_activation("relu"), cl::ad_activation("tanh"), cl::ad_activation("PReLU"), cl::act_none},
                                     .activation_list = true,
                                     .use_weight_norm = false};
constexpr auto mlp_list = fl::mlp<"mlp", list_cfg, mode::predict>(xm);
constexpr auto mlp_list_y = mlp_list.out();
constexpr auto mlp_s2 = fl::mlp<"s", cl::mlp_config<2>{.output_dims = {3, 2}, .activation = cl::ad_activation("sigmoid2"), .use_weight_norm = false}, mode::predict>(xm);
constexpr auto mlp_s2_y = mlp_s2.out();
constexpr cl::mlp_config<2> pen_cfg{.output_dims = {3, 2}, .kernel_regularizer = reg::L2{0.01}, .bias_regularizer = reg::L1{0.1},
                                    .enable_batch_normalization = true};
constexpr auto mlp_pen = fl::mlp<"mlp", pen_cfg, mode::train>(xm);
constexpr auto mlp_pen_p = mlp_pen.penalty();
constexpr auto mlp_pen_loss = f::batch_mean(f::sum(mlp_pen.out())) + mlp_pen.penalty();
constexpr cl::mlp_config<2> wn_cfg{.output_dims = {7, 3}, .initializers = {init::HeUniform{}, init::GlorotNormal{}}};
constexpr cl::mlp_config<2> plain_cfg{.output_dims = {7, 3}, .initializers = {init::HeUniform{}, init::GlorotNormal{}}, .use_weight_norm = false};
constexpr auto mlp_wn = fl::mlp<"mlp", wn_cfg, mode::predict>(xm);
constexpr auto mlp_wn_y = mlp_wn.out();
constexpr auto mlp_plain = fl::mlp<"mlp", plain_cfg, mode::predict>(xm);
constexpr auto mlp_plain_y = mlp_plain.out();
constexpr cl::mlp_config<4> orig_cfg{.output_dims = {100, 50, 10, 1},
                                     .activations = {cl::act_relu, cl::act_tanh, cl::act_prelu, cl::act_none},
                                     .activation_list = true,
                                     .initializers = {init::GlorotNormal{}, init::GlorotNormal{}, init::GlorotNormal{}, init::GlorotNormal{}},
                                     .enable_batch_normalization = true};
constexpr auto mlp_orig = fl::mlp<"MLP", orig_cfg, mode::train>(f::input<"x", 100>);
constexpr auto mlp_orig_y = mlp_orig.out();
// the type core's mlp_ref: z = h . W + b (W weight-normalised with the trainable scale when wn)
vec mdense(leaves& L, const vec& h, std::size_t rows, std::size_t in, std::size_t out, const std::string& s, bool wn) {
    return flat_ref::dense(L, h, rows, in, out, s, wn ? flat_ref::norm::trainable : flat_ref::norm::none);
}
template <class F>
vec map(vec v, F fn) {
    for (double& e : v) e = fn(e);
    return v;
}


} // namespace

// ================================================================================================
// test_layers_basic.cpp
// ================================================================================================

TEST_CASE("add_bias: bias of the whole per-example shape, its name, init and penalty") {
    static_assert(ab.shape() == make_dims<3, 5>() && ab_y.batched());
    using P = f::program<float, ab_y>;
    CHECK(flat_port::param_names<P>() == std::vector<std::string>{"ab/bias"});
    CHECK(P::tab.nodes[P::param_ids[0]].shape == make_dims<3, 5>());
    REQUIRE(ab.n_inits == 1);
    CHECK(flat_port::var_names(ab) == std::vector<std::string>{"ab/bias"});
    CHECK(flat_port::var_shapes(ab)[0] == make_dims<3, 5>());
    CHECK(ab.inits[0].spec.w == init::spec::which::zeros);  // initializer None -> Zeros
    check_forward<ab_y>(B, [](leaves& L, std::size_t b) {
        vec want;
        for (std::size_t e = 0; e < b; ++e)
            for (std::size_t i = 0; i < 15; ++i) want.push_back(get(L, "x")[e * 15 + i] + get(L, "ab/bias")[i]);
        return want;
    });
    check_derivatives<ab_y>(B);
    // Keras L2: l2 * sum w^2 (no 1/2), and its gradient
    static_assert(!ab_pen.batched() && ab_pen.shape().rank == 0);
    double pen = 0;
    for (std::size_t i = 0; i < 15; ++i) pen += 0.5 * leaf_value("ab/bias", i) * leaf_value("ab/bias", i);
    leaves L;
    CHECK(flat_port::run<f::program<double, ab_pen>>(L, 1)[0][0] == doctest::Approx(pen).epsilon(1e-12));
    check_derivatives<ab_pen>(1);
    // no regularizer: no penalty term (the constant 0)
    static_assert(!ab_none.has_penalty());
}

TEST_CASE("add_bias: the original (100, 10) test, a zero bias is the identity; other ranks") {
    // rank 2 in the source's terms: (B, 10), B = 100, initializer Zeros -> y == x exactly
    static_assert(ab10.shape() == make_dims<10>());
    std::vector<float> xs(100 * 10);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(leaf_value("u", i));
    CHECK(run_initialized<float, ab10, ab10_y>(xs, 100) == xs);
    // rank 3 per example, with a configured initializer reaching the inits
    using P3 = f::program<double, ab3_y>;
    CHECK(flat_port::param_names<P3>() == std::vector<std::string>{"s/ab/bias"});
    CHECK(P3::tab.nodes[P3::param_ids[0]].shape == make_dims<2, 3, 4>());
    CHECK(ab3.inits[0].spec.w == init::spec::which::constant);
    check_forward<ab3_y>(B, [](leaves& L, std::size_t b) {
        vec want;
        for (std::size_t i = 0; i < b * 24; ++i) want.push_back(get(L, "x")[i] + get(L, "s/ab/bias")[i % 24]);
        return want;
    });
    check_derivatives<ab3_y>(B);
    vec x3(2 * 24), y3(x3.size());
    for (std::size_t i = 0; i < x3.size(); ++i) y3[i] = (x3[i] = leaf_value("v", i)) + 0.25;
    CHECK(run_initialized<double, ab3, ab3_y>(x3, 2) == y3);
}

TEST_CASE("add_bias: channels_first is accepted where it equals channels_last") {
    // all per-example axes equal: the source's reshaped bias keeps the flat order, the same model
    CHECK(flat_port::same_table(f::program<double, ab_cf44_y>::tab, f::program<double, ab_cl44_y>::tab));
    CHECK(flat_port::same_table(f::program<double, ab_cf333_y>::tab, f::program<double, ab_cl333_y>::tab));
    // (3, 4) with channels_first does not compile (see ctrec/layers/add_bias.hpp)
    check_forward<ab_cf44_y>(B, [](leaves& L, std::size_t b) {
        vec want;
        for (std::size_t i = 0; i < b * 16; ++i) want.push_back(get(L, "x")[i] + get(L, "ab/bias")[i % 16]);
        return want;
    });
}

TEST_CASE("layer_norm: last axis only, epsilon 1e-6, beta then gamma, regularizer on both") {
    static_assert(ln.shape() == make_dims<2, 6>());
    check_forward<ln_y>(B, [](leaves& L, std::size_t) { return layer_norm_ref(L, "ln", 6); });
    check_derivatives<ln_y>(B);
    // variables: beta (D) zeros, then gamma (D) from the initializer, in creation order
    REQUIRE(ln.n_inits == 2);
    CHECK(flat_port::var_names(ln) == std::vector<std::string>{"ln/beta", "ln/gamma"});
    CHECK(ln.inits[0].spec.w == init::spec::which::zeros);
    CHECK(ln.inits[1].spec.w == init::spec::which::he_uniform);
    CHECK(flat_port::var_shapes(ln) == std::vector<ctrec::dims>{make_dims<6>(), make_dims<6>()});
    using P = f::program<float, ln_y>;
    CHECK(P::parameters::count == 2);
    CHECK(P::parameters::sizes[0] == 6);
    CHECK(P::parameters::sizes[1] == 6);
    CHECK(P::parameters::position("ln/beta") < 2);
    CHECK(P::parameters::position("ln/gamma") < 2);
    // Keras L1 on both: 0.1 * (sum |beta| + sum |gamma|), and its gradient
    double pen = 0;
    for (std::size_t i = 0; i < 6; ++i) pen += 0.1 * (std::abs(leaf_value("ln/beta", i)) + std::abs(leaf_value("ln/gamma", i)));
    leaves L;
    CHECK(flat_port::run<f::program<double, ln_pen>>(L, 1)[0][0] == doctest::Approx(pen).epsilon(1e-12));
    check_derivatives<ln_pen>(1);
}

TEST_CASE("layer_norm: rank 1 and rank 3 per example; default gamma is ones; no regularizer, no penalty") {
    SUBCASE("(B, D)") {
        check_forward<ln1_y>(B, [](leaves& L, std::size_t) { return layer_norm_ref(L, "n", 7); });
        check_derivatives<ln1_y>(B);
        CHECK(ln1.inits[1].spec.w == init::spec::which::ones);
        CHECK_FALSE(ln1.has_penalty());
    }
    SUBCASE("(B, 2, 3, 5): rows of the last axis, nothing mixed across the other axes") {
        using P = f::program<double, ln3_y>;
        CHECK(P::tab.nodes[P::param_ids[0]].shape == make_dims<5>());
        check_forward<ln3_y>(B, [](leaves& L, std::size_t) { return layer_norm_ref(L, "a/ln", 5); });
        check_derivatives<ln3_y>(B);
        double pen = 0;
        for (std::string v : {"a/ln/beta", "a/ln/gamma"})
            for (std::size_t i = 0; i < 5; ++i) pen += 0.01 * std::abs(leaf_value(v, i)) + 0.02 * leaf_value(v, i) * leaf_value(v, i);
        leaves L;
        CHECK(flat_port::run<f::program<double, ln3_pen>>(L, 1)[0][0] == doctest::Approx(pen).epsilon(1e-12));
    }
}

TEST_CASE("layer_norm: the original test, all-ones (100, 100) input gives exactly beta = 0") {
    // every row has mu = 1, x - mu = 0 and s2 = 0, so y = 0 * rsqrt(1e-6) * gamma + 0 = 0 exactly
    const std::vector<float> ones(100 * 100, 1.f);
    const auto y = run_initialized<float, ln100, ln100_y>(ones, 100, 3);
    CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 0.f; }));
    const std::vector<double> ones64(100 * 100, 1.0);
    const auto y64 = run_initialized<double, ln100, ln100_y>(ones64, 100, 3);
    CHECK(std::all_of(y64.begin(), y64.end(), [](double v) { return v == 0.0; }));
    // and a constant row with gamma != 1 and beta != 0 gives beta: no division blow-up
    check_forward<ln100_y>(
        B,
        [](leaves& L, std::size_t b) {
            vec want;
            for (std::size_t i = 0; i < b * 100; ++i) want.push_back(get(L, "LayerNorm/beta")[i % 100]);
            return want;
        },
        [](leaves& L, std::size_t b) { L["x"] = vec(b * 100, -0.5); });
}

TEST_CASE("pooling: the original test, five (100, 10) inputs; rank-2 inputs; one input is returned unchanged") {
    static_assert(sum5_y.shape() == make_dims<10>() && avg5_y.shape() == make_dims<10>() && max5_y.shape() == make_dims<10>());
    static_assert(sum5_y.batched() && avg5_y.batched() && max5_y.batched());
    auto five = [](int which) {
        return [=](leaves& L, std::size_t b) {
            vec w;
            for (std::size_t i = 0; i < b * 10; ++i) {
                double s = 0, m = -1e300;
                for (const char* n : {"x0", "x1", "x2", "x3", "x4"}) s += get(L, n)[i], m = std::max(m, get(L, n)[i]);
                w.push_back(which == 0 ? s : which == 1 ? s / 5 : m);
            }
            return w;
        };
    };
    check_forward<sum5_y>(100, five(0));
    check_forward<avg5_y>(100, five(1));
    check_forward<max5_y>(100, five(2));
    // (B, 2, 3) inputs: the output keeps the shape, max is elementwise
    static_assert(max2_y.shape() == make_dims<2, 3>() && avg2_y.shape() == make_dims<2, 3>());
    check_forward<max2_y>(B, [](leaves& L, std::size_t b) {
        vec w;
        for (std::size_t i = 0; i < b * 6; ++i) w.push_back(std::max(get(L, "p")[i], get(L, "q")[i]));
        return w;
    });
    check_forward<avg2_y>(B, [](leaves& L, std::size_t b) {
        vec w;
        for (std::size_t i = 0; i < b * 6; ++i) w.push_back((get(L, "p")[i] + get(L, "q")[i]) / 2);
        return w;
    });
    check_derivatives<max2_y>(B);
    // M = 1: the input itself, for all three (Avg does not divide by 1)
    static_assert(fl::sum_pooling({p0}).id == p0.id && fl::avg_pooling({p0}).id == p0.id && fl::max_pooling({pp}).id == pp.id);
    static_assert(fl::avg_pooling({p0}).g.n == p0.g.n && fl::max_pooling({pp}).g.n == pp.g.n);
}

TEST_CASE("merge: one (N, K) tensor with stack, concat and none; keep_list") {
    // the values are test_flat_crossing_2.cpp's; here the derivatives of concat and of none's rows
    check_forward<merge_nk_y>(B, [](leaves& L, std::size_t b) {
        vec y;
        const vec& x = get(L, "x");
        for (std::size_t e = 0; e < b; ++e) {
            y.insert(y.end(), x.begin() + e * 12, x.begin() + (e + 1) * 12);      // concat: row-major
            y.insert(y.end(), x.begin() + e * 12 + 4, x.begin() + (e + 1) * 12);  // rows 1 and 2
        }
        return y;
    });
    check_derivatives<merge_nk_y>(B);
}

TEST_CASE("merge: one (W) tensor, with and without num_feature") {
    static_assert(merge_w_structure());  // every case's structure (see merge_w_structure)
    // stack F = 2: (2, 3) holding the same row-major values; none F = 3: part 2 = w[4, 6)
    check_forward<merge_w_y>(B, [](leaves& L, std::size_t b) {
        vec y;
        const vec& w = get(L, "w");
        for (std::size_t e = 0; e < b; ++e) {
            y.insert(y.end(), w.begin() + e * 6, w.begin() + (e + 1) * 6);
            y.insert(y.end(), w.begin() + e * 6 + 4, w.begin() + (e + 1) * 6);
        }
        return y;
    });
}

TEST_CASE("merge: lists of two or more tensors") {
    static_assert(merge_list_structure());  // none is the list itself; keep_list forms
    // stack along a new axis 0 ((B, n, K) in the spec), concat along axis 0 ((B, n*K))
    static_assert(ml_st.shape() == make_dims<2, 4>() && ml_co.shape() == make_dims<8>());
    auto uv = [](leaves& L, std::size_t b) {
        vec y;
        for (std::size_t e = 0; e < b; ++e)
            for (const char* n : {"u", "v"})
                for (std::size_t k = 0; k < 4; ++k) y.push_back(get(L, n)[e * 4 + k]);
        return y;
    };
    check_forward<ml_st_y>(B, uv);
    check_forward<ml_co_y>(B, uv);
    check_derivatives<ml_st_y>(B);
    // three (2, 3) parts: stack -> (3, 2, 3); concat -> (6, 3), part i at rows [2i, 2i + 2)
    static_assert(ml_st3.shape() == make_dims<3, 2, 3>() && ml_co3.shape() == make_dims<6, 3>());
    auto pqr = [](leaves& L, std::size_t b) {
        vec y;
        for (std::size_t e = 0; e < b; ++e)
            for (const char* n : {"p", "q", "r"})
                for (std::size_t i = 0; i < 6; ++i) y.push_back(get(L, n)[e * 6 + i]);
        return y;
    };
    check_forward<ml_st3_y>(B, pqr);
    check_forward<ml_co3_y>(B, pqr);
}

// ================================================================================================
// test_grad_norm.cpp
// ================================================================================================

TEST_CASE("grad_norm: values against hand-written task gradients, and where the gradients go") {
    // (defaults and relative differences: test_flat_attention_3.cpp)
    SUBCASE("loss_pow 3 (odd: the absolute value matters)") {
        leaves L;
        test::fill<f::program<double, gn3_g>>(L, GB);
        test::fill<f::program<double, gn3_w>>(L, GB);
        const gn_ref want = gn_reference(gn_pow3, L);
        double signed_sum = 0, avg = 0;  // the docstring's formula without |.|
        for (std::size_t k = 0; k < 3; ++k) avg += want.gnorm[k] * want.w[k] / 3;
        for (std::size_t k = 0; k < 3; ++k) signed_sum += std::pow(want.gnorm[k] * want.w[k] - avg, 3.0);
        CHECK(std::abs(signed_sum - want.gnorm_loss) > 1e-3 * std::abs(want.gnorm_loss));
        flat_port::check_value<f::program<double, gn3_g>>(L, GB, {want.gnorm_loss}, 1e-12);
        flat_port::check_value<f::program<double, gn3_w>>(L, GB, {want.weighted_loss}, 1e-12);
        check_close(flat_port::run<f::program<float, gn3_g>>(L, GB)[0], {want.gnorm_loss}, 2e-5);
        check_close(flat_port::run<f::program<float, gn3_w>>(L, GB)[0], {want.weighted_loss}, 2e-5);
        // gnorm_loss: data enter only through the stop_gradient'ed norms
        check_fd<gn3_g>(GB, {"x", "t", "W", "V"});
        // weighted_loss: the task weights are constants
        check_fd<gn3_w>(GB, {"gn/grad_norm_weights"});
    }
}

TEST_CASE("grad_norm with several shared inputs: the norm of the concatenated gradients") {
    // (float64 values and gradients: test_flat_attention_3.cpp; here float32)
    leaves L;
    test::fill<f::program<double, gn_two_g>>(L, GB);
    test::fill<f::program<double, gn_two_w>>(L, GB);
    const vec &x = get(L, "x"), &W = get(L, "W"), &W2 = get(L, "W2"), &t = get(L, "t"), &th = get(L, "gn/grad_norm_weights");
    double G2[2] = {0, 0}, Ls[2] = {0, 0};
    for (std::size_t r = 0; r < GB; ++r) {
        for (std::size_t j = 0; j < H; ++j) {
            double av = 0;
            for (std::size_t i = 0; i < In; ++i) av += x[r * In + i] * W[i * H + j];
            const double tv = t[r * H + j];
            G2[0] += 4 * av * av / (GB * GB), G2[1] += tv * tv / (GB * GB);
            Ls[0] += av * av / GB, Ls[1] += av * tv / GB;
        }
        for (std::size_t j = 0; j < 2; ++j) {
            double z = 0;
            for (std::size_t i = 0; i < In; ++i) z += x[r * In + i] * W2[i * 2 + j];
            const double bv = std::tanh(z);
            G2[0] += 1.0 / (GB * GB), G2[1] += 4 * bv * bv / (GB * GB);
            Ls[0] += bv / GB, Ls[1] += bv * bv / GB;
        }
    }
    const double w0 = 1 / (1 + std::exp(th[1] - th[0])), w1 = 1 - w0;
    const double wg0 = std::sqrt(G2[0]) * w0, wg1 = std::sqrt(G2[1]) * w1, avg = (wg0 + wg1) / 2;
    check_close(flat_port::run<f::program<float, gn_two_g>>(L, GB)[0], {(wg0 - avg) * (wg0 - avg) + (wg1 - avg) * (wg1 - avg)}, 2e-5);
    check_close(flat_port::run<f::program<float, gn_two_w>>(L, GB)[0], {Ls[0] * w0 + Ls[1] * w1}, 2e-5);
}

TEST_CASE("grad_norm over a max(z, 0) tower: gnorm_loss sends exactly zero gradient into the model") {
    using G = f::grad_program<double, gn_max_g>;
    leaves L;
    const auto outs = flat_port::run<G>(L, GB);
    for (double v : outs[G::grad<"W">]) CHECK(v == 0.0);
    for (double v : outs[G::grad<"V">]) CHECK(v == 0.0);
    for (double v : outs[G::grad<"x">]) CHECK(v == 0.0);
    double norm = 0;
    for (double v : outs[G::grad<"gn/grad_norm_weights">]) norm += std::abs(v);
    CHECK(norm > 1e-6);
    // the tower is active somewhere and inactive somewhere (both branches of maximum are taken)
    std::size_t pos = 0;
    const vec &x = get(L, "x"), &W = get(L, "W");
    for (std::size_t b = 0; b < GB; ++b)
        for (std::size_t j = 0; j < H; ++j) {
            double z = 0;
            for (std::size_t i = 0; i < In; ++i) z += x[b * In + i] * W[i * H + j];
            pos += z > 0;
        }
    CHECK(pos > 0);
    CHECK(pos < GB * H);
}

// ================================================================================================
// test_mlp.cpp
// ================================================================================================

TEST_CASE("mlp defaults: weight norm with learnable scale, relu on hidden layers, none on the last") {
    static_assert(mlp_def.shape() == make_dims<2>());
    check_forward<mlp_def_y>(MB, [](leaves& L, std::size_t b) {
        vec h = map(mdense(L, get(L, "x"), b, D0, 6, "mlp/dense_0", true), relu);
        h = map(mdense(L, h, b, 6, 5, "mlp/dense_1", true), relu);
        return mdense(L, h, b, 5, 2, "mlp/dense_2", true);  // no activation on the last layer
    });
    check_derivatives<mlp_def_y>(MB);
    // weight norm folded: the effective kernels are derived parameters
    static_assert(f::program<float, mlp_def_y>::pl.derived_steps >= 3);
}

TEST_CASE("mlp with one layer and a single activation is one linear Dense; plain kernels without weight norm") {
    check_forward<mlp_one_y>(MB, [](leaves& L, std::size_t b) { return mdense(L, get(L, "x"), b, D0, 3, "m/dense_0", false); });
    CHECK(flat_port::sorted_param_names<f::program<float, mlp_one_y>>() == std::vector<std::string>{"m/dense_0/bias", "m/dense_0/kernel"});
    CHECK(flat_port::var_names(mlp_one) == std::vector<std::string>{"m/dense_0/kernel", "m/dense_0/bias"});
}

TEST_CASE("mlp activation list: relu, tanh, PReLU (own alpha) and none; sigmoid2 from Monolith's registry") {
    check_forward<mlp_list_y>(MB, [](leaves& L, std::size_t b) {
        vec h = map(mdense(L, get(L, "x"), b, D0, 5, "mlp/dense_0", false), relu);
        h = map(mdense(L, h, b, 5, 4, "mlp/dense_1", false), [](double z) { return std::tanh(z); });
        h = mdense(L, h, b, 4, 3, "mlp/dense_2", false);
        const vec& alpha = get(L, "mlp/p_re_lu/alpha");
        for (std::size_t i = 0; i < h.size(); ++i) h[i] = h[i] > 0 ? h[i] : alpha[i % 3] * h[i];
        return mdense(L, h, b, 3, 2, "mlp/dense_3", false);
    });
    check_derivatives<mlp_list_y>(MB);  // includes d/d alpha
    // PReLU's alpha starts at zero (PReLU starts as ReLU)
    using M = f::program<double, mlp_list_y>;
    M::parameters p;
    for (double& v : p.get<"mlp/p_re_lu/alpha">()) v = 1.0;
    fl::initialize<mlp_list>(p, 3);
    for (double a : p.get<"mlp/p_re_lu/alpha">()) CHECK(a == 0.0);
    // a single sigmoid2 value: hidden layers only
    check_forward<mlp_s2_y>(MB, [](leaves& L, std::size_t b) {
        const vec t = map(mdense(L, get(L, "x"), b, D0, 3, "s/dense_0", false), [](double z) { return 2 / (1 + std::exp(-z)); });
        return mdense(L, t, b, 3, 2, "s/dense_1", false);
    });
}

TEST_CASE("mlp penalties: kernel and bias regularizers summed over every Dense, none on BN") {
    leaves L;
    const double got = flat_port::run<f::program<double, mlp_pen_p>>(L, 1)[0][0];
    double want = 0;
    for (auto [k, in, n] : {std::tuple<std::string, std::size_t, std::size_t>{"mlp/dense_0", D0, 3}, {"mlp/dense_1", 3, 2}}) {
        for (std::size_t i = 0; i < in * n; ++i) want += 0.01 * leaf_value(k + "/kernel", i) * leaf_value(k + "/kernel", i);
        for (std::size_t i = 0; i < n; ++i) want += 0.1 * std::abs(leaf_value(k + "/bias", i));
    }
    CHECK(got == doctest::Approx(want).epsilon(1e-12));
    for (const auto& n : flat_port::param_names<f::program<double, mlp_pen_p>>()) CHECK(n.find("BatchNorm") == std::string::npos);
}

// The type core's check_ad of the same training loss. The loss is linear in the last Dense's
// output, so that output's cotangent is the example-independent (unbatched) 1/B, which reaches
// the unbatched bias through a batched add: the regression test of reverse mode's sum over the
// batch there (ad/autodiff.hpp, `contribution`).
TEST_CASE("mlp penalties: the training loss with the penalty, differentiated as a whole") {
    check_derivatives<mlp_pen_loss>(MB);
}

TEST_CASE("mlp initialisation: the weight-normalised kernels equal the initial kernels") {
    auto out = [&]<const auto& R, const auto& Y>() {
        using M = f::program<double, Y>;
        typename M::parameters p;
        fl::initialize<R>(p, 17);
        typename M::workspace ws;
        vec xs(MB * D0), y(MB * 3);
        for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
        typename M::io io;
        io.template input<"x">(xs.data()).template output<0>(y.data());
        M::run(p, ws, MB, io);
        return y;
    };
    const vec a = out.operator()<mlp_wn, mlp_wn_y>(), b = out.operator()<mlp_plain, mlp_plain_y>();
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-12));
    // HeUniform bound on layer 0: sqrt(6 / fan_in)
    using M = f::program<double, mlp_plain_y>;
    M::parameters p;
    fl::initialize<mlp_plain>(p, 17);
    for (double v : p.get<"mlp/dense_0/kernel">()) CHECK(std::abs(v) <= std::sqrt(6.0 / D0));
    for (double v : p.get<"mlp/dense_0/bias">()) CHECK(v == 0.0);
}

TEST_CASE("the original test's stack: [100, 50, 10, 1], BN, relu / tanh / PReLU / none") {
    static_assert(mlp_orig.shape() == make_dims<1>());
    using M = f::program<float, mlp_orig_y>;
    // 11 layers: 1 input BN + 4 Dense + 3 hidden BN + 3 activations (one of them owns weights)
    std::size_t dense = 0, bn = 0, prelu = 0;
    for (std::string_view n : M::parameters::names) {
        dense += n.ends_with("/kernel");
        bn += n.ends_with("/gamma");
        prelu += n.ends_with("p_re_lu/alpha");
    }
    CHECK(dense == 4);
    CHECK(bn == 1 + 3);
    CHECK(prelu == 1);
    // forward on ones (100, 100) gives a (100, 1) output
    M::parameters p;
    fl::initialize<mlp_orig>(p, 1);
    M::workspace ws;
    std::vector<float> ones(100 * 100, 1.f), y(100, NAN);
    M::io io;
    io.input<"x">(ones.data()).output<0>(y.data());
    M::run(p, ws, 100, io);
    for (float v : y) CHECK(std::isfinite(v));
}
