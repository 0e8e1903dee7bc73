// DIEN (spec 2.3) derivatives with a mask (AUGRU, tanh): finite differences in float64 for q,
// k and every variable, JVP, duality. (monolith_compat's check is in test_dien_pad.cpp.)
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
template <class R>
using out_t = std::remove_cvref_t<decltype(R::out)>;
// check_derivatives draws leaves uniform in [-1, 1]; the mask becomes 0 / 1
double shape_mask(std::string_view n, double v) { return n == "mask" ? (v > -0.4 ? 1.0 : 0.0) : v; }
} // namespace

TEST_CASE("dien: derivatives with a mask") {
    test::check_ad<out_t<decltype(dien<"d", {.num_units = U, .att_type = agru_att::augru, .activation = act_tanh}>(q, k, mask))>>(
        B, shape_mask);
}

