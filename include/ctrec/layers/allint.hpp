#pragma once
// AllInt (spec layers-core-and-cross.md section 5): every field interacts with every other
// by dot products, and the N x N interaction matrix is compressed to C columns:
//   O = X . (X^T . Cm + 1_K beta^T) = (X X^T) Cm + (X 1_K) beta^T      (per example, X (N, K))
//
//   constexpr auto r = layers::allint<"allint", {.cmp_dim = 4}>(x);   // x: (N, K) per example
//
// Variables: allint_kernel (N, C) [initializer, default GlorotNormal; regularizer],
// allint_bias (C) [zeros; only with use_bias].
//
// The product is evaluated as X . (X^T . Cm): 4 N K C FLOPs instead of 2 N^2 (K + C), and the
// N x N matrix is never built (see Implementation below).
//
// out_type (merge_tensor_list, spec 1.1 / merge_list.hpp): concat (default) gives (N * C),
// stack (N, C), none a std::tuple of N (C) expressions (keep_list is then ignored);
// keep_list wraps concat / stack in a one-element std::tuple.
//
// Implementation:
// AllInt (spec layers-core-and-cross.md section 5), with the decisions
// of ctrec/layers/allint.hpp: per example, X (N, K),
//   O = X . (X^T . Cm + 1_K beta^T)      (N, C)
// with "<scope>/allint_kernel" (N, C) [initializer, default GlorotNormal; regularizer] and
// "<scope>/allint_bias" (C) [zeros, only with use_bias], in that order; out_type / keep_list
// through merge_tensor_list (merge_list.hpp).
//
// The einsum takes two operands, so the order is written out: F = X^T . Cm (K, C) first,
// then X . F (4 N K C, never the N x N matrix), the source's evaluation order; beta is added
// to F as the source does (the type core's separate (X 1_K) beta^T term is the same value).
#include "ctrec/layers/merge_list.hpp"

namespace ctrec::layers {

struct allint_config {
    std::size_t cmp_dim = 0;
    init::spec initializer = init::GlorotNormal{};
    layers::regularizer regularizer{};
    bool use_bias = true;
    merge_type out_type = merge_type::concat;
    bool keep_list = false;
};



void ctrec_shape_error_allint_cmp_dim_must_be_positive();
void ctrec_shape_error_allint_input_must_be_B_by_N_by_K();

constexpr val_list allint(result& m, const name_string& s, const allint_config& c, val x) {
    if (c.cmp_dim == 0) ctrec_shape_error_allint_cmp_dim_must_be_positive();
    if (!x.batched() || x.rank() != 2)  // axes with the batch axis
        report_shape_error(ctrec_shape_error_allint_input_must_be_B_by_N_by_K, x.rank() + x.batched(), 3);
    const std::size_t N = x.dim(0), C = c.cmp_dim;
    val Cm = m.var(scoped(s, "allint_kernel").view(), dims_of({N, C}), c.initializer);
    add_penalty(m, c.regularizer, Cm);
    val F = einsum("nk,nc->kc", x, Cm);
    if (c.use_bias) F = F + m.var(scoped(s, "allint_bias").view(), dims_of({C}), init::Zeros{});
    return merge_tensor(c.out_type, c.keep_list, einsum("nk,kc->nc", x, F));
}

// A single-tensor out_type only (none and keep_list give lists: use the in-place function).
template <fixed_string Scope, allint_config C>
constexpr result allint(const result& in) {
    result m = in;
    m.set_out(allint(m, Scope.view(), C, m.value()).single());
    return m;
}

} // namespace ctrec::layers
