// Losses (train/losses.hpp) and optimizers (train/optimizers.hpp): values and gradients at
// extreme logits against closed forms, every optimizer's update against hand-computed steps,
// sparse row updates, state round trip, and a small model that learns a hidden teacher.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/train/losses.hpp"
#include "ctrec/train/optimizers.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;

namespace {

// ---- losses ---------------------------------------------------------------------------------
constexpr std::size_t C = 4;
constexpr auto logit = f::input<"logit", 1>;
constexpr auto label = f::input<"label", 1>;
constexpr auto wts = f::input<"w", 1>;
constexpr auto bce = f::sigmoid_cross_entropy(logit, label);
constexpr auto bce_w = f::sigmoid_cross_entropy(logit, label, wts);
constexpr auto logits4 = f::input<"z", C>;
constexpr auto dist4 = f::input<"p", C>;
constexpr auto sce = f::softmax_cross_entropy(logits4, dist4);
constexpr auto mse = f::mean_squared_error(logits4, dist4);
constexpr auto wmean = f::weighted_mean(bce, wts);
constexpr auto multi = f::weighted_sum({f::batch_mean(bce), f::batch_mean(mse)}, {0.25, 2.0});

double softplus_ref(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
double sigmoid_ref(double x) { return x >= 0 ? 1 / (1 + std::exp(-x)) : std::exp(x) / (1 + std::exp(x)); }

template <class G>
void run_grad(std::size_t batch, std::map<std::string, std::vector<double>>& in, std::vector<double>& y,
              std::map<std::string, std::vector<double>>& grads) {
    typename G::parameters p;
    typename G::workspace ws;
    typename G::io io;
    for (std::size_t k = 0; k < G::n_inputs; ++k) io.in[k] = in.at(std::string(G::tab.name_of(G::input_ids[k]))).data();
    y.assign(batch * G::tab.nodes[G::tab.roots[0]].shape.size(), 0.0);
    io.out[0] = y.data();
    for (std::size_t k = 0; k < G::n_inputs; ++k) {
        const std::string n(G::tab.name_of(G::input_ids[k]));
        if (n == "cotangent") continue;
        grads[n].assign(in.at(n).size(), 0.0);
        io.out[1 + k] = grads[n].data();
    }
    G::run(p, ws, batch, io);
}

} // namespace

TEST_CASE("sigmoid cross-entropy: value sigmoid(x) - y as gradient, finite up to |logit| = 1e4") {
    using G = f::grad_program<double, bce>;
    const std::vector<double> xs = {-1e4, -1000, -40, -3, -1e-9, 0, 1e-9, 0.5, 3, 40, 1000, 1e4};
    const std::vector<double> ys = {1, 0, 1, 0.3, 1, 0, 1, 0, 1, 0, 1, 0};
    const std::size_t B = xs.size();
    std::map<std::string, std::vector<double>> in{{"logit", xs}, {"label", ys}, {"cotangent", std::vector<double>(B, 1.0)}};
    std::vector<double> y;
    std::map<std::string, std::vector<double>> g;
    run_grad<G>(B, in, y, g);
    for (std::size_t b = 0; b < B; ++b) {
        const double want = softplus_ref(xs[b]) - xs[b] * ys[b];
        CHECK(std::isfinite(y[b]));
        CHECK(y[b] == doctest::Approx(want).epsilon(1e-14));
        CHECK(std::isfinite(g["logit"][b]));
        CHECK(g["logit"][b] == doctest::Approx(sigmoid_ref(xs[b]) - ys[b]).epsilon(1e-14));
        CHECK(g["label"][b] == doctest::Approx(-xs[b]));
    }
    // exact at the extremes: a confident wrong prediction costs |x|, a right one 0
    CHECK(y[0] == 1e4);
    CHECK(y[B - 1] == 1e4);
    CHECK(y[10] == 0.0);
    // float: the same finiteness
    using GF = f::grad_program<float, bce>;
    GF::parameters p;
    GF::workspace ws;
    std::vector<float> xf = {-1e4f, 1e4f, 0.f}, yf = {0.f, 0.f, 1.f}, ct(3, 1.f), out(3), dx(3), dy(3);
    GF::io io;
    io.input<"logit">(xf.data()).input<"label">(yf.data()).input<"cotangent">(ct.data());
    io.output<0>(out.data()).output<GF::grad<"logit">>(dx.data()).output<GF::grad<"label">>(dy.data());
    GF::run(p, ws, 3, io);
    CHECK(out[0] == 0.f);
    CHECK(out[1] == 1e4f);
    CHECK(out[2] == doctest::Approx(std::log(2.0)));
    CHECK(dx[0] == 0.f);
    CHECK(dx[1] == 1.f);
    CHECK(dx[2] == doctest::Approx(-0.5));
}

TEST_CASE("sigmoid cross-entropy with sample weights, weighted mean and weighted task sums") {
    const std::size_t B = 5;
    std::vector<double> xs = {-2, -0.5, 0, 1, 4}, ys = {0, 1, 1, 0, 1}, ws = {1, 0, 2, 0.5, 3};
    test::leaves L;
    L["logit"] = xs, L["label"] = ys, L["w"] = ws;
    for (std::size_t b = 0; b < B; ++b) L["z"].insert(L["z"].end(), {0.1 * b, -0.2, 0.3, 1.0 + b});
    for (std::size_t b = 0; b < B; ++b) L["p"].insert(L["p"].end(), {0.5, 0.25, 0.25, 0.0});
    std::vector<double> want_w(B);
    double num = 0, den = 0, mean_bce = 0, mean_mse = 0;
    for (std::size_t b = 0; b < B; ++b) {
        const double l = softplus_ref(xs[b]) - xs[b] * ys[b];
        want_w[b] = l * ws[b], num += l * ws[b], den += ws[b], mean_bce += l / B;
        double m = 0;
        for (std::size_t c = 0; c < C; ++c) m += std::pow(L["z"][b * C + c] - L["p"][b * C + c], 2) / C;
        mean_mse += m / B;
    }
    test::check_values<bce_w>(L, B, want_w);
    test::check_values<wmean>(L, B, {num / den});
    test::check_values<multi>(L, B, {0.25 * mean_bce + 2.0 * mean_mse});
    // derivatives of the reductions by finite differences (inputs are the variables here)
    test::check_ad<wmean>(B);
    test::check_ad<multi>(B);
}

TEST_CASE("softmax cross-entropy and MSE: values and gradients, finite at logits of 1e4") {
    const std::size_t B = 3;
    test::leaves L;
    L["z"] = {1e4, -1e4, 0, 5e3, /**/ 0.1, 0.2, 0.3, 0.4, /**/ -3, 2, 7, 1};
    L["p"] = {0, 1, 0, 0, /**/ 0.25, 0.25, 0.25, 0.25, /**/ 0.1, 0.2, 0.3, 0.4};
    std::vector<double> want(B);
    std::vector<double> dz(B * C);
    for (std::size_t b = 0; b < B; ++b) {
        double m = -1e300;
        for (std::size_t c = 0; c < C; ++c) m = std::max(m, L["z"][b * C + c]);
        double s = 0;
        for (std::size_t c = 0; c < C; ++c) s += std::exp(L["z"][b * C + c] - m);
        const double lse = m + std::log(s);
        double py = 0;
        for (std::size_t c = 0; c < C; ++c) want[b] -= L["p"][b * C + c] * (L["z"][b * C + c] - lse), py += L["p"][b * C + c];
        for (std::size_t c = 0; c < C; ++c)
            dz[b * C + c] = std::exp(L["z"][b * C + c] - lse) * py - L["p"][b * C + c];
    }
    test::check_values<sce>(L, B, want);
    CHECK(want[0] == doctest::Approx(2e4));
    using G = f::grad_program<double, sce>;
    std::map<std::string, std::vector<double>> in{{"z", L["z"]}, {"p", L["p"]}, {"cotangent", std::vector<double>(B, 1.0)}};
    std::vector<double> y;
    std::map<std::string, std::vector<double>> g;
    run_grad<G>(B, in, y, g);
    for (std::size_t k = 0; k < B * C; ++k) {
        CHECK(std::isfinite(g["z"][k]));
        CHECK(g["z"][k] == doctest::Approx(dz[k]).epsilon(1e-12));
    }
    // smooth rows: finite differences of both losses
    test::check_ad<sce>(2);
    test::check_ad<mse>(2);
}

// ---- optimizers -----------------------------------------------------------------------------
namespace {
// a tiny model: logit = x . w + b, loss = mean sigmoid CE
constexpr std::size_t F = 3;
constexpr auto ox = f::input<"x", F>;
constexpr auto oy = f::input<"y", 1>;
constexpr auto ow = f::param<"w", F, 1>;
constexpr auto ob = f::param<"b", 1>;
constexpr auto ologit = f::matmul(ox, ow) + ob;
constexpr auto oloss = f::batch_mean(f::sigmoid_cross_entropy(ologit, oy));
using Step = f::train_program<double, oloss>;

struct fixture {
    Step::parameters p;
    Step::workspace ws;
    Step::gradients g;
    std::vector<double> x = {0.5, -1, 2, /**/ 1, 0.25, -0.5}, y = {1, 0};
    double loss = 0;
    fixture() {
        auto w = p.get<"w">();
        w[0] = 0.1, w[1] = -0.2, w[2] = 0.05;
        p.get<"b">()[0] = 0.3;
    }
    // runs the step; returns the gradients (w0, w1, w2, b) it computed
    std::vector<double> grads() {
        Step::io io;
        g.bind(io);
        io.input<"x">(x.data()).input<"y">(y.data()).output<0>(&loss);
        Step::run(p, ws, 2, io);
        std::vector<double> r(g.get<"w">().begin(), g.get<"w">().end());
        r.push_back(g.get<"b">()[0]);
        return r;
    }
    std::vector<double> weights() {
        std::vector<double> r(p.get<"w">().begin(), p.get<"w">().end());
        r.push_back(p.get<"b">()[0]);
        return r;
    }
};

// Runs `steps` steps with optimizer O and, beside it, the reference update `ref` on copies.
template <class Rule, class Ref>
void check_rule(Rule rule, Ref ref, int steps, std::size_t n_state) {
    fixture fx;
    f::optimizer<Step, Rule> opt(rule);
    std::vector<double> w = fx.weights();
    std::vector<std::vector<double>> st(n_state, std::vector<double>(w.size(), 0.0));
    for (int t = 1; t <= steps; ++t) {
        const std::vector<double> g = fx.grads();
        opt.apply(fx.p, fx.g);
        for (std::size_t i = 0; i < w.size(); ++i) ref(w[i], g[i], st, i, t);
        const std::vector<double> got = fx.weights();
        for (std::size_t i = 0; i < w.size(); ++i) CHECK(got[i] == doctest::Approx(w[i]).epsilon(1e-13));
    }
    CHECK(opt.steps() == static_cast<std::uint64_t>(steps));
}
} // namespace

TEST_CASE("optimizers: SGD, Momentum, Nesterov, Adagrad, Adam, FTRL against hand-computed updates") {
    SUBCASE("sgd with l2") {
        check_rule(f::sgd{.learning_rate = 0.5, .l2 = 0.1},
                   [](double& w, double g, auto&, std::size_t, int) { w -= 0.5 * (g + 0.1 * w); }, 3, 0);
    }
    SUBCASE("momentum") {
        check_rule(f::momentum{.learning_rate = 0.1, .momentum = 0.9},
                   [](double& w, double g, auto& s, std::size_t i, int) {
                       s[0][i] = 0.9 * s[0][i] - 0.1 * g;
                       w += s[0][i];
                   }, 3, 1);
    }
    SUBCASE("nesterov with l1") {
        check_rule(f::momentum{.learning_rate = 0.1, .momentum = 0.8, .l1 = 0.01, .nesterov = true},
                   [](double& w, double g, auto& s, std::size_t i, int) {
                       g += 0.01 * ((w > 0) - (w < 0));
                       s[0][i] = 0.8 * s[0][i] - 0.1 * g;
                       w += 0.8 * s[0][i] - 0.1 * g;
                   }, 3, 1);
    }
    SUBCASE("adagrad") {
        check_rule(f::adagrad{.learning_rate = 0.2},
                   [](double& w, double g, auto& s, std::size_t i, int t) {
                       if (t == 1) s[0][i] = 0.1;
                       s[0][i] += g * g;
                       w -= 0.2 * g / (std::sqrt(s[0][i]) + 1e-7);
                   }, 3, 1);
    }
    SUBCASE("adam") {
        check_rule(f::adam{.learning_rate = 0.01},
                   [](double& w, double g, auto& s, std::size_t i, int t) {
                       s[0][i] = 0.9 * s[0][i] + 0.1 * g;
                       s[1][i] = 0.999 * s[1][i] + 0.001 * g * g;
                       const double lr = 0.01 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
                       w -= lr * s[0][i] / (std::sqrt(s[1][i]) + 1e-7);
                   }, 4, 2);
    }
    SUBCASE("ftrl with l1 and l2") {
        check_rule(f::ftrl{.learning_rate = 0.5, .l1 = 0.05, .l2 = 0.01},
                   [](double& w, double g, auto& s, std::size_t i, int t) {
                       if (t == 1) s[0][i] = 0.1;
                       const double n = s[0][i], nn = n + g * g;
                       s[1][i] += g - (std::sqrt(nn) - std::sqrt(n)) / 0.5 * w;
                       s[0][i] = nn;
                       const double z = s[1][i];
                       w = std::abs(z) <= 0.05 ? 0.0 : (((z > 0) - (z < 0)) * 0.05 - z) / (std::sqrt(nn) / 0.5 + 0.02);
                   }, 4, 2);
    }
}

TEST_CASE("ftrl: a large l1 keeps weights exactly zero") {
    fixture fx;
    f::optimizer<Step, f::ftrl> opt({.learning_rate = 0.1, .l1 = 100.0});
    for (int t = 0; t < 3; ++t) {
        fx.grads();
        opt.apply(fx.p, fx.g);
    }
    for (double w : fx.weights()) CHECK(w == 0.0);
}

namespace {
// an embedding-like table: logit = sum(table . onehot) (the gradient touches some rows)
constexpr std::size_t Rows = 6, Wd = 2;
constexpr auto sel = f::input<"sel", Rows>;
constexpr auto table = f::param<"table", Rows, Wd>;
constexpr auto tbias = f::param<"tb", Wd>;
constexpr auto tloss = f::batch_mean(f::sum(f::matmul(sel, table) * f::matmul(sel, table))) + f::sum(tbias * tbias);
using TStep = f::train_program<double, tloss>;
} // namespace

TEST_CASE("optimizers: sparse row updates touch only the rows given, and state round-trips") {
    TStep::parameters p;
    TStep::workspace ws;
    TStep::gradients g;
    for (std::size_t i = 0; i < Rows * Wd; ++i) p.get<"table">()[i] = 0.1 * (i + 1);
    p.get<"tb">()[0] = 1, p.get<"tb">()[1] = -1;
    std::vector<double> s = {0, 1, 0, 0, 0, 0, /**/ 0, 0, 0, 1, 0, 0};  // rows 1 and 3 used
    double loss = 0;
    TStep::io io;
    g.bind(io);
    io.input<"sel">(s.data()).output<0>(&loss);
    TStep::run(p, ws, 2, io);
    const std::vector<double> before(p.get<"table">().begin(), p.get<"table">().end());
    f::optimizer<TStep, f::adam> opt({.learning_rate = 0.1});
    opt.apply(p, g, {"table"});
    const std::uint32_t rows[] = {3, 1, 3};
    opt.apply_rows(p, g, "table", rows, Wd);
    auto t = p.get<"table">();
    for (std::size_t r = 0; r < Rows; ++r)
        for (std::size_t k = 0; k < Wd; ++k) {
            const std::size_t i = r * Wd + k;
            if (r == 1 || r == 3) CHECK(t[i] == doctest::Approx(before[i] - 0.1 * (before[i] > 0 ? 1 : -1)).epsilon(1e-6));
            else CHECK(t[i] == before[i]);
        }
    CHECK(p.get<"tb">()[0] == doctest::Approx(0.9).epsilon(1e-6));  // Adam's first step: lr sign(g)
    // untouched rows keep zero state
    auto st = opt.state();
    REQUIRE(st.size() == 2 * 2 + 1);
    CHECK(st.back().name == "optimizer/step");
    CHECK(st.back().values[0] == 1.0);
    for (auto& e : st)
        if (e.name == "table/adam/m") {
            CHECK(e.values[0] == 0.0);
            CHECK(e.values[2] != 0.0);
        }
    // errors: a row out of range, an unknown name, a misspelt exception; nothing written
    const std::uint32_t bad[] = {1, 6};
    const std::vector<double> now(t.begin(), t.end());
    CHECK_THROWS_WITH_AS(opt.apply_rows(p, g, "table", bad, Wd), doctest::Contains("row 6 of parameter 'table' is out of range"), f::error);
    CHECK(std::equal(now.begin(), now.end(), p.get<"table">().begin()));
    CHECK_THROWS_WITH_AS(opt.apply_rows(p, g, "tabel", rows, Wd), doctest::Contains("'tabel' is not a trainable parameter"), f::error);
    CHECK_THROWS_AS(opt.apply(p, g, {"tabel"}), f::error);
    // state round trip into a fresh optimizer; a missing tensor leaves it unchanged
    std::map<std::string, std::vector<double>> saved;
    for (auto& e : opt.state()) saved[e.name] = std::vector<double>(e.values.begin(), e.values.end());
    f::optimizer<TStep, f::adam> fresh({.learning_rate = 0.1});
    auto lookup = [&](const std::string& n) -> std::span<const double> {
        auto it = saved.find(n);
        return it == saved.end() ? std::span<const double>{} : std::span<const double>(it->second);
    };
    fresh.load_state(lookup);
    CHECK(fresh.steps() == 1);
    for (auto& e : fresh.state()) CHECK(std::vector<double>(e.values.begin(), e.values.end()) == saved[e.name]);
    saved.erase("tb/adam/v");
    f::optimizer<TStep, f::adam> other({.learning_rate = 0.1});
    CHECK_THROWS_WITH_AS(other.load_state(lookup), doctest::Contains("'tb/adam/v': expected 2 values, got none"), f::error);
    CHECK(other.steps() == 0);
}

// ---- a model learns a hidden teacher --------------------------------------------------------
namespace {
constexpr std::size_t D = 8;
constexpr auto lx = f::input<"x", D>;
constexpr auto ly = f::input<"y", 1>;
constexpr auto tower = fl::mlp<"mlp", fl::mlp_config<2>{.output_dims = {16, 1}}, fl::mode::train>(lx);
constexpr auto lloss = f::batch_mean(f::sigmoid_cross_entropy(tower.out(), ly));
using LStep = f::train_program<float, lloss>;
constexpr auto score_y = fl::mlp<"mlp", fl::mlp_config<2>{.output_dims = {16, 1}}, fl::mode::predict>(lx).out();
using Score = f::program<float, score_y>;

double auc(const std::vector<float>& s, const std::vector<float>& y) {
    std::vector<std::size_t> idx(s.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return s[a] < s[b]; });
    double pos = 0, neg = 0, rank_sum = 0;
    for (std::size_t r = 0; r < idx.size(); ++r)
        if (y[idx[r]] > 0.5) pos += 1, rank_sum += double(r + 1);
        else neg += 1;
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
}
void make_data(std::size_t n, std::uint64_t seed, std::vector<float>& x, std::vector<float>& y) {
    x.resize(n * D), y.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        double t = 0;
        for (std::size_t k = 0; k < D; ++k) {
            x[i * D + k] = static_cast<float>(2 * f::random_uniform_value<double>(seed, 1, i, k) - 1);
            t += (k % 2 ? -1.0 : 1.0) * (k + 1) * 0.4 * x[i * D + k];
        }
        t += 1.5 * x[i * D] * x[i * D + 1];
        y[i] = f::random_uniform_value<double>(seed, 2, i, 0) < 1 / (1 + std::exp(-t)) ? 1.f : 0.f;
    }
}
} // namespace

TEST_CASE("training: an MLP with Adam learns a hidden teacher (loss falls, validation AUC well above 0.5)") {
    std::vector<float> x, y, vx, vy;
    make_data(4096, 7, x, y);
    make_data(1024, 8, vx, vy);
    LStep::parameters p;
    fl::initialize<tower>(p, 3);
    LStep::workspace ws;
    LStep::gradients g;
    f::optimizer<LStep, f::adam> opt({.learning_rate = 0.01});
    const std::size_t Bt = 128;
    std::vector<double> epoch_loss;
    for (int epoch = 0; epoch < 4; ++epoch) {
        double total = 0;
        for (std::size_t b0 = 0; b0 < 4096; b0 += Bt) {
            float l = 0;
            LStep::io io;
            g.bind(io);
            io.input<"x">(x.data() + b0 * D).input<"y">(y.data() + b0).output<0>(&l);
            LStep::run(p, ws, Bt, io);
            opt.apply(p, g);
            total += l;
        }
        epoch_loss.push_back(total / (4096 / Bt));
    }
    CHECK(epoch_loss.back() < epoch_loss.front());
    CHECK(epoch_loss.back() < 0.9 * std::log(2.0));
    Score::parameters sp;
    f::copy_parameters(p, sp);
    sp.prepare();
    Score::workspace sws;
    std::vector<float> s(1024);
    Score::io sio;
    sio.input<"x">(vx.data()).output<0>(s.data());
    Score::run(static_cast<const Score::parameters&>(sp), sws, 1024, sio);
    const double a = auc(s, vy);
    MESSAGE("validation AUC " << a << ", epoch losses " << epoch_loss.front() << " -> " << epoch_loss.back());
    CHECK(a > 0.75);
}

namespace {
// input gradients from a training step (pooled embeddings updated outside the graph)
constexpr auto ig_e = f::input<"e", 3, 2>;
constexpr auto ig_d = f::input<"d", 4>;
constexpr auto ig_w = f::param<"w", 2, 1>;
constexpr auto ig_v = f::param<"v", 4>;
constexpr auto ig_loss =
    f::batch_mean(f::sum(f::tanh(f::matmul(ig_e, ig_w))) + f::sum(ig_d * ig_v) * f::sum(ig_e * ig_e));
constexpr f::input_gradients ig_wants{"e", "d"};
using IGStep = f::train_program<double, ig_loss, ig_wants>;
using IGGrad = f::grad_program<double, ig_loss>;
} // namespace

TEST_CASE("train_program: input_gradients returns d loss / d input beside the parameter gradients") {
    const std::size_t B = 5;
    test::leaves L;
    test::fill<IGGrad>(L, B);
    IGStep::parameters p;
    IGGrad::parameters gp;
    for (std::size_t i = 0; i < 2; ++i) p.get<"w">()[i] = gp.get<"w">()[i] = L["w"][i];
    for (std::size_t i = 0; i < 4; ++i) p.get<"v">()[i] = gp.get<"v">()[i] = L["v"][i];
    IGStep::workspace ws;
    IGStep::gradients g;
    double loss = 0;
    std::vector<double> de(B * 6), dd(B * 4);
    IGStep::io io;
    g.bind(io);
    io.input<"e">(L["e"].data()).input<"d">(L["d"].data()).output<0>(&loss);
    io.out[IGStep::input_grad<"e">] = de.data();
    io.out[IGStep::input_grad<"d">] = dd.data();
    IGStep::run(p, ws, B, io);
    // the grad program's input gradients are the reference
    IGGrad::workspace gws;
    double gl = 0;
    std::vector<double> ge(B * 6), gd(B * 4), gw(2), gv(4);
    IGGrad::io gio;
    gio.input<"e">(L["e"].data()).input<"d">(L["d"].data()).output<0>(&gl);
    gio.output<IGGrad::grad<"e">>(ge.data()).output<IGGrad::grad<"d">>(gd.data());
    gio.output<IGGrad::grad<"w">>(gw.data()).output<IGGrad::grad<"v">>(gv.data());
    IGGrad::run(gp, gws, B, gio);
    CHECK(loss == doctest::Approx(gl).epsilon(1e-14));
    test::check_close(de, ge, 1e-13);
    test::check_close(dd, gd, 1e-13);
    test::check_close(std::vector<double>(g.get<"w">().begin(), g.get<"w">().end()), gw, 1e-13);
    test::check_close(std::vector<double>(g.get<"v">().begin(), g.get<"v">().end()), gv, 1e-13);
    CHECK(IGStep::input_grad<"d"> == IGStep::input_grad<"e"> + 1);
}

#include <filesystem>

#include "ctrec/io/checkpoint.hpp"

TEST_CASE("checkpoint: parameters and Adam state round-trip; training resumes identically; a bad file changes nothing") {
    const auto path = std::filesystem::temp_directory_path() / ("ctrec_ckpt_" + std::to_string(::getpid()) + ".safetensors");
    fixture a;
    f::optimizer<Step, f::adam> oa({.learning_rate = 0.05});
    for (int t = 0; t < 3; ++t) a.grads(), oa.apply(a.p, a.g);
    f::save_checkpoint<Step>(path, a.p, oa);
    fixture b;
    f::optimizer<Step, f::adam> ob({.learning_rate = 0.05});
    f::load_checkpoint<Step>(path, b.p, ob);
    CHECK(ob.steps() == 3);
    CHECK(b.weights() == a.weights());
    // two more steps on each: bit-identical (the slots and the step count were restored)
    for (int t = 0; t < 2; ++t) a.grads(), oa.apply(a.p, a.g), b.grads(), ob.apply(b.p, b.g);
    CHECK(b.weights() == a.weights());
    // a checkpoint of another optimizer lacks the Adam slots: nothing changes
    f::optimizer<Step, f::momentum> om;
    fixture c;
    c.grads(), om.apply(c.p, c.g);
    f::save_checkpoint<Step>(path, c.p, om);
    const auto before = b.weights();
    CHECK_THROWS_AS(f::load_checkpoint<Step>(path, b.p, ob), f::error);
    CHECK(b.weights() == before);
    CHECK(ob.steps() == 5);
    std::filesystem::remove(path);
}
