// Numerical robustness of the ops (issue 15): softmax over each axis, log-sigmoid (the losses'
// form and LogitCorrection's), softplus, sigmoid cross-entropy, sigmoid and tanh (the GRU
// gates), softmax cross-entropy and l2_normalize, at inputs of magnitude 1e4 (+, - and mixed)
// and for all-equal inputs. Every value and every gradient is finite and equal to a float64
// reference written stably from the definition (max-shifted log-sum-exp, softplus as
// max(x, 0) + log1p(exp(-|x|))), in float and double, on the CPU and the reference backends;
// at the saturated ends the exact limits (log_sigmoid(-1e4) = -1e4, d CE / d x = sigmoid(x) - y
// = 1 - y or -y, an all-equal softmax = 1/n exactly).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/logit_correction.hpp"
#include "ctrec/train/losses.hpp"
#include "numerics_support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
using num::leaves;
using num::vec;

namespace {

// ---- the expressions: one forward program (all roots) and one gradient program ----------------
constexpr std::size_t D0 = 3, D1 = 4, D2 = 5, NS = D0 * D1 * D2;  // softmax input (3, 4, 5)
constexpr std::size_t C = 4;                                       // softmax cross-entropy classes
constexpr std::size_t R = 4, K = 6, NL = R * K;                    // l2_normalize input (4, 6)
constexpr std::size_t NF = 6;                                      // scalar functions, one slot each

constexpr auto xs = f::input<"x", D0, D1, D2>;
constexpr auto s0 = f::softmax(xs, 0);
constexpr auto s1 = f::softmax(xs, 1);
constexpr auto s2 = f::softmax(xs, 2);

// slot k of "v" (NF) feeds function k, so each gradient element belongs to one function
constexpr auto v = f::input<"v", NF>;
constexpr auto lab = f::input<"y", 1>;
constexpr auto slot(std::size_t k) { return f::slice(v, 0, k, k + 1); }
constexpr auto lc = fl::logit_correction<"lc", {.sample_bias = true}>(slot(3));
constexpr auto scalars = f::concat<0>(f::log_sigmoid(slot(0)), f::softplus(slot(1)), f::sigmoid_cross_entropy(slot(2), lab),
                                      lc.out(), f::sigmoid(slot(4)), f::tanh(slot(5)));

constexpr auto z = f::input<"z", C>;
constexpr auto p = f::input<"p", C>;
constexpr auto sce = f::softmax_cross_entropy(z, p);  // () per example

constexpr auto xl = f::input<"xl", R, K>;
constexpr auto n1 = f::l2_normalize(xl, 1);
constexpr auto n0 = f::l2_normalize(xl, 0);

using Fwd64 = f::program<double, s0, s1, s2, scalars, sce, n1, n0>;
using Fwd32 = f::program<float, s0, s1, s2, scalars, sce, n1, n0>;
enum out_index { O_S0, O_S1, O_S2, O_SCALARS, O_SCE, O_N1, O_N0 };

// one root for the gradient program: every value above, side by side (the cotangent slices it)
constexpr auto groot = f::concat<0>(f::reshape<NS>(s0 + s1 + s2), scalars, f::reshape<1>(sce), f::reshape<NL>(n1 + n0));
constexpr std::size_t G_S = 0, G_F = NS, G_CE = NS + NF, G_L = NS + NF + 1, G_N = NS + NF + 1 + NL;
using Grad64 = f::grad_program<double, groot>;
using Grad32 = f::grad_program<float, groot>;

// ---- inputs ---------------------------------------------------------------------------------------
// The scalar functions' arguments: both signs, around every threshold (float's exp overflow at
// 88.7, the branch at 0) and the magnitudes 1e3 and 1e4.
const vec args = {-1e4, -1e3, -100, -88.5, -40, -17, -1, -1e-7, 0, 1e-7, 1, 17, 40, 88.5, 100, 1e3, 1e4};
const std::size_t B = args.size();

// softmax example kinds (example b is kind b % 6)
enum { MIXED_1E4, EQUAL_POS, EQUAL_NEG, TIES_1E4, SMALL, EQUAL_ZERO, N_KINDS };
double softmax_input(std::size_t kind, std::size_t b, std::size_t i) {
    switch (kind) {
        case MIXED_1E4: return 1e4 * test::leaf_value("x", b * NS + i);
        case EQUAL_POS: return 1e4;
        case EQUAL_NEG: return -1e4;
        case TIES_1E4: return (i * 7) % 3 == 0 ? 1e4 : i % 2 ? -1e4 : 0.0;  // several maxima per line
        case SMALL: return test::leaf_value("x", b * NS + i);
        default: return 0.0;
    }
}
// softmax cross-entropy rows (logits | labels): one-hot at +-1e4, all-equal 1e4 and -1e4, ties,
// nearly equal large logits, small logits
const std::vector<vec> ce_rows = {
    {1e4, -1e4, 0, 5e3, /**/ 0, 1, 0, 0},          {1e4, 1e4, 1e4, 1e4, /**/ 0.1, 0.2, 0.3, 0.4},
    {-1e4, -1e4, -1e4, -1e4, /**/ 0, 0, 1, 0},     {-1e4, 1e4, -1e4, 1e4, /**/ 0.5, 0, 0.5, 0},
    {1e4, 1e4 - 1, 1e4 - 2, 1e4 - 3, /**/ 0, 0, 0, 1}, {0.1, -0.2, 0.3, 0.05, /**/ 0.25, 0.25, 0.25, 0.25}};
// l2_normalize example kinds: 1e4 mixed, all 1e4, all -1e4, a zero row, small, 1e4 beside 1e-3
double l2_input(std::size_t kind, std::size_t b, std::size_t i) {
    switch (kind) {
        case 0: return 1e4 * test::leaf_value("xl", b * NL + i);
        case 1: return 1e4;
        case 2: return -1e4;
        case 3: return i / K == 2 ? 0.0 : test::leaf_value("xl", b * NL + i);
        case 4: return test::leaf_value("xl", b * NL + i);
        default: return i % 2 ? 1e4 : 1e-3;
    }
}

leaves make_leaves() {
    leaves L;
    for (std::size_t b = 0; b < B; ++b) {
        for (std::size_t i = 0; i < NS; ++i) L["x"].push_back(softmax_input(b % N_KINDS, b, i));
        for (std::size_t k = 0; k < NF; ++k) L["v"].push_back(args[b]);
        L["y"].push_back(b % 3 == 0 ? 0.0 : b % 3 == 1 ? 1.0 : 0.25);
        const vec& row = ce_rows[b % ce_rows.size()];
        L["z"].insert(L["z"].end(), row.begin(), row.begin() + C);
        L["p"].insert(L["p"].end(), row.begin() + C, row.end());
        for (std::size_t i = 0; i < NL; ++i) L["xl"].push_back(l2_input(b % 6, b, i));
        // cotangent: leaf values on the softmax and l2 parts, 1 on the losses (exact derivatives)
        for (std::size_t i = 0; i < G_N; ++i)
            L["cotangent"].push_back(i >= G_F && i < G_L ? 1.0 : test::leaf_value("cotangent", b * G_N + i));
    }
    num::prepare<Fwd64>(L, B);
    num::prepare<Grad64>(L, B);
    return L;
}

// ---- float64 references ---------------------------------------------------------------------------
double softplus_ref(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); }
double sigmoid_ref(double x) { return x >= 0 ? 1 / (1 + std::exp(-x)) : std::exp(x) / (1 + std::exp(x)); }

// f applied along `axis` of every (D0, D1, D2) block: f(line values) -> line values
template <class F>
vec along(const vec& x, std::size_t axis, F fn) {
    const std::size_t d[3] = {D0, D1, D2}, st[3] = {D1 * D2, D2, 1};
    vec out(x.size());
    for (std::size_t b = 0; b < x.size() / NS; ++b)
        for (std::size_t i = 0; i < NS; ++i) {
            if ((i / st[axis]) % d[axis] != 0) continue;  // i starts a line
            vec line(d[axis]);
            for (std::size_t k = 0; k < d[axis]; ++k) line[k] = x[b * NS + i + k * st[axis]];
            const vec r = fn(line);
            for (std::size_t k = 0; k < d[axis]; ++k) out[b * NS + i + k * st[axis]] = r[k];
        }
    return out;
}
vec softmax_line(const vec& x) {
    double m = -num::inf, s = 0;
    for (double e : x) m = std::max(m, e);
    vec r(x.size());
    for (std::size_t k = 0; k < x.size(); ++k) s += r[k] = std::exp(x[k] - m);
    for (double& e : r) e /= s;
    return r;
}
// the softmax VJP along a line: s * (c - sum(s * c)); lines hold [x..., c...]
vec softmax_vjp_line(const vec& xc) {
    const std::size_t n = xc.size() / 2;
    const vec s = softmax_line(vec(xc.begin(), xc.begin() + n));
    double sc = 0;
    for (std::size_t k = 0; k < n; ++k) sc += s[k] * xc[n + k];
    vec r(xc.size(), 0.0);
    for (std::size_t k = 0; k < n; ++k) r[k] = s[k] * (xc[n + k] - sc);
    return r;
}

// the part [from, from + n) of every example's cotangent
vec cot_part(leaves& L, std::size_t from, std::size_t n) {
    vec r;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t i = 0; i < n; ++i) r.push_back(L["cotangent"][b * G_N + from + i]);
    return r;
}

// l2_normalize (TF: x rsqrt(max(sum x^2, eps))) and its VJP along an axis of (R, K) blocks
constexpr double eps = 1e-12;
template <class F>
vec along_l2(const vec& x, std::size_t axis, F fn) {
    const std::size_t d[2] = {R, K}, st[2] = {K, 1};
    vec out(x.size());
    for (std::size_t b = 0; b < x.size() / NL; ++b)
        for (std::size_t i = 0; i < NL; ++i) {
            if ((i / st[axis]) % d[axis] != 0) continue;
            vec line(d[axis]);
            for (std::size_t k = 0; k < d[axis]; ++k) line[k] = x[b * NL + i + k * st[axis]];
            const vec r = fn(line);
            for (std::size_t k = 0; k < d[axis]; ++k) out[b * NL + i + k * st[axis]] = r[k];
        }
    return out;
}
vec l2_line(const vec& x) {
    double s = 0;
    for (double e : x) s += e * e;
    const double inv = 1 / std::sqrt(std::max(s, eps));
    vec r(x);
    for (double& e : r) e *= inv;
    return r;
}
// lines hold [x..., c...]: (c - u (u . c)) / |x| where |x|^2 > eps, c / sqrt(eps) below
vec l2_vjp_line(const vec& xc) {
    const std::size_t n = xc.size() / 2;
    double s = 0, uc = 0;
    for (std::size_t k = 0; k < n; ++k) s += xc[k] * xc[k];
    vec r(xc.size(), 0.0);
    if (s < eps) {
        for (std::size_t k = 0; k < n; ++k) r[k] = xc[n + k] / std::sqrt(eps);
        return r;
    }
    const double nrm = std::sqrt(s);
    for (std::size_t k = 0; k < n; ++k) uc += xc[k] / nrm * xc[n + k];
    for (std::size_t k = 0; k < n; ++k) r[k] = (xc[n + k] - xc[k] / nrm * uc) / nrm;
    return r;
}
// x and c interleaved per line: apply a [x..., c...] function along an axis of two tensors
// (`al` walks a tensor of element indices, so each line finds its x and c values)
template <class Along, class F>
vec along2(Along al, const vec& x, const vec& c, std::size_t axis, F fn) {
    vec idx(x.size());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<double>(i);
    return al(idx, axis, [&](const vec& ids) {
        vec xc(2 * ids.size());
        for (std::size_t k = 0; k < ids.size(); ++k) {
            xc[k] = x[static_cast<std::size_t>(ids[k])];
            xc[ids.size() + k] = c[static_cast<std::size_t>(ids[k])];
        }
        const vec r = fn(xc);
        return vec(r.begin(), r.begin() + static_cast<std::ptrdiff_t>(ids.size()));
    });
}

} // namespace

TEST_CASE("softmax over every axis: finite and exact at magnitude 1e4, uniform for all-equal inputs") {
    const leaves L = make_leaves();
    const vec& x = L.v.at("x");
    const vec want[3] = {along(x, 0, softmax_line), along(x, 1, softmax_line), along(x, 2, softmax_line)};
    for (std::size_t a = 0; a < 3; ++a) {
        INFO("axis " << a);
        num::check_both_backends<Fwd64>(L, B, O_S0 + a, want[a], 1e-14);
        num::check_both_backends<Fwd32>(L, B, O_S0 + a, want[a], 2e-7);
    }
    // all-equal lines (1e4, -1e4, 0): exactly 1/n in the element type, on both backends
    auto exact_uniform = [&](auto prog, auto one) {
        using P = decltype(prog);
        using T = decltype(one);
        leaves L1 = L;
        const auto cpu = test::run<P>(L1, B);
        const auto ref = test::run<num::ref_of<P>>(L1, B);
        const std::size_t n[3] = {D0, D1, D2};
        std::size_t bad = 0;
        for (std::size_t b = 0; b < B; ++b) {
            const std::size_t kind = b % N_KINDS;
            if (kind != EQUAL_POS && kind != EQUAL_NEG && kind != EQUAL_ZERO) continue;
            for (std::size_t a = 0; a < 3; ++a)
                for (std::size_t i = 0; i < NS; ++i) {
                    const double u = static_cast<double>(T(1) / static_cast<T>(n[a]));
                    bad += cpu[O_S0 + a][b * NS + i] != u;
                    bad += ref[O_S0 + a][b * NS + i] != u;
                }
        }
        CHECK(bad == 0);
    };
    exact_uniform(Fwd64{}, 0.0);
    exact_uniform(Fwd32{}, 0.0f);
    // ties at the maximum of 1e4 with the rest 2e4 or 1e4 below: exactly 1/k on the k maxima, 0 elsewhere
    {
        leaves L1 = L;
        const auto got = test::run<Fwd32>(L1, B);
        std::size_t bad = 0;
        for (std::size_t b = TIES_1E4; b < B; b += N_KINDS)
            for (std::size_t a = 0; a < 3; ++a)
                for (std::size_t i = 0; i < NS; ++i) {
                    const double w = want[a][b * NS + i];
                    bad += got[O_S0 + a][b * NS + i] != static_cast<double>(static_cast<float>(w));
                }
        CHECK(bad == 0);
    }
}

TEST_CASE("softmax gradient: finite and s * (c - sum(s c)) at magnitude 1e4 and for all-equal inputs") {
    leaves L = make_leaves();
    const vec& x = L.v.at("x");
    const vec c = cot_part(L, G_S, NS);
    vec want(x.size(), 0.0);
    for (std::size_t a = 0; a < 3; ++a) {
        const vec g = along2([](const vec& t, std::size_t ax, auto fn) { return along(t, ax, fn); }, x, c, a, softmax_vjp_line);
        for (std::size_t i = 0; i < want.size(); ++i) want[i] += g[i];
    }
    num::check_gradient<Grad64>(L, B, "x", want, 1e-13);
    num::check_gradient<Grad32>(L, B, "x", want, 1e-6);
    // a saturated line (one maximum 1e4 above the rest) passes exactly zero gradient
    leaves L1 = L;
    const auto g = num::gradients<Grad32>(L1, B)["x"];
    std::size_t bad = 0, n = 0;
    for (std::size_t b = MIXED_1E4; b < B; b += N_KINDS)
        for (std::size_t i = 0; i < NS; ++i)
            if (want[b * NS + i] == 0.0) ++n, bad += g[b * NS + i] != 0.0;
    CHECK(n > 0);
    CHECK(bad == 0);
}

TEST_CASE("log-sigmoid, softplus, sigmoid cross-entropy, sigmoid and tanh at |x| up to 1e4: values and gradients") {
    leaves L = make_leaves();
    vec want(B * NF), dv(B * NF), dy(B);
    for (std::size_t b = 0; b < B; ++b) {
        const double x = L["v"][b * NF], y = L["y"][b];
        const double s = sigmoid_ref(x), t = std::tanh(x);
        const double w[NF] = {-softplus_ref(-x), softplus_ref(x), softplus_ref(x) - x * y, -softplus_ref(-x), s, t};
        const double d[NF] = {sigmoid_ref(-x), s, s - y, sigmoid_ref(-x), s * sigmoid_ref(-x), 1 - t * t};
        for (std::size_t k = 0; k < NF; ++k) want[b * NF + k] = w[k], dv[b * NF + k] = d[k];
        dy[b] = -x;
    }
    num::check_both_backends<Fwd64>(L, B, O_SCALARS, want, 1e-15);
    num::check_both_backends<Fwd32>(L, B, O_SCALARS, want, 2e-7);
    num::check_gradient<Grad64>(L, B, "v", dv, 1e-15);
    num::check_gradient<Grad32>(L, B, "v", dv, 2e-7);
    num::check_gradient<Grad64>(L, B, "y", dy, 0);
    num::check_gradient<Grad32>(L, B, "y", dy, 0);

    // the saturated ends exactly, in float and double, on both backends: log_sigmoid(-1e4) =
    // -1e4, softplus(1e4) = 1e4, CE = 1e4 (1 - y) or 1e4 y, d CE / d x = 1 - y or -y
    auto exact_ends = [&](auto prog) {
        using P = decltype(prog);
        using G = f::grad_program<typename P::element_type, groot>;
        for (int backend = 0; backend < 2; ++backend) {
            INFO(std::string(backend ? "reference" : "CPU") << " backend, " << std::string(sizeof(typename P::element_type) == 4 ? "float" : "double"));
            leaves L1 = L;
            const vec o = backend ? test::run<num::ref_of<P>>(L1, B)[O_SCALARS] : test::run<P>(L1, B)[O_SCALARS];
            auto g = backend ? num::gradients<num::ref_of<G>>(L1, B) : num::gradients<G>(L1, B);
            for (std::size_t b : {std::size_t{0}, B - 1}) {
                const double x = L1["v"][b * NF], y = L1["y"][b], hi = x > 0 ? 1.0 : 0.0;
                const double* ob = &o[b * NF];
                const double* gb = &g["v"][b * NF];
                CHECK(ob[0] == (x > 0 ? 0.0 : x));
                CHECK(ob[1] == (x > 0 ? x : 0.0));
                CHECK(ob[2] == (x > 0 ? x : 0.0) - x * y);
                CHECK(ob[3] == ob[0]);
                CHECK(ob[4] == hi);
                CHECK(ob[5] == (x > 0 ? 1.0 : -1.0));
                CHECK(gb[0] == 1.0 - hi);
                CHECK(gb[1] == hi);
                CHECK(gb[2] == hi - y);
                CHECK(gb[3] == 1.0 - hi);
                CHECK(gb[4] == 0.0);
                CHECK(gb[5] == 0.0);
            }
        }
    };
    exact_ends(Fwd64{});
    exact_ends(Fwd32{});
}

TEST_CASE("softmax cross-entropy at logits of 1e4, all-equal and nearly equal large logits: values and gradients") {
    leaves L = make_leaves();
    vec want(B), dz(B * C), dp(B * C);
    for (std::size_t b = 0; b < B; ++b) {
        const double* zb = &L["z"][b * C];
        const double* pb = &L["p"][b * C];
        // z - lse as (z - m) - ln s: adding m back first would round at m's magnitude
        double m = -num::inf, s = 0, py = 0;
        for (std::size_t c = 0; c < C; ++c) m = std::max(m, zb[c]);
        for (std::size_t c = 0; c < C; ++c) s += std::exp(zb[c] - m), py += pb[c];
        for (std::size_t c = 0; c < C; ++c) {
            const double log_softmax = (zb[c] - m) - std::log(s);
            want[b] -= pb[c] * log_softmax;
            dz[b * C + c] = std::exp(zb[c] - m) / s * py - pb[c];
            dp[b * C + c] = -log_softmax;
        }
    }
    num::check_both_backends<Fwd64>(L, B, O_SCE, want, 1e-15);
    num::check_both_backends<Fwd32>(L, B, O_SCE, want, 2e-7);
    num::check_gradient<Grad64>(L, B, "z", dz, 1e-15);
    num::check_gradient<Grad32>(L, B, "z", dz, 2e-7);
    num::check_gradient<Grad64>(L, B, "p", dp, 1e-15);
    num::check_gradient<Grad32>(L, B, "p", dp, 2e-7);
    CHECK(want[0] == 2e4);               // one-hot on the -1e4 logit beside a 1e4 one
    CHECK(want[1] == doctest::Approx(std::log(4.0)));  // all-equal: ln C for any distribution
}

TEST_CASE("l2_normalize along rows and columns: unit vectors at magnitude 1e4, all-equal and zero lines") {
    leaves L = make_leaves();
    const vec& x = L.v.at("xl");
    const vec w1 = along_l2(x, 1, l2_line), w0 = along_l2(x, 0, l2_line);
    num::check_both_backends<Fwd64>(L, B, O_N1, w1, 1e-15);
    num::check_both_backends<Fwd64>(L, B, O_N0, w0, 1e-15);
    num::check_both_backends<Fwd32>(L, B, O_N1, w1, 3e-7);
    num::check_both_backends<Fwd32>(L, B, O_N0, w0, 3e-7);
    // all-equal rows: every element +-1/sqrt(K)
    CHECK(w1[1 * NL] == doctest::Approx(1 / std::sqrt(double(K))));
    CHECK(w1[2 * NL] == doctest::Approx(-1 / std::sqrt(double(K))));
    const vec c = cot_part(L, G_L, NL);
    const vec g1 = along2([](const vec& t, std::size_t ax, auto fn) { return along_l2(t, ax, fn); }, x, c, 1, l2_vjp_line);
    const vec g0 = along2([](const vec& t, std::size_t ax, auto fn) { return along_l2(t, ax, fn); }, x, c, 0, l2_vjp_line);
    vec want(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) want[i] = g1[i] + g0[i];
    // gradients at inputs of 1e4 are ~1e-4: compare relative to that scale
    num::check_gradient<Grad64>(L, B, "xl", want, 1e-12, 1e-4);
    num::check_gradient<Grad32>(L, B, "xl", want, 2e-5, 1e-4);
}

// The comparison every layer test rests on (support.hpp): a NaN or a misplaced infinity can
// never pass a tolerance, and the scale is max(1, |want|).
TEST_CASE("max_rel_diff: scale max(1, |want|); NaN and unmatched infinities never within a tolerance") {
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    using v = std::vector<double>;
    CHECK(test::max_rel_diff(v{1.0, 2.0}, v{1.0, 2.0}) == 0.0);
    CHECK(test::max_rel_diff(v{0.5}, v{0.25}) == doctest::Approx(0.25));   // absolute below 1
    CHECK(test::max_rel_diff(v{1.5}, v{1.0}) == doctest::Approx(0.5));     // (was 0.25 with 1 + |want|)
    CHECK(test::max_rel_diff(v{110.0}, v{100.0}) == doctest::Approx(0.1));  // relative above 1
    CHECK(test::max_rel_diff(v{nan, 1.0}, v{0.0, 1.0}) == inf);
    CHECK(test::max_rel_diff(v{1.0, 0.0}, v{1.0, nan}) == inf);
    CHECK(test::max_rel_diff(v{inf}, v{1.0}) == inf);
    CHECK(test::max_rel_diff(v{1.0}, v{-inf}) == inf);
    CHECK(test::max_rel_diff(v{inf, -inf}, v{inf, -inf}) == 0.0);
    CHECK(test::max_rel_diff(v{0.0, nan, 5.0}, v{0.0, 1.0, 1e9}) == inf);  // NaN after a larger finite gap
}
