// self_attention(X) = softmax(X X^T) X per example (core/attention.hpp, kernels/cpu/attention.hpp):
// forward against naive loops in float64 and float32 for N = 1, 7, 39, 130 (one row, fewer
// rows than a query block, N not a multiple of the SIMD width, several key blocks) and K not
// a multiple of it; against the unfused DSL form; large logits (the online softmax rescales
// across key blocks); the gradient against the closed form dS X + dS^T X + A^T dO; float64
// finite differences, JVP and duality; and the plans: no per-example value of N x N or more.
#include "support.hpp"

using namespace ctrec;
using test::leaf_value;

namespace {
using mat = std::vector<double>;  // row-major

// One example: S = X X^T, A = max-subtracted row softmax of S, O = A X.
struct ref_one {
    mat A, O;
};
ref_one reference_one(const mat& X, std::size_t n, std::size_t k) {
    ref_one r{mat(n * n), mat(n * k, 0.0)};
    for (std::size_t i = 0; i < n; ++i) {
        std::vector<double> s(n);
        for (std::size_t j = 0; j < n; ++j) {
            s[j] = 0;
            for (std::size_t c = 0; c < k; ++c) s[j] += X[i * k + c] * X[j * k + c];
        }
        double m = s[0], z = 0;
        for (std::size_t j = 1; j < n; ++j) m = std::max(m, s[j]);
        for (std::size_t j = 0; j < n; ++j) z += std::exp(s[j] - m);
        for (std::size_t j = 0; j < n; ++j) r.A[i * n + j] = std::exp(s[j] - m) / z;
    }
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j)
            for (std::size_t c = 0; c < k; ++c) r.O[i * k + c] += r.A[i * n + j] * X[j * k + c];
    return r;
}
mat example(std::size_t b, std::size_t n, std::size_t k, test::value_fn f) {
    mat X(n * k);
    for (std::size_t i = 0; i < n * k; ++i) X[i] = f("x", b * n * k + i);
    return X;
}

template <std::size_t N, std::size_t K>
struct att_case {
    static constexpr auto x = input<"x", N, K>;
    using E = std::remove_cvref_t<decltype(self_attention(x))>;
    // the unfused form, from DSL primitives
    using U = std::remove_cvref_t<decltype(einsum<"ij,jk->ik">(softmax<1>(einsum<"ik,jk->ij">(x, x)), x))>;

    static std::vector<double> reference(std::size_t batch, test::value_fn f = leaf_value) {
        std::vector<double> out;
        for (std::size_t b = 0; b < batch; ++b) {
            auto o = reference_one(example(b, N, K, f), N, K).O;
            out.insert(out.end(), o.begin(), o.end());
        }
        return out;
    }
    // dX = dS X + dS^T X + A^T G with dS = A (G X^T - rowsum(G O)), G = the "cotangent" input
    static std::vector<double> reference_grad(std::size_t batch) {
        std::vector<double> out;
        for (std::size_t b = 0; b < batch; ++b) {
            mat X = example(b, N, K, leaf_value), G(N * K), dX(N * K, 0.0), dS(N * N);
            for (std::size_t i = 0; i < N * K; ++i) G[i] = leaf_value("cotangent", b * N * K + i);
            auto r = reference_one(X, N, K);
            for (std::size_t i = 0; i < N; ++i) {
                double d = 0;
                for (std::size_t c = 0; c < K; ++c) d += G[i * K + c] * r.O[i * K + c];
                for (std::size_t j = 0; j < N; ++j) {
                    double dp = 0;
                    for (std::size_t c = 0; c < K; ++c) dp += G[i * K + c] * X[j * K + c];
                    dS[i * N + j] = r.A[i * N + j] * (dp - d);
                }
            }
            for (std::size_t i = 0; i < N; ++i)
                for (std::size_t j = 0; j < N; ++j)
                    for (std::size_t c = 0; c < K; ++c)
                        dX[i * K + c] += dS[i * N + j] * X[j * K + c] + dS[j * N + i] * X[j * K + c] +
                                         r.A[j * N + i] * G[j * K + c];
            out.insert(out.end(), dX.begin(), dX.end());
        }
        return out;
    }
    static void check_values(std::size_t batch) {
        const auto want = reference(batch);
        test::check_forward<E>(batch, want);
        test::check_close(test::run<double, U>(batch), want, 1e-12);  // the reference is the unfused layer's
    }
    static void check_gradient(std::size_t batch) {
        using G = grad_program<double, E>;
        auto outs = test::run_all<G>(batch);
        test::check_close(outs[0], reference(batch), 1e-12);
        test::check_close(outs[G::template grad<"x">], reference_grad(batch), 1e-11);
        using Gf = grad_program<float, E>;
        test::check_close(test::run_all<Gf>(batch)[Gf::template grad<"x">], reference_grad(batch), 1e-4);
    }
};

template <class D>
std::size_t largest_batched(const D& data) {
    std::size_t m = 0;
    for (const auto& r : data.rec)
        if (r.batched) m = std::max(m, r.shape.size());
    return m;
}
template <class D>
std::size_t steps_of_kind(const D& data, kind k) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < std::size(data.rec); ++i) n += data.step[i] && data.rec[i].k == k;
    return n;
}
} // namespace

TEST_CASE("self_attention: forward against naive loops and the unfused form (float64, float32)") {
    att_case<1, 4>::check_values(3);    // one row: A = 1, O = X
    att_case<7, 5>::check_values(3);    // fewer rows than two query blocks, K a SIMD tail
    att_case<39, 16>::check_values(4);  // AutoInt's W3 size: N not a multiple of the width
    att_case<130, 8>::check_values(2);  // several key blocks: the online softmax rescales
    att_case<33, 19>::check_values(2);  // K = a vector plus a tail
    att_case<20, 16>::check_values(3);  // a key block of two vectors (float), one and a half (double)
}

TEST_CASE("self_attention: one row is the identity; the output differs per example") {
    test::check_close(test::run<double, att_case<1, 4>::E>(3), [] {
        std::vector<double> v(12);
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = leaf_value("x", i);
        return v;
    }(), 0.0);
    auto o = test::run<double, att_case<7, 5>::E>(2);
    double d = 0;
    for (std::size_t i = 0; i < 35; ++i) d = std::max(d, std::abs(o[i] - o[35 + i]));
    CHECK(d > 1e-3);
}

TEST_CASE("self_attention: large logits (online max across key blocks) stay finite and correct") {
    // scores up to ~5e2: exp would overflow float without the running max, and with 130 keys
    // the maximum of a row moves between key blocks
    auto big = [](std::string_view n, std::size_t i) { return 8.0 * leaf_value(n, i); };
    using C = att_case<130, 8>;
    const auto want = C::reference(2, big);
    auto d = test::run<double, C::E>(2, big);
    auto f = test::run<float, C::E>(2, big);
    for (float v : f) REQUIRE(std::isfinite(v));
    test::check_close(d, want, 1e-9);
    test::check_close(f, want, 2e-3);  // float32 logits of ~5e2 carry ~5e-5 absolute error
    // increasing rows: the maximum of every row is in the last key block
    auto ramp = [](std::string_view n, std::size_t i) { return n == "x" ? 0.02 * double(i % (130 * 8) / 8) + 0.1 * leaf_value(n, i) : leaf_value(n, i); };
    test::check_close(test::run<double, C::E>(1, ramp), C::reference(1, ramp), 1e-10);
    test::check_close(test::run<float, C::E>(1, ramp), C::reference(1, ramp), 1e-4);
}

TEST_CASE("self_attention: the gradient equals the closed form dS X + dS^T X + A^T dO") {
    att_case<7, 5>::check_gradient(3);
    att_case<39, 16>::check_gradient(2);
    att_case<130, 8>::check_gradient(2);
    att_case<20, 16>::check_gradient(2);
}

TEST_CASE("self_attention: float64 finite differences, JVP and duality") {
    test::check_ad<att_case<1, 4>::E>(2);
    test::check_ad<att_case<7, 5>::E>(2);
    test::check_ad<att_case<39, 16>::E>(1);
    test::check_ad<att_case<130, 3>::E>(1);
    // a computed operand (the kernels read its buffer) used twice
    constexpr auto x = input<"x", 9, 6>;
    constexpr auto h = tanh(x);
    test::check_ad<std::remove_cvref_t<decltype(self_attention(h) * h)>>(2);
}

TEST_CASE("self_attention: no per-example value of N x N in the forward, gradient or JVP plan") {
    using C = att_case<39, 16>;
    using F = program<float, C::E>::plan_type;
    using G = grad_program<float, C::E>::plan_type;
    using J = jvp_program<float, C::E>::plan_type;
    using UF = program<float, C::U>::plan_type;
    INFO("gradient plan:\n" << G::describe());
    constexpr std::size_t NN = 39 * 39;
    CHECK(largest_batched(F::data) < NN);
    CHECK(largest_batched(G::data) < NN);
    CHECK(largest_batched(J::data) < NN);
    CHECK(largest_batched(UF::data) >= NN);  // the unfused form does store them (the test can fail)
    CHECK(steps_of_kind(F::data, kind::attention) == 1);
    CHECK(F::steps == 1);
    CHECK(steps_of_kind(G::data, kind::attention_vjp) == 1);
    CHECK(steps_of_kind(J::data, kind::attention_jvp) == 1);
    CHECK(F::data.tile_elems == 0);  // input to output, no workspace
}
