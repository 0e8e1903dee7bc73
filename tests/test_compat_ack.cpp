// Acknowledged overrides compile and do what the acknowledgement says (issue 15): DIEN under
// monolith_compat with a mask and att_type = augru (acknowledge_compat_overrides) drops the mask
// and runs AGRU, so it computes the default AGRU DIEN without a mask; GroupInt with an ignored
// out_type (acknowledge_ignored_out_type) is the default concat output. Without the
// acknowledgements both are compile errors (tests/compile_fail/dien_compat_mask.cpp, ...).
#include <doctest/doctest.h>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/dien.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;

namespace {

constexpr std::size_t T = 4, E = 3, U = 5;
constexpr auto q = f::input<"q", U>;
constexpr auto k = f::input<"k", T, E>;
constexpr auto mask = f::input<"mask", T>;
constexpr auto acked = fl::dien<"d", {.num_units = U, .att_type = fl::agru_att::augru, .monolith_compat = true,
                                      .acknowledge_compat_overrides = true}>(q, k, mask).out();
constexpr auto plain = fl::dien<"d", {.num_units = U}>(q, k).out();

constexpr auto gi_acked = fl::group_int<"gi", fl::group_int_config<>{.out_type = fl::merge_type::stack,
                                                                     .acknowledge_ignored_out_type = true}>(
    {f::input<"a", 4>, f::input<"b", 4>}, {f::input<"c", 4>}).out();
constexpr auto gi_plain = fl::group_int<"gi", fl::group_int_config<>{}>({f::input<"a", 4>, f::input<"b", 4>}, {f::input<"c", 4>}).out();
static_assert(gi_acked.id == gi_plain.id && gi_acked.shape() == gi_plain.shape());

} // namespace

TEST_CASE("dien: acknowledged monolith_compat with a mask and augru is the unmasked AGRU model") {
    using PA = f::program<double, acked>;
    using PP = f::program<double, plain>;
    CHECK(PA::n_inputs == 2);  // q, k: the mask is dropped
    test::leaves L;
    const auto a = test::run<PA>(L, 3)[0];
    const auto p = test::run<PP>(L, 3)[0];
    REQUIRE(a.size() == 3 * U);
    CHECK(test::max_rel_diff(a, p) == 0.0);
}
