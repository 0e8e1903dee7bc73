// The split of a concatenation in matmul (include/ctrec/core/matmul.hpp): DIN's [q, k, q - k, q * k] W
// becomes q (W_a + W_c) once per example plus k (W_b - W_c) and (q * k) W_d. Each case checks the
// frozen table (no 4H-wide batched value, which products remain, derived weights) and the values
// and derivatives against naive loops, on both backends. (Port of the type core's test_rewrite.)
#include "support.hpp"

#include <algorithm>

namespace f = ctrec;
using namespace test;

namespace {
constexpr std::size_t T = 5, H = 3, D = 4;
constexpr auto q = f::input<"q", H>;
constexpr auto k = f::input<"k", T, H>;
constexpr auto W = f::param<"W", 4 * H, D>;
constexpr auto bq = f::broadcast_to(q, ctrec::make_dims<T, H>());
// DIN's first layer written literally, and with q broadcast implicitly by the elementwise ops
constexpr auto din_first = f::matmul(f::concat(1, {bq, k, bq - k, bq * k}), W);
constexpr auto din_implicit = f::matmul(f::concat(1, {bq, k, q - k, q * k}), W);
// the same product through einsum: never rewritten (the literal form, for comparison)
constexpr auto din_literal = f::einsum("tj,jd->td", f::concat(1, {bq, k, bq - k, bq * k}), W);
constexpr auto din_loss = f::batch_mean(f::sum(f::tanh(din_first)));

std::vector<double> din_reference(leaves& L, std::size_t batch) {
    std::vector<double> out(batch * T * D);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t t = 0; t < T; ++t) {
            double z[4 * H];
            for (std::size_t h = 0; h < H; ++h) {
                const double qv = L["q"][b * H + h], kv = L["k"][(b * T + t) * H + h];
                z[h] = qv, z[H + h] = kv, z[2 * H + h] = qv - kv, z[3 * H + h] = qv * kv;
            }
            for (std::size_t d = 0; d < D; ++d) {
                double s = 0;
                for (std::size_t i = 0; i < 4 * H; ++i) s += z[i] * L["W"][i * D + d];
                out[(b * T + t) * D + d] = s;
            }
        }
    return out;
}

template <class P>
std::size_t count_op(f::opcode op, std::size_t size = 0, int batched = -1) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < P::size; ++i) {
        const auto& r = P::tab.nodes[i];
        n += r.op == op && (!size || r.shape.size() == size) && (batched < 0 || r.batched == (batched == 1));
    }
    return n;
}
// Batched values of the table that are 4H wide per step (the literal concat row).
template <class P>
std::size_t wide_rows() {
    std::size_t n = 0;
    for (std::size_t i = 0; i < P::size; ++i) {
        const auto& r = P::tab.nodes[i];
        n += r.batched && r.shape.rank >= 1 && r.shape.d[r.shape.rank - 1] == 4 * H && r.op != f::opcode::input;
    }
    return n;
}
auto din_check(double tol) {
    return [tol](leaves& L, std::size_t b, bool prep) {
        (void)tol;
        if (prep) return std::vector<double>{};
        return din_reference(L, b);
    };
}
} // namespace

TEST_CASE("rewrite: DIN's concat-then-contract splits, merges the q terms and hoists them") {
    using P = f::program<double, din_first>;
    CHECK(count_op<P>(f::opcode::concat) == 0);
    CHECK(wide_rows<P>() == 0);
    // three products remain: q (W_a + W_c) per example (size D, not T x D), k (W_b - W_c) and
    // (q * k) W_d (T x D each)
    CHECK(count_op<P>(f::opcode::contract) == 3);
    CHECK(count_op<P>(f::opcode::contract, D, 1) == 1);
    CHECK(count_op<P>(f::opcode::contract, T * D, 1) == 2);
    // the combined weights read parameters only: derived parameters, computed by prepare()
    std::size_t derived = 0;
    for (std::size_t i = 0; i < P::size; ++i) derived += P::pl.derived[i];
    CHECK(derived >= 2);
    // the literal form keeps its concat and its one (T x 4H) x (4H x D) product
    using L = f::program<double, din_literal>;
    CHECK(count_op<L>(f::opcode::concat) == 1);
    CHECK(count_op<L>(f::opcode::contract) == 1);
    CHECK(wide_rows<L>() == 1);
}

TEST_CASE("rewrite: values and derivatives of the rewritten DIN layer match the literal form") {
    check_forward_all<din_first>(1e-12, din_check(0));
    check_forward_all<din_implicit>(1e-12, din_check(0));
    check_forward_all<din_literal>(1e-12, din_check(0));
    check_derivatives<f::grad_program<double, din_first>, f::jvp_program<double, din_first>>(3);
    check_derivatives<f::grad_program<double, din_implicit>, f::jvp_program<double, din_implicit>>(3);
    check_derivatives<f::grad_program<double, din_loss>, f::jvp_program<double, din_loss>>(5);
    check_backends<f::grad_program<float, din_loss>>(70, 1e-5);
}

TEST_CASE("rewrite: the implicit broadcast of q - k and q * k is recognised like broadcast_to") {
    using P = f::program<double, din_implicit>;
    CHECK(count_op<P>(f::opcode::concat) == 0);
    CHECK(count_op<P>(f::opcode::contract, D, 1) == 1);
    CHECK(count_op<P>(f::opcode::contract, T * D, 1) == 2);
}

TEST_CASE("rewrite: the gradient and JVP graphs inherit the rewrite (no 4H-wide row, q's share once)") {
    using G = f::grad_program<double, din_first>;
    using J = f::jvp_program<double, din_first>;
    CHECK(wide_rows<G>() == 0);
    CHECK(wide_rows<J>() == 0);
    // dq: one (D) x (D, H) product per example from the cotangent summed over T, not T of them
    CHECK(count_op<G>(f::opcode::contract, H, 1) >= 1);
    CHECK(count_op<G>(f::opcode::contract, T * H, 1) <= 2);  // dk: from k's two products
    // the training loss's gradient: dW is assembled from the blocks' gradients (one concat of
    // unbatched pieces), no batched concat
    using GL = f::grad_program<double, din_loss>;
    CHECK(wide_rows<GL>() == 0);
    CHECK(count_op<GL>(f::opcode::concat, 0, 1) == 0);
}

namespace {
constexpr auto V = f::param<"V", H, D>;
constexpr auto hoist_only = f::matmul(f::concat(1, {bq, k}), f::param<"V2", 2 * H, D>);
constexpr auto sum_of_products = f::matmul(bq, V) + f::matmul(k, V);
} // namespace

TEST_CASE("rewrite: hoisting alone: a broadcast piece is contracted once and broadcast after") {
    using P = f::program<double, hoist_only>;
    CHECK(count_op<P>(f::opcode::contract, D, 1) == 1);
    CHECK(count_op<P>(f::opcode::contract, T * D, 1) == 1);
    check_forward_all<hoist_only>(1e-12, [](leaves& L, std::size_t batch, bool prep) {
        std::vector<double> want;
        if (prep) return want;
        want.resize(batch * T * D);
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t d = 0; d < D; ++d) {
                    double s = 0;
                    for (std::size_t h = 0; h < H; ++h)
                        s += L["q"][b * H + h] * L["V2"][h * D + d] + L["k"][(b * T + t) * H + h] * L["V2"][(H + h) * D + d];
                    want[(b * T + t) * D + d] = s;
                }
        return want;
    });
    check_derivatives<f::grad_program<double, hoist_only>, f::jvp_program<double, hoist_only>>(3);
    // a sum of two products is not a concatenation: left as written, and correct
    using S = f::program<double, sum_of_products>;
    CHECK(count_op<S>(f::opcode::contract) == 2);
    check_derivatives<f::grad_program<double, sum_of_products>, f::jvp_program<double, sum_of_products>>(3);
}

namespace {
constexpr auto U = f::param<"U", T, D>;
constexpr auto contracted_broadcast = f::einsum("th,td->hd", bq, U);
constexpr auto a6 = f::input<"a", 6>;
constexpr auto c2 = f::input<"c", 2>;
constexpr auto plain = f::matmul(f::concat(0, {a6, c2}), f::param<"M", 8, 5>);
constexpr auto repeated = f::matmul(f::concat(0, {a6, a6}), f::param<"M2", 12, 5>);
// a piece broadcast along the contracted axis (one value per step spread over H) cannot be
// contracted first: kept as a value
constexpr auto s_t = f::input<"s", T, 1>;
constexpr auto along_k = f::matmul(f::concat(1, {f::broadcast_to(s_t, ctrec::make_dims<T, H>()), k}), f::param<"V3", 2 * H, D>);
} // namespace

TEST_CASE("rewrite: a broadcast along a contracted axis is not hoisted; the value is kept") {
    // sum over t of broadcast(q) is T q: einsum is never rewritten; values and derivatives hold
    check_forward_all<contracted_broadcast>(1e-12, [](leaves& L, std::size_t batch, bool prep) {
        std::vector<double> want;
        if (prep) return want;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t h = 0; h < H; ++h)
                for (std::size_t d = 0; d < D; ++d) {
                    double s = 0;
                    for (std::size_t t = 0; t < T; ++t) s += L["q"][b * H + h] * L["U"][t * D + d];
                    want.push_back(s);
                }
        return want;
    });
    check_derivatives<f::grad_program<double, contracted_broadcast>, f::jvp_program<double, contracted_broadcast>>(3);
    using P = f::program<double, along_k>;
    CHECK(count_op<P>(f::opcode::concat) == 1);
    CHECK(count_op<P>(f::opcode::contract) == 1);
    check_derivatives<f::grad_program<double, along_k>, f::jvp_program<double, along_k>>(3);
}

TEST_CASE("rewrite: plain concatenations of independent features are left as one GEMM") {
    using P = f::program<double, plain>;
    CHECK(count_op<P>(f::opcode::concat) == 1);
    CHECK(count_op<P>(f::opcode::contract) == 1);
    // but equal pieces are merged: [a, a] M = a (M_0 + M_1)
    using P2 = f::program<double, repeated>;
    CHECK(count_op<P2>(f::opcode::concat) == 0);
    CHECK(count_op<P2>(f::opcode::contract) == 1);
    check_forward_all<repeated>(1e-12, [](leaves& L, std::size_t batch, bool prep) {
        std::vector<double> want;
        if (prep) return want;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t j = 0; j < 5; ++j) {
                double s = 0;
                for (std::size_t i = 0; i < 12; ++i) s += L["a"][b * 6 + i % 6] * L["M2"][i * 5 + j];
                want.push_back(s);
            }
        return want;
    });
    check_derivatives<f::grad_program<double, repeated>, f::jvp_program<double, repeated>>(3);
}

namespace {
// one user's sequence (shared by the call) against B candidate queries
constexpr auto ks = f::shared_input<"k", T, H>;
constexpr auto shared_din = f::matmul(f::concat(1, {bq, f::broadcast_to(ks, ctrec::make_dims<T, H>()), q - ks, q * ks}), W);
} // namespace

TEST_CASE("rewrite: shared inputs: work on them runs once per call, results match per-example inputs") {
    using P = f::program<double, shared_din>;
    // k (W_b - W_c) is unbatched: computed once per call
    CHECK(count_op<P>(f::opcode::contract, T * D, 0) == 1);
    CHECK(count_op<P>(f::opcode::contract, T * D, 1) == 1);
    // same values as the batched layer with k repeated for every example
    for (std::size_t batch : {1, 4, 70}) {
        leaves L;
        fill<P>(L, batch);
        const auto got = forward<P>(L, batch);
        leaves Lb = L;
        auto& kb = Lb["k"];
        const std::vector<double> one = kb;
        kb.clear();
        for (std::size_t b = 0; b < batch; ++b) kb.insert(kb.end(), one.begin(), one.end());
        const auto want = forward<f::program<double, din_first>>(Lb, batch);
        INFO("batch " << batch);
        CHECK(max_rel_diff(got, want) <= 1e-12);
    }
}

namespace {
// parameters used as one concatenated kernel (MMoE's stacked experts): x [W1 | W2 | W3]
constexpr auto sx = f::input<"x", 6>;
constexpr auto stacked = f::matmul(sx, f::concat(1, {f::param<"W1", 6, 4>, f::param<"W2", 6, 5>, f::param<"W3", 6, 3>}));
constexpr auto stacked_loss = f::batch_mean(f::sum(f::tanh(stacked)));
} // namespace

TEST_CASE("rewrite: the gradient of a concatenated kernel's parts is one GEMM each, not slices of one") {
    using G = f::grad_program<double, stacked_loss>;
    // no slice reads a batch-summed (unbatched) contraction: each dW_i contracts x with its
    // columns of the output cotangent
    std::size_t sliced_sums = 0;
    for (std::size_t i = 0; i < G::size; ++i) {
        const auto& r = G::tab.nodes[i];
        if (r.op != f::opcode::slice) continue;
        const auto& o = G::tab.nodes[G::tab.operand(static_cast<std::uint32_t>(i), 0)];
        sliced_sums += o.op == f::opcode::contract && !o.batched;
    }
    CHECK(sliced_sums == 0);
    CHECK(count_op<G>(f::opcode::contract, 6 * 4, 0) == 1);
    CHECK(count_op<G>(f::opcode::contract, 6 * 5, 0) == 1);
    CHECK(count_op<G>(f::opcode::contract, 6 * 3, 0) == 1);
    // and the derivatives are right (finite differences, duality, reference backend)
    check_ad<stacked_loss>(7);
}
