// The type-core attention-style tests' remaining checks (ported from
// tests/test_autoint.cpp, test_senet.cpp, test_irazor.cpp, test_dmr_u2i.cpp, test_din.cpp and
// test_serving.cpp; what test_flat_attention.cpp, test_flat_attention_2.cpp,
// test_flat_crossing_2.cpp and test_flat_dcn_din.cpp already check is not repeated). References
// are naive float64 loops written from the spec (layers-trans-seq-multitask-nas.md 1.1-1.3, 2.2,
// 2.4); tolerances are the type-core tests' (|got - want| / max(1, |want|)).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ctrec/layers/autoint.hpp"
#include "ctrec/layers/din.hpp"
#include "ctrec/layers/dmr_u2i.hpp"
#include "ctrec/layers/irazor.hpp"
#include "ctrec/layers/senet.hpp"
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

namespace {

// ---- shared helpers ------------------------------------------------------------------------------
using test::check_ad;
using test::check_close;
template <class P>
std::vector<std::string> sorted_param_names() {
    std::vector<std::string> v(P::parameters::names.begin(), P::parameters::names.end());
    std::sort(v.begin(), v.end());
    return v;
}
template <class P>
ctrec::dims param_shape(std::string_view n) {
    for (std::size_t k = 0; k < P::n_params; ++k)
        if (P::parameters::names[k] == n) return P::tab.nodes[P::param_ids[k]].shape;
    return {};
}
template <class P>
double max_abs(const typename P::parameters& p, std::string_view n) {
    double m = 0;
    for (auto v : p.get(P::parameters::position(n))) m = std::max(m, double(std::abs(v)));
    return m;
}
template <class P>
void load_params(leaves& L, const typename P::parameters& p) {
    for (std::size_t k = 0; k < P::n_params; ++k) {
        const auto w = p.get(k);
        L[P::parameters::names[k]] = vec(w.begin(), w.end());
    }
}
// computing contractions of P (a step of their own or a GEMM written into a consumer's buffer)
template <class P>
std::size_t contracts(bool batched, std::size_t size = 0) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < P::size; ++i) {
        const auto& r = P::tab.nodes[i];
        n += r.op == f::opcode::contract && (P::pl.step[i] || P::pl.epilogue[i]) && r.batched == batched && (!size || r.shape.size() == size);
    }
    return n;
}
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
vec ones(std::size_t n) { return vec(n, 1.0); }
bool all_finite(const vec& v) {
    return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
}

// ==== AutoInt (spec 1.1) ==============================================================================
constexpr std::size_t aN = 6, aK = 4, aB = 3;
constexpr auto ax = f::input<"x", aN, aK>;
struct layer_trace {
    vec X, S, A;  // input of the layer, logits, weights
};
// One example: S = X X^T, A = row softmax of S (max-subtracted), X' = A X, layer by layer.
std::pair<std::vector<layer_trace>, vec> autoint_one(vec X, std::size_t n, std::size_t k, std::size_t layers) {
    std::vector<layer_trace> t;
    for (std::size_t l = 0; l < layers; ++l) {
        layer_trace r{X, vec(n * n), vec(n * n)};
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < n; ++j) {
                double s = 0;
                for (std::size_t c = 0; c < k; ++c) s += X[i * k + c] * X[j * k + c];
                r.S[i * n + j] = s;
            }
        for (std::size_t i = 0; i < n; ++i) {
            double m = r.S[i * n], z = 0;
            for (std::size_t j = 1; j < n; ++j) m = std::max(m, r.S[i * n + j]);
            for (std::size_t j = 0; j < n; ++j) z += std::exp(r.S[i * n + j] - m);
            for (std::size_t j = 0; j < n; ++j) r.A[i * n + j] = std::exp(r.S[i * n + j] - m) / z;
        }
        vec Y(n * k, 0.0);
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t c = 0; c < k; ++c)
                for (std::size_t j = 0; j < n; ++j) Y[i * k + c] += r.A[i * n + j] * X[j * k + c];
        t.push_back(r);
        X = Y;
    }
    return {t, X};
}
vec autoint_ref(const vec& x, std::size_t batch, std::size_t layers, std::size_t n = aN, std::size_t k = aK) {
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        const vec y = autoint_one(vec(x.begin() + b * n * k, x.begin() + (b + 1) * n * k), n, k, layers).second;
        out.insert(out.end(), y.begin(), y.end());
    }
    return out;
}
constexpr auto ai_main = fl::autoint<"auto_int", {.layer_num = 2}>(ax);
constexpr auto ai_main_y = ai_main.out();
static_assert(ai_main_y.shape() == make_dims<aN * aK>());
constexpr cl::autoint_config ai_defaults{};
static_assert(ai_defaults.layer_num == 1 && ai_defaults.out_type == cl::merge_type::concat && !ai_defaults.keep_list);
constexpr auto ax32 = f::input<"x", 3, 2>;
constexpr auto ai_spec1 = fl::autoint<"a", {.layer_num = 1, .out_type = cl::merge_type::stack}>(ax32).out();
constexpr auto ai_spec2 = fl::autoint<"a", {.layer_num = 2, .out_type = cl::merge_type::stack}>(ax32).out();
static_assert(ai_spec1.shape() == make_dims<3, 2>());
constexpr auto ai_orig = fl::autoint<"auto_int", {.layer_num = 2}>(f::input<"x", 10, 10>).out();
static_assert(ai_orig.shape() == make_dims<100>());
constexpr auto ai_stack = fl::autoint<"a", {.layer_num = 2, .out_type = cl::merge_type::stack}>(ax).out();
static_assert(ai_stack.shape() == make_dims<aN, aK>());
// keep_list: a one-element list of the concat / stack value; none: the N rows (keep_list ignored).
// Lists come from the in-place function (the facade's result holds one tensor: compile-fail test
// autoint_list_facade).
constexpr bool ai_list_cases() {
    fl::result m;
    const f::val x = m.input("x", make_dims<aN, aK>());
    const fl::val_list cc = fl::autoint(m, "a", {.layer_num = 2}, x);
    const fl::val_list ck = fl::autoint(m, "a", {.layer_num = 2, .keep_list = true}, x);
    const fl::val_list sk = fl::autoint(m, "a", {.layer_num = 2, .out_type = cl::merge_type::stack, .keep_list = true}, x);
    const fl::val_list nn = fl::autoint(m, "a", {.layer_num = 2, .out_type = cl::merge_type::none, .keep_list = true}, x);
    return !cc.list && cc.n == 1 && ck.list && ck.n == 1 && ck[0].id == cc[0].id && sk.list && sk.n == 1 &&
           sk[0].shape() == make_dims<aN, aK>() && nn.list && nn.n == aN && nn[aN - 1].shape() == make_dims<aK>();
}
static_assert(ai_list_cases());
constexpr auto ai_zero = fl::autoint<"a", {.layer_num = 0}>(ax).out();

// ==== DMR_U2I (spec 2.4) ==============================================================================
constexpr std::size_t dT = 5, dU = 3, dC = 4, dI = 6, dB = 4;
constexpr auto ditem = f::input<"item", dI>;
constexpr auto dseq = f::input<"seq", dT, dU>;
// Every intermediate of spec 2.4.5; act: 0 identity, 1 PReLU, 2 relu, 3 tanh.
struct dmr_ref {
    vec c, l, alpha, m, h, out;  // of the last example; out: every example
    dmr_ref(leaves& L, std::size_t batch, int act, std::size_t t_ = dT, std::size_t u_ = dU, std::size_t c_ = dC, std::size_t i_ = dI) {
        const vec &seq = get(L, "seq"), &item = get(L, "item"), &pos = get(L, "d/pos_emb"), &ew = get(L, "d/emb_weight"),
                  &zw = get(L, "d/z_weight"), &bias = get(L, "d/bias"), &k = get(L, "d/dense/kernel"), &db = get(L, "d/dense/bias");
        for (std::size_t b = 0; b < batch; ++b) {
            auto S = [&](std::size_t t, std::size_t u) { return seq[(b * t_ + t) * u_ + u]; };
            c.assign(t_ * c_, 0);
            l.assign(t_, 0);
            for (std::size_t t = 0; t < t_; ++t)
                for (std::size_t kk = 0; kk < c_; ++kk) {
                    double v = pos[t * c_ + kk] + bias[kk];
                    for (std::size_t u = 0; u < u_; ++u) v += S(t, u) * ew[u * c_ + kk];
                    c[t * c_ + kk] = v;
                    l[t] += v * zw[kk];
                }
            double mx = -1e300, s = 0;
            for (double v : l) mx = std::max(mx, v);
            alpha.assign(t_, 0);
            for (std::size_t t = 0; t < t_; ++t) s += alpha[t] = std::exp(l[t] - mx);
            for (double& a : alpha) a /= s;
            m.assign(u_, 0);
            for (std::size_t u = 0; u < u_; ++u)
                for (std::size_t t = 0; t < t_; ++t) m[u] += alpha[t] * S(t, u);
            h.assign(i_, 0);
            for (std::size_t j = 0; j < i_; ++j) {
                double z = db[j];
                for (std::size_t u = 0; u < u_; ++u) z += m[u] * k[u * i_ + j];
                h[j] = act == 0 ? z : act == 2 ? std::max(z, 0.0) : act == 3 ? std::tanh(z) : z > 0 ? z : get(L, "d/dense/p_re_lu/alpha")[j] * z;
                out.push_back(h[j] * item[b * i_ + j]);
            }
        }
    }
};
constexpr auto dmr_prelu = fl::dmr_u2i<"d", {.cmp_dim = dC}>(ditem, dseq).out();
constexpr auto dmr_spec = fl::dmr_u2i<"d", {.cmp_dim = 1}>(f::input<"item", 1>, f::input<"seq", 2, 1>).out();
constexpr auto dmr_orig = fl::dmr_u2i<"dmr__u2i", {.cmp_dim = 5, .activation = cl::keras_activation("relu")}>(f::input<"item", 10>, f::input<"seq", 15, 10>);
constexpr auto dmr_orig_y = dmr_orig.out();
static_assert(dmr_orig_y.shape() == make_dims<10>());
constexpr auto dmr_reg = fl::dmr_u2i<"d", {.cmp_dim = dC, .activation = cl::act_tanh, .regularizer = cl::regularizer{0.25, 0.5}}>(ditem, dseq);
constexpr auto dmr_reg_y = dmr_reg.out();
constexpr auto dmr_reg_pen = dmr_reg.penalty();

// ==== iRazor (spec 1.3) ===============================================================================
constexpr std::size_t rN = 3, rK = 10, rB = 4;
constexpr auto rx = f::input<"x", rN, rK>;
// P = softmax(w / t), the rigid masks R, M = P . R built literally
struct irazor_ref {
    std::size_t n, k;
    vec P, R, M;
    irazor_ref(const vec& w, const std::vector<std::size_t>& ns, double t, std::size_t n_, std::size_t k_) : n(n_), k(k_) {
        const std::size_t Ln = ns.size();
        P.assign(n * Ln, 0);
        for (std::size_t a = 0; a < n; ++a) {
            double mx = -1e300, s = 0;
            for (std::size_t i = 0; i < Ln; ++i) mx = std::max(mx, w[a * Ln + i] / t);
            for (std::size_t i = 0; i < Ln; ++i) s += P[a * Ln + i] = std::exp(w[a * Ln + i] / t - mx);
            for (std::size_t i = 0; i < Ln; ++i) P[a * Ln + i] /= s;
        }
        R.assign(Ln * k, 0.0);  // row 0 zeros; row i ones on [ns[i-1], ns[i])
        for (std::size_t i = 1; i < Ln; ++i)
            for (std::size_t c = ns[i - 1]; c < ns[i]; ++c) R[i * k + c] = 1;
        M.assign(n * k, 0);
        for (std::size_t a = 0; a < n; ++a)
            for (std::size_t c = 0; c < k; ++c)
                for (std::size_t i = 0; i < Ln; ++i) M[a * k + c] += P[a * Ln + i] * R[i * k + c];
    }
    vec y(const vec& x, std::size_t batch) const {
        vec out;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t e = 0; e < n * k; ++e) out.push_back(x[b * n * k + e] * M[e]);
        return out;
    }
};
constexpr cl::irazor_config ir_cfg{.nas_space = {0, 2, 5, 7, 10}, .t = 0.08};
constexpr auto ir_fw = f::param<"fw", rN>;
constexpr auto ir_main = fl::irazor<"r", ir_cfg>(rx, ir_fw);
constexpr auto ir_main_y = ir_main.out();
constexpr auto ir_nofw = fl::irazor<"r", ir_cfg>(rx);
constexpr auto ir_nofw_y = ir_nofw.out();
constexpr auto ir_nofw_loss = ir_nofw.nas_loss();
static_assert(ir_nofw.nas_loss_id == f::none && ir_nofw.nas_loss().rec().op == f::opcode::constant && ir_nofw.nas_loss().rec().value == 0.0);
static_assert(ir_nofw_y.shape() == ir_main_y.shape());
constexpr auto ir_lead = fl::irazor<"r", {.nas_space = {3, 5, 6, 10}, .t = 0.7, .leading_zero_columns = true}>(rx).out();
constexpr auto ir_wide = fl::irazor<"r", {.nas_space = {0, 3, 21, 40}, .t = 0.3}>(f::input<"x", 2, 40>).out();
constexpr auto ir_stack = fl::irazor<"r", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08, .out_type = cl::merge_type::stack}>(rx).out();
static_assert(ir_stack.shape() == make_dims<rN, rK>());
// keep_list: a one-element list of the concat value; none: the N rows (keep_list ignored); from
// the in-place function, as AutoInt above
constexpr bool ir_list_cases() {
    fl::result m;
    const f::val x = m.input("x", make_dims<rN, rK>());
    const fl::val_list cc = fl::irazor(m, "r", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08}, x);
    const fl::val_list ck = fl::irazor(m, "r", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08, .keep_list = true}, x);
    const fl::val_list nn = fl::irazor(m, "r", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08, .out_type = cl::merge_type::none}, x);
    return !cc.list && cc[0].shape() == make_dims<rN * rK>() && ck.list && ck.n == 1 && ck[0].shape() == cc[0].shape() &&
           nn.list && nn.n == rN && nn[0].shape() == make_dims<rK>();
}
static_assert(ir_list_cases());
constexpr auto ir_orig = fl::irazor<"i_razor", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08}>(f::input<"x", 10, 10>);
constexpr auto ir_orig_y = ir_orig.out();
static_assert(ir_orig_y.shape() == make_dims<100>());
constexpr auto ir_opt = fl::irazor<"r", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08, .initializer = init::Constant{0.25},
                                         .regularizer = cl::regularizer{0.5, 0.25}}>(rx);
constexpr auto ir_opt_y = ir_opt.out();
constexpr auto ir_opt_pen = ir_opt.penalty();

// ==== DIN (spec 2.2) ==================================================================================
constexpr std::size_t nT = 5, nH = 3, nB = 3;
constexpr auto nq = f::input<"q", nH>;
constexpr auto nk = f::input<"k", nT, nH>;
constexpr auto nmask = f::input<"mask", nT>;
constexpr cl::din_config<3> din_relu_cfg{.hidden_units = {6, 4, 1}, .activation = cl::act_relu};
constexpr cl::din_config<2> din_masked_cfg{.hidden_units = {4, 1}, .activation = cl::act_sigmoid, .mode = cl::din_mode::weighted, .decay = true};
constexpr auto din_plain_r = fl::din<"din", din_relu_cfg>(nq, nk);
constexpr auto din_plain = din_plain_r.out();
constexpr auto din_masked = fl::din<"din", din_masked_cfg>(nq, nk, nmask).out();
// check_derivatives draws every leaf in [-1, 1]: a 0 / 2 mask made from a raw input
constexpr auto nmask_of_raw = f::where(f::greater(f::input<"mask_raw", nT>, f::lit<0.0>), f::lit<2.0>, f::lit<0.0>);
constexpr auto din_masked_ad = fl::din<"din", din_masked_cfg>(nq, nk, nmask_of_raw).out();
constexpr cl::din_config<2> din_pad_cfg{.hidden_units = {4, 1}, .activation = cl::act_relu};
constexpr auto din_pad = fl::din<"din", din_pad_cfg>(nq, nk, nmask).out();
constexpr auto din_nopad = fl::din<"din", din_pad_cfg>(nq, nk).out();
constexpr auto din_orig = fl::din<"din", cl::din_config<2>{.hidden_units = {10, 1}}>(f::input<"q", 10>, f::input<"k", 15, 10>).out();
static_assert(din_orig.shape() == make_dims<10>());

// mask values far from the threshold 1: steps 2 of every 5 padded
double din_mask_value(std::size_t i) { return (i * 7 + 3) % 5 < 2 ? 0.0 : 2.0; }
void set_din_mask(leaves& L, std::size_t batch) {
    vec m(batch * nT);
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = din_mask_value(i);
    L["mask"] = m;
}
// Spec 2.2.5 literally: z_t = [q, k_t, q - k_t, q * k_t] through the weight-normalised tower.
// act: 0 identity, 1 relu, 2 sigmoid; k (and mask) shared: one value for every example.
vec din_ref(leaves& L, std::size_t batch, const std::vector<std::size_t>& units, int act, bool weighted, bool decay, bool masked,
            std::size_t T = nT, std::size_t H = nH, bool shared = false) {
    const vec& q = get(L, "q");
    const vec& k = get(L, "k");
    vec out(batch * (weighted ? T * H : H), 0.0);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t t = 0; t < T; ++t) {
            const std::size_t kb = shared ? 0 : b;
            vec h(4 * H);
            for (std::size_t j = 0; j < H; ++j) {
                const double qv = q[b * H + j], kv = k[(kb * T + t) * H + j];
                h[j] = qv, h[H + j] = kv, h[2 * H + j] = qv - kv, h[3 * H + j] = qv * kv;
            }
            std::size_t in = 4 * H;
            for (std::size_t l = 0; l < units.size(); ++l) {
                h = flat_ref::dense(L, h, 1, in, units[l], "din/compress_tower/dense_" + std::to_string(l), flat_ref::norm::trainable);
                if (l + 1 < units.size())
                    for (double& v : h) v = act == 1 ? flat_ref::relu(v) : act == 2 ? flat_ref::sigmoid(v) : v;
                in = units[l];
            }
            double w = h[0];
            if (decay) w /= std::sqrt(double(H));
            if (masked && !(get(L, "mask")[kb * T + t] >= 1)) w = 0;
            for (std::size_t j = 0; j < H; ++j) {
                const double v = w * k[(kb * T + t) * H + j];
                if (weighted) out[(b * T + t) * H + j] = v;
                else out[b * H + j] += v;
            }
        }
    return out;
}

// ==== serving: shared user features (one value per call) =================================================
constexpr std::size_t sT = 6, sH = 4, sI = 5, sC = 3, sB = 7;
constexpr cl::din_config<3> serve_cfg{.hidden_units = {8, 4, 1}, .activation = cl::act_relu};
constexpr auto sq = f::input<"q", sH>;
constexpr auto serve_din_shared = fl::din<"din", serve_cfg>(sq, f::shared_input<"k", sT, sH>, f::shared_input<"mask", sT>).out();
constexpr auto serve_din_batched = fl::din<"din", serve_cfg>(sq, f::input<"k", sT, sH>, f::input<"mask", sT>).out();
constexpr auto sitem = f::input<"item", sI>;
constexpr auto serve_dmr_shared = fl::dmr_u2i<"dmr", {.cmp_dim = sC}>(sitem, f::shared_input<"seq", sT, sH>).out();
constexpr auto serve_dmr_batched = fl::dmr_u2i<"dmr", {.cmp_dim = sC}>(sitem, f::input<"seq", sT, sH>).out();
// the user's features: one value (shared form), or the same for every candidate (batched form)
void one_user(leaves& shared, leaves& batched, std::size_t batch) {
    vec k(sT * sH), seq(sT * sH), mask(sT);
    for (std::size_t i = 0; i < k.size(); ++i) k[i] = leaf_value("k", i), seq[i] = leaf_value("seq", i);
    for (std::size_t t = 0; t < sT; ++t) mask[t] = t < 4 ? 1.0 : 0.0;  // the user has 4 behaviours, 2 padded
    shared["k"] = k, shared["seq"] = seq, shared["mask"] = mask;
    vec kb, seqb, maskb;
    for (std::size_t b = 0; b < batch; ++b) {
        kb.insert(kb.end(), k.begin(), k.end());
        seqb.insert(seqb.end(), seq.begin(), seq.end());
        maskb.insert(maskb.end(), mask.begin(), mask.end());
    }
    batched["k"] = kb, batched["seq"] = seqb, batched["mask"] = maskb;
}

} // namespace

// ==== AutoInt ===========================================================================================

TEST_CASE("autoint: defaults and the layer's interface (no variables, concat of (N, K))") {
    CHECK(ai_main.n_inits == 0);
    CHECK(!ai_main.has_penalty());
    CHECK(f::program<double, ai_main_y>::n_params == 0);
}

TEST_CASE("autoint: the spec's reference values (N = 3, K = 2, one and two layers)") {
    const vec spec_x = {1, 0, 0, 2, 1, 1};
    const double l1[] = {0.8446376, 0.7330436, 0.1331867, 1.8509371, 0.5776812, 1.2669564};
    const double l2[] = {0.4941377, 1.3232281, 0.3058488, 1.6071227, 0.4027717, 1.4629475};
    // the naive reference reproduces the spec's numbers (7 digits) ...
    const vec r1 = autoint_ref(spec_x, 1, 1, 3, 2), r2 = autoint_ref(spec_x, 1, 2, 3, 2);
    for (std::size_t i = 0; i < 6; ++i) {
        CHECK(r1[i] == doctest::Approx(l1[i]).epsilon(1e-6));
        CHECK(r2[i] == doctest::Approx(l2[i]).epsilon(1e-6));
    }
    // ... and the layer matches the reference in float64 and float32 (stack: (3, 2))
    leaves L;
    L["x"] = {1, 0, 0, 2, 1, 1, 1, 0, 0, 2, 1, 1};
    test::check_values<ai_spec1>(L, 2, autoint_ref(L["x"], 2, 1, 3, 2));
    test::check_values<ai_spec2>(L, 2, autoint_ref(L["x"], 2, 2, 3, 2));
}

TEST_CASE("autoint: two layers against the naive reference in float64 and float32; derivatives") {
    leaves L;
    test::fill<f::program<double, ai_main_y>>(L, aB);
    const vec want = autoint_ref(L["x"], aB, 2);
    test::check_values<ai_main_y>(L, aB, want);
    // one layer is not the identity and two layers differ from one (the loop really iterates)
    const vec one = autoint_ref(L["x"], aB, 1);
    double d01 = 0, d12 = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        d01 = std::max(d01, std::abs(one[i] - L["x"][i]));
        d12 = std::max(d12, std::abs(one[i] - want[i]));
    }
    CHECK(d01 > 1e-3);
    CHECK(d12 > 1e-3);
    check_ad<ai_main_y>(aB);
}

TEST_CASE("autoint: the gradient equals the spec's closed form (A^T Ybar + (Sbar + Sbar^T) X per layer)") {
    using G = f::grad_program<double, ai_main_y>;
    leaves L;
    const auto outs = test::run<G>(L, aB);
    const vec& dx = outs[G::grad<"x">];
    REQUIRE(dx.size() == aB * aN * aK);
    const std::size_t N = aN, K = aK;
    for (std::size_t b = 0; b < aB; ++b) {
        vec X(N * K), Yb(N * K);
        for (std::size_t i = 0; i < N * K; ++i) X[i] = get(L, "x")[b * N * K + i], Yb[i] = get(L, "cotangent")[b * N * K + i];
        const auto trace = autoint_one(X, N, K, 2).first;
        for (std::size_t l = trace.size(); l-- > 0;) {
            const auto& t = trace[l];
            vec Ab(N * N, 0.0), Sb(N * N), Xb(N * K, 0.0);
            for (std::size_t i = 0; i < N; ++i)  // Abar = Ybar X^T
                for (std::size_t j = 0; j < N; ++j)
                    for (std::size_t c = 0; c < K; ++c) Ab[i * N + j] += Yb[i * K + c] * t.X[j * K + c];
            for (std::size_t i = 0; i < N; ++i) {  // Sbar = A (Abar - rowsum(A Abar))
                double rs = 0;
                for (std::size_t j = 0; j < N; ++j) rs += t.A[i * N + j] * Ab[i * N + j];
                for (std::size_t j = 0; j < N; ++j) Sb[i * N + j] = t.A[i * N + j] * (Ab[i * N + j] - rs);
            }
            for (std::size_t j = 0; j < N; ++j)  // Xbar = A^T Ybar + (Sbar + Sbar^T) X
                for (std::size_t c = 0; c < K; ++c)
                    for (std::size_t i = 0; i < N; ++i)
                        Xb[j * K + c] += t.A[i * N + j] * Yb[i * K + c] + (Sb[j * N + i] + Sb[i * N + j]) * t.X[i * K + c];
            Yb = Xb;
        }
        for (std::size_t i = 0; i < N * K; ++i) CHECK(dx[b * N * K + i] == doctest::Approx(Yb[i]).epsilon(1e-12));
    }
}

TEST_CASE("autoint: the original test: layer_num = 2 on ones (100, 10, 10) gives ones (100, 100), sum 10000") {
    leaves L;
    L["x"] = ones(100 * 100);
    const vec out = test::forward<f::program<float, ai_orig>>(L, 100);
    REQUIRE(out.size() == 100 * 100);
    double sum = 0;
    for (double v : out) {
        CHECK(v == doctest::Approx(1.0).epsilon(1e-6));
        sum += v;
    }
    CHECK(sum == doctest::Approx(10000.0).epsilon(1e-6));
}

TEST_CASE("autoint: unscaled large logits (S ~ 1e3, exp would overflow) stay finite and correct") {
    leaves L;
    vec x(aB * aN * aK);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = 20.0 * leaf_value("x", i);
    L["x"] = x;
    const vec want = autoint_ref(x, aB, 2);
    REQUIRE(all_finite(want));
    const vec d = test::forward<f::program<double, ai_main_y>>(L, aB);
    const vec s = test::forward<f::program<float, ai_main_y>>(L, aB);
    CHECK(all_finite(d));
    CHECK(all_finite(s));
    check_close(d, want, 1e-9);
    check_close(s, want, 1e-3);  // float32 logits of ~1e3 carry ~1e-4 absolute error
}

TEST_CASE("autoint: out_type stack, none and keep_list") {
    SUBCASE("stack: (N, K), the same values") {
        leaves L;
        const vec got = test::forward<f::program<double, ai_stack>>(L, aB);
        check_close(got, autoint_ref(L["x"], aB, 2), 1e-12);
    }
    SUBCASE("layer_num = 0: the merged input, as the source's empty loop") {
        leaves L;
        const vec got = test::forward<f::program<double, ai_zero>>(L, aB);
        check_close(got, L["x"], 0.0);
    }
}

// ==== DMR_U2I ===========================================================================================

TEST_CASE("dmr_u2i: default PReLU, float64 and float32 against the reference; derivatives") {
    using P = f::program<double, dmr_prelu>;
    CHECK(param_shape<P>("d/bias") == make_dims<dC>());
    CHECK(param_shape<P>("d/dense/bias") == make_dims<dI>());
    CHECK(param_shape<P>("d/dense/p_re_lu/alpha") == make_dims<dI>());
    CHECK(param_shape<P>("d/pos_emb") == make_dims<dT, dC>());
}

TEST_CASE("dmr_u2i: the spec's reference value (T = 2, U_e = C = I_e = 1)") {
    leaves L;
    L["d/pos_emb"] = {0.1, 0.2};
    L["seq"] = {1.0, 3.0};
    L["d/dense/kernel"] = {0.5};
    L["item"] = {3.0};
    L["d/emb_weight"] = {1.0};
    L["d/z_weight"] = {1.0};
    L["d/bias"] = {0.0};
    L["d/dense/bias"] = {0.0};
    L["d/dense/p_re_lu/alpha"] = {0.0};
    const dmr_ref ref(L, 1, 1, 2, 1, 1, 1);
    CHECK(ref.l[0] == doctest::Approx(1.1).epsilon(1e-14));
    CHECK(ref.l[1] == doctest::Approx(3.2).epsilon(1e-14));
    CHECK(ref.alpha[0] == doctest::Approx(0.1090968).epsilon(1e-6));
    CHECK(ref.m[0] == doctest::Approx(2.7818064).epsilon(1e-7));
    CHECK(ref.h[0] == doctest::Approx(1.3909032).epsilon(1e-7));
    CHECK(test::forward<f::program<double, dmr_spec>>(L, 1)[0] == doctest::Approx(4.1727095).epsilon(1e-7));
}

TEST_CASE("dmr_u2i: the original test (relu, cmp_dim 5, ones item (100, 10), seq (100, 15, 10)); initializers") {
    using P = f::program<float, dmr_orig_y>;
    CHECK(P::n_params == 6);  // no PReLU alpha with relu
    CHECK(P::parameters::position("dmr__u2i/dense/p_re_lu/alpha") == P::parameters::count);
    P::parameters p;
    fl::initialize<dmr_orig>(p, 11);
    // GlorotUniform limits sqrt(6 / (fan_in + fan_out))
    for (auto [n, lim] : {std::pair{"dmr__u2i/pos_emb", std::sqrt(6.0 / 20)}, std::pair{"dmr__u2i/emb_weight", std::sqrt(6.0 / 15)},
                          std::pair{"dmr__u2i/dense/kernel", std::sqrt(6.0 / 20)}}) {
        INFO(n);
        CHECK(max_abs<P>(p, n) <= lim);
        CHECK(max_abs<P>(p, n) > 0.5 * lim);
    }
    for (float v : p.get<"dmr__u2i/z_weight">()) CHECK(v == 1.0f);
    CHECK(max_abs<P>(p, "dmr__u2i/bias") == 0.0);
    CHECK(max_abs<P>(p, "dmr__u2i/dense/bias") == 0.0);
    // all-ones steps: alpha sums to 1, so m = 1 and out_j = relu(sum_u W[u, j])
    leaves L;
    load_params<P>(L, p);
    L["item"] = ones(100 * 10);
    L["seq"] = ones(100 * 150);
    const vec out = test::forward<P>(L, 100);
    const auto Wk = p.get<"dmr__u2i/dense/kernel">();
    double sum = 0, want_sum = 0;
    for (std::size_t b = 0; b < 100; ++b)
        for (std::size_t j = 0; j < 10; ++j) {
            double z = 0;
            for (std::size_t u = 0; u < 10; ++u) z += Wk[u * 10 + j];
            CHECK(out[b * 10 + j] == doctest::Approx(std::max(z, 0.0)).epsilon(1e-5));
            sum += out[b * 10 + j], want_sum += std::max(z, 0.0);
        }
    CHECK(sum == doctest::Approx(want_sum).epsilon(1e-5));
}

TEST_CASE("dmr_u2i: regularizer on pos_emb, emb_weight and dense/kernel only; other activations") {
    leaves L;
    const vec y = test::forward<f::program<double, dmr_reg_y>>(L, dB);
    double want = 0;
    for (const char* n : {"d/pos_emb", "d/emb_weight", "d/dense/kernel"})
        for (double v : get(L, n)) want += 0.25 * std::abs(v) + 0.5 * v * v;
    CHECK(test::forward<f::program<double, dmr_reg_pen>>(L, 1)[0] == doctest::Approx(want).epsilon(1e-12));
    // tanh projection
    check_close(y, dmr_ref(L, dB, 3).out, 1e-10);
}

TEST_CASE("dmr_u2i: the attention bias shifts every score by bias . z, so it cannot change the output") {
    leaves L;
    const vec a = test::forward<f::program<double, dmr_prelu>>(L, dB);
    leaves M = L;
    for (std::size_t i = 0; i < dC; ++i) M["d/bias"][i] = 3.0 + leaf_value("b2", i);
    const vec b = test::forward<f::program<double, dmr_prelu>>(M, dB);
    check_close(b, dmr_ref(M, dB, 1).out, 1e-12);
    check_close(b, a, 1e-12);
    // and its gradient is zero up to rounding
    using G = f::grad_program<double, dmr_prelu>;
    const auto outs = test::run<G>(L, dB);
    const vec& gb = outs[G::grad<"d/bias">];
    REQUIRE(gb.size() == dC);
    for (double v : gb) CHECK(std::abs(v) < 1e-12);
}

TEST_CASE("dmr_u2i: no mask - a zero-padded step still takes part in the softmax (source behaviour)") {
    leaves L;
    test::fill<f::program<double, dmr_prelu>>(L, dB);
    for (std::size_t i = 0; i < dB * dT * dU; ++i)  // the last two steps of every sequence are zero padding
        if ((i / dU) % dT >= dT - 2) L["seq"][i] = 0.0;
    const dmr_ref ref(L, dB, 1);
    check_close(test::forward<f::program<double, dmr_prelu>>(L, dB), ref.out, 1e-12);
    // (the padded steps got weight exp(pos_emb[t] . z + bias . z) / sum, not 0)
    CHECK(ref.alpha[dT - 1] > 1e-3);
}

// ==== iRazor ============================================================================================

TEST_CASE("irazor: Y = X * (softmax(w / t) . R) and nas_loss, float64 and float32; derivatives") {
    leaves L;
    const vec a = test::forward<f::program<double, ir_main_y>>(L, rB);
    const vec b = test::forward<f::program<double, ir_nofw_y>>(L, rB);
    check_close(b, a, 0.0);
    CHECK(test::forward<f::program<double, ir_nofw_loss>>(L, 1)[0] == 0.0);
}

TEST_CASE("irazor: nas_space[0] > 0 zeroes the leading columns; a repeated boundary is an empty group") {
    SUBCASE("{3, 5, 6, 10}: columns 0..2 get weight 0") {
        leaves L;
        test::fill<f::program<double, ir_lead>>(L, rB);
        const irazor_ref ref(get(L, "r/nas_weight"), {3, 5, 6, 10}, 0.7, rN, rK);
        const vec want = ref.y(get(L, "x"), rB);
        for (std::size_t b = 0; b < rB; ++b)
            for (std::size_t a = 0; a < rN; ++a)
                for (std::size_t c = 0; c < 3; ++c) REQUIRE(want[(b * rN + a) * rK + c] == 0.0);
        test::check_values<ir_lead>(L, rB, want);
    }
    SUBCASE("K = 40 > 16 columns (M is a concatenation of concatenations)") {
        leaves L;
        test::fill<f::program<double, ir_wide>>(L, 3);
        const irazor_ref ref(get(L, "r/nas_weight"), {0, 3, 21, 40}, 0.3, 2, 40);
        test::check_values<ir_wide>(L, 3, ref.y(get(L, "x"), 3));
    }
    SUBCASE("{0, 4, 4, 10}: group 2 is empty, its probability weights nothing") {
        vec w(rN * 4);
        for (std::size_t i = 0; i < w.size(); ++i) w[i] = leaf_value("r/nas_weight", i);
        const irazor_ref ref(w, {0, 4, 4, 10}, 0.5, rN, rK);
        // P[n, 0] + P[n, 2] is the mass no column sees: the row sums of M say so
        for (std::size_t a = 0; a < rN; ++a) {
            double rowsum = 0;
            for (std::size_t c = 0; c < rK; ++c) rowsum += ref.M[a * rK + c];
            CHECK(rowsum == doctest::Approx(4 * ref.P[a * 4 + 1] + 6 * ref.P[a * 4 + 3]));
        }
    }
}

TEST_CASE("irazor: out_type stack and none, keep_list") {
    leaves L;
    const vec got = test::forward<f::program<double, ir_stack>>(L, rB);
    const irazor_ref ref(get(L, "r/nas_weight"), {0, 2, 5, 7, 10}, 0.08, rN, rK);
    check_close(got, ref.y(get(L, "x"), rB), 1e-12);
}

TEST_CASE("irazor: the original test (nas_space {0, 2, 5, 7, 10}, t = 0.08, ones (100, 10, 10)); initializer") {
    using P = f::program<float, ir_orig_y>;
    REQUIRE(P::n_params == 1);
    CHECK(P::parameters::names[0] == "i_razor/nas_weight");
    CHECK(P::tab.nodes[P::param_ids[0]].shape == make_dims<10, 5>());
    P::parameters p;
    fl::initialize<ir_orig>(p, 7);
    const double lim = std::sqrt(6.0 / (10 + 5));  // GlorotUniform on (N, L)
    CHECK(max_abs<P>(p, "i_razor/nas_weight") <= lim);
    CHECK(max_abs<P>(p, "i_razor/nas_weight") > 0.5 * lim);
    leaves L;
    load_params<P>(L, p);
    L["x"] = ones(100 * 100);
    const vec out = test::forward<P>(L, 100);
    const irazor_ref ref(get(L, "i_razor/nas_weight"), {0, 2, 5, 7, 10}, 0.08, 10, 10);
    double sum = 0, want_sum = 0;
    for (std::size_t b = 0; b < 100; ++b)
        for (std::size_t i = 0; i < 100; ++i) {
            CHECK(out[b * 100 + i] == doctest::Approx(ref.M[i]).epsilon(1e-5));
            sum += out[b * 100 + i];
            want_sum += ref.M[i];
        }
    CHECK(sum == doctest::Approx(want_sum).epsilon(1e-5));
    // every field keeps at most all K columns: 0 < sum_k M[n, k] < K
    for (std::size_t n = 0; n < 10; ++n) {
        double s = 0;
        for (std::size_t k = 0; k < 10; ++k) s += ref.M[n * 10 + k];
        CHECK(s > 0);
        CHECK(s < 10);
    }
}

TEST_CASE("irazor: initializer and regularizer options; M is computed with the parameters") {
    leaves L;
    test::fill<f::program<double, ir_opt_y>>(L, 2);
    double want = 0;
    for (double v : get(L, "r/nas_weight")) want += 0.5 * std::abs(v) + 0.25 * v * v;
    CHECK(test::forward<f::program<double, ir_opt_pen>>(L, 1)[0] == doctest::Approx(want).epsilon(1e-12));
    using P = f::program<double, ir_opt_y>;
    P::parameters p;
    fl::initialize<ir_opt>(p, 1);
    for (double v : p.get<"r/nas_weight">()) CHECK(v == 0.25);
    // the mask M reads only nas_weight: derived parameters, so each example costs one
    // elementwise step (X * M)
    using F = f::program<float, ir_opt_y>;
    std::size_t derived = 0, batched_steps = 0;
    for (std::size_t i = 0; i < F::size; ++i) {
        derived += F::pl.derived[i];
        // (the output's reshape is a root copy, not work)
        batched_steps += F::pl.step[i] && F::tab.nodes[i].batched && F::tab.nodes[i].op != f::opcode::reshape;
    }
    CHECK(derived > 0);
    CHECK(batched_steps == 1);
}

// ==== DIN ===============================================================================================

TEST_CASE("din: relu MLP with weight norm, mode sum, against the literal reference; derivatives") {
    leaves L;
    test::fill<f::program<double, din_plain>>(L, nB);
    test::check_values<din_plain>(L, nB, din_ref(L, nB, {6, 4, 1}, 1, false, false, false));
    check_ad<din_plain>(nB);
}

TEST_CASE("din: mask, decay and mode weighted against the reference; derivatives with padded steps") {
    leaves L;
    set_din_mask(L, nB);
    test::fill<f::program<double, din_masked>>(L, nB);
    const vec want = din_ref(L, nB, {4, 1}, 2, true, true, true);
    test::check_values<din_masked>(L, nB, want);
    // padded steps are exactly zero rows in mode weighted
    std::size_t zero_rows = 0;
    for (std::size_t r = 0; r < nB * nT; ++r)
        zero_rows += std::all_of(want.begin() + r * nH, want.begin() + (r + 1) * nH, [](double v) { return v == 0.0; });
    CHECK(zero_rows >= 3);
    check_ad<din_masked_ad>(nB);
    // the derivative check's mask really pads some steps
    leaves M;
    test::fill<f::program<double, din_masked_ad>>(M, nB);
    std::size_t padded = 0;
    for (double v : M["mask_raw"]) padded += v <= 0.0;
    CHECK(padded > 0);
    CHECK(padded < nB * nT);
}

TEST_CASE("din: padding never changes the result; padded keys get zero gradient") {
    using G = f::grad_program<double, din_pad>;
    leaves clean;
    set_din_mask(clean, nB);
    test::fill<G>(clean, nB);
    leaves dirty = clean;
    for (std::size_t i = 0; i < nB * nT * nH; ++i)
        if (din_mask_value(i / nH) == 0.0) dirty["k"][i] = 1e3 * leaf_value("other", i);
    const auto c = test::run<G>(clean, nB);
    const auto d = test::run<G>(dirty, nB);
    REQUIRE(c.size() == d.size());
    for (std::size_t r = 0; r < c.size(); ++r) {
        if (r == G::grad<"k">) continue;  // the keys differ at padded steps; checked below
        INFO("output " << r);
        for (std::size_t i = 0; i < c[r].size(); ++i) CHECK(c[r][i] == doctest::Approx(d[r][i]).epsilon(1e-12));
    }
    const vec& dk = d[G::grad<"k">];
    for (std::size_t i = 0; i < dk.size(); ++i)
        if (din_mask_value(i / nH) == 0.0) CHECK(dk[i] == 0.0);
    // and the padded steps really were different inputs that matter when unmasked
    const vec a = test::forward<f::program<double, din_nopad>>(clean, nB), b = test::forward<f::program<double, din_nopad>>(dirty, nB);
    double diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
    CHECK(diff > 1.0);
}

TEST_CASE("din: the plans never build the 4H-wide row and compute q's share once per example") {
    using F = f::program<double, din_plain>;
    using G = f::grad_program<double, din_plain>;
    auto has_wide_row = [](const auto& tab, std::size_t size) {
        for (std::size_t i = 0; i < size; ++i)
            if (tab.nodes[i].batched && tab.nodes[i].shape.size() % (4 * nH) == 0 && tab.nodes[i].shape.size() >= nT * 4 * nH) return true;
        return false;
    };
    CHECK_FALSE(has_wide_row(F::tab, F::size));
    CHECK_FALSE(has_wide_row(G::tab, G::size));
    auto count_contract = [](const auto& tab, std::size_t size, std::size_t n, bool batched) {
        std::size_t c = 0;
        for (std::size_t i = 0; i < size; ++i)
            c += tab.nodes[i].op == f::opcode::contract && tab.nodes[i].batched == batched && tab.nodes[i].shape.size() == n;
        return c;
    };
    // first layer: q (W_a + W_c) is a (6)-vector per example; k (W_b - W_c) and (q * k) W_d are (T, 6)
    CHECK(count_contract(F::tab, F::size, 6, true) == 1);
    CHECK(count_contract(F::tab, F::size, nT * 6, true) == 2);
    // backward: dq gets its share through one (6) x (6, H) product per example
    CHECK(count_contract(G::tab, G::size, nH, true) >= 1);
    // the layer writes the literal (T, 4H) concatenation, which the matmul rewrite replaces: the
    // model's graph holds it, the programs do not
    std::size_t concats = 0;
    for (std::size_t i = 0; i < din_plain.g.n; ++i)
        concats += din_plain.g.nodes[i].op == f::opcode::concat && din_plain.g.nodes[i].shape == make_dims<nT, 4 * nH>();
    CHECK(concats == 1);
    std::size_t in_program = 0;
    for (std::size_t i = 0; i < F::size; ++i) in_program += F::tab.nodes[i].op == f::opcode::concat;
    CHECK(in_program == 0);
}

TEST_CASE("din: the original test: hidden_units [10, 1] on ones q (100, 10), k (100, 15, 10)") {
    leaves L;
    L["q"] = ones(100 * 10);
    L["k"] = ones(100 * 150);
    const vec got = test::forward<f::program<float, din_orig>>(L, 100);
    REQUIRE(got.size() == 100 * 10);
    // identity activation (the default): the MLP is affine; on ones every example is the same
    vec h(40);
    for (std::size_t j = 0; j < 10; ++j) h[j] = 1, h[10 + j] = 1, h[20 + j] = 0, h[30 + j] = 1;
    h = flat_ref::dense(L, h, 1, 40, 10, "din/compress_tower/dense_0", flat_ref::norm::trainable);
    h = flat_ref::dense(L, h, 1, 10, 1, "din/compress_tower/dense_1", flat_ref::norm::trainable);
    for (double v : got) CHECK(v == doctest::Approx(15 * h[0]).epsilon(1e-4));
}

TEST_CASE("din: variables, shapes and initializers") {
    using M = f::program<float, din_plain>;
    CHECK(M::parameters::names.size() == 9);
    CHECK(param_shape<M>("din/compress_tower/dense_0/kernel") == make_dims<4 * nH, 6>());
    CHECK(param_shape<M>("din/compress_tower/dense_1/kernel") == make_dims<6, 4>());
    CHECK(param_shape<M>("din/compress_tower/dense_2/kernel") == make_dims<4, 1>());
    CHECK(param_shape<M>("din/compress_tower/dense_0/trainable_kernel_norm") == make_dims<6>());
    M::parameters p;
    fl::initialize<din_plain_r>(p, 5);
    for (float v : p.get<"din/compress_tower/dense_0/bias">()) CHECK(v == 0.0f);
    double s = 0;
    for (float v : p.get<"din/compress_tower/dense_0/kernel">()) s += double(v) * v;
    CHECK(s > 0);
}

// ==== serving ==============================================================================================

TEST_CASE("serving: DIN with a shared behaviour sequence scores like the per-candidate form") {
    leaves S, Bt;
    one_user(S, Bt, sB);
    test::fill<f::program<double, serve_din_shared>>(S, sB);
    for (const char* n : {"q"}) Bt[n] = S[n];
    const vec want = test::forward<f::program<double, serve_din_batched>>(Bt, sB);
    check_close(want, din_ref(Bt, sB, {8, 4, 1}, 1, false, false, true, sT, sH), 1e-12);
    check_close(test::forward<f::program<double, serve_din_shared>>(S, sB), want, 1e-12);
    check_close(test::forward<f::program<float, serve_din_shared>>(S, sB), want, 2e-5);
}

TEST_CASE("serving: DIN's user-side product runs once per call, the candidate-side ones per candidate") {
    using P = f::program<float, serve_din_shared>;
    CHECK(contracts<P>(false, sT * 8) == 1);  // k (W_b - W_c): once per request
    CHECK(contracts<P>(true, 8) == 1);        // q (W_a + W_c): per candidate, once
    CHECK(contracts<P>(true, sT * 8) == 1);   // (q * k) W_d: per candidate (maybe in an epilogue)
}

TEST_CASE("serving: DMR_U2I with a shared sequence: everything but the product with the item runs once") {
    leaves S, Bt;
    one_user(S, Bt, sB);
    test::fill<f::program<double, serve_dmr_shared>>(S, sB);
    Bt["item"] = S["item"];
    const vec batched = test::forward<f::program<double, serve_dmr_batched>>(Bt, sB);
    check_close(test::forward<f::program<double, serve_dmr_shared>>(S, sB), batched, 1e-12);
    using P = f::program<float, serve_dmr_shared>;
    CHECK(contracts<P>(true) == 0);
    CHECK(contracts<P>(false) >= 3);  // the score, the pooling and the projection
}

TEST_CASE("serving: the gradient w.r.t. a shared input is the sum over the batch") {
    using GS = f::grad_program<double, serve_din_shared>;
    using GB = f::grad_program<double, serve_din_batched>;
    leaves S, Bt;
    one_user(S, Bt, sB);
    test::fill<GS>(S, sB);
    for (const char* n : {"q", "cotangent"}) Bt[n] = S[n];
    const auto s = test::run<GS>(S, sB);
    const auto b = test::run<GB>(Bt, sB);
    const vec& dks = s[GS::grad<"k">];
    const vec& dkb = b[GB::grad<"k">];
    REQUIRE(dks.size() == sT * sH);
    REQUIRE(dkb.size() == sB * sT * sH);
    double scale = 0;
    for (std::size_t i = 0; i < sT * sH; ++i) {
        double sum = 0;
        for (std::size_t e = 0; e < sB; ++e) sum += dkb[e * sT * sH + i];
        CHECK(dks[i] == doctest::Approx(sum).epsilon(1e-10));
        scale = std::max(scale, std::abs(sum));
    }
    CHECK(scale > 1e-3);
    // parameter gradients agree too
    const vec& w0s = s[GS::grad<"din/compress_tower/dense_0/kernel">];
    const vec& w0b = b[GB::grad<"din/compress_tower/dense_0/kernel">];
    REQUIRE(w0s.size() == w0b.size());
    for (std::size_t i = 0; i < w0s.size(); ++i) CHECK(w0s[i] == doctest::Approx(w0b[i]).epsilon(1e-10));
}

// ==== SeNet (spec layers-trans-seq-multitask-nas.md 1.2) =======================================================
namespace {
constexpr std::size_t eN = 4, eK = 3, eC = 2, eB = 3;
constexpr auto ex = f::input<"x", eN, eK>;
constexpr auto se_main = fl::senet<"s", {.num_feature = eN, .cmp_dim = eC}>(ex);
constexpr auto se_main_y = se_main.out();
// on_gpu selects nothing: the same graph
constexpr auto se_gpu_y = fl::senet<"s", {.num_feature = eN, .cmp_dim = eC, .on_gpu = true}>(ex).out();
static_assert(se_gpu_y.id == se_main_y.id && se_gpu_y.g.n == se_main_y.g.n);
static_assert(se_main_y.shape() == make_dims<eN * eK>());
constexpr cl::senet_config se_defaults{};
static_assert(se_defaults.cmp_dim == 0 && !se_defaults.on_gpu && se_defaults.out_type == cl::merge_type::concat && !se_defaults.keep_list);
static_assert(!se_defaults.regularizer.active() && !se_defaults.kernel_regularizer.active() && !se_defaults.bias_regularizer.active());
// cmp_dim None
constexpr auto se_spec = fl::senet<"s", {.num_feature = 2, .out_type = cl::merge_type::stack}>(f::input<"x", 2, 2>).out();
static_assert(se_spec.shape() == make_dims<2, 2>());
constexpr auto se_raw = fl::senet<"s", {.num_feature = eN}>(ex);
constexpr auto se_raw_y = se_raw.out();
// out_type stack, none and keep_list on the tensor input, in one output
constexpr fl::result se_out_types_model() {
    fl::result m;
    const f::val x = m.input("x", make_dims<eN, eK>());
    using cl::merge_type;
    const fl::val_list st = fl::senet(m, "s", {.num_feature = eN, .cmp_dim = eC, .out_type = merge_type::stack}, x);
    const fl::val_list nn = fl::senet(m, "s", {.num_feature = eN, .cmp_dim = eC, .out_type = merge_type::none, .keep_list = true}, x);
    const fl::val_list cc = fl::senet(m, "s", {.num_feature = eN, .cmp_dim = eC}, x);
    const fl::val_list ck = fl::senet(m, "s", {.num_feature = eN, .cmp_dim = eC, .keep_list = true}, x);
    const fl::val_list sk = fl::senet(m, "s", {.num_feature = eN, .cmp_dim = eC, .out_type = merge_type::stack, .keep_list = true}, x);
    if (st.list || st[0].rank() != 2 || st[0].dim(0) != eN || st[0].dim(1) != eK) throw "stack: (N, K)";
    if (!nn.list || nn.n != eN || nn[0].rank() != 1 || nn[0].dim(0) != eK) throw "none: N tensors (K); keep_list ignored";
    // keep_list: a one-element list of exactly the concat / stack outputs
    if (!ck.list || ck.n != 1 || ck[0].id != cc[0].id || !sk.list || sk.n != 1 || sk[0].id != st[0].id) throw "keep_list";
    f::val parts[1 + eN]{};
    parts[0] = f::reshape(st[0], f::dims_of({eN * eK}));
    for (std::size_t n = 0; n < eN; ++n) parts[1 + n] = nn[n];
    m.set_out(f::concat(0, parts, 1 + eN));
    return m;
}
constexpr auto se_out_types = se_out_types_model();
constexpr auto se_out_types_y = se_out_types.out();
// a list of widths 2, 3, 4: concat and none (with the tower) in one output; without the tower
constexpr auto se0 = f::input<"e0", 2>;
constexpr auto se1 = f::input<"e1", 3>;
constexpr auto se2 = f::input<"e2", 4>;
constexpr fl::result se_list_model() {
    fl::result m;
    const f::val es[3] = {m.input("e0", make_dims<2>()), m.input("e1", make_dims<3>()), m.input("e2", make_dims<4>())};
    const fl::val_list cc = fl::senet(m, "s", {.num_feature = 3, .cmp_dim = eC}, es, 3);
    const fl::val_list nn = fl::senet(m, "s", {.num_feature = 3, .cmp_dim = eC, .out_type = cl::merge_type::none, .keep_list = true}, es, 3);
    const fl::val_list ck = fl::senet(m, "s", {.num_feature = 3, .cmp_dim = eC, .keep_list = true}, es, 3);
    if (cc.list || cc[0].dim(0) != 9) throw "concat: (2 + 3 + 4)";
    if (!nn.list || nn.n != 3 || nn[2].dim(0) != 4) throw "none: (2), (3), (4)";
    if (!ck.list || ck.n != 1 || ck[0].id != cc[0].id) throw "keep_list: [concat]";
    m.set_out(f::concat(0, {cc[0], nn[0], nn[1], nn[2]}));
    return m;
}
constexpr auto se_list = se_list_model();
constexpr auto se_list_y = se_list.out();
constexpr auto se_list_raw = fl::senet<"s", {.num_feature = 3}>({se0, se1, se2}).out();
// equal widths, stacked: the tensor path on the same rows
constexpr auto se_eq = fl::senet<"s", {.num_feature = eN, .out_type = cl::merge_type::stack}>(
                           {f::input<"e0", eK>, f::input<"e1", eK>, f::input<"e2", eK>, f::input<"e3", eK>})
                           .out();
static_assert(se_eq.shape() == make_dims<eN, eK>());
// a one-element list: the bare (5) element for none, concat and stack; keep_list wraps it
constexpr auto se_one_in = f::input<"e0", 5>;
constexpr auto se_one = fl::senet<"s", {.num_feature = 1, .out_type = cl::merge_type::none}>({se_one_in}).out();
static_assert(se_one.shape() == make_dims<5>());
static_assert(fl::senet<"s", {.num_feature = 1}>({se_one_in}).out().id == se_one.id);
static_assert(fl::senet<"s", {.num_feature = 1, .out_type = cl::merge_type::stack}>({se_one_in}).out().id == se_one.id);
static_assert([] {
    fl::result m;
    const f::val e = m.input("e0", make_dims<5>());
    const fl::val_list k = fl::senet(m, "s", {.num_feature = 1, .keep_list = true}, &e, 1);
    const fl::val_list b = fl::senet(m, "s", {.num_feature = 1}, &e, 1);
    return k.list && k.n == 1 && k[0].id == b[0].id && !b.list;
}());
// the original test: num_feature 10, cmp_dim 4 on (10, 10); one graph for the three initializers
constexpr auto se_ox = f::input<"x", 10, 10>;
constexpr auto se_og = fl::senet<"s", {.num_feature = 10, .cmp_dim = 4, .initializer = init::GlorotNormal{}}>(se_ox);
constexpr auto se_oh = fl::senet<"s", {.num_feature = 10, .cmp_dim = 4, .initializer = init::HeUniform{}}>(se_ox);
constexpr auto se_od = fl::senet<"s", {.num_feature = 10, .cmp_dim = 4}>(se_ox);
constexpr auto se_od_y = se_od.out();
static_assert(se_og.out().id == se_od_y.id && se_oh.out().id == se_od_y.id && se_od_y.shape() == make_dims<100>());
// regularizers
constexpr auto se_rs = fl::senet<"s", {.num_feature = eN, .cmp_dim = eC, .regularizer = cl::regularizer{0.1, 0.5}}>(ex);
constexpr auto se_rk = fl::senet<"s", {.num_feature = eN, .cmp_dim = eC, .kernel_regularizer = cl::regularizer{0.1, 0.5}}>(ex);
constexpr auto se_rs_pen = se_rs.penalty();
static_assert(se_rk.penalty().id == se_rs_pen.id && se_rk.penalty().g.n == se_rs_pen.g.n);  // the aliases are one option
constexpr auto se_rb_pen = fl::senet<"s", {.num_feature = eN, .cmp_dim = eC, .regularizer = ctrec::reg::L2{0.5},
                                           .bias_regularizer = ctrec::reg::L2{0.25}}>(ex)
                               .penalty();

const char* const se_names[] = {"e0", "e1", "e2", "e3"};
// a = sigmoid(relu(z W1 + b1) W2 + b2), weight-normalised kernels of scope "s"
vec se_tower(leaves& L, const vec& z, std::size_t n, std::size_t c) {
    vec h = flat_ref::dense(L, z, 1, n, c, "s/cmp_tower/dense_0", flat_ref::norm::trainable);
    for (double& v : h) v = flat_ref::relu(v);
    vec a = flat_ref::dense(L, h, 1, c, n, "s/cmp_tower/dense_1", flat_ref::norm::trainable);
    for (double& v : a) v = flat_ref::sigmoid(v);
    return a;
}
// per example: z_n = mean of row n (widths[n] values from row(b, n, k)), a = tower(z) (or z),
// y_n = a_n row_n; the rows of y in order
template <class Row>
vec se_ref(leaves& L, std::size_t batch, const std::vector<std::size_t>& widths, std::size_t tower_c, Row row) {
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        vec z(widths.size(), 0.0);
        for (std::size_t n = 0; n < widths.size(); ++n) {
            for (std::size_t k = 0; k < widths[n]; ++k) z[n] += row(b, n, k);
            z[n] /= static_cast<double>(widths[n]);
        }
        const vec a = tower_c ? se_tower(L, z, widths.size(), tower_c) : z;
        for (std::size_t n = 0; n < widths.size(); ++n)
            for (std::size_t k = 0; k < widths[n]; ++k) out.push_back(a[n] * row(b, n, k));
    }
    return out;
}
vec se_ref_x(leaves& L, std::size_t batch, std::size_t tower_c) {
    const vec& x = get(L, "x");
    return se_ref(L, batch, std::vector<std::size_t>(eN, eK), tower_c, [&](std::size_t b, std::size_t n, std::size_t k) { return x[(b * eN + n) * eK + k]; });
}
vec se_ref_list(leaves& L, std::size_t batch, std::size_t tower_c) {
    const std::vector<std::size_t> widths{2, 3, 4};
    return se_ref(L, batch, widths, tower_c,
                  [&](std::size_t b, std::size_t n, std::size_t k) { return get(L, se_names[n])[b * widths[n] + k]; });
}
} // namespace

TEST_CASE("senet: defaults; Y = sigmoid(relu(z W1 + b1) W2 + b2) * X with weight norm, float64 and float32; derivatives") {
    leaves L;
    test::fill<f::program<double, se_main_y>>(L, eB);
    const vec& x = get(L, "x");
    vec z(eN);
    for (std::size_t n = 0; n < eN; ++n) z[n] = (x[n * eK] + x[n * eK + 1] + x[n * eK + 2]) / 3;
    const vec a = se_tower(L, z, eN, eC);
    CHECK(*std::min_element(a.begin(), a.end()) > 0.0);
    CHECK(*std::max_element(a.begin(), a.end()) < 1.0);
    CHECK(*std::max_element(a.begin(), a.end()) - *std::min_element(a.begin(), a.end()) > 1e-3);
    check_close(test::forward<f::program<double, se_main_y>>(L, eB), se_ref_x(L, eB, eC), 1e-12);
}

TEST_CASE("senet: variable names and shapes (cmp_tower, weight norm on)") {
    using V = std::vector<std::size_t>;
    const std::map<std::string, V> want{{"s/cmp_tower/dense_0/kernel", V{eN, eC}}, {"s/cmp_tower/dense_0/trainable_kernel_norm", V{eC}},
                                        {"s/cmp_tower/dense_0/bias", V{eC}},       {"s/cmp_tower/dense_1/kernel", V{eC, eN}},
                                        {"s/cmp_tower/dense_1/trainable_kernel_norm", V{eN}}, {"s/cmp_tower/dense_1/bias", V{eN}}};
    CHECK(param_shapes<f::program<double, se_main_y>>() == want);
    CHECK(se_main.n_inits == 6);  // two kernels, two column norms, two biases
}

TEST_CASE("senet: cmp_dim None: the raw means, no sigmoid, no variables") {
    SUBCASE("the spec's reference value: X = [[1, 3], [2, 2]] -> a = [2, 2], Y = [[2, 6], [4, 4]]") {
        leaves L;
        L["x"] = {1, 3, 2, 2, 1, 3, 2, 2};
        test::check_values<se_spec>(L, 2, {2, 6, 4, 4, 2, 6, 4, 4});
    }
    SUBCASE("random values, derivatives (the weights depend on the input: two paths into dL/dX)") {
        CHECK(se_raw.n_inits == 0);
        CHECK(!se_raw.has_penalty());
        CHECK(f::program<double, se_raw_y>::n_params == 0);
        leaves L;
        test::fill<f::program<double, se_raw_y>>(L, eB);
        test::check_values<se_raw_y>(L, eB, se_ref_x(L, eB, 0));
        check_ad<se_raw_y>(eB);
    }
}

TEST_CASE("senet: out_type stack, none and keep_list (tensor input)") {
    leaves L;
    const vec got = test::forward<f::program<double, se_out_types_y>>(L, eB);
    const vec want = se_ref_x(L, eB, eC);
    REQUIRE(got.size() == eB * 2 * eN * eK);
    for (std::size_t b = 0; b < eB; ++b)
        for (std::size_t i = 0; i < eN * eK; ++i) {
            CHECK(got[b * 2 * eN * eK + i] == doctest::Approx(want[b * eN * eK + i]).epsilon(1e-12));           // stack
            CHECK(got[b * 2 * eN * eK + eN * eK + i] == doctest::Approx(want[b * eN * eK + i]).epsilon(1e-12));  // none: Y[:, n, :]
        }
}

TEST_CASE("senet: list input of different widths (2, 3, 4): concat, none, keep_list, derivatives") {
    SUBCASE("with the tower: concat (2 + 3 + 4) and none (B, 2), (B, 3), (B, 4) in one program") {
        leaves L;
        const vec got = test::forward<f::program<double, se_list_y>>(L, eB);
        const vec want = se_ref_list(L, eB, eC);  // (B, 9): the concat rows
        REQUIRE(got.size() == eB * 18);
        for (std::size_t b = 0; b < eB; ++b)
            for (std::size_t i = 0; i < 9; ++i) {
                CHECK(got[b * 18 + i] == doctest::Approx(want[b * 9 + i]).epsilon(1e-12));
                CHECK(got[b * 18 + 9 + i] == doctest::Approx(want[b * 9 + i]).epsilon(1e-12));
            }
    }
    SUBCASE("derivatives of the list path (means of each element, per-element scales), without the tower") {
        leaves L;
        test::fill<f::program<double, se_list_raw>>(L, eB);
        test::check_values<se_list_raw>(L, eB, se_ref_list(L, eB, 0));
        check_ad<se_list_raw>(eB);
    }
}

TEST_CASE("senet: list input of equal widths: stack equals the tensor path on the same rows") {
    leaves L;
    test::fill<f::program<double, se_raw_y>>(L, eB);
    for (std::size_t n = 0; n < eN; ++n) {
        vec e(eB * eK);
        for (std::size_t b = 0; b < eB; ++b)
            for (std::size_t k = 0; k < eK; ++k) e[b * eK + k] = get(L, "x")[(b * eN + n) * eK + k];  // e_n[b, k] = x[b, n, k]
        L[se_names[n]] = e;
    }
    check_close(test::forward<f::program<double, se_eq>>(L, eB), se_ref_x(L, eB, 0), 1e-12);
}

TEST_CASE("senet: a one-element list returns its bare (B, K) element (keep_list wraps it)") {
    leaves L;
    const vec got = test::forward<f::program<double, se_one>>(L, eB);
    const vec want = se_ref(L, eB, {5}, 0, [&](std::size_t b, std::size_t, std::size_t k) { return get(L, "e0")[b * 5 + k]; });
    check_close(got, want, 1e-12);
}

namespace {
// initialise the original test's program from result R, check the variables, run on ones
template <const auto& R>
vec se_orig_check(double (*bound)(int, int), const char* what) {
    using P = f::program<double, se_od_y>;
    INFO(what);
    P::parameters p;
    fl::initialize<R>(p, 3);
    for (auto [kn, gn, bn, fi, fo] : {std::tuple{"s/cmp_tower/dense_0/kernel", "s/cmp_tower/dense_0/trainable_kernel_norm", "s/cmp_tower/dense_0/bias", 10, 4},
                                      std::tuple{"s/cmp_tower/dense_1/kernel", "s/cmp_tower/dense_1/trainable_kernel_norm", "s/cmp_tower/dense_1/bias", 4, 10}}) {
        auto k = p.get(P::parameters::position(kn)), g = p.get(P::parameters::position(gn)), b = p.get(P::parameters::position(bn));
        double biggest = 0;
        for (double v : k) biggest = std::max(biggest, std::abs(v));
        CHECK(biggest <= bound(fi, fo));
        CHECK(biggest > 0.3 * bound(fi, fo));  // really drawn at that scale
        for (double v : b) CHECK(v == 0.0);
        for (std::size_t j = 0; j < std::size_t(fo); ++j) {  // norms = initial column norms
            double s = 0;
            for (std::size_t i = 0; i < std::size_t(fi); ++i) s += k[i * fo + j] * k[i * fo + j];
            CHECK(g[j] == doctest::Approx(std::sqrt(s)).epsilon(1e-14));
        }
    }
    leaves L;
    for (std::size_t i = 0; i < P::n_params; ++i) {
        const auto w = p.get(i);
        L[P::parameters::names[i]] = vec(w.begin(), w.end());
    }
    L["x"] = ones(100 * 100);
    const vec out = test::forward<P>(L, 100);
    // z = 1 everywhere, so every example gives Y[n, k] = a_n: W_eff = W0 at initialisation
    const vec a = se_tower(L, vec(10, 1.0), 10, 4);
    double sum = 0, want = 0;
    for (std::size_t b = 0; b < 100; ++b)
        for (std::size_t n = 0; n < 10; ++n)
            for (std::size_t k = 0; k < 10; ++k) {
                CHECK(out[(b * 10 + n) * 10 + k] == doctest::Approx(a[n]).epsilon(1e-12));
                sum += out[(b * 10 + n) * 10 + k], want += a[n];
            }
    CHECK(sum == doctest::Approx(want).epsilon(1e-12));
    return a;
}
double glorot_normal_bound(int fi, int fo) { return 2 * std::sqrt(2.0 / (fi + fo)) / 0.87962566103423978; }  // truncated at 2 sigma
double he_uniform_bound(int fi, int) { return std::sqrt(6.0 / fi); }
double glorot_uniform_bound(int fi, int fo) { return std::sqrt(6.0 / (fi + fo)); }
} // namespace

TEST_CASE("senet: the original test: num_feature 10, cmp_dim 4 on ones (100, 10, 10); GlorotNormal, HeUniform, default") {
    const vec a_g = se_orig_check<se_og>(glorot_normal_bound, "GlorotNormal");
    const vec a_h = se_orig_check<se_oh>(he_uniform_bound, "HeUniform");
    const vec a_d = se_orig_check<se_od>(glorot_uniform_bound, "GlorotUniform (default)");
    CHECK(a_g != a_h);
    CHECK(a_d != a_h);
}

TEST_CASE("senet: regularizer penalties: regularizer / kernel_regularizer aliases on the raw kernels, bias_regularizer") {
    leaves L;
    test::fill<f::program<double, se_main_y>>(L, 1);
    auto sum_sq = [&](const char* n) {
        double s = 0;
        for (double v : get(L, n)) s += v * v;
        return s;
    };
    auto sum_abs = [&](const char* n) {
        double s = 0;
        for (double v : get(L, n)) s += std::abs(v);
        return s;
    };
    const double kernels_l1 = sum_abs("s/cmp_tower/dense_0/kernel") + sum_abs("s/cmp_tower/dense_1/kernel");
    const double kernels_l2 = sum_sq("s/cmp_tower/dense_0/kernel") + sum_sq("s/cmp_tower/dense_1/kernel");
    const double biases_l2 = sum_sq("s/cmp_tower/dense_0/bias") + sum_sq("s/cmp_tower/dense_1/bias");
    CHECK(!se_main.has_penalty());  // none by default
    CHECK(test::forward<f::program<double, se_rs_pen>>(L, 1)[0] == doctest::Approx(0.1 * kernels_l1 + 0.5 * kernels_l2).epsilon(1e-12));
    CHECK(test::forward<f::program<double, se_rb_pen>>(L, 1)[0] == doctest::Approx(0.5 * kernels_l2 + 0.25 * biases_l2).epsilon(1e-12));
}
