// Compile-cost model (type core): DIEN (T = 50, E = U = 32, AUGRU), scoring.
#include <vector>

#include "ctrec/layers/dien.hpp"
#include "ctrec/program.hpp"

using namespace ctrec;
constexpr auto q = input<"q", 32>;
constexpr auto k = input<"k", 50, 32>;
constexpr auto r = layers::dien<"dien", {.num_units = 32, .att_type = layers::agru_att::augru}>(q, k);
using M = program<float, decltype(r.out)>;

int main() {
    M::parameters p;
    M::workspace ws;
    std::vector<float> qs(32 * 8, 0.1f), ks(50 * 32 * 8, 0.1f), y(32 * 8);
    M::io io;
    io.input<"q">(qs.data()).input<"k">(ks.data()).output<0>(y.data());
    M::run(p, ws, 8, io);
    return y[0] > 0;
}
