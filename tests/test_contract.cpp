// Contractions: every GEMM path (vector along N, dot products along K, scalar
// fallback, per-example groups, batch as M / as K), fused epilogues, against
// naive loops; derivatives of both operands.
#include "support.hpp"

using namespace ctrec;
using test::leaf_value;

namespace {
// y[b, n] = sum_k x[b, k] W[k, n] (+ c[n]) via matmul, for several K, N and batch sizes
template <std::size_t K, std::size_t N>
void vec_mat(std::size_t batch) {
    constexpr auto x = input<"x", K>;
    constexpr auto W = param<"W", K, N>;
    using E = std::remove_cvref_t<decltype(matmul(x, W))>;
    std::vector<double> want(batch * N);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t n = 0; n < N; ++n) {
            double s = 0;
            for (std::size_t k = 0; k < K; ++k) s += leaf_value("x", b * K + k) * leaf_value("W", k * N + n);
            want[b * N + n] = s;
        }
    test::check_close(test::run<double, E>(batch), want, 1e-12);
    // float rounding grows with the length of the sum (~sqrt(K) ulps)
    test::check_close(test::run<float, E>(batch), want, K > 256 ? 4e-5 : 1e-5);
}
} // namespace

TEST_CASE("matmul (K) x (K, N) over many shapes and batch sizes") {
    for (std::size_t batch : {1, 2, 5, 7, 13, 64, 70, 131}) {
        CAPTURE(batch);
        vec_mat<7, 5>(batch);     // below one SIMD vector: dot / scalar paths
        vec_mat<33, 40>(batch);   // vector blocks plus a column tail
        vec_mat<64, 1>(batch);    // N = 1: dot products
        vec_mat<20, 129>(batch);  // several register blocks plus a one-column tail
        vec_mat<1030, 21>(batch); // K too deep for the packed tail panel: scalar tail
    }
    constexpr auto x = input<"x", 9>;
    constexpr auto W = param<"W", 9, 21>;
    test::check_ad<std::remove_cvref_t<decltype(matmul(x, W))>>(5);
}

TEST_CASE("per-example matrices, batched x batched, and general einsum specs") {
    constexpr std::size_t B = 4;
    SUBCASE("(M, K) x (K, N) parameter") {
        constexpr auto X = input<"X", 3, 5>;
        constexpr auto W = param<"W", 5, 18>;
        using E = std::remove_cvref_t<decltype(matmul(X, W))>;
        std::vector<double> want;
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t m = 0; m < 3; ++m)
                for (std::size_t n = 0; n < 18; ++n) {
                    double s = 0;
                    for (std::size_t k = 0; k < 5; ++k) s += leaf_value("X", b * 15 + m * 5 + k) * leaf_value("W", k * 18 + n);
                    want.push_back(s);
                }
        test::check_forward<E>(B, want);
        test::check_ad<E>(B);
    }
    SUBCASE("X . X^T of one batched operand (a value used twice)") {
        constexpr auto X = input<"X", 4, 6>;
        using E = std::remove_cvref_t<decltype(einsum<"ik,jk->ij">(X, X))>;
        std::vector<double> want;
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t i = 0; i < 4; ++i)
                for (std::size_t j = 0; j < 4; ++j) {
                    double s = 0;
                    for (std::size_t k = 0; k < 6; ++k) s += leaf_value("X", b * 24 + i * 6 + k) * leaf_value("X", b * 24 + j * 6 + k);
                    want.push_back(s);
                }
        test::check_forward<E>(B, want);
        test::check_ad<E>(B);
    }
    SUBCASE("batched matmul with a per-example group axis") {
        constexpr auto P = input<"P", 2, 3, 4>;
        constexpr auto Q = input<"Q", 2, 4, 17>;
        using E = std::remove_cvref_t<decltype(matmul(P, Q))>;
        std::vector<double> want;
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t g = 0; g < 2; ++g)
                for (std::size_t i = 0; i < 3; ++i)
                    for (std::size_t j = 0; j < 17; ++j) {
                        double s = 0;
                        for (std::size_t k = 0; k < 4; ++k)
                            s += leaf_value("P", b * 24 + g * 12 + i * 4 + k) * leaf_value("Q", b * 136 + g * 68 + k * 17 + j);
                        want.push_back(s);
                    }
        test::check_forward<E>(B, want);
        test::check_ad<E>(B);
    }
    SUBCASE("transposed operand layout ki,kj->ji and outer products") {
        constexpr auto A = input<"A", 5, 3>;
        constexpr auto W = param<"W", 5, 2>;
        using E = std::remove_cvref_t<decltype(einsum<"ki,kj->ji">(A, W))>;
        std::vector<double> want;
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t j = 0; j < 2; ++j)
                for (std::size_t i = 0; i < 3; ++i) {
                    double s = 0;
                    for (std::size_t k = 0; k < 5; ++k) s += leaf_value("A", b * 15 + k * 3 + i) * leaf_value("W", k * 2 + j);
                    want.push_back(s);
                }
        test::check_forward<E>(B, want);
        test::check_ad<E>(B);
        constexpr auto u = input<"u", 3>;
        constexpr auto v = param<"v", 20>;
        using O = std::remove_cvref_t<decltype(outer(u, v))>;
        std::vector<double> wo;
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t i = 0; i < 3; ++i)
                for (std::size_t j = 0; j < 20; ++j) wo.push_back(leaf_value("u", b * 3 + i) * leaf_value("v", j));
        test::check_forward<O>(B, wo);
        test::check_ad<O>(B);
    }
    SUBCASE("parameter x parameter contraction is hoisted out of the batch loop") {
        constexpr auto x = input<"x", 4>;
        constexpr auto U = param<"U", 4, 3>;
        constexpr auto V = param<"V", 3, 16>;
        using E = std::remove_cvref_t<decltype(matmul(x, matmul(U, V)))>;
        std::vector<double> want;
        for (std::size_t b = 0; b < B; ++b)
            for (std::size_t n = 0; n < 16; ++n) {
                double s = 0;
                for (std::size_t k = 0; k < 4; ++k)
                    for (std::size_t r = 0; r < 3; ++r)
                        s += leaf_value("x", b * 4 + k) * leaf_value("U", k * 3 + r) * leaf_value("V", r * 16 + n);
                want.push_back(s);
            }
        test::check_forward<E>(B, want);
        test::check_ad<E>(B);
        // U.V reads only parameters: computed when they change, not per call or example
        CHECK(program<float, E>::describe().find("[derived: on parameter change]") != std::string::npos);
        CHECK(program<float, E>::plan_type::derived_steps == 1);
    }
}

TEST_CASE("a dense layer with bias and activation fused into the GEMM epilogue") {
    constexpr auto x = input<"x", 24>;
    constexpr auto W = param<"W", 24, 40>;
    constexpr auto b = param<"b", 40>;
    constexpr auto s = input<"s", 40>;
    using E = std::remove_cvref_t<decltype(tanh(matmul(x, W) + b) * s)>;
    for (std::size_t batch : {1, 6, 67}) {
        std::vector<double> want;
        for (std::size_t e = 0; e < batch; ++e)
            for (std::size_t n = 0; n < 40; ++n) {
                double a = leaf_value("b", n);
                for (std::size_t k = 0; k < 24; ++k) a += leaf_value("x", e * 24 + k) * leaf_value("W", k * 40 + n);
                want.push_back(std::tanh(a) * leaf_value("s", e * 40 + n));
            }
        test::check_forward<E>(batch, want);
    }
    test::check_ad<E>(3);
    using M = program<float, E>;
    CHECK(M::plan_type::steps == 1);
}

TEST_CASE("parameter gradient x^T . dy over several tiles: packed A panels, first tile overwrites") {
    // N = 84 columns: full register blocks plus a 4-column tail (float and double), so the packed
    // vec-N path runs with its accumulating tail panel; 150 examples
    // span several tiles, so the batch sum overwrites on the first and adds on the others.
    constexpr auto x = input<"x", 13>;
    constexpr auto W = param<"W", 13, 84>;
    using E = std::remove_cvref_t<decltype(act::relu(matmul(x, W)))>;
    for (std::size_t batch : {std::size_t(1), std::size_t(7), std::size_t(150)}) {
        using G = grad_program<double, E>;
        G::parameters p;
        for (std::size_t i = 0; i < 13 * 84; ++i) p.get<"W">()[i] = leaf_value("W", i);
        G::workspace ws;
        std::vector<double> xs(batch * 13), ct(batch * 84), y(batch * 84), dx(batch * 13), dW(13 * 84, -7.0);
        for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
        for (std::size_t i = 0; i < ct.size(); ++i) ct[i] = leaf_value("ct", i);
        G::io io;
        io.input<"x">(xs.data()).input<"cotangent">(ct.data()).output<0>(y.data());
        io.output<G::grad<"x">>(dx.data()).output<G::grad<"W">>(dW.data());
        for (int rep = 0; rep < 2; ++rep) {  // twice: no state survives between calls
            G::run(p, ws, batch, io);
            for (std::size_t k = 0; k < 13; ++k)
                for (std::size_t n = 0; n < 84; ++n) {
                    double want = 0;
                    for (std::size_t b = 0; b < batch; ++b) {
                        double z = 0;
                        for (std::size_t i = 0; i < 13; ++i) z += xs[b * 13 + i] * leaf_value("W", i * 84 + n);
                        if (z > 0) want += xs[b * 13 + k] * ct[b * 84 + n];
                    }
                    CHECK(dW[k * 84 + n] == doctest::Approx(want).epsilon(1e-12));
                }
        }
    }
    // relu's derivative is read from its output: the only per-example buffer of the gradient
    // program is dy * (y > 0) (read by both products); no stored mask, no pre-activation
    CHECK(grad_program<float, E>::plan_type::data.tile_elems == 96);  // 84 rounded up to 16;
}

TEST_CASE("dy . W^T through packed strips of W: edge columns, k chunks, epilogue, row remainders") {
    // x (100) -> h = relu(x W1), W1 100 x 300 -> y = h W2, W2 300 x 70.
    // dh = (dy W2^T) * relu'(h): N = 300 (blocks + edge), K = 70, fused epilogue;
    // dx = dh W1^T: N = 100, K = 300 (more than one packed k chunk).
    constexpr auto x = input<"x", 100>;
    constexpr auto W1 = param<"W1", 100, 300>;
    constexpr auto W2 = param<"W2", 300, 70>;
    using E = std::remove_cvref_t<decltype(matmul(act::relu(matmul(x, W1)), W2))>;
    auto check = [&]<class T>(T, double tol) {
        for (std::size_t batch : {std::size_t(1), std::size_t(7), std::size_t(13)}) {
            using G = grad_program<T, E>;
            typename G::parameters p;
            for (std::size_t i = 0; i < 100 * 300; ++i) p.template get<"W1">()[i] = static_cast<T>(leaf_value("W1", i));
            for (std::size_t i = 0; i < 300 * 70; ++i) p.template get<"W2">()[i] = static_cast<T>(leaf_value("W2", i));
            typename G::workspace ws;
            std::vector<T> xs(batch * 100), ct(batch * 70), y(batch * 70), dx(batch * 100), d1(100 * 300), d2(300 * 70);
            for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<T>(leaf_value("x", i));
            for (std::size_t i = 0; i < ct.size(); ++i) ct[i] = static_cast<T>(leaf_value("ct", i));
            typename G::io io;
            io.template input<"x">(xs.data()).template input<"cotangent">(ct.data()).template output<0>(y.data());
            io.template output<G::template grad<"x">>(dx.data()).template output<G::template grad<"W1">>(d1.data());
            io.template output<G::template grad<"W2">>(d2.data());
            G::run(p, ws, batch, io);
            for (std::size_t b = 0; b < batch; ++b) {
                std::vector<double> h(300), dh(300);
                for (std::size_t j = 0; j < 300; ++j) {
                    double z = 0;
                    for (std::size_t i = 0; i < 100; ++i) z += double(xs[b * 100 + i]) * leaf_value("W1", i * 300 + j);
                    h[j] = z > 0 ? z : 0;
                }
                for (std::size_t j = 0; j < 300; ++j) {
                    double s = 0;
                    for (std::size_t o = 0; o < 70; ++o) s += double(ct[b * 70 + o]) * leaf_value("W2", j * 70 + o);
                    dh[j] = h[j] > 0 ? s : 0;
                }
                for (std::size_t i = 0; i < 100; ++i) {
                    double s = 0;
                    for (std::size_t j = 0; j < 300; ++j) s += dh[j] * leaf_value("W1", i * 300 + j);
                    CHECK(double(dx[b * 100 + i]) == doctest::Approx(s).epsilon(tol).scale(10));
                }
            }
        }
    };
    check(double{}, 1e-12);
    check(float{}, 2e-5);
}

TEST_CASE("large B: cache-blocked vec-N GEMM (k and n blocks, epilogue on the last k block) and packed-B remainders") {
    // W5-like: x (700) -> relu(x W + b), W 700 x 600: K > 384 and N > 512 with enough rows to
    // block; the gradient's dy W^T has N = 700 = 10 x 64 + 3 x 16 + 12 (vector remainders, then
    // scalar columns), and x^T dy accumulates over tiles.
    constexpr auto x = input<"x", 700>;
    constexpr auto W = param<"W", 700, 600>;
    constexpr auto b = param<"b", 600>;
    using E = std::remove_cvref_t<decltype(act::relu(matmul(x, W) + b))>;
    auto check = [&]<class T>(T, double tol) {
        const std::size_t batch = 70;  // 64 rows in the first tile, 6 in the second
        using G = grad_program<T, E>;
        typename G::parameters p;
        for (std::size_t i = 0; i < 700 * 600; ++i) p.template get<"W">()[i] = static_cast<T>(leaf_value("W", i) * 0.05);
        for (std::size_t i = 0; i < 600; ++i) p.template get<"b">()[i] = static_cast<T>(leaf_value("b", i));
        typename G::workspace ws;
        std::vector<T> xs(batch * 700), ct(batch * 600), y(batch * 600), dx(batch * 700), dW(700 * 600), db(600);
        for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<T>(leaf_value("x", i));
        for (std::size_t i = 0; i < ct.size(); ++i) ct[i] = static_cast<T>(leaf_value("ct", i));
        typename G::io io;
        io.template input<"x">(xs.data()).template input<"cotangent">(ct.data()).template output<0>(y.data());
        io.template output<G::template grad<"x">>(dx.data()).template output<G::template grad<"W">>(dW.data());
        io.template output<G::template grad<"b">>(db.data());
        G::run(p, ws, batch, io);
        std::vector<double> dz(batch * 600);
        for (std::size_t e = 0; e < batch; ++e)
            for (std::size_t j = 0; j < 600; ++j) {
                double z = leaf_value("b", j);
                for (std::size_t i = 0; i < 700; ++i) z += double(xs[e * 700 + i]) * double(p.template get<"W">()[i * 600 + j]);
                CHECK(double(y[e * 600 + j]) == doctest::Approx(z > 0 ? z : 0).epsilon(tol).scale(1));
                dz[e * 600 + j] = z > 0 ? double(ct[e * 600 + j]) : 0.0;
            }
        for (std::size_t e = 0; e < batch; e += 23)
            for (std::size_t i = 0; i < 700; ++i) {
                double s = 0;
                for (std::size_t j = 0; j < 600; ++j) s += dz[e * 600 + j] * double(p.template get<"W">()[i * 600 + j]);
                CHECK(double(dx[e * 700 + i]) == doctest::Approx(s).epsilon(tol).scale(1));
            }
        for (std::size_t i = 0; i < 700; i += 37)
            for (std::size_t j = 0; j < 600; ++j) {
                double s = 0;
                for (std::size_t e = 0; e < batch; ++e) s += double(xs[e * 700 + i]) * dz[e * 600 + j];
                CHECK(double(dW[i * 600 + j]) == doctest::Approx(s).epsilon(tol).scale(1));
            }
    };
    check(double{}, 1e-12);
    check(float{}, 1e-4);
}
