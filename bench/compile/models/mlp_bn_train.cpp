// Compile-cost model: MLP of DEPTH layers of 64 with BatchNorm, training
// program (as type_mlp_bn_train.cpp).
#include <array>
#include <vector>

#include "ctrec/core.hpp"
#include "ctrec/layers/mlp.hpp"
#include "ctrec/train/train_program.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
constexpr auto x = f::input<"x", 32>;
constexpr auto label = f::input<"label", 1>;
constexpr auto widths = [] {
    std::array<std::size_t, DEPTH> d{};
    for (auto& v : d) v = 64;
    d[DEPTH - 1] = 1;
    return d;
}();
constexpr ctrec::layers::mlp_config<DEPTH> cfg{.output_dims = widths, .enable_batch_normalization = true};
constexpr auto net = fl::mlp<"tower", cfg, ctrec::layers::mode::train>(x);
constexpr auto out = net.out();
constexpr auto loss = f::batch_mean(f::log1p(f::exp(out)) - label * out) + net.penalty();
using Step = f::train_program<float, loss, net>;

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
