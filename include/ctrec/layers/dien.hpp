#pragma once
// DIEN (spec layers-trans-seq-multitask-nas.md 2.3): interest extraction with a Keras GRU over
// the behaviour sequence, bilinear target attention over the GRU states, and interest
// evolution with an attention-gated GRU (AGRU / AUGRU, layers/agru.hpp); returns the final
// evolved state.
//
//   constexpr auto r = layers::dien<"dien", {.num_units = 10}>(q, k);        // q (U), k (T, E)
//   constexpr auto r = layers::dien<"dien", {.num_units = 10}>(q, k, mask);  // mask (T)
//   r.out is (U) per example.
//
// Per example:
//   GRU (Keras GRUCell, reset-after, gate order z, r, h), h_0 = 0, x_t = k[t]:
//     [x_z | x_r | x_h] = x_t W + b_in;  [g_z | g_r | g_h] = h_{t-1} U_rec + b_rec
//     z = sig(x_z + g_z); r = sig(x_r + g_r); hh = act(x_h + r * g_h); h_t = z h_{t-1} + (1 - z) hh
//   attention: v = W_att q; s_t = h_t . v; alpha = softmax_t(s)
//   evolution: AGRU (or AUGRU) over h_1..h_T with scores alpha, e_0 = 0; out = e_T.
//
// Variables ("<Scope>/..."): gru_cell/kernel (E, 3U) [initializer, regularizer],
// gru_cell/recurrent_kernel (U, 3U) [Orthogonal, not regularised], gru_cell/bias (2, 3U)
// [zeros, not regularised; row 0 input bias, row 1 recurrent bias]; augru_cell/gates/kernel
// (2U, 2U), augru_cell/gates/bias (2U) [Ones], augru_cell/candidate/kernel (2U, U),
// augru_cell/candidate/bias (U) [Ones] (kernels: initializer; all four regularised);
// attention_weight (U, U) [initializer, regularizer]. Checkpoints usually hold the GRU under
// "dien/rnn/gru_cell/..." (TF-1 dynamic_rnn scope): importers match by suffix.
//
// How it runs: x_t W for all t is one GEMM before the GRU scan, and h_t [W_g[:U] | W_c[:U]]
// one GEMM before the AGRU scan; each scan (core/expr.hpp scan_node) does only the state
// products and stores a (T, 5U) / (T, 4U) record per example, which is the BPTT storage of
// the reverse mode (O(T U) per example, static). The two scans are separated by the softmax,
// which needs every h_t.
//
// Decisions:
// - att_type (spec 7.1): honoured by default (AUGRU runs the AUGRU update of 2.1 with the same
//   variables); monolith_compat always uses AGRU, as the source does.
// - mask (spec 7.2; ctrec default): mask (T) numeric, a step is real when mask_t >= 1 (DIN's
//   rule). A padded step leaves both recurrent states unchanged and gets attention weight 0:
//   the softmax runs over the real steps only (max-shifted over them), so padding values,
//   wherever the padded steps are, never change the output or the parameter gradients, and
//   padded keys get zero gradient. If no step is real, every weight is 0 and the output is 0.
//   monolith_compat ignores the mask, as the source does (padded steps run through both
//   recurrences and the softmax).
// - activation (default relu) is the candidate activation of both cells; the recurrence
//   kernels support linear, relu, tanh and sigmoid. The gate activation is sigmoid.
// - initializer: He-uniform (the source passes the class, spec 7.3).
// - The query width must equal num_units (a compile error otherwise, naming the shapes).
// - The attention is written as the spec states it (v = W_att q once per example, then
//   T dot products), which is already the cheap order.
#include "ctrec/layers/agru.hpp"
#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

struct dien_config {
    std::size_t num_units = 0;                     // U
    agru_att att_type = agru_att::agru;            // honoured unless monolith_compat
    layers::activation activation = act_relu;      // candidate activation of the GRU and the AGRU
    init::spec initializer = init::HeUniform{};     // GRU kernel, AGRU kernels, attention_weight
    layers::regularizer regularizer{};              // GRU kernel, all AGRU variables, attention_weight
    bool monolith_compat = false;                  // ignore the mask and att_type, as the source
};

namespace detail {
template <std::size_t U, std::size_t Q>
struct dien_query_width {
    static_assert(check_shapes<"dien query width == num_units", make_dims<Q>(), make_dims<U>(), Q == U>,
                  "ctrec::layers::dien: the query width must equal num_units");
    static constexpr bool value = Q == U;
};

// softmax over the real steps (mask >= 1) of s (T); weight 0 at padded steps, all 0 if none
template <node S, node M>
constexpr auto masked_softmax(S s, M mask) {
    auto real = greater_equal(mask, lit<1.0>);
    auto mx = stop_gradient(max<0>(where(real, s, lit<-3.0e38>)));
    auto e = where(real, exp(where(real, s - mx, lit<0.0>)), lit<0.0>);
    auto den = sum<0>(e);
    return e / where(greater(den, lit<0.0>), den, lit<1.0>);
}

template <node S>
constexpr auto attention_weights(S s) { return softmax<0>(s); }
template <node S, node M>
constexpr auto attention_weights(S s, M mask) { return masked_softmax(s, mask); }

template <fixed_string Scope, dien_config C, node Q, node K, node... M>
constexpr auto dien_impl(Q q, K k, M... mask) {
    static_assert(C.num_units > 0, "ctrec::layers::dien: num_units must be positive");
    static_assert(Q::batched && Q::shape.rank == 1, "ctrec::layers::dien: the query must be (B, U)");
    static_assert(K::batched && K::shape.rank == 2, "ctrec::layers::dien: the keys must be (B, T, E)");
    static_assert(dien_query_width<C.num_units, Q::shape.d[0]>::value);
    [[maybe_unused]] constexpr std::size_t T = K::shape.d[0];
    constexpr std::size_t E = K::shape.d[1], U = C.num_units;
    static_assert(sizeof...(M) <= 1 && ((M::batched && M::shape == make_dims<T>()) && ...),
                  "ctrec::layers::dien: the mask must be (B, T)");

    constexpr auto W = param_node<scoped<Scope, "gru_cell/kernel">(), make_dims<E, 3 * U>()>{};
    using R = param_node<scoped<Scope, "gru_cell/recurrent_kernel">(), make_dims<U, 3 * U>()>;
    using bias = param_node<scoped<Scope, "gru_cell/bias">(), make_dims<2, 3 * U>()>;
    constexpr auto Watt = param_node<scoped<Scope, "attention_weight">(), make_dims<U, U>()>{};

    // interest extractor
    using Xp = decltype(einsum<"te,eg->tg">(k, W) + slice_node<0, 0, 1, bias>{});
    using brec = reshape_node<make_dims<3 * U>(), slice_node<0, 1, 2, bias>>;
    using Rec = scan_node<scan_cell::keras_gru, scan_activation<C.activation>(), Xp, R, brec, const_node<0.0>, M...>;
    constexpr auto H = slice_node<1, 0, U, Rec>{};

    // attention
    constexpr auto v = einsum<"ij,j->i">(Watt, q);
    constexpr auto s = einsum<"tu,u->t">(H, v);
    constexpr auto alpha = attention_weights(s, mask...);

    // interest evolution
    constexpr agru_config ac{.units = U, .att_type = C.att_type, .activation = C.activation,
                             .initializer = C.initializer, .regularizer = C.regularizer};
    constexpr auto ev = agru_rnn<scoped<Scope, "augru_cell">(), ac>(H, alpha, mask...);
    using Out = std::tuple_element_t<1, std::remove_cvref_t<decltype(ev.out)>>;

    using pen = add_t<add_t<decltype(penalty<C.regularizer>(W)), decltype(penalty<C.regularizer>(Watt))>, decltype(ev.penalty)>;
    using own_inits = tlist<param_init<scoped<Scope, "gru_cell/kernel">(), make_dims<E, 3 * U>(), C.initializer>,
                            param_init<scoped<Scope, "gru_cell/recurrent_kernel">(), make_dims<U, 3 * U>(), init::Orthogonal{}>,
                            param_init<scoped<Scope, "gru_cell/bias">(), make_dims<2, 3 * U>(), init::Zeros{}>,
                            param_init<scoped<Scope, "attention_weight">(), make_dims<U, U>(), C.initializer>>;
    return result<Out, pen, tlist<>, tl_concat_t<own_inits, typename decltype(ev)::inits>>{};
}
} // namespace detail

template <fixed_string Scope, dien_config C, node Q, node K>
constexpr auto dien(Q q, K k) {
    constexpr dien_config c2 = [] {
        dien_config c = C;
        if (c.monolith_compat) c.att_type = agru_att::agru;
        return c;
    }();
    return detail::dien_impl<Scope, c2>(q, k);
}
template <fixed_string Scope, dien_config C, node Q, node K, node M>
constexpr auto dien(Q q, K k, M mask) {
    constexpr dien_config c2 = [] {
        dien_config c = C;
        if (c.monolith_compat) c.att_type = agru_att::agru;
        return c;
    }();
    if constexpr (C.monolith_compat) return detail::dien_impl<Scope, c2>(q, k);  // the source ignores the mask
    else return detail::dien_impl<Scope, c2>(q, k, mask);
}

} // namespace ctrec::layers
