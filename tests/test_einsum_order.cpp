// Contraction ordering (core/contract_order.hpp): einsum over three or more operands is
// evaluated in the order with the fewest FLOPs, chosen at compile time. Checked: the chosen
// trees for AllInt's X . X^T . C at both ends of the trade-off, a matrix chain, hoisting of
// a parameter-only product, a four-operand tree; values against naive loops; derivatives.
#include "support.hpp"

using namespace ctrec;

namespace {
template <class E, class... L>
std::vector<double> forward(std::size_t batch) {
    using M = program<double, E>;
    return test::run_all<M>(batch)[0];
}
double v(std::string_view n, std::size_t i) { return test::leaf_value(n, i); }

// true when no node of program M's plan has per-example shape (a, b)
template <class M>
bool no_node_shaped(std::size_t a, std::size_t b) {
    for (const auto& r : M::plan_type::data.rec)
        if (r.shape.rank == 2 && r.shape.d[0] == a && r.shape.d[1] == b) return false;
    return true;
}
} // namespace

TEST_CASE("einsum order: X . X^T . C never builds the N x N matrix when that costs more") {
    constexpr std::size_t N = 39, K = 16, C = 8, B = 3;
    constexpr auto X = input<"X", N, K>;
    constexpr auto Cm = param<"C", N, C>;
    constexpr auto O = einsum<"mk,nk,nc->mc">(X, X, Cm);
    using E = std::remove_cvref_t<decltype(O)>;
    constexpr einsum_tree t = einsum_order<"mk,nk,nc->mc", decltype(X), decltype(X), decltype(Cm)>;
    static_assert(t.ok);
    CHECK(t.flops == doctest::Approx(4.0 * N * K * C));                     // X^T C, then X F
    CHECK(t.naive_flops == doctest::Approx(2.0 * N * N * K + 2.0 * N * N * C));  // (X X^T) C
    CHECK(t.max_intermediate == K * C);
    // the first step contracts X (operand 1) with C (operand 2) over n
    CHECK(((t.left[3] == 1 && t.right[3] == 2) || (t.left[3] == 2 && t.right[3] == 1)));
    using M = program<double, E>;
    CHECK(no_node_shaped<M>(N, N));
    CHECK(M::plan_type::data.tile_elems < N * N);  // the workspace per example is below the avoided matrix
    auto out = forward<E>(B);
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t m = 0; m < N; ++m)
            for (std::size_t c = 0; c < C; ++c) {
                double s = 0;
                for (std::size_t n = 0; n < N; ++n) {
                    double g = 0;
                    for (std::size_t k = 0; k < K; ++k) g += v("X", (b * N + m) * K + k) * v("X", (b * N + n) * K + k);
                    s += g * v("C", n * C + c);
                }
                CHECK(out[(b * N + m) * C + c] == doctest::Approx(s));
            }
}

TEST_CASE("einsum order: with few fields and wide embeddings the Gram matrix first is cheaper, and is chosen") {
    constexpr std::size_t N = 2, K = 64, C = 64;
    constexpr auto X = input<"X", N, K>;
    constexpr auto Cm = param<"C", N, C>;
    constexpr einsum_tree t = einsum_order<"mk,nk,nc->mc", decltype(X), decltype(X), decltype(Cm)>;
    // (X X^T) C: 2 N^2 K + 2 N^2 C = 1024; X (X^T C): 4 N K C = 32768
    CHECK(t.flops == doctest::Approx(2.0 * N * N * K + 2.0 * N * N * C));
    CHECK(((t.left[3] == 0 && t.right[3] == 1) || (t.left[3] == 1 && t.right[3] == 0)));
    using E = std::remove_cvref_t<decltype(einsum<"mk,nk,nc->mc">(X, X, Cm))>;
    test::check_ad<E>(2);
}

TEST_CASE("einsum order: matrix chains, and a product of parameters is hoisted out of the batch") {
    SUBCASE("(A B) C when that is cheaper") {
        constexpr auto A = input<"A", 10, 20>;
        constexpr auto Bm = input<"B", 20, 5>;
        constexpr auto Cm = input<"C", 5, 30>;
        constexpr einsum_tree t = einsum_order<"ij,jk,kl->il", decltype(A), decltype(Bm), decltype(Cm)>;
        CHECK(t.flops == doctest::Approx(2.0 * 10 * 20 * 5 + 2.0 * 10 * 5 * 30));
        using E = std::remove_cvref_t<decltype(einsum<"ij,jk,kl->il">(A, Bm, Cm))>;
        auto out = forward<E>(2);
        for (std::size_t b = 0; b < 2; ++b)
            for (std::size_t i = 0; i < 10; ++i)
                for (std::size_t l = 0; l < 30; ++l) {
                    double s = 0;
                    for (std::size_t j = 0; j < 20; ++j)
                        for (std::size_t k = 0; k < 5; ++k)
                            s += v("A", b * 200 + i * 20 + j) * v("B", b * 100 + j * 5 + k) * v("C", b * 150 + k * 30 + l);
                    CHECK(out[b * 300 + i * 30 + l] == doctest::Approx(s));
                }
        test::check_ad<E>(2);
    }
    SUBCASE("x (W1 W2) with parameters: W1 W2 is computed once with the parameters") {
        constexpr auto x = input<"x", 32>;
        constexpr auto W1 = param<"W1", 32, 32>;
        constexpr auto W2 = param<"W2", 32, 32>;
        constexpr einsum_tree t = einsum_order<"i,ij,jk->k", decltype(x), decltype(W1), decltype(W2)>;
        // per example: x (W1 W2) is one vector-matrix product; (x W1) W2 would be two
        CHECK(t.flops == doctest::Approx(2.0 * 32 * 32));
        using E = std::remove_cvref_t<decltype(einsum<"i,ij,jk->k">(x, W1, W2))>;
        using M = program<double, E>;
        CHECK(M::plan_type::derived_steps == 1);
        test::check_ad<E>(3);
    }
}

TEST_CASE("einsum order: four operands, fewest FLOPs, same values as the naive sum") {
    constexpr auto a = input<"a", 6, 4>;
    constexpr auto b = param<"b", 4, 7>;
    constexpr auto c = input<"c", 7, 3>;
    constexpr auto d = param<"d", 3, 6>;
    constexpr einsum_tree t = einsum_order<"ij,jk,kl,lm->im", decltype(a), decltype(b), decltype(c), decltype(d)>;
    CHECK(t.flops <= t.naive_flops);
    using E = std::remove_cvref_t<decltype(einsum<"ij,jk,kl,lm->im">(a, b, c, d))>;
    auto out = forward<E>(2);
    for (std::size_t e = 0; e < 2; ++e)
        for (std::size_t i = 0; i < 6; ++i)
            for (std::size_t m = 0; m < 6; ++m) {
                double s = 0;
                for (std::size_t j = 0; j < 4; ++j)
                    for (std::size_t k = 0; k < 7; ++k)
                        for (std::size_t l = 0; l < 3; ++l)
                            s += v("a", e * 24 + i * 4 + j) * v("b", j * 7 + k) * v("c", e * 21 + k * 3 + l) * v("d", l * 6 + m);
                CHECK(out[e * 36 + i * 6 + m] == doctest::Approx(s));
            }
    test::check_ad<E>(2);
}
