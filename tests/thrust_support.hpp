#pragma once
// Helpers of tests/test_thrust*.cpp: run a program on the CPU backend and on the Thrust backend
// (kernels/gpu/executor.hpp, built with THRUST_DEVICE_SYSTEM OMP or CPP) on the same leaves and
// seed, and compare every output.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gpu/executor.hpp"
#include "support.hpp"

namespace thrust_test {

// Every output of P on the Thrust backend B against the CPU backend, within tol relative to
// max(1, |cpu|) (test::check_close). L: leaves set by the caller (the rest from leaf_value).
template <class P, class B = ctrec::thrust_backend>
void same(std::size_t batch, std::uint64_t seed = 0, double tol = 1e-9, test::leaves L = {}) {
    test::fill<P>(L, batch);
    for (auto& [name, v] : L.v)  // BatchNorm's moving variances (predict mode) must be positive
        if (name.find("variance") != std::string::npos)
            for (double& x : v) x = 0.5 + (x < 0 ? -x : x);
    const auto cpu = test::run<P>(L, batch, seed);
    const auto dev = test::run<typename P::template with_backend<B>>(L, batch, seed);
    REQUIRE(cpu.size() == dev.size());
    for (std::size_t r = 0; r < cpu.size(); ++r) {
        INFO("output " << r << " of " << cpu.size() << ", batch " << batch << ", seed " << seed);
        test::check_close(dev[r], cpu[r], tol);
    }
}

// Forward, gradient (every output) and JVP programs of Y in double at batches 1, 5 and 70.
template <const auto& Y>
void same_all(std::uint64_t seed = 0) {
    for (std::size_t batch : {1, 5, 70}) {
        same<ctrec::program<double, Y>>(batch, seed);
        same<ctrec::grad_program<double, Y>>(batch, seed);
        same<ctrec::jvp_program<double, Y>>(batch, seed);
    }
}

// A Thrust backend whose workspace holds `Chunk` examples of P: batches cross chunk boundaries.
template <class P, std::size_t Chunk>
using chunked = ctrec::basic_thrust_backend<(P::pl.persistent + Chunk * P::pl.tile_elems) * sizeof(typename P::element_type)>;

} // namespace thrust_test
