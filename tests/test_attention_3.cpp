// GradNorm : gnorm_loss and weighted_loss
// against a float64 reference with the task gradients written by hand (layers-core-and-cross.md
// 1.9) on the CPU and reference backends at batch 1, 5 and 70, float too; loss_pow 2, 3 and 1.5,
// relative_diff both ways, several shared inputs; where the gradients go (central differences;
// the stop_gradient'ed leaves get exactly zero); a training step through the total loss.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/grad_norm.hpp"
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

namespace {


// ---- GradNorm (spec 1.9) ----------------------------------------------------------------------------------
constexpr std::size_t In = 3, H = 4;
constexpr auto gx = f::input<"x", In>;
constexpr auto gt = f::input<"t", H>;
constexpr auto gW = f::param<"W", In, H>;
constexpr auto gV = f::param<"V", H, 1>;
constexpr auto gs = f::matmul(gx, gW);
constexpr auto l1 = f::batch_mean(f::sum(gs * gs));                         // dl1/ds = 2 s / B
constexpr auto l2 = f::batch_mean(f::sum(f::tanh(gs) * gt));                // dl2/ds = (1 - tanh^2 s) t / B
constexpr auto l3 = f::sum(f::batch_mean(f::sigmoid(f::matmul(gs, gV))));  // dl3/ds = sig'(s V) V^T / B

double sig(double z) { return 1 / (1 + std::exp(-z)); }
struct gn_ref {
    double gnorm_loss = 0, weighted_loss = 0;
    vec w;
};
// The task gradients with respect to s written by hand.
gn_ref gn_reference(const cl::grad_norm_config& c, leaves& L, std::size_t B) {
    const vec &x = get(L, "x"), &W = get(L, "W"), &V = get(L, "V"), &t = get(L, "t");
    vec sv(B * H, 0.0), z(B, 0.0);
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t j = 0; j < H; ++j)
            for (std::size_t i = 0; i < In; ++i) sv[b * H + j] += x[b * In + i] * W[i * H + j];
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t j = 0; j < H; ++j) z[b] += sv[b * H + j] * V[j];
    double Ls[3] = {0, 0, 0}, G2[3] = {0, 0, 0};
    const double Bd = static_cast<double>(B);
    for (std::size_t b = 0; b < B; ++b) {
        Ls[2] += sig(z[b]) / Bd;
        for (std::size_t j = 0; j < H; ++j) {
            const double sj = sv[b * H + j], tj = t[b * H + j];
            Ls[0] += sj * sj / Bd;
            Ls[1] += std::tanh(sj) * tj / Bd;
            const double g[3] = {2 * sj / Bd, (1 - std::tanh(sj) * std::tanh(sj)) * tj / Bd, sig(z[b]) * (1 - sig(z[b])) * V[j] / Bd};
            for (int k = 0; k < 3; ++k) G2[k] += g[k] * g[k];
        }
    }
    gn_ref o;
    const vec& th = get(L, "gn/grad_norm_weights");
    const double m = std::max({th[0], th[1], th[2]});
    double se = 0;
    for (double v : th) se += std::exp(v - m);
    for (double v : th) o.w.push_back(std::exp(v - m) / se);
    double avg = 0;
    for (std::size_t k = 0; k < 3; ++k) avg += std::sqrt(G2[k]) * o.w[k] / 3;
    for (std::size_t k = 0; k < 3; ++k) {
        double diff = std::abs(std::sqrt(G2[k]) * o.w[k] - avg);
        if (c.relative_diff) diff /= avg + c.epsilon;
        o.gnorm_loss += c.scale * std::pow(diff, c.loss_pow);
        o.weighted_loss += Ls[k] * o.w[k];
    }
    return o;
}

constexpr cl::grad_norm_config gn_def{}, gn_rel{.scale = 0.3, .relative_diff = true}, gn_pow3{.loss_pow = 3.0},
    gn_half{.loss_pow = 1.5, .relative_diff = true};
constexpr auto gn_a = fl::grad_norm<"gn", gn_def>({&l1, &l2, &l3}, {&gs});
constexpr auto gn_b = fl::grad_norm<"gn", gn_rel>({&l1, &l2, &l3}, {&gs});
constexpr auto gn_c = fl::grad_norm<"gn", gn_pow3>({&l1, &l2, &l3}, {&gs});
constexpr auto gn_d = fl::grad_norm<"gn", gn_half>({&l1, &l2, &l3}, {&gs});
constexpr auto gn_a_g = gn_a.gnorm_loss(), gn_a_w = gn_a.weighted_loss();
constexpr auto gn_b_g = gn_b.gnorm_loss();
constexpr auto gn_c_g = gn_c.gnorm_loss();
constexpr auto gn_d_g = gn_d.gnorm_loss();
constexpr auto gn_total = gn_b.weighted_loss() + gn_b.gnorm_loss();

// several shared inputs: a linear term (sum(b)) gives a cotangent the same for every example
constexpr auto gW2 = f::param<"W2", In, 2>;
constexpr auto ga = f::matmul(gx, gW);
constexpr auto gb = f::tanh(f::matmul(gx, gW2));
constexpr auto m1 = f::batch_mean(f::sum(ga * ga) + f::sum(gb));      // d/da = 2a/B, d/db = 1/B
constexpr auto m2 = f::batch_mean(f::sum(ga * gt) + f::sum(gb * gb));  // d/da = t/B,  d/db = 2b/B
constexpr auto gn_two = fl::grad_norm<"gn">({&m1, &m2}, {&ga, &gb});
constexpr auto gn_two_g = gn_two.gnorm_loss(), gn_two_w = gn_two.weighted_loss();

// Gradients of the scalar program E (grad program G) against central differences of E on the
// reference backend, for every leaf but `constants`, whose gradient must be exactly zero
// (stop_gradient'ed: differences see their real influence).
template <class G, class E>
void check_fd(std::size_t batch, std::vector<std::string> constants) {
    using R = typename E::template with_backend<f::reference_backend>;
    leaves L;
    const auto g = test::run<G>(L, batch);
    REQUIRE(G::tab.n_wrt > 0);
    std::size_t checked = 0;
    for (std::size_t k = 0; k < G::tab.n_wrt; ++k) {
        const std::string name(G::tab.name_of(G::tab.wrt[k]));
        INFO("leaf " << name);
        if (std::find(constants.begin(), constants.end(), name) != constants.end()) {
            for (double v : g[1 + k]) CHECK(v == 0.0);
            continue;
        }
        vec& x = L[name];
        REQUIRE(g[1 + k].size() == x.size());
        for (std::size_t e = 0; e < x.size(); ++e, ++checked) {
            const double x0 = x[e], h = 1e-6;
            x[e] = x0 + h;
            const double fp = test::run<R>(L, batch)[0][0];
            x[e] = x0 - h;
            const double fm = test::run<R>(L, batch)[0][0];
            x[e] = x0;
            const double fd = (fp - fm) / (2 * h);
            INFO("[" << e << "] reverse " << g[1 + k][e] << ", central difference " << fd);
            CHECK(std::abs(g[1 + k][e] - fd) <= 1e-6 * (1 + std::abs(fd)));
        }
    }
    CHECK(checked > 0);
}

// gnorm_loss (and, when given, weighted_loss: the same for every configuration) against the
// reference at batch 1, 5 and 70; float when asked; where the gradients go when asked.
template <const auto& GL, const auto& WL, bool Float, bool Grad>
void check_grad_norm(const cl::grad_norm_config& c) {
    for (std::size_t batch : {1, 5, 70}) {
        leaves L;
        const double g = forward<f::program<double, GL>>(L, batch)[0];
        const double gr = forward<typename f::program<double, GL>::template with_backend<f::reference_backend>>(L, batch)[0];
        const gn_ref want = gn_reference(c, L, batch);
        INFO("batch " << batch);
        CHECK(g == doctest::Approx(want.gnorm_loss).epsilon(1e-12));
        CHECK(gr == doctest::Approx(want.gnorm_loss).epsilon(1e-12));
        if constexpr (Float) {
            const double gf = forward<f::program<float, GL>>(L, batch)[0];
            CHECK(std::abs(gf - want.gnorm_loss) <= 1e-5 * (1 + std::abs(want.gnorm_loss)));
        }
        if constexpr (&WL != &GL) {
            CHECK(forward<f::program<double, WL>>(L, batch)[0] == doctest::Approx(want.weighted_loss).epsilon(1e-12));
            CHECK(forward<typename f::program<double, WL>::template with_backend<f::reference_backend>>(L, batch)[0] ==
                  doctest::Approx(want.weighted_loss).epsilon(1e-12));
        }
    }
    // gnorm_loss: the data enter only through the stop_gradient'ed norms
    if constexpr (Grad) check_fd<f::grad_program<double, GL>, f::program<double, GL>>(5, {"x", "t", "W", "V"});
    // weighted_loss: the task weights are constants
    if constexpr (&WL != &GL) check_fd<f::grad_program<double, WL>, f::program<double, WL>>(5, {"gn/grad_norm_weights"});
}

} // namespace
TEST_CASE("GradNorm: values against hand-written task gradients; where the gradients go") {
    SUBCASE("defaults: loss_pow 2, absolute differences; weighted_loss") { check_grad_norm<gn_a_g, gn_a_w, true, true>(gn_def); }
    SUBCASE("relative differences, scale") { check_grad_norm<gn_b_g, gn_b_g, true, true>(gn_rel); }
    SUBCASE("loss_pow 3 (odd: the absolute value matters)") { check_grad_norm<gn_c_g, gn_c_g, false, false>(gn_pow3); }
    SUBCASE("loss_pow 1.5 (not an integer)") { check_grad_norm<gn_d_g, gn_d_g, false, true>(gn_half); }
    static_assert(gn_a.n_inits == 1 && gn_a.g.name_of(gn_a.inits[0].var) == "gn/grad_norm_weights");
    static_assert(gn_a.inits[0].spec.w == ctrec::init::spec(ctrec::init::Zeros{}).w);
}

TEST_CASE("GradNorm with several shared inputs (one with an example-independent gradient)") {
    const std::size_t B = 5;
    leaves L;
    const double gl = forward<f::program<double, gn_two_g>>(L, B)[0];
    const double glr = forward<f::program<double, gn_two_g>::with_backend<f::reference_backend>>(L, B)[0];
    const double wl = forward<f::program<double, gn_two_w>>(L, B)[0];
    const vec &x = get(L, "x"), &W = get(L, "W"), &W2 = get(L, "W2"), &t = get(L, "t"), &th = get(L, "gn/grad_norm_weights");
    double G2[2] = {0, 0}, Ls[2] = {0, 0};
    for (std::size_t r = 0; r < B; ++r) {
        for (std::size_t j = 0; j < H; ++j) {
            double av = 0;
            for (std::size_t i = 0; i < In; ++i) av += x[r * In + i] * W[i * H + j];
            const double tv = t[r * H + j];
            G2[0] += 4 * av * av / (B * B), G2[1] += tv * tv / (B * B);
            Ls[0] += av * av / B, Ls[1] += av * tv / B;
        }
        for (std::size_t j = 0; j < 2; ++j) {
            double z = 0;
            for (std::size_t i = 0; i < In; ++i) z += x[r * In + i] * W2[i * 2 + j];
            const double bv = std::tanh(z);
            G2[0] += 1.0 / (B * B), G2[1] += 4 * bv * bv / (B * B);
            Ls[0] += bv / B, Ls[1] += bv * bv / B;
        }
    }
    const double w0 = 1 / (1 + std::exp(th[1] - th[0])), w1 = 1 - w0;
    const double wg0 = std::sqrt(G2[0]) * w0, wg1 = std::sqrt(G2[1]) * w1, avg = (wg0 + wg1) / 2;
    CHECK(gl == doctest::Approx((wg0 - avg) * (wg0 - avg) + (wg1 - avg) * (wg1 - avg)).epsilon(1e-12));
    CHECK(glr == doctest::Approx(gl).epsilon(1e-12));
    CHECK(wl == doctest::Approx(Ls[0] * w0 + Ls[1] * w1).epsilon(1e-12));
    check_fd<f::grad_program<double, gn_two_g>, f::program<double, gn_two_g>>(B, {"x", "t", "W", "W2"});
}

TEST_CASE("GradNorm at initialisation: weights 1/n; one training step of weighted_loss + gnorm_loss") {
    using S = f::train_program<double, gn_total, gn_b>;
    CHECK(S::n_trainable == 3);  // W, V, grad_norm_weights
    const std::size_t B = 5;
    leaves L;
    L["gn/grad_norm_weights"] = {0.0, 0.0, 0.0};
    S::parameters p;
    fl::initialize<gn_b>(p, 7);
    for (double v : p.get<"gn/grad_norm_weights">()) CHECK(v == 0.0);
    const auto outs = test::run<S>(L, B);
    const gn_ref want = gn_reference(gn_rel, L, B);
    for (double wk : want.w) CHECK(wk == doctest::Approx(1.0 / 3));
    CHECK(outs[0][0] == doctest::Approx(want.weighted_loss + want.gnorm_loss).epsilon(1e-12));
    std::size_t k = 0;
    while (k < S::n_trainable && S::trainable[k] != "gn/grad_norm_weights") ++k;
    REQUIRE(k < S::n_trainable);
    const vec& dtheta = outs[1 + k];
    for (std::size_t i = 0; i < 3; ++i) {
        auto at = [&](double h) {
            leaves M = L;
            M["gn/grad_norm_weights"][i] = h;
            return gn_reference(gn_rel, M, B).gnorm_loss;
        };
        CHECK(dtheta[i] == doctest::Approx((at(1e-6) - at(-1e-6)) / 2e-6).epsilon(1e-6));
    }
    CHECK(std::abs(dtheta[0] + dtheta[1] + dtheta[2]) < 1e-12);  // softmax weights sum to 1
}
