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
// No variables (Scope only names the layer). out_type / keep_list: merge_tensor_list
// (layers/merge_list.hpp), as AllInt, SeNet and GroupInt: concat (default) gives (N * K), stack
// (N, K), none the N rows (K) as a list (keep_list is then ignored); keep_list makes concat /
// stack a one-element list. The in-place function returns that val_list; the facade takes the
// single-tensor cases only (a list does not fit a result's one output). A list input, which
// the source rejects, does not compile here (the input must be one (B, N, K) tensor).
//
// Evaluation: each layer is one fused self_attention node (core/build.hpp: opcodes attention,
// attention_vjp, attention_jvp; kernels/cpu/attention.hpp): one pass per example whose scores
// stay in registers / an L1 row buffer (online softmax over key blocks), so the workspace holds
// only the (N, K) activations between layers, forward and backward (the derivative nodes
// recompute the scores per block; tests/test_self_attention.cpp checks the plans). The values
// are those of softmax(einsum("ik,jk->ij", x, x), 1) . x, the composed form this layer was
// built from before (tests/test_self_attention.cpp keeps it as a second reference).
#include "ctrec/layers/layer.hpp"
#include "ctrec/layers/merge_list.hpp"

namespace ctrec::layers {

struct autoint_config {
    std::size_t layer_num = 1;
    merge_type out_type = merge_type::concat;
    bool keep_list = false;
};



void ctrec_shape_error_autoint_input_must_be_a_batched_B_by_N_by_K_tensor();

// The attention layers alone: (N, K) -> (N, K).
constexpr val autoint_layers(std::size_t layer_num, val x) {
    for (std::size_t l = 0; l < layer_num; ++l) x = self_attention(x);
    return x;
}

constexpr val_list autoint(result&, const name_string&, const autoint_config& c, val x) {
    if (!x.batched() || x.rank() != 2)  // axes with the batch axis
        report_shape_error(ctrec_shape_error_autoint_input_must_be_a_batched_B_by_N_by_K_tensor, x.rank() + x.batched(), 3);
    return merge_tensor(c.out_type, c.keep_list, autoint_layers(c.layer_num, x));
}

// A single-tensor out_type only (none and keep_list give lists: use the in-place function).
template <fixed_string Scope, autoint_config C>
constexpr result autoint(const result& in) {
    result m = in;
    m.set_out(autoint(m, Scope.view(), C, m.value()).single());
    return m;
}

} // namespace ctrec::layers
