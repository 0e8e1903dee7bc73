// Issue 15, per layer (part 1: dense, MLP, normalisation, DCN, and the realistic DIN + CIN +
// DCN + MLP model): an example's outputs are bit-identical whatever batch it is scored in, and
// the compiled forward and backward programs allocate nothing after setup
// (tests/reliability_support.hpp). Shapes are chosen to reach every GEMM path: K above the
// k-block (384), widths that are not multiples of the SIMD width, a batch of 70 across tiles.
#define CTREC_TEST_COUNT_ALLOCATIONS
#include "reliability_support.hpp"

#include "../examples/m1_model.hpp"
#include "ctrec/ctrec.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using fl::dcn_type;

namespace {
constexpr auto xw = f::input<"x", 448>;
constexpr auto mlp_wide = fl::mlp<"mlp", cl::mlp_config<3>{.output_dims = {100, 37, 1}}, cl::mode::predict>(xw).out();
constexpr cl::mlp_config<3> bn_cfg{.output_dims = {40, 17, 2}, .use_weight_norm = false, .enable_batch_normalization = true};
constexpr auto mlp_bn = fl::mlp<"mlp", bn_cfg, cl::mode::predict>(f::input<"x", 21>).out();
constexpr auto dense_kn = fl::dense<"d", {.units = 19, .activation = cl::act_sigmoid, .allow_kernel_norm = true,
                                          .kernel_norm_trainable = true}>(f::input<"x", 2, 33>).out();
constexpr auto ln_y = fl::layer_norm<"ln", {}>(f::input<"x", 3, 35>).out();
constexpr auto x2 = f::input<"x", 3, 45>;
constexpr auto dcn_v = fl::dcn<"dcn", {.type = dcn_type::vector, .layer_num = 2, .allow_kernel_norm = true}>(x2).out();
constexpr auto dcn_m = fl::dcn<"dcn", {.type = dcn_type::matrix, .layer_num = 2}>(f::input<"x", 445>).out();
constexpr auto dcn_x = fl::dcn<"dcn", {.type = dcn_type::mixed, .layer_num = 3, .num_experts = 4, .low_rank = 24}>(
                           f::input<"x", 445>).out();
} // namespace

TEST_CASE("MLP over a wide input (k blocks, odd widths)") { test::check_layer_guarantees<mlp_wide>(); }
TEST_CASE("MLP with BatchNorm, predict") { test::check_layer_guarantees<mlp_bn>(); }
TEST_CASE("Dense with kernel norm") { test::check_layer_guarantees<dense_kn>(); }
TEST_CASE("LayerNorm") { test::check_layer_guarantees<ln_y>(); }
TEST_CASE("DCN vector (per-row)") { test::check_layer_guarantees<dcn_v>(); }
TEST_CASE("DCN matrix, 445 wide") { test::check_layer_guarantees<dcn_m>(); }
TEST_CASE("DCN mixed, 3 layers, 4 experts") { test::check_layer_guarantees<dcn_x>(); }

TEST_CASE("the realistic model (DIN + CIN + DCN + MLP, examples/m1_model.hpp): scoring") {
    // the report: 14 of 256 examples scored differently (up to 6e-8) at different batch sizes
    test::check_batch_invariance<m1::scorer>(256);
    test::check_batch_invariance<m1::scorer>(70);
    test::check_no_allocation<m1::scorer>(70);
}

TEST_CASE("the realistic model: a training step allocates nothing") { test::check_no_allocation<m1::train_step>(64); }
