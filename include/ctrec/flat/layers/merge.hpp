#pragma once
// merge_tensor_list (spec layers-core-and-cross.md 1.1) for one (N, K) tensor on the
// graph-as-data core, as ctrec/layers/merge.hpp documents it: concat gives (N * K) (row-major),
// stack the tensor unchanged, a (W) tensor is unchanged for every type. A flat result holds one
// output, so keep_list (a one-element list) changes nothing, and out_type none (a list of N
// tensors) is a compile-time error: use stack and slice row n.
#include "ctrec/flat/layers/merge_list.hpp"

namespace ctrec::flat::layers {

void ctrec_flat_error_out_type_none_is_a_list_use_stack_and_slice_row_n();

// merge_tensor (merge_list.hpp) for callers that need one tensor back.
constexpr val merge(merge_type t, val x) {
    if (t == merge_type::none && x.rank() == 2) ctrec_flat_error_out_type_none_is_a_list_use_stack_and_slice_row_n();
    return merge_tensor(t, false, x).single();
}

} // namespace ctrec::flat::layers
