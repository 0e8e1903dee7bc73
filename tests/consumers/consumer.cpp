// Consumer smoke test: built by tests/consumers/check.sh in each of the four ways a
// user can consume ctrec (Meson subproject, pkg-config, CMake package, plain -I flags).
// Computes y = tanh(x W + b) for a batch of 2 and compares with a naive loop.
#include "ctrec/ctrec.hpp"

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <vector>

constexpr auto x = ctrec::input<"x", 4>;
constexpr auto W = ctrec::param<"W", 4, 3>;
constexpr auto b = ctrec::param<"b", 3>;
constexpr auto y = ctrec::tanh(ctrec::matmul(x, W) + b);

int main() {
  using M = ctrec::program<float, y>;
  constexpr std::size_t batch = 2, n_in = 4, n_out = 3;

  M::parameters p;
  M::workspace ws;
  std::vector<float> Wv(n_in * n_out), bv(n_out);
  for (std::size_t i = 0; i < n_in * n_out; ++i) p.get<"W">()[i] = Wv[i] = 0.1f * i - 0.5f;
  for (std::size_t i = 0; i < n_out; ++i) p.get<"b">()[i] = bv[i] = 0.2f * i;

  std::vector<float> xs(batch * n_in), ys(batch * n_out, 0.0f);
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = 0.25f * i - 0.75f;

  M::io io;
  io.input<"x">(xs.data()).output<0>(ys.data());
  M::run(p, ws, batch, io);

  int bad = 0;
  for (std::size_t r = 0; r < batch; ++r) {
    for (std::size_t j = 0; j < n_out; ++j) {
      double acc = bv[j];
      for (std::size_t k = 0; k < n_in; ++k) acc += double(xs[r * n_in + k]) * Wv[k * n_out + j];
      const double want = std::tanh(acc);
      const double got = ys[r * n_out + j];
      if (!(std::fabs(got - want) <= 1e-5 + 1e-4 * std::fabs(want))) {
        std::printf("mismatch at (%zu,%zu): got %.7g, want %.7g\n", r, j, got, want);
        ++bad;
      }
    }
  }
  if (bad) return 1;
  std::printf("consumer OK\n");
  return 0;
}
