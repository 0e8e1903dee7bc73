#pragma once
// MergeType and merge_tensor_list (spec layers-core-and-cross.md 1.1): how layers with an
// out_type / keep_list option shape their output. Shapes are per example (the batch axis is
// implicit): the spec's (B, N, K) is ctrec shape (N, K), its (B, W) is (W), and the spec's axis 1
// (the default, and the only axis any layer passes) is ctrec's axis 0. A width that num_feature
// does not divide is rejected at compile time (the source truncates K = int(W / F), and its
// reshape then fails or silently regroups rows across examples); so is any other rank.
//
// A Python list of tensors is a `val_list`: up to max_list vals and a flag saying whether the
// value is a list (keep_list, out_type none) or the one tensor v[0]. Layers with an out_type
// return a val_list; their `result` facades accept only single-tensor outputs (a list does not
// fit a result's one output: use the in-place function for it).
//
//   merge_tensor(T, keep, x), x (N, K)  stack (N, K); concat (N*K); none the N rows (K) (keep ignored)
//   merge_tensor(T, keep, x), x (W)     unchanged, for every type
//   merge_features(T, F, keep, x)       x (W), F > 1, K = W / F: stack (F, K); concat (W); none F (K)
//   merge_list(T, keep, xs, n)          n >= 2: stack along a new axis 0; concat along axis 0;
//                                       none the list itself
#include <initializer_list>

#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {


#ifndef CTREC_MAX_LIST
#define CTREC_MAX_LIST 1024
#endif
inline constexpr std::size_t max_list = CTREC_MAX_LIST;

void ctrec_error_list_longer_than_CTREC_MAX_LIST();
void ctrec_error_a_list_output_needs_the_in_place_layer_function();
void ctrec_shape_error_merge_tensor_needs_a_B_by_N_by_K_or_B_by_W_tensor();
void ctrec_shape_error_merge_features_width_must_be_a_multiple_of_num_feature();
void ctrec_shape_error_merge_list_needs_at_least_two_tensors();
void ctrec_shape_error_merge_list_stack_needs_equal_shapes();
void ctrec_shape_error_list_needs_at_least_one_value();

struct val_list {
    val v[max_list]{};
    std::size_t n = 0;
    bool list = false;  // false: the value is the one tensor v[0]
    constexpr void push(val x) {
        if (n >= max_list) ctrec_error_list_longer_than_CTREC_MAX_LIST();
        v[n++] = x;
    }
    constexpr val operator[](std::size_t i) const { return v[i]; }
    // The one tensor (an error for a list).
    constexpr val single() const {
        if (list) ctrec_error_a_list_output_needs_the_in_place_layer_function();
        return v[0];
    }
};

namespace detail {
constexpr val_list ml_one(val x, bool keep_list) {
    val_list r;
    r.push(x);
    r.list = keep_list;
    return r;
}
// x (N, K) -> its N rows (K)
constexpr val_list ml_unstack_rows(val x) {
    val_list r;
    r.list = true;
    for (std::size_t i = 0; i < x.dim(0); ++i) r.push(reshape(slice(x, 0, i, i + 1), dims_of({x.dim(1)})));
    return r;
}
} // namespace detail

// One tensor of per-example shape (N, K) or (W) (num_feature not given).
constexpr val_list merge_tensor(merge_type t, bool keep_list, val x) {
    if (x.rank() != 1 && x.rank() != 2) ctrec_shape_error_merge_tensor_needs_a_B_by_N_by_K_or_B_by_W_tensor();
    if (x.rank() == 1 || t == merge_type::stack) return detail::ml_one(x, keep_list);
    if (t == merge_type::concat) return detail::ml_one(reshape(x, dims_of({x.dim(0) * x.dim(1)})), keep_list);
    return detail::ml_unstack_rows(x);
}

// One (W) tensor holding num_feature features of W / num_feature values.
constexpr val_list merge_features(merge_type t, std::size_t num_feature, bool keep_list, val x) {
    if (x.rank() != 1) ctrec_shape_error_merge_tensor_needs_a_B_by_N_by_K_or_B_by_W_tensor();
    if (num_feature <= 1) return merge_tensor(t, keep_list, x);
    if (x.dim(0) % num_feature != 0) ctrec_shape_error_merge_features_width_must_be_a_multiple_of_num_feature();
    if (t == merge_type::concat) return detail::ml_one(x, keep_list);
    const val s = reshape(x, dims_of({num_feature, x.dim(0) / num_feature}));
    if (t == merge_type::stack) return detail::ml_one(s, keep_list);
    return detail::ml_unstack_rows(s);
}

// A list of two or more tensors.
constexpr val_list merge_list(merge_type t, bool keep_list, const val* xs, std::size_t n) {
    if (n < 2) ctrec_shape_error_merge_list_needs_at_least_two_tensors();
    if (n > max_list) ctrec_error_list_longer_than_CTREC_MAX_LIST();
    if (t == merge_type::none) {
        val_list r;
        r.list = true;
        for (std::size_t i = 0; i < n; ++i) r.push(xs[i]);
        return r;
    }
    if (t == merge_type::concat) return detail::ml_one(concat(0, xs, n), keep_list);
    // stack along a new axis 0: each part as (1, s...), concatenated
    const dims s = xs[0].shape();
    dims s1{};
    s1.rank = s.rank + 1;
    s1.d[0] = 1;
    for (std::size_t k = 0; k < s.rank; ++k) s1.d[k + 1] = s.d[k];
    val parts[max_list]{};
    for (std::size_t i = 0; i < n; ++i) {
        if (!(xs[i].shape() == s)) ctrec_shape_error_merge_list_stack_needs_equal_shapes();
        parts[i] = reshape(xs[i], s1);
    }
    return detail::ml_one(concat(0, parts, n), keep_list);
}

// How the facades of list-taking layers bring their input expressions into one graph:
//   result m = longest_expr(es);   // a copy of the largest graph (the others are usually its prefixes)
//   join_exprs(m, es, xs);         // xs[i]: es[i] in m's graph
constexpr const expr& longest_expr(std::initializer_list<expr> es) {
    if (es.size() == 0) ctrec_shape_error_list_needs_at_least_one_value();
    const expr* e = es.begin();
    std::size_t longest = 0;
    for (std::size_t i = 1; i < es.size(); ++i)
        if (e[i].g.n > e[longest].g.n) longest = i;
    return e[longest];
}
constexpr void join_exprs(result& m, std::initializer_list<expr> es, val* out) {
    if (es.size() > max_list) ctrec_error_list_longer_than_CTREC_MAX_LIST();
    for (std::size_t i = 0; i < es.size(); ++i) {
        std::uint32_t id = 0;
        join_into(m.g, es.begin()[i], id);
        out[i] = m.at(id);
    }
}

} // namespace ctrec::layers
