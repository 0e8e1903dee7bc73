#pragma once
// Core-level test support for the core (tests/test_flat_ops.cpp,
// test_flat_structure.cpp, test_flat_plan.cpp): the checks of the type core's core tests
// (tests/support.hpp's check_close / check_forward / check_ad) with the same tolerances and
// error measures, on flat programs. Leaf values come from a value function (default
// test::leaf_value, the same formula as the type core's test::leaf_value), so the naive
// references in the tests read exactly what the programs read.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "support.hpp"

namespace flat_core {

using test::leaf_value;
using test::leaves;
using value_fn = std::function<double(std::string_view, std::size_t)>;
using shape_fn = std::function<double(std::string_view, double)>;

// Sets every input and parameter leaf of program P (not a gradient program's "cotangent" nor a
// JVP program's "d.<name>" tangents, which test::fill gives leaf_value) from f.
template <class P>
void fill_from(leaves& L, std::size_t batch, const value_fn& f) {
    for (std::size_t k = 0; k < P::n_inputs; ++k) {
        const auto i = P::input_ids[k];
        const auto& r = P::tab.nodes[i];
        const std::string_view n = P::tab.name_of(i);
        if (n == "cotangent" || n.substr(0, 2) == "d.") continue;
        auto& x = L[n];
        x.resize(r.shape.size() * (r.batched ? batch : 1));
        for (std::size_t e = 0; e < x.size(); ++e) x[e] = f(n, e);
    }
    for (std::size_t k = 0; k < P::n_params; ++k) {
        const std::string_view n = P::parameters::names[k];
        if (n.substr(0, 2) == "d.") continue;
        auto& x = L[n];
        x.resize(P::parameters::sizes[k]);
        for (std::size_t e = 0; e < x.size(); ++e) x[e] = f(n, e);
    }
}

// Output R of P (CPU backend unless P says otherwise) with leaves from f.
template <class P, std::size_t R = 0>
std::vector<double> run(std::size_t batch, const value_fn& f = leaf_value) {
    leaves L;
    fill_from<P>(L, batch, f);
    return test::run<P>(L, batch)[R];
}

using test::check_close;  // |got - want| / max(1, |want|) <= tol, element by element

// A root made of `count` equal blocks (a concat of several expressions, each of per-example size
// n = size / count): the checks below look at block `index` only, so one program checks several
// expressions as separately as one program per expression would.
struct block {
    std::size_t count = 1, index = 0;
};
inline std::vector<double> block_of(const std::vector<double>& out, std::size_t batch, block bl) {
    if (bl.count == 1) return out;
    REQUIRE(batch > 0);
    REQUIRE(out.size() % (batch * bl.count) == 0);
    const std::size_t n = out.size() / (batch * bl.count);
    std::vector<double> r;
    for (std::size_t e = 0; e < batch; ++e)
        r.insert(r.end(), out.begin() + static_cast<std::ptrdiff_t>((e * bl.count + bl.index) * n),
                 out.begin() + static_cast<std::ptrdiff_t>((e * bl.count + bl.index + 1) * n));
    return r;
}

// tests/support.hpp's check_forward: output 0 (block bl of it) in float64 (1e-12) and float32
// (2e-5) against the naive reference, on the CPU backend.
template <const auto& Y>
void check_forward(std::size_t batch, const std::vector<double>& want, const value_fn& f = leaf_value, block bl = {}) {
    INFO("batch " << batch << ", block " << bl.index << " of " << bl.count);
    check_close(block_of(run<ctrec::program<double, Y>>(batch, f), batch, bl), want, 1e-12);
    check_close(block_of(run<ctrec::program<float, Y>>(batch, f), batch, bl), want, 2e-5);
}

// tests/support.hpp's check_ad (ctrec/ad/check.hpp's measures) on the core, in float64, CPU:
//   reverse mode (grad_program) against central differences of sum(cotangent * root), for every
//   element of every input and parameter: max |ad - fd| / max(1, |ad|, |fd|) < 1e-6;
//   forward mode (jvp_program) against the directional difference along the tangent leaves
//   "d.<name>", same measure < 1e-6; duality |<v, J u> - <J^T v, u>| / max(1, |.|) < 1e-9.
// Leaf values are leaf_value(name, i) passed through `shape` (a log's argument kept positive).
// A per-example root's cotangent is leaf_value("cotangent", i), zero outside block bl.
template <const auto& Y>
void check_ad(std::size_t batch = 3, const shape_fn& shape = {}, block bl = {}) {
    using G = ctrec::grad_program<double, Y>;
    using J = ctrec::jvp_program<double, Y>;
    constexpr auto& root = G::tab.nodes[G::tab.roots[0]];
    const bool per_example = root.batched;
    leaves L;
    fill_from<G>(L, batch, [&](std::string_view n, std::size_t i) {
        const double v = leaf_value(n, i);
        return shape ? shape(n, v) : v;
    });
    if (per_example) {
        auto& ct = L["cotangent"];
        ct.resize(batch * root.shape.size());
        const std::size_t n = root.shape.size() / bl.count;
        for (std::size_t i = 0; i < ct.size(); ++i) ct[i] = (i / n) % bl.count == bl.index ? leaf_value("cotangent", i) : 0.0;
    }
    const auto g = test::run<G>(L, batch);
    auto f = [&](leaves& at) {  // sum(cotangent * root): the root is the gradient program's output 0
        const auto o = test::run<G>(at, batch)[0];
        double s = 0;
        if (per_example) {
            const auto& ct = at["cotangent"];
            for (std::size_t e = 0; e < o.size(); ++e) s += o[e] * ct[e];
        } else {
            s = o[0];
        }
        return s;
    };
    auto rel = [](double a, double b) { return std::abs(a - b) / std::max({1.0, std::abs(a), std::abs(b)}); };
    const double h = 1e-6;
    double grad_error = 0;
    std::size_t checked = 0;
    std::string worst;
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
            const double err = rel(g[1 + k][e], (fp - fm) / (2 * h));
            ++checked;
            if (err > grad_error) grad_error = err, worst = name + "[" + std::to_string(e) + "]";
        }
    }
    const auto jv = test::run<J>(L, batch);  // fills the tangents "d.<name>"
    double dual = 0;
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
    const double dir = (f(P) - f(M)) / (2 * h);
    double jvp = 0;  // <v, J u>
    if (per_example) {
        const auto& ct = L["cotangent"];
        for (std::size_t e = 0; e < jv[1].size(); ++e) jvp += jv[1][e] * ct[e];
    } else {
        jvp = jv[1][0];
    }
    INFO("block " << bl.index << " of " << bl.count << "; worst gradient element: " << worst << ", checked " << checked
                  << "; JVP " << jvp << ", directional difference " << dir << ", <J^T v, u> " << dual);
    CHECK(checked > 0);
    CHECK(grad_error < 1e-6);
    CHECK(rel(jvp, dir) < 1e-6);
    CHECK(std::abs(jvp - dual) / std::max(1.0, std::abs(dual)) < 1e-9);
}

} // namespace flat_core
