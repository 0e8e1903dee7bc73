#pragma once
// GroupInt, alias FFM (spec layers-core-and-cross.md section 4), and the FFM op (4.4) on the
// graph-as-data core, exactly as ctrec/layers/group_int.hpp documents it: pair p = l R + r
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

#include "ctrec/flat/layers/merge_list.hpp"
#include "ctrec/flat/layers/mlp.hpp"
#include "ctrec/layers/group_int.hpp"  // group_int_config, ffm_interaction

namespace ctrec::flat::layers {

using ctrec::layers::ffm_interaction;
using ctrec::layers::group_int_config;

void ctrec_shape_error_ffm_left_and_right_must_be_vectors_of_multiples_of_K();
void ctrec_shape_error_group_int_fields_must_be_batched_K_or_N_by_K_of_one_width_K();
void ctrec_shape_error_group_int_use_attention_needs_interaction_type_multiply();
void ctrec_shape_error_group_int_use_attention_needs_attention_units_ending_in_1();

namespace detail {
// The fields of one side stacked as (n, K).
constexpr val gi_stack(const val* xs, std::size_t n, std::size_t K) {
    if (n == 0 || n > max_list) ctrec_shape_error_group_int_fields_must_be_batched_K_or_N_by_K_of_one_width_K();
    val parts[max_list]{};
    for (std::size_t i = 0; i < n; ++i) {
        const val x = xs[i];
        if (!x.batched() || (x.rank() != 1 && x.rank() != 2) || x.last() != K)
            ctrec_shape_error_group_int_fields_must_be_batched_K_or_N_by_K_of_one_width_K();
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
    if (K == 0 || a.rank() != 1 || b.rank() != 1 || a.dim(0) == 0 || b.dim(0) == 0 || a.dim(0) % K || b.dim(0) % K)
        ctrec_shape_error_ffm_left_and_right_must_be_vectors_of_multiples_of_K();
    return detail::gi_pairs(t == ffm_interaction::dot, reshape(a, dims_of({a.dim(0) / K, K})),
                            reshape(b, dims_of({b.dim(0) / K, K})));
}

template <std::size_t NA>
constexpr val_list group_int(result& m, const label& s, const group_int_config<NA>& c, const val* left, std::size_t nl,
                             const val* right, std::size_t nr) {
    const bool dot = c.interaction_type == ffm_interaction::dot;
    if (c.use_attention && dot) ctrec_shape_error_group_int_use_attention_needs_interaction_type_multiply();
    if (c.use_attention && (NA == 0 || c.attention_units[NA - 1] != 1))
        ctrec_shape_error_group_int_use_attention_needs_attention_units_ending_in_1();
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

} // namespace ctrec::flat::layers
