#pragma once
// Helpers for the numerical-robustness tests (tests/test_numerics*.cpp): run a program on
// chosen leaves in float and double, on the CPU and the reference backends, and compare every
// element against a float64 reference with a per-element scale; gradients by leaf name.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "support.hpp"

namespace num {

using test::leaves;
using vec = std::vector<double>;
inline constexpr double inf = std::numeric_limits<double>::infinity();
inline const double qnan = std::numeric_limits<double>::quiet_NaN();

template <class P>
using ref_of = typename P::template with_backend<ctrec::reference_backend>;

// Fills P's missing leaves (test::fill) and rounds every leaf to float, so the float and the
// double programs and the float64 reference all see the same numbers.
template <class P>
void prepare(leaves& L, std::size_t batch) {
    test::fill<P>(L, batch);
    for (auto& [name, v] : L.v)
        for (double& e : v) e = static_cast<double>(static_cast<float>(e));
}

// Every element of got finite and within tol of want, relative to max(scale, |want|); one
// assertion, naming the worst element.
inline void check_finite_close(const vec& got, const vec& want, double tol, double scale = 1.0) {
    REQUIRE(got.size() == want.size());
    double worst = 0;
    std::size_t at = 0, non_finite = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        if (!std::isfinite(got[i])) ++non_finite;
        const double err = std::abs(got[i] - want[i]) / std::max(scale, std::abs(want[i]));
        if (!(err <= worst)) worst = err, at = i;
    }
    INFO("worst element " << at << " of " << got.size() << ": got " << (got.empty() ? 0.0 : got[at]) << ", want "
                          << (want.empty() ? 0.0 : want[at]) << "; non-finite elements: " << non_finite);
    CHECK(non_finite == 0);
    CHECK(worst <= tol);
}

// Bit-for-bit equality (NaN equal to NaN), one assertion naming the first difference.
inline void check_identical(const vec& got, const vec& want) {
    REQUIRE(got.size() == want.size());
    std::size_t bad = got.size();
    for (std::size_t i = 0; i < got.size() && bad == got.size(); ++i)
        if (!(got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i])))) bad = i;
    INFO("first difference at " << bad << ": " << (bad < got.size() ? got[bad] : 0.0) << " vs "
                                << (bad < got.size() ? want[bad] : 0.0));
    CHECK(bad == got.size());
}

// Output r of program P and of P on the reference backend against want, in P's element type.
template <class P>
void check_both_backends(const leaves& L0, std::size_t batch, std::size_t r, const vec& want, double tol, double scale = 1.0) {
    leaves L = L0;
    INFO("element type " << std::string(sizeof(typename P::element_type) == 4 ? "float" : "double") << ", output " << r);
    {
        INFO("CPU backend");
        check_finite_close(test::run<P>(L, batch)[r], want, tol, scale);
    }
    {
        INFO("reference backend");
        check_finite_close(test::run<ref_of<P>>(L, batch)[r], want, tol, scale);
    }
}

// The gradients of grad program G on the leaves, by leaf name, and its root under "".
template <class G>
std::map<std::string, vec> gradients(leaves& L, std::size_t batch) {
    const auto o = test::run<G>(L, batch);
    std::map<std::string, vec> g;
    g[""] = o[0];
    for (std::size_t k = 0; k < G::tab.n_wrt; ++k) g[std::string(G::tab.name_of(G::tab.wrt[k]))] = o[1 + k];
    return g;
}

// d root / d `name` of G (CPU and reference backends) against want.
template <class G>
void check_gradient(const leaves& L0, std::size_t batch, const std::string& name, const vec& want, double tol, double scale = 1.0) {
    INFO("gradient w.r.t. " << name << ", element type " << std::string(sizeof(typename G::element_type) == 4 ? "float" : "double"));
    leaves L = L0;
    {
        INFO("CPU backend");
        auto g = gradients<G>(L, batch);
        REQUIRE(g.count(name) == 1);
        check_finite_close(g[name], want, tol, scale);
    }
    {
        INFO("reference backend");
        auto g = gradients<ref_of<G>>(L, batch);
        REQUIRE(g.count(name) == 1);
        check_finite_close(g[name], want, tol, scale);
    }
}


// got against want example by example (n values each), relative to that example's largest
// |want| (at least 1): outputs at inputs of 1e4 are compared at their own scale. Every element
// must be finite.
inline void check_per_example(const vec& got, const vec& want, std::size_t n, double tol) {
    REQUIRE(got.size() == want.size());
    REQUIRE(n > 0);
    double worst = 0;
    std::size_t at = 0, non_finite = 0;
    for (std::size_t b = 0; b * n < got.size(); ++b) {
        double scale = 1;
        for (std::size_t i = b * n; i < (b + 1) * n; ++i) scale = std::max(scale, std::abs(want[i]));
        for (std::size_t i = b * n; i < (b + 1) * n; ++i) {
            if (!std::isfinite(got[i])) ++non_finite;
            const double err = std::abs(got[i] - want[i]) / scale;
            if (!(err <= worst)) worst = err, at = i;
        }
    }
    INFO("worst element " << at << " (example " << at / n << "): got " << (got.empty() ? 0.0 : got[at]) << ", want "
                          << (want.empty() ? 0.0 : want[at]) << "; non-finite elements: " << non_finite);
    CHECK(non_finite == 0);
    CHECK(worst <= tol);
}

// The leaves of example b of a call with `batch` examples, as a call with one example:
// batched inputs of program P sliced, shared inputs and parameters copied.
template <class P>
leaves example_of(leaves& L, std::size_t batch, std::size_t b) {
    test::fill<P>(L, batch);
    leaves r;
    for (std::size_t k = 0; k < P::n_inputs; ++k) {
        const auto id = P::input_ids[k];
        const std::string name(P::tab.name_of(id));
        const vec& v = L[name];
        if (!P::tab.nodes[id].batched) {
            r[name] = v;
            continue;
        }
        const std::size_t n = v.size() / batch;
        r[name] = vec(v.begin() + static_cast<std::ptrdiff_t>(b * n), v.begin() + static_cast<std::ptrdiff_t>((b + 1) * n));
    }
    for (std::size_t k = 0; k < P::n_params; ++k) r[P::parameters::names[k]] = L[P::parameters::names[k]];
    return r;
}

// Float64 reverse mode of grad program G (CPU), example by example (a call with that example
// alone), against central differences of its root contracted with the "cotangent" leaf on the
// reference backend, for every element of every input and parameter, except the leaves
// skip(name, example) names. The outputs are differenced before they are contracted, so an
// output that does not move adds nothing. Steps h = s max(1, |x|) for s = 1e-3, 1e-5 and 1e-7,
// the closest to the reverse value counting: no one step suits every element when outputs of
// 1e12 (rounding 1e-4) sit beside sigmoids of arguments of 1e4 (curvature at steps of 1e-4),
// and a wrong derivative matches at none of them. Errors are relative to the largest reverse
// value of the same leaf in that example, or 1e-6 of the largest of any leaf, if larger.
template <class G>
void check_central_differences(leaves& L, std::size_t batch, double tol,
                               std::function<bool(const std::string&, std::size_t)> skip = {}) {
    using Rf = ref_of<G>;
    static_assert(std::is_same_v<typename G::element_type, double>);
    for (std::size_t b = 0; b < batch; ++b) {
        leaves E = example_of<G>(L, batch, b);
        auto g = gradients<G>(E, 1);
        const vec& ct = E["cotangent"];
        double global = 0;
        for (const auto& [name, v] : g)
            if (!name.empty() && !(skip && skip(name, b)))
                for (double e : v) global = std::max(global, std::abs(e));
        for (std::size_t k = 0; k < G::tab.n_wrt; ++k) {
            const std::string name(G::tab.name_of(G::tab.wrt[k]));
            if (skip && skip(name, b)) continue;
            vec& x = E[name];
            const vec& r = g[name];
            double scale = std::max(1e-300, 1e-6 * global), worst = 0;
            for (double e : r) scale = std::max(scale, std::abs(e));
            std::size_t at = 0;
            double fd_at = 0;
            for (std::size_t e = 0; e < x.size(); ++e) {
                const double x0 = x[e];
                double best = std::numeric_limits<double>::infinity(), best_fd = 0;
                for (double step : {1e-3, 1e-5, 1e-7}) {
                    const double h = step * std::max(1.0, std::abs(x0));
                    x[e] = x0 + h;
                    const vec op = test::run<Rf>(E, 1)[0];
                    x[e] = x0 - h;
                    const vec om = test::run<Rf>(E, 1)[0];
                    x[e] = x0;
                    double d = 0;
                    for (std::size_t i = 0; i < op.size(); ++i) d += ct[i] * (op[i] - om[i]);
                    d /= 2 * h;
                    if (std::abs(d - r[e]) < best) best = std::abs(d - r[e]), best_fd = d;
                }
                if (!(best / scale <= worst)) worst = best / scale, at = e, fd_at = best_fd;
            }
            INFO("example " << b << ": d root / d " << name << "[" << at << "]: reverse " << r[at] << ", central difference " << fd_at);
            CHECK(worst <= tol);
        }
    }
}

} // namespace num
