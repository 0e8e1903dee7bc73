// Keras BatchNormalization (spec layers-core-and-cross.md 1.5): train / eval / renorm
// outputs and moving-statistic updates against float64 loops written from the spec,
// gradients by finite differences and against the spec's closed form, rank-3 inputs,
// variables and initial values, and one training step through train_program.
#include "support.hpp"

#include <map>
#include <string>

#include "ctrec/layers/batch_norm.hpp"
#include "ctrec/layers/initialize.hpp"
#include "ctrec/train/train_program.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;
using test::value_fn;
using test::run_all;

namespace {
constexpr double kEps = 1e-3;
constexpr std::size_t D = 6;
constexpr auto x = input<"x", D>;

template <class R> using out_t = std::remove_cvref_t<decltype(R{}.out)>;

// Leaf values: plain pseudo-random values in [-1, 1], except the statistics, which
// must be valid (a variance >= 0, a stddev > 0). moving_stddev[0] is tiny, so that
// max(moving_stddev^2 - eps, 0) clamps in the renorm update.
double values(std::string_view name, std::size_t i) {
    double v = leaf_value(name, i);
    if (name.ends_with("/moving_variance")) return 0.2 + std::abs(v);
    if (name.ends_with("/moving_stddev")) return i == 0 ? 1e-3 : 0.5 + std::abs(v);
    if (name.ends_with("/renorm_stddev")) return 0.3 + 0.6 * std::abs(v);
    if (name.ends_with("/renorm_mean")) return 0.5 * v;
    return v;
}

// Reverse-mode gradients of sum(cotangent * E) against central finite differences of
// the true function, for every leaf except `constants`; those are stop_gradient'ed
// variables, whose gradient must be a symbolic zero (finite differences would see
// their real influence, which is why test::check_ad cannot be used there).
template <class E>
void check_fd(std::size_t batch, value_fn f, std::vector<std::string_view> constants) {
    using G = grad_program<double, E>;
    using F = program<double, E>;
    auto grads = run_all<G>(batch, f);
    auto loss = [&](value_fn g) {
        auto y = run_all<F>(batch, g)[0];
        double s = 0;
        for (std::size_t i = 0; i < y.size(); ++i) s += (E::batched ? f("cotangent", i) : 1.0) * y[i];
        return s;
    };
    double worst = 0;
    std::string where;
    [&]<class... L>(tlist<L...>) {
        (([&] {
             constexpr bool zero = is_zero_v<tl_at_t<G::template grad<L::name>, typename G::roots>>;
             const bool constant = std::find(constants.begin(), constants.end(), L::name.view()) != constants.end();
             INFO("leaf " << L::name.view());
             CHECK(zero == constant);
             if (constant) return;
             const auto& g = grads[G::template grad<L::name>];
             for (std::size_t e = 0; e < g.size(); ++e) {
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
    CHECK(worst < 1e-6);
}

// ---- naive reference (spec 1.5), per-example input (N, D) flattened; N = 1 for (D) ----
struct config_ref {
    bool train = true, renorm = false;
    double momentum = 0.99, renorm_momentum = 0.99;
    double rmax = INFINITY, rmin = 0, dmax = INFINITY;
};
struct bn_ref {
    std::vector<double> y, mu, var, xhat, r, d;
    std::map<std::string, std::vector<double>> next;  // updated state, by leaf name
    std::size_t r_clipped = 0, d_clipped = 0;
};
bn_ref reference(std::size_t batch, std::size_t N, const config_ref& c, value_fn f = values) {
    auto X = [&](std::size_t b, std::size_t n, std::size_t j) { return f("x", (b * N + n) * D + j); };
    auto v = [&](const char* leaf, std::size_t j) { return f(std::string("bn/") + leaf, j); };
    bn_ref o;
    o.mu.assign(D, 0.0), o.var.assign(D, 0.0), o.r.assign(D, 1.0), o.d.assign(D, 0.0);
    const double cnt = static_cast<double>(batch * N);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t j = 0; j < D; ++j) o.mu[j] += X(b, n, j) / cnt;
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t j = 0; j < D; ++j) o.var[j] += (X(b, n, j) - o.mu[j]) * (X(b, n, j) - o.mu[j]) / cnt;
    for (std::size_t j = 0; j < D && c.train && c.renorm; ++j) {
        double s = std::sqrt(o.var[j] + kEps), rs = std::max(v("renorm_stddev", j), std::sqrt(kEps));
        double r = s / rs, d = (o.mu[j] - v("renorm_mean", j)) / rs;
        o.r[j] = std::min(std::max(r, c.rmin), c.rmax);
        o.d[j] = std::min(std::max(d, -c.dmax), c.dmax);
        o.r_clipped += o.r[j] != r;
        o.d_clipped += o.d[j] != d;
    }
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t n = 0; n < N; ++n)
            for (std::size_t j = 0; j < D; ++j) {
                double mean = c.train ? o.mu[j] : v("moving_mean", j);
                double var = c.train ? o.var[j] : v("moving_variance", j);
                double xh = (X(b, n, j) - mean) / std::sqrt(var + kEps);
                o.xhat.push_back(xh);
                o.y.push_back(xh * (o.r[j] * v("gamma", j)) + (o.d[j] * v("gamma", j) + v("beta", j)));
            }
    auto avg = [&](const char* leaf, double m, const std::vector<double>& value) {
        auto& out = o.next[std::string("bn/") + leaf];
        for (std::size_t j = 0; j < D; ++j) out.push_back(v(leaf, j) - (v(leaf, j) - value[j]) * (1 - m));
    };
    std::vector<double> s(D);
    for (std::size_t j = 0; j < D; ++j) s[j] = std::sqrt(o.var[j] + kEps);
    avg("moving_mean", c.momentum, o.mu);
    if (!c.renorm) {
        avg("moving_variance", c.momentum, o.var);
    } else {
        avg("renorm_mean", c.renorm_momentum, o.mu);
        avg("renorm_stddev", c.renorm_momentum, s);
        avg("moving_stddev", c.momentum, s);
        for (double sd : o.next["bn/moving_stddev"]) o.next["bn/moving_variance"].push_back(std::max(sd * sd - kEps, 0.0));
    }
    return o;
}

// The updates of a layer result, as extra unbatched roots after its output: checks every
// update against the reference, in the result's order of updates.
template <class R>
void check_updates(std::size_t batch, const bn_ref& want, std::vector<std::string_view> order) {
    [&]<class... U>(tlist<U...>) {
        using M = program<double, out_t<R>, typename U::value...>;
        auto outs = run_all<M>(batch, values);
        std::vector<std::string_view> names{U::name.view()...};
        CHECK(names == order);
        for (std::size_t u = 0; u < names.size(); ++u) {
            INFO("update of " << names[u]);
            static_assert(!(U::value::batched || ...), "state updates are unbatched");
            test::check_close(outs[1 + u], want.next.at(std::string(names[u])), 1e-12);
        }
    }(typename R::updates{});
}
} // namespace

TEST_CASE("batch_norm train: batch statistics, y = gamma xhat + beta, moving averages") {
    constexpr auto r = batch_norm<"bn", mode::train, batch_norm_config{.momentum = 0.9}>(x);
    using R = decltype(r);
    using E = out_t<R>;
    for (std::size_t batch : {1, 5, 70, 150}) {  // 150: several tiles per pass
        INFO("batch " << batch);
        auto want = reference(batch, 1, {.momentum = 0.9});
        test::check_forward<E>(batch, want.y, values);
        check_updates<R>(batch, want, {"bn/moving_mean", "bn/moving_variance"});
    }
    // a batch of one: x - mu = 0, so y = beta (up to rounding in TF's x inv + (beta - mu inv))
    auto y1 = test::run<double, E>(1, values);
    for (std::size_t j = 0; j < D; ++j) CHECK(y1[j] == doctest::Approx(values("bn/beta", j)).epsilon(1e-14));
    // the moving statistics are not read by the training forward pass
    CHECK(program<float, E>::parameters::names == std::array<std::string_view, 2>{"bn/gamma", "bn/beta"});
    test::check_ad<E>(5);
}

TEST_CASE("batch_norm train: the gradient is the spec's closed form") {
    // dx = (gamma / s)(g - mean g - xhat mean(g xhat)), dgamma = sum g xhat, dbeta = sum g;
    // with renorm gamma -> r gamma in dx, and dgamma = sum g (r xhat + d)
    auto check = [](auto r, std::size_t N, config_ref c) {
        using E = out_t<decltype(r)>;
        using G = grad_program<double, E>;
        constexpr std::size_t batch = 7;
        auto got = run_all<G>(batch, values);
        auto ref = reference(batch, N, c);
        const double cnt = static_cast<double>(batch * N);
        std::vector<double> mg(D, 0.0), mgx(D, 0.0), dg(D, 0.0), db(D, 0.0), dx;
        auto g = [&](std::size_t i) { return values("cotangent", i); };
        for (std::size_t i = 0; i < batch * N * D; ++i) {
            std::size_t j = i % D;
            mg[j] += g(i) / cnt, mgx[j] += g(i) * ref.xhat[i] / cnt;
            dg[j] += g(i) * (ref.r[j] * ref.xhat[i] + ref.d[j]), db[j] += g(i);
        }
        for (std::size_t i = 0; i < batch * N * D; ++i) {
            std::size_t j = i % D;
            double s = std::sqrt(ref.var[j] + kEps);
            dx.push_back(ref.r[j] * values("bn/gamma", j) / s * (g(i) - mg[j] - ref.xhat[i] * mgx[j]));
        }
        test::check_close(got[0], ref.y, 1e-12);
        test::check_close(got[G::template grad<"x">], dx, 1e-10);
        test::check_close(got[G::template grad<"bn/gamma">], dg, 1e-10);
        test::check_close(got[G::template grad<"bn/beta">], db, 1e-10);
        // the renorm statistics are constants for AD
        if constexpr (G::leaves::size > 3) {
            static_assert(is_zero_v<tl_at_t<G::template grad<"bn/renorm_mean">, typename G::roots>>);
            static_assert(is_zero_v<tl_at_t<G::template grad<"bn/renorm_stddev">, typename G::roots>>);
        }
    };
    SUBCASE("plain") { check(batch_norm<"bn", mode::train>(x), 1, {}); }
    SUBCASE("rank 3: statistics over the batch and the middle axis") {
        check(batch_norm<"bn", mode::train>(input<"x", 3, D>), 3, {});
    }
    SUBCASE("renorm, r and d not clipped") {
        auto ref = reference(7, 1, {.renorm = true});
        bool r_far_from_1 = false;
        for (double rv : ref.r) r_far_from_1 = r_far_from_1 || std::abs(rv - 1) > 0.1;
        CHECK(r_far_from_1);  // the data make the correction visible
        check(batch_norm<"bn", mode::train, batch_norm_config{.renorm = true}>(x), 1, {.renorm = true});
    }
    SUBCASE("renorm, clipped") {
        constexpr config_ref c{.renorm = true, .rmax = 1.3, .rmin = 0.9, .dmax = 0.25};
        auto ref = reference(7, 1, c);
        CHECK(ref.r_clipped > 0);
        CHECK(ref.d_clipped > 0);
        check(batch_norm<"bn", mode::train, batch_norm_config{.renorm = true, .rmax = 1.3, .rmin = 0.9, .dmax = 0.25}>(x), 1, c);
    }
}

TEST_CASE("batch_norm train on a rank-3 input: one statistic per feature over (B, N)") {
    constexpr auto x3 = input<"x", 4, D>;
    constexpr auto r = batch_norm<"bn", mode::train, batch_norm_config{.momentum = 0.5}>(x3);
    using R = decltype(r);
    using E = out_t<R>;
    static_assert(E::shape == make_dims<4, D>());
    for (std::size_t batch : {1, 3, 40}) {
        INFO("batch " << batch);
        auto want = reference(batch, 4, {.momentum = 0.5});
        test::check_forward<E>(batch, want.y, values);
        check_updates<R>(batch, want, {"bn/moving_mean", "bn/moving_variance"});
    }
    test::check_ad<E>(3);
}

TEST_CASE("batch_norm renorm: r and d corrections, clipping, and the five state updates") {
    const std::vector<std::string_view> names{"bn/renorm_mean", "bn/renorm_stddev", "bn/moving_mean", "bn/moving_stddev",
                                              "bn/moving_variance"};
    SUBCASE("no clipping (the defaults)") {
        constexpr auto r = batch_norm<"bn", mode::train, batch_norm_config{.renorm = true, .renorm_momentum = 0.7}>(x);
        using R = decltype(r);
        for (std::size_t batch : {2, 9, 100}) {
            INFO("batch " << batch);
            auto want = reference(batch, 1, {.renorm = true, .renorm_momentum = 0.7});
            CHECK(want.r_clipped + want.d_clipped == 0);
            test::check_forward<out_t<R>>(batch, want.y, values);
            check_updates<R>(batch, want, names);
            // moving_stddev[0] is tiny: the new moving variance is clamped at 0
            CHECK(want.next["bn/moving_variance"][0] == 0.0);
            CHECK(want.next["bn/moving_variance"][1] > 0.0);
        }
    }
    SUBCASE("clipping active for r (both bounds) and d") {
        constexpr config_ref c{.renorm = true, .rmax = 1.3, .rmin = 0.9, .dmax = 0.25};
        constexpr auto r = batch_norm<"bn", mode::train, batch_norm_config{.renorm = true, .rmax = 1.3, .rmin = 0.9, .dmax = 0.25}>(x);
        using R = decltype(r);
        for (std::size_t batch : {3, 11, 64}) {
            INFO("batch " << batch);
            auto want = reference(batch, 1, c);
            CHECK(want.r_clipped > 0);
            if (batch > 3) CHECK(want.r_clipped < D);  // and not everywhere
            CHECK(want.d_clipped > 0);
            test::check_forward<out_t<R>>(batch, want.y, values);
            check_updates<R>(batch, want, names);  // clipping never affects the updates
        }
    }
    SUBCASE("a tiny renorm_stddev is floored at sqrt(eps)") {
        constexpr auto r = batch_norm<"bn", mode::train, batch_norm_config{.renorm = true}>(x);
        auto tiny = [](std::string_view n, std::size_t i) { return n == "bn/renorm_stddev" ? 1e-6 : values(n, i); };
        auto want = reference(5, 1, {.renorm = true}, tiny);
        for (std::size_t j = 0; j < D; ++j) CHECK(want.r[j] == doctest::Approx(std::sqrt(want.var[j] + kEps) / std::sqrt(kEps)));
        test::check_forward<out_t<decltype(r)>>(5, want.y, tiny);
    }
}

TEST_CASE("batch_norm gradients by finite differences (train, renorm, eval)") {
    SUBCASE("train, rank 2 and rank 3") {
        test::check_ad<out_t<decltype(batch_norm<"bn", mode::train>(x))>>(4);
        test::check_ad<out_t<decltype(batch_norm<"bn", mode::train>(input<"x", 2, 3>))>>(3);
    }
    SUBCASE("train with renorm, r and d saturated by the clipping") {
        // r and d are stop_gradient'ed. Where they sit at a clipping bound they are
        // locally constant, so the true derivative (finite differences) equals the
        // stop-gradient one, including zero for renorm_mean and renorm_stddev:
        // s >= sqrt(eps) and renorm_stddev <= 0.06 give r >= 0.52 > rmax, and
        // mu - renorm_mean <= -0.9 gives d <= -15 < -dmax.
        using E = out_t<decltype(batch_norm<"bn", mode::train, batch_norm_config{.renorm = true, .rmax = 0.4, .dmax = 1.0}>(x))>;
        test::check_ad<E>(4, [](std::string_view n, double v) {
            if (n == "bn/renorm_stddev") return 0.05 + 0.01 * v;
            if (n == "bn/renorm_mean") return 2.0 + 0.1 * v;
            return v;
        });
    }
    SUBCASE("eval and predict: moving statistics are constants") {
        using E = out_t<decltype(batch_norm<"bn", mode::eval>(x))>;
        check_fd<E>(4, values, {"bn/moving_mean", "bn/moving_variance"});
        using E3 = out_t<decltype(batch_norm<"bn", mode::predict, batch_norm_config{.renorm = true}>(input<"x", 2, D>))>;
        check_fd<E3>(3, values, {"bn/moving_mean", "bn/moving_variance"});
    }
}

TEST_CASE("batch_norm eval / predict: moving statistics, no updates, renorm irrelevant") {
    constexpr auto e = batch_norm<"bn", mode::eval>(x);
    constexpr auto p = batch_norm<"bn", mode::predict, batch_norm_config{.momentum = 0.5, .renorm = true, .rmax = 1.0}>(x);
    static_assert(std::is_same_v<out_t<decltype(e)>, out_t<decltype(p)>>);
    static_assert(decltype(e)::updates::size == 0 && decltype(p)::updates::size == 0);
    for (std::size_t batch : {1, 6, 90}) {
        auto want = reference(batch, 1, {.train = false});
        test::check_forward<out_t<decltype(e)>>(batch, want.y, values);
    }
    constexpr auto e3 = batch_norm<"bn", mode::eval>(input<"x", 3, D>);
    test::check_forward<out_t<decltype(e3)>>(4, reference(4, 3, {.train = false}).y, values);
    // the per-feature scale and shift read parameters only: computed on parameter change
    static_assert(program<float, out_t<decltype(e)>>::plan_type::derived_steps >= 1);
}

TEST_CASE("batch_norm variables: names, creation order, initial values") {
    auto names = []<class... I>(tlist<I...>) { return std::vector<std::string_view>{I::name.view()...}; };
    using plain = decltype(batch_norm<"mlp/BatchNorm/in", mode::train>(x))::inits;
    using renorm = decltype(batch_norm<"mlp/BatchNorm/in", mode::eval, batch_norm_config{.renorm = true}>(x))::inits;
    CHECK(names(plain{}) == std::vector<std::string_view>{"mlp/BatchNorm/in/gamma", "mlp/BatchNorm/in/beta",
                                                          "mlp/BatchNorm/in/moving_mean", "mlp/BatchNorm/in/moving_variance"});
    CHECK(names(renorm{}) == std::vector<std::string_view>{"mlp/BatchNorm/in/gamma", "mlp/BatchNorm/in/beta",
                                                           "mlp/BatchNorm/in/moving_mean", "mlp/BatchNorm/in/moving_variance",
                                                           "mlp/BatchNorm/in/moving_stddev", "mlp/BatchNorm/in/renorm_mean",
                                                           "mlp/BatchNorm/in/renorm_stddev"});
    // a freshly initialised eval layer is y = x / sqrt(1 + eps)
    constexpr auto r = batch_norm<"bn", mode::eval, batch_norm_config{.renorm = true}>(x);
    using M = program<double, out_t<decltype(r)>>;
    M::parameters p;
    initialize<decltype(r)::inits>(p, 3);
    M::workspace ws;
    std::vector<double> xs(2 * D), y(2 * D);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
    M::io io;
    io.input<"x">(xs.data()).output<0>(y.data());
    M::run(p, ws, 2, io);
    for (std::size_t i = 0; i < xs.size(); ++i) CHECK(y[i] == doctest::Approx(xs[i] / std::sqrt(1 + kEps)).epsilon(1e-14));
}

TEST_CASE("batch_norm in a training step: gradients for gamma and beta, moving statistics written") {
    constexpr auto r = batch_norm<"bn", mode::train, batch_norm_config{.momentum = 0.8, .renorm = true}>(x);
    constexpr auto t = input<"t", D>;
    constexpr auto loss = batch_mean(sum(r.out * t));
    using S = train_program<double, std::remove_cvref_t<decltype(loss)>, decltype(r)::updates>;
    // only gamma and beta are trainable; the five statistics are state
    static_assert(S::trainable::size == 2);
    S::parameters p;
    initialize<decltype(r)::inits>(p, 1);
    S::workspace ws;
    constexpr std::size_t batch = 8;
    std::vector<double> xs(batch * D), ts(batch * D), dg(D), db(D);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i), ts[i] = leaf_value("t", i);
    double l = 0;
    S::io io;
    io.input<"x">(xs.data()).input<"t">(ts.data()).output<0>(&l);
    io.output<S::grad<"bn/gamma">>(dg.data()).output<S::grad<"bn/beta">>(db.data());
    S::run(p, ws, batch, io);
    // from the initial state (ones / zeros): r = s, d = mu
    std::vector<double> mu(D, 0.0), var(D, 0.0);
    for (std::size_t i = 0; i < xs.size(); ++i) mu[i % D] += xs[i] / batch;
    for (std::size_t i = 0; i < xs.size(); ++i) var[i % D] += (xs[i] - mu[i % D]) * (xs[i] - mu[i % D]) / batch;
    for (std::size_t j = 0; j < D; ++j) {
        double s = std::sqrt(var[j] + kEps), gsum = 0, ggam = 0;
        for (std::size_t b = 0; b < batch; ++b) {
            double g = ts[b * D + j] / batch, xh = (xs[b * D + j] - mu[j]) / s;
            gsum += g, ggam += g * (s * xh + mu[j]);
        }
        CHECK(db[j] == doctest::Approx(gsum).epsilon(1e-12));
        CHECK(dg[j] == doctest::Approx(ggam).epsilon(1e-12));
        double sd = 1 - (1 - s) * 0.2;
        CHECK(p.get<"bn/moving_mean">()[j] == doctest::Approx(mu[j] * 0.2).epsilon(1e-12));
        CHECK(p.get<"bn/moving_stddev">()[j] == doctest::Approx(sd).epsilon(1e-12));
        CHECK(p.get<"bn/moving_variance">()[j] == doctest::Approx(std::max(sd * sd - kEps, 0.0)).epsilon(1e-12));
        CHECK(p.get<"bn/renorm_mean">()[j] == doctest::Approx(mu[j] * 0.01).epsilon(1e-12));
        CHECK(p.get<"bn/renorm_stddev">()[j] == doctest::Approx(1 - (1 - s) * 0.01).epsilon(1e-12));
        CHECK(p.get<"bn/gamma">()[j] == 1.0);  // the step computes gradients; it does not apply them
    }
}
