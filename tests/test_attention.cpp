// CIN, AutoInt and DMR_U2I : forward
// against naive float64 references written from the spec (layers-core-and-cross.md 9;
// layers-trans-seq-multitask-nas.md 1.1, 2.4) on the CPU and reference backends at batch 1, 5
// and 70, float too; float64 central differences and JVP/VJP duality; the spec's reference
// values; variable names, shapes, initializers and penalties.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/autoint.hpp"
#include "ctrec/layers/cin.hpp"
#include "ctrec/layers/dmr_u2i.hpp"
#include "layer_reference.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using ctrec::make_dims;
using flat_ref::get;
using flat_ref::vec;
using test::leaves;
using test::forward;
using test::check_forward;

namespace {

constexpr auto no_prep = [](leaves&, std::size_t) {};
template <class P>
std::vector<std::string> param_names() {
    std::vector<std::string> v;
    for (std::size_t k = 0; k < P::n_params; ++k) v.emplace_back(P::parameters::names[k]);
    std::sort(v.begin(), v.end());
    return v;
}
template <class P>
ctrec::dims param_shape(std::string_view n) {
    for (std::size_t k = 0; k < P::n_params; ++k)
        if (P::tab.name_of(P::param_ids[k]) == n) return P::tab.nodes[P::param_ids[k]].shape;
    return {};
}

// ---- CIN (spec 9.5): the outer-product tensor Z built explicitly ----------------------------------
vec cin_reference(leaves& L, std::size_t batch, std::size_t N, std::size_t K, const std::vector<std::size_t>& H,
                  double (*act)(double)) {
    const vec& x = get(L, "x");
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        std::vector<vec> X0(K, vec(N));
        for (std::size_t d = 0; d < K; ++d)
            for (std::size_t m = 0; m < N; ++m) X0[d][m] = x[(b * N + m) * K + d];
        auto Xh = X0;
        for (std::size_t t = 0; t < H.size(); ++t) {
            const std::string conv = t == 0 ? "c/conv1d" : "c/conv1d_" + std::to_string(t);
            const vec& W = get(L, conv + "/kernel");
            const vec& bias = get(L, conv + "/bias");
            const std::size_t Hp = Xh[0].size();
            std::vector<vec> Z(K, vec(Hp * N));
            for (std::size_t d = 0; d < K; ++d)
                for (std::size_t h = 0; h < Hp; ++h)
                    for (std::size_t m = 0; m < N; ++m) Z[d][h * N + m] = Xh[d][h] * X0[d][m];
            std::vector<vec> Y(K, vec(H[t]));
            for (std::size_t d = 0; d < K; ++d)
                for (std::size_t j = 0; j < H[t]; ++j) {
                    double s = bias[j];
                    for (std::size_t i = 0; i < Hp * N; ++i) s += Z[d][i] * W[i * H[t] + j];
                    Y[d][j] = t + 1 < H.size() ? act(s) : s;
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
double identity(double z) { return z; }
double tanh_(double z) { return std::tanh(z); }
double relu_(double z) { return z > 0 ? z : 0; }

constexpr auto x45 = f::input<"x", 4, 5>;
constexpr auto x34 = f::input<"x", 3, 4>;
constexpr auto cin_tanh = fl::cin<"c", cl::cin_config<2>{.hidden_uints = {3, 2}, .activation = cl::act_tanh}>(x45);
constexpr auto cin_tanh_y = cin_tanh.out();
constexpr auto cin_one = fl::cin<"c", cl::cin_config<1>{.hidden_units = {6}}>(x34);
constexpr auto cin_one_y = cin_one.out();
constexpr auto cin_relu = fl::cin<"c", cl::cin_config<3>{.hidden_uints = {4, 3, 2}, .activation = cl::act_relu,
                                                        .regularizer = cl::regularizer(0.25, 0.5)}>(x34);
constexpr auto cin_relu_y = cin_relu.out();
constexpr auto cin_relu_pen = cin_relu.penalty();

// ---- AutoInt (spec 1.1.5) ----------------------------------------------------------------------------
vec autoint_reference(const vec& x, std::size_t batch, std::size_t N, std::size_t K, std::size_t layers) {
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        vec X(x.begin() + b * N * K, x.begin() + (b + 1) * N * K);
        for (std::size_t l = 0; l < layers; ++l) {
            vec Y(N * K, 0.0);
            for (std::size_t i = 0; i < N; ++i) {
                vec S(N, 0.0);
                double mx = -1e300, z = 0;
                for (std::size_t j = 0; j < N; ++j) {
                    for (std::size_t k = 0; k < K; ++k) S[j] += X[i * K + k] * X[j * K + k];
                    mx = std::max(mx, S[j]);
                }
                for (std::size_t j = 0; j < N; ++j) z += S[j] = std::exp(S[j] - mx);
                for (std::size_t j = 0; j < N; ++j)
                    for (std::size_t k = 0; k < K; ++k) Y[i * K + k] += S[j] / z * X[j * K + k];
            }
            X = Y;
        }
        out.insert(out.end(), X.begin(), X.end());
    }
    return out;
}
constexpr auto ai_two = fl::autoint<"auto_int", {.layer_num = 2}>(x34);
constexpr auto ai_two_y = ai_two.out();
constexpr auto ai_stack = fl::autoint<"auto_int", {.layer_num = 1, .out_type = cl::merge_type::stack}>(x34);
constexpr auto ai_stack_y = ai_stack.out();
// out_type none and keep_list (merge_tensor_list, as AllInt / SeNet): lists from the in-place
// function, flattened into one output: [stack (12), the 3 rows of none (4 each), keep_list concat (12)]
constexpr fl::result ai_lists_model() {
    fl::result m;
    const f::val x = m.input("x", make_dims<3, 4>());
    using cl::merge_type;
    const fl::val_list st = fl::autoint(m, "a", {.out_type = merge_type::stack}, x);
    const fl::val_list nn = fl::autoint(m, "a", {.out_type = merge_type::none, .keep_list = true}, x);
    const fl::val_list ck = fl::autoint(m, "a", {.keep_list = true}, x);
    const fl::val_list cc = fl::autoint(m, "a", {}, x);
    if (st.list || st.n != 1 || st[0].rank() != 2 || st[0].dim(0) != 3 || st[0].dim(1) != 4) throw "stack: (N, K)";
    if (!nn.list || nn.n != 3 || nn[1].rank() != 1 || nn[1].dim(0) != 4) throw "none: N tensors (K); keep_list ignored";
    if (!ck.list || ck.n != 1 || ck[0].rank() != 1 || ck[0].dim(0) != 12 || cc.list || cc[0].dim(0) != 12) throw "keep_list: [concat]";
    m.set_out(f::concat(0, {f::reshape(st[0], f::dims_of({12})), nn[0], nn[1], nn[2], ck[0]}));
    return m;
}
constexpr auto ai_lists_y = ai_lists_model().out();
static_assert(ai_lists_y.shape() == make_dims<36>());
constexpr auto x32 = f::input<"x", 3, 2>;
constexpr auto ai_spec1 = fl::autoint<"a", {.layer_num = 1}>(x32).out();
constexpr auto ai_spec2 = fl::autoint<"a", {.layer_num = 2}>(x32).out();
constexpr auto ai_zero = fl::autoint<"a", {.layer_num = 0, .out_type = cl::merge_type::stack}>(x32).out();
static_assert(ai_zero.id == x32.id && ai_zero.g.n == x32.g.n);  // layer_num 0: the input itself
static_assert(ai_two_y.shape() == make_dims<12>() && ai_stack_y.shape() == make_dims<3, 4>());

// ---- DMR_U2I (spec 2.4.5) -------------------------------------------------------------------------------
constexpr std::size_t DT = 5, DU = 3, DC = 4, DI = 6;
// act: 0 identity, 1 PReLU ("d/dense/p_re_lu/alpha"), 2 relu; seq shared: one (T, U) for all
vec dmr_reference(leaves& L, std::size_t batch, int act, bool shared, std::size_t T = DT, std::size_t U = DU,
                  std::size_t C = DC, std::size_t I = DI) {
    const vec &seq = get(L, "seq"), &item = get(L, "item"), &pos = get(L, "d/pos_emb"), &ew = get(L, "d/emb_weight"),
              &zw = get(L, "d/z_weight"), &bias = get(L, "d/bias"), &k = get(L, "d/dense/kernel"), &db = get(L, "d/dense/bias");
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        auto S = [&](std::size_t t, std::size_t u) { return seq[((shared ? 0 : b) * T + t) * U + u]; };
        vec l(T, 0.0), alpha(T), m(U, 0.0);
        for (std::size_t t = 0; t < T; ++t)
            for (std::size_t c = 0; c < C; ++c) {
                double v = pos[t * C + c] + bias[c];
                for (std::size_t u = 0; u < U; ++u) v += S(t, u) * ew[u * C + c];
                l[t] += v * zw[c];
            }
        double mx = *std::max_element(l.begin(), l.end()), s = 0;
        for (std::size_t t = 0; t < T; ++t) s += alpha[t] = std::exp(l[t] - mx);
        for (std::size_t u = 0; u < U; ++u)
            for (std::size_t t = 0; t < T; ++t) m[u] += alpha[t] / s * S(t, u);
        for (std::size_t j = 0; j < I; ++j) {
            double z = db[j];
            for (std::size_t u = 0; u < U; ++u) z += m[u] * k[u * I + j];
            const double h = act == 0 ? z : act == 2 ? std::max(z, 0.0) : z > 0 ? z : get(L, "d/dense/p_re_lu/alpha")[j] * z;
            out.push_back(h * item[b * I + j]);
        }
    }
    return out;
}
constexpr auto item6 = f::input<"item", DI>;
constexpr auto seq53 = f::input<"seq", DT, DU>;
constexpr auto dmr_prelu = fl::dmr_u2i<"d", {.cmp_dim = DC}>(item6, seq53);
constexpr auto dmr_prelu_y = dmr_prelu.out();
constexpr auto shared_seq = f::shared_input<"seq", DT, DU>;
constexpr auto dmr_relu = fl::dmr_u2i<"d", {.cmp_dim = DC, .activation = cl::keras_activation("relu"),
                                            .regularizer = cl::regularizer(0.0, 0.5)}>(item6, shared_seq);
constexpr auto dmr_relu_y = dmr_relu.out();
constexpr auto dmr_relu_pen = dmr_relu.penalty();
constexpr auto item1 = f::input<"item", 1>;
constexpr auto seq21 = f::input<"seq", 2, 1>;
constexpr auto dmr_spec_y = fl::dmr_u2i<"d", {.cmp_dim = 1}>(item1, seq21).out();

} // namespace

TEST_CASE("CIN: tanh, identity (hidden_units) and relu stacks against the explicit outer products; derivatives") {
    for (std::size_t batch : {1, 5, 70}) {
        check_forward<f::program<double, cin_tanh_y>>(batch, 1e-12, [](leaves& L, std::size_t b) { return cin_reference(L, b, 4, 5, {3, 2}, tanh_); }, no_prep);
        check_forward<f::program<double, cin_one_y>>(batch, 1e-12, [](leaves& L, std::size_t b) { return cin_reference(L, b, 3, 4, {6}, identity); }, no_prep);
        check_forward<f::program<double, cin_relu_y>>(batch, 1e-12, [](leaves& L, std::size_t b) { return cin_reference(L, b, 3, 4, {4, 3, 2}, relu_); }, no_prep);
        check_forward<f::program<float, cin_tanh_y>>(batch, 1e-5, [](leaves& L, std::size_t b) { return cin_reference(L, b, 4, 5, {3, 2}, tanh_); }, no_prep);
    }
    static_assert(cin_tanh_y.shape() == make_dims<5>() && cin_relu_y.shape() == make_dims<9>());
    test::check_derivatives<f::grad_program<double, cin_tanh_y>, f::jvp_program<double, cin_tanh_y>>(3);
    test::check_derivatives<f::grad_program<double, cin_one_y>, f::jvp_program<double, cin_one_y>>(2);
}

TEST_CASE("CIN: Conv1D variables (names, shapes, creation order, initializers) and the kernels' penalty") {
    using P = f::program<double, cin_relu_y>;
    CHECK(param_names<P>() == std::vector<std::string>{"c/conv1d/bias", "c/conv1d/kernel", "c/conv1d_1/bias", "c/conv1d_1/kernel",
                                                       "c/conv1d_2/bias", "c/conv1d_2/kernel"});
    CHECK(param_shape<P>("c/conv1d/kernel") == make_dims<1, 9, 4>());
    CHECK(param_shape<P>("c/conv1d_1/kernel") == make_dims<1, 12, 3>());
    CHECK(param_shape<P>("c/conv1d_2/kernel") == make_dims<1, 9, 2>());
    CHECK(param_shape<P>("c/conv1d_2/bias") == make_dims<2>());
    static_assert(cin_relu.n_inits == 6);
    static_assert(cin_relu.g.name_of(cin_relu.inits[0].var) == "c/conv1d/kernel");
    static_assert(cin_relu.g.name_of(cin_relu.inits[1].var) == "c/conv1d/bias");
    static_assert(cin_relu.g.name_of(cin_relu.inits[2].var) == "c/conv1d_1/kernel");
    static_assert(cin_relu.inits[1].spec.w == ctrec::init::spec(ctrec::init::Zeros{}).w);
    static_assert(cin_relu.inits[0].spec.w == ctrec::init::spec(ctrec::init::GlorotUniform{}).w);
    // glorot_uniform with the Conv1D fans (receptive field 1): |w| <= sqrt(6 / (9 + 4)); biases zeros
    P::parameters p;
    fl::initialize<cin_relu>(p, 3);
    double mx = 0;
    for (double v : p.get<"c/conv1d/kernel">()) mx = std::max(mx, std::abs(v));
    CHECK(mx <= std::sqrt(6.0 / 13.0));
    CHECK(mx > 0.5 * std::sqrt(6.0 / 13.0));
    for (double v : p.get<"c/conv1d_1/bias">()) CHECK(v == 0.0);
    // penalty: 0.25 |W| + 0.5 W^2 over the three kernels, no bias term
    leaves L;
    const double got = test::run<f::program<double, cin_relu_pen>>(L, 1)[0][0];
    double want = 0;
    for (const char* k : {"c/conv1d/kernel", "c/conv1d_1/kernel", "c/conv1d_2/kernel"})
        for (double w : get(L, k)) want += 0.25 * std::abs(w) + 0.5 * w * w;
    CHECK(got == doctest::Approx(want).epsilon(1e-12));
}

TEST_CASE("AutoInt: two layers (concat) and one (stack) against the formulas; the spec's value; derivatives") {
    auto ref = [](std::size_t layers) {
        return [=](leaves& L, std::size_t b) { return autoint_reference(get(L, "x"), b, 3, 4, layers); };
    };
    // logits of unit-scale inputs are small: spread them so that the softmax is not near uniform
    auto spread = [](leaves& L, std::size_t b) {
        vec& x = L["x"];
        x.resize(b * 12);
        for (std::size_t e = 0; e < x.size(); ++e) x[e] = 2.0 * test::leaf_value("x", e);
    };
    for (std::size_t batch : {1, 5, 70}) {
        check_forward<f::program<double, ai_two_y>>(batch, 1e-12, ref(2), spread);
        check_forward<f::program<double, ai_stack_y>>(batch, 1e-12, ref(1), spread);
        check_forward<f::program<float, ai_two_y>>(batch, 1e-5, ref(2), spread);
        // the lists: every part is the one-layer value, row-major
        check_forward<f::program<double, ai_lists_y>>(batch, 1e-12, [](leaves& L, std::size_t b) {
            const vec one = autoint_reference(get(L, "x"), b, 3, 4, 1);
            vec want;
            for (std::size_t e = 0; e < b; ++e)
                for (int part = 0; part < 3; ++part) want.insert(want.end(), one.begin() + e * 12, one.begin() + (e + 1) * 12);
            return want;
        }, spread);
    }
    {
        leaves L;
        L["x"] = {1, 0, 0, 2, 1, 1};
        const vec one = forward<f::program<double, ai_spec1>>(L, 1);
        const vec two = forward<f::program<double, ai_spec2>>(L, 1);
        const double w1[] = {0.8446376, 0.7330436, 0.1331867, 1.8509371, 0.5776812, 1.2669564};
        const double w2[] = {0.4941377, 1.3232281, 0.3058488, 1.6071227, 0.4027717, 1.4629475};
        for (std::size_t i = 0; i < 6; ++i) {
            CHECK(one[i] == doctest::Approx(w1[i]).epsilon(1e-6));
            CHECK(two[i] == doctest::Approx(w2[i]).epsilon(1e-6));
        }
        // the original test: ones stay ones (uniform attention)
        leaves O;
        O["x"] = vec(4 * 6, 1.0);
        for (double v : forward<f::program<double, ai_spec2>>(O, 4)) CHECK(v == doctest::Approx(1.0).epsilon(1e-14));
    }
    CHECK(ai_two.n_inits == 0);
    test::check_derivatives<f::grad_program<double, ai_two_y>, f::jvp_program<double, ai_two_y>>(3);
}

TEST_CASE("DMR_U2I: default PReLU and relu with a shared sequence against the formulas; derivatives; variables") {
    auto prelu_ref = [](leaves& L, std::size_t b) { return dmr_reference(L, b, 1, false); };
    auto relu_ref = [](leaves& L, std::size_t b) { return dmr_reference(L, b, 2, true); };
    for (std::size_t batch : {1, 5, 70}) {
        check_forward<f::program<double, dmr_prelu_y>>(batch, 1e-12, prelu_ref, no_prep);
        check_forward<f::program<double, dmr_relu_y>>(batch, 1e-12, relu_ref, no_prep);
        check_forward<f::program<float, dmr_prelu_y>>(batch, 1e-5, prelu_ref, no_prep);
    }
    test::check_derivatives<f::grad_program<double, dmr_prelu_y>, f::jvp_program<double, dmr_prelu_y>>(3);

    using P = f::program<double, dmr_prelu_y>;
    CHECK(param_names<P>() == std::vector<std::string>{"d/bias", "d/dense/bias", "d/dense/kernel", "d/dense/p_re_lu/alpha",
                                                       "d/emb_weight", "d/pos_emb", "d/z_weight"});
    CHECK(param_shape<P>("d/pos_emb") == make_dims<DT, DC>());
    CHECK(param_shape<P>("d/emb_weight") == make_dims<DU, DC>());
    CHECK(param_shape<P>("d/z_weight") == make_dims<DC, 1>());
    CHECK(param_shape<P>("d/dense/kernel") == make_dims<DU, DI>());
    static_assert(dmr_prelu.n_inits == 7 && dmr_relu.n_inits == 6);
    // creation order: pos_emb, emb_weight, z_weight (ones), bias, dense/kernel, dense/bias, alpha
    static_assert(dmr_prelu.g.name_of(dmr_prelu.inits[2].var) == "d/z_weight");
    static_assert(dmr_prelu.inits[2].spec.w == ctrec::init::spec(ctrec::init::Ones{}).w);
    static_assert(dmr_prelu.g.name_of(dmr_prelu.inits[4].var) == "d/dense/kernel");
    static_assert(dmr_prelu.g.name_of(dmr_prelu.inits[6].var) == "d/dense/p_re_lu/alpha");
    // penalty: 0.5 sum w^2 over pos_emb, emb_weight and dense/kernel
    leaves L;
    const double got = test::run<f::program<double, dmr_relu_pen>>(L, 1)[0][0];
    double want = 0;
    for (const char* k : {"d/pos_emb", "d/emb_weight", "d/dense/kernel"})
        for (double w : get(L, k)) want += 0.5 * w * w;
    CHECK(got == doctest::Approx(want).epsilon(1e-12));
}

TEST_CASE("DMR_U2I: the spec's reference value (T = 2, U_e = C = I_e = 1)") {
    leaves L;
    L["d/pos_emb"] = {0.1, 0.2};
    L["seq"] = {1.0, 3.0, 1.0, 3.0};
    L["d/dense/kernel"] = {0.5};
    L["item"] = {3.0, 3.0};
    L["d/emb_weight"] = {1.0};
    L["d/z_weight"] = {1.0};
    L["d/bias"] = {0.0};
    L["d/dense/bias"] = {0.0};
    L["d/dense/p_re_lu/alpha"] = {0.0};
    const vec got = forward<f::program<double, dmr_spec_y>>(L, 2);
    CHECK(got[0] == doctest::Approx(4.1727095).epsilon(1e-7));
    CHECK(got[1] == doctest::Approx(4.1727095).epsilon(1e-7));
    const vec want = dmr_reference(L, 2, 1, false, 2, 1, 1, 1);
    CHECK(test::max_rel_diff(got, want) <= 1e-14);
}
