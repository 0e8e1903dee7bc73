// The Thrust backend against the CPU backend (see test_thrust.cpp): DIEN, small (T = 3 steps of
// E = 3, U = 4 units): AGRU with relu, AUGRU with tanh and a mask; the recurrence is unrolled,
// so each program is a few hundred steps.
#include <doctest/doctest.h>

#include "ctrec/layers/dien.hpp"
#include "thrust_support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using thrust_test::same_all;

namespace {

constexpr std::size_t T = 3, E = 3, U = 4;
constexpr auto dq = f::input<"q", U>;
constexpr auto dk = f::input<"k", T, E>;
constexpr auto dien_agru = fl::dien<"d", {.num_units = U}>(dq, dk).out();
constexpr auto dien_augru = fl::dien<"d", {.num_units = U, .att_type = fl::agru_att::augru, .activation = cl::act_tanh}>(dq, dk, f::input<"mask", T>).out();

} // namespace

TEST_CASE("thrust: DIEN (AGRU, AUGRU with a mask)") {
    same_all<dien_agru>();
    same_all<dien_augru>();
}
