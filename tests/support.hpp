#pragma once
// Test support for the core : binds every leaf of a program by
// name from deterministic values, runs it, and checks derivatives by central differences. The
// values come from test::leaf_value (tests/support.hpp's formula, repeated here so this file
// does not pull in the type core).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ctrec/core.hpp"

namespace test {

inline double leaf_value(std::string_view name, std::size_t i) {
    std::uint64_t h = 1469598103934665603ull;
    for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    h ^= (i + 1) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return static_cast<double>(h % 2000001) / 1000000.0 - 1.0;
}

// Leaf values by name: each a flat vector (batch x size for batched inputs).
struct leaves {
    std::map<std::string, std::vector<double>, std::less<>> v;
    std::vector<double>& operator[](std::string_view n) { return v[std::string(n)]; }
};

// Fills every input and parameter of program P (missing names from leaf_value).
template <class P>
void fill(leaves& L, std::size_t batch) {
    for (std::size_t k = 0; k < P::n_inputs; ++k) {
        const auto i = P::input_ids[k];
        const auto& r = P::tab.nodes[i];
        const std::string_view n = P::tab.name_of(i);
        auto& x = L[n];
        const std::size_t want = r.shape.size() * (r.batched ? batch : 1);
        if (x.size() != want) {
            x.resize(want);
            for (std::size_t e = 0; e < want; ++e) x[e] = leaf_value(n, e);
        }
    }
    for (std::size_t k = 0; k < P::n_params; ++k) {
        const std::string_view n = P::parameters::names[k];
        auto& x = L[n];
        if (x.size() != P::parameters::sizes[k]) {
            x.resize(P::parameters::sizes[k]);
            for (std::size_t e = 0; e < x.size(); ++e) x[e] = leaf_value(n, e);
        }
    }
}

// Runs every output of P on the leaves (converted to P's element type), with io.seed = seed
// (the random leaves' call counter).
template <class P>
std::vector<std::vector<double>> run(leaves& L, std::size_t batch, std::uint64_t seed = 0) {
    using T = typename P::element_type;
    fill<P>(L, batch);
    typename P::parameters p;
    for (std::size_t k = 0; k < P::n_params; ++k) {
        auto w = p.get(k);
        const auto& x = L[P::parameters::names[k]];
        for (std::size_t e = 0; e < w.size(); ++e) w[e] = static_cast<T>(x[e]);
    }
    std::vector<std::vector<T>> in(P::n_inputs), out(P::n_outputs);
    typename P::io io;
    io.seed = seed;
    for (std::size_t k = 0; k < P::n_inputs; ++k) {
        const auto& x = L[P::tab.name_of(P::input_ids[k])];
        in[k].reserve(1);  // an empty batch still binds a pointer
        in[k].assign(x.begin(), x.end());
        io.in[k] = in[k].data();
    }
    for (std::size_t r = 0; r < P::n_outputs; ++r) {
        const auto& n = P::tab.nodes[P::tab.roots[r]];
        out[r].reserve(1);
        out[r].assign(n.shape.size() * (n.batched ? batch : 1), T(-777));
        io.out[r] = out[r].data();
    }
    typename P::workspace ws;
    P::run(p, ws, batch, io);
    std::vector<std::vector<double>> res(P::n_outputs);
    for (std::size_t r = 0; r < P::n_outputs; ++r) res[r].assign(out[r].begin(), out[r].end());
    return res;
}

// The largest |a - b| / max(1, |b|) (relative where |b| > 1, absolute below: the scale
// check_close uses); infinity when any element of either is NaN or the two differ in an
// infinity, so a NaN can never pass a tolerance. (Before session 10: / (1 + |b|), up to 2x
// looser near |b| = 1, and std::max skipped NaN.)
inline double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (a[i] == b[i]) continue;  // equal infinities included
        const double d = std::abs(a[i] - b[i]) / std::max(1.0, std::abs(b[i]));
        if (!(d <= m)) m = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
    }
    return m;
}

// Every element within tol of the reference, relative to max(1, |want|) (NaN fails); one
// assertion per comparison, naming the worst element.
inline void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol) {
    REQUIRE(got.size() == want.size());
    double worst = 0;
    std::size_t at = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double err = std::abs(got[i] - want[i]) / std::max(1.0, std::abs(want[i]));
        if (!(err <= worst)) worst = err, at = i;  // NaN counts as the worst
    }
    INFO("worst element " << at << " of " << got.size() << ": got " << (got.empty() ? 0.0 : got[at]) << ", want "
                          << (want.empty() ? 0.0 : want[at]));
    CHECK(worst <= tol);
}

// Output `out` of P on the leaves.
template <class P>
std::vector<double> forward(leaves& L, std::size_t batch, std::size_t out = 0) {
    return run<P>(L, batch)[out];
}
// Output 0 of P, on the CPU and on the reference backend, against reference(L, batch), after
// prepare(L, batch) has set the leaves it wants (masks, positive variances).
template <class P>
void check_forward(std::size_t batch, double tol, auto reference, auto prepare) {
    leaves L;
    prepare(L, batch);
    const std::vector<double> got = forward<P>(L, batch);
    const std::vector<double> ref = forward<typename P::template with_backend<ctrec::reference_backend>>(L, batch);
    const std::vector<double> want = reference(L, batch);
    INFO("batch " << batch);
    CHECK(max_rel_diff(got, want) <= tol);
    CHECK(max_rel_diff(ref, want) <= tol);
}
// The same with one callback: reference(L, batch, true) prepares, reference(L, batch, false)
// computes.
template <class P>
void check_forward(std::size_t batch, double tol, auto reference) {
    check_forward<P>(
        batch, tol, [&](leaves& L, std::size_t b) { return reference(L, b, false); },
        [&](leaves& L, std::size_t b) { reference(L, b, true); });
}
// In double (tolerance tol64) and float (1e-5) at batches 1, 5 and 70 (across tiles).
template <const auto& Y>
void check_forward_all(double tol64, auto reference) {
    for (std::size_t batch : {1, 5, 70}) {
        check_forward<ctrec::program<double, Y>>(batch, tol64, reference);
        check_forward<ctrec::program<float, Y>>(batch, 1e-5, reference);
    }
}

// Output 0 of Y against `want` (check_close): float64 on the CPU and the reference backends
// (tol64), float32 on the CPU (tol32), on a copy of L0 (missing leaves from leaf_value).
template <const auto& Y>
void check_values(const leaves& L0, std::size_t batch, const std::vector<double>& want, double tol64 = 1e-12,
                  double tol32 = 2e-5) {
    INFO("batch " << batch);
    leaves L = L0;
    check_close(forward<ctrec::program<double, Y>>(L, batch), want, tol64);
    check_close(forward<typename ctrec::program<double, Y>::template with_backend<ctrec::reference_backend>>(L, batch), want, tol64);
    check_close(forward<ctrec::program<float, Y>>(L, batch), want, tol32);
}

// The CPU backend agrees with the reference backend on every output (leaves L0 given, the rest
// from leaf_value).
template <class P>
void check_backends(std::size_t batch, double tol, const leaves& L0 = {}) {
    leaves L = L0;
    auto cpu = run<P>(L, batch);
    auto ref = run<typename P::template with_backend<ctrec::reference_backend>>(L, batch);
    REQUIRE(cpu.size() == ref.size());
    for (std::size_t r = 0; r < cpu.size(); ++r) {
        INFO("output " << r << ", batch " << batch);
        CHECK(max_rel_diff(cpu[r], ref[r]) <= tol);
    }
}

// Float64 gradient check of grad program G (CPU backend) against central differences of its
// root computed by the reference backend, for every element of every input and parameter;
// a per-example root is contracted with the "cotangent" input. Then the JVP program J (CPU)
// along a random direction against the directional difference and the duality
// <v, J u> = <J^T v, u>.
template <class G, class J>
void check_derivatives(std::size_t batch, double tol = 1e-6) {
    using R = typename G::template with_backend<ctrec::reference_backend>;
    leaves L;
    auto g = run<G>(L, batch);
    const bool per_example = L.v.count("cotangent") > 0;
    auto f = [&](leaves& at) {
        auto o = run<R>(at, batch);
        double s = 0;
        if (per_example) {
            const auto& ct = at["cotangent"];
            for (std::size_t e = 0; e < o[0].size(); ++e) s += o[0][e] * ct[e];
        } else {
            s = o[0][0];
        }
        return s;
    };
    const double h = 1e-6;
    for (std::size_t k = 0; k < G::tab.n_wrt; ++k) {
        const std::string name(G::tab.name_of(G::tab.wrt[k]));
        auto& x = L[name];
        REQUIRE(g[1 + k].size() == x.size());
        for (std::size_t e = 0; e < x.size(); ++e) {
            const double x0 = x[e];
            x[e] = x0 + h;
            const double fp = f(L);
            x[e] = x0 - h;
            const double fm = f(L);
            x[e] = x0;
            const double fd = (fp - fm) / (2 * h);
            INFO("d root / d " << name << "[" << e << "]: reverse " << g[1 + k][e] << ", central difference " << fd);
            CHECK(std::abs(g[1 + k][e] - fd) <= tol * (1 + std::abs(fd)));
        }
    }
    // forward mode: tangent leaves "d.<name>" take leaf_value("d.<name>", i) as the direction u
    auto jv = run<J>(L, batch);
    double dir = 0, dual = 0;
    leaves P = L, M = L;
    for (std::size_t k = 0; k < G::tab.n_wrt; ++k) {
        const std::string name(G::tab.name_of(G::tab.wrt[k]));
        const auto it = L.v.find("d." + name);
        if (it == L.v.end()) continue;  // no path to the root that carries a derivative
        const auto& u = it->second;
        REQUIRE(u.size() == L[name].size());
        for (std::size_t e = 0; e < u.size(); ++e) {
            P[name][e] += h * u[e];
            M[name][e] -= h * u[e];
            dual += g[1 + k][e] * u[e];  // <J^T v, u>
        }
    }
    dir = (f(P) - f(M)) / (2 * h);
    double jvp = 0;  // <v, J u>
    if (per_example) {
        const auto& ct = L["cotangent"];
        for (std::size_t e = 0; e < jv[1].size(); ++e) jvp += jv[1][e] * ct[e];
    } else {
        jvp = jv[1][0];
    }
    INFO("JVP " << jvp << ", directional difference " << dir << ", <J^T v, u> " << dual);
    CHECK(std::abs(jvp - dir) <= tol * (1 + std::abs(dir)));
    CHECK(std::abs(jvp - dual) <= 1e-9 * (1 + std::abs(dual)));
}

// check_derivatives of expression Y (its grad and JVP programs in float64).
template <const auto& Y>
void check_ad(std::size_t batch, double tol = 1e-6) {
    check_derivatives<ctrec::grad_program<double, Y>, ctrec::jvp_program<double, Y>>(batch, tol);
}

} // namespace test
