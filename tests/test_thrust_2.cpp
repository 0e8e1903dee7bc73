// The Thrust backend against the CPU backend (see test_thrust.cpp): MLP with BatchNorm in train
// mode (batch statistics: several passes) and predict mode, MLP with weight norm (derived
// parameters), DCN vector (kernel norm), matrix, mixed (kernel norm) and mixed with dropout (per
// example random leaves, several seeds); batches across chunks and float programs.
#include <doctest/doctest.h>

#include <cstdint>

#include "ctrec/layers/dcn.hpp"
#include "ctrec/layers/mlp.hpp"
#include "thrust_support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using cl::dcn_type;
using thrust_test::same;
using thrust_test::same_all;

namespace {

constexpr auto xm = f::input<"x", 4>;
constexpr cl::mlp_config<3> bn_cfg{.output_dims = {5, 4, 2}, .use_weight_norm = false, .enable_batch_normalization = true};
constexpr auto mlp_tr = fl::mlp<"mlp", bn_cfg, cl::mode::train>(xm).out();
constexpr auto mlp_pr = fl::mlp<"mlp", bn_cfg, cl::mode::predict>(xm).out();
constexpr auto mlp_wn = fl::mlp<"mlp", cl::mlp_config<2>{.output_dims = {4, 2}, .activation = cl::act_tanh}, cl::mode::predict>(xm).out();

constexpr auto x2 = f::input<"x", 3, 5>;
constexpr auto dcn_v = fl::dcn<"dcn", {.type = dcn_type::vector, .layer_num = 2, .allow_kernel_norm = true}>(x2).out();
constexpr auto dcn_m = fl::dcn<"dcn", {.type = dcn_type::matrix, .layer_num = 2}>(x2).out();
constexpr auto dcn_x = fl::dcn<"dcn", {.type = dcn_type::mixed, .layer_num = 2, .num_experts = 2, .low_rank = 3, .allow_kernel_norm = true}>(x2).out();
constexpr auto dcn_drop = fl::dcn<"dcn", {.type = dcn_type::mixed, .layer_num = 2, .num_experts = 2, .low_rank = 3, .use_dropout = true, .keep_prob = 0.6},
                                  cl::mode::train>(x2).out();

} // namespace

TEST_CASE("thrust: MLP with BatchNorm (train, predict), MLP with weight norm") {
    same_all<mlp_tr>();
    same_all<mlp_pr>();
    same_all<mlp_wn>();
}

TEST_CASE("thrust: DCN vector, matrix, mixed, with dropout") {
    same_all<dcn_v>();
    same_all<dcn_m>();
    same_all<dcn_x>();
    for (std::uint64_t seed : {0, 7, 123456789}) same_all<dcn_drop>(seed);
}

TEST_CASE("thrust: MLP and DCN across chunks, in float") {
    using M = f::grad_program<double, mlp_tr>;
    for (std::size_t batch : {4, 70}) same<M, thrust_test::chunked<M, 3>>(batch);
    using Dr = f::grad_program<double, dcn_drop>;
    same<Dr, thrust_test::chunked<Dr, 4>>(70, 5);
    for (std::size_t batch : {1, 70}) {
        same<f::program<float, mlp_tr>>(batch, 0, 1e-5);
        same<f::grad_program<float, dcn_x>>(batch, 0, 1e-5);
    }
}
