// Compile-cost model: the DCN layer (include/ctrec/layers/dcn.hpp) in
// mixed mode (4 experts, rank 4, D = 16, N = 13 rows), LAYERS cross layers, KN = kernel norm on
// every variable; GRAD = 1 builds the training program (BCE loss, the gradient of every trainable
// parameter), GRAD = 0 scoring. Built, not run, by bench/compile/compile_cost.py.
#include <vector>

#include "ctrec/core.hpp"
#include "ctrec/layers/dcn.hpp"
#include "ctrec/train/train_program.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;

constexpr fl::result cross_model() {
    fl::result m;
    f::val x = m.input("x", ctrec::make_dims<13, 16>());
    m.set_out(fl::dcn(m, "dcn", {.type = fl::dcn_type::mixed, .layer_num = LAYERS, .num_experts = 4, .low_rank = 4, .allow_kernel_norm = KN},
                      ctrec::layers::mode::train, x));
    return m;
}
constexpr auto model = cross_model();
constexpr auto out = model.out();
constexpr auto label = f::input<"label", 1>;
constexpr auto logit = f::sum(out);
constexpr auto loss = f::batch_mean(f::log1p(f::exp(logit)) - f::sum(label) * logit);
#if GRAD
using M = f::train_program<float, loss, model>;
#else
using M = f::program<float, out>;
#endif

int main() {
    M::parameters p;
    M::workspace ws;
    std::vector<float> xs(13 * 16 * 8, 0.1f), ls(8, 1.f), scratch(1 << 22);
    M::io io;
    io.input<"x">(xs.data());
#if GRAD
    io.input<"label">(ls.data());
#endif
    for (std::size_t r = 0; r < M::n_outputs; ++r) io.out[r] = scratch.data() + r * 4096;
#if GRAD
    M::run(p, ws, 8, io);
#else
    M::run(p, ws, 8, io);
#endif
    return scratch[0] > 0;
}
