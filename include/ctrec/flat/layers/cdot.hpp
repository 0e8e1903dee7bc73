#pragma once
// CDot (spec layers-core-and-cross.md section 6) on the graph-as-data core, exactly as
// ctrec/layers/cdot.hpp documents it: per example, X (N, K),
//   Q = X^T . Wp (K, P);  c = MLP_compress(flatten(Q)) (K P);  Z = X . reshape(c, (K, P)) (N, P);
//   out = concat(flatten(Z), c)  (N P + K P)
// Variables in creation order: "<scope>/project_weight" (N, P) [initializer, default
// GlorotNormal; regularizer], then the tower "<scope>/compress_tower/dense_i/{kernel,
// trainable_kernel_norm, bias}" (output_dims = compress_units + [K P], the activation on the
// hidden layers only, every kernel `initializer` / `regularizer`, the MLP defaults otherwise).
// The tower has no BN: no mode argument.
#include "ctrec/flat/layers/mlp.hpp"
#include "ctrec/layers/cdot.hpp"  // cdot_config

namespace ctrec::flat::layers {

using ctrec::layers::cdot_config;

void ctrec_shape_error_cdot_project_dim_must_be_positive();
void ctrec_shape_error_cdot_input_must_be_B_by_N_by_K();
void ctrec_shape_error_cdot_compress_units_must_be_positive();

template <std::size_t M>
constexpr val cdot(result& m, const label& s, const cdot_config<M>& c, val x) {
    if (c.project_dim == 0) ctrec_shape_error_cdot_project_dim_must_be_positive();
    if (!x.batched() || x.rank() != 2) ctrec_shape_error_cdot_input_must_be_B_by_N_by_K();
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

} // namespace ctrec::flat::layers
