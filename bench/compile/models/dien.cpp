// Compile-cost model: DIEN (T = 50, E = U = 32, AUGRU).
// TRAIN = 0: scoring program; TRAIN = 1: training program (BCE on the sum of the evolved state,
// plus the penalty). Both recurrences are unrolled (no scan node on this core yet): the model
// is 1778 nodes, the training table 5111, both within the default CTREC_MAX_NODES (8192).
// TRAIN = 1 exceeds GCC's default -fconstexpr-ops-limit in make_plan's buffer assignment.
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/dien.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
using ctrec::make_dims;

#ifndef TRAIN
#define TRAIN 0
#endif

constexpr fl::result dien_model() {
    fl::result m;
    f::val q = m.input("q", make_dims<32>()), k = m.input("k", make_dims<50, 32>());
    m.set_out(fl::dien(m, "dien", {.num_units = 32, .att_type = fl::agru_att::augru}, q, k));
    return m;
}
constexpr auto model = dien_model();
constexpr auto y = model.out();
#if TRAIN
constexpr auto logit = f::sum(y);
constexpr auto label = f::input<"label", 1>;
constexpr auto loss = f::batch_mean(f::log1p(f::exp(logit)) - label * logit) + model.penalty();
using P = f::train_program<float, loss, model>;
#else
using P = f::program<float, y>;
#endif

int main() {
    P::parameters p;
    fl::initialize<model>(p, 1);
    P::workspace ws;
    std::vector<float> qs(32 * 8, 0.1f), ks(50 * 32 * 8, 0.1f), ls(8, 1.f), out(32 * 8);
    P::io io;
    io.input<"q">(qs.data()).input<"k">(ks.data());
#if TRAIN
    P::gradients g;
    io.input<"label">(ls.data()).output<0>(out.data());
    g.bind(io);
#else
    io.output<0>(out.data());
#endif
    P::run(p, ws, 8, io);
    return out[0] > 0;
}
