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
//
// Implementation:
// CDot (spec layers-core-and-cross.md section 6), exactly as
// ctrec/layers/cdot.hpp documents it: per example, X (N, K),
//   Q = X^T . Wp (K, P);  c = MLP_compress(flatten(Q)) (K P);  Z = X . reshape(c, (K, P)) (N, P);
//   out = concat(flatten(Z), c)  (N P + K P)
// Variables in creation order: "<scope>/project_weight" (N, P) [initializer, default
// GlorotNormal; regularizer], then the tower "<scope>/compress_tower/dense_i/{kernel,
// trainable_kernel_norm, bias}" (output_dims = compress_units + [K P], the activation on the
// hidden layers only, every kernel `initializer` / `regularizer`, the MLP defaults otherwise).
// The tower has no BN: no mode argument.
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



void ctrec_shape_error_cdot_project_dim_must_be_positive();
void ctrec_shape_error_cdot_input_must_be_B_by_N_by_K();
void ctrec_shape_error_cdot_compress_units_must_be_positive();

template <std::size_t M>
constexpr val cdot(result& m, const name_string& s, const cdot_config<M>& c, val x) {
    if (c.project_dim == 0) ctrec_shape_error_cdot_project_dim_must_be_positive();
    if (!x.batched() || x.rank() != 2)  // axes with the batch axis
        report_shape_error(ctrec_shape_error_cdot_input_must_be_B_by_N_by_K, x.rank() + x.batched(), 3);
    for (std::size_t u : c.compress_units)
        if (u == 0) ctrec_shape_error_cdot_compress_units_must_be_positive();
    const std::size_t N = x.dim(0), K = x.dim(1), P = c.project_dim;
    val Wp = m.var(scoped(s, "project_weight").view(), dims_of({N, P}), c.initializer);
    add_penalty(m, c.regularizer, Wp);
    mlp_config<M + 1> t{};
    for (std::size_t i = 0; i < M; ++i) t.output_dims[i] = c.compress_units[i];
    t.output_dims[M] = K * P;
    t.activation = c.activation;
    for (auto& init : t.initializers) init = c.initializer;
    t.kernel_regularizer = c.regularizer;
    const val q = reshape(einsum("nk,np->kp", x, Wp), dims_of({K * P}));
    const val cv = mlp(m, scoped(s, "compress_tower"), t, mode::predict, q);
    const val Z = einsum("nk,kp->np", x, reshape(cv, dims_of({K, P})));
    return concat(0, {reshape(Z, dims_of({N * P})), cv});
}

template <fixed_string Scope, auto C>
constexpr result cdot(const result& in) {
    result m = in;
    m.set_out(cdot(m, Scope.view(), C, m.value()));
    return m;
}

} // namespace ctrec::layers
