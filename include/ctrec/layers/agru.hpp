#pragma once
// AGRUCell and its attention RNN drivers (spec layers-trans-seq-multitask-nas.md 2.1): a GRU
// cell whose update is gated by an external per-step attention score, run over a sequence.
//
//   constexpr auto r = layers::agru_rnn<"augru_cell", {.units = 8, .att_type = agru_att::augru}>(x, a);
//   x (T, I) and a (T) per example; std::get<0>(r.out) is (T, U) = [h_1 .. h_T],
//   std::get<1>(r.out) is (U) = h_T (the drivers' (outputs, final_state)).
//   agru_rnn<...>(x, a, mask) also takes a (T) mask (see below).
//
// Per step (reset gate applied before the candidate product, Monolith / TF-1 style):
//   [r | u] = sig([x, h] . gates/kernel + gates/bias)          r: first U columns, u: last U
//   c       = act([x, r * h] . candidate/kernel + candidate/bias)
//   AGRU:  h' = (1 - a) h + a c                                  (u computed, unused)
//   AUGRU: v = (1 - a) u, h' = v * h + (1 - v) * c                (Monolith's form, not the paper's)
// h_0 = 0; static_rnn_with_attention and dynamic_rnn_with_attention compute the same thing,
// so there is one driver (the dynamic one's scheduling arguments have no meaning here).
//
// Variables ("<Scope>/..."): gates/kernel (I + U, 2U), candidate/kernel (I + U, U)
// [initializer, default He-normal]; gates/bias (2U), candidate/bias (U) [Ones]; the
// regularizer applies to all four. Rows 0..I-1 of each kernel multiply x, rows I.. the state.
//
// How it runs: the x rows of both kernels (and both biases) are one ordinary GEMM over all T
// steps before the recurrence (x W for the whole sequence); the recurrence is a scan_node
// (core/expr.hpp) that does only the state products (h W_g[I:], then (r h) W_c[I:]) and keeps
// a (T, 4U) record per example [h | r | u | c], the BPTT storage. The slices of the kernels
// are parameter-only values, cached with the parameters.
//
// Decisions:
// - activation: None in the source means tanh (the default here). The recurrence kernels
//   support linear (none), relu, tanh and sigmoid; another activation is a compile error.
// - The cell without an attention score (h' = (1 - u) h + u c) is not provided: no ctrec
//   layer uses it, and both drivers always pass scores.
// - init_state is not supported (h_0 = 0), as in every use in Monolith's layers.
// - mask (ctrec addition, used by DIEN): a step is real when mask_t >= 1 (DIN's rule); a
//   padded step leaves the state unchanged, so its output row repeats h_{t-1}. Without a mask
//   every step is processed, as in the source.
// - att_type: agru_att_of("AGRU") / ("augru") parse the source's case-insensitive strings.
#include <tuple>

#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

enum class agru_att { agru, augru };
constexpr agru_att agru_att_of(std::string_view s) {
    auto eq = [&](std::string_view w) {
        if (s.size() != w.size()) return false;
        for (std::size_t i = 0; i < s.size(); ++i) {
            char ch = s[i];
            if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
            if (ch != w[i]) return false;
        }
        return true;
    };
    if (eq("AGRU")) return agru_att::agru;
    if (eq("AUGRU")) return agru_att::augru;
    throw error("ctrec: att_type must be 'AGRU' or 'AUGRU'");
}

// The candidate activations the recurrence kernels implement.
template <activation A>
constexpr scan_act scan_activation() {
    using W = act_which;
    static_assert(A.w == W::none || A.w == W::linear || A.w == W::relu || A.w == W::tanh || A.w == W::sigmoid,
                  "ctrec::layers: a recurrent cell's activation must be linear, relu, tanh or sigmoid");
    if constexpr (A.w == W::relu) return scan_act::relu;
    else if constexpr (A.w == W::tanh) return scan_act::tanh;
    else if constexpr (A.w == W::sigmoid) return scan_act::sigmoid;
    else return scan_act::linear;
}

struct agru_config {
    std::size_t units = 0;                        // U
    agru_att att_type = agru_att::agru;
    layers::activation activation = act_tanh;     // the source's None
    init::spec initializer = init::HeNormal{};     // both kernels
    layers::regularizer regularizer{};             // all four variables
};

namespace detail {
// The record of the attention RNN over x (T, I) with scores a (T) and optional mask.
template <fixed_string Scope, agru_config C, node X, node A, node... M>
constexpr auto agru_record(X, A, M...) {
    constexpr std::size_t I = X::shape.d[1], U = C.units;
    using Wg = param_node<scoped<Scope, "gates/kernel">(), make_dims<I + U, 2 * U>()>;
    using bg = param_node<scoped<Scope, "gates/bias">(), make_dims<2 * U>()>;
    using Wc = param_node<scoped<Scope, "candidate/kernel">(), make_dims<I + U, U>()>;
    using bc = param_node<scoped<Scope, "candidate/bias">(), make_dims<U>()>;
    // input side for every step, one GEMM: [x W_g[:I] + b_g | x W_c[:I] + b_c]  (T, 3U)
    using Wx = concat_node<1, slice_node<0, 0, I, Wg>, slice_node<0, 0, I, Wc>>;
    using Xp = decltype(einsum<"ti,ig->tg">(X{}, Wx{}) + concat_node<0, bg, bc>{});
    constexpr scan_cell cell = C.att_type == agru_att::augru ? scan_cell::augru : scan_cell::agru;
    return scan_node<cell, scan_activation<C.activation>(), Xp, slice_node<0, I, I + U, Wg>, slice_node<0, I, I + U, Wc>, A, M...>{};
}
} // namespace detail

template <fixed_string Scope, agru_config C, node X, node A, node... M>
constexpr auto agru_rnn(X x, A a, M... mask) {
    static_assert(C.units > 0, "ctrec::layers::agru_rnn: units must be positive");
    static_assert(X::batched && X::shape.rank == 2, "ctrec::layers::agru_rnn: x must be (B, T, I)");
    static_assert(A::batched && A::shape == make_dims<X::shape.d[0]>(), "ctrec::layers::agru_rnn: scores must be (B, T)");
    static_assert(sizeof...(M) <= 1 && ((M::batched && M::shape == A::shape) && ...),
                  "ctrec::layers::agru_rnn: the mask must be (B, T)");
    constexpr std::size_t T = X::shape.d[0], I = X::shape.d[1], U = C.units;
    using Rec = decltype(detail::agru_record<Scope, C>(x, a, mask...));
    using H = slice_node<1, 0, U, Rec>;
    using Last = reshape_node<make_dims<U>(), slice_node<0, T - 1, T, H>>;
    constexpr auto Wg = param_node<scoped<Scope, "gates/kernel">(), make_dims<I + U, 2 * U>()>{};
    constexpr auto bg = param_node<scoped<Scope, "gates/bias">(), make_dims<2 * U>()>{};
    constexpr auto Wc = param_node<scoped<Scope, "candidate/kernel">(), make_dims<I + U, U>()>{};
    constexpr auto bc = param_node<scoped<Scope, "candidate/bias">(), make_dims<U>()>{};
    using pen = add_t<add_t<decltype(penalty<C.regularizer>(Wg)), decltype(penalty<C.regularizer>(bg))>,
                      add_t<decltype(penalty<C.regularizer>(Wc)), decltype(penalty<C.regularizer>(bc))>>;
    using inits = tlist<param_init<scoped<Scope, "gates/kernel">(), make_dims<I + U, 2 * U>(), C.initializer>,
                        param_init<scoped<Scope, "gates/bias">(), make_dims<2 * U>(), init::Ones{}>,
                        param_init<scoped<Scope, "candidate/kernel">(), make_dims<I + U, U>(), C.initializer>,
                        param_init<scoped<Scope, "candidate/bias">(), make_dims<U>(), init::Ones{}>>;
    return result<std::tuple<H, Last>, pen, tlist<>, inits>{};
}

} // namespace ctrec::layers
