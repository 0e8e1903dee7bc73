// DIEN (spec 2.3): padding changes no gradient - garbage keys at padded steps give the same
// parameter and query gradients, and the padded keys get exactly zero gradient; derivatives
// under monolith_compat (sigmoid, the mask ignored): finite differences in float64, JVP,
// duality (split from test_dien_ad_mask.cpp for compile time).
#include "dien_reference.hpp"

#include "ctrec/layers/dien.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
constexpr std::size_t T = 4, E = 3, U = 5, B = 3;
constexpr auto q = input<"q", U>;
constexpr auto k = input<"k", T, E>;
constexpr auto mask = input<"mask", T>;
// check_derivatives draws leaves uniform in [-1, 1]; the mask becomes 0 / 1
double shape_mask(std::string_view n, double v) { return n == "mask" ? (v > -0.4 ? 1.0 : 0.0) : v; }
template <class R>
using out_t = std::remove_cvref_t<decltype(R::out)>;
} // namespace

TEST_CASE("dien: padding changes no gradient; padded keys get zero gradient") {
    using O = out_t<decltype(dien<"d", {.num_units = U, .att_type = agru_att::augru, .activation = act_tanh}>(q, k, mask))>;
    using G = grad_program<double, O>;
    auto mask_value = [](std::size_t i) { return i % T == 1 || (i / T == 2 && i % T == 3) ? 0.0 : 1.0; };
    auto clean = [&](std::string_view n, std::size_t i) { return n == "mask" ? mask_value(i) : leaf_value(n, i); };
    auto garbage = [&](std::string_view n, std::size_t i) {
        if (n == "k" && mask_value(i / E) == 0.0) return 30.0 * leaf_value("junk", i) - 4.0;
        return clean(n, i);
    };
    auto a = test::run_all<G>(B, clean), b = test::run_all<G>(B, garbage);
    REQUIRE(a.size() == b.size());
    for (std::size_t o = 0; o < a.size(); ++o) {
        INFO("output " << o);
        test::check_close(b[o], std::vector<double>(a[o].begin(), a[o].end()), 1e-12);
    }
    const auto& gk = b[G::grad<"k">];
    double real_grad = 0;
    for (std::size_t i = 0; i < gk.size(); ++i) {
        if (mask_value(i / E) == 0.0) CHECK(gk[i] == 0.0);
        else real_grad += std::abs(gk[i]);
    }
    CHECK(real_grad > 0);
    // the parameter gradients are not trivially zero
    double gw = 0;
    for (double v : b[G::grad<"d/gru_cell/recurrent_kernel">]) gw += std::abs(v);
    CHECK(gw > 0);
}

TEST_CASE("dien: derivatives under monolith_compat (the mask is ignored)") {
    test::check_ad<out_t<decltype(dien<"d", {.num_units = U, .activation = act_sigmoid, .monolith_compat = true}>(q, k, mask))>>(
        B, shape_mask);
}
