#pragma once
// CDot (spec layers-core-and-cross.md section 6), "compression and dot interaction": the
// fields are projected and compressed into an example-dependent K x P matrix M, the fields
// are crossed with it, and both the crossed result and the compressed vector are output.
// Per example, with X (N, K):
//   Q = X^T . Wp (K, P);  q = flatten(Q) (K P);  c = MLP_compress(q) (K P);
//   M = reshape(c, (K, P));  Z = X . M (N, P);  out = concat(flatten(Z), c)  (N P + K P)
//
//   constexpr layers::cdot_config<2> cfg{.project_dim = 8, .compress_units = {128, 256},
//                                        .activation = layers::keras_activation("tanh")};
//   constexpr auto r = layers::cdot<"cdot", cfg>(x);   // x: (N, K) per example
//
// compress_units is a fixed-size array whose size is the config's template argument
// (cdot_config<0> for an empty list), as mlp_config<N> does for output_dims.
//
// Variables (creation order):
//   project_weight (N, P)                                [initializer; regularizer]
//   compress_tower/dense_i/{kernel, trainable_kernel_norm, bias}, i = 0 .. m
//     kernels (K P, u_1), (u_1, u_2), ..., (u_m, K P); (K P, K P) when compress_units is empty
// The tower is layers::mlp with output_dims = compress_units + [K P], the single activation
// on the hidden layers and none on the last, every kernel initialised with `initializer`
// and regularised with `regularizer`, and the MLP defaults otherwise: weight norm on with a
// learnable scale, bias (zeros, not regularised), no batch normalisation. The tower has no
// BN, so the layer takes no mode argument.
//
// Decisions:
// - activation: Monolith resolves it with Keras activations.get and the MLP then maps the
//   Keras function to its registry class by name (spec 1.2); every Keras name maps to the
//   same formula there, so the resolved value is passed to the MLP unchanged. Use
//   keras_activation("...") for the names CDot accepts; any other activation value
//   (e.g. act_prelu, as a Keras callable would be) is applied as given.
// - initializer default GlorotNormal for project_weight and every tower kernel (spec 1.3);
//   the tower's biases stay zeros and its trainable_kernel_norm starts at the column norms
//   of the initial kernels (Dense).
// - The reshapes of steps 2 and 4 are row-major (k outer, p inner), so they are views: the
//   contraction X^T . Wp writes Q in the layout the tower reads, and the tower's output is
//   read in place as M. The cross X . M is a per-example (batched x batched) contraction;
//   the projection X^T . Wp contracts the batched X with the shared Wp.
// - Output layout: out[0 : N P] = Z row-major (n outer), out[N P :] = c (spec 6.5).
#include <array>

#include "ctrec/layers/mlp.hpp"

namespace ctrec::layers {

template <std::size_t M = 0>
struct cdot_config {
    std::size_t project_dim = 0;
    std::array<std::size_t, M> compress_units{};
    layers::activation activation = act_relu;  // Keras resolver (keras_activation)
    init::spec initializer = init::GlorotNormal{};
    layers::regularizer regularizer{};  // project_weight and the tower kernels
};

namespace detail {
// The compress tower's configuration: compress_units + [K P], everything else from C.
template <auto C, std::size_t KP>
constexpr auto cdot_tower_config() {
    constexpr std::size_t m = C.compress_units.size();
    mlp_config<m + 1> t{};
    for (std::size_t i = 0; i < m; ++i) t.output_dims[i] = C.compress_units[i];
    t.output_dims[m] = KP;
    t.activation = C.activation;
    for (auto& s : t.initializers) s = C.initializer;
    t.kernel_regularizer = C.regularizer;
    return t;
}
} // namespace detail

template <fixed_string Scope, auto C, node X>
constexpr auto cdot(X x) {
    static_assert(C.project_dim > 0, "ctrec::layers::cdot: project_dim must be positive");
    static_assert(X::batched && X::shape.rank == 2, "ctrec::layers::cdot: the input must be (B, N, K)");
    constexpr std::size_t N = X::shape.d[0], K = X::shape.d[1], P = C.project_dim;
    static_assert([] {
        for (std::size_t u : C.compress_units)
            if (u == 0) return false;
        return true;
    }(), "ctrec::layers::cdot: compress_units must be positive");
    constexpr auto wname = scoped<Scope, "project_weight">();
    constexpr auto Wp = param_node<wname, make_dims<N, P>()>{};
    constexpr auto q = reshape<K * P>(einsum<"nk,np->kp">(x, Wp));
    constexpr auto tower = mlp<scoped<Scope, "compress_tower">(), detail::cdot_tower_config<C, K * P>(), mode::predict>(q);
    constexpr auto c = tower.out;
    constexpr auto Z = einsum<"nk,kp->np">(x, reshape<K, P>(c));
    constexpr auto out = concat<0>(reshape<N * P>(Z), c);
    using winit = tlist<param_init<wname, make_dims<N, P>(), C.initializer>>;
    using wpen = std::remove_cvref_t<decltype(penalty<C.regularizer>(Wp))>;
    // then() sums the penalties (project_weight's, then the tower's) and keeps the inits in
    // creation order
    return then(result<scalar_zero, wpen, tlist<>, winit>{}, then(tower, as_result(out)));
}

} // namespace ctrec::layers
