#pragma once
// merge_tensor_list (spec layers-core-and-cross.md 1.1) for one (N, K) tensor on the
// graph-as-data core, as ctrec/layers/merge.hpp documents it: concat gives (N * K) (row-major),
// stack the tensor unchanged, a (W) tensor is unchanged for every type. A flat result holds one
// output, so keep_list (a one-element list) changes nothing, and out_type none (a list of N
// tensors) is a compile-time error: use stack and slice row n.
#include "ctrec/flat/val.hpp"
#include "ctrec/layers/merge.hpp"  // merge_type

namespace ctrec::flat::layers {

using ctrec::layers::merge_type;

void ctrec_shape_error_merge_needs_a_B_by_N_by_K_or_B_by_W_tensor();
void ctrec_flat_error_out_type_none_is_a_list_use_stack_and_slice_row_n();

constexpr val merge(merge_type t, val x) {
    if (x.rank() != 1 && x.rank() != 2) ctrec_shape_error_merge_needs_a_B_by_N_by_K_or_B_by_W_tensor();
    if (x.rank() == 1 || t == merge_type::stack) return x;
    if (t == merge_type::none) ctrec_flat_error_out_type_none_is_a_list_use_stack_and_slice_row_n();
    return reshape(x, dims_of({x.dim(0) * x.dim(1)}));
}

} // namespace ctrec::flat::layers
