// Compile-cost model: DIN (H = 32, T = 50, MLP [80, 40, 1] relu), scoring
// (as type_din.cpp).
#include <vector>

#include "ctrec/layers/din.hpp"
#include "ctrec/core.hpp"

namespace f = ctrec;
constexpr auto q = f::input<"q", 32>;
constexpr auto k = f::input<"k", 50, 32>;
constexpr auto r = f::layers::din<"din", ctrec::layers::din_config<3>{.hidden_units = {80, 40, 1}, .activation = ctrec::layers::act_relu}>(q, k);
constexpr auto y = r.out();
using M = f::program<float, y>;

int main() {
    M::parameters p;
    M::workspace ws;
    std::vector<float> qs(32 * 8, 0.1f), ks(50 * 32 * 8, 0.1f), ys(32 * 8);
    M::io io;
    io.input<"q">(qs.data()).input<"k">(ks.data()).output<0>(ys.data());
    M::run(p, ws, 8, io);
    return ys[0] > 0;
}
