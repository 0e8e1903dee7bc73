// Issue 15, per layer (part 3: the multi-task and NAS layers): batch invariance and no
// allocation after setup, forward and backward (tests/reliability_support.hpp). Stochastic
// layers run in predict mode for the invariance checks (train-mode noise is drawn per example
// position in the call, by design), and in train mode for the allocation checks.
#define CTREC_TEST_COUNT_ALLOCATIONS
#include "reliability_support.hpp"

#include "ctrec/ctrec.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using fl::mode;

namespace {
constexpr auto xe = f::input<"xe", 37>;
constexpr auto xg = f::input<"xg", 13>;
constexpr fl::mmoe_config noisy{.num_tasks = 2, .expert_output_dims = {40, 17}, .expert_activations = fl::act_relu,
                                .gate_type = fl::mmoe_gate::noise_topk, .top_k = 2, .num_experts = 4};
constexpr auto mmoe_pr = fl::mmoe<"m", noisy, mode::predict>(xe, xg).out();
constexpr auto mmoe_tr = fl::mmoe<"m", noisy, mode::train>(xe, xg);
constexpr auto mmoe_tr_loss = f::sum(mmoe_tr.cv2()) + f::sum(mmoe_tr.out());
constexpr fl::mmoe_config soft{.num_tasks = 3, .expert_output_dims = {{26, 19}, {19}}, .expert_activations = fl::act_tanh};
constexpr auto mmoe_soft = fl::mmoe<"m", soft, mode::predict>(xe).out();
constexpr auto snr_pr = fl::snr<"snr", {.num_out_subnet = 2, .out_subnet_dim = 11}, mode::predict>({xe, f::input<"x2", 37>}).out();
constexpr auto snr_tr = fl::snr<"snr", {.num_out_subnet = 2, .out_subnet_dim = 11}>({xe, f::input<"x2", 37>}).out();
constexpr fl::lhuc_tower_config<2> lhuc_cfg{.output_dims = {24, 3}, .lhuc_output_dims = {{{9, 24}, {3}}}};
constexpr auto lhuc_y = fl::lhuc_tower<"lhuc", lhuc_cfg, mode::predict>(f::input<"xd", 29>, xg).out();
constexpr auto lc_y = fl::logit_correction<"lc", {.activation = fl::act_tanh, .sample_bias = true}>(
                          fl::result(f::input<"l", 3>), f::exp(f::input<"r", 3>)).out();
constexpr auto x30 = f::input<"x", 30>;
constexpr auto gating_y = fl::nas_gating<"g", {.segment_sizes = {9, 1, 14, 6}}, mode::predict>(x30).out();
constexpr auto simple_pr = fl::simple_nas<"s", {.segment_sizes = {9, 1, 14, 6}}, mode::predict>(x30).out();
constexpr fl::mixed_nas_config mixed{.segment_sizes = {{0, 6, 12}, {1, 9, 18}}, .embedding_share_mode = fl::nas_share_mode::random,
                                     .mask_seed = 7};
constexpr auto mixed_y = fl::mixed_nas<"mx", mixed, mode::predict>(x30).out();
} // namespace

TEST_CASE("MMoE, noisy top-k gate (predict; train allocates nothing)") {
    test::check_layer_guarantees<mmoe_pr>();
    test::check_no_allocation<ctrec::grad_program<float, mmoe_tr_loss>>();
}
TEST_CASE("MMoE, softmax gate, per-expert structures") { test::check_layer_guarantees<mmoe_soft>(); }
TEST_CASE("SNR (predict; train allocates nothing)") {
    test::check_layer_guarantees<snr_pr>();
    test::check_no_allocation<ctrec::grad_program<float, snr_tr>>();
}
TEST_CASE("LHUCTower") { test::check_layer_guarantees<lhuc_y>(); }
TEST_CASE("LogitCorrection") { test::check_layer_guarantees<lc_y>(); }
TEST_CASE("NASGating") { test::check_layer_guarantees<gating_y>(); }
TEST_CASE("SimpleNas (predict)") { test::check_layer_guarantees<simple_pr>(); }
TEST_CASE("MixedNAS (random share mode)") { test::check_layer_guarantees<mixed_y>(); }

TEST_CASE("the allocation counter sees operator new and (outside the sanitizers) malloc") {
    const std::size_t a = test::allocations.load();
    auto* v = new std::vector<int>(100);
    delete v;
    CHECK(test::allocations.load() >= a + 2);
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    const std::size_t b = test::allocations.load();
    void* volatile p = std::malloc(64);
    std::free(p);
    void* q = std::aligned_alloc(64, 128);
    std::free(q);
    CHECK(test::allocations.load() == b + 2);
#endif
}
