// ctrec demo: a small CTR model built from Monolith layers (an MLP with weight norm and an L2
// penalty), trained with SGD through its own generated gradients, then scored from prepared,
// read-only parameters. (tests/test_layers.cpp trains one with BatchNorm.)
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "ctrec/ctrec.hpp"

using namespace ctrec;
using layers::mode;

constexpr std::size_t F = 16;
constexpr auto x = input<"x", F>;
constexpr auto clicks = input<"label", 1>;
constexpr layers::mlp_config<3> tower{.output_dims = {32, 16, 1}, .kernel_regularizer = reg::L2{1e-4}};
// the same definition in both modes (they differ once BatchNorm is enabled)
constexpr auto train_net = layers::mlp<"tower", tower, mode::train>(x);
constexpr auto score_net = layers::mlp<"tower", tower, mode::predict>(x);
// mean binary cross-entropy on the logits z, max(z, 0) - y z + log(1 + exp(-|z|)), plus the L2
// penalties
constexpr auto z = train_net.out();
constexpr auto loss = batch_mean(maximum(z, constant(0.0)) - clicks * z + log1p(exp(-abs(z)))) + train_net.penalty();
constexpr auto score = sigmoid(score_net.out());

using Train = train_program<float, loss, train_net>;
using Score = program<float, score>;

int main() {
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.f, 1.f);
    // synthetic clicks: a hidden teacher decides the label
    const std::size_t N = 4096;
    std::vector<float> xs(N * F), ys(N);
    for (std::size_t n = 0; n < N; ++n) {
        float t = -0.5f;
        for (std::size_t f = 0; f < F; ++f) {
            xs[n * F + f] = normal(rng);
            t += (f % 3 == 0 ? 0.8f : -0.3f) * xs[n * F + f] + 0.2f * xs[n * F + f] * xs[n * F + (f + 1) % F];
        }
        ys[n] = std::uniform_real_distribution<float>(0, 1)(rng) < 1 / (1 + std::exp(-t)) ? 1.f : 0.f;
    }

    Train::parameters p;
    layers::initialize<train_net>(p, 7);  // Glorot kernels, their column norms, zero biases
    Train::workspace ws;
    Train::gradients g;
    const std::size_t B = 256;
    for (int step = 0; step <= 600; ++step) {
        std::size_t off = (step * B) % N;
        float l = 0;
        Train::io io;
        io.input<"x">(xs.data() + off * F).input<"label">(ys.data() + off).output<0>(&l);
        g.bind(io);
        Train::run(p, ws, B, io);  // loss and the gradient of every trainable parameter
        g.sgd(p, 0.2f);
        if (step % 100 == 0) std::printf("step %3d  loss %.4f\n", step, l);
    }

    // Score with the trained weights: parameters move by name into the scoring program,
    // prepare() folds the weight norms once, and the const parameters can be shared by threads.
    Score::parameters sp;
    copy_parameters(p, sp);
    sp.prepare();
    const Score::parameters& weights = sp;
    Score::workspace sws;
    std::vector<float> out(N);
    for (std::size_t b0 = 0; b0 < N; b0 += B) {
        Score::io io;
        io.input<"x">(xs.data() + b0 * F).output<0>(out.data() + b0);
        Score::run(weights, sws, B, io);
    }
    std::size_t correct = 0;
    for (std::size_t n = 0; n < N; ++n) correct += (out[n] > 0.5f) == (ys[n] > 0.5f);
    std::printf("accuracy on the training data %.3f\n", static_cast<double>(correct) / N);

    for (std::size_t batch : {std::size_t(1), std::size_t(256)}) {
        Score::io io;
        io.input<"x">(xs.data()).output<0>(out.data());
        const int reps = batch == 1 ? 20000 : 2000;
        auto t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r) Score::run(weights, sws, batch, io);
        auto t1 = std::chrono::steady_clock::now();
        double us = std::chrono::duration<double, std::micro>(t1 - t0).count() / reps;
        std::printf("scoring latency, batch %4zu: %8.3f us per call (%.1f ns per example)\n", batch, us, 1000 * us / batch);
    }
    return 0;
}
