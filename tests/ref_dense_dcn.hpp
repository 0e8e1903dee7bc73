#pragma once
// Test helpers for the ports of the type-core tests of Dense, MLP, BatchNorm, DCN, the basic
// layers and GradNorm to the core (test_flat_dense_bn.cpp, test_flat_basic.cpp,
// test_flat_dcn.cpp). They keep the type-core tests' tolerances and error formulas:
//   values       |got - want| / max(1, |want|)                  (tests/support.hpp check_close)
//   derivatives  |ad - fd| / max(1, |ad|, |fd|) < 1e-6, JVP the same, duality < 1e-9 relative
//                (ctrec/ad/check.hpp), every element of every input and parameter
// Values run on the CPU backend (and, where asked, on the reference backend as a second
// oracle); central differences evaluate the model's float64 forward program. Nothing of the
// type core is used.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "layer_reference.hpp"
#include "support.hpp"

namespace flat_port {

namespace f = ctrec;
using flat_ref::vec;
using test::leaves;
using prep_fn = std::function<void(leaves&, std::size_t)>;

using test::check_close;  // |got - want| / max(1, |want|), the type core's measure

using test::run;  // every output of P on the leaves, with io.seed = seed

// Output `out` of P on the CPU backend and on the reference backend against want.
template <class P>
void check_value(leaves& L, std::size_t batch, const vec& want, double tol, std::uint64_t seed = 0, std::size_t out = 0) {
    INFO("batch " << batch << ", output " << out << (sizeof(typename P::element_type) == 4 ? ", float" : ", double"));
    check_close(run<P>(L, batch, seed)[out], want, tol);
    check_close(run<typename P::template with_backend<f::reference_backend>>(L, batch, seed)[out], want, tol);
}

// Output 0 of the model Y against ref(L, batch) (computed after prep and the leaves are set) in
// float64 (1e-12) and, unless tol32 is 0, float32 (tol32, the type core's 2e-5), on the CPU
// backend (as the type core's check_forward), and with RefBackend on the reference backend too.
template <const auto& Y, bool RefBackend = false, class Ref>
void check_forward(std::size_t batch, Ref ref, prep_fn prep = {}, double tol32 = 2e-5, std::uint64_t seed = 0) {
    using P = f::program<double, Y>;
    leaves L;
    if (prep) prep(L, batch);
    test::fill<P>(L, batch);
    const vec want = ref(L, batch);
    INFO("batch " << batch);
    if constexpr (RefBackend) {
        check_value<P>(L, batch, want, 1e-12, seed);
    } else {
        INFO("double");
        check_close(run<P>(L, batch, seed)[0], want, 1e-12);
    }
    if (tol32 > 0) {
        INFO("float");
        check_close(run<f::program<float, Y>>(L, batch, seed)[0], want, tol32);
    }
}

// The derivative root of leaf `name` in grad program G is the constant 0 (the core's
// symbolic zero: the leaf is used only under stop_gradient, or not at all on a path to the root).
template <class G>
bool gradient_is_symbolic_zero(std::string_view name) {
    for (std::size_t k = 0; k < G::tab.n_wrt; ++k)
        if (G::tab.name_of(G::tab.wrt[k]) == name) {
            std::size_t id = G::tab.roots[1 + k];
            while (G::tab.nodes[id].op == f::opcode::batch_broadcast) id = G::tab.operand(id, 0);  // a batched input's
            const auto& n = G::tab.nodes[id];
            return n.op == f::opcode::constant && n.value == 0.0;
        }
    return false;
}

// The output index of d root / d name in grad program G (G::grad<name> found at run time).
template <class G>
std::size_t grad_index(std::string_view name) {
    std::size_t k = 0;
    while (k < G::tab.n_wrt && G::tab.name_of(G::tab.wrt[k]) != name) ++k;
    REQUIRE_MESSAGE(k < G::tab.n_wrt, "no gradient of " << name);
    return 1 + k;
}

// The type core's check_ad on model Y (grad_program / jvp_program, float64): reverse mode against
// central differences of Y (its forward program) for every element of every input and parameter,
// the JVP against the directional difference, and the duality <v, J u> = <J^T v, u>. A
// per-example root is contracted with the "cotangent" input. Leaves in `constants` (used only
// under stop_gradient) must have a symbolically zero, exactly zero gradient and no tangent;
// they are not differenced (their real influence is not the derivative). prep(L, batch) sets
// leaves first (positive variances, saturated clipping).
template <const auto& Y>
void check_derivatives(std::size_t batch, prep_fn prep = {}, std::vector<std::string> constants = {}, std::uint64_t seed = 0) {
    using G = f::grad_program<double, Y>;
    using J = f::jvp_program<double, Y>;
    using F = f::program<double, Y>;  // the CPU forward program, as the type core's check
    leaves L;
    if (prep) prep(L, batch);
    const auto g = run<G>(L, batch, seed);
    const bool per_example = L.v.count("cotangent") > 0;
    auto value = [&](leaves& at) {
        const vec o = run<F>(at, batch, seed)[0];
        double s = 0;
        if (per_example) {
            const vec& ct = at["cotangent"];
            for (std::size_t e = 0; e < o.size(); ++e) s += o[e] * ct[e];
        } else {
            s = o[0];
        }
        return s;
    };
    auto rel = [](double a, double b) { return std::abs(a - b) / std::max({1.0, std::abs(a), std::abs(b)}); };
    auto is_constant = [&](const std::string& n) { return std::find(constants.begin(), constants.end(), n) != constants.end(); };
    const double h = 1e-6;
    std::size_t checked = 0;
    for (std::size_t k = 0; k < G::tab.n_wrt; ++k) {
        const std::string name(G::tab.name_of(G::tab.wrt[k]));
        INFO("d root / d " << name);
        auto& x = L[name];
        REQUIRE(g[1 + k].size() == x.size());
        if (is_constant(name)) {
            CHECK(gradient_is_symbolic_zero<G>(name));
            for (double v : g[1 + k]) CHECK(v == 0.0);
            continue;
        }
        double worst = 0;
        std::size_t at = 0;
        for (std::size_t e = 0; e < x.size(); ++e, ++checked) {
            const double x0 = x[e];
            x[e] = x0 + h;
            const double fp = value(L);
            x[e] = x0 - h;
            const double fm = value(L);
            x[e] = x0;
            const double err = rel(g[1 + k][e], (fp - fm) / (2 * h));
            if (!(err <= worst)) worst = err, at = e;
        }
        INFO("worst element " << at << ": reverse " << g[1 + k][at]);
        CHECK(worst < 1e-6);
    }
    CHECK(checked > 0);
    for (const auto& c : constants) CHECK_MESSAGE(L.v.count(c) == 1, "constant leaf " << c << " is not a leaf of the model");
    // forward mode: the tangent leaves "d.<name>" take leaf_value("d.<name>", i) as the direction u
    const auto jv = run<J>(L, batch, seed);
    leaves P = L, M = L;
    double dual = 0;  // <J^T v, u>
    for (std::size_t k = 0; k < G::tab.n_wrt; ++k) {
        const std::string name(G::tab.name_of(G::tab.wrt[k]));
        const auto it = L.v.find("d." + name);
        if (is_constant(name)) {
            CHECK_MESSAGE(it == L.v.end(), "constant leaf " << name << " has a tangent");
            continue;
        }
        if (it == L.v.end()) continue;  // no path to the root that carries a derivative
        const vec& u = it->second;
        REQUIRE(u.size() == L[name].size());
        for (std::size_t e = 0; e < u.size(); ++e) {
            P[name][e] += h * u[e];
            M[name][e] -= h * u[e];
            dual += g[1 + k][e] * u[e];
        }
    }
    const double dir = (value(P) - value(M)) / (2 * h);
    double jvp = 0;  // <v, J u>
    if (per_example) {
        const vec& ct = L["cotangent"];
        for (std::size_t e = 0; e < jv[1].size(); ++e) jvp += jv[1][e] * ct[e];
    } else {
        jvp = jv[1][0];
    }
    INFO("JVP " << jvp << ", directional difference " << dir << ", <J^T v, u> " << dual);
    CHECK(rel(jvp, dir) < 1e-6);
    CHECK(rel(jvp, dual) < 1e-9);
}

// The output of a layer result's state update u (its new value) as an expression.
constexpr f::expr update_value(const f::layers::result& r, std::size_t u) { return {r.g, r.updates[u].value}; }

// Two frozen tables hold the same nodes, operands and names (the core's "same expression").
template <class A, class B>
bool same_table(const A& a, const B& b) {
    if (A::size != B::size || A::n_operands != B::n_operands || A::n_roots != B::n_roots) return false;
    for (std::size_t i = 0; i < A::size; ++i) {
        if (!(a.nodes[i] == b.nodes[i]) || a.name_of(i) != b.name_of(i)) return false;
        for (std::size_t j = 0; j < a.nodes[i].nops; ++j)
            if (a.operand(i, j) != b.operand(i, j)) return false;
    }
    for (std::size_t r = 0; r < A::n_roots; ++r)
        if (a.roots[r] != b.roots[r]) return false;
    return true;
}

// The names of a result's variables in creation order, and their shapes.
inline std::vector<std::string> var_names(const f::layers::result& r) {
    std::vector<std::string> n;
    for (std::size_t i = 0; i < r.n_inits; ++i) n.emplace_back(r.g.name_of(r.inits[i].var));
    return n;
}
inline std::vector<ctrec::dims> var_shapes(const f::layers::result& r) {
    std::vector<ctrec::dims> s;
    for (std::size_t i = 0; i < r.n_inits; ++i) s.push_back(r.g.nodes[r.inits[i].var].shape);
    return s;
}
template <class P>
std::vector<std::string> param_names() {
    return {P::parameters::names.begin(), P::parameters::names.end()};
}
template <class P>
std::vector<std::string> sorted_param_names() {
    auto n = param_names<P>();
    std::sort(n.begin(), n.end());
    return n;
}

// A leaf's values by name from program parameters (after initialize or a training step).
template <class Params>
vec param_values(const Params& p, std::string_view name) {
    const std::size_t i = Params::position(name);
    REQUIRE_MESSAGE(i < Params::count, "no parameter " << name);
    const auto s = p.get(i);
    return vec(s.begin(), s.end());
}

} // namespace flat_port
