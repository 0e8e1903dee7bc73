// DIEN (spec 2.3) derivatives without a mask: reverse mode vs central finite differences in
// float64 for q, k and every variable, through both recurrences and the softmax; forward mode
// vs a directional difference; JVP/VJP duality (check_derivatives) - AGRU (relu) and AUGRU
// (tanh). The masked / monolith_compat checks are in test_dien_ad_mask.cpp and the gradient
// padding invariance in test_dien_pad.cpp (split for compile time).
#include "dien_reference.hpp"

#include "ctrec/layers/dien.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
constexpr std::size_t T = 4, E = 3, U = 5, B = 3;
constexpr auto q = input<"q", U>;
constexpr auto k = input<"k", T, E>;
template <class R>
using out_t = std::remove_cvref_t<decltype(R::out)>;
} // namespace

TEST_CASE("dien: derivatives, AGRU (relu, the default) and AUGRU (tanh)") {
    test::check_ad<out_t<decltype(dien<"d", {.num_units = U}>(q, k))>>(B);
    test::check_ad<out_t<decltype(dien<"d", {.num_units = U, .att_type = agru_att::augru, .activation = act_tanh}>(q, k))>>(B);
}

