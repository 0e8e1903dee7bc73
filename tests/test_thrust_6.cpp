// The Thrust backend against the CPU backend (see test_thrust.cpp): the layers of session 8,
// MMoE (noisy top-k in train, softmax in predict), SNR (sampled gates), LHUCTower,
// LogitCorrection and the NAS layers in train mode (their noise is a shared random leaf, so
// the backends must draw the same numbers), forward, gradient and JVP at batches 1, 5 and 70.
#include <doctest/doctest.h>

#include "ctrec/layers/lhuc_tower.hpp"
#include "ctrec/layers/logit_correction.hpp"
#include "ctrec/layers/mixed_nas.hpp"
#include "ctrec/layers/mmoe.hpp"
#include "ctrec/layers/nas_gating.hpp"
#include "ctrec/layers/simple_nas.hpp"
#include "ctrec/layers/snr.hpp"
#include "thrust_support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
using fl::mode;
using thrust_test::same_all;

namespace {

constexpr auto xe = f::input<"xe", 4>;
constexpr auto xg = f::input<"xg", 3>;
constexpr fl::mmoe_config noisy{.num_tasks = 2, .expert_output_dims = {5, 3}, .expert_activations = fl::act_relu,
                                .gate_type = fl::mmoe_gate::noise_topk, .top_k = 2, .num_experts = 4};
constexpr auto mmoe_noisy = fl::mmoe<"m", noisy, mode::train>(xe, xg);
constexpr auto mmoe_noisy_y = mmoe_noisy.out();
constexpr auto mmoe_noisy_cv2 = f::sum(mmoe_noisy.cv2()) + f::sum(mmoe_noisy_y);
constexpr fl::mmoe_config soft{.num_tasks = 3, .expert_output_dims = {{6, 4}, {4}}, .expert_activations = fl::act_tanh};
constexpr auto mmoe_soft_y = fl::mmoe<"m", soft, mode::predict>(xe).out();

constexpr auto snr_y = fl::snr<"snr", {.num_out_subnet = 2, .out_subnet_dim = 3}>({xe, f::input<"x2", 4>}).out();

constexpr fl::lhuc_tower_config<2> lhuc_cfg{.output_dims = {4, 2}, .lhuc_output_dims = {{{3, 4}, {2}}}};
constexpr auto lhuc_y = fl::lhuc_tower<"lhuc", lhuc_cfg, mode::predict>(f::input<"xd", 5>, xg).out();

constexpr auto lc_y = fl::logit_correction<"lc", {.activation = fl::act_tanh, .sample_bias = true}>(
                          fl::result(f::input<"l", 3>), f::exp(f::input<"r", 3>))
                          .out();

constexpr auto x10 = f::input<"x", 10>;
constexpr auto gating_y = fl::nas_gating<"g", {.segment_sizes = {3, 1, 4, 2}}>(x10).out();
constexpr auto simple_y = fl::simple_nas<"s", {.segment_sizes = {3, 1, 4, 2}}>(x10).out();
constexpr fl::mixed_nas_config mixed{.segment_sizes = {{0, 2, 4}, {1, 3, 6}},
                                     .embedding_share_mode = fl::nas_share_mode::random, .mask_seed = 7};
constexpr auto mixed_y = fl::mixed_nas<"mx", mixed>(x10).out();

} // namespace

TEST_CASE("thrust: MMoE (noisy top-k in train with its CV^2 loss, softmax in predict)") {
    for (std::uint64_t seed : {1u, 2u}) same_all<mmoe_noisy_cv2>(seed);
    same_all<mmoe_soft_y>();
}

TEST_CASE("thrust: SNR (sampled gates), LHUCTower, LogitCorrection") {
    for (std::uint64_t seed : {3u, 4u}) same_all<snr_y>(seed);
    same_all<lhuc_y>();
    same_all<lc_y>();
}

TEST_CASE("thrust: NAS gating, SimpleNas (Gumbel), MixedNAS (random masks, discrete) in train mode") {
    for (std::uint64_t seed : {5u, 6u}) {
        same_all<gating_y>(seed);
        same_all<simple_y>(seed);
        same_all<mixed_y>(seed);
    }
}
