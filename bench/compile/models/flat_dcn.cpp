// Compile-cost model (graph-as-data core, include/ctrec/flat): mixed DCN (4 experts, rank 4,
// D = 16, N = 13) written as the type core's dcn.hpp mixed mode (documented gating, tanh after V
// and C), LAYERS cross layers, KN = kernel norm on every variable; GRAD = 1 builds the training
// program (BCE loss and the gradient of every input and parameter), GRAD = 0 scoring.
// Each layer uses x three times and x0 once. Built, not run, by bench/compile/compile_cost.py.
#include <vector>

#include "ctrec/flat.hpp"

namespace f = ctrec::flat;
using ctrec::make_dims;

constexpr std::size_t N = 13, D = 16, E = 4, R = 4;

constexpr f::expr var(f::label name, ctrec::dims s) {
    f::expr p = f::param_named(name.view(), s);
    if (!KN) return p;
    return f::l2_normalize(p, 0, 1e-6) * f::param_named((name + "/trainable_norm").view(), make_dims<1>() == s ? s : [&] {
        ctrec::dims t;
        t.rank = 1;
        t.d[0] = s.d[1];
        return t;
    }());
}
// the E experts' (a, c) variables side by side as one (a, E c) matrix
constexpr f::expr experts(const char* prefix, std::size_t i, ctrec::dims s) {
    f::expr parts[E] = {};
    for (std::size_t j = 0; j < E; ++j) parts[j] = var(f::label("dcn/") + std::string_view(prefix) + i + "_" + j, s);
    return f::concat(1, {parts[0], parts[1], parts[2], parts[3]});
}

constexpr f::expr dcn(const f::expr& x0) {
    f::expr x = x0;
    for (std::size_t i = 0; i < LAYERS; ++i) {
        f::expr b = f::reshape(var(f::label("dcn/bias_") + i, make_dims<1, D>()), make_dims<D>());
        f::expr V = experts("V_", i, make_dims<D, R>());
        f::expr C = f::reshape(experts("C_", i, make_dims<R, R>()), make_dims<R, E, R>());
        f::expr U = experts("U_", i, make_dims<D, R>());
        f::expr G = experts("G_", i, make_dims<D, 1>());
        f::expr v = f::reshape(f::tanh(f::matmul(x, V)), make_dims<N, E, R>());
        f::expr c = f::tanh(f::einsum("neq,qea->nea", v, C));
        f::expr w = f::softmax(f::matmul(x, G), 1);
        f::expr u = f::einsum("nk,dk->nd", f::reshape(c * f::reshape(w, make_dims<N, E, 1>()), make_dims<N, E * R>()), U);
        x = x0 * (u + b) + x;
    }
    return x;
}

constexpr auto x = f::input<"x", N, D>;
constexpr auto label = f::input<"label", 1>;
constexpr auto out = dcn(x);
constexpr auto logit = f::sum(out);
constexpr auto loss = f::batch_mean(f::log1p(f::exp(logit)) - f::sum(label) * logit);
#if GRAD
using M = f::grad_program<float, loss>;
#else
using M = f::program<float, out>;
#endif

int main() {
    M::parameters p;
    M::workspace ws;
    std::vector<float> xs(N * D * 8, 0.1f), ls(8, 1.f), scratch(1 << 20);
    M::io io;
    io.input<"x">(xs.data());
#if GRAD
    io.input<"label">(ls.data());
#endif
    for (std::size_t r = 0; r < M::n_outputs; ++r) io.out[r] = scratch.data() + r * 2048;
    M::run(p, ws, 8, io);
    return scratch[0] > 0;
}
