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
// The layer is written literally as einsum<"mk,nk,nc->mc">(X, X, Cm): the contraction-
// ordering pass (core/contract_order.hpp) picks X . (X^T . Cm) by FLOP count, 4 N K C
// instead of 2 N^2 (K + C), so the N x N matrix is never built (and for the rare shapes
// where it is cheaper, the pass builds it). The bias is the separate term (X 1_K) beta^T
// (the source adds beta inside X^T . Cm, which is the same value), so the pass sees the
// plain three-operand product.
//
// out_type (merge_tensor_list, spec 1.1 / merge.hpp): concat (default) gives (N * C),
// stack (N, C), none a std::tuple of N (C) expressions (keep_list is then ignored);
// keep_list wraps concat / stack in a one-element std::tuple.
#include "ctrec/core/contract_order.hpp"
#include "ctrec/layers/layer.hpp"
#include "ctrec/layers/merge.hpp"

namespace ctrec::layers {

struct allint_config {
    std::size_t cmp_dim = 0;
    init::spec initializer = init::GlorotNormal{};
    layers::regularizer regularizer{};
    bool use_bias = true;
    merge_type out_type = merge_type::concat;
    bool keep_list = false;
};

template <fixed_string Scope, allint_config C, node X>
constexpr auto allint(X x) {
    static_assert(C.cmp_dim > 0, "ctrec::layers::allint: cmp_dim must be positive");
    static_assert(X::batched && X::shape.rank == 2, "ctrec::layers::allint: the input must be (B, N, K)");
    constexpr std::size_t N = X::shape.d[0];
    constexpr auto kname = scoped<Scope, "allint_kernel">();
    constexpr auto bname = scoped<Scope, "allint_bias">();
    constexpr auto Cm = param_node<kname, make_dims<N, C.cmp_dim>()>{};
    constexpr auto O = [&] {
        constexpr auto xxc = einsum<"mk,nk,nc->mc">(x, x, Cm);
        if constexpr (C.use_bias)
            return xxc + reshape<N, 1>(sum<1>(x)) * param_node<bname, make_dims<C.cmp_dim>()>{};
        else
            return xxc;
    }();
    constexpr auto out = merge<C.out_type, C.keep_list>(O);
    constexpr auto pen = penalty<C.regularizer>(Cm);
    using kinit = tlist<param_init<kname, make_dims<N, C.cmp_dim>(), C.initializer>>;
    using binit = std::conditional_t<C.use_bias, tlist<param_init<bname, make_dims<C.cmp_dim>(), init::Zeros{}>>, tlist<>>;
    return result<std::remove_cvref_t<decltype(out)>, std::remove_cvref_t<decltype(pen)>, tlist<>, tl_concat_t<kinit, binit>>{};
}

} // namespace ctrec::layers
