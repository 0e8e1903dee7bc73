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
// out_type. The source stores it and ignores it (4.6): the default here ignores it too. Because
// an out_type that changes nothing is a silent surprise, out_type other than concat without
// apply_out_type is a compile error (ctrec_error_group_int_out_type_is_ignored_without_...)
// unless acknowledge_ignored_out_type = true (a source config ported as it is).
// apply_out_type = true is ctrec's opt-in extension: the result goes through
// merge_tensor_list (layers/merge_list.hpp) as the (L*R, K) pair tensor for multiply (stack:
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
//
// Implementation:
// GroupInt, alias FFM (spec layers-core-and-cross.md section 4), and the FFM op (4.4) on the
// core, exactly as documented above: pair p = l R + r
// (left-major); multiply gives (L R K), out[p K + k] = left_l[k] right_r[k]; dot gives (L R);
// multiply + use_attention scales pair p's vector by a raw (no softmax, no sum) score from the
// MLP "<scope>/groupint_attention_mlp" (output_dims = attention_units, the last 1, the
// activation on the hidden layers, every kernel `initializer` (GlorotNormal) / `regularizer`,
// the MLP defaults otherwise); out_type ignored unless apply_out_type (ctrec's extension);
// keep_list gives a one-element list.
//
// Sides. Each side is an array of vals, each a (K) field or an (N_i, K) block of stacked fields
// (one (N, K) val is the type core's stacked side). K comes from the first left field; every
// field of both sides must have width K. The fields of a side are stacked once into (L, K) (a
// copy of L K values, smaller than the output) where the type core specialises per tuple shape;
// then dot is one contraction "lk,rk->lr" (nothing of size L R K) and multiply one broadcast
// product (L, 1, K) * (1, R, K).
#include <initializer_list>
#include "ctrec/layers/merge_list.hpp"
#include "ctrec/layers/mlp.hpp"

namespace ctrec::layers {

enum class ffm_interaction { multiply, dot };

inline constexpr char not_a_group_int_interaction_type{};  // named in the error

// "multiply" / "dot" (GroupInt's interaction_type); anything else is a compile error when
// evaluated in a constant expression (naming it).
constexpr ffm_interaction ffm_interaction_from(std::string_view s) {
    if (s == "multiply") return ffm_interaction::multiply;
    if (s == "dot") return ffm_interaction::dot;
    report_unknown_name(s, not_a_group_int_interaction_type);
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
    bool acknowledge_ignored_out_type = false;  // required for out_type != concat without apply_out_type
    bool keep_list = false;
};



void ctrec_shape_error_ffm_left_and_right_must_be_vectors_of_multiples_of_K();
void ctrec_shape_error_group_int_fields_must_be_batched_K_or_N_by_K_of_one_width_K();
void ctrec_shape_error_group_int_use_attention_needs_interaction_type_multiply();
void ctrec_shape_error_group_int_use_attention_needs_attention_units_ending_in_1();
void ctrec_error_group_int_out_type_is_ignored_without_apply_out_type_set_acknowledge_ignored_out_type();

namespace detail {
// The fields of one side stacked as (n, K).
constexpr val gi_stack(const val* xs, std::size_t n, std::size_t K) {
    if (n == 0 || n > max_list) ctrec_shape_error_group_int_fields_must_be_batched_K_or_N_by_K_of_one_width_K();
    val parts[max_list]{};
    for (std::size_t i = 0; i < n; ++i) {
        const val x = xs[i];
        if (!x.batched() || (x.rank() != 1 && x.rank() != 2))  // axes with the batch axis: 2 or 3
            report_shape_error(ctrec_shape_error_group_int_fields_must_be_batched_K_or_N_by_K_of_one_width_K, x.rank() + x.batched(),
                               x.rank() + x.batched() < 2 ? 2 : 3);
        if (x.last() != K)  // got: this field's width, want: the first left field's
            report_shape_error(ctrec_shape_error_group_int_fields_must_be_batched_K_or_N_by_K_of_one_width_K, x.last(), K);
        parts[i] = x.rank() == 2 ? x : reshape(x, dims_of({1, K}));
    }
    return concat(0, parts, n);
}
// The pairs of stacked sides l (L, K) and r (R, K), flat and left-major.
constexpr val gi_pairs(bool dot, val l, val r) {
    const std::size_t L = l.dim(0), R = r.dim(0), K = l.dim(1);
    if (dot) return reshape(einsum("lk,rk->lr", l, r), dims_of({L * R}));
    return reshape(reshape(l, dims_of({L, 1, K})) * reshape(r, dims_of({1, R, K})), dims_of({L * R * K}));
}
} // namespace detail

// The FFM op of spec 4.4: left (L K), right (R K) -> (L R K) (multiply) or (L R) (dot).
constexpr val ffm(std::size_t K, ffm_interaction t, val a, val b) {
    if (K == 0) report_shape_error(ctrec_shape_error_ffm_left_and_right_must_be_vectors_of_multiples_of_K, 0, 1);
    if (a.rank() != 1 || b.rank() != 1)
        report_shape_error(ctrec_shape_error_ffm_left_and_right_must_be_vectors_of_multiples_of_K, a.rank() != 1 ? a.rank() : b.rank(), 1);
    if (a.dim(0) == 0 || a.dim(0) % K)  // got: the width, want: K
        report_shape_error(ctrec_shape_error_ffm_left_and_right_must_be_vectors_of_multiples_of_K, a.dim(0), K);
    if (b.dim(0) == 0 || b.dim(0) % K)
        report_shape_error(ctrec_shape_error_ffm_left_and_right_must_be_vectors_of_multiples_of_K, b.dim(0), K);
    return detail::gi_pairs(t == ffm_interaction::dot, reshape(a, dims_of({a.dim(0) / K, K})),
                            reshape(b, dims_of({b.dim(0) / K, K})));
}

template <std::size_t NA>
constexpr val_list group_int(result& m, const name_string& s, const group_int_config<NA>& c, const val* left, std::size_t nl,
                             const val* right, std::size_t nr) {
    const bool dot = c.interaction_type == ffm_interaction::dot;
    if (c.use_attention && dot) ctrec_shape_error_group_int_use_attention_needs_interaction_type_multiply();
    if (c.out_type != merge_type::concat && !c.apply_out_type && !c.acknowledge_ignored_out_type)
        ctrec_error_group_int_out_type_is_ignored_without_apply_out_type_set_acknowledge_ignored_out_type();
    if (c.use_attention && NA == 0) report_shape_error(ctrec_shape_error_group_int_use_attention_needs_attention_units_ending_in_1, 0, 1);
    if (c.use_attention && c.attention_units[NA - 1] != 1)
        report_shape_error(ctrec_shape_error_group_int_use_attention_needs_attention_units_ending_in_1, c.attention_units[NA - 1], 1);
    if (nl == 0) ctrec_shape_error_group_int_fields_must_be_batched_K_or_N_by_K_of_one_width_K();
    const std::size_t K = left[0].last();
    const val l = detail::gi_stack(left, nl, K), r = detail::gi_stack(right, nr, K);
    const std::size_t L = l.dim(0), R = r.dim(0);
    const val e = detail::gi_pairs(dot, l, r);
    if (dot || !c.use_attention) {
        if (c.apply_out_type && !dot) return merge_tensor(c.out_type, c.keep_list, reshape(e, dims_of({L * R, K})));
        if (c.apply_out_type) return merge_tensor(c.out_type, c.keep_list, e);
        return detail::ml_one(e, c.keep_list);
    }
    mlp_config<NA> a{};
    a.output_dims = c.attention_units;
    a.activation = c.activation;  // hidden layers; the last one is linear
    for (std::size_t i = 0; i < NA; ++i) a.initializers[i] = c.initializer;
    a.kernel_regularizer = c.regularizer;
    const val S = reshape(e, dims_of({L * R, K}));  // pair p's vector is row p
    // mode::predict: the MLP has no BN or dropout here, so the mode changes nothing
    const val y = S * mlp(m, scoped(s, "groupint_attention_mlp"), a, mode::predict, S);  // (L R, K) * (L R, 1)
    if (c.apply_out_type) return merge_tensor(c.out_type, c.keep_list, y);
    return detail::ml_one(reshape(y, dims_of({L * R * K})), c.keep_list);
}

// Sides as lists of expressions (one (N, K) expression: a stacked side); single-tensor outputs
// only (lists: use the in-place function).
template <fixed_string Scope, auto C>
constexpr result group_int(std::initializer_list<expr> left, std::initializer_list<expr> right) {
    result m = longest_expr(left);
    val l[max_list]{}, r[max_list]{};
    join_exprs(m, left, l);
    join_exprs(m, right, r);
    m.set_out(group_int(m, Scope.view(), C, l, left.size(), r, right.size()).single());
    return m;
}
// FFM is GroupInt under another name.
template <fixed_string Scope, auto C>
constexpr result FFM(std::initializer_list<expr> left, std::initializer_list<expr> right) {
    return group_int<Scope, C>(left, right);
}

} // namespace ctrec::layers
