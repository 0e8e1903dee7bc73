// Helper layers and the layers with an MLP tower
// : AddBias (spec layers-core-and-cross.md 1.7), LayerNorm (1.8),
// Sum/Avg/MaxPooling (1.10, with the tie-splitting Max gradient), merge_tensor_list (1.1), CDot
// (section 6) and SeNet (layers-trans-seq-multitask-nas.md 1.2: tensor and list inputs, cmp_dim
// None, 26 fields), against naive float64 references written from the spec (CPU and reference
// backends, float and double, batches 1, 5, 70), float64 central differences and JVP/VJP
// duality, variable names, initializers and penalties. (GroupInt, AllInt, CAN:
// test_flat_crossing.cpp; two TUs keep each compile well under a minute.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ctrec/layers/add_bias.hpp"
#include "ctrec/layers/cdot.hpp"
#include "ctrec/layers/layer_norm.hpp"
#include "ctrec/layers/merge_list.hpp"
#include "ctrec/layers/pooling.hpp"
#include "ctrec/layers/senet.hpp"
#include "layer_reference.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
namespace init = ctrec::init;
using ctrec::make_dims;
using flat_ref::get;
using flat_ref::vec;
using test::leaves;
using test::check_forward;
using test::check_forward_all;

namespace {

std::string var_name(const fl::result& r, std::size_t i) { return std::string(r.g.name_of(r.inits[i].var)); }

// ---- AddBias ----------------------------------------------------------------------------------
constexpr auto x34 = f::input<"x", 3, 4>;
constexpr auto ab = fl::add_bias<"ab", {.regularizer = cl::regularizer(0.01, 0.02)}>(x34);
constexpr auto ab_y = ab.out();
constexpr auto ab_loss = f::batch_mean(f::sum(f::tanh(ab_y))) + ab.penalty();
constexpr auto x33 = f::input<"x", 3, 3>;
constexpr auto ab_cf = fl::add_bias<"ab", {.format = cl::data_format::channels_first}>(x33);
constexpr auto ab_cf_y = ab_cf.out();

// ---- LayerNorm ----------------------------------------------------------------------------------
constexpr auto x35 = f::input<"x", 3, 5>;
constexpr auto ln = fl::layer_norm<"ln", {.initializer = init::HeUniform{}, .regularizer = cl::regularizer(0.0, 0.5)}>(x35);
constexpr auto ln_y = ln.out();
constexpr auto ln_pen = ln.penalty();
constexpr auto x5 = f::input<"x", 5>;
constexpr auto ln1 = fl::layer_norm<"ln">(x5);
constexpr auto ln1_y = ln1.out();
constexpr auto x2_3_4 = f::input<"x", 2, 3, 4>;
constexpr auto ln3 = fl::layer_norm<"ln">(x2_3_4);
constexpr auto ln3_y = ln3.out();

// x (rows of width D) -> layer-normalised rows with beta, gamma of scope s
vec layer_norm_ref(leaves& L, const vec& x, std::size_t D, const std::string& s) {
    const vec& beta = get(L, s + "/beta");
    const vec& gamma = get(L, s + "/gamma");
    vec y(x.size());
    for (std::size_t r = 0; r < x.size() / D; ++r) {
        double mu = 0, var = 0;
        for (std::size_t j = 0; j < D; ++j) mu += x[r * D + j] / D;
        for (std::size_t j = 0; j < D; ++j) var += (x[r * D + j] - mu) * (x[r * D + j] - mu) / D;
        for (std::size_t j = 0; j < D; ++j) y[r * D + j] = gamma[j] * (x[r * D + j] - mu) / std::sqrt(var + 1e-6) + beta[j];
    }
    return y;
}

// ---- pooling ---------------------------------------------------------------------------------------
constexpr auto pa = f::input<"a", 2, 3>;
constexpr auto pb = f::input<"b", 2, 3>;
constexpr auto pc = f::input<"c", 2, 3>;
constexpr auto sp_y = fl::sum_pooling({pa, pb, pc});
constexpr auto ap_y = fl::avg_pooling({pa, pb, pc});
constexpr auto mp_y = fl::max_pooling({pa, pb, pc});
constexpr auto pool_y = f::concat(0, {sp_y, ap_y, mp_y});  // (6, 3)
// one input comes back unchanged for all three
static_assert(fl::sum_pooling({pa}).id == pa.id && fl::avg_pooling({pa}).id == pa.id && fl::max_pooling({pa}).id == pa.id);
static_assert(fl::max_pooling({pa}).g.n == pa.g.n);

// ---- merge_tensor_list ------------------------------------------------------------------------------
// every case of the table, flattened and concatenated into one output (lists: their entries)
constexpr fl::result merge_model() {
    fl::result m;
    f::val x = m.input("x", make_dims<3, 4>());
    f::val w = m.input("w", make_dims<12>());
    f::val a = m.input("a", make_dims<2, 3>()), b = m.input("b", make_dims<2, 3>());
    f::val parts[16]{};
    std::size_t n = 0;
    auto flat = [](f::val v) { return f::reshape(v, f::dims_of({v.shape().size()})); };
    auto push = [&](const fl::val_list& l, std::size_t want_n, bool want_list) {
        if (l.n != want_n || l.list != want_list) throw "unexpected list form";
        for (std::size_t i = 0; i < l.n; ++i) parts[n++] = flat(l[i]);
    };
    using T = cl::merge_type;
    const fl::val_list st = fl::merge_tensor(T::stack, false, x);
    if (st.single().rank() != 2) throw "stack keeps (N, K)";
    const fl::val_list ct = fl::merge_tensor(T::concat, true, x);
    if (ct[0].rank() != 1 || ct[0].dim(0) != 12) throw "concat gives (N K)";
    push(ct, 1, true);                                          // x row-major
    push(fl::merge_tensor(T::none, false, x), 3, true);         // x's 3 rows
    push(fl::merge_tensor(T::none, false, w), 1, false);        // (W): unchanged even for none
    const fl::val_list fs = fl::merge_features(T::stack, 3, false, w);
    if (fs[0].rank() != 2 || fs[0].dim(0) != 3 || fs[0].dim(1) != 4) throw "features stack gives (F, W / F)";
    push(fl::merge_features(T::none, 4, false, w), 4, true);    // w as 4 (3) pieces
    const f::val ab2[2] = {a, b};
    const fl::val_list ls = fl::merge_list(T::stack, false, ab2, 2);
    if (ls[0].rank() != 3 || ls[0].dim(0) != 2) throw "list stack adds axis 0";
    push(ls, 1, false);                                         // a then b
    push(fl::merge_list(T::concat, true, ab2, 2), 1, true);     // (4, 3): a then b
    push(fl::merge_list(T::none, false, ab2, 2), 2, true);      // the list itself
    m.set_out(f::concat(0, parts, n));
    return m;
}
constexpr auto merge_r = merge_model();
constexpr auto merge_y = merge_r.out();

// ---- SeNet ---------------------------------------------------------------------------------------
constexpr auto x43 = f::input<"x", 4, 3>;
constexpr auto se = fl::senet<"se", {.num_feature = 4, .cmp_dim = 2}>(x43);
constexpr auto se_y = se.out();
constexpr auto se0 = fl::senet<"se", {.num_feature = 4, .cmp_dim = 0}>(x43);
constexpr auto se0_y = se0.out();
constexpr auto se_reg = fl::senet<"se", {.num_feature = 4, .cmp_dim = 2, .kernel_regularizer = cl::regularizer(0.0, 0.25),
                                         .bias_regularizer = cl::regularizer(0.5, 0.0)}>(x43);
constexpr auto se_reg_pen = se_reg.penalty();
constexpr auto e0 = f::input<"e0", 2>;
constexpr auto e1 = f::input<"e1", 3>;
constexpr auto e2 = f::input<"e2", 4>;
constexpr auto sl = fl::senet<"sl", {.num_feature = 3, .cmp_dim = 2}>({e0, e1, e2});
constexpr auto sl_y = sl.out();

// 26 fields in one model: SeNet's list path and MaxPooling take any number of values
constexpr std::size_t n26 = 26;
constexpr fl::result fields26_model() {
    fl::result m;
    f::val es[n26]{};
    for (std::size_t i = 0; i < n26; ++i) es[i] = m.input((f::name_string("f") + i).view(), make_dims<2>());
    const fl::val_list l = fl::senet(m, "s26", {.num_feature = n26, .cmp_dim = 0}, es, n26);
    m.set_out(f::concat(0, {l.single(), fl::max_pooling(es, n26), fl::avg_pooling(es, n26)}));
    return m;
}
constexpr auto f26 = fields26_model();
constexpr auto f26_y = f26.out();

// z (batch x N) -> a (batch x N) through the cmp_tower (weight norm, relu then sigmoid)
vec senet_weights(leaves& L, const vec& z, std::size_t batch, std::size_t N, std::size_t C, const std::string& s) {
    using flat_ref::norm;
    vec h = flat_ref::dense(L, z, batch, N, C, s + "/cmp_tower/dense_0", norm::trainable);
    for (double& v : h) v = flat_ref::relu(v);
    vec a = flat_ref::dense(L, h, batch, C, N, s + "/cmp_tower/dense_1", norm::trainable);
    for (double& v : a) v = flat_ref::sigmoid(v);
    return a;
}
vec senet_tensor_ref(leaves& L, std::size_t batch, std::size_t C) {
    const std::size_t N = 4, K = 3;
    const vec& x = get(L, "x");
    vec z(batch * N, 0.0);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t k = 0; k < K; ++k) z[b * N + n] += x[(b * N + n) * K + k] / K;
    const vec a = C ? senet_weights(L, z, batch, N, C, "se") : z;
    vec y(x.size());
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t k = 0; k < K; ++k) y[(b * N + n) * K + k] = a[b * N + n] * x[(b * N + n) * K + k];
    return y;
}


// ---- CDot ----------------------------------------------------------------------------------------
constexpr cl::cdot_config<1> cd_cfg{.project_dim = 2, .compress_units = {5}, .activation = cl::act_tanh,
                                    .regularizer = cl::regularizer(0.0, 0.5)};
constexpr auto cd = fl::cdot<"cd", cd_cfg>(x34);
constexpr auto cd_y = cd.out();
constexpr auto cd_pen = cd.penalty();
constexpr auto cd0 = fl::cdot<"cd", cl::cdot_config<0>{.project_dim = 2}>(x34);  // one linear tower layer
constexpr auto cd0_y = cd0.out();

// Spec 6.5 per example: Q = X^T Wp, c = tower(flatten Q), Z = X reshape(c, (K, P)), out = [Z, c].
vec cdot_ref(leaves& L, std::size_t batch, std::size_t hidden) {
    using flat_ref::norm;
    const std::size_t N = 3, K = 4, P = 2;
    const vec& x = get(L, "x");
    const vec& Wp = get(L, "cd/project_weight");
    vec q(batch * K * P, 0.0);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t k = 0; k < K; ++k)
            for (std::size_t p = 0; p < P; ++p)
                for (std::size_t n = 0; n < N; ++n) q[b * K * P + k * P + p] += x[(b * N + n) * K + k] * Wp[n * P + p];
    vec c;
    if (hidden) {
        vec h = flat_ref::dense(L, q, batch, K * P, hidden, "cd/compress_tower/dense_0", norm::trainable);
        for (double& v : h) v = std::tanh(v);
        c = flat_ref::dense(L, h, batch, hidden, K * P, "cd/compress_tower/dense_1", norm::trainable);
    } else {
        c = flat_ref::dense(L, q, batch, K * P, K * P, "cd/compress_tower/dense_0", norm::trainable);
    }
    vec y;
    for (std::size_t b = 0; b < batch; ++b) {
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t p = 0; p < P; ++p) {
                double z = 0;
                for (std::size_t k = 0; k < K; ++k) z += x[(b * N + n) * K + k] * c[b * K * P + k * P + p];
                y.push_back(z);
            }
        y.insert(y.end(), c.begin() + b * K * P, c.begin() + (b + 1) * K * P);
    }
    return y;
}

} // namespace

TEST_CASE("add_bias: x + bias of the whole per-example shape; name, zeros, penalty; channels_first where equal; derivatives") {
    auto ref = [](leaves& L, std::size_t batch, bool prepare) {
        if (prepare) return vec{};
        const vec& x = get(L, "x");
        const vec& bias = get(L, "ab/bias");
        REQUIRE(bias.size() == 12);
        vec y(x.size());
        for (std::size_t e = 0; e < x.size(); ++e) y[e] = x[e] + bias[e % 12];
        return y;
    };
    check_forward_all<ab_y>(1e-12, ref);
    CHECK(ab.n_inits == 1);
    CHECK(var_name(ab, 0) == "ab/bias");
    CHECK(ab.inits[0].spec.w == init::spec::which::zeros);
    {
        leaves L;
        const double got = test::run<f::program<double, ab_loss>>(L, 4)[0][0];
        const vec y = ref(L, 4, false);
        double want = 0;
        for (double v : y) want += std::tanh(v) / 4;
        for (double w : get(L, "ab/bias")) want += 0.01 * std::abs(w) + 0.02 * w * w;
        CHECK(got == doctest::Approx(want).epsilon(1e-12));
    }
    test::check_derivatives<f::grad_program<double, ab_loss>, f::jvp_program<double, ab_loss>>(3);
    // channels_first on (3, 3): the same as channels_last
    {
        leaves L;
        const vec got = test::run<f::program<double, ab_cf_y>>(L, 5)[0];
        for (std::size_t e = 0; e < got.size(); ++e) CHECK(got[e] == get(L, "x")[e] + get(L, "ab/bias")[e % 9]);
    }
}

TEST_CASE("layer_norm: last axis only, epsilon 1e-6, beta then gamma, penalty on both; ranks 1 and 3; all-ones gives beta") {
    auto ref = [](std::size_t D) {
        return [=](leaves& L, std::size_t batch, bool prepare) {
            if (prepare) return vec{};
            return layer_norm_ref(L, get(L, "x"), D, "ln");
        };
    };
    check_forward_all<ln_y>(1e-11, ref(5));
    check_forward_all<ln1_y>(1e-11, ref(5));
    check_forward_all<ln3_y>(1e-11, ref(4));
    REQUIRE(ln.n_inits == 2);
    CHECK(var_name(ln, 0) == "ln/beta");
    CHECK(var_name(ln, 1) == "ln/gamma");
    CHECK(ln.inits[0].spec.w == init::spec::which::zeros);
    CHECK(ln.inits[1].spec.w == init::spec::which::he_uniform);
    CHECK(ln1.inits[1].spec.w == init::spec::which::ones);  // gamma's default
    CHECK(!ln1.has_penalty());
    {
        leaves L;
        const double got = test::run<f::program<double, ln_pen>>(L, 1)[0][0];
        double want = 0;
        for (double w : get(L, "ln/beta")) want += 0.5 * w * w;
        for (double w : get(L, "ln/gamma")) want += 0.5 * w * w;
        CHECK(got == doctest::Approx(want).epsilon(1e-12));
    }
    // the original test: all-ones rows have s2 = 0 and x - mu = 0, so the output is exactly beta
    {
        leaves L;
        L["x"] = vec(7 * 15, 1.0);
        const vec got = test::run<f::program<double, ln_y>>(L, 7)[0];
        for (std::size_t e = 0; e < got.size(); ++e) CHECK(got[e] == get(L, "ln/beta")[e % 5]);
    }
    test::check_derivatives<f::grad_program<double, ln_y>, f::jvp_program<double, ln_y>>(3);
    test::check_derivatives<f::grad_program<double, ln3_y>, f::jvp_program<double, ln3_y>>(2);
}

TEST_CASE("pooling: sum, avg and max of three inputs against the spec; derivatives") {
    auto ref = [](leaves& L, std::size_t batch, bool prepare) {
        if (prepare) return vec{};
        const vec &a = get(L, "a"), &b = get(L, "b"), &c = get(L, "c");
        vec y(batch * 18);
        for (std::size_t ex = 0; ex < batch; ++ex)
            for (std::size_t i = 0; i < 6; ++i) {
                const std::size_t e = ex * 6 + i;
                y[ex * 18 + i] = a[e] + b[e] + c[e];
                y[ex * 18 + 6 + i] = (a[e] + b[e] + c[e]) / 3;
                y[ex * 18 + 12 + i] = std::max({a[e], b[e], c[e]});
            }
        return y;
    };
    check_forward_all<pool_y>(1e-12, ref);
    test::check_derivatives<f::grad_program<double, pool_y>, f::jvp_program<double, pool_y>>(3);
}

TEST_CASE("max_pooling splits the gradient equally among tied inputs (TF's reduce_max gradient)") {
    using G = f::grad_program<double, mp_y>;
    using GR = G::with_backend<f::reference_backend>;
    for (int backend = 0; backend < 2; ++backend) {
        const std::size_t batch = 4;
        leaves L;
        test::fill<G>(L, batch);
        vec &a = L["a"], &b = L["b"], &c = L["c"];
        // element e: e % 3 == 0 a three-way tie, 1 a tie of a and b above c, 2 no tie
        for (std::size_t e = 0; e < a.size(); ++e) {
            if (e % 3 == 0) a[e] = b[e] = c[e] = 0.25 + 0.01 * e;
            if (e % 3 == 1) a[e] = b[e] = 0.5, c[e] = 0.125;
        }
        const auto g = backend ? test::run<GR>(L, batch) : test::run<G>(L, batch);
        const vec& ct = get(L, "cotangent");
        const std::size_t ga = G::grad<"a">, gb = G::grad<"b">, gc = G::grad<"c">;
        for (std::size_t e = 0; e < a.size(); ++e) {
            INFO("element " << e << ", backend " << backend);
            CHECK(g[0][e] == std::max({a[e], b[e], c[e]}));
            const double top = std::max({a[e], b[e], c[e]});
            const double n = (a[e] == top) + (b[e] == top) + (c[e] == top);
            CHECK(n == (e % 3 == 0 ? 3 : e % 3 == 1 ? 2 : 1));
            CHECK(g[ga][e] == doctest::Approx(ct[e] * (a[e] == top) / n).epsilon(1e-14));
            CHECK(g[gb][e] == doctest::Approx(ct[e] * (b[e] == top) / n).epsilon(1e-14));
            CHECK(g[gc][e] == doctest::Approx(ct[e] * (c[e] == top) / n).epsilon(1e-14));
        }
    }
}

TEST_CASE("merge_tensor_list: one (N, K) tensor, one (W) tensor with and without num_feature, lists; keep_list") {
    auto ref = [](leaves& L, std::size_t batch, bool prepare) {
        if (prepare) return vec{};
        const vec &x = get(L, "x"), &w = get(L, "w"), &a = get(L, "a"), &b = get(L, "b");
        vec y;
        for (std::size_t ex = 0; ex < batch; ++ex) {
            auto put = [&](const vec& v, std::size_t size) { y.insert(y.end(), v.begin() + ex * size, v.begin() + (ex + 1) * size); };
            put(x, 12);  // concat: row-major
            put(x, 12);  // none: the rows in order
            put(w, 12);  // (W) unchanged
            put(w, 12);  // 4 pieces of 3 in order
            for (int k = 0; k < 3; ++k) put(a, 6), put(b, 6);  // stack, concat, none: a then b
        }
        return y;
    };
    check_forward_all<merge_y>(0.0, ref);
}

TEST_CASE("senet: sigmoid(relu(z W1 + b1) W2 + b2) * X with weight norm; cmp_dim None; names; penalties; derivatives") {
    auto ref = [](std::size_t C) {
        return [=](leaves& L, std::size_t batch, bool prepare) {
            if (prepare) return vec{};
            return senet_tensor_ref(L, batch, C);
        };
    };
    check_forward_all<se_y>(1e-12, ref(2));
    check_forward_all<se0_y>(1e-12, ref(0));
    CHECK(se0.n_inits == 0);
    REQUIRE(se.n_inits == 6);
    const char* names[] = {"kernel", "trainable_kernel_norm", "bias"};
    for (std::size_t i = 0; i < 6; ++i) CHECK(var_name(se, i) == "se/cmp_tower/dense_" + std::to_string(i / 3) + "/" + names[i % 3]);
    CHECK(se.inits[0].spec.w == init::spec::which::glorot_uniform);
    CHECK(se.inits[2].spec.w == init::spec::which::zeros);
    CHECK(!se.has_penalty());
    {
        leaves L;
        const double got = test::run<f::program<double, se_reg_pen>>(L, 1)[0][0];
        double want = 0;
        for (const char* k : {"se/cmp_tower/dense_0/kernel", "se/cmp_tower/dense_1/kernel"})
            for (double w : get(L, k)) want += 0.25 * w * w;
        for (const char* k : {"se/cmp_tower/dense_0/bias", "se/cmp_tower/dense_1/bias"})
            for (double w : get(L, k)) want += 0.5 * std::abs(w);
        CHECK(got == doctest::Approx(want).epsilon(1e-12));
    }
    test::check_derivatives<f::grad_program<double, se_y>, f::jvp_program<double, se_y>>(3);
}

TEST_CASE("senet: a list of widths 2, 3, 4 (concat of a_n e_n); derivatives") {
    auto ref = [](leaves& L, std::size_t batch, bool prepare) {
        if (prepare) return vec{};
        const std::size_t K[3] = {2, 3, 4};
        vec z(batch * 3, 0.0);
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t n = 0; n < 3; ++n)
                for (std::size_t k = 0; k < K[n]; ++k) z[b * 3 + n] += get(L, "e" + std::to_string(n))[b * K[n] + k] / K[n];
        const vec a = senet_weights(L, z, batch, 3, 2, "sl");
        vec y;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t n = 0; n < 3; ++n)
                for (std::size_t k = 0; k < K[n]; ++k) y.push_back(a[b * 3 + n] * get(L, "e" + std::to_string(n))[b * K[n] + k]);
        return y;
    };
    check_forward_all<sl_y>(1e-12, ref);
    CHECK(sl.n_inits == 6);
    CHECK(var_name(sl, 3) == "sl/cmp_tower/dense_1/kernel");
    test::check_derivatives<f::grad_program<double, sl_y>, f::jvp_program<double, sl_y>>(3);
}

TEST_CASE("senet and pooling on 26 fields: no operand cap") {
    // 26 fields of width 2: SeNet without a tower (a_n = mean(f_n)), max and avg pooling
    for (std::size_t batch : {1, 5}) {
        leaves L;
        const vec got = test::run<f::program<double, f26_y>>(L, batch)[0];
        REQUIRE(got.size() == batch * (2 * n26 + 4));
        for (std::size_t b = 0; b < batch; ++b) {
            vec mx(2, -1e300), av(2, 0.0);
            for (std::size_t i = 0; i < n26; ++i) {
                const vec& fi = get(L, "f" + std::to_string(i));
                const double a = (fi[b * 2] + fi[b * 2 + 1]) / 2;
                for (std::size_t k = 0; k < 2; ++k) {
                    CHECK(got[b * (2 * n26 + 4) + i * 2 + k] == doctest::Approx(a * fi[b * 2 + k]).epsilon(1e-12));
                    mx[k] = std::max(mx[k], fi[b * 2 + k]);
                    av[k] += fi[b * 2 + k];
                }
            }
            for (std::size_t k = 0; k < 2; ++k) {
                CHECK(got[b * (2 * n26 + 4) + 2 * n26 + k] == mx[k]);
                CHECK(got[b * (2 * n26 + 4) + 2 * n26 + 2 + k] == doctest::Approx(av[k] / n26).epsilon(1e-12));
            }
        }
    }
}

TEST_CASE("cdot: [X . reshape(tower(X^T Wp)), tower(X^T Wp)] with a weight-norm tower; names; penalty; derivatives") {
    auto ref = [](std::size_t hidden) {
        return [=](leaves& L, std::size_t batch, bool prepare) {
            if (prepare) return vec{};
            return cdot_ref(L, batch, hidden);
        };
    };
    check_forward_all<cd_y>(1e-12, ref(5));
    check_forward_all<cd0_y>(1e-12, ref(0));
    static_assert(cd_y.shape().size() == 3 * 2 + 4 * 2);
    // project_weight first, then the tower (kernel, norm, bias per layer)
    REQUIRE(cd.n_inits == 7);
    CHECK(var_name(cd, 0) == "cd/project_weight");
    const char* names[] = {"kernel", "trainable_kernel_norm", "bias"};
    for (std::size_t i = 1; i < 7; ++i)
        CHECK(var_name(cd, i) == "cd/compress_tower/dense_" + std::to_string((i - 1) / 3) + "/" + names[(i - 1) % 3]);
    CHECK(cd.inits[0].spec.w == init::spec::which::glorot_normal);
    CHECK(cd.inits[1].spec.w == init::spec::which::glorot_normal);
    CHECK(cd.inits[3].spec.w == init::spec::which::zeros);
    CHECK(cd0.n_inits == 4);
    CHECK(!cd0.has_penalty());
    {
        leaves L;
        const double got = test::run<f::program<double, cd_pen>>(L, 1)[0][0];
        double want = 0;
        for (const char* k : {"cd/project_weight", "cd/compress_tower/dense_0/kernel", "cd/compress_tower/dense_1/kernel"})
            for (double w : get(L, k)) want += 0.5 * w * w;
        CHECK(got == doctest::Approx(want).epsilon(1e-12));
    }
    test::check_derivatives<f::grad_program<double, cd_y>, f::jvp_program<double, cd_y>>(3);
}
