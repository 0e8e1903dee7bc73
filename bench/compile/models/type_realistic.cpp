// Compile-cost model (type core): the realistic ranking model of issue 11. 26 fields x 16,
// DIN over 50 steps (MLP [80, 40, 1] relu), mixed DCN (3 layers, 4 experts, rank 64) over the
// concatenation, MLP tower [512, 256, 128, 1] with BatchNorm, sigmoid / BCE loss.
// TRAIN = 0: scoring program (mode::predict); TRAIN = 1: training program.
#include <vector>

#include "ctrec/layers/dcn.hpp"
#include "ctrec/layers/din.hpp"
#include "ctrec/layers/mlp.hpp"
#include "ctrec/train/train_program.hpp"

using namespace ctrec;
constexpr auto fields = input<"fields", 26, 16>;
constexpr auto q = input<"q", 16>;
constexpr auto seq = input<"seq", 50, 16>;
constexpr auto label = input<"label", 1>;
constexpr auto mode = TRAIN ? layers::mode::train : layers::mode::predict;
constexpr auto att = layers::din<"din", layers::din_config<3>{.hidden_units = {80, 40, 1}, .activation = layers::act_relu}>(q, seq);
constexpr auto feats = concat<0>(reshape<26 * 16>(fields), att.out);
constexpr auto cross = layers::dcn<"dcn", {.type = layers::dcn_type::mixed, .layer_num = 3, .num_experts = 4, .low_rank = 64}, mode>(feats);
constexpr auto tower = layers::mlp<"tower", layers::mlp_config<4>{.output_dims = {512, 256, 128, 1}, .enable_batch_normalization = true}, mode>(cross.out);
constexpr auto loss = batch_mean(log1p(exp(tower.out)) - label * tower.out);
constexpr auto score = sigmoid(tower.out);
#if TRAIN
using M = train_program<float, decltype(loss), decltype(tower)::updates>;
#else
using M = program<float, decltype(score)>;
#endif

int main() {
    M::parameters p;
    M::workspace ws;
    std::vector<float> fs(26 * 16 * 8, 0.1f), qs(16 * 8, 0.1f), ss(50 * 16 * 8, 0.1f), ls(8, 1.f), y(8);
    M::io io;
    io.input<"fields">(fs.data()).input<"q">(qs.data()).input<"seq">(ss.data());
#if TRAIN
    typename M::gradients g;
    io.input<"label">(ls.data()).output<0>(y.data());
    g.bind(io);
#else
    io.output<0>(y.data());
#endif
    M::run(p, ws, 8, io);
    return y[0] > 0;
}
