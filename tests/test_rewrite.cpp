// The rewrite passes (core/rewrite.hpp): concat split with linear collection, and hoisting
// of broadcast operands out of contractions. Each case checks the rewritten type or plan
// and the value against a naive loop, and derivatives through the rewritten graph.
#include <algorithm>

#include "support.hpp"

using namespace ctrec;
using test::leaf_value;

namespace {
constexpr std::size_t T = 5, H = 3, D = 4, B = 3;
constexpr auto q = input<"q", H>;
constexpr auto k = input<"k", T, H>;
constexpr auto W = param<"W", 4 * H, D>;
constexpr auto bq = broadcast_to<T, H>(q);
// DIN's first layer written literally: [q, k, q - k, q * k] W
constexpr auto din_first = matmul(concat<1>(bq, k, bq - k, bq * k), W);
using DinFirst = std::remove_cvref_t<decltype(din_first)>;
// the same with q broadcast implicitly by the elementwise ops
constexpr auto din_implicit = matmul(concat<1>(bq, k, q - k, q * k), W);

std::vector<double> din_reference(std::size_t batch) {
    std::vector<double> out(batch * T * D);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t t = 0; t < T; ++t) {
            double z[4 * H];
            for (std::size_t h = 0; h < H; ++h) {
                double qv = leaf_value("q", b * H + h), kv = leaf_value("k", (b * T + t) * H + h);
                z[h] = qv;
                z[H + h] = kv;
                z[2 * H + h] = qv - kv;
                z[3 * H + h] = qv * kv;
            }
            for (std::size_t d = 0; d < D; ++d) {
                double s = 0;
                for (std::size_t i = 0; i < 4 * H; ++i) s += z[i] * leaf_value("W", i * D + d);
                out[(b * T + t) * D + d] = s;
            }
        }
    return out;
}

template <class Plan>
std::size_t largest_batched(std::size_t skip_roots = 0) {
    std::size_t m = 0;
    for (std::size_t i = 0; i < Plan::size; ++i)
        if (Plan::data.rec[i].batched && Plan::data.step[i] && (!skip_roots || Plan::data.rec[i].root < 0))
            m = std::max(m, Plan::data.rec[i].shape.size());
    return m;
}
template <class Plan>
std::size_t count_kind(kind k, std::size_t size = 0) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < Plan::size; ++i)
        n += Plan::data.rec[i].k == k && (!size || Plan::data.rec[i].shape.size() == size);
    return n;
}
} // namespace

TEST_CASE("rewrite: DIN's concat-then-contract splits, merges the q terms and hoists them") {
    using R = rewrite_t<DinFirst>;
    static_assert(R::shape == DinFirst::shape && R::batched);
    using P = plan<R>;
    INFO(P::describe());
    // no concat survives, and no batched value is 4H wide
    CHECK(count_kind<P>(kind::concat) == 0);
    for (std::size_t i = 0; i < P::size; ++i)
        if (P::data.rec[i].batched) CHECK(P::data.rec[i].shape.size() != T * 4 * H);
    // three contractions remain: q (W_a + W_c) per example (size D, not T x D), k (W_b - W_c)
    // and (q * k) W_d (T x D each)
    CHECK(count_kind<P>(kind::contract) == 3);
    CHECK(count_kind<P>(kind::contract, D) == 1);
    CHECK(count_kind<P>(kind::contract, T * D) == 2);
    // the combined weights are parameter-only: cached with the parameters
    std::size_t derived = 0;
    for (std::size_t i = 0; i < P::size; ++i) derived += P::data.derived[i];
    CHECK(derived >= 2);
    // the literal form (what plan<> alone builds) has the concat
    CHECK(count_kind<plan<DinFirst>>(kind::concat) == 1);
}

TEST_CASE("rewrite: values and derivatives of the rewritten DIN layer match the literal form") {
    const auto want = din_reference(B);
    test::check_forward<DinFirst>(B, want);
    test::check_forward<std::remove_cvref_t<decltype(din_implicit)>>(B, want);
    test::check_ad<DinFirst>(B);
    test::check_ad<std::remove_cvref_t<decltype(din_implicit)>>(B);
}

TEST_CASE("rewrite: the implicit broadcast of q - k and q * k is recognised like broadcast_to") {
    using P = plan<rewrite_t<std::remove_cvref_t<decltype(din_implicit)>>>;
    CHECK(count_kind<P>(kind::concat) == 0);
    CHECK(count_kind<P>(kind::contract, D) == 1);
    CHECK(count_kind<P>(kind::contract, T * D) == 2);
}

TEST_CASE("rewrite: the gradient and JVP graphs inherit the rewrite (no 4H-wide row, q's share once)") {
    using G = grad_program<double, DinFirst>::plan_type;
    using J = jvp_program<double, DinFirst>::plan_type;
    INFO(G::describe());
    for (std::size_t i = 0; i < G::size; ++i)
        if (G::data.rec[i].batched) CHECK(G::data.rec[i].shape.size() != T * 4 * H);
    for (std::size_t i = 0; i < J::size; ++i)
        if (J::data.rec[i].batched) CHECK(J::data.rec[i].shape.size() != T * 4 * H);
    CHECK(count_kind<G>(kind::concat) == 0);
    // dq: the cotangent summed over T (the transpose of the hoisted broadcast), then one
    // (D) x (D, H) product per example, not T of them
    std::size_t per_example_q = 0;
    for (std::size_t i = 0; i < G::size; ++i)
        per_example_q += G::data.rec[i].k == kind::contract && G::data.rec[i].batched && G::data.rec[i].shape.size() == H;
    CHECK(per_example_q >= 1);
}

TEST_CASE("rewrite: hoisting alone: a broadcast operand is contracted once and broadcast after") {
    constexpr auto V = param<"V", H, D>;
    constexpr auto e = matmul(bq, V) + matmul(k, V);
    using E = std::remove_cvref_t<decltype(e)>;
    using P = plan<rewrite_t<E>>;
    CHECK(count_kind<P>(kind::contract, D) == 1);
    CHECK(count_kind<P>(kind::contract, T * D) == 1);
    std::vector<double> want(B * T * D);
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t t = 0; t < T; ++t)
            for (std::size_t d = 0; d < D; ++d) {
                double s = 0;
                for (std::size_t h = 0; h < H; ++h)
                    s += (leaf_value("q", b * H + h) + leaf_value("k", (b * T + t) * H + h)) * leaf_value("V", h * D + d);
                want[(b * T + t) * D + d] = s;
            }
    test::check_forward<E>(B, want);
    test::check_ad<E>(B);
}

TEST_CASE("rewrite: a broadcast along a contracted axis is not hoisted; the value is kept") {
    // sum over t of broadcast(q) is T q: the letter t is summed, so nothing is hoisted
    constexpr auto U = param<"U", T, D>;
    constexpr auto e = einsum<"th,td->hd">(bq, U);
    using E = std::remove_cvref_t<decltype(e)>;
    static_assert(std::is_same_v<rewrite_t<E>, E>);
    test::check_ad<E>(B);
}

TEST_CASE("rewrite: plain concatenations of independent features are left as one GEMM") {
    constexpr auto a = input<"a", 6>;
    constexpr auto c = input<"c", 2>;
    constexpr auto e = matmul(concat<0>(a, c), param<"M", 8, 5>);
    using E = std::remove_cvref_t<decltype(e)>;
    static_assert(std::is_same_v<rewrite_t<E>, E>);
    // but shared atoms are merged: [a, a] M = a (M_0 + M_1)
    constexpr auto e2 = matmul(concat<0>(a, a), param<"M2", 12, 5>);
    using E2 = std::remove_cvref_t<decltype(e2)>;
    using P2 = plan<rewrite_t<E2>>;
    CHECK(count_kind<P2>(kind::concat) == 0);
    CHECK(count_kind<P2>(kind::contract) == 1);
    std::vector<double> want(B * 5);
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t j = 0; j < 5; ++j) {
            double s = 0;
            for (std::size_t i = 0; i < 12; ++i) s += leaf_value("a", b * 6 + i % 6) * leaf_value("M2", i * 5 + j);
            want[b * 5 + j] = s;
        }
    test::check_forward<E2>(B, want);
    test::check_ad<E2>(B);
}

TEST_CASE("rewrite: the concat may be the second operand (weights first)") {
    constexpr auto Wt = param<"Wt", D, 4 * H>;
    constexpr auto e = einsum<"dj,tj->td">(Wt, concat<1>(bq, k, bq - k, bq * k));
    using E = std::remove_cvref_t<decltype(e)>;
    using P = plan<rewrite_t<E>>;
    CHECK(count_kind<P>(kind::concat) == 0);
    CHECK(count_kind<P>(kind::contract, D) == 1);
    test::check_ad<E>(B);
}

TEST_CASE("rewrite: shared inputs: work on them runs once per call, results match per-example inputs") {
    // one user's sequence (shared) against B candidate queries
    constexpr auto ks = shared_input<"k", T, H>;
    constexpr auto e = matmul(concat<1>(bq, broadcast_to<T, H>(ks), q - ks, q * ks), W);
    using E = std::remove_cvref_t<decltype(e)>;
    using P = program<double, E>::plan_type;
    // k (W_b - W_c) is unbatched: computed once per call
    std::size_t unbatched_td = 0;
    for (std::size_t i = 0; i < P::size; ++i)
        unbatched_td += P::data.rec[i].k == kind::contract && !P::data.rec[i].batched && P::data.rec[i].shape.size() == T * D;
    CHECK(unbatched_td == 1);
    // same values as the batched layer with k repeated for every example
    auto same_k = [](std::string_view name, std::size_t i) {
        return name == "k" ? leaf_value("k", i % (T * H)) : leaf_value(name, i);
    };
    const auto got = test::run<double, E>(B, same_k);
    const auto want = test::run<double, DinFirst>(B, same_k);
    test::check_close(got, want, 1e-12);
}
