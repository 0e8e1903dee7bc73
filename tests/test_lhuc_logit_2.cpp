// LogitCorrection (spec layers-trans-seq-multitask-nas.md 4) against a naive float64 reference
// written from the spec: the four cases (rate given / absent, sample bias on / off), the
// activation, broadcasting of (1) rates, the spec's reference values, the stable lsig far out
// and its derivative sigma(-l) (1/2 at 0), float64 central differences and JVP/VJP duality, CPU
// and reference backends. (The LHUCTower half of the pair is test_lhuc_logit.cpp.)
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ctrec/core.hpp"
#include "ctrec/layers/logit_correction.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
using test::leaves;
using vec = std::vector<double>;

namespace {

// ---- LogitCorrection models ------------------------------------------------------------------------------
constexpr auto l3 = f::input<"l", 3>;
constexpr auto r1 = f::input<"r", 1>;
constexpr auto lc_plain = fl::logit_correction<"logit_correction">(l3, r1).out();
constexpr auto lc_bias = fl::logit_correction<"logit_correction", {.sample_bias = true}>(l3, f::input<"r", 3>).out();
constexpr auto lc_bias_only = fl::logit_correction<"logit_correction", {.sample_bias = true}>(l3).out();
constexpr auto lc_none = fl::logit_correction<"logit_correction">(l3).out();
// the original test: tanh, logits (10), rates (1)
constexpr auto lc_tanh = fl::logit_correction<"logit_correction", {.activation = fl::act_tanh}>(f::input<"l", 10>, r1).out();
// [B] logits with [B] rates (per-example scalars), the spec's reference values
constexpr auto lc_s = fl::logit_correction<"logit_correction">(f::input<"l">, f::input<"r">).out();
constexpr auto lc_sb = fl::logit_correction<"logit_correction", {.sample_bias = true}>(f::input<"l">, f::input<"r">).out();
// derivatives: rates exp(r) > 0 (check_ad fills leaves in [-1, 1]), logits scaled across both branches
constexpr auto lc_grad = f::batch_mean(f::sum(
    fl::logit_correction<"logit_correction", {.activation = fl::act_tanh, .sample_bias = true}>(l3 * f::lit<4.0>, f::exp(f::input<"r", 3>)).out() *
    f::input<"w", 3>));
constexpr auto lsig_sum = f::batch_sum(f::sum(fl::logit_correction<"logit_correction", {.sample_bias = true}>(l3).out()));

double lsig_ref(double x) { return -(std::max(x, 0.0) - x + std::log1p(std::exp(-std::abs(x)))); }

const vec& get(leaves& L, const std::string& n) {
    REQUIRE(L.v.count(n) == 1);
    return L.v.at(n);
}

} // namespace

TEST_CASE("logit_correction: the four cases and the activation against the spec; reference values; stable lsig") {
    auto ref = [](bool rate, bool bias, bool tanh_act, std::size_t M, std::size_t MR) {
        return [=](leaves& L, std::size_t batch, bool prepare) {
            if (prepare) {  // rates in (0, 1]
                vec& r = L["r"];
                r.resize(batch * MR);
                for (std::size_t e = 0; e < r.size(); ++e) r[e] = 0.05 + 0.475 * (test::leaf_value("r", e) + 1);
                vec& l = L["l"];  // logits across both branches of lsig, up to |l| = 40
                l.resize(batch * M);
                for (std::size_t e = 0; e < l.size(); ++e) l[e] = 40 * test::leaf_value("l", e);
                return vec{};
            }
            vec y(batch * M);
            for (std::size_t b = 0; b < batch; ++b)
                for (std::size_t m = 0; m < M; ++m) {
                    const double l = get(L, "l")[b * M + m];
                    double v = bias ? lsig_ref(l) : l;
                    if (rate) v -= std::log(get(L, "r")[b * MR + (MR == 1 ? 0 : m)]);
                    y[b * M + m] = tanh_act ? std::tanh(v) : v;
                }
            return y;
        };
    };
    test::check_forward_all<lc_plain>(1e-14, ref(true, false, false, 3, 1));
    test::check_forward_all<lc_bias>(1e-14, ref(true, true, false, 3, 3));
    test::check_forward_all<lc_bias_only>(1e-14, ref(false, true, false, 3, 0));
    test::check_forward_all<lc_none>(0.0, ref(false, false, false, 3, 0));
    test::check_forward_all<lc_tanh>(1e-14, ref(true, false, true, 10, 1));
    {  // rates in (0, 1] (leaf_value's [-1, 1] would take the log of negatives: NaN in both)
        leaves L;
        L["r"].resize(70);
        for (std::size_t e = 0; e < 70; ++e) L["r"][e] = 0.05 + 0.475 * (test::leaf_value("r", e) + 1);
        test::check_backends<f::program<double, lc_tanh>>(70, 1e-14, L);
    }
    // reference values: l = 2, r = 0.5 -> 2.6931472; with bias 0.5662192; lsig(-3) = -3.0485874
    {
        leaves L;
        L["l"] = {2.0, -3.0};
        L["r"] = {0.5, 1.0};
        const vec a = test::forward<f::program<double, lc_s>>(L, 2), b = test::forward<f::program<double, lc_sb>>(L, 2);
        CHECK(a[0] == doctest::Approx(2.6931472).epsilon(1e-7));
        CHECK(b[0] == doctest::Approx(0.5662192).epsilon(1e-7));
        CHECK(b[1] == doctest::Approx(-3.0485874).epsilon(1e-7));
        CHECK(test::forward<f::program<float, lc_sb>>(L, 2)[1] == doctest::Approx(-3.0485874).epsilon(1e-6));
    }
    // lsig far out: finite values (no overflow in the unused branch), gradients sigma(-l), and 1/2 at 0
    {
        leaves L;
        L["l"] = {0.0, -800.0, 800.0, -30.0, 30.0, 1e-3};
        using G = f::grad_program<double, lsig_sum>;
        const auto g = test::run<G>(L, 2);
        const vec y = test::forward<f::program<double, lc_bias_only>>(L, 2);
        for (std::size_t e = 0; e < 6; ++e) {
            const double l = L["l"][e];
            CHECK(y[e] == doctest::Approx(lsig_ref(l)).epsilon(1e-15));
            CHECK(g[1][e] == doctest::Approx(1 / (1 + std::exp(l))).epsilon(1e-15));
        }
        CHECK(g[1][0] == 0.5);
    }
    test::check_ad<lc_grad>(4);
}
