// Compile-cost model: a two-task MMoE ranking model (issue 12). MMoE over a 256-wide input, 4
// experts [128, 64] relu, top-2 gates per task, two towers MLP [32, 1] (Monolith's defaults:
// weight norm on), objective = 1.0 BCE(click) + 0.5 BCE(like) (sigmoid cross-entropy, batch
// means) + the CV^2 load-balance loss of both gates + the penalty. TRAIN = 0: scoring program
// (mode::predict, both tasks' probabilities); TRAIN = 1: training program. The model is one
// constexpr function building in place (no graph copies per layer).
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/mmoe.hpp"
#include "ctrec/train/losses.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
using ctrec::make_dims;
using ctrec::layers::mode;

constexpr mode M = TRAIN ? mode::train : mode::predict;

// The model's result plus the values the objective reads besides out().
struct two_task : fl::result {
    std::uint32_t logit_ids[2]{}, cv2_id = 0;
    constexpr f::expr logit(int t) const { return {g, logit_ids[t]}; }
    constexpr f::expr cv2() const { return {g, cv2_id}; }
};

constexpr two_task mmoe_model() {
    two_task m;
    f::val x = m.input("x", make_dims<256>());
    constexpr fl::mmoe_config cfg{.num_tasks = 2,
                                  .expert_output_dims = {128, 64},
                                  .expert_activations = fl::act_relu,
                                  .gate_type = fl::mmoe_gate::topk,
                                  .top_k = 2,
                                  .num_experts = 4};
    const fl::mmoe_vals v = fl::mmoe_values(m, "mmoe", cfg, M, x);
    constexpr fl::mlp_config<2> tower{.output_dims = {32, 1}};
    m.logit_ids[0] = fl::mlp(m, "tower_click", tower, M, v.tasks[0]).id;
    m.logit_ids[1] = fl::mlp(m, "tower_like", tower, M, v.tasks[1]).id;
    m.cv2_id = v.cv2.id;
    m.set_out(f::val{&m.g, m.logit_ids[0]});
    return m;
}
constexpr auto model = mmoe_model();
constexpr auto click = f::input<"click", 1>;
constexpr auto like = f::input<"like", 1>;
constexpr auto loss = f::weighted_sum({f::batch_mean(f::sigmoid_cross_entropy(model.logit(0), click)),
                                       f::batch_mean(f::sigmoid_cross_entropy(model.logit(1), like))},
                                      {1.0, 0.5}) +
                      f::sum(model.cv2()) + model.penalty();
constexpr auto p_click = f::sigmoid(model.logit(0));
constexpr auto p_like = f::sigmoid(model.logit(1));
#if TRAIN
using P = f::train_program<float, loss, model>;
#else
using P = f::program<float, p_click, p_like>;
#endif

int main() {
    P::parameters p;
    fl::initialize<model>(p, 1);
    P::workspace ws;
    std::vector<float> xs(256 * 8, 0.1f), cs(8, 1.f), ls(8, 0.f), y0(8), y1(8);
    P::io io;
    io.input<"x">(xs.data());
#if TRAIN
    P::gradients g;
    io.input<"click">(cs.data()).input<"like">(ls.data()).output<0>(y0.data());
    g.bind(io);
#else
    io.output<0>(y0.data()).output<1>(y1.data());
#endif
    P::run(p, ws, 8, io);
    return y0[0] > 0;
}
