// khatri_rao_matmul: out[r, j] = sum_{h, m} P[r, h] Q[r, m] W[h * M + m, j], the product
// P[r, h] Q[r, m] never stored. Checked against naive loops (k chunks, column and row
// edges, several tiles), derivatives of all three operands (the two input-gradient roles
// and the batch-summed Gram product), and plan inspection: no R x H x M buffer.
#include "support.hpp"

using namespace ctrec;
using test::leaf_value;

namespace {
template <std::size_t R, std::size_t H, std::size_t M, std::size_t J>
struct kr_case {
    static constexpr auto p = tanh(input<"p", R, H>);  // computed operands, as in CIN
    static constexpr auto q = input<"q", R, M>;
    static constexpr auto w = param<"w", H * M, J>;
    using E = std::remove_cvref_t<decltype(khatri_rao_matmul(p, q, w))>;
    static std::vector<double> reference(std::size_t batch) {
        std::vector<double> out(batch * R * J, 0.0);
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t r = 0; r < R; ++r)
                for (std::size_t h = 0; h < H; ++h)
                    for (std::size_t m = 0; m < M; ++m) {
                        const double z = std::tanh(leaf_value("p", (b * R + r) * H + h)) * leaf_value("q", (b * R + r) * M + m);
                        for (std::size_t j = 0; j < J; ++j) out[(b * R + r) * J + j] += z * leaf_value("w", (h * M + m) * J + j);
                    }
        return out;
    }
    template <class T>
    static void check_forward(std::size_t batch, double tol) {
        auto got = test::run_all<program<T, E>>(batch)[0];
        auto want = reference(batch);
        REQUIRE(got.size() == want.size());
        for (std::size_t i = 0; i < got.size(); ++i) CHECK(double(got[i]) == doctest::Approx(want[i]).epsilon(tol));
    }
};
template <class D>
bool has_buffer_of_size_at_least(const D& data, std::size_t n) {
    for (const auto& r : data.rec)
        if (r.batched && r.shape.size() >= n) return true;  // per-example values (W itself is bigger)
    return false;
}
} // namespace

TEST_CASE_TEMPLATE("khatri_rao_matmul: forward against naive loops", T, float, double) {
    const double tol = sizeof(T) == 4 ? 1e-4 : 1e-12;
    kr_case<3, 4, 5, 7>::check_forward<T>(2, tol);       // narrower than one vector block
    kr_case<5, 20, 17, 70>::check_forward<T>(3, tol);    // two k chunks (340), a column edge (70 = 64 + 6)
    kr_case<16, 12, 9, 128>::check_forward<T>(70, tol);  // W2-like rows, several tiles
    kr_case<3, 2, 300, 20>::check_forward<T>(2, tol);    // b deeper than one strip: partial sums over b
    kr_case<16, 3, 5, 20>::check_forward<T>(9, tol);     // 144 rows: packed strips with a column edge
    kr_case<4, 3, 150, 40>::check_forward<T>(20, tol);   // 80 rows, packed, b deeper than a strip
}

TEST_CASE("khatri_rao_matmul: derivatives of P, Q and W (float64 finite differences, JVP, duality)") {
    test::check_ad<kr_case<3, 4, 5, 7>::E>(3);
    test::check_ad<kr_case<2, 3, 4, 70>::E>(2);  // column edge in the forward, the Gram product and both roles
    test::check_ad<kr_case<1, 2, 3, 300>::E>(2);  // J > kr_dual_max_j: the two input-gradient roles, b (= J) deeper than a strip
    test::check_ad<kr_case<7, 5, 11, 40>::E>(2);  // fused input gradients: row and column edges, runs of a across blocks
}

TEST_CASE("khatri_rao_matmul: P and Q the same node (CIN's first layer) accumulates both gradients") {
    constexpr auto p = tanh(input<"p", 4, 6>);
    constexpr auto w = param<"w", 36, 9>;
    test::check_ad<std::remove_cvref_t<decltype(khatri_rao_matmul(p, p, w))>>(3);
}

TEST_CASE("khatri_rao_matmul: the R x H x M product is absent from the forward and gradient plans") {
    using C = kr_case<16, 39, 39, 128>;
    using F = program<float, C::E>;
    using G = grad_program<float, C::E>;
    constexpr std::size_t Z = 16 * 39 * 39;
    CHECK_FALSE(has_buffer_of_size_at_least(F::plan_type::data, Z));
    CHECK_FALSE(has_buffer_of_size_at_least(G::plan_type::data, Z));
    CHECK(F::plan_type::data.tile_elems < Z);
    CHECK(G::plan_type::data.tile_elems < Z);
    const std::size_t largest = [] {
        std::size_t n = 0;
        for (const auto& r : jvp_program<float, C::E>::plan_type::data.rec)
            if (r.batched && r.shape.size() > n) n = r.shape.size();
        return n;
    }();
    // the gradient program: one forward product, one fused pass for both input gradients
    // (J = 128 <= kr_dual_max_j) and one Gram product
    std::size_t kr = 0, dual = 0, gram = 0;
    for (const auto& r : G::plan_type::data.rec)
        kr += r.k == kind::kr_matmul, dual += r.k == kind::kr_dual, gram += r.k == kind::kr_gram;
    CHECK(kr == 1);
    CHECK(dual == 1);
    CHECK(gram == 1);
    // forward mode: the primal, one product for dP (*) Q + P (*) dQ, and the dW term
    using J = jvp_program<float, C::E>;
    std::size_t jkr = 0, jkr2 = 0;
    for (const auto& r : J::plan_type::data.rec) jkr += r.k == kind::kr_matmul, jkr2 += r.k == kind::kr_matmul2;
    CHECK(jkr == 2);
    CHECK(jkr2 == 1);
    CHECK(largest < Z);
}
