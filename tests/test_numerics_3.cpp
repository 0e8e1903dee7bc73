// NaN / Inf policy (issue 15): a NaN or an infinity in one input element of one example of a
// batch of 70 (two tiles) reaches exactly the outputs that depend on it. Checked in float and
// double on the CPU and the reference backends:
// - elementwise ops and every activation: the table below (NaN gives NaN except where the op is
//   a comparison: greater / greater_equal give 0, so where() on a comparison and thresholded
//   relu take the other branch; an infinity gives the op's limit or a non-finite value);
// - a per-field matmul (one GEMM over all examples and fields), an MLP (relu), a softmax and an
//   l2_normalize over one axis, DIN over a masked sequence: the element's example (its field,
//   its line) is non-finite, every other output is bit-identical to the run without it, an -inf logit
//   weighs exactly 0, and a NaN or inf at a padded (masked) step changes nothing, forward or
//   backward;
// - training: a NaN label or feature makes the step's loss and every gradient NaN (nothing is
//   caught: the caller checks the loss), a per-example loss only that example's, and a zero
//   sample weight does not mask it (0 * NaN = NaN).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/din.hpp"
#include "ctrec/layers/logit_correction.hpp"
#include "ctrec/layers/mlp.hpp"
#include "ctrec/train/losses.hpp"
#include "ctrec/train/train_program.hpp"
#include "numerics_support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
using num::inf;
using num::leaves;
using num::qnan;
using num::vec;

namespace {

constexpr std::size_t B = 70;  // two tiles of the CPU backend

// ---- elementwise ops and activations: W lanes per example, one block of W per op ----------------
constexpr std::size_t W = 8;
enum ew_op {
    RELU, MAX_X_C, MAX_C_X, MIN_X_C, MIN_C_X, ABS, TANH, SIGMOID, EXP, SOFTPLUS, LOG_SIGMOID, LC_LOG_SIGMOID,
    ELU, SELU, HARD_SIGMOID, GELU, SWISH, LEAKY, THRESHOLDED, SOFTSIGN, PRELU, ACT_SOFTPLUS, GREATER, WHERE_RAW, N_OPS
};
constexpr fl::result ew_model = [] {
    fl::result m = f::input<"e", W>;
    const f::val x = m.value();
    f::val p[N_OPS];
    p[RELU] = f::relu(x);
    p[MAX_X_C] = f::maximum(x, 0.5);
    p[MAX_C_X] = f::maximum(f::constant(m.g, 0.5), x);
    p[MIN_X_C] = f::minimum(x, 0.5);
    p[MIN_C_X] = f::minimum(f::constant(m.g, 0.5), x);
    p[ABS] = f::abs(x);
    p[TANH] = f::tanh(x);
    p[SIGMOID] = f::sigmoid(x);
    p[EXP] = f::exp(x);
    p[SOFTPLUS] = f::softplus(x);
    p[LOG_SIGMOID] = f::log_sigmoid(x);
    p[LC_LOG_SIGMOID] = fl::log_sigmoid(x);
    p[ELU] = fl::apply_activation(m, fl::act_elu, "a", x);
    p[SELU] = fl::apply_activation(m, fl::act_selu, "a", x);
    p[HARD_SIGMOID] = fl::apply_activation(m, fl::act_hard_sigmoid, "a", x);
    p[GELU] = fl::apply_activation(m, fl::act_gelu, "a", x);
    p[SWISH] = fl::apply_activation(m, fl::act_swish, "a", x);
    p[LEAKY] = fl::apply_activation(m, fl::act_leakyrelu(), "a", x);
    p[THRESHOLDED] = fl::apply_activation(m, fl::act_thresholdedrelu(), "a", x);
    p[SOFTSIGN] = fl::apply_activation(m, fl::act_softsign, "a", x);
    p[PRELU] = fl::apply_activation(m, fl::act_prelu, "prelu", x);  // alpha from leaf values (nonzero)
    p[ACT_SOFTPLUS] = fl::apply_activation(m, fl::act_softplus, "a", x);
    p[GREATER] = f::greater(x, 0.0);
    p[WHERE_RAW] = f::where(x, f::constant(m.g, 1.0), 2.0);  // a raw number as the condition: nonzero is true
    m.set_out(f::concat(0, p, N_OPS));
    return m;
}();
constexpr auto ew = ew_model.out();

// what each op gives for NaN, +inf and -inf (limits where the formula has one; NaN where it
// meets inf - inf or 0 * inf: gelu and swish at -inf, softsign at +-inf)
struct specials {
    double at_nan, at_pinf, at_ninf;
};
specials special(std::size_t op, double prelu_alpha) {
    const double selu_low = -1.0507009873554805 * 1.6732632423543772;
    switch (op) {
        case RELU: return {qnan, inf, 0};
        case MAX_X_C: case MAX_C_X: return {qnan, inf, 0.5};
        case MIN_X_C: case MIN_C_X: return {qnan, 0.5, -inf};
        case ABS: return {qnan, inf, inf};
        case TANH: return {qnan, 1, -1};
        case SIGMOID: return {qnan, 1, 0};
        case EXP: return {qnan, inf, 0};
        case SOFTPLUS: case ACT_SOFTPLUS: return {qnan, inf, 0};
        case LOG_SIGMOID: case LC_LOG_SIGMOID: return {qnan, 0, -inf};
        case ELU: return {qnan, inf, -1};
        case SELU: return {qnan, inf, selu_low};
        case HARD_SIGMOID: return {qnan, 1, 0};
        case GELU: return {qnan, inf, qnan};
        case SWISH: return {qnan, inf, qnan};
        case LEAKY: return {qnan, inf, -inf};
        case THRESHOLDED: return {0, inf, 0};  // a comparison selects: NaN > theta is false
        case SOFTSIGN: return {qnan, qnan, qnan};
        case PRELU: return {qnan, inf, prelu_alpha > 0 ? -inf : inf};
        case GREATER: return {0, 1, 0};  // a comparison, never NaN
        default: return {1, 1, 1};       // WHERE_RAW: NaN and +-inf are nonzero conditions
    }
}
bool same(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

// ---- GEMM per field, MLP, softmax over an axis, DIN over a masked sequence ----------------------
constexpr std::size_t F = 4, K = 5, N = 3;
constexpr auto xf = f::input<"xf", F, K>;
constexpr auto per_field = f::matmul(xf, f::param<"Wf", K, N>);  // (F, N): field f reads only row f
constexpr auto mlp_y = fl::mlp<"mlp", fl::mlp_config<3>{.output_dims = {16, 8, 2}}, fl::mode::predict>(f::reshape<F * K>(xf)).out();

constexpr std::size_t S0 = 3, S1 = 4, S2 = 5, NS = S0 * S1 * S2;
constexpr auto xs = f::input<"xs", S0, S1, S2>;
constexpr auto sm = f::softmax(xs, 1);
constexpr auto l2 = f::l2_normalize(xs, 2);

constexpr std::size_t T = 5, H = 4;
constexpr auto din_y = fl::din<"din", fl::din_config<2>{.hidden_units = {4, 1}, .activation = fl::act_relu}>(
                           f::input<"q", H>, f::input<"k", T, H>, f::input<"mask", T>)
                           .out();

using Fwd64 = f::program<double, ew, per_field, mlp_y, sm, l2, din_y>;
using Fwd32 = f::program<float, ew, per_field, mlp_y, sm, l2, din_y>;
enum { O_EW, O_FIELD, O_MLP, O_SM, O_L2, O_DIN };
constexpr std::size_t out_size[] = {N_OPS * W, F * N, 2, NS, NS, H};

// padded steps of DIN: t = 1 and 3 of every example
double mask_value(std::size_t t) { return t == 1 || t == 3 ? 0.0 : 2.0; }
leaves make_leaves() {
    leaves L;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t t = 0; t < T; ++t) L["mask"].push_back(mask_value(t));
    num::prepare<Fwd64>(L, B);
    return L;
}

template <class P>
std::vector<vec> run_on(int backend, leaves L) {
    return backend ? test::run<num::ref_of<P>>(L, B) : test::run<P>(L, B);
}
// Every output of `got` bit-identical to `base`, except the elements changed(r, example, i) names.
template <class Changed>
void check_only(const std::vector<vec>& got, const std::vector<vec>& base, Changed changed) {
    std::size_t differ = 0, first_r = 0, first_i = 0;
    for (std::size_t r = 0; r < got.size(); ++r)
        for (std::size_t i = 0; i < got[r].size(); ++i)
            if (!changed(r, i / out_size[r], i % out_size[r]) && !same(got[r][i], base[r][i]))
                if (differ++ == 0) first_r = r, first_i = i;
    INFO(differ << " elements changed that do not depend on the poisoned input; first: output " << first_r << " element "
                << first_i << " (example " << first_i / out_size[first_r] << ")");
    CHECK(differ == 0);
}

template <class P>
void for_both(auto body) {
    for (int backend = 0; backend < 2; ++backend) {
        INFO(std::string(backend ? "reference" : "CPU") << " backend, "
                                                        << std::string(sizeof(typename P::element_type) == 4 ? "float" : "double"));
        body(backend);
    }
}

} // namespace

TEST_CASE("elementwise ops and activations: NaN and +-inf give the documented values, lane by lane") {
    auto check = [](auto prog) {
        using P = decltype(prog);
        for_both<P>([](int backend) {
            const leaves L0 = make_leaves();
            const auto base = run_on<P>(backend, L0);
            leaves L = L0;
            // example 3 (first tile): NaN in lane 1, +inf in lane 4, -inf in lane 6; example 66
            // (second tile): NaN in the last lane
            struct poke {
                std::size_t b, lane;
                double v;
            };
            const poke pokes[] = {{3, 1, qnan}, {3, 4, inf}, {3, 6, -inf}, {66, W - 1, qnan}};
            for (const poke& k : pokes) L["e"][k.b * W + k.lane] = k.v;
            const auto got = run_on<P>(backend, L);
            std::size_t wrong = 0;
            for (const poke& k : pokes)
                for (std::size_t op = 0; op < N_OPS; ++op) {
                    const specials s = special(op, L0.v.at("prelu/alpha")[k.lane]);
                    const double want = std::isnan(k.v) ? s.at_nan : k.v > 0 ? s.at_pinf : s.at_ninf;
                    const double g = got[O_EW][k.b * N_OPS * W + op * W + k.lane];
                    // finite limits to the element type's rounding (selu's constants)
                    const double tol = std::isfinite(want) ? 4 * std::numeric_limits<typename P::element_type>::epsilon() : 0.0;
                    if (!same(g, want) && !(std::abs(g - want) <= tol * std::abs(want))) {
                        ++wrong;
                        MESSAGE("op " << op << " at " << k.v << ": got " << g << ", want " << want);
                    }
                }
            CHECK(wrong == 0);
            check_only(got, base, [&](std::size_t r, std::size_t b, std::size_t i) {
                for (const poke& k : pokes)
                    if (r == O_EW && b == k.b && i % W == k.lane) return true;
                return false;
            });
        });
    };
    check(Fwd64{});
    check(Fwd32{});
}

TEST_CASE("a NaN or inf feature stays in its example: per-field GEMM (its field only), relu MLP (non-finite)") {
    auto check = [](auto prog) {
        using P = decltype(prog);
        for_both<P>([](int backend) {
            const leaves L0 = make_leaves();
            const auto base = run_on<P>(backend, L0);
            for (double v : {qnan, inf, -inf}) {
                INFO("poison " << v);
                leaves L = L0;
                const std::size_t b = 37, field = 1;
                L["xf"][b * F * K + field * K + 2] = v;
                const auto got = run_on<P>(backend, L);
                // the poisoned field's outputs are non-finite, the example's other fields unchanged
                std::size_t finite = 0;
                for (std::size_t j = 0; j < N; ++j) finite += std::isfinite(got[O_FIELD][b * F * N + field * N + j]);
                CHECK(finite == 0);
                // the MLP reads every field: a NaN reaches its outputs through relu; an infinity
                // may also end as relu's exact 0 (relu(-inf)), so only NaN is required non-finite
                if (std::isnan(v))
                    for (std::size_t j = 0; j < 2; ++j) CHECK(std::isnan(got[O_MLP][b * 2 + j]));
                check_only(got, base, [&](std::size_t r, std::size_t e, std::size_t i) {
                    return e == b && ((r == O_FIELD && i / N == field) || r == O_MLP);
                });
            }
        });
    };
    check(Fwd64{});
    check(Fwd32{});
}

TEST_CASE("softmax and l2_normalize over an axis: a NaN poisons its line only; +inf its softmax line; -inf weighs 0") {
    auto check = [](auto prog) {
        using P = decltype(prog);
        for_both<P>([](int backend) {
            const leaves L0 = make_leaves();
            const auto base = run_on<P>(backend, L0);
            leaves L = L0;
            // (example, i0, i1, i2, value); the softmax runs along axis 1 (i1)
            const std::size_t at[3][4] = {{5, 1, 2, 3}, {6, 0, 1, 0}, {61, 2, 0, 4}};
            const double vals[3] = {qnan, inf, -inf};
            for (std::size_t p = 0; p < 3; ++p) L["xs"][at[p][0] * NS + at[p][1] * S1 * S2 + at[p][2] * S2 + at[p][3]] = vals[p];
            const auto got = run_on<P>(backend, L);
            auto in_line = [&](std::size_t p, std::size_t e, std::size_t i) {
                return e == at[p][0] && i / (S1 * S2) == at[p][1] && i % S2 == at[p][3];
            };
            std::size_t finite = 0;
            for (std::size_t p = 0; p < 2; ++p)
                for (std::size_t j = 0; j < S1; ++j) finite += std::isfinite(got[O_SM][at[p][0] * NS + at[p][1] * S1 * S2 + j * S2 + at[p][3]]);
            CHECK(finite == 0);
            // -inf: weight 0, the rest of the line is the softmax of the other three values
            {
                const std::size_t e = at[2][0], i0 = at[2][1], i2 = at[2][3];
                const vec& x = L["xs"];
                double m = -inf, s = 0;
                for (std::size_t j = 0; j < S1; ++j) m = std::max(m, x[e * NS + i0 * S1 * S2 + j * S2 + i2]);
                for (std::size_t j = 0; j < S1; ++j) s += std::exp(x[e * NS + i0 * S1 * S2 + j * S2 + i2] - m);
                for (std::size_t j = 0; j < S1; ++j) {
                    const double want = std::exp(x[e * NS + i0 * S1 * S2 + j * S2 + i2] - m) / s;
                    const double g = got[O_SM][e * NS + i0 * S1 * S2 + j * S2 + i2];
                    if (j == at[2][2]) CHECK(g == 0.0);
                    else CHECK(g == doctest::Approx(want).epsilon(sizeof(typename P::element_type) == 4 ? 1e-6 : 1e-14));
                }
            }
            // l2_normalize along axis 2: a NaN makes its line NaN (the clamp max(sum x^2, eps)
            // keeps it); +-inf gives the limit, 0 beside it, and NaN (inf * 0) at it
            auto in_l2_line = [&](std::size_t p, std::size_t e, std::size_t i) {
                return e == at[p][0] && i / S2 == at[p][1] * S1 + at[p][2];
            };
            std::size_t wrong = 0;
            for (std::size_t p = 0; p < 3; ++p)
                for (std::size_t j = 0; j < S2; ++j) {
                    const double g = got[O_L2][at[p][0] * NS + at[p][1] * S1 * S2 + at[p][2] * S2 + j];
                    wrong += p == 0 || j == at[p][3] ? !std::isnan(g) : g != 0.0;
                }
            CHECK(wrong == 0);
            check_only(got, base, [&](std::size_t r, std::size_t e, std::size_t i) {
                if (r == O_L2) return in_l2_line(0, e, i) || in_l2_line(1, e, i) || in_l2_line(2, e, i);
                return r == O_SM && (in_line(0, e, i) || in_line(1, e, i) || in_line(2, e, i));
            });
        });
    };
    check(Fwd64{});
    check(Fwd32{});
}

TEST_CASE("DIN: a NaN in a real step or in q poisons its example only; NaN or inf at a padded step changes nothing") {
    auto check = [](auto prog) {
        using P = decltype(prog);
        for_both<P>([](int backend) {
            const leaves L0 = make_leaves();
            const auto base = run_on<P>(backend, L0);
            {
                leaves L = L0;
                L["k"][(11 * T + 2) * H + 1] = qnan;  // example 11, real step 2
                L["q"][12 * H + 3] = qnan;            // example 12
                const auto got = run_on<P>(backend, L);
                for (std::size_t h = 0; h < H; ++h) {
                    CHECK(std::isnan(got[O_DIN][11 * H + h]));
                    CHECK(std::isnan(got[O_DIN][12 * H + h]));
                }
                check_only(got, base, [](std::size_t r, std::size_t e, std::size_t) { return r == O_DIN && (e == 11 || e == 12); });
            }
            for (double v : {qnan, inf, -inf}) {
                INFO("padding " << v);
                leaves L = L0;
                for (std::size_t h = 0; h < H; ++h) L["k"][(13 * T + 3) * H + h] = v;  // example 13, padded step 3
                L["k"][(40 * T + 1) * H + 2] = v;                                       // example 40, padded step 1
                check_only(run_on<P>(backend, L), base, [](std::size_t, std::size_t, std::size_t) { return false; });
            }
        });
    };
    check(Fwd64{});
    check(Fwd32{});
}

namespace {
using DinGrad = f::grad_program<double, din_y>;
}

TEST_CASE("DIN: NaN or inf at padded steps leaves every gradient as it was (padded keys get exactly 0)") {
    leaves L0 = make_leaves();
    test::fill<DinGrad>(L0, B);
    for (int backend = 0; backend < 2; ++backend) {
        INFO(std::string(backend ? "reference" : "CPU") << " backend");
        const auto base = backend ? test::run<num::ref_of<DinGrad>>(L0, B) : test::run<DinGrad>(L0, B);
        for (double v : {qnan, inf}) {
            INFO("padding " << v);
            leaves L = L0;
            for (std::size_t b = 0; b < B; b += 7)
                for (std::size_t h = 0; h < H; ++h) L["k"][(b * T + 1) * H + h] = v;
            const auto got = backend ? test::run<num::ref_of<DinGrad>>(L, B) : test::run<DinGrad>(L, B);
            for (std::size_t r = 0; r < got.size(); ++r) {
                INFO("output " << r);
                num::check_identical(got[r], base[r]);
            }
            const vec& dk = got[DinGrad::grad<"k">];
            std::size_t nonzero = 0;
            for (std::size_t i = 0; i < dk.size(); ++i) nonzero += mask_value(i / H % T) == 0.0 && dk[i] != 0.0;
            CHECK(nonzero == 0);
        }
    }
}

// ---- training with a NaN label or feature -----------------------------------------------------------
namespace {
constexpr std::size_t TF = 3;
constexpr auto tx = f::input<"x", TF>;
constexpr auto ty = f::input<"y", 1>;
constexpr auto tw = f::input<"w", 1>;
constexpr auto tlogit = f::matmul(tx, f::param<"W", TF, 1>) + f::param<"b", 1>;
constexpr auto per_example = f::sigmoid_cross_entropy(tlogit, ty);
constexpr auto tloss = f::batch_mean(per_example);
constexpr auto twloss = f::weighted_mean(per_example, tw);
using Step = f::train_program<double, tloss>;
using WStep = f::train_program<float, twloss>;
using PerExample = f::program<double, per_example>;
} // namespace

TEST_CASE("training: a NaN label or feature makes the loss and every gradient NaN; per-example losses keep it in its example") {
    for (const char* which : {"y", "x"}) {
        INFO("NaN in " << which);
        leaves L;
        test::fill<Step>(L, B);
        test::fill<WStep>(L, B);
        for (std::size_t b = 0; b < B; ++b) L["y"][b] = b % 2, L["w"][b] = 1.0;
        const auto clean = test::run<Step>(L, B);
        const vec clean_per = test::run<PerExample>(L, B)[0];
        for (const auto& o : clean)
            for (double e : o) REQUIRE(std::isfinite(e));
        L[which][std::string(which) == "x" ? 9 * TF + 1 : 9] = qnan;
        const auto got = test::run<Step>(L, B);
        CHECK(std::isnan(got[0][0]));  // the loss
        std::size_t finite = 0;
        for (std::size_t r = 1; r < got.size(); ++r)
            for (double e : got[r]) finite += std::isfinite(e);
        CHECK(finite == 0);  // every parameter gradient
        // per example: only example 9
        const vec per = test::run<PerExample>(L, B)[0];
        for (std::size_t b = 0; b < B; ++b) {
            if (b == 9) CHECK(std::isnan(per[b]));
            else CHECK(per[b] == clean_per[b]);
        }
        // a zero sample weight does not mask it: 0 * NaN is NaN
        L["w"][9] = 0.0;
        CHECK(std::isnan(test::run<WStep>(L, B)[0][0]));
    }
}
