// MLP with BatchNorm (spec layers-core-and-cross.md 3.4 and 1.5): placement (input and
// every hidden Dense output, never the last), train vs eval statistics, gradients through
// the batch statistics, and the moving-statistic updates of a training step.
#include "mlp_reference.hpp"

TEST_CASE("mlp batch normalisation: on the input and every hidden Dense output, never the last") {
    constexpr mlp_config<3> cfg{.output_dims = {5, 4, 2}, .use_weight_norm = false, .enable_batch_normalization = true};
    auto expect = [&](bool train) {
        mat h = bn_ref(input_values(B), B, D0, "mlp/BatchNorm/in", train);
        h = map(bn_ref(dense_ref(h, B, D0, 5, "mlp/dense_0", false), B, 5, "mlp/BatchNorm/out", train), relu);
        h = map(bn_ref(dense_ref(h, B, 5, 4, "mlp/dense_1", false), B, 4, "mlp/BatchNorm/out_1", train), relu);
        return dense_ref(h, B, 4, 2, "mlp/dense_2", false);
    };
    SUBCASE("train: batch statistics, full gradient through them") {
        constexpr auto r = mlp<"mlp", cfg, mode::train>(x);
        using E = std::remove_cvref_t<decltype(r.out)>;
        test::check_forward<E>(B, expect(true));
        test::check_ad<E>(B);
    }
    SUBCASE("eval: moving statistics") {
        constexpr auto r = mlp<"mlp", cfg, mode::eval>(x);
        using E = std::remove_cvref_t<decltype(r.out)>;
        mat want = expect(false);
        test::check_close(test::run<double, E>(B, positive_variances), want, 1e-12);
        test::check_close(test::run<float, E>(B, positive_variances), want, 2e-5);
    }
    SUBCASE("variables: 3 Dense, 1 input BN, 2 hidden BN (no BN after the last Dense)") {
        constexpr auto r = mlp<"mlp", cfg, mode::train>(x);
        using P = train_program<float, decltype(batch_mean(sum(r.out))), decltype(r)::updates>::parameters;
        std::vector<std::string> names(P::names.begin(), P::names.end());
        std::sort(names.begin(), names.end());
        std::vector<std::string> want;
        for (std::string bn : {"BatchNorm/in", "BatchNorm/out", "BatchNorm/out_1"})
            for (std::string v : {"gamma", "beta", "moving_mean", "moving_variance"}) want.push_back("mlp/" + bn + "/" + v);
        for (std::string d : {"dense_0", "dense_1", "dense_2"})
            for (std::string v : {"kernel", "bias"}) want.push_back("mlp/" + d + "/" + v);
        std::sort(want.begin(), want.end());
        CHECK(names == want);
    }
}

TEST_CASE("mlp training step: moving statistics updated by the batch statistics, then used in eval") {
    constexpr double momentum = 0.9;
    constexpr mlp_config<2> cfg{.output_dims = {3, 1}, .use_weight_norm = false, .enable_batch_normalization = true,
                                .batch_normalization_momentum = momentum};
    constexpr auto tr = mlp<"mlp", cfg, mode::train>(x);
    constexpr auto ev = mlp<"mlp", cfg, mode::eval>(x);
    constexpr auto loss = batch_mean(sum(tr.out * tr.out)) + tr.penalty;
    using S = train_program<double, decltype(loss), decltype(tr)::updates>;
    static_assert(decltype(tr)::updates::size == 4);  // mean and variance of BatchNorm/in and BatchNorm/out
    S::parameters p;
    initialize<decltype(tr)::inits>(p, 5);
    S::workspace ws;
    mat xs = input_values(B);
    double l = 0;
    std::vector<mat> grads;
    S::io io;
    io.input<"x">(xs.data()).output<0>(&l);
    [&]<class... P>(tlist<P...>) {
        grads.resize(sizeof...(P));
        std::size_t i = 0;
        ((grads[i].resize(P::shape.size()), io.output<1 + tl_index_v<P, S::trainable>>(grads[i].data()), ++i), ...);
    }(S::trainable{});
    // trainable: every kernel, bias, gamma and beta; never the moving statistics
    static_assert(S::trainable::size == 4 + 4);
    S::run(p, ws, B, io);
    // BatchNorm/in saw the raw input: moving = 0.9 * init + 0.1 * batch statistic
    for (std::size_t j = 0; j < D0; ++j) {
        double mu = 0, var = 0;
        for (std::size_t b = 0; b < B; ++b) mu += xs[b * D0 + j] / B;
        for (std::size_t b = 0; b < B; ++b) var += (xs[b * D0 + j] - mu) * (xs[b * D0 + j] - mu) / B;
        CHECK(p.get<"mlp/BatchNorm/in/moving_mean">()[j] == doctest::Approx(momentum * 0.0 + (1 - momentum) * mu).epsilon(1e-12));
        CHECK(p.get<"mlp/BatchNorm/in/moving_variance">()[j] == doctest::Approx(momentum * 1.0 + (1 - momentum) * var).epsilon(1e-12));
    }
    // eval after the step reads the updated statistics (program sharing the same weights)
    using M = program<double, decltype(ev.out)>;
    M::parameters pe;
    ctrec::train::copy_parameters(p, pe);
    pe.prepare();
    M::workspace mws;
    mat y(B);
    M::io eio;
    eio.input<"x">(xs.data()).output<0>(y.data());
    M::run(std::as_const(pe), mws, B, eio);
    // reference from the trained values
    auto get = [&](std::string_view n) { auto s = pe.get(pe.index_of(n)); return mat(s.begin(), s.end()); };
    mat h(B * 3);
    {
        mat mm = get("mlp/BatchNorm/in/moving_mean"), mv = get("mlp/BatchNorm/in/moving_variance");
        mat g = get("mlp/BatchNorm/in/gamma"), be = get("mlp/BatchNorm/in/beta");
        mat k = get("mlp/dense_0/kernel"), bb = get("mlp/dense_0/bias");
        mat m2 = get("mlp/BatchNorm/out/moving_mean"), v2 = get("mlp/BatchNorm/out/moving_variance");
        mat g2 = get("mlp/BatchNorm/out/gamma"), be2 = get("mlp/BatchNorm/out/beta");
        mat k1 = get("mlp/dense_1/kernel"), b1 = get("mlp/dense_1/bias");
        for (std::size_t b = 0; b < B; ++b) {
            double out = b1[0];
            for (std::size_t j = 0; j < 3; ++j) {
                double z = bb[j];
                for (std::size_t i = 0; i < D0; ++i)
                    z += (g[i] * (xs[b * D0 + i] - mm[i]) / std::sqrt(mv[i] + 1e-3) + be[i]) * k[i * 3 + j];
                out += relu(g2[j] * (z - m2[j]) / std::sqrt(v2[j] + 1e-3) + be2[j]) * k1[j];
            }
            CHECK(y[b] == doctest::Approx(out).epsilon(1e-12));
        }
    }
}

