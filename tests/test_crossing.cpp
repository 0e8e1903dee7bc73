// Feature-crossing layers : GroupInt / FFM
// and the FFM op (spec layers-core-and-cross.md section 4), AllInt (5) and CAN (7), against
// naive float64 references written from the spec's index formulas (CPU and reference backends,
// float and double, batches 1, 5, 70), float64 central differences and JVP/VJP duality,
// out_type / keep_list lists, variable names, initializers and penalties.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ctrec/layers/allint.hpp"
#include "ctrec/layers/can.hpp"
#include "ctrec/layers/group_int.hpp"
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
using cl::ffm_interaction;
using cl::merge_type;

namespace {

std::string var_name(const fl::result& r, std::size_t i) { return std::string(r.g.name_of(r.inits[i].var)); }

// ---- GroupInt -----------------------------------------------------------------------------------
constexpr std::size_t K = 4;
constexpr auto gl = f::input<"l", 3, K>;  // a stacked side
constexpr auto gl0 = f::input<"l0", K>;
constexpr auto glb = f::input<"lb", 2, K>;
constexpr auto gr = f::input<"r", 2, K>;
constexpr auto gr0 = f::input<"r0", K>;
constexpr auto gr1 = f::input<"r1", K>;
constexpr auto gi_mul = fl::group_int<"gi", cl::group_int_config<>{}>({gl}, {gr0, gr1});
constexpr auto gi_mul_y = gi_mul.out();
constexpr auto gi_dot = fl::FFM<"gi", cl::group_int_config<>{.interaction_type = ffm_interaction::dot}>({gl0, glb}, {gr});
constexpr auto gi_dot_y = gi_dot.out();
constexpr cl::group_int_config<2> att_cfg{.use_attention = true, .attention_units = {3, 1}, .activation = cl::act_tanh,
                                          .regularizer = cl::regularizer(0.0, 0.5)};
constexpr auto gi_att = fl::group_int<"ga", att_cfg>({gl}, {gr});
constexpr auto gi_att_y = gi_att.out();
constexpr auto gi_att_pen = gi_att.penalty();

// A side's fields per example, [b][n][k]: (name, 0) is a (K) field, (name, n) a stacked (n, K) block.
using fields = std::vector<std::vector<vec>>;
fields side(leaves& L, std::size_t batch, std::vector<std::pair<std::string, std::size_t>> parts) {
    fields v(batch);
    for (std::size_t b = 0; b < batch; ++b)
        for (const auto& [name, n] : parts) {
            const vec& x = get(L, name);
            for (std::size_t i = 0; i < (n ? n : 1); ++i)
                v[b].push_back(vec(x.begin() + ((b * (n ? n : 1) + i) * K), x.begin() + ((b * (n ? n : 1) + i) * K + K)));
        }
    return v;
}
// spec 4.5: pairs p = l R + r, left-major; multiply: the K products, dot: their sum
vec pairs_ref(const fields& l, const fields& r, bool dot) {
    vec out;
    for (std::size_t b = 0; b < l.size(); ++b)
        for (const vec& a : l[b])
            for (const vec& c : r[b]) {
                double s = 0;
                for (std::size_t k = 0; k < a.size(); ++k) {
                    if (!dot) out.push_back(a[k] * c[k]);
                    s += a[k] * c[k];
                }
                if (dot) out.push_back(s);
            }
    return out;
}

// keep_list, the out_type extension, the FFM op and 13 x 13 fields, in one model
constexpr std::size_t n26 = 26;
constexpr fl::result gi_misc_model() {
    fl::result m;
    const f::val l = m.input("l", make_dims<3, K>()), r[2] = {m.input("r0", make_dims<K>()), m.input("r1", make_dims<K>())};
    const f::val a = m.input("a", make_dims<12>()), b = m.input("b", make_dims<8>());
    f::val fs[n26]{};
    for (std::size_t i = 0; i < n26; ++i) fs[i] = m.input((f::name_string("f") + i).view(), make_dims<2>());
    f::val parts[16]{};
    std::size_t n = 0;
    auto flat = [](f::val v) { return f::reshape(v, f::dims_of({v.shape().size()})); };
    // multiply, out_type none: the L R pair vectors (K), keep_list ignored
    const fl::val_list none = fl::group_int(m, "g1", cl::group_int_config<>{.out_type = merge_type::none, .apply_out_type = true, .keep_list = true},
                                            &l, 1, r, 2);
    if (!none.list || none.n != 6 || none[0].rank() != 1 || none[0].dim(0) != K) throw "none: 6 pair vectors";
    parts[n++] = f::concat(0, none.v, none.n);
    // multiply, out_type stack: (L R, K)
    const fl::val_list st = fl::group_int(m, "g2", cl::group_int_config<>{.out_type = merge_type::stack, .apply_out_type = true}, &l, 1, r, 2);
    if (st.list || st[0].rank() != 2 || st[0].dim(0) != 6) throw "stack: (L R, K)";
    parts[n++] = flat(st[0]);
    // dot, keep_list: a one-element list of (L R); out_type ignored by default (acknowledged)
    const fl::val_list kl = fl::group_int(m, "g3", cl::group_int_config<>{.interaction_type = ffm_interaction::dot, .out_type = merge_type::none,
                                                                          .acknowledge_ignored_out_type = true, .keep_list = true},
                                          &l, 1, r, 2);
    if (!kl.list || kl.n != 1 || kl[0].rank() != 1 || kl[0].dim(0) != 6) throw "keep_list: [(L R)]";
    parts[n++] = kl[0];
    // the FFM op on concatenated inputs: left (3 K), right (2 K)
    parts[n++] = fl::ffm(K, ffm_interaction::multiply, a, b);
    parts[n++] = fl::ffm(K, ffm_interaction::dot, a, b);
    // 26 fields: 13 left, 13 right, dot
    parts[n++] = fl::group_int(m, "g4", cl::group_int_config<>{.interaction_type = ffm_interaction::dot}, fs, 13, fs + 13, 13).single();
    m.set_out(f::concat(0, parts, n));
    return m;
}
constexpr auto gi_misc = gi_misc_model();
constexpr auto gi_misc_y = gi_misc.out();
static_assert(gi_misc.n_inits == 0);

// ---- AllInt -------------------------------------------------------------------------------------
constexpr auto x45 = f::input<"x", 4, 5>;
constexpr auto ai = fl::allint<"ai", {.cmp_dim = 3, .regularizer = cl::regularizer(0.0, 0.5)}>(x45);
constexpr auto ai_y = ai.out();
constexpr auto ai_pen = ai.penalty();
constexpr auto ai_nb = fl::allint<"ai", {.cmp_dim = 3, .use_bias = false, .out_type = merge_type::stack}>(x45);
constexpr auto ai_nb_y = ai_nb.out();
static_assert(ai_y.shape().rank == 1 && ai_y.shape().d[0] == 12);
static_assert(ai_nb_y.shape().rank == 2 && ai_nb_y.shape().d[0] == 4 && ai_nb_y.shape().d[1] == 3);
// out_type none: N (C) rows, keep_list ignored; keep_list with concat: [(N C)]
static_assert([] {
    fl::result m;
    const f::val x = m.input("x", make_dims<4, 5>());
    const fl::val_list l = fl::allint(m, "ai", {.cmp_dim = 3, .out_type = merge_type::none, .keep_list = true}, x);
    const fl::val_list k = fl::allint(m, "ai", {.cmp_dim = 3, .keep_list = true}, x);
    return l.list && l.n == 4 && l[2].rank() == 1 && l[2].dim(0) == 3 && k.list && k.n == 1 && k[0].dim(0) == 12;
}());

// spec 5.5: O[n, c] = sum_k X[n, k] (sum_m X[m, k] Cm[m, c] + beta[c])
vec allint_ref(leaves& L, std::size_t batch, bool bias) {
    const std::size_t N = 4, D = 5, C = 3;
    const vec& x = get(L, "x");
    const vec& Cm = get(L, "ai/allint_kernel");
    vec y(batch * N * C, 0.0);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t c = 0; c < C; ++c)
                for (std::size_t k = 0; k < D; ++k) {
                    double F = bias ? get(L, "ai/allint_bias")[c] : 0.0;
                    for (std::size_t m = 0; m < N; ++m) F += x[(b * N + m) * D + k] * Cm[m * C + c];
                    y[(b * N + n) * C + c] += x[(b * N + n) * D + k] * F;
                }
    return y;
}

// ---- CAN ------------------------------------------------------------------------------------------
constexpr std::size_t D = 3;
constexpr auto item2 = f::input<"item", 2 * (D * D + D)>;
constexpr auto can_ft = fl::can<"can", {}>(f::input<"user", 2, D>, item2);  // relu, (F, D)
constexpr auto can_ft_y = can_ft.out();
constexpr auto can_tt = fl::can<"can", {.activation = cl::act_tanh, .is_seq = true}>(f::input<"user", 2, 3, D>, item2);
constexpr auto can_tt_y = can_tt.out();
constexpr auto can_tf = fl::can<"can", {.activation = cl::act_sigmoid, .is_seq = true, .is_stacked = false}>(f::input<"user", 4, D>, item2);
constexpr auto can_tf_y = can_tf.out();
constexpr auto can_ff = fl::can<"can", {.layer_num = 3, .activation = cl::act_tanh, .is_stacked = false}>(f::input<"user", D>,
                                                                                                         f::input<"item", 3 * (D * D + D)>);
constexpr auto can_ff_y = can_ff.out();
static_assert(can_tt_y.shape().rank == 2 && can_tf_y.shape().rank == 1 && can_ff_y.shape().rank == 1 && can_ff.n_inits == 0);

// spec 7.5: rows of D (per example `rows`, summed in groups of `seq` at the end), layer i reads
// W_i[p, q] = item[o_i + p D + q], beta_i[q] = item[o_i + D^2 + q], o_i = i (D^2 + D)
vec can_ref(leaves& L, std::size_t batch, std::size_t layers, std::size_t rows, std::size_t seq, int act) {
    const vec& user = get(L, "user");
    const vec& item = get(L, "item");
    const std::size_t I = layers * (D * D + D);
    vec y;
    for (std::size_t b = 0; b < batch; ++b) {
        std::vector<vec> u(rows);
        for (std::size_t r = 0; r < rows; ++r) u[r] = vec(user.begin() + (b * rows + r) * D, user.begin() + (b * rows + r + 1) * D);
        for (std::size_t i = 0; i < layers; ++i) {
            const std::size_t o = b * I + i * (D * D + D);
            for (vec& row : u) {
                vec z(D);
                for (std::size_t q = 0; q < D; ++q) {
                    z[q] = item[o + D * D + q];
                    for (std::size_t p = 0; p < D; ++p) z[q] += row[p] * item[o + p * D + q];
                    z[q] = act == 0 ? flat_ref::relu(z[q]) : act == 1 ? std::tanh(z[q]) : flat_ref::sigmoid(z[q]);
                }
                row = z;
            }
        }
        for (std::size_t g = 0; g < rows / seq; ++g)
            for (std::size_t q = 0; q < D; ++q) {
                double s = 0;
                for (std::size_t t = 0; t < seq; ++t) s += u[g * seq + t][q];
                y.push_back(s);
            }
    }
    return y;
}

} // namespace

TEST_CASE("group_int: multiply (stacked x fields), dot (mixed x stacked), left-major pairs; derivatives") {
    auto ref = [](bool dot) {
        return [=](leaves& L, std::size_t batch, bool prepare) {
            if (prepare) return vec{};
            if (dot) return pairs_ref(side(L, batch, {{"l0", 0}, {"lb", 2}}), side(L, batch, {{"r", 2}}), true);
            return pairs_ref(side(L, batch, {{"l", 3}}), side(L, batch, {{"r0", 0}, {"r1", 0}}), false);
        };
    };
    check_forward_all<gi_mul_y>(1e-12, ref(false));
    check_forward_all<gi_dot_y>(1e-12, ref(true));
    CHECK(gi_mul.n_inits == 0);
    CHECK(!gi_mul.has_penalty());
    test::check_derivatives<f::grad_program<double, gi_dot_y>, f::jvp_program<double, gi_dot_y>>(3);
}

TEST_CASE("group_int attention: raw per-pair MLP score (no softmax, no sum); names, inits, penalty; derivatives") {
    auto ref = [](leaves& L, std::size_t batch, bool prepare) {
        if (prepare) return vec{};
        using flat_ref::norm;
        const vec S = pairs_ref(side(L, batch, {{"l", 3}}), side(L, batch, {{"r", 2}}), false);  // rows of K
        const std::size_t rows = batch * 6;
        vec h = flat_ref::dense(L, S, rows, K, 3, "ga/groupint_attention_mlp/dense_0", norm::trainable);
        for (double& v : h) v = std::tanh(v);
        const vec a = flat_ref::dense(L, h, rows, 3, 1, "ga/groupint_attention_mlp/dense_1", norm::trainable);
        vec y(S.size());
        for (std::size_t e = 0; e < S.size(); ++e) y[e] = S[e] * a[e / K];
        return y;
    };
    check_forward_all<gi_att_y>(1e-12, ref);
    REQUIRE(gi_att.n_inits == 6);
    const char* names[] = {"kernel", "trainable_kernel_norm", "bias"};
    for (std::size_t i = 0; i < 6; ++i)
        CHECK(var_name(gi_att, i) == "ga/groupint_attention_mlp/dense_" + std::to_string(i / 3) + "/" + names[i % 3]);
    CHECK(gi_att.inits[0].spec.w == init::spec::which::glorot_normal);
    CHECK(gi_att.inits[2].spec.w == init::spec::which::zeros);
    {
        leaves L;
        const double got = test::run<f::program<double, gi_att_pen>>(L, 1)[0][0];
        double want = 0;
        for (const char* k : {"ga/groupint_attention_mlp/dense_0/kernel", "ga/groupint_attention_mlp/dense_1/kernel"})
            for (double w : get(L, k)) want += 0.5 * w * w;
        CHECK(got == doctest::Approx(want).epsilon(1e-12));
    }
    test::check_derivatives<f::grad_program<double, gi_att_y>, f::jvp_program<double, gi_att_y>>(3);
}

TEST_CASE("group_int: out_type none / stack (the opt-in extension), keep_list, the FFM op's index formulas, 13 x 13 fields") {
    auto ref = [](leaves& L, std::size_t batch, bool prepare) {
        if (prepare) return vec{};
        const vec mul = pairs_ref(side(L, batch, {{"l", 3}}), side(L, batch, {{"r0", 0}, {"r1", 0}}), false);
        const vec dot = pairs_ref(side(L, batch, {{"l", 3}}), side(L, batch, {{"r0", 0}, {"r1", 0}}), true);
        const vec &a = get(L, "a"), &bb = get(L, "b");
        fields f26(batch);
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t i = 0; i < n26; ++i) {
                const vec& x = get(L, "f" + std::to_string(i));
                f26[b].push_back(vec(x.begin() + b * 2, x.begin() + b * 2 + 2));
            }
        fields f26l(batch), f26r(batch);
        for (std::size_t b = 0; b < batch; ++b) {
            f26l[b].assign(f26[b].begin(), f26[b].begin() + 13);
            f26r[b].assign(f26[b].begin() + 13, f26[b].end());
        }
        const vec big = pairs_ref(f26l, f26r, true);
        vec y;
        for (std::size_t b = 0; b < batch; ++b) {
            y.insert(y.end(), mul.begin() + b * 24, mul.begin() + (b + 1) * 24);  // none, concatenated back
            y.insert(y.end(), mul.begin() + b * 24, mul.begin() + (b + 1) * 24);  // stack (L R, K)
            y.insert(y.end(), dot.begin() + b * 6, dot.begin() + (b + 1) * 6);
            // spec 4.4: out[(l R + r) K + k] = left[l K + k] right[r K + k]; dot sums over k
            for (std::size_t l = 0; l < 3; ++l)
                for (std::size_t r = 0; r < 2; ++r)
                    for (std::size_t k = 0; k < K; ++k) y.push_back(a[b * 12 + l * K + k] * bb[b * 8 + r * K + k]);
            for (std::size_t l = 0; l < 3; ++l)
                for (std::size_t r = 0; r < 2; ++r) {
                    double s = 0;
                    for (std::size_t k = 0; k < K; ++k) s += a[b * 12 + l * K + k] * bb[b * 8 + r * K + k];
                    y.push_back(s);
                }
            y.insert(y.end(), big.begin() + b * 169, big.begin() + (b + 1) * 169);
        }
        return y;
    };
    check_forward_all<gi_misc_y>(1e-12, ref);
}

TEST_CASE("allint: O = X (X^T Cm + beta), with and without bias; names, inits, penalty; derivatives") {
    auto ref = [](bool bias) {
        return [=](leaves& L, std::size_t batch, bool prepare) {
            if (prepare) return vec{};
            return allint_ref(L, batch, bias);
        };
    };
    check_forward_all<ai_y>(1e-12, ref(true));
    check_forward_all<ai_nb_y>(1e-12, ref(false));
    REQUIRE(ai.n_inits == 2);
    CHECK(var_name(ai, 0) == "ai/allint_kernel");
    CHECK(var_name(ai, 1) == "ai/allint_bias");
    CHECK(ai.inits[0].spec.w == init::spec::which::glorot_normal);
    CHECK(ai.inits[1].spec.w == init::spec::which::zeros);
    CHECK(ai_nb.n_inits == 1);
    {
        leaves L;
        const double got = test::run<f::program<double, ai_pen>>(L, 1)[0][0];
        double want = 0;
        for (double w : get(L, "ai/allint_kernel")) want += 0.5 * w * w;
        CHECK(got == doctest::Approx(want).epsilon(1e-12));
    }
    test::check_derivatives<f::grad_program<double, ai_y>, f::jvp_program<double, ai_y>>(3);
}

TEST_CASE("can: the four is_seq / is_stacked modes; all-ones values; derivatives of user and item") {
    auto ref = [](std::size_t layers, std::size_t rows, std::size_t seq, int act) {
        return [=](leaves& L, std::size_t batch, bool prepare) {
            if (prepare) return vec{};
            return can_ref(L, batch, layers, rows, seq, act);
        };
    };
    check_forward_all<can_ft_y>(1e-12, ref(2, 2, 1, 0));
    check_forward_all<can_tt_y>(1e-12, ref(2, 6, 3, 1));
    check_forward_all<can_tf_y>(1e-12, ref(2, 4, 4, 2));
    check_forward_all<can_ff_y>(1e-12, ref(3, 1, 1, 1));
    // all ones, relu, D = 3: layer 0 gives 3 + 1 = 4, layer 1 gives 3 * 4 + 1 = 13 (spec 7.7's rule)
    {
        leaves L;
        L["user"] = vec(6 * 2 * D, 1.0);
        L["item"] = vec(6 * 2 * (D * D + D), 1.0);
        const vec y = test::run<f::program<double, can_ft_y>>(L, 6)[0];
        REQUIRE(y.size() == 6 * 2 * D);
        for (double v : y) CHECK(v == 13.0);
    }
    test::check_derivatives<f::grad_program<double, can_tt_y>, f::jvp_program<double, can_tt_y>>(3);
    test::check_derivatives<f::grad_program<double, can_ff_y>, f::jvp_program<double, can_ff_y>>(3);
}
