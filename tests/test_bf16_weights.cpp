// cpu_bf16_backend (kernels/cpu/bf16.hpp): weights that contractions read are rounded to
// bfloat16 by prepare(), and batch-1 GEMVs stream the bf16 copy. Checked here:
// - exactly the float32 program on weights rounded by an independent encoder (io/half.hpp),
//   bit for bit, at batch 1 (the bf16 GEMV) and at larger batches (the float32 GEMMs);
// - which parameters are rounded (contraction operands) and which are not (biases);
// - derived weights (weight norm, MMoE's stacked experts, deeper layers batched over experts:
//   the GEMV's outer loop walks the bf16 copy) are rounded after they are computed, and every
//   example's result is the same bits whatever the batch;
// - the parameters keep the values as set; scoring needs prepare(); the distance to float32 is
//   that of bf16 weights;
// - a ranking model (DIN on a shared sequence, mixed DCN, BatchNorm tower): which weights round,
//   and every example's bits the same alone and in any batch.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/io/half.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;

namespace {

// widths with SIMD tails (37, 19) and a one-column last layer (no vector kernel)
constexpr auto x = f::input<"x", 37>;
constexpr auto plain = f::sigmoid(
    fl::mlp<"m", fl::mlp_config<3>{.output_dims = {40, 19, 1}, .use_weight_norm = false}, fl::mode::predict>(x).out());
constexpr auto normed = fl::mlp<"m", fl::mlp_config<3>{.output_dims = {40, 19, 1}}, fl::mode::predict>(x).out();
// two tasks over three experts [24, 16]: stacked first layers (with the gate) and the deeper
// layers as one contraction batched over the experts
constexpr fl::mmoe_config moe_cfg{.num_tasks = 2,
                                  .expert_output_dims = {24, 16},
                                  .expert_activations = fl::act_relu,
                                  .num_experts = 3,
                                  .use_weight_norm = false,
                                  .batch_deeper_layers = true};
constexpr auto moe = fl::mmoe<"e", moe_cfg, fl::mode::predict>(f::input<"x", 37>).out();

// a small ranking model: DIN over a shared behaviour sequence (one user, the batch its
// candidates), mixed DCN with low-rank experts, an MLP tower with BatchNorm (predict)
constexpr fl::result ranking_model() {
    fl::result m;
    f::val fields = m.input("fields", f::make_dims<6, 8>());
    f::val q = m.input("q", f::make_dims<8>()), seq = m.shared_input("seq", f::make_dims<10, 8>());
    f::val att = fl::din(m, "din", fl::din_config<2>{.hidden_units = {12, 1}, .activation = fl::act_relu}, q, seq);
    f::val feats = f::concat(0, {f::reshape(fields, f::make_dims<6 * 8>()), att});
    f::val cross = fl::dcn(m, "dcn", {.type = fl::dcn_type::mixed, .layer_num = 2, .num_experts = 2, .low_rank = 4}, fl::mode::predict, feats);
    m.set_out(fl::mlp(m, "tower", fl::mlp_config<2>{.output_dims = {16, 1}, .enable_batch_normalization = true}, fl::mode::predict, cross));
    return m;
}
constexpr auto ranking = ranking_model();
constexpr auto ranking_y = f::sigmoid(ranking.out());

template <class P>
void fill(typename P::parameters& p, double salt) {
    for (std::size_t i = 0; i < P::n_params; ++i) {
        auto s = p.get(i);
        for (std::size_t k = 0; k < s.size(); ++k)
            s[k] = static_cast<float>(0.4 * std::sin(0.731 * static_cast<double>(k) + 1.3 * static_cast<double>(i) + salt) + 1e-3 * static_cast<double>(k % 7));
    }
}
std::vector<float> features(std::size_t batch, std::size_t width) {
    std::vector<float> v(batch * width);
    for (std::size_t k = 0; k < v.size(); ++k) v[k] = static_cast<float>(std::cos(0.113 * static_cast<double>(k)));
    return v;
}
template <class P>
std::vector<float> score(const typename P::parameters& p, const std::vector<float>& in, std::size_t batch) {
    typename P::workspace ws;
    std::vector<float> out(batch * P::template output_size<0>);
    typename P::io io;
    io.template input<"x">(in.data()).template output<0>(out.data());
    P::run(p, ws, batch, io);
    return out;
}
float round_bf16(float v) { return static_cast<float>(f::half::bf16_to_double(f::half::bf16_from_double(v))); }

constexpr std::size_t batches[] = {1, 2, 5, 64, 131};  // 131: three tiles

} // namespace

TEST_CASE("bf16 weights: exactly the float32 program on rounded kernels, at batch 1 and in batches") {
    using P = f::program<float, plain>;
    using H = P::with_backend<f::cpu_bf16_backend>;
    H::parameters h;
    P::parameters rounded;
    fill<H>(h, 0.0);
    fill<P>(rounded, 0.0);
    std::size_t n_rounded = 0;
    for (std::size_t i = 0; i < P::n_params; ++i) {
        const std::string name(P::parameters::names[i]);
        const bool kernel = name.ends_with("/kernel");
        CHECK_MESSAGE(f::cpu_bf16_backend::rounds<P>(name) == kernel, name);  // kernels yes, biases no
        if (kernel) {
            ++n_rounded;
            for (float& v : rounded.get(i)) v = round_bf16(v);
        }
    }
    CHECK(n_rounded == 3);
    CHECK(!f::cpu_bf16_backend::rounds<P>("no/such"));
    // bound but not prepared: a clear error, not float32 weights read as stale bf16
    {
        const auto in = features(1, 37);
        CHECK_THROWS_AS(score<H>(h, in, 1), f::error);
    }
    h.prepare();
    rounded.prepare();
    P::parameters exact;
    fill<P>(exact, 0.0);
    exact.prepare();
    for (std::size_t batch : batches) {
        INFO("batch " << batch);
        const auto in = features(batch, 37);
        const auto got = score<H>(h, in, batch), want = score<P>(rounded, in, batch), f32 = score<P>(exact, in, batch);
        std::size_t same = 0, differs_from_f32 = 0;
        for (std::size_t e = 0; e < batch; ++e) same += got[e] == want[e], differs_from_f32 += got[e] != f32[e];
        CHECK(same == batch);
        CHECK(differs_from_f32 > 0);  // the rounding happened
    }
    // the parameters keep the values as set
    H::parameters again;
    fill<H>(again, 0.0);
    for (std::size_t i = 0; i < H::n_params; ++i)
        for (std::size_t k = 0; k < again.get(i).size(); ++k) REQUIRE(static_cast<const H::parameters&>(h).get(i)[k] == again.get(i)[k]);
}

TEST_CASE("bf16 weights: derived kernels (weight norm, MMoE's stacked and batched experts); batch invariance; distance") {
    auto check = [](auto tag, std::size_t width, double tol) {
        using P = typename decltype(tag)::type;
        using H = typename P::template with_backend<f::cpu_bf16_backend>;
        typename H::parameters h;
        typename P::parameters p;
        fill<H>(h, 0.5);
        fill<P>(p, 0.5);
        h.prepare();
        p.prepare();
        constexpr std::size_t out = P::template output_size<0>;
        const auto in = features(131, width);
        const auto all = score<H>(h, in, 131);
        const auto f32 = score<P>(p, in, 131);
        double worst = 0, scale = 0;
        for (std::size_t k = 0; k < all.size(); ++k)
            worst = std::max(worst, std::abs(double(all[k]) - f32[k])), scale = std::max(scale, std::abs(double(f32[k])));
        CHECK(worst > 0);              // rounded
        CHECK(worst <= tol * scale);   // by about bf16's precision
        for (std::size_t batch : batches) {
            INFO("batch " << batch);
            const auto got = score<H>(h, std::vector<float>(in.begin(), in.begin() + batch * width), batch);
            std::size_t same = 0;
            for (std::size_t k = 0; k < batch * out; ++k) same += got[k] == all[k];
            CHECK(same == batch * out);  // the bf16 GEMV (batch 1) and the float32 GEMMs agree bit for bit
        }
    };
    check(std::type_identity<f::program<float, normed>>{}, 37, 2e-2);
    check(std::type_identity<f::program<float, moe>>{}, 37, 2e-2);
    // which weights are rounded: MMoE's kernels (expert layers, gates; through the stacked
    // derived kernels), weight norm's kernels and norms (through the normalised kernels); no bias
    auto rounded_are_all_but_biases = [](auto tag) {
        using P = typename decltype(tag)::type;
        std::size_t n = 0;
        for (std::size_t i = 0; i < P::n_params; ++i) {
            const std::string name(P::parameters::names[i]);
            const bool bias = name.find("bias") != std::string::npos;
            n += !bias;
            CHECK_MESSAGE(f::cpu_bf16_backend::rounds<P>(name) == !bias, name);
        }
        return n;
    };
    CHECK(rounded_are_all_but_biases(std::type_identity<f::program<float, moe>>{}) == 3 * 2 + 1);
    CHECK(rounded_are_all_but_biases(std::type_identity<f::program<float, normed>>{}) == 3 * 2);
}

TEST_CASE("bf16 weights: rounding to nearest even, NaN and overflow") {
    using f::cpu::bf16_round;
    for (float v : {0.0f, -0.0f, 1.0f, 1.00390625f, 1.01171875f, 3.14159265f, -2.5e-3f, 1e-40f, 3.3e38f, -3.39e38f}) {
        INFO(v);
        CHECK(bf16_round(v) == f::half::bf16_from_double(v));
    }
    CHECK(bf16_round(1.00390625f) == 0x3f80);  // a tie: to the even 1.0
    CHECK(bf16_round(1.01171875f) == 0x3f82);  // a tie: to the even 1.015625
    CHECK(std::isinf(f::cpu::bf16_float(bf16_round(3.4e38f))));
    CHECK(std::isnan(f::cpu::bf16_float(bf16_round(std::nanf("")))));
    CHECK(std::isnan(f::cpu::bf16_float(bf16_round(std::bit_cast<float>(0x7f800001u)))));  // a NaN whose top half is inf
}

TEST_CASE("bf16 weights: the one-row GEMV on bf16 against the float32 GEMM on the rounded values, bit for bit") {
    // every column path (vectors, scalar tails), k remainders, a padded row stride, and
    // accumulation into C
    for (std::size_t N : {1, 5, 16, 17, 31, 32, 33, 47, 64, 70, 129, 2072})
        for (std::size_t K : {1, 3, 4, 5, 9})
            for (bool acc : {false, true}) {
                const std::size_t ld = N + 3;
                std::vector<float> A(K), Bf(K * ld), C1(N), C2(N);
                std::vector<std::byte> Bh(2 * K * ld + 64);
                for (std::size_t k = 0; k < K; ++k) A[k] = static_cast<float>(std::sin(1.7 * static_cast<double>(k) + 0.2));
                f::cpu::bf16_round_into(features(1, K * ld).data(), K * ld, Bf.data(), Bh.data());
                for (std::size_t n = 0; n < N; ++n) C1[n] = C2[n] = static_cast<float>(std::cos(0.3 * static_cast<double>(n)));
                const f::cpu::gemm_args g{1, N, K, 0, 1, static_cast<std::ptrdiff_t>(ld), 1, 0, 1};
                f::cpu::gemm_bf16_b(A.data(), Bf.data(), Bh.data(), C1.data(), g, acc);
                f::cpu::gemm(A.data(), Bf.data(), C2.data(), g, acc);
                std::size_t same = 0;
                for (std::size_t n = 0; n < N; ++n) same += C1[n] == C2[n];
                INFO("N " << N << " K " << K << " acc " << acc);
                CHECK(same == N);
            }
}

TEST_CASE("bf16 weights: a ranking model (DIN on a shared sequence, mixed DCN, BatchNorm tower)") {
    using P = f::program<float, ranking_y>;
    using H = P::with_backend<f::cpu_bf16_backend>;
    H::parameters h;
    P::parameters p;
    fill<H>(h, 0.25);
    fill<P>(p, 0.25);
    for (std::size_t i = 0; i < P::n_params; ++i) {  // BatchNorm variances must be positive
        const std::string name(P::parameters::names[i]);
        if (!name.ends_with("moving_variance")) continue;
        for (std::size_t k = 0; k < h.get(i).size(); ++k) h.get(i)[k] = p.get(i)[k] = 1.0f + std::abs(p.get(i)[k]);
    }
    h.prepare();
    p.prepare();
    std::size_t n_rounded = 0;
    // DIN's MLP, DCN's low-rank factors U, V, C and gates G, the tower's kernels (with their
    // weight-norm scales); not the biases or BatchNorm's statistics and affine terms
    for (std::size_t i = 0; i < P::n_params; ++i) {
        const std::string name(P::parameters::names[i]);
        const bool weight = name.ends_with("kernel") || name.ends_with("kernel_norm") || name.starts_with("dcn/U_") ||
                            name.starts_with("dcn/V_") || name.starts_with("dcn/C_") || name.starts_with("dcn/G_");
        n_rounded += weight;
        CHECK_MESSAGE(f::cpu_bf16_backend::rounds<P>(name) == weight, name);
    }
    CHECK(n_rounded == 24);
    const std::size_t n = 131;
    const auto fields = features(n, 48), q = features(n, 8), seq = features(1, 80);
    auto run = [&](auto& params, auto tag, std::size_t b0, std::size_t batch) {
        using Q = typename decltype(tag)::type;
        typename Q::workspace ws;
        std::vector<float> y(batch);
        typename Q::io io;
        io.template input<"fields">(fields.data() + b0 * 48).template input<"q">(q.data() + b0 * 8).template input<"seq">(seq.data());
        io.template output<0>(y.data());
        Q::run(std::as_const(params), ws, batch, io);
        return y;
    };
    const auto all = run(h, std::type_identity<H>{}, 0, n);
    const auto f32 = run(p, std::type_identity<P>{}, 0, n);
    double worst = 0;
    for (std::size_t e = 0; e < n; ++e) worst = std::max(worst, std::abs(double(all[e]) - f32[e]));
    CHECK(worst > 0);
    CHECK(worst < 2e-2);  // probabilities
    // each example alone (the bf16 GEMVs) and in other batches: the same bits
    std::size_t same = 0;
    for (std::size_t e = 0; e < n; e += 5) same += run(h, std::type_identity<H>{}, e, 1)[0] == all[e];
    CHECK(same == (n + 4) / 5);
    const auto mid = run(h, std::type_identity<H>{}, 40, 70);
    same = 0;
    for (std::size_t e = 0; e < 70; ++e) same += mid[e] == all[40 + e];
    CHECK(same == 70);
}
