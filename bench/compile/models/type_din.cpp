// Compile-cost model (type core): DIN (H = 32, T = 50, MLP [80, 40, 1] relu), scoring.
#include <vector>

#include "ctrec/layers/din.hpp"
#include "ctrec/program.hpp"

using namespace ctrec;
constexpr auto q = input<"q", 32>;
constexpr auto k = input<"k", 50, 32>;
constexpr auto r = layers::din<"din", layers::din_config<3>{.hidden_units = {80, 40, 1}, .activation = layers::act_relu}>(q, k);
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
