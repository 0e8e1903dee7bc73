// self_attention(X) = softmax(X X^T) X per example (opcodes attention, attention_vjp,
// attention_jvp: core/build.hpp; CPU kernels/cpu/attention.hpp; reference backend from the
// formulas), against naive float64 loops written from the spec (layers-trans-seq-multitask-nas.md
// 1.1: S = X X^T, A = softmax over the last axis, X' = A X), on the CPU and reference backends, in
// float64 and float32, at batches 1, 5 and 70 (across tiles):
//   - forward for N = 1, 7, 39, 130 (one row, fewer rows than a query block, N not a multiple of
//     the SIMD width, several key blocks) and K not a multiple of it; against the composed form
//     einsum(softmax(einsum)) built from DSL primitives;
//   - one row is the identity; large logits (the online softmax's running max moves between key
//     blocks) stay finite;
//   - the gradient against the closed form dS X + dS^T X + A^T dO, the JVP against
//     dA X + A dX;
//   - float64 central differences, JVP and duality (tests/support.hpp), also through operands
//     the builders must store first (a random leaf, an unbatched tangent or cotangent);
//   - the plans: no per-example value of N x N in the forward, gradient or JVP plan (the
//     composed form has them), one step per layer.
#include "support.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ctrec/layers/autoint.hpp"

using ctrec::expr;
using ctrec::opcode;
using test::leaf_value;
using test::leaves;
using vec = std::vector<double>;

namespace {

// ---- naive float64 references (one example, row-major) ---------------------------------------
// S = X X^T, A = max-subtracted row softmax of S, O = A X.
struct ref_one {
    vec A, O;
};
ref_one reference_one(const double* X, std::size_t n, std::size_t k) {
    ref_one r{vec(n * n), vec(n * k, 0.0)};
    for (std::size_t i = 0; i < n; ++i) {
        vec s(n, 0.0);
        for (std::size_t j = 0; j < n; ++j)
            for (std::size_t c = 0; c < k; ++c) s[j] += X[i * k + c] * X[j * k + c];
        const double m = *std::max_element(s.begin(), s.end());
        double z = 0;
        for (std::size_t j = 0; j < n; ++j) z += std::exp(s[j] - m);
        for (std::size_t j = 0; j < n; ++j) r.A[i * n + j] = std::exp(s[j] - m) / z;
    }
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j)
            for (std::size_t c = 0; c < k; ++c) r.O[i * k + c] += r.A[i * n + j] * X[j * k + c];
    return r;
}
vec naive_forward(const vec& x, std::size_t batch, std::size_t n, std::size_t k) {
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        const vec o = reference_one(x.data() + b * n * k, n, k).O;
        out.insert(out.end(), o.begin(), o.end());
    }
    return out;
}
// dX = dS X + dS^T X + A^T G, dS = A * (G X^T - rowsum(G * O)) (G: the output's cotangent)
vec naive_grad(const vec& x, const vec& g, std::size_t batch, std::size_t n, std::size_t k) {
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        const double* X = x.data() + b * n * k;
        const double* G = g.data() + b * n * k;
        const ref_one r = reference_one(X, n, k);
        vec dS(n * n), dX(n * k, 0.0);
        for (std::size_t i = 0; i < n; ++i) {
            double d = 0;
            for (std::size_t c = 0; c < k; ++c) d += G[i * k + c] * r.O[i * k + c];
            for (std::size_t j = 0; j < n; ++j) {
                double dp = 0;
                for (std::size_t c = 0; c < k; ++c) dp += G[i * k + c] * X[j * k + c];
                dS[i * n + j] = r.A[i * n + j] * (dp - d);
            }
        }
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < n; ++j)
                for (std::size_t c = 0; c < k; ++c)
                    dX[i * k + c] += dS[i * n + j] * X[j * k + c] + dS[j * n + i] * X[j * k + c] + r.A[j * n + i] * G[j * k + c];
        out.insert(out.end(), dX.begin(), dX.end());
    }
    return out;
}
// dO = dA X + A T, dA = A * (dS - rowsum(A * dS)), dS = T X^T + X T^T (T: the input's tangent)
vec naive_jvp(const vec& x, const vec& t, std::size_t batch, std::size_t n, std::size_t k) {
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        const double* X = x.data() + b * n * k;
        const double* T = t.data() + b * n * k;
        const ref_one r = reference_one(X, n, k);
        vec dA(n * n), dO(n * k, 0.0);
        for (std::size_t i = 0; i < n; ++i) {
            double rs = 0;
            for (std::size_t j = 0; j < n; ++j) {
                double ds = 0;
                for (std::size_t c = 0; c < k; ++c) ds += T[i * k + c] * X[j * k + c] + X[i * k + c] * T[j * k + c];
                dA[i * n + j] = ds;
                rs += r.A[i * n + j] * ds;
            }
            for (std::size_t j = 0; j < n; ++j) dA[i * n + j] = r.A[i * n + j] * (dA[i * n + j] - rs);
        }
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < n; ++j)
                for (std::size_t c = 0; c < k; ++c) dO[i * k + c] += dA[i * n + j] * X[j * k + c] + r.A[i * n + j] * T[j * k + c];
        out.insert(out.end(), dO.begin(), dO.end());
    }
    return out;
}

// x filled with scale * leaf_value (or a custom fill), then O from the naive loops
using fill_fn = double (*)(std::size_t);
double unit(std::size_t i) { return leaf_value("x", i); }
double big(std::size_t i) { return 8.0 * leaf_value("x", i); }  // logits up to ~5e2
// rows grow with their index: the maximum of every row is in the last key block
double ramp(std::size_t i) { return 0.02 * double(i % (130 * 8) / 8) + 0.1 * leaf_value("x", i); }

template <class P>
std::size_t largest_batched() {
    std::size_t m = 0;
    for (std::size_t i = 0; i < P::size; ++i)
        if (P::tab.nodes[i].batched) m = std::max(m, P::tab.nodes[i].shape.size());
    return m;
}
template <class P>
std::size_t steps_of(opcode o) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < P::size; ++i) n += P::pl.step[i] && P::tab.nodes[i].op == o;
    return n;
}
template <class P>
using ref_backend = typename P::template with_backend<ctrec::reference_backend>;

template <std::size_t N, std::size_t K>
struct att_case {
    static constexpr expr x = ctrec::input<"x", N, K>;
    static constexpr expr y = ctrec::self_attention(x);
    // the composed form, from DSL primitives (what layers/autoint.hpp built before)
    static constexpr expr u = ctrec::einsum("ij,jk->ik", ctrec::softmax(ctrec::einsum("ik,jk->ij", x, x), 1), x);

    static auto reference(fill_fn f) {
        return [f](leaves& L, std::size_t batch, bool prepare) -> vec {
            vec& xv = L["x"];
            if (prepare) {
                xv.resize(batch * N * K);
                for (std::size_t e = 0; e < xv.size(); ++e) xv[e] = f(e);
                return {};
            }
            return naive_forward(xv, batch, N, K);
        };
    }
    // both backends, float64 (tol64) and float32 (1e-5), batches 1, 5, 70; the composed form
    static void check_values(double tol64 = 1e-12) {
        test::check_forward_all<y>(tol64, reference(unit));
        for (std::size_t batch : {1, 5, 70}) {
            leaves L;
            INFO("composed form, batch " << batch);
            const vec got = test::forward<ctrec::program<double, u>>(L, batch);
            CHECK(test::max_rel_diff(got, naive_forward(L["x"], batch, N, K)) <= 1e-12);
        }
    }
    // outputs 0 (O) and grad<"x"> of the gradient program against the closed form, CPU and
    // reference backends; float32 on the CPU
    static void check_gradient(std::size_t batch) {
        using G = ctrec::grad_program<double, y>;
        using Gf = ctrec::grad_program<float, y>;
        leaves L;
        const auto cpu = test::run<G>(L, batch);
        const auto ref = test::run<ref_backend<G>>(L, batch);
        const vec want = naive_grad(L["x"], L["cotangent"], batch, N, K);
        INFO("batch " << batch);
        CHECK(test::max_rel_diff(cpu[0], naive_forward(L["x"], batch, N, K)) <= 1e-12);
        CHECK(test::max_rel_diff(cpu[G::template grad<"x">], want) <= 1e-11);
        CHECK(test::max_rel_diff(ref[G::template grad<"x">], want) <= 1e-11);
        CHECK(test::max_rel_diff(test::run<Gf>(L, batch)[Gf::template grad<"x">], want) <= 1e-4);
    }
    static void check_jvp(std::size_t batch) {
        using J = ctrec::jvp_program<double, y>;
        using Jf = ctrec::jvp_program<float, y>;
        leaves L;
        const auto cpu = test::run<J>(L, batch);
        const auto ref = test::run<ref_backend<J>>(L, batch);
        const vec want = naive_jvp(L["x"], L["d.x"], batch, N, K);
        INFO("batch " << batch);
        CHECK(test::max_rel_diff(cpu[1], want) <= 1e-11);
        CHECK(test::max_rel_diff(ref[1], want) <= 1e-11);
        CHECK(test::max_rel_diff(test::run<Jf>(L, batch)[1], want) <= 1e-4);
    }
    static void check_ad(std::size_t batch) {
        test::check_derivatives<ctrec::grad_program<double, y>, ctrec::jvp_program<double, y>>(batch);
    }
};

// operands the builders have to give a buffer first: a random leaf (no storage), a computed
// operand read twice, an unbatched tangent / cotangent (a (K) bias, a loss summed over the batch)
constexpr expr xr = ctrec::input<"x", 9, 6>;
constexpr expr h = ctrec::tanh(xr);
constexpr expr twice = ctrec::self_attention(h) * h;
constexpr expr of_random = ctrec::self_attention(ctrec::random_uniform<"r", 9, 6>) + xr;
constexpr expr random_plus_bias = ctrec::self_attention(ctrec::random_uniform<"r", 9, 6> + ctrec::param<"b", 6>);
constexpr expr loss = ctrec::batch_sum(ctrec::sum(ctrec::self_attention(xr) * ctrec::self_attention(xr)));
constexpr expr two_layers = ctrec::self_attention(ctrec::self_attention(xr));

// AutoInt's W3 size, three layers (bench/bench_w3_autoint.cpp)
constexpr auto w3 = ctrec::layers::autoint<"auto_int", {.layer_num = 3}>(ctrec::input<"x", 39, 16>);
constexpr auto w3_y = w3.out();

} // namespace

TEST_CASE("self_attention: forward against naive loops and the composed form (float64, float32, both backends)") {
    att_case<1, 4>::check_values();    // one row: A = 1, O = X
    att_case<7, 5>::check_values();    // fewer rows than two query blocks, K a SIMD tail
    att_case<39, 16>::check_values();  // AutoInt's W3 size: N not a multiple of the width
    att_case<130, 8>::check_values();  // several key blocks: the online softmax rescales
    att_case<33, 19>::check_values();  // K = a vector plus a tail
    att_case<20, 16>::check_values();  // a key block of two vectors (float), one and a half (double)
}

TEST_CASE("self_attention: one row is the identity; the output differs per example") {
    using C = att_case<1, 4>;
    for (std::size_t batch : {1, 3}) {
        leaves L;
        const vec cpu = test::forward<ctrec::program<double, C::y>>(L, batch);
        const vec ref = test::forward<ref_backend<ctrec::program<double, C::y>>>(L, batch);
        CHECK(cpu == L["x"]);
        CHECK(ref == L["x"]);
    }
    leaves L;
    const vec o = test::forward<ctrec::program<double, att_case<7, 5>::y>>(L, 2);
    double d = 0;
    for (std::size_t i = 0; i < 35; ++i) d = std::max(d, std::abs(o[i] - o[35 + i]));
    CHECK(d > 1e-3);
}

TEST_CASE("self_attention: large logits (online max across key blocks) stay finite and correct") {
    // scores up to ~5e2: exp would overflow float without the running max, and with 130 keys
    // the maximum of a row moves between key blocks
    using C = att_case<130, 8>;
    for (std::size_t batch : {1, 5}) {
        test::check_forward<ctrec::program<double, C::y>>(batch, 1e-9, C::reference(big));
        test::check_forward<ctrec::program<float, C::y>>(batch, 2e-3, C::reference(big));  // float logits of ~5e2: ~5e-5 absolute error
        test::check_forward<ctrec::program<double, C::y>>(batch, 1e-10, C::reference(ramp));
        test::check_forward<ctrec::program<float, C::y>>(batch, 1e-4, C::reference(ramp));
        leaves L;
        C::reference(big)(L, batch, true);
        for (double v : test::forward<ctrec::program<float, C::y>>(L, batch)) REQUIRE(std::isfinite(v));
    }
}

TEST_CASE("self_attention: the gradient equals the closed form dS X + dS^T X + A^T dO; the JVP dA X + A dX") {
    att_case<7, 5>::check_gradient(3);
    att_case<39, 16>::check_gradient(70);
    att_case<130, 8>::check_gradient(2);
    att_case<20, 16>::check_gradient(5);
    att_case<1, 4>::check_gradient(1);
    att_case<7, 5>::check_jvp(3);
    att_case<39, 16>::check_jvp(70);
    att_case<130, 8>::check_jvp(2);
    att_case<20, 16>::check_jvp(5);
}

TEST_CASE("self_attention: float64 finite differences, JVP and duality") {
    att_case<1, 4>::check_ad(2);
    att_case<7, 5>::check_ad(2);
    att_case<39, 16>::check_ad(1);
    att_case<130, 3>::check_ad(1);
    // a computed operand (the kernels read its buffer) used twice; two layers
    test::check_derivatives<ctrec::grad_program<double, twice>, ctrec::jvp_program<double, twice>>(2);
    test::check_derivatives<ctrec::grad_program<double, two_layers>, ctrec::jvp_program<double, two_layers>>(2);
    // an unbatched (K) tangent / batch-summed cotangent, broadcast to a per-example buffer
    test::check_derivatives<ctrec::grad_program<double, random_plus_bias>, ctrec::jvp_program<double, random_plus_bias>>(3);
    // an unbatched scalar loss: the cotangent reaching the nodes is an unbatched constant fill
    test::check_derivatives<ctrec::grad_program<double, loss>, ctrec::jvp_program<double, loss>>(3);
}

TEST_CASE("self_attention: operands without a buffer of their own; CPU against the reference backend") {
    for (std::size_t batch : {1, 5, 70}) {
        test::check_backends<ctrec::program<double, of_random>>(batch, 1e-12);
        test::check_backends<ctrec::program<float, of_random>>(batch, 1e-5);
        test::check_backends<ctrec::grad_program<double, random_plus_bias>>(batch, 1e-11);
        test::check_backends<ctrec::jvp_program<double, random_plus_bias>>(batch, 1e-11);
        test::check_backends<ctrec::grad_program<double, loss>>(batch, 1e-11);
        test::check_backends<ctrec::jvp_program<double, loss>>(batch, 1e-11);
    }
}

TEST_CASE("self_attention: no per-example value of N x N in the forward, gradient or JVP plan") {
    using C = att_case<39, 16>;
    using F = ctrec::program<float, C::y>;
    using G = ctrec::grad_program<float, C::y>;
    using J = ctrec::jvp_program<float, C::y>;
    using UF = ctrec::program<float, C::u>;
    constexpr std::size_t NN = 39 * 39;
    CHECK(largest_batched<F>() < NN);
    CHECK(largest_batched<G>() < NN);
    CHECK(largest_batched<J>() < NN);
    CHECK(largest_batched<UF>() >= NN);  // the composed form does have them (the check can fail)
    CHECK(steps_of<F>(opcode::attention) == 1);
    CHECK(F::pl.steps == 1);
    CHECK(F::pl.tile_elems == 0);  // input to output, no workspace
    CHECK(steps_of<G>(opcode::attention) == 1);
    CHECK(steps_of<G>(opcode::attention_vjp) == 1);
    CHECK(steps_of<J>(opcode::attention_jvp) == 1);
    CHECK(G::pl.tile_elems == 0);  // O and dX are the outputs
    // AutoInt, three layers: one step per layer and derivative, only (N, K) activations
    using WF = ctrec::program<float, w3_y>;
    using WG = ctrec::grad_program<float, w3_y>;
    using WJ = ctrec::jvp_program<float, w3_y>;
    CHECK(largest_batched<WF>() < NN);
    CHECK(largest_batched<WG>() < NN);
    CHECK(largest_batched<WJ>() < NN);
    CHECK(steps_of<WF>(opcode::attention) == 3);
    CHECK(steps_of<WG>(opcode::attention_vjp) == 3);
    CHECK(steps_of<WJ>(opcode::attention_jvp) == 3);
    CHECK(WF::pl.tile_elems <= 2 * 39 * 16);  // the two inner activations
}
