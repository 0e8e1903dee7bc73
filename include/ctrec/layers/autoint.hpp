#pragma once
// AutoInt (spec layers-trans-seq-multitask-nas.md 1.1): parameter-free self-attention over
// the N field embeddings of an example, iterated layer_num times. Per example, X (N, K):
//   S = X X^T (N, N);  A = softmax over j of S[i, j] (the last axis, row-wise);  X' = A X.
//
//   constexpr auto r = layers::autoint<"auto_int", {.layer_num = 2}>(x);   // x: (N, K) per example
//
// Exactly the source (spec 7 #18): no query/key/value projections, no heads, no 1/sqrt(K)
// scaling, no residual, no ReLU (the AutoInt paper has all of them). The softmax subtracts
// the row maximum (a stop_gradient, dsl.hpp), so the unscaled logits cannot overflow.
// Several layers smooth every row towards the same vector; that is the source's behaviour.
//
// layer_num = 0 returns the merged input (the source's loop runs zero times).
//
// No variables (Scope only names the layer). out_type (merge.hpp): concat (default) gives (N * K), stack (N, K), none a
// std::tuple of N (K) expressions (keep_list is then ignored); keep_list wraps concat / stack
// in a one-element std::tuple. A list input, which the source rejects, does not compile here
// (the input must be one (B, N, K) tensor).
//
// Evaluation: each layer is one fused self_attention node (core/attention.hpp): one pass per
// example whose scores stay in registers / an L1 row buffer (online softmax over key blocks),
// so the workspace holds only the (N, K) activations between layers, forward and backward
// (the derivative nodes recompute the scores per block; tests/test_autoint.cpp checks the
// plans). The values are those of softmax<1>(einsum<"ik,jk->ij">(x, x)) . x: the unfused
// form is kept in tests/test_attention.cpp as a second reference.
#include "ctrec/layers/layer.hpp"
#include "ctrec/layers/merge.hpp"

namespace ctrec::layers {

struct autoint_config {
    std::size_t layer_num = 1;
    merge_type out_type = merge_type::concat;
    bool keep_list = false;
};

namespace detail {
template <std::size_t L, node X>
constexpr auto autoint_layers(X x) {
    if constexpr (L == 0) {
        return x;
    } else {
        return autoint_layers<L - 1>(self_attention(x));  // softmax over j of <X_i, X_j>, times X
    }
}
} // namespace detail

template <fixed_string Scope, autoint_config C, node X>
constexpr auto autoint(X x) {
    static_assert(X::batched && X::shape.rank == 2, "ctrec::layers::autoint: the input must be one (B, N, K) tensor");
    constexpr auto y = detail::autoint_layers<C.layer_num>(x);
    constexpr auto out = merge<C.out_type, C.keep_list>(y);
    return result<std::remove_cvref_t<decltype(out)>>{};
}

} // namespace ctrec::layers
