// Issue 15, per layer (part 2: the feature-crossing and sequence layers): batch invariance and
// no allocation after setup, forward and backward (tests/reliability_support.hpp).
#define CTREC_TEST_COUNT_ALLOCATIONS
#include "reliability_support.hpp"

#include "ctrec/ctrec.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;

namespace {
constexpr std::size_t K = 20;
constexpr auto gi_mul = fl::group_int<"gi", cl::group_int_config<>{}>({f::input<"l", 3, K>}, {f::input<"r0", K>, f::input<"r1", K>}).out();
constexpr cl::group_int_config<2> att_cfg{.use_attention = true, .attention_units = {7, 1}, .activation = cl::act_tanh};
constexpr auto gi_att = fl::group_int<"ga", att_cfg>({f::input<"l", 3, K>}, {f::input<"r", 2, K>}).out();
constexpr auto ai_y = fl::allint<"ai", {.cmp_dim = 5}>(f::input<"x", 9, 19>).out();
constexpr auto cd_y = fl::cdot<"c", cl::cdot_config<2>{.project_dim = 6, .compress_units = {33, 17}}>(f::input<"x", 9, 19>).out();
constexpr std::size_t D = 7;
constexpr auto can_y = fl::can<"can", {.activation = cl::act_tanh, .is_seq = true}>(f::input<"user", 2, 5, D>,
                                                                                   f::input<"item", 2 * (D * D + D)>).out();
constexpr auto se_y = fl::senet<"s", {.num_feature = 9, .cmp_dim = 4}>(f::input<"x", 9, 19>).out();
constexpr auto ir_y = fl::irazor<"r", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08}>(f::input<"x", 3, 10>, f::param<"fw", 3>).out();
constexpr auto cin_y = fl::cin<"c", cl::cin_config<2>{.hidden_uints = {13, 9}, .activation = cl::act_relu}>(f::input<"x", 11, 17>).out();
constexpr auto autoint_y = fl::autoint<"auto_int", {.layer_num = 2}>(f::input<"x", 13, 19>).out();
constexpr cl::din_config<3> din_cfg{.hidden_units = {36, 17, 1}, .activation = cl::act_relu};
constexpr auto din_y = fl::din<"din", din_cfg>(f::input<"q", 19>, f::input<"k", 23, 19>, f::input<"mask", 23>).out();
constexpr auto dmr_y = fl::dmr_u2i<"d", {.cmp_dim = 11}>(f::input<"item", 19>, f::input<"seq", 23, 13>).out();
constexpr auto dien_y = fl::dien<"d", {.num_units = 9, .att_type = fl::agru_att::augru, .activation = cl::act_tanh}>(
                            f::input<"q", 9>, f::input<"k", 6, 7>, f::input<"mask", 6>).out();
} // namespace

TEST_CASE("GroupInt, multiply") { test::check_layer_guarantees<gi_mul>(); }
TEST_CASE("GroupInt, attention") { test::check_layer_guarantees<gi_att>(); }
TEST_CASE("AllInt") { test::check_layer_guarantees<ai_y>(); }
TEST_CASE("CDot") { test::check_layer_guarantees<cd_y>(); }
TEST_CASE("CAN, sequence") { test::check_layer_guarantees<can_y>(); }
TEST_CASE("SeNet") { test::check_layer_guarantees<se_y>(); }
TEST_CASE("iRazor") { test::check_layer_guarantees<ir_y>(); }
TEST_CASE("CIN") { test::check_layer_guarantees<cin_y>(); }
TEST_CASE("AutoInt") { test::check_layer_guarantees<autoint_y>(); }
TEST_CASE("DIN with a mask") { test::check_layer_guarantees<din_y>(); }
TEST_CASE("DMR_U2I") { test::check_layer_guarantees<dmr_y>(); }
TEST_CASE("DIEN (AUGRU, mask)") { test::check_layer_guarantees<dien_y>(); }
