#pragma once
// Layers: what every layer shares.
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
//   constexpr auto r = ctrec::layers::dense<"tower/dense_0", {.units = 64}>(x);   // x: expr or result
//   constexpr auto y = r.out();                                                    // an expr
//
// Configurations (dense_config, mlp_config, ...), activations, regularizers, initializer specs
// and the call mode are the type core's (ctrec/layers/*.hpp): one vocabulary for both cores.
#include <string_view>

#include "ctrec/ad/autodiff.hpp"  // none
#include "ctrec/core/dsl.hpp"
#include "ctrec/core/val.hpp"
#include "ctrec/core/error.hpp"
#include "ctrec/layers/regularizers.hpp"
#include "ctrec/layers/spec.hpp"

namespace ctrec::layers {

// ---- call mode ----------------------------------------------------------------------------
// train: batch statistics, state updates, dropout; eval / predict: moving statistics, no updates.
enum class mode { train, eval, predict };

// ---- regularizers as compile-time values --------------------------------------------------
// Keras L1 / L2 / L1L2 (spec 1.4) as a structural value; converts from ctrec::reg's
// runtime structs, so `.kernel_regularizer = reg::L2{1e-4}` works.
struct regularizer {
    double l1 = 0.0, l2 = 0.0;
    constexpr regularizer() = default;
    constexpr regularizer(double a, double b) : l1(a), l2(b) {}
    constexpr regularizer(reg::L1 r) : l1(r.l1) {}
    constexpr regularizer(reg::L2 r) : l2(r.l2) {}
    constexpr regularizer(reg::L1L2 r) : l1(r.l1), l2(r.l2) {}
    constexpr bool active() const { return l1 != 0.0 || l2 != 0.0; }
};
// ---- activations as compile-time values ---------------------------------------------------
// Both resolvers of spec 1.2: keras_activation (Dense, GroupInt, CDot, CAN, CIN) and
// ad_activation (Monolith's registry, used by MLP). Unknown names are compile errors
// when resolved in a constant expression, whose message shows the name and the table it is not
// in (core/shape_error.hpp):
//   error: '(((const char*)"relux") < (& ctrec::layers::not_a_keras_activation_name))' is not a constant expression
// outside constant evaluation the resolvers throw ctrec::error.
struct activation {
    enum class which {
        none, linear, relu, keras_relu, leakyrelu, elu, selu, gelu, hard_sigmoid, sigmoid, sigmoid2, softplus,
        softsign, swish, tanh, exponential, thresholdedrelu, softmax, prelu
    };
    which w = which::none;  // none: no activation at all (ad_acts' None); linear: identity
    double p0 = 0, p1 = 0, p2 = 0;  // leakyrelu/elu: alpha; thresholdedrelu: theta; keras_relu: max_value, negative_slope, threshold
    constexpr bool operator==(const activation&) const = default;
};
using act_which = activation::which;
inline constexpr activation act_none{};
inline constexpr activation act_linear{act_which::linear};
inline constexpr activation act_relu{act_which::relu};
inline constexpr activation act_elu{act_which::elu, 1.0};
inline constexpr activation act_selu{act_which::selu};
inline constexpr activation act_gelu{act_which::gelu};
inline constexpr activation act_hard_sigmoid{act_which::hard_sigmoid};
inline constexpr activation act_sigmoid{act_which::sigmoid};
inline constexpr activation act_sigmoid2{act_which::sigmoid2};
inline constexpr activation act_softplus{act_which::softplus};
inline constexpr activation act_softsign{act_which::softsign};
inline constexpr activation act_swish{act_which::swish};
inline constexpr activation act_tanh{act_which::tanh};
inline constexpr activation act_exponential{act_which::exponential};
inline constexpr activation act_softmax{act_which::softmax};
inline constexpr activation act_prelu{act_which::prelu};
constexpr activation act_leakyrelu(double alpha = 0.3) { return {act_which::leakyrelu, alpha}; }
constexpr activation act_thresholdedrelu(double theta = 1.0) { return {act_which::thresholdedrelu, theta}; }
constexpr activation act_keras_relu(double max_value = -1.0, double negative_slope = 0.0, double threshold = 0.0) {
    return {act_which::keras_relu, max_value, negative_slope, threshold};
}
constexpr activation act_elu_alpha(double alpha) { return {act_which::elu, alpha}; }

inline constexpr char not_a_keras_activation_name{}, not_a_monolith_activation_name{};  // named in the errors

// Keras activations.get (TF 2.4): an empty name is None, which Keras turns into linear.
constexpr activation keras_activation(std::string_view s) {
    if (s.empty() || s == "linear") return act_linear;
    if (s == "elu") return act_elu;
    if (s == "exponential") return act_exponential;
    if (s == "gelu") return act_gelu;
    if (s == "hard_sigmoid") return act_hard_sigmoid;
    if (s == "relu") return act_relu;
    if (s == "selu") return act_selu;
    if (s == "sigmoid") return act_sigmoid;
    if (s == "softmax") return act_softmax;
    if (s == "softplus") return act_softplus;
    if (s == "softsign") return act_softsign;
    if (s == "swish") return act_swish;
    if (s == "tanh") return act_tanh;
    report_unknown_name(s, not_a_keras_activation_name);
    throw error("ctrec: not a Keras activation name (sigmoid2, leakyrelu, prelu and thresholdedrelu are "
                "Monolith-only and not accepted here)");
}
// Monolith's advanced_activations.get: case-insensitive registry names, fresh defaults;
// an empty name is None (no activation).
constexpr activation ad_activation(std::string_view s) {
    char buf[32] = {};
    if (s.size() >= sizeof buf) report_unknown_name(s, not_a_monolith_activation_name);
    if (s.size() >= sizeof buf) throw error("ctrec: unknown activation name");
    for (std::size_t i = 0; i < s.size(); ++i) buf[i] = (s[i] >= 'A' && s[i] <= 'Z') ? static_cast<char>(s[i] - 'A' + 'a') : s[i];
    std::string_view l(buf, s.size());
    if (l.empty()) return act_none;
    if (l == "exponential") return act_exponential;
    if (l == "gelu") return act_gelu;
    if (l == "hard_sigmoid" || l == "hardsigmoid") return act_hard_sigmoid;
    if (l == "linear") return act_linear;
    if (l == "selu") return act_selu;
    if (l == "sigmoid") return act_sigmoid;
    if (l == "sigmoid2") return act_sigmoid2;
    if (l == "softplus") return act_softplus;
    if (l == "softsign") return act_softsign;
    if (l == "swish") return act_swish;
    if (l == "tanh") return act_tanh;
    if (l == "leakyrelu") return act_leakyrelu();
    if (l == "relu") return act_relu;
    if (l == "elu") return act_elu;
    if (l == "softmax") return act_softmax;
    if (l == "thresholdedrelu") return act_thresholdedrelu();
    if (l == "prelu") return act_prelu;
    report_unknown_name(s, not_a_monolith_activation_name);
    throw error("ctrec: unknown activation name (Monolith registry)");
}

// ---- merge types (merge_list.hpp) ------------------------------------------

// MergeType: "stack", "concat", None.
enum class merge_type { stack, concat, none };



#ifndef CTREC_MAX_VARIABLES
#define CTREC_MAX_VARIABLES 2048
#endif
#ifndef CTREC_MAX_UPDATES
#define CTREC_MAX_UPDATES 512
#endif
inline constexpr std::size_t max_variables = CTREC_MAX_VARIABLES;
inline constexpr std::size_t max_updates = CTREC_MAX_UPDATES;

void ctrec_error_too_many_variables_raise_CTREC_MAX_VARIABLES();
void ctrec_error_too_many_state_updates_raise_CTREC_MAX_UPDATES();
void ctrec_error_a_variable_is_declared_twice_with_different_initializers();
void ctrec_error_a_state_variable_is_updated_twice();

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
            if (updates[i].var == var.id) ctrec_error_a_state_variable_is_updated_twice();
        if (n_updates >= max_updates) ctrec_error_too_many_state_updates_raise_CTREC_MAX_UPDATES();
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
                    ctrec_error_a_variable_is_declared_twice_with_different_initializers();
                return;
            }
        if (n_inits >= max_variables) ctrec_error_too_many_variables_raise_CTREC_MAX_VARIABLES();
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
constexpr name_string scoped(const name_string& scope, std::string_view leaf) {
    if (scope.n == 0) return name_string(leaf);
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
constexpr val apply_activation(result& m, const activation& A, const name_string& scope, val x) {
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

} // namespace ctrec::layers
