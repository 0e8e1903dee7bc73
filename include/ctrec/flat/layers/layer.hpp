#pragma once
// Layers on the graph-as-data core: what every layer shares.
//
// A `result` is a model (or the part of one a layer call produced) under construction: one graph
// holding the output, the penalty (the sum of the regularizers' terms) and the new values of the
// state variables (BatchNorm's moving statistics), plus how every variable starts. Layers are
// constexpr functions that build into a result in place,
//
//   val y = layers::dense(m, "tower/dense_0", {.units = 64, .activation = act_relu}, x);
//
// (m a result, x a val in m's graph), so a whole model written as one constexpr function copies
// no graph however many layers it has. The type core's spelling works too, one copy per call:
//
//   constexpr auto r = flat::layers::dense<"tower/dense_0", {.units = 64}>(x);   // x: expr or result
//   constexpr auto y = r.out();                                                    // an expr
//
// Configurations (dense_config, mlp_config, ...), activations, regularizers, initializer specs
// and the call mode are the type core's (ctrec/layers/*.hpp): one vocabulary for both cores.
#include <string_view>

#include "ctrec/flat/autodiff.hpp"  // none
#include "ctrec/flat/dsl.hpp"
#include "ctrec/flat/val.hpp"
#include "ctrec/layers/layer.hpp"  // mode, activation, regularizer, init::spec

namespace ctrec::flat::layers {

using ctrec::layers::activation;
using ctrec::layers::act_which;
using ctrec::layers::mode;
using ctrec::layers::regularizer;

#ifndef CTREC_FLAT_MAX_VARIABLES
#define CTREC_FLAT_MAX_VARIABLES 2048
#endif
#ifndef CTREC_FLAT_MAX_UPDATES
#define CTREC_FLAT_MAX_UPDATES 512
#endif
inline constexpr std::size_t max_variables = CTREC_FLAT_MAX_VARIABLES;
inline constexpr std::size_t max_updates = CTREC_FLAT_MAX_UPDATES;

void ctrec_flat_error_too_many_variables_raise_CTREC_FLAT_MAX_VARIABLES();
void ctrec_flat_error_too_many_state_updates_raise_CTREC_FLAT_MAX_UPDATES();
void ctrec_flat_error_a_variable_is_declared_twice_with_different_initializers();
void ctrec_flat_error_a_state_variable_is_updated_twice();

// How variable `var` (a param node) starts: from `spec`, or, when `of` is a param node, as the
// per-column Euclidean norm of of's initial value (Dense's and DCN's trainable norms).
struct var_init {
    std::uint32_t var = 0;
    init::spec spec{};
    std::uint32_t of = none;
};
// The new value of state variable `var` after a training step.
struct state_update {
    std::uint32_t var = 0, value = 0;
};

struct result {
    graph g{};
    std::uint32_t out_id = 0;
    std::uint32_t penalty_id = none;  // none: no regularizer term
    std::uint32_t n_inits = 0, n_updates = 0;
    var_init inits[max_variables]{};
    state_update updates[max_updates]{};

    constexpr result() = default;
    // A result continuing from an expression: its graph, nothing declared yet.
    constexpr result(const expr& e) : g(e.g), out_id(e.id) {}  // NOLINT: implicit on purpose

    // ---- building in place ----------------------------------------------------------------------
    constexpr val at(std::uint32_t id) { return {&g, id}; }
    constexpr val value() { return {&g, out_id}; }
    constexpr val input(std::string_view name, dims s) { return make_input(g, name, s); }
    constexpr val shared_input(std::string_view name, dims s) { return make_shared_input(g, name, s); }
    // A variable with its initializer (declaring it again with the same initializer is the same
    // variable: layers that share weights may both declare it).
    constexpr val var(std::string_view name, dims s, init::spec spec) {
        val v = make_param(g, name, s);
        declare(var_init{v.id, spec, none});
        return v;
    }
    // A variable initialised to the column norms of `of`'s initial value.
    constexpr val norm_var(std::string_view name, dims s, val of) {
        val v = make_param(g, name, s);
        declare(var_init{v.id, init::spec{}, of.id});
        return v;
    }
    constexpr void add_penalty(val p) {
        penalty_id = penalty_id == none ? p.id : (at(penalty_id) + p).id;
    }
    constexpr void update(val var, val value) {
        for (std::uint32_t i = 0; i < n_updates; ++i)
            if (updates[i].var == var.id) ctrec_flat_error_a_state_variable_is_updated_twice();
        if (n_updates >= max_updates) ctrec_flat_error_too_many_state_updates_raise_CTREC_FLAT_MAX_UPDATES();
        updates[n_updates++] = {var.id, value.id};
    }
    constexpr void set_out(val v) { out_id = v.id; }

    // ---- reading --------------------------------------------------------------------------------
    constexpr expr out() const { return {g, out_id}; }
    // The penalty as an unbatched scalar (the constant 0 when there is none).
    constexpr expr penalty() const {
        expr e{g, penalty_id};
        if (penalty_id == none) e.id = build::constant(e.g, 0.0);
        return e;
    }
    constexpr bool has_penalty() const { return penalty_id != none; }
    constexpr dims shape() const { return g.nodes[out_id].shape; }

    // ---- combining ------------------------------------------------------------------------------
    // Brings every declaration of `o` into this result (its graph merged into this one: free when
    // this graph continues o's, as when a layer was applied to o's output).
    constexpr void absorb(const result& o) {
        std::uint32_t map[max_nodes]{};
        if (g.has_prefix(o.g)) {
            for (std::uint32_t i = 0; i < o.g.n; ++i) map[i] = i;
        } else {
            g.merge(o.g, map);
        }
        for (std::uint32_t i = 0; i < o.n_inits; ++i) {
            var_init v = o.inits[i];
            v.var = map[v.var];
            if (v.of != none) v.of = map[v.of];
            declare(v);
        }
        for (std::uint32_t i = 0; i < o.n_updates; ++i) update(at(map[o.updates[i].var]), at(map[o.updates[i].value]));
        if (o.penalty_id != none) add_penalty(at(map[o.penalty_id]));
    }

private:
    constexpr void declare(var_init v) {
        for (std::uint32_t i = 0; i < n_inits; ++i)
            if (inits[i].var == v.var) {
                if (!(inits[i].spec.w == v.spec.w && inits[i].spec.a == v.spec.a && inits[i].spec.b == v.spec.b &&
                      inits[i].of == v.of))
                    ctrec_flat_error_a_variable_is_declared_twice_with_different_initializers();
                return;
            }
        if (n_inits >= max_variables) ctrec_flat_error_too_many_variables_raise_CTREC_FLAT_MAX_VARIABLES();
        inits[n_inits++] = v;
    }
};

// A result whose output is `e` (an expression built from r's output and other values), with
// every declaration of r: how a model continues after plain expression code.
constexpr result then(const result& r, const expr& e) {
    result o(e);
    o.absorb(r);
    return o;
}
// Both results' declarations, b's output.
constexpr result then(const result& a, const result& b) {
    result o = b;
    o.absorb(a);
    return o;
}

// "scope" + "/" + "leaf" (an empty scope gives the leaf)
constexpr label scoped(const label& scope, std::string_view leaf) {
    if (scope.n == 0) return label(leaf);
    return scope + "/" + leaf;
}

// ---- regularizers ----------------------------------------------------------------------------------
// Keras L1 / L2 / L1L2 on w: l1 sum |w| + l2 sum w^2; a zero coefficient adds no term.
constexpr void add_penalty(result& m, const regularizer& r, val w) {
    if (r.l1 != 0.0) m.add_penalty(r.l1 * sum(abs(w)));
    if (r.l2 != 0.0) m.add_penalty(r.l2 * sum(w * w));
}

// ---- activations -----------------------------------------------------------------------------------
// The activations of spec 1.2 (ctrec/core/activations.hpp has the same forms and says why each
// branch is written as it is). PReLU owns "<scope>/alpha", shaped like one example of x, zeros.
constexpr val apply_activation(result& m, const activation& A, const label& scope, val x) {
    using W = act_which;
    auto lit = [&](double v) { return constant(m.g, v); };
    switch (A.w) {
        case W::none:
        case W::linear: return x;
        case W::relu: return relu(x);
        case W::keras_relu: {
            val p = where(greater(x, A.p2), x, 0.0);
            if (A.p0 >= 0.0) p = minimum(maximum(p, 0.0), A.p0);
            if (A.p1 != 0.0) p = p - A.p1 * maximum(lit(A.p2) - x, 0.0);
            return p;
        }
        case W::leakyrelu: return where(greater(x, 0.0), x, A.p0 * x);
        case W::thresholdedrelu: return where(greater(x, A.p0), x, 0.0);
        case W::elu: return where(greater(x, 0.0), x, A.p0 * (exp(minimum(x, 0.0)) - 1.0));
        case W::selu:
            return 1.0507009873554805 * where(greater(x, 0.0), x, 1.6732632423543772 * (exp(minimum(x, 0.0)) - 1.0));
        case W::gelu: return 0.5 * x * (1.0 + erf(x * 0.7071067811865476));
        case W::hard_sigmoid: return minimum(maximum(0.2 * x + 0.5, 0.0), 1.0);
        case W::sigmoid: return sigmoid(x);
        case W::sigmoid2: return 2.0 * sigmoid(x);
        case W::softplus:
            return where(greater(x, 0.0), x + log1p(exp(-maximum(x, 0.0))), log1p(exp(minimum(x, 0.0))));
        case W::softsign: return x / (1.0 + abs(x));
        case W::swish: return x * sigmoid(x);
        case W::tanh: return tanh(x);
        case W::exponential: return exp(x);
        case W::softmax: return softmax(x, x.rank() - 1);
        case W::prelu: {
            val alpha = m.var(scoped(scope, "alpha").view(), x.shape(), init::Zeros{});
            return where(greater(x, 0.0), x, alpha * x);
        }
    }
    return x;
}

} // namespace ctrec::flat::layers
