// MLP (spec layers-core-and-cross.md section 3): default activations and weight norm,
// per-layer activation lists (PReLU included), penalties summed over every layer,
// initialisation, and the layer / variable structure of the original test.
#include "mlp_reference.hpp"

TEST_CASE("mlp defaults: weight norm with learnable scale, relu on hidden layers, none on the last") {
    constexpr mlp_config<3> cfg{.output_dims = {6, 5, 2}};
    constexpr auto r = mlp<"mlp", cfg, mode::predict>(x);
    using E = std::remove_cvref_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<2>());
    mat h = input_values(B);
    h = map(dense_ref(h, B, D0, 6, "mlp/dense_0", true), relu);
    h = map(dense_ref(h, B, 6, 5, "mlp/dense_1", true), relu);
    h = dense_ref(h, B, 5, 2, "mlp/dense_2", true);  // no activation on the last layer
    test::check_forward<E>(B, h);
    test::check_ad<E>(B);
    // weight norm folded: the effective kernels are derived parameters
    static_assert(program<float, E>::plan_type::derived_steps >= 3);
}

TEST_CASE("mlp with one layer and a single activation is one linear Dense; plain kernels without weight norm") {
    constexpr mlp_config<1> cfg{.output_dims = {3}, .activation = ad_activation("tanh"), .use_weight_norm = false};
    constexpr auto r = mlp<"m", cfg, mode::predict>(x);
    using E = std::remove_cvref_t<decltype(r.out)>;
    test::check_forward<E>(B, dense_ref(input_values(B), B, D0, 3, "m/dense_0", false));
    std::vector<std::string_view> names(program<float, E>::parameters::names.begin(), program<float, E>::parameters::names.end());
    CHECK(names == std::vector<std::string_view>{"m/dense_0/kernel", "m/dense_0/bias"});
}

TEST_CASE("mlp activation list: relu, tanh, PReLU (own alpha) and none; sigmoid2 from Monolith's registry") {
    constexpr mlp_config<4> cfg{.output_dims = {5, 4, 3, 2},
                                .activations = {ad_activation("relu"), ad_activation("tanh"), ad_activation("PReLU"), act_none},
                                .activation_list = true,
                                .use_weight_norm = false};
    constexpr auto r = mlp<"mlp", cfg, mode::predict>(x);
    using E = std::remove_cvref_t<decltype(r.out)>;
    mat h = map(dense_ref(input_values(B), B, D0, 5, "mlp/dense_0", false), relu);
    h = map(dense_ref(h, B, 5, 4, "mlp/dense_1", false), [](double z) { return std::tanh(z); });
    h = dense_ref(h, B, 4, 3, "mlp/dense_2", false);
    mat alpha = values("mlp/p_re_lu/alpha", 3);
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = h[i] > 0 ? h[i] : alpha[i % 3] * h[i];
    h = dense_ref(h, B, 3, 2, "mlp/dense_3", false);
    test::check_forward<E>(B, h);
    test::check_ad<E>(B);  // includes d/d alpha
    // PReLU's alpha starts at zero (PReLU starts as ReLU)
    using M = program<double, E>;
    M::parameters p;
    initialize<decltype(r)::inits>(p, 3);
    for (double a : p.get<"mlp/p_re_lu/alpha">()) CHECK(a == 0.0);
    // a single sigmoid2 value: hidden layers only
    constexpr auto s = mlp<"s", mlp_config<2>{.output_dims = {3, 2}, .activation = ad_activation("sigmoid2"), .use_weight_norm = false}, mode::predict>(x);
    using S = std::remove_cvref_t<decltype(s.out)>;
    mat t = map(dense_ref(input_values(B), B, D0, 3, "s/dense_0", false), [](double z) { return 2 / (1 + std::exp(-z)); });
    test::check_forward<S>(B, dense_ref(t, B, 3, 2, "s/dense_1", false));
}

TEST_CASE("mlp penalties: kernel and bias regularizers summed over every Dense, none on BN") {
    constexpr mlp_config<2> cfg{.output_dims = {3, 2}, .kernel_regularizer = reg::L2{0.01}, .bias_regularizer = reg::L1{0.1},
                                .enable_batch_normalization = true};
    constexpr auto r = mlp<"mlp", cfg, mode::train>(x);
    using Pen = std::remove_cvref_t<decltype(r.penalty)>;
    double want = 0;
    for (auto [k, n] : {std::pair<std::string, std::size_t>{"mlp/dense_0", D0 * 3}, {"mlp/dense_1", 3 * 2}}) {
        for (std::size_t i = 0; i < n; ++i) want += 0.01 * leaf_value(k + "/kernel", i) * leaf_value(k + "/kernel", i);
        for (std::size_t i = 0; i < n / (k == "mlp/dense_0" ? D0 : 3); ++i) want += 0.1 * std::abs(leaf_value(k + "/bias", i));
    }
    CHECK(test::run<double, Pen>(1)[0] == doctest::Approx(want).epsilon(1e-12));
    using Loss = std::remove_cvref_t<decltype(batch_mean(sum(r.out)) + r.penalty)>;
    test::check_ad<Loss>(B);
}

TEST_CASE("mlp initialisation: the weight-normalised kernels equal the initial kernels") {
    constexpr mlp_config<2> wn{.output_dims = {7, 3}, .initializers = {init::HeUniform{}, init::GlorotNormal{}}};
    constexpr mlp_config<2> plain{.output_dims = {7, 3}, .initializers = {init::HeUniform{}, init::GlorotNormal{}}, .use_weight_norm = false};
    auto out = [&](auto r) {
        using M = program<double, decltype(r.out)>;
        typename M::parameters p;
        initialize<typename decltype(r)::inits>(p, 17);
        typename M::workspace ws;
        mat xs = input_values(B), y(B * 3);
        typename M::io io;
        io.template input<"x">(xs.data()).template output<0>(y.data());
        M::run(p, ws, B, io);
        return y;
    };
    mat a = out(mlp<"mlp", wn, mode::predict>(x)), b = out(mlp<"mlp", plain, mode::predict>(x));
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-12));
    // HeUniform bound on layer 0: sqrt(6 / fan_in)
    using M = program<double, decltype(mlp<"mlp", plain, mode::predict>(x).out)>;
    M::parameters p;
    initialize<decltype(mlp<"mlp", plain, mode::predict>(x))::inits>(p, 17);
    for (double v : p.get<"mlp/dense_0/kernel">()) CHECK(std::abs(v) <= std::sqrt(6.0 / D0));
    for (double v : p.get<"mlp/dense_0/bias">()) CHECK(v == 0.0);
}

TEST_CASE("the original test's stack: [100, 50, 10, 1], BN, relu / tanh / PReLU / none") {
    constexpr mlp_config<4> cfg{.output_dims = {100, 50, 10, 1},
                                .activations = {act_relu, act_tanh, act_prelu, act_none},
                                .activation_list = true,
                                .initializers = {init::GlorotNormal{}, init::GlorotNormal{}, init::GlorotNormal{}, init::GlorotNormal{}},
                                .enable_batch_normalization = true};
    constexpr auto r = mlp<"MLP", cfg, mode::train>(input<"x", 100>);
    using E = std::remove_cvref_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<1>());
    using P = program<float, E>::parameters;
    // 11 layers: 1 input BN + 4 Dense + 3 hidden BN + 3 activations (one of them owns weights)
    std::size_t dense = 0, bn = 0, prelu = 0;
    for (auto n : P::names) {
        dense += n.ends_with("/kernel");
        bn += n.ends_with("/gamma");
        prelu += n.ends_with("p_re_lu/alpha");
    }
    CHECK(dense == 4);
    CHECK(bn == 1 + 3);
    CHECK(prelu == 1);
    // forward on ones (100, 100) gives a (100, 1) output
    program<float, E>::parameters p;
    initialize<decltype(r)::inits>(p, 1);
    program<float, E>::workspace ws;
    std::vector<float> ones(100 * 100, 1.f), y(100);
    program<float, E>::io io;
    io.input<"x">(ones.data()).output<0>(y.data());
    program<float, E>::run(p, ws, 100, io);
    for (float v : y) CHECK(std::isfinite(v));
}
