// Dense, BatchNorm, the MLP with BatchNorm and the regularizers' expression forms on the
// core: the checks of the type-core tests test_dense.cpp, test_batch_norm.cpp,
// test_mlp_bn.cpp and test_initializers.cpp ("DSL forms") that test_flat_layers.cpp does not
// already make, with the same references (spec layers-core-and-cross.md 2, 1.5, 3.4, 1.4),
// tolerances and error formulas (flat_ref_dense_dcn.hpp), on the CPU and reference backends.
// (test_mlp.cpp's cases: test_flat_basic.cpp.) Each TEST_CASE name is the type-core case's,
// prefixed with "flat ".
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/initializers.hpp"
#include "ctrec/layers/partitioner.hpp"
#include "ctrec/layers/regularizers.hpp"
#include "layer_reference.hpp"
#include "ref_dense_dcn.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
namespace init = ctrec::init;
namespace reg = ctrec::reg;
using ctrec::dims;
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

// ================================ Dense (test_dense.cpp) ========================================
constexpr std::size_t B = 4, Din = 5, U = 3;
constexpr auto x = f::input<"x", Din>;

constexpr auto d_relu = fl::dense<"d", {.units = U, .activation = cl::act_relu}>(x);
constexpr auto d_relu_y = d_relu.out();
constexpr auto d_sig = fl::dense<"d", {.units = U, .activation = cl::keras_activation("sigmoid"), .use_bias = false}>(x);
constexpr auto d_sig_y = d_sig.out();
constexpr auto d_r3 = fl::dense<"d", {.units = U, .activation = cl::act_tanh}>(f::input<"x", 2, Din>);
constexpr auto d_r3_y = d_r3.out();
constexpr auto d_tr = fl::dense<"d", {.units = U, .activation = cl::act_relu, .allow_kernel_norm = true, .kernel_norm_trainable = true}>(x);
constexpr auto d_tr_y = d_tr.out();
constexpr auto d_fix = fl::dense<"d", {.units = U, .activation = cl::act_sigmoid, .allow_kernel_norm = true}>(x);
constexpr auto d_fix_y = d_fix.out();
constexpr auto d_fix_t = fl::dense<"d", {.units = U, .activation = cl::act_sigmoid, .allow_kernel_norm = true, .kernel_norm_trainable = true}>(x);
constexpr auto d_fix_t_y = d_fix_t.out();
constexpr auto d_cmp = fl::dense<"d", {.units = U, .activation = cl::act_sigmoid, .allow_kernel_norm = true, .monolith_compat = true}>(x);
constexpr auto d_cmp_y = d_cmp.out();
constexpr auto d_lin = fl::dense<"d", {.units = U, .activation = cl::act_linear, .allow_kernel_norm = true, .kernel_norm_trainable = true}>(x);
constexpr auto d_lin_y = d_lin.out();
constexpr auto d_pen = fl::dense<"d", {.units = U, .activation = cl::act_relu, .kernel_regularizer = reg::L2{0.05}, .bias_regularizer = reg::L1{0.2},
                                       .allow_kernel_norm = true, .kernel_norm_trainable = true}>(x);
constexpr auto d_pen_p = d_pen.penalty();
constexpr auto d_pen_loss = f::batch_mean(f::sum(d_pen.out())) + d_pen.penalty();
constexpr auto d_plain = fl::dense<"d", {.units = U}>(x);
// at initialisation (input (7), 6 units)
constexpr auto x7 = f::input<"x", 7>;
constexpr auto i_plain = fl::dense<"d", {.units = 6, .activation = cl::act_linear}>(x7);
constexpr auto i_plain_y = i_plain.out();
constexpr auto i_tr = fl::dense<"d", {.units = 6, .allow_kernel_norm = true, .kernel_norm_trainable = true}>(x7);
constexpr auto i_tr_y = i_tr.out();
constexpr auto i_fix = fl::dense<"d", {.units = 6, .allow_kernel_norm = true}>(x7);
constexpr auto i_fix_y = i_fix.out();
constexpr auto i_cmp = fl::dense<"d", {.units = 6, .allow_kernel_norm = true, .monolith_compat = true}>(x7);
constexpr auto i_cmp_y = i_cmp.out();
// the inactive-relu monitor
constexpr auto mon_doc = fl::dense<"d", {.units = U, .activation = cl::act_relu, .inactive_relu_monitor = true, .inactive_relu_monitor_decay = 0.25}>(x);
constexpr auto mon_doc_loss = f::batch_mean(f::sum(mon_doc.out()));
constexpr auto mon_src = fl::dense<"d", {.units = U, .activation = cl::act_relu, .inactive_relu_monitor = true, .inactive_relu_monitor_decay = 0.25,
                                         .monolith_compat = true}>(x);
constexpr auto mon_src_loss = f::batch_mean(f::sum(mon_src.out()));

// y[b, j] = act(x[b] . W[:, j] + bias[j]) over `rows` rows (the kernel as used: flat_ref::kernel)
template <class Act>
vec dense_ref(leaves& L, std::size_t rows, flat_ref::norm n, bool bias, Act act) {
    vec z = flat_ref::dense(L, get(L, "x"), rows, Din, U, "d", n, bias);
    for (double& v : z) v = act(v);
    return z;
}
double relu(double z) { return z > 0 ? z : 0; }
double sigm(double z) { return 1 / (1 + std::exp(-z)); }

// ================================ MLP with BatchNorm (test_mlp_bn.cpp) =========================
constexpr std::size_t MB = 5, D0 = 4;
constexpr auto xm = f::input<"x", D0>;
// with BatchNorm: placement, train / eval, a training step
constexpr cl::mlp_config<3> bn3_cfg{.output_dims = {5, 4, 2}, .use_weight_norm = false, .enable_batch_normalization = true};
constexpr auto mlp_bn_tr = fl::mlp<"mlp", bn3_cfg, mode::train>(xm);
constexpr auto mlp_bn_tr_y = mlp_bn_tr.out();
constexpr auto mlp_bn_tr_loss = f::batch_mean(f::sum(mlp_bn_tr_y));
constexpr auto mlp_bn_ev = fl::mlp<"mlp", bn3_cfg, mode::eval>(xm);
constexpr auto mlp_bn_ev_y = mlp_bn_ev.out();
constexpr cl::mlp_config<2> step_cfg{.output_dims = {3, 1}, .use_weight_norm = false, .enable_batch_normalization = true,
                                     .batch_normalization_momentum = 0.9};
constexpr auto step_tr = fl::mlp<"mlp", step_cfg, mode::train>(xm);
constexpr auto step_loss = f::batch_mean(f::sum(step_tr.out() * step_tr.out())) + step_tr.penalty();
constexpr auto step_ev = fl::mlp<"mlp", step_cfg, mode::eval>(xm);
constexpr auto step_ev_y = step_ev.out();

// the type core's mlp_ref: z = h . W + b (W weight-normalised with the trainable scale when wn)
vec mdense(leaves& L, const vec& h, std::size_t rows, std::size_t in, std::size_t out, const std::string& s, bool wn) {
    return flat_ref::dense(L, h, rows, in, out, s, wn ? flat_ref::norm::trainable : flat_ref::norm::none);
}
template <class F>
vec map(vec v, F fn) {
    for (double& e : v) e = fn(e);
    return v;
}
// Keras BN in training mode (batch statistics, eps 1e-3) or inference (moving statistics)
vec mbn(leaves& L, const vec& h, std::size_t rows, std::size_t d, const std::string& s, bool train) {
    return flat_ref::bn(L, h, rows, 1, d, s, train);
}
// moving variances |leaf value| + 0.1 (the type core's positive_variances)
void positive_variances(leaves& L, std::initializer_list<std::pair<const char*, std::size_t>> scopes) {
    for (auto [s, d] : scopes) {
        vec v(d);
        for (std::size_t j = 0; j < d; ++j) v[j] = std::abs(leaf_value(std::string(s) + "/moving_variance", j)) + 0.1;
        L[std::string(s) + "/moving_variance"] = v;
    }
}


// ================================ BatchNorm (test_batch_norm.cpp) ===============================
constexpr double kEps = 1e-3;
constexpr std::size_t D = 6;
constexpr auto xb = f::input<"x", D>;

// Leaf values: leaf_value, except the statistics, which must be valid (variance >= 0,
// stddev > 0); moving_stddev[0] is tiny so that max(moving_stddev^2 - eps, 0) clamps.
double bn_value(std::string_view name, std::size_t i) {
    const double v = leaf_value(name, i);
    if (name.ends_with("/moving_variance")) return 0.2 + std::abs(v);
    if (name.ends_with("/moving_stddev")) return i == 0 ? 1e-3 : 0.5 + std::abs(v);
    if (name.ends_with("/renorm_stddev")) return 0.3 + 0.6 * std::abs(v);
    if (name.ends_with("/renorm_mean")) return 0.5 * v;
    return v;
}
void bn_values(leaves& L, std::size_t) {
    for (const char* n : {"gamma", "beta", "moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev"}) {
        const std::string name = std::string("bn/") + n;
        vec v(D);
        for (std::size_t j = 0; j < D; ++j) v[j] = bn_value(name, j);
        L[name] = v;
    }
}

struct config_ref {
    bool train = true, renorm = false;
    double momentum = 0.99, renorm_momentum = 0.99;
    double rmax = INFINITY, rmin = 0, dmax = INFINITY;
};
struct bn_result {
    vec y, mu, var, xhat, r, d;
    std::map<std::string, vec> next;  // updated state, by leaf name
    std::size_t r_clipped = 0, d_clipped = 0;
};
// The naive reference of spec 1.5 (the type core's), per-example input (N, D) flattened.
bn_result bn_reference(leaves& L, std::size_t batch, std::size_t N, const config_ref& c) {
    const vec& xs = get(L, "x");
    auto X = [&](std::size_t b, std::size_t n, std::size_t j) { return xs[(b * N + n) * D + j]; };
    auto v = [&](const char* leaf, std::size_t j) { return get(L, std::string("bn/") + leaf)[j]; };
    bn_result o;
    o.mu.assign(D, 0.0), o.var.assign(D, 0.0), o.r.assign(D, 1.0), o.d.assign(D, 0.0);
    const double cnt = static_cast<double>(batch * N);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t j = 0; j < D; ++j) o.mu[j] += X(b, n, j) / cnt;
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t j = 0; j < D; ++j) o.var[j] += (X(b, n, j) - o.mu[j]) * (X(b, n, j) - o.mu[j]) / cnt;
    for (std::size_t j = 0; j < D && c.train && c.renorm; ++j) {
        const double s = std::sqrt(o.var[j] + kEps), rs = std::max(v("renorm_stddev", j), std::sqrt(kEps));
        const double r = s / rs, d = (o.mu[j] - v("renorm_mean", j)) / rs;
        o.r[j] = std::min(std::max(r, c.rmin), c.rmax);
        o.d[j] = std::min(std::max(d, -c.dmax), c.dmax);
        o.r_clipped += o.r[j] != r;
        o.d_clipped += o.d[j] != d;
    }
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t j = 0; j < D; ++j) {
                const double mean = c.train ? o.mu[j] : v("moving_mean", j);
                const double var = c.train ? o.var[j] : v("moving_variance", j);
                const double xh = (X(b, n, j) - mean) / std::sqrt(var + kEps);
                o.xhat.push_back(xh);
                o.y.push_back(xh * (o.r[j] * v("gamma", j)) + (o.d[j] * v("gamma", j) + v("beta", j)));
            }
    auto avg = [&](const char* leaf, double m, const vec& value) {
        auto& out = o.next[std::string("bn/") + leaf];
        for (std::size_t j = 0; j < D; ++j) out.push_back(v(leaf, j) - (v(leaf, j) - value[j]) * (1 - m));
    };
    vec s(D);
    for (std::size_t j = 0; j < D; ++j) s[j] = std::sqrt(o.var[j] + kEps);
    avg("moving_mean", c.momentum, o.mu);
    if (!c.renorm) {
        avg("moving_variance", c.momentum, o.var);
    } else {
        avg("renorm_mean", c.renorm_momentum, o.mu);
        avg("renorm_stddev", c.renorm_momentum, s);
        avg("moving_stddev", c.momentum, s);
        for (double sd : o.next["bn/moving_stddev"]) o.next["bn/moving_variance"].push_back(std::max(sd * sd - kEps, 0.0));
    }
    return o;
}

// train, momentum 0.9, and its two updates as extra roots
constexpr auto bn_tr = fl::batch_norm<"bn", mode::train, cl::batch_norm_config{.momentum = 0.9}>(xb);
constexpr auto bn_tr_y = bn_tr.out();
constexpr auto bn_tr_u0 = flat_port::update_value(bn_tr, 0);
constexpr auto bn_tr_u1 = flat_port::update_value(bn_tr, 1);
// closed-form gradients
constexpr auto bn_plain_y = fl::batch_norm<"bn", mode::train>(xb).out();
constexpr auto bn_3d_y = fl::batch_norm<"bn", mode::train>(f::input<"x", 3, D>).out();
constexpr auto bn_rn_y = fl::batch_norm<"bn", mode::train, cl::batch_norm_config{.renorm = true}>(xb).out();
constexpr auto bn_rnc_y = fl::batch_norm<"bn", mode::train, cl::batch_norm_config{.renorm = true, .rmax = 1.3, .rmin = 0.9, .dmax = 0.25}>(xb).out();
// rank 3, momentum 0.5
constexpr auto bn_r3 = fl::batch_norm<"bn", mode::train, cl::batch_norm_config{.momentum = 0.5}>(f::input<"x", 4, D>);
constexpr auto bn_r3_y = bn_r3.out();
constexpr auto bn_r3_u0 = flat_port::update_value(bn_r3, 0);
constexpr auto bn_r3_u1 = flat_port::update_value(bn_r3, 1);
// renorm: five updates, unclipped and clipped
constexpr auto bn_ru = fl::batch_norm<"bn", mode::train, cl::batch_norm_config{.renorm = true, .renorm_momentum = 0.7}>(xb);
constexpr auto bn_ru_y = bn_ru.out();
constexpr auto bn_ru_u0 = flat_port::update_value(bn_ru, 0);
constexpr auto bn_ru_u1 = flat_port::update_value(bn_ru, 1);
constexpr auto bn_ru_u2 = flat_port::update_value(bn_ru, 2);
constexpr auto bn_ru_u3 = flat_port::update_value(bn_ru, 3);
constexpr auto bn_ru_u4 = flat_port::update_value(bn_ru, 4);
constexpr auto bn_rc = fl::batch_norm<"bn", mode::train, cl::batch_norm_config{.renorm = true, .rmax = 1.3, .rmin = 0.9, .dmax = 0.25}>(xb);
constexpr auto bn_rc_y = bn_rc.out();
constexpr auto bn_rc_u0 = flat_port::update_value(bn_rc, 0);
constexpr auto bn_rc_u1 = flat_port::update_value(bn_rc, 1);
constexpr auto bn_rc_u2 = flat_port::update_value(bn_rc, 2);
constexpr auto bn_rc_u3 = flat_port::update_value(bn_rc, 3);
constexpr auto bn_rc_u4 = flat_port::update_value(bn_rc, 4);
// derivatives
constexpr auto bn_23_y = fl::batch_norm<"bn", mode::train>(f::input<"x", 2, 3>).out();
constexpr auto bn_sat_y = fl::batch_norm<"bn", mode::train, cl::batch_norm_config{.renorm = true, .rmax = 0.4, .dmax = 1.0}>(xb).out();
constexpr auto bn_ev = fl::batch_norm<"bn", mode::eval>(xb);
constexpr auto bn_ev_y = bn_ev.out();
constexpr auto bn_pr = fl::batch_norm<"bn", mode::predict, cl::batch_norm_config{.momentum = 0.5, .renorm = true, .rmax = 1.0}>(xb);
constexpr auto bn_pr_y = bn_pr.out();
constexpr auto bn_pr3_y = fl::batch_norm<"bn", mode::predict, cl::batch_norm_config{.renorm = true}>(f::input<"x", 2, D>).out();
constexpr auto bn_ev3_y = fl::batch_norm<"bn", mode::eval>(f::input<"x", 3, D>).out();
// variables
constexpr auto bn_names_plain = fl::batch_norm<"mlp/BatchNorm/in", mode::train>(xb);
constexpr auto bn_names_rn = fl::batch_norm<"mlp/BatchNorm/in", mode::eval, cl::batch_norm_config{.renorm = true}>(xb);
constexpr auto bn_fresh = fl::batch_norm<"bn", mode::eval, cl::batch_norm_config{.renorm = true}>(xb);
constexpr auto bn_fresh_y = bn_fresh.out();
// a training step
constexpr auto bn_step = fl::batch_norm<"bn", mode::train, cl::batch_norm_config{.momentum = 0.8, .renorm = true}>(xb);
constexpr auto bn_step_loss = f::batch_mean(f::sum(bn_step.out() * f::input<"t", D>));

// The updates of result r as roots 1.. of P (P = program<double, y, u0, u1, ...>), against want,
// in the result's order of updates.
template <class P>
void check_updates(const fl::result& r, std::size_t batch, const bn_result& want, std::vector<std::string> order) {
    leaves L;
    bn_values(L, batch);
    const auto outs = flat_port::run<P>(L, batch);
    REQUIRE(r.n_updates == order.size());
    REQUIRE(P::n_outputs == 1 + order.size());
    for (std::size_t u = 0; u < order.size(); ++u) {
        INFO("update " << u << " of " << order[u] << ", batch " << batch);
        CHECK(r.g.name_of(r.updates[u].var) == order[u]);
        CHECK(!P::tab.nodes[P::tab.roots[1 + u]].batched);  // state updates are unbatched
        check_close(outs[1 + u], want.next.at(order[u]), 1e-12);
    }
}

// ================================ regularizers as expressions (test_initializers.cpp) ==========
constexpr fl::result penalty_of(cl::regularizer r) {
    fl::result m;
    fl::add_penalty(m, r, f::make_param(m.g, "w", make_dims<3, 4>()));
    return m;
}
constexpr auto pen_l2 = penalty_of(reg::L2{});
constexpr auto pen_l2_p = pen_l2.penalty();
constexpr auto pen_l1 = penalty_of(reg::L1{0.3});
constexpr auto pen_l1_p = pen_l1.penalty();
constexpr auto pen_l12 = penalty_of(cl::regularizer(0.3, 0.02));
constexpr auto pen_l12_p = pen_l12.penalty();
constexpr auto pen_0_l2 = penalty_of(cl::regularizer(0.0, 0.01));
constexpr auto pen_0_l2_p = pen_0_l2.penalty();
constexpr auto x_pen_l12 = f::input<"x", 1> * pen_l12.penalty();
constexpr auto x_pen_l2_half = f::input<"x", 1> * penalty_of(reg::L2{0.5}).penalty();

} // namespace

// ================================================================================================
// test_dense.cpp
// ================================================================================================

TEST_CASE("dense: y = act(x W + b) in float64 and float32, gradients by finite differences") {
    using flat_ref::norm;
    SUBCASE("relu with bias") {
        check_forward<d_relu_y>(B, [](leaves& L, std::size_t b) { return dense_ref(L, b, norm::none, true, relu); });
        check_derivatives<d_relu_y>(B);
        CHECK(flat_port::param_names<f::program<float, d_relu_y>>() == std::vector<std::string>{"d/kernel", "d/bias"});
        // the core's form of "bias and activation in the GEMM epilogue": x W writes the
        // buffer of the one elementwise step that adds the bias and applies relu
        using P = f::program<float, d_relu_y>;
        std::size_t fused = 0;
        for (std::size_t i = 0; i < P::size; ++i) fused += P::pl.epilogue[i];
        CHECK(fused == 1);
    }
    SUBCASE("sigmoid without bias") {
        check_forward<d_sig_y>(B, [](leaves& L, std::size_t b) { return dense_ref(L, b, norm::none, false, sigm); });
        check_derivatives<d_sig_y>(B);
        CHECK(flat_port::param_names<f::program<float, d_sig_y>>() == std::vector<std::string>{"d/kernel"});
    }
    SUBCASE("a rank-3 input: the same Dense at every position") {
        static_assert(d_r3.shape() == make_dims<2, U>());
        check_forward<d_r3_y>(B, [](leaves& L, std::size_t b) {
            vec z = flat_ref::dense(L, get(L, "x"), b * 2, Din, U, "d", norm::none);
            for (double& v : z) v = std::tanh(v);
            return z;
        });
        check_derivatives<d_r3_y>(B);
    }
}

TEST_CASE("dense kernel norm: trainable, fixed (documented default) and monolith_compat") {
    using flat_ref::norm;
    SUBCASE("trainable: W = l2_normalize(V, axis 0) * g") {
        check_forward<d_tr_y>(B, [](leaves& L, std::size_t b) { return dense_ref(L, b, norm::trainable, true, relu); });
        check_derivatives<d_tr_y>(B);
        CHECK(flat_port::sorted_param_names<f::program<float, d_tr_y>>() ==
              std::vector<std::string>{"d/bias", "d/kernel", "d/trainable_kernel_norm"});
        CHECK(flat_port::var_names(d_tr) == std::vector<std::string>{"d/kernel", "d/trainable_kernel_norm", "d/bias"});
    }
    SUBCASE("fixed norm (default): W = l2_normalize(V) * g0, and g0 gets no gradient") {
        check_forward<d_fix_y>(B, [](leaves& L, std::size_t b) { return dense_ref(L, b, norm::fixed, true, sigm); });
        // g0 is a constant: a symbolic zero gradient, held fixed by the difference check
        check_derivatives<d_fix_y>(B, {}, {"d/kernel_norm"});
        using G = f::grad_program<double, d_fix_y>;
        using GT = f::grad_program<double, d_fix_t_y>;
        CHECK(flat_port::gradient_is_symbolic_zero<G>("d/kernel_norm"));
        // every other gradient equals the trainable form's at the same values
        auto grads = [&](auto prog, const char* normname) {
            using P = decltype(prog);
            leaves L;
            vec xs(B * Din), ct(B * U), k(Din * U), bias(U), g(U);
            for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
            for (std::size_t i = 0; i < ct.size(); ++i) ct[i] = leaf_value("ct", i);
            for (std::size_t i = 0; i < k.size(); ++i) k[i] = leaf_value("d/kernel", i);
            for (std::size_t j = 0; j < U; ++j) bias[j] = leaf_value("d/bias", j), g[j] = 0.5 + leaf_value("g", j);
            L["x"] = xs, L["cotangent"] = ct, L["d/kernel"] = k, L["d/bias"] = bias, L[normname] = g;
            const auto o = flat_port::run<P>(L, B);
            vec all = o[0];
            for (std::size_t idx : {P::template grad<"x">, P::template grad<"d/kernel">, P::template grad<"d/bias">})
                all.insert(all.end(), o[idx].begin(), o[idx].end());
            return all;
        };
        const vec a = grads(G{}, "d/kernel_norm"), b = grads(GT{}, "d/trainable_kernel_norm");
        REQUIRE(a.size() == b.size());
        for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-13));
    }
    SUBCASE("monolith_compat, not trainable: W = l2_normalize(V), unit columns, no extra variable") {
        check_forward<d_cmp_y>(B, [](leaves& L, std::size_t b) { return dense_ref(L, b, norm::compat, true, sigm); });
        check_derivatives<d_cmp_y>(B);
        CHECK(flat_port::sorted_param_names<f::program<float, d_cmp_y>>() == std::vector<std::string>{"d/bias", "d/kernel"});
        CHECK(flat_port::var_names(d_cmp) == std::vector<std::string>{"d/kernel", "d/bias"});
    }
}

TEST_CASE("dense kernel norm at initialisation: W equals the initial kernel (trainable and fixed)") {
    auto out = [&]<const auto& R, const auto& Y>() {
        using M = f::program<double, Y>;
        typename M::parameters p;
        fl::initialize<R>(p, 11);
        p.prepare();
        typename M::workspace ws;
        vec xs(2 * 7), y(2 * 6);
        for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
        typename M::io io;
        io.template input<"x">(xs.data()).template output<0>(y.data());
        M::run(std::as_const(p), ws, 2, io);
        return y;
    };
    const vec y0 = out.operator()<i_plain, i_plain_y>(), y1 = out.operator()<i_tr, i_tr_y>();
    const vec y2 = out.operator()<i_fix, i_fix_y>(), y3 = out.operator()<i_cmp, i_cmp_y>();
    for (std::size_t i = 0; i < y0.size(); ++i) {
        CHECK(y1[i] == doctest::Approx(y0[i]).epsilon(1e-12));
        CHECK(y2[i] == doctest::Approx(y0[i]).epsilon(1e-12));
    }
    // without a scale the columns have unit norm: the output differs from the plain one
    bool differs = false;
    for (std::size_t i = 0; i < y0.size(); ++i) differs = differs || std::abs(y3[i] - y0[i]) > 1e-6;
    CHECK(differs);
    // trainable_kernel_norm starts as the plain column norms of the same initial kernel
    using M = f::program<double, i_tr_y>;
    M::parameters p;
    fl::initialize<i_tr>(p, 11);
    const auto k = p.get<"d/kernel">();
    const auto g = p.get<"d/trainable_kernel_norm">();
    for (std::size_t j = 0; j < 6; ++j) {
        double s = 0;
        for (std::size_t i = 0; i < 7; ++i) s += k[i * 6 + j] * k[i * 6 + j];
        CHECK(g[j] == doctest::Approx(std::sqrt(s)).epsilon(1e-15));
    }
    // glorot_uniform bounds on the kernel: sqrt(6 / (7 + 6))
    for (double v : k) CHECK(std::abs(v) <= std::sqrt(6.0 / 13.0));
}

TEST_CASE("dense kernel norm gradient through the 1e-3 floor (a column with norm below it)") {
    // column 1 of the kernel is scaled down to norm ~1e-5: there n_j = 1e-3 and
    // dL/dV = H / 1e-3; elsewhere the normalisation's full derivative
    using G = f::grad_program<double, d_lin_y>;
    leaves L;
    vec xs(B * Din), ct(B * U), v(Din * U), gs(U), bs(U);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
    for (std::size_t i = 0; i < ct.size(); ++i) ct[i] = leaf_value("ct", i);
    for (std::size_t i = 0; i < Din * U; ++i) v[i] = leaf_value("k", i) * (i % U == 1 ? 1e-5 : 1.0);
    for (std::size_t j = 0; j < U; ++j) gs[j] = 0.5 + leaf_value("g", j), bs[j] = leaf_value("b", j);
    L["x"] = xs, L["cotangent"] = ct, L["d/kernel"] = v, L["d/trainable_kernel_norm"] = gs, L["d/bias"] = bs;
    const auto o = flat_port::run<G>(L, B);
    const vec &dk = o[G::grad<"d/kernel">], &dg = o[G::grad<"d/trainable_kernel_norm">];
    // the spec's formulas (2.7): G = x^T g_z, H = G * g; floor column: dV = H / 1e-3
    for (std::size_t j = 0; j < U; ++j) {
        double s = 0;
        for (std::size_t i = 0; i < Din; ++i) s += v[i * U + j] * v[i * U + j];
        const double n = std::sqrt(std::max(s, 1e-6)), gj = gs[j];
        vec H(Din), vh(Din);
        double dot = 0, dgj = 0;
        for (std::size_t i = 0; i < Din; ++i) {
            double Gij = 0;
            for (std::size_t b = 0; b < B; ++b) Gij += xs[b * Din + i] * ct[b * U + j];
            vh[i] = v[i * U + j] / n;
            H[i] = Gij * gj;
            dot += vh[i] * H[i];
            dgj += Gij * vh[i];
        }
        CHECK(dg[j] == doctest::Approx(dgj).epsilon(1e-12));
        for (std::size_t i = 0; i < Din; ++i) {
            const double want = s >= 1e-6 ? (H[i] - vh[i] * dot) / n : H[i] / 1e-3;
            CHECK(dk[i * U + j] == doctest::Approx(want).epsilon(1e-10));
        }
    }
    CHECK(v[1] * v[1] + v[U + 1] * v[U + 1] < 1e-6);  // the floor column is below the floor
    // and central finite differences of sum(ct * y) agree, floor column included
    auto loss = [&] {
        const vec y = flat_port::run<f::program<double, d_lin_y>>(L, B)[0];
        double l = 0;
        for (std::size_t i = 0; i < y.size(); ++i) l += ct[i] * y[i];
        return l;
    };
    for (std::size_t i = 0; i < Din * U; ++i) {
        const double v0 = L["d/kernel"][i], h = std::abs(v0) * 1e-4 + 1e-9;
        L["d/kernel"][i] = v0 + h;
        const double lp = loss();
        L["d/kernel"][i] = v0 - h;
        const double lm = loss();
        L["d/kernel"][i] = v0;
        CHECK(dk[i] == doctest::Approx((lp - lm) / (2 * h)).epsilon(1e-5));
    }
}

TEST_CASE("dense penalties: L2 on the raw kernel plus L1 on the bias, with gradients") {
    leaves L;
    const double got = flat_port::run<f::program<double, d_pen_p>>(L, 1)[0][0];
    double want = 0;
    for (std::size_t i = 0; i < Din * U; ++i) want += 0.05 * leaf_value("d/kernel", i) * leaf_value("d/kernel", i);
    for (std::size_t j = 0; j < U; ++j) want += 0.2 * std::abs(leaf_value("d/bias", j));
    CHECK(got == doctest::Approx(want).epsilon(1e-12));
    // never on the norm variable
    CHECK(flat_port::sorted_param_names<f::program<float, d_pen_p>>() == std::vector<std::string>{"d/bias", "d/kernel"});
    // a training loss: batch mean of the outputs plus the penalty, differentiated as a whole
    check_derivatives<d_pen_loss>(B);
    // no regularizer: no penalty term (the constant 0)
    CHECK_FALSE(d_plain.has_penalty());
    static_assert(!d_plain.has_penalty());
}

TEST_CASE("dense inactive-relu monitor: documented rate by default, the source's statistic under monolith_compat") {
    constexpr double decay = 0.25;
    auto steps = [&]<class S>(S*, bool compat) {
        typename S::parameters p;
        typename S::workspace ws;
        typename S::gradients g;
        for (std::size_t i = 0; i < Din * U; ++i) p.template get<"d/kernel">()[i] = leaf_value("d/kernel", i);
        for (std::size_t j = 0; j < U; ++j) p.template get<"d/bias">()[j] = leaf_value("d/bias", j);
        for (double& v : p.template get<"d/inactive_relu_count_moving_avg">()) v = 0.0;
        vec m(U, 0.0);
        for (int step = 0; step < 3; ++step) {
            vec xs(B * Din);
            for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value(std::string("x") + std::to_string(step), i);
            double l = 0;
            typename S::io io;
            io.template input<"x">(xs.data()).template output<0>(&l);
            g.bind(io);
            S::run(p, ws, B, io);
            // reference: count rows with a non-zero relu output per unit
            for (std::size_t j = 0; j < U; ++j) {
                double nonzero = 0;
                for (std::size_t b = 0; b < B; ++b) {
                    double z = leaf_value("d/bias", j);
                    for (std::size_t i = 0; i < Din; ++i) z += xs[b * Din + i] * leaf_value("d/kernel", i * U + j);
                    nonzero += z > 0;
                }
                const double c = compat ? static_cast<double>(U) - nonzero : nonzero / B;
                m[j] = (1 - decay) * m[j] + decay * c;
                CHECK(p.template get<"d/inactive_relu_count_moving_avg">()[j] == doctest::Approx(m[j]).epsilon(1e-12));
            }
        }
        // the statistic is a parameter of the program, not one to train
        static_assert(S::parameters::position("d/inactive_relu_count_moving_avg") < S::parameters::count);
        CHECK(std::find(S::trainable.begin(), S::trainable.end(), "d/inactive_relu_count_moving_avg") == S::trainable.end());
        CHECK(S::n_trainable == 2);
    };
    steps(static_cast<f::train_program<double, mon_doc_loss, mon_doc>*>(nullptr), false);
    steps(static_cast<f::train_program<double, mon_src_loss, mon_src>*>(nullptr), true);
}

TEST_CASE("derived parameters: the normalised kernel is computed on parameter change, not per call") {
    using M = f::program<float, d_tr_y>;
    static_assert(M::pl.derived_steps >= 1);
    M::parameters p;
    fl::initialize<d_tr>(p, 1);
    M::workspace ws;
    std::vector<float> xs(B * Din), y(B * U), y2(B * U);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(leaf_value("x", i));
    M::io io;
    io.input<"x">(xs.data()).output<0>(y.data());
    const M::parameters& shared = p;
    // stale parameters are refused through a const reference ...
    CHECK_THROWS_AS(M::run(shared, ws, B, io), ctrec::error);
    p.prepare();
    M::run(shared, ws, B, io);
    // ... a write makes them stale again, and prepare() picks the change up
    p.get<"d/trainable_kernel_norm">()[0] *= 2;
    CHECK_THROWS_AS(M::run(shared, ws, B, io), ctrec::error);
    p.prepare();
    io.output<0>(y2.data());
    M::run(shared, ws, B, io);
    for (std::size_t b = 0; b < B; ++b) {
        CHECK(y2[b * U] == doctest::Approx(2 * y[b * U]).epsilon(1e-5));
        CHECK(y2[b * U + 1] == y[b * U + 1]);
    }
    // the workspace holds no kernel-sized buffer: the effective kernel lives with the parameters
    CHECK(M::workspace::size < Din * U);
}

TEST_CASE("partitioned kernels: TF's shard count and sizes, and reassembly equals the unsharded kernel") {
    // the original test: kernel (294, 1024), max_shard_bytes 2^17, max_shards 5
    using cl::variable_axis_size_partitioner;
    constexpr dims k = make_dims<294, 1024>();
    static_assert(variable_axis_size_partitioner(1u << 17, k, 0, 5) == 5);
    CHECK(cl::shard_sizes(294, 5) == std::vector<std::size_t>{59, 59, 59, 59, 58});
    // trainable_kernel_norm (1024,) fits one shard
    static_assert(variable_axis_size_partitioner(1u << 17, make_dims<1024>(), 0, 5) == 1);
    // a 5-shard import equals the unsharded kernel
    std::vector<float> full(294 * 1024);
    for (std::size_t i = 0; i < full.size(); ++i) full[i] = static_cast<float>(leaf_value("k", i));
    std::vector<std::span<const float>> parts;
    std::size_t at = 0;
    for (std::size_t r : cl::shard_sizes(294, 5)) {
        parts.emplace_back(full.data() + at * 1024, r * 1024);
        at += r;
    }
    std::vector<float> out(full.size(), -1.f);
    cl::concat_shards<float>(parts, k, 0, out, "dense/kernel");
    CHECK(out == full);
    // a missing shard is an error naming the variable, and nothing is written
    std::vector<float> untouched(full.size(), 7.f);
    auto short_list = std::span(parts).first(4);
    CHECK_THROWS_WITH_AS(cl::concat_shards<float>(short_list, k, 0, untouched, "dense/kernel"), doctest::Contains("dense/kernel"),
                         ctrec::error);
    CHECK(untouched == std::vector<float>(full.size(), 7.f));
}

// ================================================================================================
// test_mlp_bn.cpp
// ================================================================================================

TEST_CASE("mlp batch normalisation: on the input and every hidden Dense output, never the last") {
    auto expect = [](bool train) {
        return [=](leaves& L, std::size_t b) {
            vec h = mbn(L, get(L, "x"), b, D0, "mlp/BatchNorm/in", train);
            h = map(mbn(L, mdense(L, h, b, D0, 5, "mlp/dense_0", false), b, 5, "mlp/BatchNorm/out", train), relu);
            h = map(mbn(L, mdense(L, h, b, 5, 4, "mlp/dense_1", false), b, 4, "mlp/BatchNorm/out_1", train), relu);
            return mdense(L, h, b, 4, 2, "mlp/dense_2", false);
        };
    };
    auto positive = [](leaves& L, std::size_t) {
        positive_variances(L, {{"mlp/BatchNorm/in", D0}, {"mlp/BatchNorm/out", 5}, {"mlp/BatchNorm/out_1", 4}});
    };
    SUBCASE("train: batch statistics, full gradient through them") {
        check_forward<mlp_bn_tr_y>(MB, expect(true));
        check_derivatives<mlp_bn_tr_y>(MB);
    }
    SUBCASE("eval: moving statistics") {
        check_forward<mlp_bn_ev_y>(MB, expect(false), positive);
    }
    SUBCASE("variables: 3 Dense, 1 input BN, 2 hidden BN (no BN after the last Dense)") {
        using P = f::train_program<float, mlp_bn_tr_loss, mlp_bn_tr>;
        std::vector<std::string> want;
        for (std::string bn : {"BatchNorm/in", "BatchNorm/out", "BatchNorm/out_1"})
            for (std::string v : {"gamma", "beta", "moving_mean", "moving_variance"}) want.push_back("mlp/" + bn + "/" + v);
        for (std::string d : {"dense_0", "dense_1", "dense_2"})
            for (std::string v : {"kernel", "bias"}) want.push_back("mlp/" + d + "/" + v);
        std::sort(want.begin(), want.end());
        CHECK(flat_port::sorted_param_names<P>() == want);
    }
}

TEST_CASE("mlp training step: moving statistics updated by the batch statistics, then used in eval") {
    constexpr double momentum = 0.9;
    using S = f::train_program<double, step_loss, step_tr>;
    static_assert(step_tr.n_updates == 4);  // mean and variance of BatchNorm/in and BatchNorm/out
    // trainable: every kernel, bias, gamma and beta; never the moving statistics
    static_assert(S::n_trainable == 4 + 4);
    for (std::string_view n : S::trainable) CHECK(n.find("moving") == std::string_view::npos);
    S::parameters p;
    fl::initialize<step_tr>(p, 5);
    S::workspace ws;
    S::gradients g;
    vec xs(MB * D0);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
    double l = 0;
    S::io io;
    io.input<"x">(xs.data()).output<0>(&l);
    g.bind(io);
    S::run(p, ws, MB, io);
    // BatchNorm/in saw the raw input: moving = 0.9 * init + 0.1 * batch statistic
    for (std::size_t j = 0; j < D0; ++j) {
        double mu = 0, var = 0;
        for (std::size_t b = 0; b < MB; ++b) mu += xs[b * D0 + j] / MB;
        for (std::size_t b = 0; b < MB; ++b) var += (xs[b * D0 + j] - mu) * (xs[b * D0 + j] - mu) / MB;
        CHECK(p.get<"mlp/BatchNorm/in/moving_mean">()[j] == doctest::Approx(momentum * 0.0 + (1 - momentum) * mu).epsilon(1e-12));
        CHECK(p.get<"mlp/BatchNorm/in/moving_variance">()[j] == doctest::Approx(momentum * 1.0 + (1 - momentum) * var).epsilon(1e-12));
    }
    // eval after the step reads the updated statistics (a program sharing the same weights)
    using M = f::program<double, step_ev_y>;
    M::parameters pe;
    for (std::size_t k = 0; k < M::parameters::count; ++k) pe.set(M::parameters::names[k], flat_port::param_values(p, M::parameters::names[k]));
    pe.prepare();
    M::workspace mws;
    vec y(MB);
    M::io eio;
    eio.input<"x">(xs.data()).output<0>(y.data());
    M::run(std::as_const(pe), mws, MB, eio);
    auto get_p = [&](std::string_view n) { return flat_port::param_values(pe, n); };
    const vec mm = get_p("mlp/BatchNorm/in/moving_mean"), mv = get_p("mlp/BatchNorm/in/moving_variance");
    const vec ga = get_p("mlp/BatchNorm/in/gamma"), be = get_p("mlp/BatchNorm/in/beta");
    const vec k = get_p("mlp/dense_0/kernel"), bb = get_p("mlp/dense_0/bias");
    const vec m2 = get_p("mlp/BatchNorm/out/moving_mean"), v2 = get_p("mlp/BatchNorm/out/moving_variance");
    const vec g2 = get_p("mlp/BatchNorm/out/gamma"), be2 = get_p("mlp/BatchNorm/out/beta");
    const vec k1 = get_p("mlp/dense_1/kernel"), b1 = get_p("mlp/dense_1/bias");
    for (std::size_t b = 0; b < MB; ++b) {
        double o = b1[0];
        for (std::size_t j = 0; j < 3; ++j) {
            double z = bb[j];
            for (std::size_t i = 0; i < D0; ++i) z += (ga[i] * (xs[b * D0 + i] - mm[i]) / std::sqrt(mv[i] + 1e-3) + be[i]) * k[i * 3 + j];
            o += relu(g2[j] * (z - m2[j]) / std::sqrt(v2[j] + 1e-3) + be2[j]) * k1[j];
        }
        CHECK(y[b] == doctest::Approx(o).epsilon(1e-12));
    }
}


// ================================================================================================
// test_batch_norm.cpp
// ================================================================================================

TEST_CASE("batch_norm train: batch statistics, y = gamma xhat + beta, moving averages") {
    using P = f::program<double, bn_tr_y, bn_tr_u0, bn_tr_u1>;
    for (std::size_t batch : {1, 5, 70, 150}) {  // 150: several tiles per pass
        INFO("batch " << batch);
        check_forward<bn_tr_y>(batch, [](leaves& L, std::size_t b) { return bn_reference(L, b, 1, {.momentum = 0.9}).y; }, bn_values);
        leaves L;
        bn_values(L, batch);
        test::fill<P>(L, batch);
        check_updates<P>(bn_tr, batch, bn_reference(L, batch, 1, {.momentum = 0.9}), {"bn/moving_mean", "bn/moving_variance"});
    }
    // a batch of one: x - mu = 0, so y = beta (up to rounding in TF's x inv + (beta - mu inv))
    leaves L;
    bn_values(L, 1);
    const vec y1 = flat_port::run<f::program<double, bn_tr_y>>(L, 1)[0];
    for (std::size_t j = 0; j < D; ++j) CHECK(y1[j] == doctest::Approx(bn_value("bn/beta", j)).epsilon(1e-14));
    // the moving statistics are not read by the training forward pass
    CHECK(flat_port::sorted_param_names<f::program<float, bn_tr_y>>() == std::vector<std::string>{"bn/beta", "bn/gamma"});
    check_derivatives<bn_tr_y>(5, bn_values);
}

TEST_CASE("batch_norm train: the gradient is the spec's closed form") {
    // dx = (gamma / s)(g - mean g - xhat mean(g xhat)), dgamma = sum g xhat, dbeta = sum g;
    // with renorm gamma -> r gamma in dx, and dgamma = sum g (r xhat + d)
    auto check = [&]<const auto& Y>(std::size_t N, config_ref c) {
        using G = f::grad_program<double, Y>;
        constexpr std::size_t batch = 7;
        leaves L;
        bn_values(L, batch);
        const auto got = flat_port::run<G>(L, batch);
        const auto ref = bn_reference(L, batch, N, c);
        const double cnt = static_cast<double>(batch * N);
        vec mg(D, 0.0), mgx(D, 0.0), dg(D, 0.0), db(D, 0.0), dx;
        const vec& ct = get(L, "cotangent");
        for (std::size_t i = 0; i < batch * N * D; ++i) {
            const std::size_t j = i % D;
            mg[j] += ct[i] / cnt, mgx[j] += ct[i] * ref.xhat[i] / cnt;
            dg[j] += ct[i] * (ref.r[j] * ref.xhat[i] + ref.d[j]), db[j] += ct[i];
        }
        for (std::size_t i = 0; i < batch * N * D; ++i) {
            const std::size_t j = i % D;
            const double s = std::sqrt(ref.var[j] + kEps);
            dx.push_back(ref.r[j] * bn_value("bn/gamma", j) / s * (ct[i] - mg[j] - ref.xhat[i] * mgx[j]));
        }
        check_close(got[0], ref.y, 1e-12);
        check_close(got[G::template grad<"x">], dx, 1e-10);
        check_close(got[G::template grad<"bn/gamma">], dg, 1e-10);
        check_close(got[G::template grad<"bn/beta">], db, 1e-10);
        // the renorm statistics are constants for AD
        if (c.renorm) {
            CHECK(flat_port::gradient_is_symbolic_zero<G>("bn/renorm_mean"));
            CHECK(flat_port::gradient_is_symbolic_zero<G>("bn/renorm_stddev"));
            for (double v : got[flat_port::grad_index<G>("bn/renorm_mean")]) CHECK(v == 0.0);
        }
    };
    SUBCASE("plain") { check.operator()<bn_plain_y>(1, {}); }
    SUBCASE("rank 3: statistics over the batch and the middle axis") { check.operator()<bn_3d_y>(3, {}); }
    SUBCASE("renorm, r and d not clipped") {
        leaves L;
        bn_values(L, 7);
        test::fill<f::program<double, bn_rn_y>>(L, 7);
        const auto ref = bn_reference(L, 7, 1, {.renorm = true});
        bool r_far_from_1 = false;
        for (double rv : ref.r) r_far_from_1 = r_far_from_1 || std::abs(rv - 1) > 0.1;
        CHECK(r_far_from_1);  // the data make the correction visible
        check.operator()<bn_rn_y>(1, {.renorm = true});
    }
    SUBCASE("renorm, clipped") {
        constexpr config_ref c{.renorm = true, .rmax = 1.3, .rmin = 0.9, .dmax = 0.25};
        leaves L;
        bn_values(L, 7);
        test::fill<f::program<double, bn_rnc_y>>(L, 7);
        const auto ref = bn_reference(L, 7, 1, c);
        CHECK(ref.r_clipped > 0);
        CHECK(ref.d_clipped > 0);
        check.operator()<bn_rnc_y>(1, c);
    }
}

TEST_CASE("batch_norm train on a rank-3 input: one statistic per feature over (B, N)") {
    static_assert(bn_r3.shape() == make_dims<4, D>());
    using P = f::program<double, bn_r3_y, bn_r3_u0, bn_r3_u1>;
    for (std::size_t batch : {1, 3, 40}) {
        INFO("batch " << batch);
        check_forward<bn_r3_y>(batch, [](leaves& L, std::size_t b) { return bn_reference(L, b, 4, {.momentum = 0.5}).y; }, bn_values);
        leaves L;
        bn_values(L, batch);
        test::fill<P>(L, batch);
        check_updates<P>(bn_r3, batch, bn_reference(L, batch, 4, {.momentum = 0.5}), {"bn/moving_mean", "bn/moving_variance"});
    }
    check_derivatives<bn_r3_y>(3, bn_values);
}

TEST_CASE("batch_norm renorm: r and d corrections, clipping, and the five state updates") {
    const std::vector<std::string> names{"bn/renorm_mean", "bn/renorm_stddev", "bn/moving_mean", "bn/moving_stddev", "bn/moving_variance"};
    SUBCASE("no clipping (the defaults)") {
        using P = f::program<double, bn_ru_y, bn_ru_u0, bn_ru_u1, bn_ru_u2, bn_ru_u3, bn_ru_u4>;
        constexpr config_ref c{.renorm = true, .renorm_momentum = 0.7};
        for (std::size_t batch : {2, 9, 100}) {
            INFO("batch " << batch);
            leaves L;
            bn_values(L, batch);
            test::fill<P>(L, batch);
            auto want = bn_reference(L, batch, 1, c);
            CHECK(want.r_clipped + want.d_clipped == 0);
            check_forward<bn_ru_y>(batch, [&](leaves& M, std::size_t b) { return bn_reference(M, b, 1, c).y; }, bn_values);
            check_updates<P>(bn_ru, batch, want, names);
            // moving_stddev[0] is tiny: the new moving variance is clamped at 0
            CHECK(want.next["bn/moving_variance"][0] == 0.0);
            CHECK(want.next["bn/moving_variance"][1] > 0.0);
        }
    }
    SUBCASE("clipping active for r (both bounds) and d") {
        using P = f::program<double, bn_rc_y, bn_rc_u0, bn_rc_u1, bn_rc_u2, bn_rc_u3, bn_rc_u4>;
        constexpr config_ref c{.renorm = true, .rmax = 1.3, .rmin = 0.9, .dmax = 0.25};
        for (std::size_t batch : {3, 11, 64}) {
            INFO("batch " << batch);
            leaves L;
            bn_values(L, batch);
            test::fill<P>(L, batch);
            auto want = bn_reference(L, batch, 1, c);
            CHECK(want.r_clipped > 0);
            if (batch > 3) CHECK(want.r_clipped < D);  // and not everywhere
            CHECK(want.d_clipped > 0);
            check_forward<bn_rc_y>(batch, [&](leaves& M, std::size_t b) { return bn_reference(M, b, 1, c).y; }, bn_values);
            check_updates<P>(bn_rc, batch, want, names);  // clipping never affects the updates
        }
    }
    SUBCASE("a tiny renorm_stddev is floored at sqrt(eps)") {
        auto tiny = [](leaves& L, std::size_t b) {
            bn_values(L, b);
            L["bn/renorm_stddev"] = vec(D, 1e-6);
        };
        leaves L;
        tiny(L, 5);
        test::fill<f::program<double, bn_rn_y>>(L, 5);
        const auto want = bn_reference(L, 5, 1, {.renorm = true});
        for (std::size_t j = 0; j < D; ++j) CHECK(want.r[j] == doctest::Approx(std::sqrt(want.var[j] + kEps) / std::sqrt(kEps)));
        check_forward<bn_rn_y>(5, [](leaves& M, std::size_t b) { return bn_reference(M, b, 1, {.renorm = true}).y; }, tiny);
    }
}

TEST_CASE("batch_norm gradients by finite differences (train, renorm, eval)") {
    SUBCASE("train, rank 2 and rank 3") {
        check_derivatives<bn_plain_y>(4, bn_values);
        check_derivatives<bn_23_y>(3, bn_values);
    }
    SUBCASE("train with renorm, r and d saturated by the clipping") {
        // r and d are stop_gradient'ed. Where they sit at a clipping bound they are locally
        // constant, so the true derivative (finite differences) equals the stop-gradient one:
        // s >= sqrt(eps) and renorm_stddev <= 0.06 give r >= 0.52 > rmax, and
        // mu - renorm_mean <= -0.9 gives d <= -15 < -dmax. (renorm_mean and renorm_stddev get a
        // symbolic zero; with the clipping saturated, differencing them gives 0 as well.)
        check_derivatives<bn_sat_y>(4, [](leaves& L, std::size_t) {
            vec rs(D), rm(D);
            for (std::size_t j = 0; j < D; ++j) {
                rs[j] = 0.05 + 0.01 * leaf_value("bn/renorm_stddev", j);
                rm[j] = 2.0 + 0.1 * leaf_value("bn/renorm_mean", j);
            }
            L["bn/renorm_stddev"] = rs, L["bn/renorm_mean"] = rm;
        });
        using G = f::grad_program<double, bn_sat_y>;
        CHECK(flat_port::gradient_is_symbolic_zero<G>("bn/renorm_mean"));
        CHECK(flat_port::gradient_is_symbolic_zero<G>("bn/renorm_stddev"));
    }
    SUBCASE("eval and predict: moving statistics are constants") {
        check_derivatives<bn_ev_y>(4, bn_values, {"bn/moving_mean", "bn/moving_variance"});
        check_derivatives<bn_pr3_y>(3, bn_values, {"bn/moving_mean", "bn/moving_variance"});
    }
}

TEST_CASE("batch_norm eval / predict: moving statistics, no updates, renorm irrelevant") {
    // the same model: equal frozen tables (the renorm variables a predict layer declares are
    // not read)
    CHECK(flat_port::same_table(f::program<double, bn_ev_y>::tab, f::program<double, bn_pr_y>::tab));
    static_assert(bn_ev.n_updates == 0 && bn_pr.n_updates == 0);
    for (std::size_t batch : {1, 6, 90})
        check_forward<bn_ev_y>(batch, [](leaves& L, std::size_t b) { return bn_reference(L, b, 1, {.train = false}).y; }, bn_values);
    check_forward<bn_ev3_y>(4, [](leaves& L, std::size_t b) { return bn_reference(L, b, 3, {.train = false}).y; }, bn_values);
    // the per-feature scale and shift read parameters only: computed on parameter change
    static_assert(f::program<float, bn_ev_y>::pl.derived_steps >= 1);
}

TEST_CASE("batch_norm variables: names, creation order, initial values") {
    CHECK(flat_port::var_names(bn_names_plain) == std::vector<std::string>{"mlp/BatchNorm/in/gamma", "mlp/BatchNorm/in/beta",
                                                                           "mlp/BatchNorm/in/moving_mean", "mlp/BatchNorm/in/moving_variance"});
    CHECK(flat_port::var_names(bn_names_rn) ==
          std::vector<std::string>{"mlp/BatchNorm/in/gamma", "mlp/BatchNorm/in/beta", "mlp/BatchNorm/in/moving_mean",
                                   "mlp/BatchNorm/in/moving_variance", "mlp/BatchNorm/in/moving_stddev", "mlp/BatchNorm/in/renorm_mean",
                                   "mlp/BatchNorm/in/renorm_stddev"});
    // a freshly initialised eval layer is y = x / sqrt(1 + eps)
    using M = f::program<double, bn_fresh_y>;
    M::parameters p;
    fl::initialize<bn_fresh>(p, 3);
    M::workspace ws;
    vec xs(2 * D), y(2 * D);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
    M::io io;
    io.input<"x">(xs.data()).output<0>(y.data());
    M::run(p, ws, 2, io);
    for (std::size_t i = 0; i < xs.size(); ++i) CHECK(y[i] == doctest::Approx(xs[i] / std::sqrt(1 + kEps)).epsilon(1e-14));
}

TEST_CASE("batch_norm in a training step: gradients for gamma and beta, moving statistics written") {
    using S = f::train_program<double, bn_step_loss, bn_step>;
    // only gamma and beta are trainable; the five statistics are state
    static_assert(S::n_trainable == 2);
    static_assert(S::n_updates == 5);
    S::parameters p;
    fl::initialize<bn_step>(p, 1);
    S::workspace ws;
    S::gradients gr;
    constexpr std::size_t batch = 8;
    vec xs(batch * D), ts(batch * D);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i), ts[i] = leaf_value("t", i);
    double l = 0;
    S::io io;
    io.input<"x">(xs.data()).input<"t">(ts.data()).output<0>(&l);
    gr.bind(io);
    S::run(p, ws, batch, io);
    const auto dg = gr.get<"bn/gamma">(), db = gr.get<"bn/beta">();
    // from the initial state (ones / zeros): r = s, d = mu
    vec mu(D, 0.0), var(D, 0.0);
    for (std::size_t i = 0; i < xs.size(); ++i) mu[i % D] += xs[i] / batch;
    for (std::size_t i = 0; i < xs.size(); ++i) var[i % D] += (xs[i] - mu[i % D]) * (xs[i] - mu[i % D]) / batch;
    for (std::size_t j = 0; j < D; ++j) {
        const double s = std::sqrt(var[j] + kEps);
        double gsum = 0, ggam = 0;
        for (std::size_t b = 0; b < batch; ++b) {
            const double g = ts[b * D + j] / batch, xh = (xs[b * D + j] - mu[j]) / s;
            gsum += g, ggam += g * (s * xh + mu[j]);
        }
        CHECK(db[j] == doctest::Approx(gsum).epsilon(1e-12));
        CHECK(dg[j] == doctest::Approx(ggam).epsilon(1e-12));
        const double sd = 1 - (1 - s) * 0.2;
        CHECK(p.get<"bn/moving_mean">()[j] == doctest::Approx(mu[j] * 0.2).epsilon(1e-12));
        CHECK(p.get<"bn/moving_stddev">()[j] == doctest::Approx(sd).epsilon(1e-12));
        CHECK(p.get<"bn/moving_variance">()[j] == doctest::Approx(std::max(sd * sd - kEps, 0.0)).epsilon(1e-12));
        CHECK(p.get<"bn/renorm_mean">()[j] == doctest::Approx(mu[j] * 0.01).epsilon(1e-12));
        CHECK(p.get<"bn/renorm_stddev">()[j] == doctest::Approx(1 - (1 - s) * 0.01).epsilon(1e-12));
        CHECK(p.get<"bn/gamma">()[j] == 1.0);  // the step computes gradients; it does not apply them
    }
}

// ================================================================================================
// test_initializers.cpp: the regularizers' expression forms (the core's add_penalty)
// ================================================================================================

TEST_CASE("DSL forms: value and reverse-mode gradient") {
    auto w = [](std::size_t i) { return leaf_value("w", i); };
    double sa = 0, sq = 0;
    for (std::size_t i = 0; i < 12; ++i) sa += std::abs(w(i)), sq += w(i) * w(i);
    leaves L;
    CHECK(flat_port::run<f::program<double, pen_l2_p>>(L, 1)[0][0] == doctest::Approx(0.01 * sq).epsilon(1e-14));
    CHECK(flat_port::run<f::program<double, pen_l1_p>>(L, 1)[0][0] == doctest::Approx(0.3 * sa).epsilon(1e-14));
    CHECK(flat_port::run<f::program<double, pen_l12_p>>(L, 1)[0][0] == doctest::Approx(0.3 * sa + 0.02 * sq).epsilon(1e-14));
    // a zero coefficient adds no term: L1L2(0, 0.01) is the same expression as L2()
    CHECK(flat_port::same_table(f::program<double, pen_0_l2_p>::tab, f::program<double, pen_l2_p>::tab));
    static_assert(pen_0_l2.g.n == pen_l2.g.n && pen_0_l2.penalty_id == pen_l2.penalty_id);

    // gradient: a per-example root x * penalty with x = 1, batch 1, cotangent 1
    using G = f::grad_program<double, x_pen_l12>;
    leaves P;
    vec wv(12);
    for (std::size_t i = 0; i < 12; ++i) wv[i] = i == 5 ? 0.0 : w(i);  // one exact zero
    P["w"] = wv, P["x"] = {1.0}, P["cotangent"] = {1.0};
    const auto o = flat_port::run<G>(P, 1);
    const vec& dw = o[G::grad<"w">];
    CHECK(o[G::grad<"x">][0] == doctest::Approx(o[0][0]));  // d(x * penalty)/dx = penalty
    for (std::size_t i = 0; i < 12; ++i) {
        const double sg = wv[i] > 0 ? 1 : wv[i] < 0 ? -1 : 0;
        CHECK(dw[i] == doctest::Approx(0.3 * sg + 2 * 0.02 * wv[i]).epsilon(1e-14));
    }
    // and it agrees with the runtime form
    vec g(12, 0.0);
    reg::L1L2{0.3, 0.02}.add_gradient(std::span<const double>(wv), std::span{g});
    double worst = 0;
    for (std::size_t i = 0; i < 12; ++i) worst = std::max(worst, std::abs(g[i] - dw[i]));
    CHECK(worst < 1e-14);
    check_derivatives<x_pen_l2_half>(3);
}
