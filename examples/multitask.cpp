// Two-task training: click and conversion from one input. Two input sub-networks feed SNR
// (sub-network routing with learned hard-concrete gates), which routes them to two task towers;
// LogitCorrection corrects each training logit for negative down-sampling (negatives kept at
// rate r = 0.5, so the sampled data's logit is the true one - ln r; the rate is the stream's, the
// same for positives and negatives); the objective is a weighted sum of the two tasks' cross-entropies plus
// SNR's L0 penalty. Scoring uses the raw tower logits (no correction: calibrated probabilities
// for the full traffic) and SNR's deterministic gates.
//
//   build/examples/multitask [steps]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <vector>

#include "ctrec/ctrec.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
using ctrec::make_dims;
using fl::mode;

constexpr std::size_t D = 24;

// The shared part: input sub-networks -> SNR -> one tower per task; the two logits.
struct two_logits {
    f::val logit[2];
    f::val l0;
};
constexpr two_logits towers(fl::result& m, mode M, f::val x) {
    f::val subs[2];
    for (std::size_t i = 0; i < 2; ++i)
        subs[i] = fl::dense(m, (f::name_string("sub_") + i).view(), {.units = 32, .activation = fl::act_relu}, x);
    const fl::snr_vals r = fl::snr(m, "snr", {.num_out_subnet = 2, .out_subnet_dim = 16}, M, subs, 2);
    two_logits t{};
    for (std::size_t k = 0; k < 2; ++k)
        t.logit[k] = fl::mlp(m, (f::name_string("tower_") + k).view(), fl::mlp_config<2>{.output_dims = {16, 1}}, M, r.out[k]);
    t.l0 = r.l0_loss;
    return t;
}

constexpr fl::result training_model() {
    fl::result m;
    f::val x = m.input("x", make_dims<D>());
    f::val rate = m.input("rate", make_dims<1>());  // the negative sampling rate of the example's stream
    f::val click = m.input("click", make_dims<1>()), conv = m.input("conv", make_dims<1>());
    const two_logits t = towers(m, mode::train, x);
    f::val c0 = fl::logit_correction(m, "lc_click", {}, t.logit[0], rate);
    f::val c1 = fl::logit_correction(m, "lc_conv", {}, t.logit[1], rate);
    f::val loss = f::batch_mean(f::sigmoid_cross_entropy(c0, click)) * 1.0 +
                  f::batch_mean(f::sigmoid_cross_entropy(c1, conv)) * 0.5 + t.l0 * 1e-3;
    if (m.has_penalty()) loss = loss + m.at(m.penalty_id);  // regularizers, if any
    m.set_out(loss);
    return m;
}
constexpr fl::result scoring_model() {
    fl::result m;
    f::val x = m.input("x", make_dims<D>());
    const two_logits t = towers(m, mode::predict, x);
    m.set_out(f::sigmoid(f::concat(0, {t.logit[0], t.logit[1]})));  // (2): p(click), p(conversion)
    return m;
}
constexpr auto train_net = training_model();
constexpr auto loss = train_net.out();
constexpr auto score_net = scoring_model();
constexpr auto probs = score_net.out();
using Step = f::train_program<float, loss>;
using Score = f::program<float, probs>;

namespace {
double u01(std::uint64_t s, std::uint64_t i, std::uint64_t k) { return f::random_uniform_value<double>(77, s, i, k); }
// Example i: features, and labels from a hidden teacher (conversion only after a click).
void example(std::uint64_t i, float* x, float& click, float& conv) {
    double a = -0.5, b = -1.0;
    for (std::size_t k = 0; k < D; ++k) {
        x[k] = static_cast<float>(2 * u01(1, i, k) - 1);
        a += (k % 3 == 0 ? 0.9 : -0.2) * x[k];
        b += (k % 4 == 1 ? 1.2 : 0.0) * x[k] + 0.5 * x[k] * x[(k + 1) % D];
    }
    click = u01(2, i, 0) < 1 / (1 + std::exp(-a)) ? 1.f : 0.f;
    conv = click > 0 && u01(3, i, 0) < 1 / (1 + std::exp(-b)) ? 1.f : 0.f;
}
double auc(const std::vector<float>& s, const std::vector<float>& y) {
    std::vector<std::size_t> idx(s.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](std::size_t p, std::size_t q) { return s[p] < s[q]; });
    double pos = 0, neg = 0, rank = 0;
    for (std::size_t r = 0; r < idx.size(); ++r)
        if (y[idx[r]] > 0.5f) pos += 1, rank += double(r + 1);
        else neg += 1;
    return pos && neg ? (rank - pos * (pos + 1) / 2) / (pos * neg) : 0.5;
}
} // namespace

int main(int argc, char** argv) {
    const int steps = argc > 1 ? std::atoi(argv[1]) : 1500;
    Step::parameters p;
    fl::initialize<train_net>(p, 3);
    Step::workspace ws;
    Step::gradients g;
    f::optimizer<Step, f::adam> opt({.learning_rate = 3e-3});
    const std::size_t B = 128;
    std::vector<float> x(B * D), rate(B), click(B), conv(B);
    std::uint64_t next = 0;
    double first = 0, last = 0;
    for (int s = 0; s < steps; ++s) {
        // a down-sampled batch: every positive, negatives kept with probability 0.5 (rate 0.5)
        std::size_t n = 0;
        while (n < B) {
            float c, v;
            example(next, x.data() + n * D, c, v);
            const bool keep = c > 0 || u01(4, next, 0) < 0.5;
            ++next;
            if (!keep) continue;
            click[n] = c, conv[n] = v, rate[n] = 0.5f;  // the stream's negative sampling rate
            ++n;
        }
        float l = 0;
        Step::io io;
        g.bind(io);
        io.input<"x">(x.data()).input<"rate">(rate.data()).input<"click">(click.data()).input<"conv">(conv.data());
        io.output<0>(&l);
        io.seed = static_cast<std::uint64_t>(s);  // SNR's gate noise: a new draw every step
        Step::run(p, ws, B, io);
        opt.apply(p, g);
        if (s < 50) first += l / 50;
        if (s >= steps - 50) last += l / 50;
    }
    // score held-out traffic (not down-sampled)
    Score::parameters sp;
    f::copy_parameters(p, sp);
    sp.prepare();
    Score::workspace sws;
    const std::size_t N = 4000;
    std::vector<float> xs(N * D), pc(N), pv(N), yc(N), yv(N), out(N * 2);
    for (std::size_t i = 0; i < N; ++i) example((1ull << 40) + i, xs.data() + i * D, yc[i], yv[i]);
    Score::io sio;
    sio.input<"x">(xs.data()).output<0>(out.data());
    Score::run(static_cast<const Score::parameters&>(sp), sws, N, sio);
    double mean_c = 0, rate_c = 0;
    for (std::size_t i = 0; i < N; ++i) pc[i] = out[2 * i], pv[i] = out[2 * i + 1], mean_c += pc[i] / N, rate_c += yc[i] / N;
    const double auc_c = auc(pc, yc), auc_v = auc(pv, yv);
    std::printf("objective %.4f -> %.4f over %d steps\n", first, last, steps);
    std::printf("held-out AUC: click %.4f, conversion %.4f; mean p(click) %.3f vs click rate %.3f (corrected for down-sampling)\n",
                auc_c, auc_v, mean_c, rate_c);
    const bool ok = last < first && auc_c > 0.7 && auc_v > 0.7 && std::abs(mean_c - rate_c) < 0.05;
    std::printf("%s\n", ok ? "ok" : "FAILED: the two-task model did not learn");
    return ok ? 0 : 1;
}
