#pragma once
// SeNet (spec layers-trans-seq-multitask-nas.md 1.2): squeeze-and-excitation over fields.
// Per example, X (N, K):
//   squeeze  z_n = mean_k X[n, k]                                   (N)
//   excite   a = sigmoid(relu(z W1 + b1) W2 + b2)                   (N), in (0, 1)
//   scale    Y[n, k] = a_n X[n, k]
//
//   constexpr auto r = layers::senet<"se_net", {.num_feature = 10, .cmp_dim = 4}>(x);  // x: (N, K)
//   constexpr auto l = layers::senet<"se_net", {.num_feature = 3, .cmp_dim = 2}>(e0, e1, e2);  // a list
//
// The excitation is Monolith's MLP "cmp_tower" (mlp.hpp) with output_dims {C, N} and the
// activation list {relu, sigmoid}, weight norm with learnable scale on (the MLP defaults,
// spec 7 #19). Variables under the layer scope:
//   cmp_tower/dense_0/kernel (N, C), cmp_tower/dense_0/trainable_kernel_norm (C),
//   cmp_tower/dense_0/bias (C), cmp_tower/dense_1/kernel (C, N),
//   cmp_tower/dense_1/trainable_kernel_norm (N), cmp_tower/dense_1/bias (N).
// Kernels: `initializer` (default Glorot-uniform); biases zeros; the norms start as the
// column norms of the initial kernels (layers::initialize).
//
// cmp_dim = 0 stands for the source's cmp_dim=None: no tower, no variables, and a = z (the
// raw means, no sigmoid; spec 7 #14).
//
// Regularizers (spec 7 #14): the source has one `regularizer` on the kernels; the doc calls
// it `kernel_regularizer`. Both are accepted as aliases (setting both is a compile error);
// `bias_regularizer` (default none, the source) applies to the two biases.
//
// on_gpu: in the source it only changes how the list-input means are computed (same maths).
// ctrec accepts it and ignores it: it has no effect on CPU (nor on the result anywhere).
//
// Inputs and outputs (out_type / keep_list, merge_list.hpp):
//   one tensor (N, K)       concat (default) (N * K), stack (N, K), none a std::tuple of N (K)
//                           expressions (keep_list then ignored); keep_list wraps concat /
//                           stack in a one-element std::tuple.
//   a list e_0 .. e_{N-1}   vectors (K_n) of any widths, passed as separate arguments or as
//                           one std::tuple: y_n = a_n e_n with z_n the mean of e_n; concat
//                           gives (sum K_n), stack (N, K) (equal widths required), none the
//                           std::tuple of the y_n. A one-element list is returned as its bare
//                           (K_0) element (wrapped by keep_list), as the source does.
// A single (K) vector argument is read as a one-element list (num_feature must then be 1).
// num_feature must equal N (the number of rows, or of list elements): a static assertion.
//
// Implementation:
// SeNet (spec layers-trans-seq-multitask-nas.md 1.2), exactly as
// ctrec/layers/senet.hpp documents it: per example, X (N, K),
//   z_n = mean_k X[n, k];  a = MLP "cmp_tower" (output_dims {C, N}, relu then sigmoid, weight
//   norm with learnable scale) of z, or a = z (no sigmoid) for cmp_dim 0 (the source's None);
//   Y[n, k] = a_n X[n, k], merged per out_type / keep_list (merge_list.hpp).
// A list e_0 .. e_{N-1} of (K_n) vectors (any widths): z_n = mean(e_n), y_n = a_n e_n, merged
// with merge_list (a one-element list gives its bare element, as the source does).
// regularizer and kernel_regularizer are aliases (setting both is an error); bias_regularizer
// applies to the two biases; on_gpu has no effect. num_feature must equal N.
#include <initializer_list>
#include "ctrec/layers/merge_list.hpp"
#include "ctrec/layers/mlp.hpp"

namespace ctrec::layers {

struct senet_config {
    std::size_t num_feature = 0;
    std::size_t cmp_dim = 0;  // 0: the source's None (no tower, a = z)
    init::spec initializer = init::GlorotUniform{};
    layers::regularizer regularizer{};         // the source's name (kernels only) ...
    layers::regularizer kernel_regularizer{};  // ... and the doc's (an alias)
    layers::regularizer bias_regularizer{};
    bool on_gpu = false;  // accepted for parity; no effect
    merge_type out_type = merge_type::concat;
    bool keep_list = false;
};



void ctrec_shape_error_senet_regularizer_and_kernel_regularizer_are_aliases_set_one();
void ctrec_shape_error_senet_input_must_be_B_by_N_by_K_or_a_list_of_B_by_K_n();
void ctrec_shape_error_senet_num_feature_must_equal_the_number_of_fields();

namespace detail {
// the field weights a (N) from the means z (N)
constexpr val senet_excite(result& m, const name_string& s, const senet_config& c, val z) {
    if (c.regularizer.active() && c.kernel_regularizer.active())
        ctrec_shape_error_senet_regularizer_and_kernel_regularizer_are_aliases_set_one();
    if (c.cmp_dim == 0) return z;
    const mlp_config<2> t{.output_dims = {c.cmp_dim, c.num_feature},
                          .activations = {ctrec::layers::act_relu, ctrec::layers::act_sigmoid},
                          .activation_list = true,
                          .initializers = {c.initializer, c.initializer},
                          .kernel_regularizer = c.regularizer.active() ? c.regularizer : c.kernel_regularizer,
                          .bias_regularizer = c.bias_regularizer};
    return mlp(m, scoped(s, "cmp_tower"), t, mode::predict, z);
}
} // namespace detail

// A list of n >= 1 (K_n) vectors.
constexpr val_list senet(result& m, const name_string& s, const senet_config& c, const val* es, std::size_t n) {
    if (n == 0) ctrec_shape_error_list_needs_at_least_one_value();
    if (n > max_list) ctrec_error_list_longer_than_CTREC_MAX_LIST();
    for (std::size_t i = 0; i < n; ++i)
        if (!es[i].batched() || es[i].rank() != 1)  // axes with the batch axis
            report_shape_error(ctrec_shape_error_senet_input_must_be_B_by_N_by_K_or_a_list_of_B_by_K_n, es[i].rank() + es[i].batched(), 2);
    if (c.num_feature != n) report_shape_error(ctrec_shape_error_senet_num_feature_must_equal_the_number_of_fields, c.num_feature, n);
    val means[max_list]{};
    for (std::size_t i = 0; i < n; ++i) means[i] = reshape(sum(es[i]) * (1.0 / static_cast<double>(es[i].dim(0))), dims_of({1}));
    const val a = detail::senet_excite(m, s, c, concat(0, means, n));  // (N)
    val ys[max_list]{};
    for (std::size_t i = 0; i < n; ++i) ys[i] = es[i] * slice(a, 0, i, i + 1);  // (K_n) * (1)
    if (n == 1) return merge_tensor(c.out_type, c.keep_list, ys[0]);
    return merge_list(c.out_type, c.keep_list, ys, n);
}

// One (N, K) tensor, or a (K) vector read as a one-element list.
constexpr val_list senet(result& m, const name_string& s, const senet_config& c, val x) {
    if (!x.batched() || (x.rank() != 1 && x.rank() != 2))  // axes with the batch axis
        report_shape_error(ctrec_shape_error_senet_input_must_be_B_by_N_by_K_or_a_list_of_B_by_K_n, x.rank() + x.batched(), 3);
    if (x.rank() == 1) return senet(m, s, c, &x, 1);
    const std::size_t N = x.dim(0), K = x.dim(1);
    if (c.num_feature != N) report_shape_error(ctrec_shape_error_senet_num_feature_must_equal_the_number_of_fields, c.num_feature, N);
    const val a = detail::senet_excite(m, s, c, sum(x, {1}) * (1.0 / static_cast<double>(K)));  // (N)
    return merge_tensor(c.out_type, c.keep_list, x * reshape(a, dims_of({N, 1})));
}

// Facades: single-tensor outputs only (none and keep_list give lists: use the in-place functions).
template <fixed_string Scope, senet_config C>
constexpr result senet(const result& in) {
    result m = in;
    m.set_out(senet(m, Scope.view(), C, m.value()).single());
    return m;
}
template <fixed_string Scope, senet_config C>
constexpr result senet(std::initializer_list<expr> list) {
    result m = longest_expr(list);
    val es[max_list]{};
    join_exprs(m, list, es);
    m.set_out(senet(m, Scope.view(), C, es, list.size()).single());
    return m;
}

} // namespace ctrec::layers
