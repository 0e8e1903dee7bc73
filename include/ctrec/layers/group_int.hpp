#pragma once
// GroupInt, alias FFM (spec layers-core-and-cross.md section 4), and the FFM op (4.4).
//
//   constexpr auto r = layers::group_int<"GroupInt", group_int_config<>{}>(left, right);
//   constexpr group_int_config<3> att{.use_attention = true, .attention_units = {15, 10, 1}};
//   constexpr auto a = layers::group_int<"GroupInt", att>(left, right);
//   constexpr auto e = layers::ffm<4, ffm_interaction::dot>(left_concat, right_concat);
//
// Inputs. Each side is either a std::tuple of field expressions of per-example shape (K)
// (the source's Python lists of (B, K) tensors) or one expression of shape (N, K) holding
// the N fields already stacked (a gather of N ids gives this form). K comes from the first
// left field; every field of both sides must have width K (checked at compile time; the
// source's kernel silently regroups by K instead).
//
// Output, pair p = l*R + r (left-major):
//   multiply: (L*R*K), out[p*K + k] = left_l[k] * right_r[k]
//   dot:      (L*R),   out[p]       = sum_k left_l[k] * right_r[k]
//   multiply + use_attention: out[p*K + k] = a[p] * left_l[k] * right_r[k], with
//     a = MLP(S) (L*R, 1), S (L*R, K) the pair products; the MLP is layers::mlp scoped
//     "<scope>/groupint_attention_mlp" with output_dims = attention_units, activation on
//     the hidden layers only (the last MLP layer is linear), every kernel initialiser =
//     `initializer` (default GlorotNormal), kernel_regularizer = `regularizer`, and the MLP
//     defaults otherwise: weight norm on and learnable, bias on, no BN. As in the source
//     (4.5), the scores are raw (no softmax) and the pairs are not summed (the docstring's
//     AFM-style "linear combination" is not what Monolith computes).
//   keep_list = true: r.out is std::tuple{out} (layers::result holds a tuple then).
//
// Variables (attention only): <scope>/groupint_attention_mlp/dense_i/{kernel,
// trainable_kernel_norm, bias}, kernels (K, u_1), ..., (u_{m-1}, 1).
//
// out_type. The source stores it and ignores it (4.6): the default here ignores it too.
// apply_out_type = true is ctrec's opt-in extension: the result goes through
// merge_tensor_list (layers/merge.hpp) as the (L*R, K) pair tensor for multiply (stack:
// (L*R, K); concat: the flat default; none: a tuple of L*R (K) tensors, keep_list
// ignored as in merge_tensor_list) and as the flat (L*R) tensor for dot (a (B, W) tensor:
// unchanged for every type, so only keep_list matters).
//
// No concatenation of the fields is ever materialised (4.10):
//   both sides stacked (N, K): dot is one per-example contraction "lk,rk->lr" (nothing of
//     size L*R*K exists); multiply is one fused broadcast product (L, 1, K) * (1, R, K);
//   a tuple on one side: one contraction "k,rk->r" (or "lk,k->l") or broadcast product per
//     field of the tuple side, then the L (or R) row/column blocks are concatenated;
//   tuples on both sides: one fused reduction sum(l * r) per pair (dot; L*R scalars) or one
//     product per pair (multiply), concatenated into the output.
// The output assembly (a reshape of the (L, R[, K]) result, or the concat of blocks) costs
// one copy of the output; the attention MLP reads the materialised pair products S (the
// spec's suggestion to feed (l * r) . W_1 straight into the first Dense would mean
// writing that Dense by hand instead of reusing layers::mlp, weight norm included). The
// MLP is built with mode::predict: without BN or dropout the mode changes nothing, so
// GroupInt takes no mode argument.
//
// The FFM op ffm<K, type>(left (L*K), right (R*K)): the same maps on the concatenated
// inputs (the kernel's index formulas; its registered gradient is the exact gradient of
// this bilinear map, which ctrec derives). Widths must be multiples of K (the kernel
// truncates L = width / K silently; ctrec rejects it at compile time). Any int_type other
// than "dot" means multiply in the kernel; ffm_interaction_from("...") instead accepts
// exactly "multiply" and "dot" (as GroupInt asserts) and rejects the rest.
#include <array>
#include <string_view>
#include <tuple>
#include <utility>

#include "ctrec/layers/merge.hpp"
#include "ctrec/layers/mlp.hpp"

namespace ctrec::layers {

enum class ffm_interaction { multiply, dot };

// "multiply" / "dot" (GroupInt's interaction_type); anything else is a compile error when
// evaluated in a constant expression.
constexpr ffm_interaction ffm_interaction_from(std::string_view s) {
    if (s == "multiply") return ffm_interaction::multiply;
    if (s == "dot") return ffm_interaction::dot;
    throw error("ctrec::layers::group_int: interaction_type must be \"multiply\" or \"dot\"");
}

template <std::size_t NA = 0>
struct group_int_config {
    ffm_interaction interaction_type = ffm_interaction::multiply;
    bool use_attention = false;  // multiply only
    std::array<std::size_t, NA> attention_units{};  // the last must be 1
    layers::activation activation = act_relu;  // Keras resolver; the attention MLP's hidden layers
    init::spec initializer = init::GlorotNormal{};  // attention MLP kernels
    layers::regularizer regularizer{};  // attention MLP kernel_regularizer
    merge_type out_type = merge_type::concat;  // ignored unless apply_out_type (source parity)
    bool apply_out_type = false;  // ctrec's opt-in extension (see the header comment)
    bool keep_list = false;
};

namespace detail {

// One side of GroupInt: a stacked (N, K) expression or a tuple of (K) fields.
template <class S>
struct gi_side {
    static constexpr bool stacked = true;
    static constexpr bool valid = S::shape.rank == 2 && S::batched;
    static constexpr std::size_t n = S::shape.d[0], k = S::shape.d[1];
};
template <class X0, class... X>
struct gi_side<std::tuple<X0, X...>> {
    static constexpr bool stacked = false;
    static constexpr bool valid = X0::shape.rank == 1 && X0::batched && ((X::shape == X0::shape && X::batched) && ...);
    static constexpr std::size_t n = 1 + sizeof...(X), k = X0::shape.d[0];
};

// concat along axis 0, without a copy for a single part
template <node X0, node... X>
constexpr auto gi_concat(X0 x0, X... xs) {
    if constexpr (sizeof...(X) == 0) return x0;
    else return concat<0>(x0, xs...);
}
template <std::size_t Axis, node X0, node... X>
constexpr auto gi_concat_axis(X0 x0, X... xs) {
    if constexpr (sizeof...(X) == 0) return x0;
    else return concat<Axis>(x0, xs...);
}

// The interactions as a flat (L*R*K) (multiply) or (L*R) (dot) expression, left-major.
template <bool Dot, class Ls, class Rs>
constexpr auto gi_pairs(Ls l, Rs r) {
    constexpr std::size_t L = gi_side<Ls>::n, R = gi_side<Rs>::n, K = gi_side<Ls>::k;
    if constexpr (gi_side<Ls>::stacked && gi_side<Rs>::stacked) {
        if constexpr (Dot) return reshape<L * R>(einsum<"lk,rk->lr">(l, r));
        else return reshape<L * R * K>(reshape<L, 1, K>(l) * reshape<1, R, K>(r));
    } else if constexpr (!gi_side<Ls>::stacked && gi_side<Rs>::stacked) {
        // one block of R pairs per left field
        return [&]<std::size_t... I>(std::index_sequence<I...>) {
            if constexpr (Dot) return gi_concat(einsum<"k,rk->r">(std::get<I>(l), r)...);
            else return gi_concat(reshape<R * K>(reshape<1, K>(std::get<I>(l)) * r)...);
        }(std::make_index_sequence<L>{});
    } else if constexpr (gi_side<Ls>::stacked && !gi_side<Rs>::stacked) {
        // one column of L pairs per right field, placed at column r of (L, R[, K])
        return [&]<std::size_t... J>(std::index_sequence<J...>) {
            if constexpr (Dot)
                return reshape<L * R>(gi_concat_axis<1>(reshape<L, 1>(einsum<"lk,k->l">(l, std::get<J>(r)))...));
            else
                return reshape<L * R * K>(gi_concat_axis<1>(reshape<L, 1, K>(l * reshape<1, K>(std::get<J>(r)))...));
        }(std::make_index_sequence<R>{});
    } else {
        // both tuples: one product (or fused product-sum) per pair
        return [&]<std::size_t... P>(std::index_sequence<P...>) {
            if constexpr (Dot) return gi_concat(reshape<1>(sum(std::get<P / R>(l) * std::get<P % R>(r)))...);
            else return gi_concat((std::get<P / R>(l) * std::get<P % R>(r))...);
        }(std::make_index_sequence<L * R>{});
    }
}

template <auto C>
constexpr auto gi_mlp_config() {
    constexpr std::size_t n = C.attention_units.size();
    mlp_config<n> m{};
    m.output_dims = C.attention_units;
    m.activation = C.activation;  // hidden layers; the last one is linear (MLP's single-value rule)
    for (std::size_t i = 0; i < n; ++i) m.initializers[i] = C.initializer;
    m.kernel_regularizer = C.regularizer;
    return m;  // weight norm on and learnable, bias on, no BN: the MLP defaults
}

template <auto C>
constexpr bool gi_attention_units_ok() {
    if constexpr (!C.use_attention) return true;
    else return C.attention_units.size() >= 1 && C.attention_units[C.attention_units.size() - 1] == 1;
}

// keep_list / out_type on a finished output expression
template <auto C, node X, class Pen, class Upd, class Ini>
constexpr auto gi_finish(X x) {
    constexpr auto out = [&] {
        if constexpr (C.apply_out_type) return merge<C.out_type, C.keep_list>(x);
        else if constexpr (C.keep_list) return std::tuple{x};
        else return x;
    }();
    return result<std::remove_cvref_t<decltype(out)>, Pen, Upd, Ini>{};
}
} // namespace detail

// The FFM op of spec 4.4: left (L*K), right (R*K) -> (L*R*K) (multiply) or (L*R) (dot).
template <std::size_t K, ffm_interaction T, node A, node B>
constexpr auto ffm(A a, B b) {
    constexpr bool ok = K > 0 && A::shape.rank == 1 && B::shape.rank == 1 && A::shape.d[0] % K == 0 &&
                        B::shape.d[0] % K == 0 && A::shape.d[0] > 0 && B::shape.d[0] > 0;
    static_assert(ok, "ctrec::layers::ffm: left (L*K) and right (R*K) must be vectors whose widths are multiples of K");
    if constexpr (!ok) {
        return a;
    } else {
        constexpr std::size_t L = A::shape.d[0] / K, R = B::shape.d[0] / K;
        return detail::gi_pairs<T == ffm_interaction::dot>(reshape<L, K>(a), reshape<R, K>(b));
    }
}

template <fixed_string Scope, auto C, class Ls, class Rs>
constexpr auto group_int(Ls l, Rs r) {
    using LS = detail::gi_side<Ls>;
    using RS = detail::gi_side<Rs>;
    constexpr bool dot = C.interaction_type == ffm_interaction::dot;
    static_assert(LS::valid && RS::valid,
                  "ctrec::layers::group_int: each side must be a std::tuple of batched (K) fields or one batched (N, K) "
                  "expression");
    static_assert(LS::k == RS::k, "ctrec::layers::group_int: every left and right field must have the same width K");
    static_assert(!C.use_attention || !dot, "ctrec::layers::group_int: use_attention needs interaction_type multiply");
    static_assert(detail::gi_attention_units_ok<C>(),
                  "ctrec::layers::group_int: use_attention needs attention_units whose last entry is 1");
    if constexpr (!(LS::valid && RS::valid && LS::k == RS::k) || (C.use_attention && dot) ||
                  !detail::gi_attention_units_ok<C>()) {
        return result<scalar_zero>{};  // the assertion above is the error
    } else {
        constexpr std::size_t L = LS::n, R = RS::n, K = LS::k;
        constexpr auto e = detail::gi_pairs<dot>(l, r);
        if constexpr (dot) {
            return detail::gi_finish<C, decltype(e), scalar_zero, tlist<>, tlist<>>(e);
        } else {
            constexpr auto S = reshape<L * R, K>(e);  // pair p's vector is row p
            if constexpr (!C.use_attention) {
                if constexpr (C.apply_out_type)
                    return detail::gi_finish<C, decltype(S), scalar_zero, tlist<>, tlist<>>(S);
                else
                    return detail::gi_finish<C, decltype(e), scalar_zero, tlist<>, tlist<>>(e);
            } else {
                constexpr auto att = mlp<scoped<Scope, "groupint_attention_mlp">(), detail::gi_mlp_config<C>(), mode::predict>(S);
                using A = decltype(att);
                constexpr auto y = S * att.out;  // (L*R, K) * (L*R, 1): raw per-pair scores
                using Pen = std::remove_cvref_t<decltype(att.penalty)>;
                if constexpr (C.apply_out_type)
                    return detail::gi_finish<C, decltype(y), Pen, typename A::updates, typename A::inits>(y);
                else
                    return detail::gi_finish<C, decltype(reshape<L * R * K>(y)), Pen, typename A::updates, typename A::inits>(
                        reshape<L * R * K>(y));
            }
        }
    }
}

// FFM is GroupInt under another name.
template <fixed_string Scope, auto C, class Ls, class Rs>
constexpr auto FFM(Ls l, Rs r) { return group_int<Scope, C>(l, r); }

} // namespace ctrec::layers
