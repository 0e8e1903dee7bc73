#pragma once
// LHUCTower (spec layers-trans-seq-multitask-nas.md 5): an MLP tower whose every layer output is
// multiplied by a per-unit gate in (0, 2) from a small gate MLP of the gating input (Learning
// Hidden Unit Contributions, arXiv 1601.02828).
//
//   constexpr layers::lhuc_tower_config<3> cfg{.output_dims = {50, 20, 1},
//       .lhuc_output_dims = {{{50, 50}, {50, 50, 20}, {100, 1}}}, .lhuc_use_bias = false};
//   constexpr auto r = layers::lhuc_tower<"lhuc_tower", cfg, layers::mode::predict>(x_d, x_l);
//   constexpr auto q = layers::lhuc_tower<"lhuc_tower", cfg, layers::mode::predict>(x);  // x gates itself
//
// Inputs: x (D) per example, used for both paths, or (x_d (D), x_l (D_l)). Output (d_n).
//   h_0 = BN_in(x_d) if batch norm, else x_d
//   h_i = act_i(BN_i(Dense_i(h_{i-1}))) * G_i(x_l),   i = 1..n   (BN_i on every layer but the last)
// G_i is gate MLP i: Monolith's MLP (mlp.hpp's conventions) with ReLU on its hidden layers and
// sigmoid2 = 2 sigmoid on its last, always reading the original x_l.
//
// Configuration (the source's arguments; spec 5.2):
//   output_dims         d_1..d_n
//   lhuc_output_dims    the source's list of lists, zero-padded rows (gate i exactly as given; its
//                       last entry must equal d_i: a compile-time error otherwise)
//   lhuc_hidden_dims    the source's list of ints h, zero-padded: gate i is h + [d_i]
//                       (both empty: the source's None / [], gate i is [d_i]; setting both is an error)
//   activation / activations / activation_list   main tower, as mlp_config: a single activation
//                       (default relu, the source's 'relu' and None) on every layer but the last,
//                       or with activation_list the list, last layer included
//   initializers        kernel initializer of main layer i, reused for every layer of gate i
//   use_bias, use_weight_norm, use_learnable_weight_norm, kernel_regularizer, bias_regularizer,
//   enable_batch_normalization, batch_normalization_momentum, batch_normalization_renorm,
//   renorm_rmax / renorm_rmin / renorm_dmax (the renorm_clipping dict), batch_normalization_renorm_momentum
//                       main tower, and the default for the gates
//   lhuc_<name>         overrides <name> for the gate MLPs only. As in the source, an override
//                       that is not given inherits (lhuc_params: None -> the tower's value); the
//                       regularizer overrides inherit when inactive (the source cannot set None
//                       there either).
//   monolith_compat     passed to every Dense (use_learnable_weight_norm = false: unit columns,
//                       the source's kernel norm without scale; see dense.hpp)
// The mode (batch norm's training flag) is explicit, as for mlp.
//
// Variables, relative to the scope (spec 5.4; match by suffix, Keras may repeat segments):
//   batch_norm/{gamma, beta, moving_mean, moving_variance, ...}                  (input BN)
//   layer_{i}/dense/{kernel, trainable_kernel_norm, bias}, layer_{i}/batch_norm/* (i from 1)
//   layer_{i}/lhuc/dense_{j}/{kernel, trainable_kernel_norm, bias}, layer_{i}/lhuc/BatchNorm/in,
//   layer_{i}/lhuc/BatchNorm/out, .../BatchNorm/out_{k}                           (gate MLP i)
//   a PReLU activation of main layer i owns layer_{i}/p_re_lu/alpha.
// r.inits lists the gates before the tower (Keras creates them interleaved); importers match
// by name, and initialize() seeds every variable from its name, so the order changes nothing.
//
// Performance: the gate MLPs' first layers all read x_l. When the gates have no batch norm (their
// inputs are then the same value), their effective kernels are concatenated column-wise (a derived
// parameter: weight norm and concatenation run once per parameter change) and the first layers of
// all gates are one GEMM x_l . [W_1 | ... | W_n], sliced per gate. With gate batch norm every gate
// normalises x_l with its own statistics, so the inputs differ and each gate runs its own GEMM.
#include <limits>

#include "ctrec/layers/mlp.hpp"  // dense, batch_norm, detail::keras_name

namespace ctrec::layers {

inline constexpr std::size_t lhuc_max_gate_layers = 8;

// A gate-MLP override: not given -> the tower's value.
template <class T>
struct lhuc_override {
    bool set = false;
    T value{};
    constexpr lhuc_override() = default;
    constexpr lhuc_override(T v) : set(true), value(v) {}  // NOLINT: `.lhuc_use_bias = false`
    constexpr T or_else(T inherited) const { return set ? value : inherited; }
};

template <std::size_t N>
struct lhuc_tower_config {
    std::array<std::size_t, N> output_dims{};
    std::array<std::array<std::size_t, lhuc_max_gate_layers>, N> lhuc_output_dims{};  // list of lists
    std::array<std::size_t, lhuc_max_gate_layers> lhuc_hidden_dims{};                 // list of ints
    layers::activation activation = act_relu;
    std::array<layers::activation, N> activations{};
    bool activation_list = false;
    std::array<init::spec, N> initializers{};  // glorot_uniform
    bool use_bias = true;
    bool use_weight_norm = true;
    bool use_learnable_weight_norm = true;
    regularizer kernel_regularizer{};
    regularizer bias_regularizer{};
    bool enable_batch_normalization = false;
    double batch_normalization_momentum = 0.99;
    bool batch_normalization_renorm = false;
    double renorm_rmax = std::numeric_limits<double>::infinity();
    double renorm_rmin = 0.0;
    double renorm_dmax = std::numeric_limits<double>::infinity();
    double batch_normalization_renorm_momentum = 0.99;
    // gate MLPs only
    regularizer lhuc_kernel_regularizer{};  // inactive: inherit
    regularizer lhuc_bias_regularizer{};    // inactive: inherit
    lhuc_override<bool> lhuc_use_bias{};
    lhuc_override<bool> lhuc_use_weight_norm{};
    lhuc_override<bool> lhuc_use_learnable_weight_norm{};
    lhuc_override<bool> lhuc_enable_batch_normalization{};
    lhuc_override<double> lhuc_batch_normalization_momentum{};
    lhuc_override<bool> lhuc_batch_normalization_renorm{};
    lhuc_override<double> lhuc_renorm_rmax{};
    lhuc_override<double> lhuc_renorm_rmin{};
    lhuc_override<double> lhuc_renorm_dmax{};
    lhuc_override<double> lhuc_batch_normalization_renorm_momentum{};
    bool monolith_compat = false;
};

void ctrec_shape_error_lhuc_tower_output_dims_must_be_positive();
void ctrec_shape_error_lhuc_tower_inputs_must_be_batched_B_by_D_tensors();
void ctrec_shape_error_lhuc_tower_give_lhuc_output_dims_or_lhuc_hidden_dims_not_both();
void ctrec_shape_error_lhuc_tower_lhuc_dims_must_be_zero_padded_lists_without_gaps();
void ctrec_shape_error_lhuc_tower_lhuc_output_dims_row_i_must_end_with_output_dims_i();
void ctrec_shape_error_lhuc_tower_a_gate_mlp_is_longer_than_lhuc_max_gate_layers();

namespace detail {
struct lhuc_gate_dims {
    std::size_t d[lhuc_max_gate_layers + 1]{};
    std::size_t n = 0;
};
// the non-zero prefix of a zero-padded row (a non-zero after a zero is an error)
constexpr std::size_t lhuc_prefix(const std::array<std::size_t, lhuc_max_gate_layers>& row) {
    std::size_t n = 0;
    while (n < row.size() && row[n] != 0) ++n;
    for (std::size_t k = n; k < row.size(); ++k)
        if (row[k] != 0) ctrec_shape_error_lhuc_tower_lhuc_dims_must_be_zero_padded_lists_without_gaps();
    return n;
}
template <std::size_t N>
constexpr lhuc_gate_dims lhuc_gate_of(const lhuc_tower_config<N>& c, std::size_t i) {
    bool lists = false;
    for (std::size_t k = 0; k < N; ++k) lists = lists || lhuc_prefix(c.lhuc_output_dims[k]) > 0;
    const std::size_t nh = lhuc_prefix(c.lhuc_hidden_dims);
    if (lists && nh > 0) ctrec_shape_error_lhuc_tower_give_lhuc_output_dims_or_lhuc_hidden_dims_not_both();
    lhuc_gate_dims g{};
    if (lists) {
        g.n = lhuc_prefix(c.lhuc_output_dims[i]);
        for (std::size_t k = 0; k < g.n; ++k) g.d[k] = c.lhuc_output_dims[i][k];
        if (g.n == 0 || g.d[g.n - 1] != c.output_dims[i]) ctrec_shape_error_lhuc_tower_lhuc_output_dims_row_i_must_end_with_output_dims_i();
    } else {
        for (std::size_t k = 0; k < nh; ++k) g.d[g.n++] = c.lhuc_hidden_dims[k];
        if (g.n >= lhuc_max_gate_layers) ctrec_shape_error_lhuc_tower_a_gate_mlp_is_longer_than_lhuc_max_gate_layers();
        g.d[g.n++] = c.output_dims[i];
    }
    return g;
}
// The gate MLPs' Dense and BatchNorm settings (lhuc_<name> or the tower's <name>).
template <std::size_t N>
constexpr dense_config lhuc_gate_dense(const lhuc_tower_config<N>& c, std::size_t i, std::size_t units) {
    dense_config d{};
    d.units = units;
    d.activation = ctrec::layers::act_linear;
    d.use_bias = c.lhuc_use_bias.or_else(c.use_bias);
    d.kernel_initializer = c.initializers[i];
    d.bias_initializer = init::Zeros{};
    d.kernel_regularizer = c.lhuc_kernel_regularizer.active() ? c.lhuc_kernel_regularizer : c.kernel_regularizer;
    d.bias_regularizer = c.lhuc_bias_regularizer.active() ? c.lhuc_bias_regularizer : c.bias_regularizer;
    d.allow_kernel_norm = c.lhuc_use_weight_norm.or_else(c.use_weight_norm);
    d.kernel_norm_trainable = c.lhuc_use_learnable_weight_norm.or_else(c.use_learnable_weight_norm);
    d.monolith_compat = c.monolith_compat;
    return d;
}
template <std::size_t N>
constexpr batch_norm_config lhuc_bn(const lhuc_tower_config<N>& c, bool gate) {
    batch_norm_config b{};
    b.momentum = c.batch_normalization_momentum;
    b.renorm = c.batch_normalization_renorm;
    b.rmax = c.renorm_rmax, b.rmin = c.renorm_rmin, b.dmax = c.renorm_dmax;
    b.renorm_momentum = c.batch_normalization_renorm_momentum;
    if (gate) {
        b.momentum = c.lhuc_batch_normalization_momentum.or_else(b.momentum);
        b.renorm = c.lhuc_batch_normalization_renorm.or_else(b.renorm);
        b.rmax = c.lhuc_renorm_rmax.or_else(b.rmax);
        b.rmin = c.lhuc_renorm_rmin.or_else(b.rmin);
        b.dmax = c.lhuc_renorm_dmax.or_else(b.dmax);
        b.renorm_momentum = c.lhuc_batch_normalization_renorm_momentum.or_else(b.renorm_momentum);
    }
    return b;
}
// Gate MLP i from layer `from` on, h being the output of layer from - 1 (the MLP's BatchNorm/out
// after every hidden Dense; relu on hidden layers, sigmoid2 on the last).
template <std::size_t N>
constexpr val lhuc_gate_rest(result& m, const name_string& gs, const lhuc_tower_config<N>& c, mode M, std::size_t i,
                             const lhuc_gate_dims& g, std::size_t from, val h) {
    const bool bn = c.lhuc_enable_batch_normalization.or_else(c.enable_batch_normalization);
    for (std::size_t j = from; j < g.n; ++j) {
        if (j > 0 && bn) h = batch_norm(m, scoped(gs, keras_name("BatchNorm/out", j - 1).view()), M, lhuc_bn(c, true), h);
        if (j > 0) h = relu(h);
        h = dense(m, scoped(gs, (name_string("dense_") + j).view()), lhuc_gate_dense(c, i, g.d[j]), h);
    }
    return 2.0 * sigmoid(h);
}
} // namespace detail

template <std::size_t N>
constexpr val lhuc_tower(result& m, const name_string& s, const lhuc_tower_config<N>& c, mode M, val xd, val xl) {
    if (N == 0) ctrec_shape_error_lhuc_tower_output_dims_must_be_positive();
    for (std::size_t i = 0; i < N; ++i)
        if (c.output_dims[i] == 0) ctrec_shape_error_lhuc_tower_output_dims_must_be_positive();
    if (!xd.batched() || xd.rank() != 1 || !xl.batched() || xl.rank() != 1) ctrec_shape_error_lhuc_tower_inputs_must_be_batched_B_by_D_tensors();

    // the gates G_i(x_l)
    const bool gate_bn = c.lhuc_enable_batch_normalization.or_else(c.enable_batch_normalization);
    val gates[N ? N : 1]{};
    name_string gscope[N ? N : 1]{};
    detail::lhuc_gate_dims gd[N ? N : 1]{};
    for (std::size_t i = 0; i < N; ++i) {
        gscope[i] = scoped(s, (name_string("layer_") + (i + 1) + "/lhuc").view());
        gd[i] = detail::lhuc_gate_of(c, i);
    }
    if (!gate_bn && N > 1) {
        // every gate's first layer in one GEMM: x_l . [W_1 | ... | W_n]
        val kernels[N ? N : 1]{};
        for (std::size_t i = 0; i < N; ++i) {
            const dense_config dc = detail::lhuc_gate_dense(c, i, gd[i].d[0]);
            kernels[i] = dense_kernel(m, scoped(gscope[i], "dense_0"), dc, xl.last());
        }
        const val z = matmul(xl, concat(1, kernels, N));
        std::size_t at = 0;
        for (std::size_t i = 0; i < N; ++i) {
            const dense_config dc = detail::lhuc_gate_dense(c, i, gd[i].d[0]);
            val h = slice(z, 0, at, at + dc.units);
            at += dc.units;
            if (dc.use_bias) {
                const val b = m.var(scoped(gscope[i], "dense_0/bias").view(), dims_of({dc.units}), dc.bias_initializer);
                add_penalty(m, dc.bias_regularizer, b);
                h = h + b;
            }
            gates[i] = detail::lhuc_gate_rest(m, gscope[i], c, M, i, gd[i], 1, h);
        }
    } else {
        for (std::size_t i = 0; i < N; ++i) {
            val h = xl;
            if (gate_bn) h = batch_norm(m, scoped(gscope[i], "BatchNorm/in"), M, detail::lhuc_bn(c, true), h);
            gates[i] = detail::lhuc_gate_rest(m, gscope[i], c, M, i, gd[i], 0, h);
        }
    }

    // the tower
    const batch_norm_config bn = detail::lhuc_bn(c, false);
    val h = xd;
    if (c.enable_batch_normalization) h = batch_norm(m, scoped(s, "batch_norm"), M, bn, h);
    for (std::size_t i = 0; i < N; ++i) {
        const name_string ls = scoped(s, (name_string("layer_") + (i + 1)).view());
        dense_config dc{};
        dc.units = c.output_dims[i];
        dc.activation = ctrec::layers::act_linear;
        dc.use_bias = c.use_bias;
        dc.kernel_initializer = c.initializers[i];
        dc.bias_initializer = init::Zeros{};
        dc.kernel_regularizer = c.kernel_regularizer;
        dc.bias_regularizer = c.bias_regularizer;
        dc.allow_kernel_norm = c.use_weight_norm;
        dc.kernel_norm_trainable = c.use_learnable_weight_norm;
        dc.monolith_compat = c.monolith_compat;
        h = dense(m, scoped(ls, "dense"), dc, h);
        if (c.enable_batch_normalization && i + 1 < N) h = batch_norm(m, scoped(ls, "batch_norm"), M, bn, h);
        const activation A = c.activation_list ? c.activations[i] : i + 1 < N ? c.activation : ctrec::layers::act_none;
        h = apply_activation(m, A, scoped(ls, "p_re_lu"), h) * gates[i];
    }
    return h;
}

template <fixed_string Scope, auto C, mode M>
constexpr result lhuc_tower(const result& x) {
    result m = x;
    m.set_out(lhuc_tower(m, Scope.view(), C, M, m.value(), m.value()));
    return m;
}
template <fixed_string Scope, auto C, mode M>
constexpr result lhuc_tower(const result& x_d, const expr& x_l) {
    result m = x_d;
    std::uint32_t il = 0;
    join_into(m.g, x_l, il);
    m.set_out(lhuc_tower(m, Scope.view(), C, M, m.value(), m.at(il)));
    return m;
}

} // namespace ctrec::layers
