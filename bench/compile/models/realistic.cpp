// Compile-cost model: the realistic ranking model of issue 11, as
// type_realistic.cpp. 26 fields x 16, DIN over 50 steps (MLP [80, 40, 1] relu), mixed DCN
// (3 layers, 4 experts, rank 64) over the concatenation, MLP tower [512, 256, 128, 1] with
// BatchNorm, sigmoid / BCE loss. TRAIN = 0: scoring program (mode::predict; BF16 = 1: on
// cpu_bf16_backend); TRAIN = 1: training program. The model is one constexpr function building in place (no graph copies per layer).
#include <vector>

#include "ctrec/ctrec.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
using ctrec::make_dims;
using ctrec::layers::mode;

constexpr mode M = TRAIN ? mode::train : mode::predict;

constexpr fl::result ranking_model() {
    fl::result m;
    f::val fields = m.input("fields", make_dims<26, 16>());
    f::val q = m.input("q", make_dims<16>()), seq = m.input("seq", make_dims<50, 16>());
    f::val att = fl::din(m, "din", ctrec::layers::din_config<3>{.hidden_units = {80, 40, 1}, .activation = ctrec::layers::act_relu}, q, seq);
    f::val feats = f::concat(0, {f::reshape(fields, make_dims<26 * 16>()), att});
    f::val cross = fl::dcn(m, "dcn", {.type = fl::dcn_type::mixed, .layer_num = 3, .num_experts = 4, .low_rank = 64}, M, feats);
    f::val logit = fl::mlp(m, "tower", ctrec::layers::mlp_config<4>{.output_dims = {512, 256, 128, 1}, .enable_batch_normalization = true}, M, cross);
    m.set_out(logit);
    return m;
}
constexpr auto model = ranking_model();
constexpr auto logit = model.out();
constexpr auto label = f::input<"label", 1>;
constexpr auto loss = f::batch_mean(f::log1p(f::exp(logit)) - label * logit) + model.penalty();
constexpr auto score = f::sigmoid(logit);
#if TRAIN
using P = f::train_program<float, loss, model>;
#elif defined(BF16) && BF16
using P = f::program<float, score>::with_backend<f::cpu_bf16_backend>;  // bf16 weights (opt in)
#else
using P = f::program<float, score>;
#endif

int main() {
    P::parameters p;
    fl::initialize<model>(p, 1);
    P::workspace ws;
    std::vector<float> fs(26 * 16 * 8, 0.1f), qs(16 * 8, 0.1f), ss(50 * 16 * 8, 0.1f), ls(8, 1.f), y(8);
    P::io io;
    io.input<"fields">(fs.data()).input<"q">(qs.data()).input<"seq">(ss.data());
#if TRAIN
    P::gradients g;
    io.input<"label">(ls.data()).output<0>(y.data());
    g.bind(io);
#else
    io.output<0>(y.data());
#endif
    P::run(p, ws, 8, io);
    return y[0] > 0;
}
