#pragma once
// iRazor (spec layers-trans-seq-multitask-nas.md 1.3): differentiable embedding-dimension
// search. Each field's embedding is cut into groups of dimensions by nas_space; every group
// gets a learned probability (plus one "drop" probability per field) and the embedding is
// scaled by the probability of the group each dimension belongs to.
//
//   constexpr auto r = layers::irazor<"i_razor", {.nas_space = {0, 2, 5, 7, 10}, .t = 0.08}>(x);
//   constexpr auto s = layers::irazor<"i_razor", {.nas_space = {0, 2, 5}}>(x, fw);  // with nas_loss
//   r.out        X * M merged per out_type (default concat: (N * K); the facade takes the
//                single-tensor out_types, irazor_values / irazor in place return the val_list)
//   r.penalty    the regularizer on nas_weight (symbolic zero without one)
//   r.nas_loss   the auxiliary loss sum_n fw_n sum_k M[n, k] (an unbatched scalar; a symbolic
//                zero when no feature weights are given). Add it to the objective (weight 1.0
//                in Monolith, spec 0.4); then() keeps only out/penalty/updates/inits, so
//                collect nas_loss from this result.
//
// Shapes (per example): x (N, K) with K = max(nas_space); L = len(nas_space).
// Variable: "<Scope>/nas_weight" (N, L), logits; initializer (None in Keras = GlorotUniform)
// and regularizer from the configuration. No state, no randomness, no mode: the masks are
// soft in every mode (spec 1.3.6).
//
//   P = softmax_1(nas_weight / t)                        (N, L), per field
//   M[n, k] = P[n, i(k)],  i(k) the group with nas_space[i-1] <= k < nas_space[i] (i >= 1)
//   Y[b, n, k] = X[b, n, k] M[n, k]
// P[n, 0] (the "drop" probability) weights no column. M is the spec's P . R with the constant
// rigid masks R (L, K); it is built as the concatenation of P's columns, each repeated over
// its group, which is the same value without a constant matrix (ctrec has no constant-tensor
// leaf). M reads parameters only, so
// the plan computes it once per parameter change (a derived parameter), and the per-example
// work is the single product X * M.
//
// Decisions:
// - nas_space is a fixed-capacity array in the configuration (capacity irazor_max_space);
//   its length is 1 + the index of its last non-zero entry (trailing zeros are unused slots).
//   It must be non-decreasing (a repeated boundary is an empty group, as the rigid-mask
//   formula gives; the source does not check this, and a decreasing list fails there too).
//   K == max(nas_space) is checked at compile time, as the source checks it.
// - nas_space[0] > 0: the source silently gives columns [0, nas_space[0]) weight 0 (spec 7.15:
//   follow the source, warn). ctrec reproduces it and warns at compile time (a deprecation
//   warning naming the layer) unless the configuration sets leading_zero_columns = true to
//   say this is intended.
// - feature_weight: Monolith takes a list or a tensor reshaped to [1, N]. Here it is an
//   optional second argument, any unbatched expression of N values ((N) or (1, N)); a
//   constant list is a parameter leaf the caller fills, wrapped in stop_gradient so that it
//   receives no gradient (a plain parameter would be trained, as a TF variable would).
// - out_type / keep_list: merge_tensor_list (layers/merge_list.hpp), as AllInt, SeNet and
//   GroupInt: none gives the N rows (K) as a list, keep_list a one-element list; the in-place
//   functions return that val_list, the facade only the single-tensor cases.
//
// Implementation:
// iRazor (spec layers-trans-seq-multitask-nas.md 1.3), exactly as
// ctrec/layers/irazor.hpp documents it: nas_weight (N, L) [initializer, regularizer],
//   P = softmax_1(nas_weight / t),  M[n, k] = P[n, i(k)] (zero for k < nas_space[0]),
//   Y = X * M merged per out_type,  nas_loss = sum_n fw_n sum_k M[n, k]
// (fw an unbatched (N) or (1, N) value, used as given). M is the concatenation of P's columns,
// each broadcast over its group; the leading zero columns are a zero fill.
// The nas_space[0] > 0 warning needs the configuration as a template argument: the facade
// gives it, the in-place function cannot.
#include "ctrec/layers/layer.hpp"
#include "ctrec/layers/merge_list.hpp"

namespace ctrec::layers {

inline constexpr std::size_t irazor_max_space = 32;

struct irazor_config {
    std::array<std::size_t, irazor_max_space> nas_space{};  // e.g. {0, 2, 5, 7, 10}
    double t = 0.05;                                         // softmax temperature
    init::spec initializer = init::GlorotUniform{};          // nas_weight (Keras None)
    layers::regularizer regularizer{};                       // nas_weight
    merge_type out_type = merge_type::concat;
    bool keep_list = false;
    bool leading_zero_columns = false;  // nas_space[0] > 0 is intended: no warning
};

namespace detail {
// Calling irazor_leading_zero_columns<true>() is the compile-time warning of spec 7.15.
template <bool Warn>
constexpr void irazor_leading_zero_columns() {}
template <>
[[deprecated("ctrec::layers::irazor: nas_space[0] > 0, so columns [0, nas_space[0]) are always zeroed (as in "
             "Monolith); set leading_zero_columns = true if this is intended")]] constexpr void
irazor_leading_zero_columns<true>() {}
} // namespace detail



void ctrec_shape_error_irazor_input_must_be_a_batched_B_by_N_by_K_tensor();
void ctrec_shape_error_irazor_nas_space_needs_at_least_two_boundaries();
void ctrec_shape_error_irazor_nas_space_must_be_non_decreasing();
void ctrec_shape_error_irazor_the_temperature_must_be_positive();
void ctrec_shape_error_irazor_the_embedding_width_K_must_equal_max_nas_space();
void ctrec_shape_error_irazor_feature_weight_must_be_an_unbatched_N_or_1_by_N_value();

struct irazor_vals {
    val_list out;
    val nas_loss;  // nas_loss.g == nullptr: no feature weights, no auxiliary loss
};

constexpr irazor_vals irazor_values(result& m, const name_string& s, const irazor_config& c, val x, val fw = {}) {
    std::size_t L = 0;
    for (std::size_t i = 0; i < ctrec::layers::irazor_max_space; ++i)
        if (c.nas_space[i] != 0) L = i + 1;
    if (!x.batched() || x.rank() != 2) ctrec_shape_error_irazor_input_must_be_a_batched_B_by_N_by_K_tensor();
    if (L < 2) ctrec_shape_error_irazor_nas_space_needs_at_least_two_boundaries();
    for (std::size_t i = 1; i < L; ++i)
        if (c.nas_space[i] < c.nas_space[i - 1]) ctrec_shape_error_irazor_nas_space_must_be_non_decreasing();
    if (!(c.t > 0.0)) ctrec_shape_error_irazor_the_temperature_must_be_positive();
    const std::size_t N = x.dim(0), K = x.dim(1), K0 = c.nas_space[0];
    if (K != c.nas_space[L - 1]) ctrec_shape_error_irazor_the_embedding_width_K_must_equal_max_nas_space();

    val w = m.var(scoped(s, "nas_weight").view(), dims_of({N, L}), c.initializer);
    add_penalty(m, c.regularizer, w);
    const val P = softmax(w / c.t, 1);
    val cols[ctrec::layers::irazor_max_space + 1]{};
    std::size_t n = 0;
    if (K0 > 0) cols[n++] = constant(m.g, 0.0, dims_of({N, K0}));
    for (std::size_t i = 1; i < L; ++i)
        if (c.nas_space[i] > c.nas_space[i - 1])  // an empty group weights no column
            cols[n++] = broadcast_to(slice(P, 1, i, i + 1), dims_of({N, c.nas_space[i] - c.nas_space[i - 1]}));
    const val M = concat(1, cols, n);
    irazor_vals r{merge_tensor(c.out_type, c.keep_list, x * M), {}};
    if (fw.g) {
        if (fw.batched() || fw.shape().size() != N || !(fw.rank() == 1 || (fw.rank() == 2 && fw.dim(0) == 1)))
            ctrec_shape_error_irazor_feature_weight_must_be_an_unbatched_N_or_1_by_N_value();
        r.nas_loss = sum(reshape(fw, dims_of({N})) * sum(M, {1}));
    }
    return r;
}
constexpr val_list irazor(result& m, const name_string& s, const irazor_config& c, val x) { return irazor_values(m, s, c, x).out; }

// The facade's result: the layer's output, and the auxiliary loss (the constant 0 without
// feature weights), which then() does not carry: collect it from here.
struct irazor_result : result {
    std::uint32_t nas_loss_id = none;
    constexpr irazor_result(const result& r) : result(r) {}
    constexpr irazor_result(const expr& e) : result(e) {}
    constexpr expr nas_loss() const {
        expr e{g, nas_loss_id};
        if (nas_loss_id == none) e.id = build::constant(e.g, 0.0);
        return e;
    }
};

template <fixed_string Scope, irazor_config C>
constexpr irazor_result irazor(const result& in) {
    ctrec::layers::detail::irazor_leading_zero_columns<(C.nas_space[0] > 0 && !C.leading_zero_columns)>();
    irazor_result m(in);
    m.set_out(irazor_values(m, Scope.view(), C, m.value()).out.single());
    return m;
}
template <fixed_string Scope, irazor_config C>
constexpr irazor_result irazor(const expr& x, const expr& fw) {
    ctrec::layers::detail::irazor_leading_zero_columns<(C.nas_space[0] > 0 && !C.leading_zero_columns)>();
    irazor_result m(x);
    std::uint32_t ifw = 0;
    join_into(m.g, fw, ifw);
    const irazor_vals v = irazor_values(m, Scope.view(), C, m.value(), m.at(ifw));
    m.set_out(v.out.single());
    m.nas_loss_id = v.nas_loss.id;
    return m;
}

} // namespace ctrec::layers
