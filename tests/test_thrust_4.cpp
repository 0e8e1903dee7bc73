// The Thrust backend against the CPU backend (see test_thrust.cpp): CIN (the Khatri-Rao nodes
// kr_matmul, kr_dual, kr_matmul2 and the batch-summed kr_gram), AutoInt (attention and its
// derivative nodes), DIN (with a mask, and with a shared user sequence); CIN's and DIN's gradients
// across chunks. DIEN is in test_thrust_5.cpp (compile time).
#include <doctest/doctest.h>

#include "ctrec/layers/autoint.hpp"
#include "ctrec/layers/cin.hpp"
#include "ctrec/layers/din.hpp"
#include "thrust_support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using thrust_test::same;
using thrust_test::same_all;

namespace {

constexpr auto cin_tanh = fl::cin<"c", cl::cin_config<2>{.hidden_uints = {3, 2}, .activation = cl::act_tanh}>(f::input<"x", 4, 5>).out();
constexpr auto cin_relu = fl::cin<"c", cl::cin_config<3>{.hidden_uints = {4, 3, 2}, .activation = cl::act_relu}>(f::input<"x", 3, 4>).out();

constexpr auto ai_y = fl::autoint<"auto_int", {.layer_num = 2}>(f::input<"x", 6, 4>).out();

constexpr auto nq = f::input<"q", 3>;
constexpr auto nk = f::input<"k", 5, 3>;
constexpr cl::din_config<3> din_relu_cfg{.hidden_units = {6, 4, 1}, .activation = cl::act_relu};
constexpr cl::din_config<2> din_masked_cfg{.hidden_units = {4, 1}, .activation = cl::act_sigmoid, .mode = cl::din_mode::weighted, .decay = true};
constexpr auto din_plain = fl::din<"din", din_relu_cfg>(nq, nk).out();
constexpr auto din_masked = fl::din<"din", din_masked_cfg>(nq, nk, f::input<"mask", 5>).out();
constexpr auto din_shared = fl::din<"din", din_relu_cfg>(f::input<"q", 4>, f::shared_input<"k", 6, 4>, f::shared_input<"mask", 6>).out();

} // namespace

TEST_CASE("thrust: CIN") {
    same_all<cin_tanh>();
    same_all<cin_relu>();
    using G = f::grad_program<double, cin_relu>;
    same<G, thrust_test::chunked<G, 3>>(70);
}

TEST_CASE("thrust: AutoInt") { same_all<ai_y>(); }

TEST_CASE("thrust: DIN, masked, shared user sequence") {
    same_all<din_plain>();
    same_all<din_masked>();
    same_all<din_shared>();
    using G = f::grad_program<double, din_shared>;
    same<G, thrust_test::chunked<G, 4>>(70);
}
