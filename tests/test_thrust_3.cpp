// The Thrust backend against the CPU backend (see test_thrust.cpp): GroupInt (multiply, and
// attention with a penalty), AllInt, CDot, CAN (sequence and unstacked), SeNet, iRazor (output and
// its auxiliary nas_loss), DMR_U2I (batched and shared user sequence).
#include <doctest/doctest.h>

#include "ctrec/layers/allint.hpp"
#include "ctrec/layers/can.hpp"
#include "ctrec/layers/cdot.hpp"
#include "ctrec/layers/dmr_u2i.hpp"
#include "ctrec/layers/group_int.hpp"
#include "ctrec/layers/irazor.hpp"
#include "ctrec/layers/senet.hpp"
#include "thrust_support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using thrust_test::same;
using thrust_test::same_all;

namespace {

constexpr std::size_t K = 4;
constexpr auto gi_mul = fl::group_int<"gi", cl::group_int_config<>{}>({f::input<"l", 3, K>}, {f::input<"r0", K>, f::input<"r1", K>}).out();
constexpr cl::group_int_config<2> att_cfg{.use_attention = true, .attention_units = {3, 1}, .activation = cl::act_tanh,
                                          .regularizer = cl::regularizer(0.0, 0.5)};
constexpr auto gi_att_r = fl::group_int<"ga", att_cfg>({f::input<"l", 3, K>}, {f::input<"r", 2, K>});
constexpr auto gi_att = gi_att_r.out();
constexpr auto gi_att_loss = f::batch_mean(f::sum(f::tanh(gi_att))) + gi_att_r.penalty();

constexpr auto ai_y = fl::allint<"ai", {.cmp_dim = 3}>(f::input<"x", 4, 5>).out();

constexpr auto cd_y = fl::cdot<"c", cl::cdot_config<2>{.project_dim = 2, .compress_units = {5, 4}}>(f::input<"x", 4, 3>).out();

constexpr std::size_t D = 3;
constexpr auto can_tt = fl::can<"can", {.activation = cl::act_tanh, .is_seq = true}>(f::input<"user", 2, 3, D>,
                                                                                      f::input<"item", 2 * (D * D + D)>).out();
constexpr auto can_ff = fl::can<"can", {.layer_num = 3, .activation = cl::act_tanh, .is_stacked = false}>(
    f::input<"user", D>, f::input<"item", 3 * (D * D + D)>).out();

constexpr auto se_y = fl::senet<"s", {.num_feature = 4, .cmp_dim = 2}>(f::input<"x", 4, 3>).out();

constexpr auto ir = fl::irazor<"r", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08}>(f::input<"x", 3, 10>, f::param<"fw", 3>);
constexpr auto ir_y = ir.out();
constexpr auto ir_loss = f::batch_mean(f::sum(ir_y * ir_y)) + ir.nas_loss();

constexpr auto dmr_y = fl::dmr_u2i<"d", {.cmp_dim = 4}>(f::input<"item", 6>, f::input<"seq", 5, 3>).out();
constexpr auto dmr_shared = fl::dmr_u2i<"dmr", {.cmp_dim = 3, .activation = cl::act_tanh}>(f::input<"item", 5>, f::shared_input<"seq", 6, 4>).out();

} // namespace

TEST_CASE("thrust: GroupInt, AllInt") {
    same_all<gi_mul>();
    same_all<gi_att>();
    for (std::size_t batch : {1, 70}) same<f::grad_program<double, gi_att_loss>>(batch);
    same_all<ai_y>();
}

TEST_CASE("thrust: CDot, CAN") {
    same_all<cd_y>();
    same_all<can_tt>();
    same_all<can_ff>();
}

TEST_CASE("thrust: SeNet, iRazor") {
    same_all<se_y>();
    same_all<ir_y>();
    for (std::size_t batch : {1, 70}) same<f::grad_program<double, ir_loss>>(batch);
}

TEST_CASE("thrust: DMR_U2I, batched and shared user sequence") {
    same_all<dmr_y>();
    same_all<dmr_shared>();
}
