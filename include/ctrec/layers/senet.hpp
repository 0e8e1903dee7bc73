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
// Inputs and outputs (out_type / keep_list, merge.hpp):
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
#include <tuple>
#include <utility>

#include "ctrec/layers/layer.hpp"
#include "ctrec/layers/merge.hpp"
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

namespace detail {
template <senet_config C>
constexpr mlp_config<2> senet_tower_config() {
    return mlp_config<2>{.output_dims = {C.cmp_dim, C.num_feature},
                         .activations = {act_relu, act_sigmoid},
                         .activation_list = true,
                         .initializers = {C.initializer, C.initializer},
                         .kernel_regularizer = C.regularizer.active() ? C.regularizer : C.kernel_regularizer,
                         .bias_regularizer = C.bias_regularizer};
}

// The field weights a (N) from the means z (N), as a result carrying the tower's penalty
// and initializers.
template <fixed_string Scope, senet_config C, node Z>
constexpr auto senet_excite(Z z) {
    static_assert(!(C.regularizer.active() && C.kernel_regularizer.active()),
                  "ctrec::layers::senet: regularizer and kernel_regularizer are aliases; set one");
    if constexpr (C.cmp_dim == 0) return as_result(z);
    else return mlp<scoped<Scope, "cmp_tower">(), senet_tower_config<C>(), mode::predict>(z);
}

template <class Out, class R>
constexpr auto senet_result(Out, R) {
    return result<Out, std::remove_cvref_t<decltype(R{}.penalty)>, typename R::updates, typename R::inits>{};
}

// The list path: N >= 1 vectors.
template <fixed_string Scope, senet_config C, node... E, std::size_t... I>
constexpr auto senet_list(std::index_sequence<I...>, E... e) {
    static_assert(((E::batched && E::shape.rank == 1) && ...),
                  "ctrec::layers::senet: list elements must be (B, K_n) tensors");
    static_assert(C.num_feature == sizeof...(E), "ctrec::layers::senet: num_feature must equal the number of list elements");
    constexpr auto z = concat<0>(reshape<1>(mean(e))...);  // (N)
    constexpr auto r = senet_excite<Scope, C>(z);
    constexpr auto ys = std::tuple{(e * slice<0, I, I + 1>(r.out))...};  // (K_n) * (1)
    constexpr auto out = [&] {
        if constexpr (sizeof...(E) == 1) return merge<C.out_type, C.keep_list>(std::get<0>(ys));
        else return std::apply([](auto... y) { return merge_list<C.out_type, C.keep_list>(y...); }, ys);
    }();
    return senet_result(out, r);
}
} // namespace detail

// One (B, N, K) tensor, or a one-element list given as its (B, K) element.
template <fixed_string Scope, senet_config C, node X>
constexpr auto senet(X x) {
    static_assert(X::batched && (X::shape.rank == 2 || X::shape.rank == 1),
                  "ctrec::layers::senet: the input must be a (B, N, K) tensor or a list of (B, K_n) tensors");
    if constexpr (X::shape.rank == 1) {
        return detail::senet_list<Scope, C>(std::index_sequence<0>{}, x);
    } else {
        constexpr std::size_t N = X::shape.d[0];
        static_assert(C.num_feature == N, "ctrec::layers::senet: num_feature must equal the number of fields N of the input");
        constexpr auto r = detail::senet_excite<Scope, C>(mean<1>(x));  // (N)
        constexpr auto y = x * reshape<N, 1>(r.out);
        return detail::senet_result(merge<C.out_type, C.keep_list>(y), r);
    }
}

// A list of two or more (B, K_n) tensors.
template <fixed_string Scope, senet_config C, node X0, node X1, node... Xs>
constexpr auto senet(X0 x0, X1 x1, Xs... xs) {
    return detail::senet_list<Scope, C>(std::make_index_sequence<2 + sizeof...(Xs)>{}, x0, x1, xs...);
}

// A list given as a std::tuple (e.g. another layer's out_type = none output).
template <fixed_string Scope, senet_config C, node... X>
constexpr auto senet(std::tuple<X...> list) {
    static_assert(sizeof...(X) >= 1, "ctrec::layers::senet: an empty list");
    return std::apply([](auto... e) { return senet<Scope, C>(e...); }, list);
}

} // namespace ctrec::layers
