#pragma once
// MergeType and merge_tensor_list (spec layers-core-and-cross.md 1.1): how layers with an
// out_type / keep_list option shape their output.
//
// Axes: ctrec's shapes are per example (the batch axis is implicit), so the spec's (B, N, K)
// is ctrec shape (N, K), its (B, W) is (W), and the spec's axis 1 (merge_tensor_list's
// default, and the only axis any layer passes) is ctrec's axis 0. These helpers always work
// on that axis.
//
// The rows of the spec's table a static model can express (keep_list = false | true):
//
//   merge<T>(x), x of shape (N, K)
//     stack   the tensor unchanged, (N, K)                       | std::tuple{x}
//     concat  (N*K), out[n*K + k] = x[n, k] (row-major reshape)    | std::tuple{out}
//     none    unstack along N: std::tuple of N (K) expressions     | the same tuple (ignored)
//   merge_features<T, F>(x), x of shape (W), num_feature F > 1, K = W / F
//     stack   reshape to (F, K)                                  | std::tuple{out}
//     concat  unchanged (W)                                      | std::tuple{x}
//     none    reshape to (F, K), then unstack: F (K) expressions   | the same tuple (ignored)
//   merge<T>(x) or merge_features<T, F <= 1>(x), x of shape (W)
//     any type, none included: unchanged (W), no list            | std::tuple{x}
//   merge_list<T>(x0, x1, ...), two or more expressions
//     stack   stack along a new axis 0: (n, s...)                 | std::tuple{out}
//     concat  concatenate along axis 0 (part i at rows [i*s0, (i+1)*s0) for equal parts)
//                                                                  | std::tuple{out}
//     none    the list itself, std::tuple{x0, x1, ...}           | the same tuple (ignored)
//
// Rejected at compile time: any other rank for a single tensor ("shape error" in the source),
// and a W that num_feature does not divide (the source truncates K = int(W / F), and its
// reshape then fails, or with an unknown batch silently regroups rows across examples).
//
// Implementation:
// merge_tensor_list (spec layers-core-and-cross.md 1.1) for one (N, K) tensor on the
// core, as documented above: concat gives (N * K) (row-major),
// stack the tensor unchanged, a (W) tensor is unchanged for every type. A result holds one
// output, so keep_list (a one-element list) changes nothing, and out_type none (a list of N
// tensors) is a compile-time error: use stack and slice row n.
#include "ctrec/layers/merge_list.hpp"

namespace ctrec::layers {

void ctrec_error_out_type_none_is_a_list_use_stack_and_slice_row_n();

// merge_tensor (merge_list.hpp) for callers that need one tensor back.
constexpr val merge(merge_type t, val x) {
    if (t == merge_type::none && x.rank() == 2) ctrec_error_out_type_none_is_a_list_use_stack_and_slice_row_n();
    return merge_tensor(t, false, x).single();
}

} // namespace ctrec::layers
