// ctrec demo: a small CTR model written with the raw DSL, trained for a few
// hundred SGD steps with its own generated gradients, then scored.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/train/sgd.hpp"

using namespace ctrec;

constexpr std::size_t F = 16, H = 32;
constexpr auto x = input<"x", F>;
constexpr auto label = input<"label", 1>;
constexpr auto hidden = act::relu(matmul(x, param<"W1", F, H>) + param<"b1", H>);
constexpr auto logit = matmul(hidden, param<"W2", H, 1>) + param<"b2", 1>;
constexpr auto score = sigmoid(logit);
// binary cross-entropy on logits: softplus(z) - y z
constexpr auto loss = act::softplus(logit) - label * logit;

using Train = grad_program<float, decltype(loss)>;
using Score = program<float, decltype(score)>;

int main() {
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.f, 1.f);
    // synthetic clicks: a hidden teacher decides the label
    const std::size_t N = 4096;
    std::vector<float> xs(N * F), ys(N);
    for (std::size_t n = 0; n < N; ++n) {
        float z = -0.5f;
        for (std::size_t f = 0; f < F; ++f) {
            xs[n * F + f] = normal(rng);
            z += (f % 3 == 0 ? 0.8f : -0.3f) * xs[n * F + f] + 0.2f * xs[n * F + f] * xs[n * F + (f + 1) % F];
        }
        ys[n] = std::uniform_real_distribution<float>(0, 1)(rng) < 1 / (1 + std::exp(-z)) ? 1.f : 0.f;
    }

    Train::parameters p;
    for (std::size_t i = 0; i < F * H; ++i) p.get<"W1">()[i] = normal(rng) * std::sqrt(2.f / F);
    for (std::size_t i = 0; i < H; ++i) p.get<"W2">()[i] = normal(rng) * std::sqrt(1.f / H);
    Train::workspace ws;

    const std::size_t B = 256;
    std::vector<float> ct(B, 1.f / B), l(B), dx(B * F), dlabel(B), dW1(F * H), db1(H), dW2(H), db2(1);
    const float lr = 0.5f;
    for (int step = 0; step <= 300; ++step) {
        std::size_t off = (step * B) % N;
        Train::io io;
        io.input<"x">(xs.data() + off * F).input<"label">(ys.data() + off).input<"cotangent">(ct.data());
        io.output<0>(l.data()).output<Train::grad<"x">>(dx.data()).output<Train::grad<"label">>(dlabel.data());
        io.output<Train::grad<"W1">>(dW1.data()).output<Train::grad<"b1">>(db1.data());
        io.output<Train::grad<"W2">>(dW2.data()).output<Train::grad<"b2">>(db2.data());
        Train::run(p, ws, B, io);
        train::sgd_update<float>(p.get<"W1">(), dW1, lr);
        train::sgd_update<float>(p.get<"b1">(), db1, lr);
        train::sgd_update<float>(p.get<"W2">(), dW2, lr);
        train::sgd_update<float>(p.get<"b2">(), db2, lr);
        if (step % 50 == 0) {
            double mean = 0;
            for (float v : l) mean += v / B;
            std::printf("step %3d  loss %.4f\n", step, mean);
        }
    }

    // Score with the same weights: parameters move by name into the scoring program.
    Score::parameters sp;
    train::copy_parameters(p, sp);
    Score::workspace sws;
    std::vector<float> out(N);
    std::size_t correct = 0;
    for (std::size_t b0 = 0; b0 < N; b0 += B) {
        Score::io io;
        io.input<"x">(xs.data() + b0 * F).output<0>(out.data() + b0);
        Score::run(sp, sws, B, io);
    }
    for (std::size_t n = 0; n < N; ++n) correct += (out[n] > 0.5f) == (ys[n] > 0.5f);
    std::printf("accuracy on the training data %.3f\n", static_cast<double>(correct) / N);

    for (std::size_t batch : {std::size_t(1), std::size_t(256)}) {
        Score::io io;
        io.input<"x">(xs.data()).output<0>(out.data());
        const int reps = batch == 1 ? 20000 : 2000;
        auto t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r) Score::run(sp, sws, batch, io);
        auto t1 = std::chrono::steady_clock::now();
        double us = std::chrono::duration<double, std::micro>(t1 - t0).count() / reps;
        std::printf("scoring latency, batch %4zu: %8.3f us per call (%.1f ns per example)\n", batch, us, 1000 * us / batch);
    }
    return 0;
}
