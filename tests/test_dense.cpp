// Dense (spec layers-core-and-cross.md section 2): forward against naive references
// written from the spec, kernel norm in all three forms, gradients by finite differences
// (including a column whose norm is below the 1e-3 floor), the inactive-relu monitor,
// penalties, variable names, and the derived-parameter cache.
#include "support.hpp"

#include "ctrec/layers/dense.hpp"
#include "ctrec/layers/initialize.hpp"
#include "ctrec/layers/partitioner.hpp"
#include "ctrec/train/train_program.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
constexpr std::size_t B = 4, Din = 5, U = 3;
constexpr auto x = input<"x", Din>;

// Effective kernel of the spec (2.6) from raw kernel values v and scale g (empty: none).
std::vector<double> effective(const std::vector<double>& v, bool norm, const std::vector<double>& g) {
    std::vector<double> w = v;
    if (!norm) return w;
    for (std::size_t j = 0; j < U; ++j) {
        double s = 0;
        for (std::size_t i = 0; i < Din; ++i) s += v[i * U + j] * v[i * U + j];
        double n = std::sqrt(std::max(s, 1e-6));
        for (std::size_t i = 0; i < Din; ++i) w[i * U + j] = v[i * U + j] / n * (g.empty() ? 1.0 : g[j]);
    }
    return w;
}
std::vector<double> values(std::string_view name, std::size_t n) {
    std::vector<double> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = leaf_value(name, i);
    return v;
}
// y[b, j] = act(sum_i x[b, i] w[i, j] + bias[j])
template <class Act>
std::vector<double> reference(const std::vector<double>& w, bool bias, Act act) {
    std::vector<double> out;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t j = 0; j < U; ++j) {
            double z = bias ? leaf_value("d/bias", j) : 0.0;
            for (std::size_t i = 0; i < Din; ++i) z += leaf_value("x", b * Din + i) * w[i * U + j];
            out.push_back(act(z));
        }
    return out;
}
double relu(double z) { return z > 0 ? z : 0; }
double sigm(double z) { return 1 / (1 + std::exp(-z)); }
template <class P>
std::vector<std::string_view> names_of() {
    return {P::names.begin(), P::names.end()};
}
} // namespace

TEST_CASE("dense: y = act(x W + b) in float64 and float32, gradients by finite differences") {
    SUBCASE("relu with bias") {
        constexpr auto r = dense<"d", dense_config{.units = U, .activation = act_relu}>(x);
        using E = std::remove_cvref_t<decltype(r.out)>;
        test::check_forward<E>(B, reference(values("d/kernel", Din * U), true, relu));
        test::check_ad<E>(B);
        CHECK(names_of<program<float, E>::parameters>() == std::vector<std::string_view>{"d/kernel", "d/bias"});
        // bias and activation run in the GEMM epilogue: one step
        CHECK(program<float, E>::plan_type::steps == 1);
    }
    SUBCASE("sigmoid without bias") {
        constexpr auto r = dense<"d", dense_config{.units = U, .activation = keras_activation("sigmoid"), .use_bias = false}>(x);
        using E = std::remove_cvref_t<decltype(r.out)>;
        test::check_forward<E>(B, reference(values("d/kernel", Din * U), false, sigm));
        test::check_ad<E>(B);
        CHECK(names_of<program<float, E>::parameters>() == std::vector<std::string_view>{"d/kernel"});
    }
    SUBCASE("a rank-3 input: the same Dense at every position") {
        constexpr auto x3 = input<"x", 2, Din>;
        constexpr auto r = dense<"d", dense_config{.units = U, .activation = act_tanh}>(x3);
        using E = std::remove_cvref_t<decltype(r.out)>;
        static_assert(E::shape == make_dims<2, U>());
        std::vector<double> want;
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t p = 0; p < 2; ++p)
                for (std::size_t j = 0; j < U; ++j) {
                    double z = leaf_value("d/bias", j);
                    for (std::size_t i = 0; i < Din; ++i) z += leaf_value("x", (b * 2 + p) * Din + i) * leaf_value("d/kernel", i * U + j);
                    want.push_back(std::tanh(z));
                }
        test::check_forward<E>(B, want);
        test::check_ad<E>(B);
    }
}

TEST_CASE("dense kernel norm: trainable, fixed (documented default) and monolith_compat") {
    SUBCASE("trainable: W = l2_normalize(V, axis 0) * g") {
        constexpr auto r = dense<"d", dense_config{.units = U, .activation = act_relu, .allow_kernel_norm = true, .kernel_norm_trainable = true}>(x);
        using E = std::remove_cvref_t<decltype(r.out)>;
        auto w = effective(values("d/kernel", Din * U), true, values("d/trainable_kernel_norm", U));
        test::check_forward<E>(B, reference(w, true, relu));
        test::check_ad<E>(B);
        CHECK(names_of<program<float, E>::parameters>() ==
              std::vector<std::string_view>{"d/kernel", "d/trainable_kernel_norm", "d/bias"});
    }
    SUBCASE("fixed norm (default): W = l2_normalize(V) * g0, and g0 gets no gradient") {
        constexpr auto r = dense<"d", dense_config{.units = U, .activation = act_sigmoid, .allow_kernel_norm = true}>(x);
        using E = std::remove_cvref_t<decltype(r.out)>;
        auto w = effective(values("d/kernel", Din * U), true, values("d/kernel_norm", U));
        test::check_forward<E>(B, reference(w, true, sigm));
        // g0 is a constant (no gradient; check_ad holds it fixed); every other gradient
        // also equals the trainable form's at the same values
        test::check_ad<E>(B);
        using G = grad_program<double, E>;
        static_assert(is_zero_v<tl_at_t<G::grad<"d/kernel_norm">, G::roots>>);
        constexpr auto t = dense<"d", dense_config{.units = U, .activation = act_sigmoid, .allow_kernel_norm = true, .kernel_norm_trainable = true}>(x);
        using GT = grad_program<double, std::remove_cvref_t<decltype(t.out)>>;
        auto grads = [&](auto prog, std::string_view norm) {
            using P = decltype(prog);
            typename P::parameters p;
            typename P::workspace ws;
            for (std::size_t i = 0; i < Din * U; ++i) p.template get<"d/kernel">()[i] = leaf_value("d/kernel", i);
            for (std::size_t j = 0; j < U; ++j) p.template get<"d/bias">()[j] = leaf_value("d/bias", j);
            for (std::size_t j = 0; j < U; ++j) p.get(p.index_of(norm))[j] = 0.5 + leaf_value("g", j);
            std::vector<double> xs(B * Din), ct(B * U), y(B * U), dx(B * Din), dk(Din * U), dn(U), db(U);
            for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
            for (std::size_t i = 0; i < ct.size(); ++i) ct[i] = leaf_value("ct", i);
            typename P::io io;
            io.template input<"x">(xs.data()).template input<"cotangent">(ct.data()).template output<0>(y.data());
            io.template output<P::template grad<"x">>(dx.data()).template output<P::template grad<"d/kernel">>(dk.data());
            io.template output<P::template grad<"d/bias">>(db.data()).template output<3>(dn.data());
            P::run(p, ws, B, io);
            std::vector<double> all = y;
            all.insert(all.end(), dx.begin(), dx.end());
            all.insert(all.end(), dk.begin(), dk.end());
            all.insert(all.end(), db.begin(), db.end());
            return all;
        };
        static_assert(G::grad<"d/kernel_norm"> == 3 && GT::grad<"d/trainable_kernel_norm"> == 3);
        auto a = grads(G{}, "d/kernel_norm"), b = grads(GT{}, "d/trainable_kernel_norm");
        REQUIRE(a.size() == b.size());
        for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-13));
    }
    SUBCASE("monolith_compat, not trainable: W = l2_normalize(V), unit columns, no extra variable") {
        constexpr auto r = dense<"d", dense_config{.units = U, .activation = act_sigmoid, .allow_kernel_norm = true, .monolith_compat = true}>(x);
        using E = std::remove_cvref_t<decltype(r.out)>;
        auto w = effective(values("d/kernel", Din * U), true, {});
        test::check_forward<E>(B, reference(w, true, sigm));
        test::check_ad<E>(B);
        CHECK(names_of<program<float, E>::parameters>() == std::vector<std::string_view>{"d/kernel", "d/bias"});
    }
}

TEST_CASE("dense kernel norm at initialisation: W equals the initial kernel (trainable and fixed)") {
    constexpr auto plain = dense<"d", dense_config{.units = 6, .activation = act_linear}>(input<"x", 7>);
    constexpr auto trained = dense<"d", dense_config{.units = 6, .allow_kernel_norm = true, .kernel_norm_trainable = true}>(input<"x", 7>);
    constexpr auto fixed = dense<"d", dense_config{.units = 6, .allow_kernel_norm = true}>(input<"x", 7>);
    constexpr auto compat = dense<"d", dense_config{.units = 6, .allow_kernel_norm = true, .monolith_compat = true}>(input<"x", 7>);
    auto out = [&](auto r) {
        using M = program<double, decltype(r.out)>;
        typename M::parameters p;
        initialize<typename decltype(r)::inits>(p, 11);
        p.prepare();
        typename M::workspace ws;
        std::vector<double> xs(2 * 7), y(2 * 6);
        for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
        typename M::io io;
        io.template input<"x">(xs.data()).template output<0>(y.data());
        M::run(std::as_const(p), ws, 2, io);
        return y;
    };
    auto y0 = out(plain), y1 = out(trained), y2 = out(fixed), y3 = out(compat);
    for (std::size_t i = 0; i < y0.size(); ++i) {
        CHECK(y1[i] == doctest::Approx(y0[i]).epsilon(1e-12));
        CHECK(y2[i] == doctest::Approx(y0[i]).epsilon(1e-12));
    }
    // without a scale the columns have unit norm: the output differs from the plain one
    bool differs = false;
    for (std::size_t i = 0; i < y0.size(); ++i) differs = differs || std::abs(y3[i] - y0[i]) > 1e-6;
    CHECK(differs);
    // trainable_kernel_norm starts as the plain column norms of the same initial kernel
    using M = program<double, decltype(trained.out)>;
    M::parameters p;
    initialize<decltype(trained)::inits>(p, 11);
    auto k = p.get<"d/kernel">();
    auto g = p.get<"d/trainable_kernel_norm">();
    for (std::size_t j = 0; j < 6; ++j) {
        double s = 0;
        for (std::size_t i = 0; i < 7; ++i) s += k[i * 6 + j] * k[i * 6 + j];
        CHECK(g[j] == doctest::Approx(std::sqrt(s)).epsilon(1e-15));
    }
    // glorot_uniform bounds on the kernel: sqrt(6 / (7 + 6))
    for (double v : k) CHECK(std::abs(v) <= std::sqrt(6.0 / 13.0));
}

TEST_CASE("dense kernel norm gradient through the 1e-3 floor (a column with norm below it)") {
    constexpr auto r = dense<"d", dense_config{.units = U, .activation = act_linear, .allow_kernel_norm = true, .kernel_norm_trainable = true}>(x);
    using E = std::remove_cvref_t<decltype(r.out)>;
    // column 1 of the kernel is scaled down to norm ~1e-5: there n_j = 1e-3 and
    // dL/dV = H / 1e-3; elsewhere the normalisation's full derivative
    using G = grad_program<double, E>;
    G::parameters p;
    G::workspace ws;
    std::vector<double> xs(B * Din), ct(B * U), out(B * U), dx(B * Din), dk(Din * U), dg(U), db(U);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
    for (std::size_t i = 0; i < ct.size(); ++i) ct[i] = leaf_value("ct", i);
    for (std::size_t i = 0; i < Din * U; ++i) p.get<"d/kernel">()[i] = leaf_value("k", i) * (i % U == 1 ? 1e-5 : 1.0);
    for (std::size_t j = 0; j < U; ++j) p.get<"d/trainable_kernel_norm">()[j] = 0.5 + leaf_value("g", j);
    for (std::size_t j = 0; j < U; ++j) p.get<"d/bias">()[j] = leaf_value("b", j);
    G::io io;
    io.input<"x">(xs.data()).input<"cotangent">(ct.data()).output<0>(out.data());
    io.output<G::grad<"x">>(dx.data()).output<G::grad<"d/kernel">>(dk.data());
    io.output<G::grad<"d/trainable_kernel_norm">>(dg.data()).output<G::grad<"d/bias">>(db.data());
    G::run(p, ws, B, io);
    // the spec's formulas (2.7): G = x^T g_z, H = G * g; floor column: dV = H / 1e-3
    std::vector<double> v(p.get<"d/kernel">().begin(), p.get<"d/kernel">().end());
    for (std::size_t j = 0; j < U; ++j) {
        double s = 0;
        for (std::size_t i = 0; i < Din; ++i) s += v[i * U + j] * v[i * U + j];
        double n = std::sqrt(std::max(s, 1e-6));
        double gj = p.get<"d/trainable_kernel_norm">()[j];
        std::vector<double> H(Din), vh(Din);
        double dot = 0, dgj = 0;
        for (std::size_t i = 0; i < Din; ++i) {
            double Gij = 0;
            for (std::size_t b = 0; b < B; ++b) Gij += xs[b * Din + i] * ct[b * U + j];
            vh[i] = v[i * U + j] / n;
            H[i] = Gij * gj;
            dot += vh[i] * H[i];
            dgj += Gij * vh[i];
        }
        CHECK(dg[j] == doctest::Approx(dgj).epsilon(1e-12));
        for (std::size_t i = 0; i < Din; ++i) {
            double want = s >= 1e-6 ? (H[i] - vh[i] * dot) / n : H[i] / 1e-3;
            CHECK(dk[i * U + j] == doctest::Approx(want).epsilon(1e-10));
        }
    }
    // and central finite differences of sum(ct * y) agree, floor column included
    auto loss = [&] {
        G::io f;
        std::vector<double> o(B * U), a(B * Din), k(Din * U), g(U), c(U);
        f.input<"x">(xs.data()).input<"cotangent">(ct.data()).output<0>(o.data());
        f.output<G::grad<"x">>(a.data()).output<G::grad<"d/kernel">>(k.data());
        f.output<G::grad<"d/trainable_kernel_norm">>(g.data()).output<G::grad<"d/bias">>(c.data());
        G::run(p, ws, B, f);
        double l = 0;
        for (std::size_t i = 0; i < o.size(); ++i) l += ct[i] * o[i];
        return l;
    };
    for (std::size_t i = 0; i < Din * U; ++i) {
        const double v0 = p.get<"d/kernel">()[i], h = std::abs(v0) * 1e-4 + 1e-9;
        p.get<"d/kernel">()[i] = v0 + h;
        double lp = loss();
        p.get<"d/kernel">()[i] = v0 - h;
        double lm = loss();
        p.get<"d/kernel">()[i] = v0;
        CHECK(dk[i] == doctest::Approx((lp - lm) / (2 * h)).epsilon(1e-5));
    }
}

TEST_CASE("dense penalties: L2 on the raw kernel plus L1 on the bias, with gradients") {
    constexpr auto r = dense<"d", dense_config{.units = U, .activation = act_relu, .kernel_regularizer = reg::L2{0.05},
                                               .bias_regularizer = reg::L1{0.2}, .allow_kernel_norm = true,
                                               .kernel_norm_trainable = true}>(x);
    using Pen = std::remove_cvref_t<decltype(r.penalty)>;
    auto got = test::run<double, Pen>(1);
    double want = 0;
    for (std::size_t i = 0; i < Din * U; ++i) want += 0.05 * leaf_value("d/kernel", i) * leaf_value("d/kernel", i);
    for (std::size_t j = 0; j < U; ++j) want += 0.2 * std::abs(leaf_value("d/bias", j));
    CHECK(got[0] == doctest::Approx(want).epsilon(1e-12));
    // never on the norm variable
    CHECK(names_of<program<float, Pen>::parameters>() == std::vector<std::string_view>{"d/kernel", "d/bias"});
    // a training loss: batch mean of the outputs plus the penalty, differentiated as a whole
    using Loss = std::remove_cvref_t<decltype(batch_mean(sum(r.out)) + r.penalty)>;
    test::check_ad<Loss>(B);
    // no regularizer: the penalty is a symbolic zero
    constexpr auto plain = dense<"d", dense_config{.units = U}>(x);
    static_assert(is_zero_v<std::remove_cvref_t<decltype(plain.penalty)>>);
}

TEST_CASE("dense inactive-relu monitor: documented rate by default, the source's statistic under monolith_compat") {
    constexpr double decay = 0.25;
    constexpr auto doc = dense<"d", dense_config{.units = U, .activation = act_relu, .inactive_relu_monitor = true,
                                                 .inactive_relu_monitor_decay = decay}>(x);
    constexpr auto src = dense<"d", dense_config{.units = U, .activation = act_relu, .inactive_relu_monitor = true,
                                                 .inactive_relu_monitor_decay = decay, .monolith_compat = true}>(x);
    auto steps = [&](auto r, bool compat) {
        using Loss = decltype(batch_mean(sum(r.out)));
        using S = train_program<double, Loss, typename decltype(r)::updates>;
        typename S::parameters p;
        typename S::workspace ws;
        for (std::size_t i = 0; i < Din * U; ++i) p.template get<"d/kernel">()[i] = leaf_value("d/kernel", i);
        for (std::size_t j = 0; j < U; ++j) p.template get<"d/bias">()[j] = leaf_value("d/bias", j);
        std::vector<double> m(U, 0.0);
        for (int step = 0; step < 3; ++step) {
            std::vector<double> xs(B * Din), dk(Din * U), db(U);
            for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x" + std::to_string(step), i);
            double l = 0;
            typename S::io io;
            io.template input<"x">(xs.data()).template output<0>(&l);
            io.template output<S::template grad<"d/kernel">>(dk.data()).template output<S::template grad<"d/bias">>(db.data());
            S::run(p, ws, B, io);
            // reference: count rows with a non-zero relu output per unit
            for (std::size_t j = 0; j < U; ++j) {
                double nonzero = 0;
                for (std::size_t b = 0; b < B; ++b) {
                    double z = leaf_value("d/bias", j);
                    for (std::size_t i = 0; i < Din; ++i) z += xs[b * Din + i] * leaf_value("d/kernel", i * U + j);
                    nonzero += z > 0;
                }
                double c = compat ? static_cast<double>(U) - nonzero : nonzero / B;
                m[j] = (1 - decay) * m[j] + decay * c;
                CHECK(p.template get<"d/inactive_relu_count_moving_avg">()[j] == doctest::Approx(m[j]).epsilon(1e-12));
            }
        }
        // the statistic is not a parameter to train
        static_assert(S::parameters::position("d/inactive_relu_count_moving_avg") < S::parameters::count);
        static_assert(tl_index_v<param_node<"d/inactive_relu_count_moving_avg", make_dims<U>()>, typename S::trainable> ==
                      S::trainable::size);
    };
    steps(doc, false);
    steps(src, true);
}

TEST_CASE("derived parameters: the normalised kernel is computed on parameter change, not per call") {
    constexpr auto r = dense<"d", dense_config{.units = U, .activation = act_relu, .allow_kernel_norm = true, .kernel_norm_trainable = true}>(x);
    using M = program<float, decltype(r.out)>;
    static_assert(M::plan_type::derived_steps >= 1);
    CHECK(M::describe().find("[derived: on parameter change]") != std::string::npos);
    M::parameters p;
    initialize<decltype(r)::inits>(p, 1);
    M::workspace ws;
    std::vector<float> xs(B * Din), y(B * U), y2(B * U);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(leaf_value("x", i));
    M::io io;
    io.input<"x">(xs.data()).output<0>(y.data());
    const M::parameters& shared = p;
    // stale parameters are refused through a const reference ...
    CHECK_THROWS_AS(M::run(shared, ws, B, io), ctrec::error);
    p.prepare();
    M::run(shared, ws, B, io);
    // ... a write makes them stale again, and prepare() picks the change up
    p.get<"d/trainable_kernel_norm">()[0] *= 2;
    CHECK_THROWS_AS(M::run(shared, ws, B, io), ctrec::error);
    p.prepare();
    io.output<0>(y2.data());
    M::run(shared, ws, B, io);
    for (std::size_t b = 0; b < B; ++b) {
        CHECK(y2[b * U] == doctest::Approx(2 * y[b * U]).epsilon(1e-5));
        CHECK(y2[b * U + 1] == y[b * U + 1]);
    }
    // the workspace holds no kernel-sized buffer: the effective kernel lives with the parameters
    CHECK(M::workspace::size < Din * U);
}

TEST_CASE("partitioned kernels: TF's shard count and sizes, and reassembly equals the unsharded kernel") {
    // the original test: kernel (294, 1024), max_shard_bytes 2^17, max_shards 5
    constexpr dims k = make_dims<294, 1024>();
    static_assert(variable_axis_size_partitioner(1u << 17, k, 0, 5) == 5);
    CHECK(shard_sizes(294, 5) == std::vector<std::size_t>{59, 59, 59, 59, 58});
    // trainable_kernel_norm (1024,) fits one shard
    static_assert(variable_axis_size_partitioner(1u << 17, make_dims<1024>(), 0, 5) == 1);
    // a 5-shard import equals the unsharded kernel
    std::vector<float> full(294 * 1024);
    for (std::size_t i = 0; i < full.size(); ++i) full[i] = static_cast<float>(leaf_value("k", i));
    std::vector<std::span<const float>> parts;
    std::size_t at = 0;
    for (std::size_t r : shard_sizes(294, 5)) {
        parts.emplace_back(full.data() + at * 1024, r * 1024);
        at += r;
    }
    std::vector<float> out(full.size(), -1.f);
    concat_shards<float>(parts, k, 0, out, "dense/kernel");
    CHECK(out == full);
    // a missing shard is an error naming the variable, and nothing is written
    std::vector<float> untouched(full.size(), 7.f);
    auto short_list = std::span(parts).first(4);
    CHECK_THROWS_WITH_AS(concat_shards<float>(short_list, k, 0, untouched, "dense/kernel"),
                         doctest::Contains("dense/kernel"), ctrec::error);
    CHECK(untouched == std::vector<float>(full.size(), 7.f));
}
