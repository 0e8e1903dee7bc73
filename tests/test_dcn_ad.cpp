// DCN derivatives (spec layers-core-and-cross.md section 8.7), vector / matrix: finite
// differences and JVP/VJP duality for every input and parameter element (kernel norm
// included), the frozen biases under kernel norm through SGD steps, the gradient through a
// seeded dropout mask, and penalty gradients. Forward tests: test_dcn.cpp; mixed-mode
// derivatives: test_dcn_mixed.cpp (separate files bound each file's compile memory).
#include "dcn_support.hpp"

#include <algorithm>
#include <string>

#include "ctrec/layers/dcn.hpp"
#include "ctrec/layers/initialize.hpp"
#include "ctrec/train/train_program.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
using namespace dcn_support;


// (mixed with kernel norm: one layer in the derivative programs, whose compile cost grows
// steeply with depth; the two-layer form is checked forward and in the original config)
constexpr dcn_config mix1{.type = dcn_type::mixed, .layer_num = 1, .num_experts = 2, .low_rank = R};
} // namespace

TEST_CASE("dcn gradients and JVP by finite differences (every input and parameter element), dropout off") {
    SUBCASE("vector, kernel norm") { test::check_ad<out_t<decltype(dcn<"dcn", vec_kn>(x2))>>(B); }
    SUBCASE("matrix, kernel norm") { test::check_ad<out_t<decltype(dcn<"dcn", mat_kn>(x2))>>(B); }
}

TEST_CASE("dcn kernel norm: the biases (and their norms) stay exactly 0 through SGD steps") {
    constexpr dcn_config c{.type = dcn_type::vector, .layer_num = 2, .allow_kernel_norm = true, .use_dropout = true, .keep_prob = 0.5};
    constexpr auto r = dcn<"dcn", c, mode::train>(x2);
    constexpr auto loss = batch_mean(sum(r.out * r.out)) + r.penalty;
    using S = train_program<double, decltype(loss)>;
    S::parameters p;
    initialize<decltype(r)::inits>(p, 5);
    const std::vector<double> u0(p.get<"dcn/kernel_0">().begin(), p.get<"dcn/kernel_0">().end());
    S::workspace ws;
    S::gradients g;
    const auto xs = leaf_values("x", B * N * D);
    for (int step = 0; step < 3; ++step) {
        double l = 0;
        S::io io;
        io.seed = 100 + step;
        io.input<"x">(xs.data()).output<0>(&l);
        g.bind(io);
        S::run(p, ws, B, io);
        for (double v : g.get<"dcn/bias_0">()) CHECK(v == 0.0);
        for (double v : g.get<"dcn/bias_1/trainable_norm">()) CHECK(v == 0.0);
        g.sgd(p, 0.1);
    }
    for (const char* n : {"dcn/bias_0", "dcn/bias_1", "dcn/bias_0/trainable_norm", "dcn/bias_1/trainable_norm"})
        for (double v : p.get(p.index_of(n))) CHECK(v == 0.0);
    // while the other variables train
    double moved = 0;
    for (std::size_t i = 0; i < u0.size(); ++i) moved = std::max(moved, std::abs(p.get<"dcn/kernel_0">()[i] - u0[i]));
    CHECK(moved > 1e-6);
}

TEST_CASE("dcn dropout gradient uses the forward's mask: finite differences in train mode with a fixed seed") {
    constexpr dcn_config c{.type = dcn_type::matrix, .layer_num = 2, .use_dropout = true, .keep_prob = 0.5};
    using E = out_t<decltype(dcn<"dcn", c, mode::train>(x2))>;
    // every leaf element, seed 0 (check_derivatives leaves io.seed at 0)
    test::check_ad<E>(B);
    // and with another seed, the input gradient element by element
    using F = program<double, E>;
    using G = grad_program<double, E>;
    F::parameters fp;
    G::parameters gp;
    fill_leaf_values<F>(fp), fill_leaf_values<G>(gp);
    auto xs = leaf_values("x", B * N * D);
    const auto ct = leaf_values("ct", B * N * D);
    G::workspace gws;
    G::io io;
    io.seed = 12345;
    io.input<"x">(xs.data()).input<"cotangent">(ct.data());
    std::vector<std::vector<double>> outs(G::n_outputs);
    [&]<std::size_t... O>(std::index_sequence<O...>) {
        ((outs[O].resize(G::output_size<O> * (G::output_batched<O> ? B : 1)), io.output<O>(outs[O].data())), ...);
    }(std::make_index_sequence<G::n_outputs>{});
    G::run(gp, gws, B, io);
    const auto& dx = outs[G::grad<"x">];
    std::size_t zero_grads = 0;
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const double x0 = xs[i], h = 1e-6;
        auto loss = [&] {
            auto o = run_with<F>(fp, xs, B, 12345);
            double l = 0;
            for (std::size_t k = 0; k < o.size(); ++k) l += ct[k] * o[k];
            return l;
        };
        xs[i] = x0 + h;
        const double lp = loss();
        xs[i] = x0 - h;
        const double lm = loss();
        xs[i] = x0;
        CHECK(dx[i] == doctest::Approx((lp - lm) / (2 * h)).epsilon(1e-6));
        zero_grads += dx[i] == 0.0;
    }
    CHECK(zero_grads < xs.size());
}

TEST_CASE("dcn penalty gradients: a training loss with the penalty, differentiated as a whole") {
    constexpr auto v = dcn<"dcn", dcn_config{.type = dcn_type::vector, .regularizer = reg::L2{0.3}, .allow_kernel_norm = true}>(x2);
    test::check_ad<std::remove_cvref_t<decltype(batch_mean(sum(v.out)) + v.penalty)>>(B);
}
