// Numerical robustness of the layers with gates and attention (issue 15): AGRU (tanh) and AUGRU
// (relu) over a sequence, DIEN (GRU, bilinear attention softmax, AUGRU), DIN (relu attention
// MLP), AutoInt (self-attention) and DMR_U2I (position-driven softmax pooling), with inputs of
// magnitude 1e4 (all +1e4, all -1e4, alternating signs, 1e4 times random values) and all-equal
// inputs, beside ordinary ones. Values: finite and equal to naive float64 references from the
// spec (sequence_reference.hpp for AGRU / DIEN, local loops for DIN, AutoInt, DMR) at each
// example's own scale, in float and double on the CPU and the reference backends. Gradients:
// float64 reverse mode against central differences (steps at the inputs' scale), the CPU against
// the reference backend, float finite and close to float64, and AutoInt's exact Jacobian at
// all-equal rows (the mean of the cotangents, whatever their magnitude).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/agru.hpp"
#include "ctrec/layers/autoint.hpp"
#include "ctrec/layers/dien.hpp"
#include "ctrec/layers/din.hpp"
#include "ctrec/layers/dmr_u2i.hpp"
#include "layer_reference.hpp"
#include "numerics_support.hpp"
#include "sequence_reference.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using num::leaves;
using num::vec;

namespace {

constexpr std::size_t T = 3, I = 2, U = 3, E = 2, H = 4, N = 3, KA = 4, DI = 3, DU = 2, DC = 2;

constexpr auto x = f::input<"x", T, I>;
constexpr auto a = f::input<"a", T>;
constexpr auto rg = fl::agru_rnn<"g", {.units = U}>(x, a);  // AGRU, tanh
constexpr auto rg_y = rg.out();
constexpr auto ru = fl::agru_rnn<"u", {.units = U, .att_type = fl::agru_att::augru, .activation = cl::act_relu}>(x, a);
constexpr auto ru_y = ru.out();

constexpr auto dien_y = fl::dien<"dien", {.num_units = U, .att_type = fl::agru_att::augru}>(f::input<"q", U>, f::input<"k", T, E>).out();

constexpr auto din_y = fl::din<"din", cl::din_config<2>{.hidden_units = {4, 1}, .activation = cl::act_relu}>(
                           f::input<"din_q", H>, f::input<"din_k", T, H>)
                           .out();

constexpr auto ai_y = fl::autoint<"ai", {.layer_num = 1}>(f::input<"ax", N, KA>).out();  // (N K)

constexpr auto dmr_y = fl::dmr_u2i<"dmr", {.cmp_dim = DC}>(f::input<"item", DI>, f::input<"seq", T, DU>).out();

using Fwd64 = f::program<double, rg_y, ru_y, dien_y, din_y, ai_y, dmr_y>;
using Fwd32 = f::program<float, rg_y, ru_y, dien_y, din_y, ai_y, dmr_y>;
// per-example output sizes, in root order
constexpr std::size_t n_out[6] = {T * U, T * U, U, H, N * KA, DI};
const char* const out_name[6] = {"AGRU", "AUGRU", "DIEN", "DIN", "AutoInt", "DMR_U2I"};

constexpr auto groot = f::concat<0>(f::reshape<T * U>(rg_y), f::reshape<T * U>(ru_y), dien_y, din_y, ai_y, dmr_y);
constexpr std::size_t G_AI = 2 * T * U + U + H, NG = G_AI + N * KA + DI;  // AutoInt's cotangent slice
using Grad64 = f::grad_program<double, groot>;
using Grad32 = f::grad_program<float, groot>;

enum { MIXED_1E4, EQUAL_POS, EQUAL_NEG, ALTERNATING, SMALL, EQUAL_SMALL, B };
bool all_equal(std::size_t kind) { return kind == EQUAL_POS || kind == EQUAL_NEG || kind == EQUAL_SMALL; }
double input_value(std::size_t kind, const std::string& name, std::size_t i) {
    switch (kind) {
        case MIXED_1E4: return 1e4 * test::leaf_value(name, i);
        case EQUAL_POS: return 1e4;
        case EQUAL_NEG: return -1e4;
        case ALTERNATING: return i % 2 ? 1e4 : -1e4;
        case SMALL: return test::leaf_value(name, i);
        default: return 0.3;
    }
}

leaves make_leaves() {
    leaves L;
    const std::pair<const char*, std::size_t> inputs[] = {{"x", T * I}, {"q", U},          {"k", T * E},     {"din_q", H},
                                                          {"din_k", T * H}, {"ax", N * KA}, {"item", DI}, {"seq", T * DU}};
    for (std::size_t b = 0; b < B; ++b) {
        for (const auto& [name, n] : inputs)
            for (std::size_t i = 0; i < n; ++i) L[name].push_back(input_value(b, name, b * n + i));
        // attention scores of the AGRU: weights in [0, 1], all equal except in the random kinds
        for (std::size_t t = 0; t < T; ++t)
            L["a"].push_back(b == MIXED_1E4 || b == SMALL ? std::abs(test::leaf_value("a", b * T + t)) : 0.5);
    }
    num::prepare<Fwd64>(L, B);
    num::prepare<Grad64>(L, B);
    return L;
}

// ---- float64 references (DIN: tests/test_dcn_din.cpp's; AutoInt and DMR from the spec) ---------
vec din_reference(leaves& L) {
    const vec &q = L["din_q"], &k = L["din_k"];
    vec out;
    for (std::size_t b = 0; b < B; ++b) {
        vec s(T);
        for (std::size_t t = 0; t < T; ++t) {
            vec z(4 * H);
            for (std::size_t h = 0; h < H; ++h) {
                const double qv = q[b * H + h], kv = k[(b * T + t) * H + h];
                z[h] = qv, z[H + h] = kv, z[2 * H + h] = qv - kv, z[3 * H + h] = qv * kv;
            }
            z = flat_ref::dense(L, z, 1, 4 * H, 4, "din/compress_tower/dense_0", flat_ref::norm::trainable);
            for (double& e : z) e = flat_ref::relu(e);
            s[t] = flat_ref::dense(L, z, 1, 4, 1, "din/compress_tower/dense_1", flat_ref::norm::trainable)[0];
        }
        for (std::size_t h = 0; h < H; ++h) {
            double acc = 0;
            for (std::size_t t = 0; t < T; ++t) acc += s[t] * k[(b * T + t) * H + h];
            out.push_back(acc);
        }
    }
    return out;
}
// S = X X^T, A = softmax over each row (max-shifted), out = A X
vec autoint_reference(const vec& x) {
    vec out;
    for (std::size_t b = 0; b < B; ++b) {
        const double* X = &x[b * N * KA];
        for (std::size_t i = 0; i < N; ++i) {
            vec S(N, 0.0);
            double mx = -num::inf, z = 0;
            for (std::size_t j = 0; j < N; ++j) {
                for (std::size_t k = 0; k < KA; ++k) S[j] += X[i * KA + k] * X[j * KA + k];
                mx = std::max(mx, S[j]);
            }
            for (std::size_t j = 0; j < N; ++j) z += S[j] = std::exp(S[j] - mx);
            for (std::size_t k = 0; k < KA; ++k) {
                double o = 0;
                for (std::size_t j = 0; j < N; ++j) o += S[j] / z * X[j * KA + k];
                out.push_back(o);
            }
        }
    }
    return out;
}
// l_t = (pos_t + seq_t W + bias) . z, alpha = softmax_t(l), m = sum_t alpha_t seq_t,
// out = prelu(m K + b) * item
vec dmr_reference(leaves& L) {
    const vec &seq = L["seq"], &item = L["item"], &pos = L["dmr/pos_emb"], &ew = L["dmr/emb_weight"], &zw = L["dmr/z_weight"],
              &bias = L["dmr/bias"], &kern = L["dmr/dense/kernel"], &db = L["dmr/dense/bias"], &alpha_p = L["dmr/dense/p_re_lu/alpha"];
    vec out;
    for (std::size_t b = 0; b < B; ++b) {
        vec l(T, 0.0), m(DU, 0.0);
        for (std::size_t t = 0; t < T; ++t)
            for (std::size_t c = 0; c < DC; ++c) {
                double v = pos[t * DC + c] + bias[c];
                for (std::size_t u = 0; u < DU; ++u) v += seq[(b * T + t) * DU + u] * ew[u * DC + c];
                l[t] += v * zw[c];
            }
        double mx = -num::inf, s = 0;
        for (double e : l) mx = std::max(mx, e);
        for (double& e : l) s += e = std::exp(e - mx);
        for (std::size_t u = 0; u < DU; ++u)
            for (std::size_t t = 0; t < T; ++t) m[u] += l[t] / s * seq[(b * T + t) * DU + u];
        for (std::size_t j = 0; j < DI; ++j) {
            double zj = db[j];
            for (std::size_t u = 0; u < DU; ++u) zj += m[u] * kern[u * DI + j];
            out.push_back((zj > 0 ? zj : alpha_p[j] * zj) * item[b * DI + j]);
        }
    }
    return out;
}

std::vector<vec> references(leaves& L) {
    return {seq_ref::agru_batch(L, "g", B, T, I, U, 2, 0, false).all, seq_ref::agru_batch(L, "u", B, T, I, U, 1, 1, false).all,
            seq_ref::dien_batch(L, "dien", B, T, E, U, 1, 1, false), din_reference(L), autoint_reference(L["ax"]), dmr_reference(L)};
}

template <class P>
void check_outputs(const leaves& L0, const std::vector<vec>& want, double tol) {
    for (int backend = 0; backend < 2; ++backend) {
        leaves L = L0;
        const auto got = backend ? test::run<num::ref_of<P>>(L, B) : test::run<P>(L, B);
        for (std::size_t r = 0; r < 6; ++r) {
            INFO(std::string(out_name[r]) << ", " << std::string(backend ? "reference" : "CPU") << " backend, "
                                         << std::string(sizeof(typename P::element_type) == 4 ? "float" : "double"));
            num::check_per_example(got[r], want[r], n_out[r], tol);
        }
    }
}

} // namespace

TEST_CASE("AGRU, AUGRU, DIEN, DIN, AutoInt and DMR_U2I at inputs of magnitude 1e4 and all-equal inputs: values") {
    leaves L = make_leaves();
    const std::vector<vec> want = references(L);
    check_outputs<Fwd64>(L, want, 1e-12);
    // float: gates and softmax weights whose arguments are differences of 1e4-sized terms move
    // by float's rounding of those terms; errors are relative to each example's largest value
    check_outputs<Fwd32>(L, want, 1e-4);
    // all-equal rows: AutoInt returns its input (a convex combination of equal rows)
    leaves L1 = L;
    const vec ai = test::run<Fwd32>(L1, B)[4];
    for (std::size_t b : {std::size_t{EQUAL_POS}, std::size_t{EQUAL_NEG}, std::size_t{EQUAL_SMALL}})
        for (std::size_t i = 0; i < N * KA; ++i) CHECK(ai[b * N * KA + i] == doctest::Approx(L["ax"][b * N * KA + i]).epsilon(1e-6));
}

namespace {

// Self-attention (AutoInt) and the attention softmax of DIEN see scores of order |x|^2 (1e8 at
// inputs of 1e4): at the tied scores of these kinds a central difference needs steps far below
// the rounding of the outputs, so it says nothing there (AutoInt's exact Jacobian is checked below).
bool tied_at_1e4(std::size_t kind) { return kind == EQUAL_POS || kind == EQUAL_NEG || kind == ALTERNATING; }
bool softmax_of_products(const std::string& n) { return n == "ax" || n == "q" || n == "k" || n.rfind("dien/", 0) == 0; }
// the layer a leaf belongs to (AGRU and AUGRU share x and a)
std::string layer_of(const std::string& n) {
    if (n == "x" || n == "a" || n.rfind("g/", 0) == 0 || n.rfind("u/", 0) == 0) return "agru";
    if (n == "q" || n == "k" || n.rfind("dien/", 0) == 0) return "dien";
    if (n.rfind("din", 0) == 0) return "din";
    if (n == "ax") return "autoint";
    return "dmr";
}

} // namespace

TEST_CASE("AGRU, AUGRU, DIEN, DIN, AutoInt and DMR_U2I at inputs of magnitude 1e4 and all-equal inputs: gradients") {
    leaves L = make_leaves();
    num::check_central_differences<Grad64>(L, B, 1e-5, [](const std::string& n, std::size_t b) {
        return tied_at_1e4(b) && softmax_of_products(n);
    });
    // every example alone: float64 CPU = reference backend; float (both backends) finite and
    // close to float64, errors relative to the largest gradient of the same layer in that
    // example: a gradient that cancels (a softmax weight's under a common offset of 1e4) keeps
    // float's absolute error eps |cotangent| |input|, which the tolerance allows. DIEN at 1e4
    // (states 1e4, scores 1e8, gates whose float derivative y (1 - y) is 0 where float64's is
    // 1e-8 under cotangents of 1e8) is finite but only within the layer's scale in float.
    for (std::size_t b = 0; b < B; ++b) {
        leaves E = num::example_of<Grad64>(L, B, b);
        auto g64 = num::gradients<Grad64>(E, 1);
        auto r64 = num::gradients<num::ref_of<Grad64>>(E, 1);
        auto g32 = num::gradients<Grad32>(E, 1);
        auto r32 = num::gradients<num::ref_of<Grad32>>(E, 1);
        std::map<std::string, double> scale;
        for (const auto& [name, v] : g64)
            for (double e : v) scale[layer_of(name)] = std::max(scale[layer_of(name)], std::abs(e));
        for (const auto& [name, want] : g64) {
            if (name.empty() || (name == "ax" && tied_at_1e4(b))) continue;  // the exact test below
            INFO("example " << b << ", gradient w.r.t. " << name);
            const double s = std::max(scale[layer_of(name)], 1e-300);
            num::check_finite_close(r64[name], want, 1e-12 * s, s);
            const double tol32 = layer_of(name) == "dien" && b != SMALL && b != EQUAL_SMALL ? 1.0 : 2e-3;
            num::check_finite_close(g32[name], want, tol32, s);
            num::check_finite_close(r32[name], want, tol32, s);
        }
    }
}

TEST_CASE("AutoInt at all-equal rows of any magnitude: dX = the mean of the cotangents, exactly") {
    // d out_i = mean_j dx_j at equal rows (the softmax terms cancel), so dx_j = (1/N) sum_i c_i
    leaves L = make_leaves();
    for (std::size_t b : {std::size_t{EQUAL_POS}, std::size_t{EQUAL_NEG}, std::size_t{ALTERNATING}, std::size_t{EQUAL_SMALL}}) {
        leaves E = num::example_of<Grad64>(L, B, b);
        vec want(N * KA);
        for (std::size_t j = 0; j < N; ++j)
            for (std::size_t k = 0; k < KA; ++k) {
                double s = 0;
                for (std::size_t i = 0; i < N; ++i) s += E["cotangent"][G_AI + i * KA + k];
                want[j * KA + k] = s / N;
            }
        INFO("example " << b);
        num::check_gradient<Grad64>(E, 1, "ax", want, 1e-12);
        num::check_gradient<Grad32>(E, 1, "ax", want, 1e-5);
    }
}
