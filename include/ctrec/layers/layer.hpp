#pragma once
// What every layer shares: the call mode, scoped variable names, compile-time
// activations and regularizers, and the layer result.
//
// A layer is a function template over an input expression. Its structure (sizes,
// options, activation, regularizers, initializers) is a configuration aggregate passed
// as a template argument, and its variables are named "<scope>/<leaf>" with the leaf
// names of the spec, so weight import can map Monolith / TF / PyTorch names:
//
//   constexpr auto r = ctrec::layers::dense<"tower/dense_0", {.units = 64, .activation = act_relu}>(x);
//   r.out       the output expression
//   r.penalty   the sum of the layer's regularizer penalties (an unbatched scalar; a
//               symbolic zero when it has none)
//   r.updates   state updates (new values of non-trainable variables, e.g. BatchNorm's
//               moving statistics): tlist<state_update<Name, Expr>...>
//   r.inits     how each variable is initialised: tlist<param_init<...>...>
//
// Results compose with then(): the next layer's output, every penalty summed, every
// update and initializer kept.
#include <string_view>

#include "ctrec/core/activations.hpp"
#include "ctrec/core/build.hpp"
#include "ctrec/core/dsl.hpp"
#include "ctrec/layers/regularizers.hpp"
#include "ctrec/layers/spec.hpp"

namespace ctrec::layers {

// ---- call mode ------------------------------------------------------------------------
// train: batch statistics, state updates, dropout; eval / predict: moving statistics,
// no updates. A compile-time argument of every layer that behaves differently.
enum class mode { train, eval, predict };

// ---- names ------------------------------------------------------------------------------
// scoped<"mlp/dense_0", "kernel"> == "mlp/dense_0/kernel"; an empty scope gives the leaf.
template <fixed_string Scope, fixed_string Leaf>
constexpr auto scoped() {
    if constexpr (Scope.size() == 0) return Leaf;
    else return join<join<Scope, "/">(), Leaf>();
}
// "dense_" + 3 -> "dense_3" (per-layer scopes inside MLP and friends)
template <fixed_string Prefix, std::size_t I>
constexpr auto indexed() {
    constexpr std::size_t digits = [] {
        std::size_t n = 1;
        for (std::size_t v = I; v >= 10; v /= 10) ++n;
        return n;
    }();
    fixed_string<Prefix.size() + digits + 1> r;
    for (std::size_t i = 0; i < Prefix.size(); ++i) r.v[i] = Prefix.v[i];
    std::size_t v = I;
    for (std::size_t i = 0; i < digits; ++i, v /= 10) r.v[Prefix.size() + digits - 1 - i] = static_cast<char>('0' + v % 10);
    return r;
}

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
using scalar_zero = zero_node<dims{}, false>;

// The penalty of regularizer R on variable w: a scalar expression (zero when R is none).
template <regularizer R, node W>
constexpr auto penalty(W w) {
    if constexpr (!R.active()) return scalar_zero{};
    else return reg::l1_l2_expr<R.l1, R.l2>(w);
}

// ---- activations as compile-time values ---------------------------------------------------
// Both resolvers of spec 1.2: keras_activation (Dense, GroupInt, CDot, CAN, CIN) and
// ad_activation (Monolith's registry, used by MLP). Unknown names are compile errors
// when resolved in a constant expression (the resolvers throw).
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
    throw error("ctrec: not a Keras activation name (sigmoid2, leakyrelu, prelu and thresholdedrelu are "
                "Monolith-only and not accepted here)");
}
// Monolith's advanced_activations.get: case-insensitive registry names, fresh defaults;
// an empty name is None (no activation).
constexpr activation ad_activation(std::string_view s) {
    char buf[32] = {};
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
    throw error("ctrec: unknown activation name (Monolith registry)");
}

// Applies A to x. PReLU owns a weight: "<Scope>/alpha", shaped like one example of x
// (Keras PReLU without shared axes), initialised to zeros.
template <activation A, fixed_string Scope, node X>
constexpr auto apply_activation(X x) {
    using W = act_which;
    if constexpr (A.w == W::none || A.w == W::linear) return x;
    else if constexpr (A.w == W::relu) return act::relu(x);
    else if constexpr (A.w == W::keras_relu) return act::keras_relu<A.p0, A.p1, A.p2>(x);
    else if constexpr (A.w == W::leakyrelu) return act::leakyrelu<A.p0>(x);
    else if constexpr (A.w == W::elu) return act::elu<A.p0>(x);
    else if constexpr (A.w == W::selu) return act::selu(x);
    else if constexpr (A.w == W::gelu) return act::gelu(x);
    else if constexpr (A.w == W::hard_sigmoid) return act::hard_sigmoid(x);
    else if constexpr (A.w == W::sigmoid) return act::sigmoid(x);
    else if constexpr (A.w == W::sigmoid2) return act::sigmoid2(x);
    else if constexpr (A.w == W::softplus) return act::softplus(x);
    else if constexpr (A.w == W::softsign) return act::softsign(x);
    else if constexpr (A.w == W::swish) return act::swish(x);
    else if constexpr (A.w == W::tanh) return act::tanh(x);
    else if constexpr (A.w == W::exponential) return act::exponential(x);
    else if constexpr (A.w == W::thresholdedrelu) return act::thresholdedrelu<A.p0>(x);
    else if constexpr (A.w == W::softmax) return softmax<X::shape.rank - 1>(x);
    else {
        static_assert(A.w == W::prelu);
        // max(x, 0) + alpha * min(x, 0): derivative 1 for x > 0, alpha otherwise
        constexpr auto alpha = param_node<scoped<Scope, "alpha">(), X::shape>{};
        return where(greater(x, lit<0.0>), x, alpha * x);
    }
}

// ---- results ------------------------------------------------------------------------------
// New value of the non-trainable variable Name after a training step (unbatched).
template <fixed_string Name, node Value>
struct state_update {
    static constexpr auto name = Name;
    using value = std::remove_cvref_t<Value>;
};
// How variable Name (of shape S) starts: from an initializer spec ...
template <fixed_string Name, dims S, init::spec Spec>
struct param_init {
    static constexpr auto name = Name;
    static constexpr dims shape = S;
    static constexpr init::spec spec = Spec;
};
// ... or as the per-column Euclidean norm of the initial value of a 2-D variable
// (Dense's trainable_kernel_norm, g0_j = ||W0[:, j]||, computed after every plain init).
template <fixed_string Name, fixed_string Of, dims S>
struct column_norm_init {
    static constexpr auto name = Name;
    static constexpr auto of = Of;
    static constexpr dims shape = S;
};

// Out is an expression, or a std::tuple of expressions for layers whose out_type / keep_list
// asks for a list (merge.hpp).
template <class Out, node Penalty = scalar_zero, class Updates = tlist<>, class Inits = tlist<>>
struct result {
    Out out{};
    Penalty penalty{};
    using updates = Updates;
    using inits = Inits;
};

// The result of applying `next` to a's output: next's output, both penalties, all updates
// and initializers.
template <class O1, class P1, class U1, class I1, class O2, class P2, class U2, class I2>
constexpr auto then(result<O1, P1, U1, I1>, result<O2, P2, U2, I2>) {
    return result<O2, add_t<P1, P2>, tl_concat_t<U1, U2>, tl_concat_t<I1, I2>>{};
}
// Wraps a plain expression (no variables) as a result.
template <node X>
constexpr auto as_result(X) { return result<std::remove_cvref_t<X>>{}; }

} // namespace ctrec::layers
