// GradNorm (spec layers-core-and-cross.md 1.9): gnorm_loss and weighted_loss against a
// float64 reference with the per-task gradients written by hand, loss_pow and
// relative_diff both ways, several shared inputs, and where the gradients go
// (gnorm_loss: only into grad_norm_weights; weighted_loss: everywhere else).
#include "support.hpp"

#include <algorithm>
#include <string>

#include "ctrec/layers/grad_norm.hpp"
#include "ctrec/layers/initialize.hpp"
#include "ctrec/train/train_program.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;
using test::value_fn;
using test::run_all;

namespace {
constexpr std::size_t B = 5, In = 3, H = 4;
// shared bottom: s = x W (B, H); three task losses on top of it
constexpr auto x = input<"x", In>;
constexpr auto t = input<"t", H>;
constexpr auto W = param<"W", In, H>;
constexpr auto V = param<"V", H, 1>;
constexpr auto s = matmul(x, W);
constexpr auto l1 = batch_mean(sum(s * s));                  // dl1/ds = 2 s / B
constexpr auto l2 = batch_mean(sum(tanh(s) * t));            // dl2/ds = (1 - tanh^2 s) t / B
constexpr auto l3 = sum(batch_mean(sigmoid(matmul(s, V))));  // dl3/ds = sig'(s V) V^T / B

template <class R> using out_t = std::remove_cvref_t<decltype(R{}.out)>;

// Gradients of the scalar E against central finite differences of the true function,
// for every leaf except `constants`, which must have a symbolically zero gradient
// (stop_gradient'ed: finite differences see their real influence, so test::check_ad
// does not apply).
template <class E>
void check_fd(std::size_t batch, value_fn f, std::vector<std::string_view> constants) {
    static_assert(!E::batched && E::shape.size() == 1);
    using G = grad_program<double, E>;
    auto grads = run_all<G>(batch, f);
    auto loss = [&](value_fn g) { return run_all<program<double, E>>(batch, g)[0][0]; };
    double worst = 0;
    std::string where;
    std::size_t checked = 0;
    [&]<class... L>(tlist<L...>) {
        (([&] {
             constexpr bool zero = is_zero_v<tl_at_t<G::template grad<L::name>, typename G::roots>>;
             const bool constant = std::find(constants.begin(), constants.end(), L::name.view()) != constants.end();
             INFO("leaf " << L::name.view());
             CHECK(zero == constant);
             if (constant) return;
             const auto& g = grads[G::template grad<L::name>];
             for (std::size_t e = 0; e < g.size(); ++e, ++checked) {
                 auto shifted = [&](double h) {
                     return [&, h](std::string_view n, std::size_t i) { return f(n, i) + (n == L::name.view() && i == e ? h : 0.0); };
                 };
                 const double h = 1e-6, fd = (loss(shifted(h)) - loss(shifted(-h))) / (2 * h);
                 double err = std::abs(fd - g[e]) / std::max({1.0, std::abs(fd), std::abs(g[e])});
                 if (err > worst) worst = err, where = std::string(L::name.view()) + "[" + std::to_string(e) + "]";
             }
         }()),
         ...);
    }(typename G::leaves{});
    INFO("worst: " << where);
    CHECK(checked > 0);
    CHECK(worst < 1e-6);
}

// ---- naive reference (spec 1.9) ----
double sig(double z) { return 1 / (1 + std::exp(-z)); }
struct gn_ref {
    double gnorm_loss = 0, weighted_loss = 0;
    std::vector<double> gnorm, w;
};
gn_ref reference(const grad_norm_config& c, value_fn f) {
    std::vector<double> sv(B * H), z(B);
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t j = 0; j < H; ++j)
            for (std::size_t i = 0; i < In; ++i) sv[b * H + j] += f("x", b * In + i) * f("W", i * H + j);
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t j = 0; j < H; ++j) z[b] += sv[b * H + j] * f("V", j);
    // losses and their gradients w.r.t. s, by hand
    double L[3] = {0, 0, 0}, G2[3] = {0, 0, 0};
    for (std::size_t b = 0; b < B; ++b) {
        L[2] += sig(z[b]) / B;
        for (std::size_t j = 0; j < H; ++j) {
            double sj = sv[b * H + j], tj = f("t", b * H + j);
            L[0] += sj * sj / B;
            L[1] += std::tanh(sj) * tj / B;
            double g[3] = {2 * sj / B, (1 - std::tanh(sj) * std::tanh(sj)) * tj / B,
                           sig(z[b]) * (1 - sig(z[b])) * f("V", j) / B};
            for (int k = 0; k < 3; ++k) G2[k] += g[k] * g[k];
        }
    }
    gn_ref o;
    double theta[3], m = -1e300, se = 0;
    for (std::size_t k = 0; k < 3; ++k) theta[k] = f("gn/grad_norm_weights", k), m = std::max(m, theta[k]);
    for (double th : theta) se += std::exp(th - m);
    for (double th : theta) o.w.push_back(std::exp(th - m) / se);
    double avg = 0;
    for (std::size_t k = 0; k < 3; ++k) o.gnorm.push_back(std::sqrt(G2[k])), avg += o.gnorm[k] * o.w[k] / 3;
    for (std::size_t k = 0; k < 3; ++k) {
        double diff = std::abs(o.gnorm[k] * o.w[k] - avg);
        if (c.relative_diff) diff /= avg + c.epsilon;
        o.gnorm_loss += c.scale * std::pow(diff, c.loss_pow);
        o.weighted_loss += L[k] * o.w[k];
    }
    return o;
}

template <grad_norm_config C>
void check_config(value_fn f) {
    constexpr auto g = grad_norm<"gn", C>(std::tuple{l1, l2, l3}, s);
    using GL = out_t<decltype(g.gnorm_loss)>;
    using WL = out_t<decltype(g.weighted_loss)>;
    auto want = reference(C, f);
    test::check_forward<GL>(B, {want.gnorm_loss}, f);
    test::check_forward<WL>(B, {want.weighted_loss}, f);
    // gnorm_loss: data enter only through the stop_gradient'ed norms
    check_fd<GL>(B, f, {"x", "t", "W", "V"});
    // weighted_loss: the task weights are constants
    check_fd<WL>(B, f, {"gn/grad_norm_weights"});
}
} // namespace

TEST_CASE("grad_norm: values against hand-written task gradients, and where the gradients go") {
    SUBCASE("defaults: loss_pow 2, absolute differences") { check_config<grad_norm_config{}>(leaf_value); }
    SUBCASE("relative differences, scale") {
        check_config<grad_norm_config{.scale = 0.3, .relative_diff = true}>(leaf_value);
    }
    SUBCASE("loss_pow 3 (odd: the absolute value matters)") {
        auto want = reference({.loss_pow = 3.0}, leaf_value);
        auto signed_sum = 0.0;  // the docstring's formula without |.|
        double avg = 0;
        for (std::size_t k = 0; k < 3; ++k) avg += want.gnorm[k] * want.w[k] / 3;
        for (std::size_t k = 0; k < 3; ++k) signed_sum += std::pow(want.gnorm[k] * want.w[k] - avg, 3.0);
        CHECK(std::abs(signed_sum - want.gnorm_loss) > 1e-3 * std::abs(want.gnorm_loss));
        check_config<grad_norm_config{.loss_pow = 3.0}>(leaf_value);
    }
}

TEST_CASE("grad_norm at initialisation: equal weights 1/n, and one training step's gradients") {
    constexpr auto g = grad_norm<"gn", grad_norm_config{.relative_diff = true}>(std::tuple{l1, l2, l3}, s);
    using names = decltype(g.gnorm_loss)::inits;
    static_assert(names::size == 1 && tl_at_t<0, names>::name == fixed_string("gn/grad_norm_weights"));
    static_assert(decltype(g.weighted_loss)::inits::size == 0);
    auto zeros = [](std::string_view n, std::size_t i) { return n == "gn/grad_norm_weights" ? 0.0 : leaf_value(n, i); };
    auto want = reference({.relative_diff = true}, zeros);
    for (double wk : want.w) CHECK(wk == doctest::Approx(1.0 / 3));
    // the usual total: weighted_loss + gnorm_loss; trainable = the model and the task weights
    constexpr auto total = g.weighted_loss.out + g.gnorm_loss.out;
    using S = train_program<double, std::remove_cvref_t<decltype(total)>>;
    static_assert(S::trainable::size == 3);  // W, V, grad_norm_weights
    S::parameters p;
    for (std::size_t i = 0; i < In * H; ++i) p.get<"W">()[i] = leaf_value("W", i);
    for (std::size_t i = 0; i < H; ++i) p.get<"V">()[i] = leaf_value("V", i);
    initialize<decltype(g.gnorm_loss)::inits>(p, 7);
    for (double v : p.get<"gn/grad_norm_weights">()) CHECK(v == 0.0);
    S::workspace ws;
    std::vector<double> xs(B * In), ts(B * H), dtheta(3), dW(In * H), dV(H);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
    for (std::size_t i = 0; i < ts.size(); ++i) ts[i] = leaf_value("t", i);
    double l = 0;
    S::io io;
    io.input<"x">(xs.data()).input<"t">(ts.data()).output<0>(&l);
    io.output<S::grad<"gn/grad_norm_weights">>(dtheta.data()).output<S::grad<"W">>(dW.data()).output<S::grad<"V">>(dV.data());
    S::run(p, ws, B, io);
    CHECK(l == doctest::Approx(want.weighted_loss + want.gnorm_loss).epsilon(1e-12));
    // d gnorm_loss / d theta_k by central differences of the reference (theta = 0 here)
    for (std::size_t k = 0; k < 3; ++k) {
        auto at = [&](double h) {
            return reference({.relative_diff = true}, [&](std::string_view n, std::size_t i) {
                return n == "gn/grad_norm_weights" ? (i == k ? h : 0.0) : leaf_value(n, i);
            }).gnorm_loss;
        };
        CHECK(dtheta[k] == doctest::Approx((at(1e-6) - at(-1e-6)) / 2e-6).epsilon(1e-6));
    }
    // the softmax weights sum to 1: the gradient on theta sums to 0
    CHECK(std::abs(dtheta[0] + dtheta[1] + dtheta[2]) < 1e-12);
}

TEST_CASE("grad_norm with several shared inputs: the norm of the concatenated gradients") {
    constexpr auto W2 = param<"W2", In, 2>;
    constexpr auto a = matmul(x, W);          // (B, H)
    constexpr auto b = tanh(matmul(x, W2));  // (B, 2)
    constexpr auto m1 = batch_mean(sum(a * a) + sum(b));      // d/da = 2a/B, d/db = 1/B
    constexpr auto m2 = batch_mean(sum(a * t) + sum(b * b));  // d/da = t/B,  d/db = 2b/B
    constexpr auto g = grad_norm<"gn", grad_norm_config{}>(std::tuple{m1, m2}, a, b);
    using GL = out_t<decltype(g.gnorm_loss)>;
    using WL = out_t<decltype(g.weighted_loss)>;
    double G2[2] = {0, 0}, L[2] = {0, 0};
    for (std::size_t r = 0; r < B; ++r) {
        for (std::size_t j = 0; j < H; ++j) {
            double av = 0;
            for (std::size_t i = 0; i < In; ++i) av += leaf_value("x", r * In + i) * leaf_value("W", i * H + j);
            double tv = leaf_value("t", r * H + j);
            G2[0] += 4 * av * av / (B * B), G2[1] += tv * tv / (B * B);
            L[0] += av * av / B, L[1] += av * tv / B;
        }
        for (std::size_t j = 0; j < 2; ++j) {
            double z = 0;
            for (std::size_t i = 0; i < In; ++i) z += leaf_value("x", r * In + i) * leaf_value("W2", i * 2 + j);
            double bv = std::tanh(z);
            G2[0] += 1.0 / (B * B), G2[1] += 4 * bv * bv / (B * B);
            L[0] += bv / B, L[1] += bv * bv / B;
        }
    }
    double th0 = leaf_value("gn/grad_norm_weights", 0), th1 = leaf_value("gn/grad_norm_weights", 1);
    double w0 = 1 / (1 + std::exp(th1 - th0)), w1 = 1 - w0;
    double wg0 = std::sqrt(G2[0]) * w0, wg1 = std::sqrt(G2[1]) * w1, avg = (wg0 + wg1) / 2;
    test::check_forward<GL>(B, {(wg0 - avg) * (wg0 - avg) + (wg1 - avg) * (wg1 - avg)});
    test::check_forward<WL>(B, {L[0] * w0 + L[1] * w1});
    check_fd<GL>(B, leaf_value, {"x", "t", "W", "W2"});
}

TEST_CASE("grad_norm over a max(z, 0) tower: gnorm_loss sends exactly zero gradient into the model") {
    // The derivative rules of maximum / minimum / where form where(c, ct, 0); with a
    // symbolic-zero cotangent (behind the stop_gradient) that node is not pruned, so
    // here the zero gradient is computed rather than dropped. Its value must still be
    // exactly zero.
    constexpr auto hs = maximum(matmul(x, W), lit<0.0>);
    constexpr auto r1 = batch_mean(sum(hs * hs));
    constexpr auto r2 = sum(batch_mean(sigmoid(matmul(hs, V))));
    constexpr auto g = grad_norm<"gn">(std::tuple{r1, r2}, hs);
    using GL = out_t<decltype(g.gnorm_loss)>;
    using G = grad_program<double, GL>;
    auto outs = run_all<G>(B, leaf_value);
    for (double v : outs[G::grad<"W">]) CHECK(v == 0.0);
    for (double v : outs[G::grad<"V">]) CHECK(v == 0.0);
    for (double v : outs[G::grad<"x">]) CHECK(v == 0.0);
    double norm = 0;
    for (double v : outs[G::grad<"gn/grad_norm_weights">]) norm += std::abs(v);
    CHECK(norm > 1e-6);
}
