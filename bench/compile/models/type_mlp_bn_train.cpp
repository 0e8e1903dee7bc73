// Compile-cost model (type core): MLP of DEPTH layers of 64 with BatchNorm, training program.
#include <vector>

#include "ctrec/layers/mlp.hpp"
#include "ctrec/train/train_program.hpp"

using namespace ctrec;
constexpr auto x = input<"x", 32>;
constexpr auto label = input<"label", 1>;
constexpr auto dims_of = [] {
    std::array<std::size_t, DEPTH> d{};
    for (auto& v : d) v = 64;
    d[DEPTH - 1] = 1;
    return d;
}();
constexpr layers::mlp_config<DEPTH> cfg{.output_dims = dims_of, .enable_batch_normalization = true};
constexpr auto net = layers::mlp<"tower", cfg, layers::mode::train>(x);
constexpr auto loss = batch_mean(log1p(exp(net.out)) - label * net.out) + net.penalty;
using Step = train_program<float, decltype(loss), decltype(net)::updates>;

int main() {
    Step::parameters p;
    Step::workspace ws;
    Step::gradients g;
    std::vector<float> xs(32 * 8, 0.1f), ls(8, 1.f);
    float l = 0;
    Step::io io;
    io.input<"x">(xs.data()).input<"label">(ls.data()).output<0>(&l);
    g.bind(io);
    Step::run(p, ws, 8, io);
    return l > 0;
}
