// ctrec serving example: one user scored against many candidate items.
//
// The user's behaviour sequence (and its padding mask) is a shared input: one value per
// call, no batch axis. The candidates are the batch. DIN's user-side product k (W_b - W_c)
// and all of DMR_U2I's attention and projection then run once per request; only the terms
// that involve the candidate run per candidate. The same model written with per-example
// inputs (the user's features repeated for every candidate) gives the same scores.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "ctrec/ctrec.hpp"

using namespace ctrec;

constexpr std::size_t T = 50, H = 32;
constexpr layers::din_config<3> din_cfg{.hidden_units = {80, 40, 1}, .activation = layers::act_relu};

// The model, for any kind of user input (shared or per-example).
constexpr expr user_model(const expr& k, const expr& mask) {
    const expr q = input<"candidate", H>;
    const expr din = layers::din<"din", din_cfg>(q, k, mask).out();
    const expr dmr = layers::dmr_u2i<"dmr", layers::dmr_u2i_config{.cmp_dim = 16}>(q, k).out();
    return sigmoid(sum(din * q, {0}) + sum(dmr, {0}));
}
constexpr auto shared_score = user_model(shared_input<"behaviours", T, H>, shared_input<"mask", T>);
constexpr auto repeated_score = user_model(input<"behaviours", T, H>, input<"mask", T>);
using Shared = program<float, shared_score>;
using Repeated = program<float, repeated_score>;

template <class M>
void fill_parameters(typename M::parameters& p) {
    // deterministic values by variable name, so both programs hold the same weights
    for (std::size_t i = 0; i < M::n_params; ++i) {
        std::seed_seq seq(M::parameters::names[i].begin(), M::parameters::names[i].end());
        std::mt19937 rng(seq);
        std::normal_distribution<float> n(0.f, 0.05f);
        for (float& v : p.get(i)) v = n(rng);
    }
    p.prepare();
}

int main() {
    const std::size_t N = 1000;  // candidates per request
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> behaviours(T * H), mask(T), candidates(N * H);
    for (float& v : behaviours) v = normal(rng);
    for (std::size_t t = 0; t < T; ++t) mask[t] = t < 37 ? 1.f : 0.f;  // 37 behaviours, 13 padded
    for (float& v : candidates) v = normal(rng);

    Shared::parameters ps;
    Repeated::parameters pr;
    fill_parameters<Shared>(ps);
    fill_parameters<Repeated>(pr);
    const Shared::parameters& cps = ps;
    const Repeated::parameters& cpr = pr;

    // one request: the user once, N candidates
    Shared::workspace ws;
    std::vector<float> s_scores(N);
    Shared::io sio;
    sio.input<"behaviours">(behaviours.data()).input<"mask">(mask.data()).input<"candidate">(candidates.data());
    sio.output<0>(s_scores.data());

    // the same request with the user's features repeated for every candidate
    std::vector<float> rep_b(N * T * H), rep_m(N * T);
    for (std::size_t n = 0; n < N; ++n) {
        std::copy(behaviours.begin(), behaviours.end(), rep_b.begin() + n * T * H);
        std::copy(mask.begin(), mask.end(), rep_m.begin() + n * T);
    }
    Repeated::workspace wr;
    std::vector<float> r_scores(N);
    Repeated::io rio;
    rio.input<"behaviours">(rep_b.data()).input<"mask">(rep_m.data()).input<"candidate">(candidates.data());
    rio.output<0>(r_scores.data());

    auto time_it = [](auto&& f) {
        double best = 1e30;
        for (int r = 0; r < 20; ++r) {
            auto t0 = std::chrono::steady_clock::now();
            f();
            best = std::min(best, std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
        }
        return best;
    };
    const double ts = time_it([&] { Shared::run(cps, ws, N, sio); });
    const double tr = time_it([&] { Repeated::run(cpr, wr, N, rio); });

    double diff = 0;
    for (std::size_t n = 0; n < N; ++n) diff = std::max(diff, double(std::abs(s_scores[n] - r_scores[n])));
    std::size_t best = std::max_element(s_scores.begin(), s_scores.end()) - s_scores.begin();
    std::printf("one user (%zu behaviours of %zu), %zu candidates: DIN + DMR_U2I\n", std::size_t(37), T, N);
    std::printf("  shared user inputs:   %8.1f us per request (user-side terms once)\n", ts);
    std::printf("  repeated user inputs: %8.1f us per request (user-side terms per candidate)\n", tr);
    std::printf("  max |score difference| = %.2e; best candidate %zu, score %.4f\n", diff, best, s_scores[best]);
    return diff < 1e-4 ? 0 : 1;
}
