// Layers : activations, Dense, BatchNorm,
// MLP, initialisation, results, against the naive float64 references of flat_layer_reference.hpp
// (CPU and reference backends, float and double, across tiles), float64 central differences and
// JVP/VJP duality, and training steps (state updates) against the reference formulas.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "layer_reference.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using ctrec::make_dims;
using cl::mode;
using flat_ref::vec;
using test::leaves;
using test::forward;
using test::check_forward;

namespace {


// ---- activations --------------------------------------------------------------------------------
constexpr cl::activation acts[] = {
    cl::act_linear, cl::act_relu, cl::act_keras_relu(0.5, 0.1, 0.2), cl::act_leakyrelu(0.3), cl::act_elu_alpha(1.5),
    cl::act_selu, cl::act_gelu, cl::act_hard_sigmoid, cl::act_sigmoid, cl::act_sigmoid2, cl::act_softplus,
    cl::act_softsign, cl::act_swish, cl::act_tanh, cl::act_exponential, cl::act_thresholdedrelu(0.4), cl::act_softmax,
    cl::act_prelu};
constexpr std::size_t n_acts = sizeof acts / sizeof acts[0];
constexpr std::size_t AX = 7;

double act_ref(std::size_t k, double x, const vec& row, std::size_t j, double alpha) {
    switch (k) {
        case 0: return x;
        case 1: return flat_ref::relu(x);
        case 2: return x >= 0.5 ? 0.5 : x >= 0.2 ? x : 0.1 * (x - 0.2);
        case 3: return x > 0 ? x : 0.3 * x;
        case 4: return x > 0 ? x : 1.5 * (std::exp(x) - 1);
        case 5: return 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * (std::exp(x) - 1));
        case 6: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
        case 7: return std::min(std::max(0.2 * x + 0.5, 0.0), 1.0);
        case 8: return flat_ref::sigmoid(x);
        case 9: return 2 * flat_ref::sigmoid(x);
        case 10: return flat_ref::softplus(x);
        case 11: return x / (1 + std::abs(x));
        case 12: return x * flat_ref::sigmoid(x);
        case 13: return std::tanh(x);
        case 14: return std::exp(x);
        case 15: return x > 0.4 ? x : 0;
        case 16: {
            double s = 0;
            for (double v : row) s += std::exp(v);
            return std::exp(row[j]) / s;
        }
        default: return x > 0 ? x : alpha * x;
    }
}

constexpr fl::result activations_model() {
    fl::result m;
    f::val x = m.input("x", make_dims<AX>());
    f::val outs[n_acts]{};
    for (std::size_t k = 0; k < n_acts; ++k) outs[k] = fl::apply_activation(m, acts[k], f::name_string("act_") + k, x * 3.0);
    m.set_out(f::concat(0, outs, n_acts));
    return m;
}
constexpr auto acts_r = activations_model();
constexpr auto acts_y = acts_r.out();
constexpr auto acts_loss = f::sum(acts_y * f::input<"w", AX * n_acts>);

// ---- Dense ----------------------------------------------------------------------------------------
constexpr auto x4 = f::input<"x", 4>;
constexpr auto label = f::input<"label", 1>;
constexpr auto d_train = fl::dense<"d", {.units = 5, .activation = cl::act_tanh, .allow_kernel_norm = true, .kernel_norm_trainable = true}>(x4);
constexpr auto d_train_y = d_train.out();
constexpr auto d_fixed = fl::dense<"d", {.units = 5, .activation = cl::act_gelu, .allow_kernel_norm = true}>(x4);
constexpr auto d_fixed_y = d_fixed.out();
constexpr auto d_compat = fl::dense<"d", {.units = 5, .activation = cl::act_relu, .use_bias = false, .kernel_regularizer = cl::regularizer(0.01, 0.02),
                                          .allow_kernel_norm = true, .monolith_compat = true}>(x4);
constexpr auto d_compat_y = d_compat.out();
constexpr auto d_reg = fl::dense<"d", {.units = 3, .activation = cl::act_sigmoid, .kernel_regularizer = cl::regularizer(0.01, 0.02),
                                       .bias_regularizer = cl::regularizer(0.0, 0.5)}>(x4);
constexpr auto d_reg_loss = f::batch_mean(f::sum(d_reg.out())) + d_reg.penalty();
constexpr auto d_mon = fl::dense<"d", {.units = 5, .activation = cl::act_relu, .inactive_relu_monitor = true, .inactive_relu_monitor_decay = 0.25}>(x4);
constexpr auto d_mon_y = d_mon.out();
constexpr auto d_mon_loss = f::batch_mean(f::sum(d_mon_y));
constexpr auto d_monc = fl::dense<"d", {.units = 5, .activation = cl::act_relu, .inactive_relu_monitor = true, .inactive_relu_monitor_decay = 0.25,
                                        .monolith_compat = true}>(x4);
constexpr auto d_monc_loss = f::batch_mean(f::sum(d_monc.out()));

// ---- BatchNorm ---------------------------------------------------------------------------------------
constexpr auto x34 = f::input<"x", 3, 4>;
constexpr auto bn_tr = fl::batch_norm<"bn", mode::train>(x34);
constexpr auto bn_tr_y = bn_tr.out();
constexpr auto bn_tr_loss = f::batch_mean(f::sum(f::tanh(bn_tr_y) * f::input<"w", 3, 4>));
constexpr auto bn_ev = fl::batch_norm<"bn", mode::predict>(x34);
constexpr auto bn_ev_y = bn_ev.out();
constexpr cl::batch_norm_config rn_cfg{.momentum = 0.9, .renorm = true, .rmax = 1.5, .rmin = 0.7, .dmax = 0.3, .renorm_momentum = 0.8};
constexpr auto bn_rn = fl::batch_norm<"bn", mode::train, rn_cfg>(x34);
constexpr auto bn_rn_y = bn_rn.out();
constexpr auto bn_rn_loss = f::batch_mean(f::sum(bn_rn_y));

// ---- MLP ---------------------------------------------------------------------------------------------------
constexpr auto x6 = f::input<"x", 6>;
constexpr cl::mlp_config<3> mlp_cfg{.output_dims = {8, 5, 1}, .activation = cl::act_tanh, .enable_batch_normalization = true};
constexpr auto mlp_pr = fl::mlp<"mlp", mlp_cfg, mode::predict>(x6);
constexpr auto mlp_pr_y = mlp_pr.out();
constexpr auto mlp_tr = fl::mlp<"mlp", mlp_cfg, mode::train>(x6);
constexpr auto mlp_tr_y = mlp_tr.out();
constexpr auto mlp_tr_loss = f::batch_mean(f::log1p(f::exp(mlp_tr_y)) - label * mlp_tr_y) + mlp_tr.penalty();
constexpr cl::mlp_config<2> mlp_prelu_cfg{.output_dims = {4, 3}, .activations = {cl::act_prelu, cl::act_prelu}, .activation_list = true,
                                          .use_weight_norm = false};
constexpr auto mlp_prelu = fl::mlp<"m", mlp_prelu_cfg, mode::predict>(x6);
constexpr auto mlp_prelu_y = mlp_prelu.out();

// MLP reference: dense_i (weight norm trainable) [-> BN] -> act (tanh, none on the last)
vec mlp_reference(leaves& L, std::size_t batch, bool train) {
    const std::size_t dimsv[4] = {6, 8, 5, 1};
    vec h = flat_ref::bn(L, flat_ref::get(L, "x"), batch, 1, 6, "mlp/BatchNorm/in", train);
    for (std::size_t i = 0; i < 3; ++i) {
        h = flat_ref::dense(L, h, batch, dimsv[i], dimsv[i + 1], "mlp/dense_" + std::to_string(i), flat_ref::norm::trainable);
        if (i < 2) {
            h = flat_ref::bn(L, h, batch, 1, dimsv[i + 1], i == 0 ? "mlp/BatchNorm/out" : "mlp/BatchNorm/out_" + std::to_string(i), train);
            for (double& v : h) v = std::tanh(v);
        }
    }
    return h;
}
void positive_mlp_state(leaves& L) {
    flat_ref::positive_bn_state(L, "mlp/BatchNorm/in", 6);
    flat_ref::positive_bn_state(L, "mlp/BatchNorm/out", 8);
    flat_ref::positive_bn_state(L, "mlp/BatchNorm/out_1", 5);
}

// Runs a training step of P and returns the parameters after it (state written back).
template <class P>
std::vector<vec> train_step(leaves& L, std::size_t batch, double* loss = nullptr) {
    test::fill<P>(L, batch);
    typename P::parameters p;
    for (std::size_t k = 0; k < P::n_params; ++k) {
        auto w = p.get(k);
        const auto& x = L[P::parameters::names[k]];
        for (std::size_t e = 0; e < w.size(); ++e) w[e] = x[e];
    }
    typename P::io io;
    std::vector<vec> in(P::n_inputs);
    for (std::size_t k = 0; k < P::n_inputs; ++k) {
        in[k] = L[P::tab.name_of(P::input_ids[k])];
        io.in[k] = in[k].data();
    }
    double l = 0;
    typename P::gradients g;
    g.bind(io);
    io.out[0] = &l;
    typename P::workspace ws;
    P::run(p, ws, batch, io);
    if (loss) *loss = l;
    std::vector<vec> after(P::n_params);
    for (std::size_t k = 0; k < P::n_params; ++k) after[k].assign(p.get(k).begin(), p.get(k).end());
    return after;
}

} // namespace

TEST_CASE("layers: every activation against its formula (spec 1.2); derivatives") {
    using P = f::program<double, acts_y>;
    for (std::size_t batch : {1, 5, 70}) {
        leaves L;
        const vec got = forward<P>(L, batch);
        const vec ref = forward<P::with_backend<f::reference_backend>>(L, batch);
        const vec& x = flat_ref::get(L, "x");
        for (std::size_t b = 0; b < batch; ++b) {
            vec row(AX);
            for (std::size_t j = 0; j < AX; ++j) row[j] = 3 * x[b * AX + j];
            for (std::size_t k = 0; k < n_acts; ++k)
                for (std::size_t j = 0; j < AX; ++j) {
                    const double alpha = k + 1 == n_acts ? flat_ref::get(L, "act_" + std::to_string(k) + "/alpha")[j] : 0.0;
                    const double want = act_ref(k, row[j], row, j, alpha);
                    const std::size_t at = b * AX * n_acts + k * AX + j;
                    INFO("activation " << k << " at x = " << row[j]);
                    CHECK(got[at] == doctest::Approx(want).epsilon(1e-12));
                    CHECK(ref[at] == doctest::Approx(want).epsilon(1e-12));
                }
        }
    }
    CHECK(acts_r.n_inits == 1);  // PReLU's alpha, zeros
    test::check_derivatives<f::grad_program<double, acts_loss>, f::jvp_program<double, acts_loss>>(3);
    test::check_backends<f::program<float, acts_y>>(70, 1e-5);
}

TEST_CASE("layers: Dense with trainable, fixed and source kernel norm; regularizers; derivatives") {
    using namespace flat_ref;
    auto ref_for = [](norm n, int act, bool bias) {
        return [=](leaves& L, std::size_t batch, bool prepare) {
            if (prepare) return vec{};
            vec z = dense(L, get(L, "x"), batch, 4, 5, "d", n, bias);
            for (double& v : z) v = act == 0 ? std::tanh(v) : act == 1 ? 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))) : relu(v);
            return z;
        };
    };
    for (std::size_t batch : {1, 5, 70}) {
        check_forward<f::program<double, d_train_y>>(batch, 1e-12, ref_for(norm::trainable, 0, true));
        check_forward<f::program<double, d_fixed_y>>(batch, 1e-12, ref_for(norm::fixed, 1, true));
        check_forward<f::program<double, d_compat_y>>(batch, 1e-12, ref_for(norm::compat, 2, false));
        check_forward<f::program<float, d_train_y>>(batch, 1e-5, ref_for(norm::trainable, 0, true));
    }
    // variables and initializers in creation order; the fixed norm is not trainable
    CHECK(d_train.n_inits == 3);
    CHECK(d_fixed.n_inits == 3);
    CHECK(d_compat.n_inits == 1);
    {
        static constexpr auto fixed_loss = f::batch_mean(f::sum(d_fixed_y));
        using T = f::train_program<double, fixed_loss, d_fixed>;
        CHECK(T::n_trainable == 2);  // kernel, bias; not kernel_norm
        CHECK(T::trainable[0] == "d/kernel");
        CHECK(T::trainable[1] == "d/bias");
        CHECK(T::n_params == 3);
    }
    // the penalty: l1 sum |W| + l2 sum W^2 on the kernel, 0.5 sum b^2 on the bias
    {
        leaves L;
        const double got = test::run<f::program<double, d_reg_loss>>(L, 4)[0][0];
        const vec y = dense(L, get(L, "x"), 4, 4, 3, "d", norm::none);
        double want = 0;
        for (double v : y) want += sigmoid(v) / 4;
        for (double w : get(L, "d/kernel")) want += 0.01 * std::abs(w) + 0.02 * w * w;
        for (double b : get(L, "d/bias")) want += 0.5 * b * b;
        CHECK(got == doctest::Approx(want).epsilon(1e-12));
    }
    test::check_derivatives<f::grad_program<double, d_train_y>, f::jvp_program<double, d_train_y>>(3);
    test::check_derivatives<f::grad_program<double, d_reg_loss>, f::jvp_program<double, d_reg_loss>>(4);
}

TEST_CASE("layers: Dense's inactive-relu monitor, documented and source statistics, in a training step") {
    for (bool compat : {false, true}) {
        leaves L;
        const std::size_t batch = 9;
        std::vector<vec> after;
        if (compat) after = train_step<f::train_program<double, d_monc_loss, d_monc>>(L, batch);
        else after = train_step<f::train_program<double, d_mon_loss, d_mon>>(L, batch);
        using P = f::train_program<double, d_mon_loss, d_mon>;
        CHECK(P::n_updates == 1);
        CHECK(P::n_trainable == 2);
        const std::size_t slot = P::parameters::position("d/inactive_relu_count_moving_avg");
        REQUIRE(slot < P::n_params);
        const vec z = flat_ref::dense(L, flat_ref::get(L, "x"), batch, 4, 5, "d", flat_ref::norm::none);
        const vec& m0 = flat_ref::get(L, "d/inactive_relu_count_moving_avg");
        for (std::size_t j = 0; j < 5; ++j) {
            double nz = 0;
            for (std::size_t b = 0; b < batch; ++b) nz += z[b * 5 + j] > 0;
            const double c = compat ? 5.0 - nz : nz / batch;
            CHECK(after[slot][j] == doctest::Approx(0.75 * m0[j] + 0.25 * c).epsilon(1e-12));
        }
    }
}

TEST_CASE("layers: BatchNorm train / predict / renorm against Keras' formulas; moving statistics; derivatives") {
    using namespace flat_ref;
    auto bn_ref = [](bool train) {
        return [=](leaves& L, std::size_t batch, bool prepare) {
            if (prepare) {
                positive_bn_state(L, "bn", 4);
                return vec{};
            }
            return bn(L, get(L, "x"), batch, 3, 4, "bn", train);
        };
    };
    for (std::size_t batch : {1, 5, 70}) {
        check_forward<f::program<double, bn_tr_y>>(batch, 1e-10, bn_ref(true));
        check_forward<f::program<double, bn_ev_y>>(batch, 1e-12, bn_ref(false));
        check_forward<f::program<float, bn_tr_y>>(batch, 1e-4, bn_ref(true));
    }
    // moving statistics after a step: v - (v - value)(1 - momentum)
    {
        leaves L;
        positive_bn_state(L, "bn", 4);
        const std::size_t batch = 6;
        using P = f::train_program<double, bn_tr_loss, bn_tr>;
        const auto after = train_step<P>(L, batch);
        CHECK(P::n_updates == 2);
        CHECK(P::n_trainable == 2);
        const bn_stats st = moments(get(L, "x"), batch, 3, 4);
        const std::size_t mm = P::parameters::position("bn/moving_mean"), mv = P::parameters::position("bn/moving_variance");
        for (std::size_t j = 0; j < 4; ++j) {
            CHECK(after[mm][j] == doctest::Approx(get(L, "bn/moving_mean")[j] - (get(L, "bn/moving_mean")[j] - st.mean[j]) * 0.01).epsilon(1e-12));
            CHECK(after[mv][j] == doctest::Approx(get(L, "bn/moving_variance")[j] - (get(L, "bn/moving_variance")[j] - st.var[j]) * 0.01).epsilon(1e-12));
        }
    }
    // renorm: y = BN(x) with scale r gamma, offset d gamma + beta (r, d clipped), five updates
    {
        leaves L;
        positive_bn_state(L, "bn", 4);
        const std::size_t batch = 7;
        const vec y = forward<f::program<double, bn_rn_y>>(L, batch);
        using P = f::train_program<double, bn_rn_loss, bn_rn>;
        CHECK(P::n_updates == 5);
        CHECK(P::n_trainable == 2);
        const auto after = train_step<P>(L, batch);
        const bn_stats st = moments(get(L, "x"), batch, 3, 4);
        vec scale(4), offset(4), sd(4);
        for (std::size_t j = 0; j < 4; ++j) {
            sd[j] = std::sqrt(st.var[j] + 1e-3);
            const double rs = std::max(get(L, "bn/renorm_stddev")[j], std::sqrt(1e-3));
            const double r = std::min(std::max(sd[j] / rs, 0.7), 1.5);
            const double d = std::min(std::max((st.mean[j] - get(L, "bn/renorm_mean")[j]) / rs, -0.3), 0.3);
            scale[j] = r * get(L, "bn/gamma")[j];
            offset[j] = d * get(L, "bn/gamma")[j] + get(L, "bn/beta")[j];
        }
        CHECK(test::max_rel_diff(y, bn_apply(get(L, "x"), 4, st.mean, st.var, offset, scale, 1e-3)) <= 1e-10);
        auto avg = [](double v, double value, double m) { return v - (v - value) * (1 - m); };
        for (std::size_t j = 0; j < 4; ++j) {
            const double new_sd = avg(get(L, "bn/moving_stddev")[j], sd[j], 0.9);
            CHECK(after[P::parameters::position("bn/renorm_mean")][j] == doctest::Approx(avg(get(L, "bn/renorm_mean")[j], st.mean[j], 0.8)));
            CHECK(after[P::parameters::position("bn/renorm_stddev")][j] == doctest::Approx(avg(get(L, "bn/renorm_stddev")[j], sd[j], 0.8)));
            CHECK(after[P::parameters::position("bn/moving_mean")][j] == doctest::Approx(avg(get(L, "bn/moving_mean")[j], st.mean[j], 0.9)));
            CHECK(after[P::parameters::position("bn/moving_stddev")][j] == doctest::Approx(new_sd));
            CHECK(after[P::parameters::position("bn/moving_variance")][j] == doctest::Approx(std::max(new_sd * new_sd - 1e-3, 0.0)));
        }
    }
    test::check_derivatives<f::grad_program<double, bn_tr_loss>, f::jvp_program<double, bn_tr_loss>>(5);
}

TEST_CASE("layers: MLP with weight norm and BatchNorm, predict and train; PReLU names; derivatives; a training step") {
    auto ref = [](bool train) {
        return [=](leaves& L, std::size_t batch, bool prepare) {
            if (prepare) {
                positive_mlp_state(L);
                return vec{};
            }
            return mlp_reference(L, batch, train);
        };
    };
    for (std::size_t batch : {1, 5, 70}) {
        check_forward<f::program<double, mlp_pr_y>>(batch, 1e-11, ref(false));
        check_forward<f::program<double, mlp_tr_y>>(batch, 1e-9, ref(true));
    }
    // PReLU per layer: Keras auto-names p_re_lu, p_re_lu_1; no weight norm
    {
        leaves L;
        const std::size_t batch = 4;
        const vec got = forward<f::program<double, mlp_prelu_y>>(L, batch);
        vec h = flat_ref::dense(L, flat_ref::get(L, "x"), batch, 6, 4, "m/dense_0", flat_ref::norm::none);
        for (std::size_t e = 0; e < h.size(); ++e) h[e] = h[e] > 0 ? h[e] : flat_ref::get(L, "m/p_re_lu/alpha")[e % 4] * h[e];
        h = flat_ref::dense(L, h, batch, 4, 3, "m/dense_1", flat_ref::norm::none);
        for (std::size_t e = 0; e < h.size(); ++e) h[e] = h[e] > 0 ? h[e] : flat_ref::get(L, "m/p_re_lu_1/alpha")[e % 3] * h[e];
        CHECK(test::max_rel_diff(got, h) <= 1e-12);
    }
    using G = f::grad_program<double, mlp_tr_loss>;
    test::check_derivatives<G, f::jvp_program<double, mlp_tr_loss>>(4, 2e-6);
    // one training step: 6 moving statistics written, 15 trainable gradients equal grad_program's
    using P = f::train_program<double, mlp_tr_loss, mlp_tr>;
    CHECK(P::n_updates == 6);
    CHECK(P::n_trainable == 15);
    leaves L;
    positive_mlp_state(L);
    const auto g = test::run<G>(L, 9);
    const auto t = test::run<P>(L, 9);
    CHECK(t[0][0] == doctest::Approx(g[0][0]).epsilon(1e-12));
    for (std::size_t i = 0; i < P::n_trainable; ++i) {
        const std::string_view name = P::trainable[i];
        std::size_t k = 0;
        while (k < G::tab.n_wrt && G::tab.name_of(G::tab.wrt[k]) != name) ++k;
        REQUIRE(k < G::tab.n_wrt);
        CHECK(test::max_rel_diff(t[1 + i], g[1 + k]) <= 1e-12);
    }
}

TEST_CASE("layers: initialize is deterministic per variable and the same for scoring and training programs") {
    using S = f::program<float, mlp_pr_y>;
    using T = f::train_program<float, mlp_tr_loss, mlp_tr>;
    S::parameters ps;
    T::parameters pt, pt2;
    fl::initialize<mlp_pr>(ps, 7);
    fl::initialize<mlp_tr>(pt, 7);
    fl::initialize<mlp_tr>(pt2, 8);
    for (std::size_t k = 0; k < S::n_params; ++k) {
        const auto n = S::parameters::names[k];
        const std::size_t j = T::parameters::position(n);
        REQUIRE(j < T::n_params);
        const auto a = ps.get(k), b = pt.get(j);
        for (std::size_t e = 0; e < a.size(); ++e) CHECK(a[e] == b[e]);
    }
    // gamma ones, beta / moving_mean zeros, moving_variance ones, biases zeros
    for (float v : pt.get<"mlp/BatchNorm/out/gamma">()) CHECK(v == 1.f);
    for (float v : pt.get<"mlp/BatchNorm/out/moving_variance">()) CHECK(v == 1.f);
    for (float v : pt.get<"mlp/BatchNorm/out/moving_mean">()) CHECK(v == 0.f);
    for (float v : pt.get<"mlp/dense_1/bias">()) CHECK(v == 0.f);
    // the trainable kernel norm starts at the kernel's column norms (W = W0 at init)
    const auto k = pt.get<"mlp/dense_0/kernel">();
    const auto g = pt.get<"mlp/dense_0/trainable_kernel_norm">();
    for (std::size_t j = 0; j < 8; ++j) {
        double s = 0;
        for (std::size_t i = 0; i < 6; ++i) s += double(k[i * 8 + j]) * k[i * 8 + j];
        CHECK(g[j] == doctest::Approx(std::sqrt(s)).epsilon(1e-6));
    }
    // Glorot-uniform kernels: within the limit, not constant, another seed another draw
    const double lim = std::sqrt(6.0 / (6 + 8));
    bool differs = false;
    for (std::size_t e = 0; e < k.size(); ++e) {
        CHECK(std::abs(k[e]) <= lim);
        differs = differs || k[e] != pt2.get<"mlp/dense_0/kernel">()[e];
    }
    CHECK(differs);
}

TEST_CASE("layers: results carry penalties, updates and initializers through then() and absorb()") {
    static constexpr auto a = fl::dense<"a", {.units = 3, .kernel_regularizer = cl::regularizer(0.0, 1.0)}>(x4);
    // plain expression code on a's output, then another layer: every declaration kept
    static constexpr auto mid = fl::then(a, f::tanh(a.out()));
    static constexpr auto b = fl::batch_norm<"b", mode::train>(mid);
    static_assert(b.n_inits == 2 + 4);
    static_assert(b.n_updates == 2);
    static_assert(b.has_penalty());
    // an unrelated graph merged in: ids remapped
    static constexpr auto other = fl::dense<"o", {.units = 2, .bias_regularizer = cl::regularizer(0.0, 2.0)}>(f::input<"z", 3>);
    static constexpr auto both = fl::then(other, b);
    static_assert(both.n_inits == 6 + 2);
    static_assert(both.n_updates == 2);
    static constexpr auto pen = both.penalty();
    leaves L;
    const double got = test::run<f::program<double, pen>>(L, 1)[0][0];
    double want = 0;
    for (double w : flat_ref::get(L, "a/kernel")) want += w * w;
    for (double w : flat_ref::get(L, "o/bias")) want += 2 * w * w;
    CHECK(got == doctest::Approx(want).epsilon(1e-12));
}

TEST_CASE("layers: derived parameters (weight-normalised kernels) are computed by prepare(), once per change") {
    using P = f::program<double, mlp_pr_y>;
    static_assert(P::pl.derived_steps >= 3, "the three effective kernels (and BatchNorm's folded scale) are derived");
    leaves L;
    positive_mlp_state(L);
    test::fill<P>(L, 5);
    const vec want = mlp_reference(L, 5, false);
    P::parameters p;
    for (std::size_t k = 0; k < P::n_params; ++k) {
        auto w = p.get(k);
        for (std::size_t e = 0; e < w.size(); ++e) w[e] = L[P::parameters::names[k]][e];
    }
    P::workspace ws;
    vec y(5);
    P::io io;
    io.input<"x">(L["x"].data()).output<0>(y.data());
    const P::parameters& cp = p;
    CHECK_THROWS_AS(P::run(cp, ws, 5, io), ctrec::error);  // changed since prepare()
    p.prepare();
    CHECK(p.prepared());
    P::run(cp, ws, 5, io);
    CHECK(test::max_rel_diff(y, want) <= 1e-11);
    // a weight changes: stale until prepared again; a non-const run prepares by itself
    p.get<"mlp/dense_0/trainable_kernel_norm">()[0] *= 2.0;
    CHECK_FALSE(p.prepared());
    CHECK_THROWS_AS(P::run(cp, ws, 5, io), ctrec::error);
    P::run(p, ws, 5, io);
    CHECK(p.prepared());
    L["mlp/dense_0/trainable_kernel_norm"][0] *= 2.0;
    CHECK(test::max_rel_diff(y, mlp_reference(L, 5, false)) <= 1e-11);
}
