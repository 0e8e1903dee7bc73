#pragma once
// AutoInt (spec layers-trans-seq-multitask-nas.md 1.1) on the graph-as-data core, exactly as
// ctrec/layers/autoint.hpp documents it: per example X (N, K), layer_num times
//   S = X X^T,  A = softmax over j of S[i, j] (max-shifted),  X' = A X,
// no projections, heads, scaling, residual or ReLU (the source); no variables; layer_num = 0
// returns the input; out_type / keep_list as flat/layers/merge.hpp says.
// The type core's fused attention node is written here as two einsums and a softmax.
#include "ctrec/flat/layers/layer.hpp"
#include "ctrec/flat/layers/merge.hpp"
#include "ctrec/layers/autoint.hpp"  // autoint_config

namespace ctrec::flat::layers {

using ctrec::layers::autoint_config;

void ctrec_shape_error_autoint_input_must_be_a_batched_B_by_N_by_K_tensor();

// The attention layers alone: (N, K) -> (N, K).
constexpr val autoint_layers(std::size_t layer_num, val x) {
    for (std::size_t l = 0; l < layer_num; ++l) x = einsum("ij,jk->ik", softmax(einsum("ik,jk->ij", x, x), 1), x);
    return x;
}

constexpr val autoint(result&, const label&, const autoint_config& c, val x) {
    if (!x.batched() || x.rank() != 2) ctrec_shape_error_autoint_input_must_be_a_batched_B_by_N_by_K_tensor();
    return merge(c.out_type, autoint_layers(c.layer_num, x));
}

template <fixed_string Scope, autoint_config C>
constexpr result autoint(const result& in) {
    result m = in;
    m.set_out(autoint(m, Scope.view(), C, m.value()));
    return m;
}

} // namespace ctrec::flat::layers
