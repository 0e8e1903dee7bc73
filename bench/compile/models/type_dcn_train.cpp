// Compile-cost model (type core): mixed DCN (4 experts, rank 4, D = 16, N = 13) training
// program, LAYERS cross layers, KN = kernel norm. Built, not run, by bench/compile/compile_cost.py.
#include <vector>

#include "ctrec/layers/dcn.hpp"
#include "ctrec/train/train_program.hpp"

using namespace ctrec;
constexpr auto x = input<"x", 13, 16>;
constexpr auto label = input<"label", 1>;
constexpr layers::dcn_config cfg{.type = layers::dcn_type::mixed, .layer_num = LAYERS, .num_experts = 4, .low_rank = 4,
                                 .allow_kernel_norm = KN};
constexpr auto r = layers::dcn<"dcn", cfg>(x);
constexpr auto logit = sum(r.out);
constexpr auto loss = batch_mean(log1p(exp(logit)) - sum(label) * logit);
using Step = train_program<float, decltype(loss)>;

int main() {
    Step::parameters p;
    Step::workspace ws;
    Step::gradients g;
    std::vector<float> xs(13 * 16 * 8, 0.1f), ls(8, 1.f);
    float l = 0;
    Step::io io;
    io.input<"x">(xs.data()).input<"label">(ls.data()).output<0>(&l);
    g.bind(io);
    Step::run(p, ws, 8, io);
    return l > 0;
}
