// khatri_rao_matmul: out[r, j] = sum_{h, m} P[r, h] Q[r, m] W[h * M + m, j] per example, the
// product P[r, h] Q[r, m] never stored (port of the type core's tests/test_kr_matmul.cpp, commit
// c7da70e). Checked against naive float64 loops on the CPU and reference backends (k chunks,
// column and row edges, several tiles, float and double), derivatives of all three operands by
// float64 central differences, the JVP and duality (kr_dual for both input gradients, J above
// one kr_dual chunk, the batch-summed kr_gram, kr_matmul2 for the tangent), P and Q the same node
// (CIN's first layer), an unbatched P, transpose, and plan inspection: no R x H x M value is a
// node or a workspace buffer of the forward, gradient or JVP program.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "support.hpp"

using namespace ctrec;
using test::leaves;

namespace {

using vec = std::vector<double>;

// out (batch, R, J) from P (batch or 1, R, H) after f, Q (batch, R, M) and W (H M, J)
vec kr_reference(const vec& p, bool p_batched, const vec& q, const vec& w, std::size_t batch, std::size_t R, std::size_t H,
                 std::size_t M, std::size_t J, double (*f)(double)) {
    vec out(batch * R * J, 0.0);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t r = 0; r < R; ++r)
            for (std::size_t h = 0; h < H; ++h)
                for (std::size_t m = 0; m < M; ++m) {
                    const double z = f(p[((p_batched ? b : 0) * R + r) * H + h]) * q[(b * R + r) * M + m];
                    for (std::size_t j = 0; j < J; ++j) out[(b * R + r) * J + j] += z * w[(h * M + m) * J + j];
                }
    return out;
}
double tanh_(double x) { return std::tanh(x); }
double identity(double x) { return x; }

template <std::size_t R, std::size_t H, std::size_t M, std::size_t J>
struct kr_case {
    static constexpr expr p = tanh(input<"p", R, H>);  // a computed operand, as in CIN
    static constexpr expr q = input<"q", R, M>;
    static constexpr expr w = param<"w", H * M, J>;
    static constexpr expr y = khatri_rao_matmul(p, q, w);
    static vec reference(leaves& L, std::size_t batch, bool prepare) {
        if (prepare) return {};
        return kr_reference(L["p"], true, L["q"], L["w"], batch, R, H, M, J, tanh_);
    }
    // forward in double and float at batches 1, 5 and 70 (several tiles), CPU and reference
    static void check_forward(double tol_float) {
        for (std::size_t batch : {1, 5, 70}) {
            test::check_forward<program<double, y>>(batch, 1e-12, reference);
            test::check_forward<program<float, y>>(batch, tol_float, reference);
        }
    }
    template <bool InFloat = false>  // (compile time: the float gradient program for two cases only)
    static void check_derivatives(std::size_t batch) {
        test::check_derivatives<grad_program<double, y>, jvp_program<double, y>>(batch);
        // the derivative programs across tiles: CPU against the reference backend
        test::check_backends<grad_program<double, y>>(70, 1e-11);
        test::check_backends<jvp_program<double, y>>(70, 1e-11);
        if constexpr (InFloat) test::check_backends<grad_program<float, y>>(70, 2e-5);
    }
};

template <class Table>
std::size_t count_op(const Table& t, opcode op) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < Table::size; ++i) n += t.nodes[i].op == op;
    return n;
}
template <class P>
std::size_t largest_batched_value() {
    std::size_t n = 0;
    for (std::size_t i = 0; i < P::size; ++i)
        if (P::tab.nodes[i].batched && P::tab.nodes[i].shape.size() > n) n = P::tab.nodes[i].shape.size();
    return n;
}

} // namespace

TEST_CASE("khatri_rao_matmul: forward against naive loops (float, double; CPU and reference backends)") {
    kr_case<3, 4, 5, 7>::check_forward(1e-5);      // narrower than one vector block
    kr_case<5, 20, 17, 70>::check_forward(1e-4);   // two k chunks (340), a column edge (70 = 64 + 6); packed at 70
    kr_case<16, 12, 9, 128>::check_forward(1e-4);  // W2-like rows, several tiles
    kr_case<3, 2, 300, 20>::check_forward(1e-4);   // b deeper than one strip: partial sums over b
    kr_case<4, 3, 150, 40>::check_forward(1e-4);   // packed, b deeper than a strip
}

TEST_CASE("khatri_rao_matmul: derivatives of P, Q and W (float64 central differences, JVP, duality)") {
    kr_case<3, 4, 5, 7>::check_derivatives(3);
    kr_case<2, 3, 4, 70>::check_derivatives<true>(2);   // column edge in the forward, the Gram product and kr_dual
    kr_case<1, 2, 3, 300>::check_derivatives(2);  // J = 300 > one kr_dual chunk (256); b (= J) deeper than a strip
    kr_case<7, 5, 11, 40>::check_derivatives<true>(2);  // kr_dual: row and column edges, runs of a across blocks
}

namespace {
constexpr expr pp = tanh(input<"p", 4, 6>);
constexpr expr ww = param<"w", 36, 9>;
constexpr expr same = khatri_rao_matmul(pp, pp, ww);
} // namespace

TEST_CASE("khatri_rao_matmul: P and Q the same node (CIN's first layer) accumulates both gradients") {
    for (std::size_t batch : {1, 5, 70}) {
        auto ref = [](leaves& L, std::size_t b, bool prepare) {
            if (prepare) return vec{};
            vec t = L["p"];
            for (double& v : t) v = std::tanh(v);
            return kr_reference(t, true, t, L["w"], b, 4, 6, 6, 9, identity);
        };
        test::check_forward<program<double, same>>(batch, 1e-12, ref);
        test::check_forward<program<float, same>>(batch, 1e-5, ref);
    }
    test::check_derivatives<grad_program<double, same>, jvp_program<double, same>>(3);
    test::check_backends<grad_program<double, same>>(70, 1e-11);
    // one kr_dual for both operand slots; both of its halves reach d/dp
    using G = grad_program<double, same>;
    CHECK(count_op(G::tab, opcode::kr_dual) == 1);
    CHECK(count_op(G::tab, opcode::kr_gram) == 1);
}

namespace {
// an unbatched P (a parameter, broadcast over the batch) and a transposed Q: x (M, R) per example
constexpr expr pu = param<"pu", 5, 3>;
constexpr expr xt = input<"x", 4, 5>;
constexpr expr wu = param<"w", 12, 6>;
constexpr expr mixed = khatri_rao_matmul(pu, transpose(tanh(xt)), wu);
constexpr expr tr = transpose(tanh(input<"x", 2, 3, 4>)) * param<"s", 4, 3>;
} // namespace

TEST_CASE("khatri_rao_matmul: an unbatched P (broadcast, its gradient summed over the batch); transpose") {
    static_assert(mixed.shape() == make_dims<5, 6>() && tr.shape() == make_dims<2, 4, 3>());
    for (std::size_t batch : {1, 5, 70}) {
        auto ref = [](leaves& L, std::size_t b, bool prepare) {
            if (prepare) return vec{};
            const vec& x = L["x"];
            vec qt(b * 5 * 4);
            for (std::size_t e = 0; e < b; ++e)
                for (std::size_t m = 0; m < 4; ++m)
                    for (std::size_t r = 0; r < 5; ++r) qt[(e * 5 + r) * 4 + m] = std::tanh(x[(e * 4 + m) * 5 + r]);
            return kr_reference(L["pu"], false, qt, L["w"], b, 5, 3, 4, 6, identity);
        };
        test::check_forward<program<double, mixed>>(batch, 1e-12, ref);
        test::check_forward<program<float, mixed>>(batch, 1e-5, ref);
        auto tref = [](leaves& L, std::size_t b, bool prepare) {
            if (prepare) return vec{};
            const vec &x = L["x"], &s = L["s"];
            vec out(b * 24);
            for (std::size_t e = 0; e < b; ++e)
                for (std::size_t u = 0; u < 2; ++u)
                    for (std::size_t i = 0; i < 4; ++i)
                        for (std::size_t j = 0; j < 3; ++j)
                            out[e * 24 + u * 12 + i * 3 + j] = std::tanh(x[e * 24 + u * 12 + j * 4 + i]) * s[i * 3 + j];
            return out;
        };
        test::check_forward<program<double, tr>>(batch, 1e-12, tref);
    }
    test::check_derivatives<grad_program<double, mixed>, jvp_program<double, mixed>>(3);
    test::check_derivatives<grad_program<double, tr>, jvp_program<double, tr>>(2);
}

namespace {
// a scalar loss: the product's cotangent is the same for every example (unbatched), so the
// kernels read it broadcast, and the weight gradient is summed over the batch once
constexpr expr loss = sum(batch_sum(khatri_rao_matmul(tanh(input<"p", 3, 4>), input<"q", 3, 5>, param<"w", 20, 6>) *
                                    param<"s", 3, 6>));
} // namespace

TEST_CASE("khatri_rao_matmul: a scalar loss (an unbatched cotangent; the weight gradient summed once)") {
    test::check_derivatives<grad_program<double, loss>, jvp_program<double, loss>>(1);
    test::check_derivatives<grad_program<double, loss>, jvp_program<double, loss>>(4);
    test::check_backends<grad_program<double, loss>>(70, 1e-11);
}

TEST_CASE("khatri_rao_matmul: the R x H x M product is absent from the forward, gradient and JVP plans") {
    using C = kr_case<16, 39, 39, 128>;
    using F = program<float, C::y>;
    using G = grad_program<float, C::y>;
    using J = jvp_program<float, C::y>;
    constexpr std::size_t Z = 16 * 39 * 39;
    // no per-example value (a node, so no workspace buffer) as large as the product
    CHECK(largest_batched_value<F>() < Z);
    CHECK(largest_batched_value<G>() < Z);
    CHECK(largest_batched_value<J>() < Z);
    CHECK(F::pl.tile_elems < Z);
    CHECK(G::pl.tile_elems < Z);
    CHECK(J::pl.tile_elems < Z);
    // the gradient program: one forward product, one pass for both input gradients (kr_dual) and
    // one Gram product for the weight; no einsum anywhere
    CHECK(count_op(G::tab, opcode::kr_matmul) == 1);
    CHECK(count_op(G::tab, opcode::kr_dual) == 1);
    CHECK(count_op(G::tab, opcode::kr_gram) == 1);
    CHECK(count_op(G::tab, opcode::contract) == 0);
    CHECK(count_op(F::tab, opcode::contract) == 0);
    // forward mode: the primal, one product for dP (*) Q + P (*) dQ, and the dW term
    CHECK(count_op(J::tab, opcode::kr_matmul) == 2);
    CHECK(count_op(J::tab, opcode::kr_matmul2) == 1);
    CHECK(count_op(J::tab, opcode::contract) == 0);
    // and it runs: CPU against the reference backend at W2's size
    test::check_backends<G>(3, 2e-5);
}
