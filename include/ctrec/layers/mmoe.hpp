#pragma once
// MMoE, multi-gate mixture of experts (spec layers-trans-seq-multitask-nas.md 3.1): E expert MLPs
// read x_e; each of T tasks mixes the expert outputs with its own gate over the experts, computed
// from x_g (softmax, top-k or noisy top-k).
//
//   constexpr layers::mmoe_config cfg{.num_tasks = 2, .expert_output_dims = {{128, 64, 64}, {64, 64}, {128, 64}},
//                                     .expert_activations = layers::act_relu,
//                                     .gate_type = layers::mmoe_gate::topk, .top_k = 2};
//   constexpr auto r = layers::mmoe<"m_mo_e", cfg, layers::mode::train>(x);        // experts and gates read x
//   constexpr auto p = layers::mmoe<"m_mo_e", cfg, layers::mode::predict>(xe, xg);  // the pair form
//   r.task(t)     task t's output (D_out), t < T: the spec's list of T outputs
//   r.out()       the T outputs stacked, (T, D_out) per example (row t = task t)
//   r.cv2()       the CV^2 load-balance loss, an unbatched (T) vector (spec 3.1.5 step 6): add
//                 sum(r.cv2()) to the objective (reduction = sum, weight 1 as Keras add_loss).
//                 Softmax gates have no such loss: cv2() is then the constant zeros (T) and
//                 has_cv2() is false. then() keeps only out/penalty/updates/inits: collect the
//                 tasks and cv2 from this result.
//   r.gates()     the gate values used, (T, E) per example (renormalised after top-k);
//   r.logits()    the gate logits after the noise, (T, E) per example
//   r.penalty()   the experts' kernel / bias regularizers
// In place: mmoe_values(m, scope, cfg, mode, x) or (m, scope, cfg, mode, x_e, x_g) returns all of
// these as vals (mmoe_vals).
//
// Configuration (the source's constructor, spec 3.1.2):
//   num_tasks              T >= 1
//   expert_output_dims     one list shared by every expert, {128, 64}, or one list per expert,
//                          {{128, 64}, {64, 64}}; the last widths must be equal (D_out), and a list
//                          of lists must hold num_experts lists (spec 7 #12): compile-time errors
//   expert_activations     required (spec 7 #9): one activation shared by every expert, or a list
//                          {a_0, .., a_{E-1}}. Keras activations.get semantics (keras_activation
//                          for names; act_none = None = linear): the expert MLP applies it after
//                          every Dense but its last, the last is linear
//   expert_initializers    kernel initializer shared or per expert (default GlorotUniform)
//   gate_type              softmax (default), topk, noise_topk (mmoe_gate_from("...") maps the
//                          source's strings)
//   top_k / topk           experts kept per task (source / doc spelling; aliases, setting both to
//                          different values is an error; default 1); 1 <= k <= E checked
//   num_experts            E; 0 (the source's None): the number of per-expert dims lists, else
//                          of expert_activations if a list, else of expert_initializers if a list
//   kernel_regularizer, bias_regularizer, use_weight_norm (true), use_learnable_weight_norm
//                          (true), use_bias (true), enable_batch_normalization and the
//                          batch_normalization_* options: forwarded to every expert MLP as in
//                          layers::mlp (spec 7 #19: weight norm on by default)
//   seed                   the noise stream's seed (default 0, see Randomness)
//   monolith_compat        the source: noise in every mode; Dense's source kernel-norm variant
//   acknowledge_compat_overrides  monolith_compat with noise_topk overrides mode::predict's
//                          deterministic scoring (noise is drawn); that combination is a compile
//                          error unless this is true (ctrec_error_mmoe_monolith_compat_draws_...)
//
// Variables (names relative to the scope; spec 3.1.4), declared expert by expert, then the gates:
//   expert_{i}/dense_{j}/kernel, expert_{i}/dense_{j}/trainable_kernel_norm, expert_{i}/dense_{j}/bias
//   (exactly as layers::mlp names them, also the BatchNorm/in, BatchNorm/out, BatchNorm/out_1, ..
//   and p_re_lu/alpha variables), gate_weight (D_g, E T) Zeros, no regularizer, and for
//   noise_topk gate_noise (D_g, E T) GlorotNormal. Column c of the gate matrices is task c / E,
//   expert c % E. A program lists only the variables it reads: gate_noise is absent from a
//   program that draws no noise.
//
// Forward, per example (spec 3.1.5):
//   o_e = MLP_e(x_e) (D_out);  l = x_g gate_weight (E T);  noise_topk with noise drawn:
//   l += eps * softplus(x_g gate_noise), eps ~ N(0, 1) per example and logit;
//   g_t = softmax_e(l[t E .. t E + E)); topk / noise_topk: m_{t,e} = 1[#{j : g_{t,j} > g_{t,e}} < k]
//   (the k-th largest and every tie with it survive, so zero-initialised gates keep all experts,
//   spec 7 #11), g_t <- m_t g_t / sum_e m_{t,e} g_{t,e}; y_t = sum_e g_{t,e} o_e.
//   The mask is built from stop_gradient(g) and is a constant of the derivative; the
//   renormalisation is differentiated, which is the gradient of spec 3.1.7 (reparameterised
//   noise: d/d gate_noise flows through eps * sigmoid(x_g gate_noise)).
//   CV^2 (topk, noise_topk): I[t, e] = sum over the batch of g_{t,e}; mu_t = mean_e I, v_t =
//   mean_e (I - mu_t)^2 (population), cv2_t = v_t / mu_t^2.
//
// Randomness (spec 0.3, 3.1.6, 7 #10): eps is a per-example random leaf of kind normal
// (Box-Muller of open uniforms), stream "<scope>/noise_<seed>", element c of example b the
// pure function random_value(normal, io.seed, stream_hash(stream), b, c) (b the example index
// in the call, io.seed the call's step counter): the same io.seed gives bit-identical noise on
// every backend and tiling, the forward and backward passes of one call share it. The default
// seed 0 leaves the stream determined by the layer path, as the spec's default seed is. Modes:
// train and eval draw noise, predict draws none (eps = 0, scoring is deterministic);
// monolith_compat draws in every mode as the source does (in predict only with
// acknowledge_compat_overrides = true: a scoring program that silently draws noise is an error).
//
// Execution (the variables stay per expert, only the arithmetic is grouped; same numbers up to
// float summation order):
// - stack_experts (default): every expert's first Dense reads x_e, so their effective kernels
//   are concatenated column-wise, [W_1 | .. | W_E] (parameter-only: a derived parameter the plan
//   computes once per parameter change), and x_e runs through ONE GEMM; bias and activation
//   act on the stacked row when every expert's first activation is the same, per slice
//   otherwise; each expert continues on its slice.
// - join_gate (default): when x_g is x_e and the experts' first layers are at most 2 D columns
//   (or 256) wide in all, gate_weight (and gate_noise when noise is drawn) join that GEMM's columns, so no
//   narrow (E T columns) GEMM runs on its own (wider: the copy of the expert columns out of the
//   joined row costs more than the narrow GEMM; W7 is ~10% faster unjoined).
// - batch_deeper_layers (default off): with equal widths, the deeper layers as one contraction
//   batched over the expert axis, h (E, d_in) x stacked kernels (E, d_in, d_out).
// - Batch normalisation inside the experts (a different normalised input per expert) and
//   stack_experts = false run the literal per-expert MLPs (layers::mlp's chain).
// - The mixture y_t = sum_e g_{t,e} o_e is E multiply-adds over (T, D_out) in one fused loop.
// Measured (float, B = 512, T = 2, top-2 gate, relu, one input; CPU time of one scoring call /
// one gradient call of sum(out) + sum(cv2), best of 9, g++ 12 -O3 -march=native, AVX-512 core):
//   D = 128, E = 4, dims {64, 32}:   literal 500 / 2600 us, stacked 500 / 2520, stacked + joined
//                                    gate 300 / 1620, + batched deeper layers 310 / 1600
//   D = 256, E = 4, dims {256, 128}: literal 2700 / 14500, stacked + joined 2360 / 13300,
//                                    + batched 2340 / 13100 (GEMM bound)
//   D = 64, E = 8, dims {32, 16}:    every variant 280-320 / 1900-2200 (within noise)
//   the mixture as a reduction over a (T, E, D_out) product instead: 640 (literal) and 450
//   (stacked + joined) us for the first case.
// Stacking alone gains little while each expert's GEMM is wide; joining the gate removes a
// narrow GEMM of E T columns; batching the deeper layers (a strided GEMM per expert instead of
// a contiguous one, no slices) is neutral, so it stays off.
//
// Decisions (spec silent or contradicted):
// - Inputs are per-example vectors (x_e (D), x_g (D_g), both batched): a compile-time error
//   otherwise. E <= mmoe_max_experts, T <= mmoe_max_tasks, depth <= mmoe_max_depth.
// - A list of activations or initializers must hold num_experts entries (the source indexes
//   it and would fail on a short one, and ignore a long one's tail).
// - The layer takes a mode (template argument of the facade, required like layers::mlp): it
//   drives the experts' batch normalisation and the noise (spec 0.2).
// - Noise counters: (example index in the call, logit c) instead of the spec's flat element
//   index b E T + c; both are pure functions of the same data. There is no injected-noise
//   input (spec 0.3.3): tests recompute the noise exactly with ctrec::random_value.
// - use_learnable_weight_norm = false uses Dense's documented fixed norm (a non-trainable
//   kernel_norm variable); with monolith_compat the source's unit-norm kernel (dense.hpp).
// - Variable creation order (r.inits): expert by expert as each MLP creates them, then
//   gate_weight, gate_noise. Keras may create the gate variables first (build() before the
//   experts' first call); importers match by name (spec 0.5), so the order carries no meaning
//   except among the BatchNorm/out copies of one expert, which the names already number.
#include <initializer_list>
#include <limits>
#include <type_traits>

#include "ctrec/layers/batch_norm.hpp"
#include "ctrec/layers/dense.hpp"
#include "ctrec/layers/mlp.hpp"

namespace ctrec::layers {

inline constexpr std::size_t mmoe_max_experts = 16;
inline constexpr std::size_t mmoe_max_depth = 8;
inline constexpr std::size_t mmoe_max_tasks = 16;

enum class mmoe_gate { softmax, topk, noise_topk };

inline constexpr char not_an_mmoe_gate_type{};  // named in the error

// The source's gate_type strings, exactly.
constexpr mmoe_gate mmoe_gate_from(std::string_view s) {
    if (s == "softmax") return mmoe_gate::softmax;
    if (s == "topk") return mmoe_gate::topk;
    if (s == "noise_topk") return mmoe_gate::noise_topk;
    report_unknown_name(s, not_an_mmoe_gate_type);
    throw error("ctrec::layers::mmoe: gate_type must be \"softmax\", \"topk\" or \"noise_topk\"");
}

void ctrec_error_mmoe_more_experts_than_mmoe_max_experts();
void ctrec_error_mmoe_deeper_experts_than_mmoe_max_depth();
void ctrec_error_mmoe_more_tasks_than_mmoe_max_tasks();
void ctrec_shape_error_mmoe_expert_output_dims_must_be_given_and_positive();
void ctrec_shape_error_mmoe_expert_output_dims_must_end_in_equal_widths();
void ctrec_shape_error_mmoe_expert_output_dims_lists_must_number_num_experts();
void ctrec_shape_error_mmoe_expert_activations_is_required();
void ctrec_shape_error_mmoe_activation_and_initializer_lists_must_number_num_experts();
void ctrec_shape_error_mmoe_num_experts_not_given_and_no_list_to_count();
void ctrec_shape_error_mmoe_num_tasks_must_be_positive();
void ctrec_shape_error_mmoe_top_k_and_topk_are_aliases_set_one();
void ctrec_shape_error_mmoe_top_k_must_be_at_least_1();
void ctrec_shape_error_mmoe_top_k_must_be_at_most_num_experts();
void ctrec_shape_error_mmoe_inputs_must_be_batched_B_by_D_tensors();
void ctrec_error_mmoe_monolith_compat_draws_gate_noise_in_predict_set_acknowledge_compat_overrides();

// One width of a shared list (a distinct type so that {{64}, {32}} reads as per-expert lists).
struct mmoe_width {
    std::size_t v = 0;
    constexpr mmoe_width(std::size_t w) : v(w) {}  // NOLINT: implicit on purpose
};

// expert_output_dims: {d_0, .., d_{L-1}} for every expert, or {{..}, {..}, ..} one list each
// ({{64}, {32}} is two one-layer experts, as the Python [[64], [32]]).
struct mmoe_dims {
    std::size_t d[mmoe_max_experts][mmoe_max_depth]{};
    std::size_t len[mmoe_max_experts]{};
    std::size_t lists = 0;  // 0: not given
    bool per_expert = false;

    constexpr mmoe_dims() = default;
    constexpr mmoe_dims(std::initializer_list<mmoe_width> shared) : lists(1) {
        if (shared.size() > mmoe_max_depth) ctrec_error_mmoe_deeper_experts_than_mmoe_max_depth();
        for (const mmoe_width& w : shared) d[0][len[0]++] = w.v;
    }
    constexpr mmoe_dims(std::initializer_list<std::initializer_list<std::size_t>> each) : per_expert(true) {
        if (each.size() > mmoe_max_experts) ctrec_error_mmoe_more_experts_than_mmoe_max_experts();
        for (const auto& l : each) {
            if (l.size() > mmoe_max_depth) ctrec_error_mmoe_deeper_experts_than_mmoe_max_depth();
            for (std::size_t w : l) d[lists][len[lists]++] = w;
            ++lists;
        }
    }
    constexpr std::size_t depth(std::size_t e) const { return len[per_expert ? e : 0]; }
    constexpr std::size_t width(std::size_t e, std::size_t j) const { return d[per_expert ? e : 0][j]; }
};

// A value shared by every expert (`a`) or one per expert (`{a_0, .., a_{E-1}}`).
template <class V>
struct mmoe_each {
    V v[mmoe_max_experts]{};
    std::size_t n = 0;  // 0: not given
    bool list = false;

    constexpr mmoe_each() = default;
    template <class U>
        requires std::is_convertible_v<U, V>
    constexpr mmoe_each(U shared) : n(1) {  // NOLINT: implicit on purpose
        v[0] = V(shared);
    }
    constexpr mmoe_each(std::initializer_list<V> each) : n(each.size()), list(true) {
        if (each.size() > mmoe_max_experts) ctrec_error_mmoe_more_experts_than_mmoe_max_experts();
        std::size_t i = 0;
        for (const V& x : each) v[i++] = x;
    }
    constexpr V at(std::size_t e) const { return list ? v[e] : v[0]; }
};

struct mmoe_config {
    std::size_t num_tasks = 0;
    mmoe_dims expert_output_dims{};
    mmoe_each<layers::activation> expert_activations{};  // required
    mmoe_each<init::spec> expert_initializers = init::GlorotUniform{};
    mmoe_gate gate_type = mmoe_gate::softmax;
    std::size_t top_k = 0;        // 0: not given (the source's default is 1)
    std::size_t topk = 0;         // the doc's spelling of top_k
    std::size_t num_experts = 0;  // 0: the source's None (counted from the lists)
    regularizer kernel_regularizer{};
    regularizer bias_regularizer{};
    bool use_weight_norm = true;
    bool use_learnable_weight_norm = true;
    bool use_bias = true;
    bool enable_batch_normalization = false;
    double batch_normalization_momentum = 0.99;
    bool batch_normalization_renorm = false;
    double renorm_rmax = std::numeric_limits<double>::infinity();  // renorm_clipping rmax, rmin, dmax
    double renorm_rmin = 0.0;
    double renorm_dmax = std::numeric_limits<double>::infinity();
    double batch_normalization_renorm_momentum = 0.99;
    std::uint64_t seed = 0;
    bool monolith_compat = false;
    bool acknowledge_compat_overrides = false;  // required for monolith_compat + noise_topk in mode::predict
    // execution strategy only (same variables, same numbers up to float summation order)
    bool stack_experts = true;        // one GEMM for every expert's first layer
    bool join_gate = true;            // ... and the gate's columns when x_g is x_e
    bool batch_deeper_layers = false;  // equal-width experts: deeper layers as one batched contraction
};

// What one call builds (vals in the result's graph).
struct mmoe_vals {
    val out;                      // (T, D_out): the task outputs stacked
    val tasks[mmoe_max_tasks]{};  // (D_out) each
    std::size_t num_tasks = 0;
    val cv2;     // (T) unbatched; constant zeros for softmax gates
    bool has_cv2 = false;
    val gates;   // (T, E) the gate values used
    val logits;  // (T, E) the gate logits (noise included)
};

namespace detail {
struct mmoe_shape {
    std::size_t E = 0, T = 0, k = 1, D_out = 0;
};
constexpr mmoe_shape mmoe_check(const mmoe_config& c) {
    mmoe_shape r;
    const mmoe_dims& d = c.expert_output_dims;
    if (c.num_tasks == 0) ctrec_shape_error_mmoe_num_tasks_must_be_positive();
    if (c.num_tasks > ctrec::layers::mmoe_max_tasks) ctrec_error_mmoe_more_tasks_than_mmoe_max_tasks();
    if (c.expert_activations.n == 0) ctrec_shape_error_mmoe_expert_activations_is_required();
    r.T = c.num_tasks;
    r.E = c.num_experts;
    if (r.E == 0) {
        if (d.per_expert) r.E = d.lists;
        else if (c.expert_activations.list) r.E = c.expert_activations.n;
        else if (c.expert_initializers.list) r.E = c.expert_initializers.n;
        else ctrec_shape_error_mmoe_num_experts_not_given_and_no_list_to_count();
    }
    if (r.E > ctrec::layers::mmoe_max_experts) ctrec_error_mmoe_more_experts_than_mmoe_max_experts();
    if (d.lists == 0) ctrec_shape_error_mmoe_expert_output_dims_must_be_given_and_positive();
    if (d.per_expert && d.lists != r.E) report_shape_error(ctrec_shape_error_mmoe_expert_output_dims_lists_must_number_num_experts, d.lists, r.E);
    if (c.expert_activations.list && c.expert_activations.n != r.E)
        report_shape_error(ctrec_shape_error_mmoe_activation_and_initializer_lists_must_number_num_experts, c.expert_activations.n, r.E);
    if (c.expert_initializers.list && c.expert_initializers.n != r.E)
        report_shape_error(ctrec_shape_error_mmoe_activation_and_initializer_lists_must_number_num_experts, c.expert_initializers.n, r.E);
    for (std::size_t e = 0; e < r.E; ++e) {
        if (d.depth(e) == 0) ctrec_shape_error_mmoe_expert_output_dims_must_be_given_and_positive();
        for (std::size_t j = 0; j < d.depth(e); ++j)
            if (d.width(e, j) == 0) ctrec_shape_error_mmoe_expert_output_dims_must_be_given_and_positive();
        if (d.width(e, d.depth(e) - 1) != d.width(0, d.depth(0) - 1))  // got: expert e's last width, want: expert 0's
            report_shape_error(ctrec_shape_error_mmoe_expert_output_dims_must_end_in_equal_widths, d.width(e, d.depth(e) - 1),
                               d.width(0, d.depth(0) - 1));
    }
    r.D_out = d.width(0, d.depth(0) - 1);
    if (c.top_k != 0 && c.topk != 0 && c.top_k != c.topk) ctrec_shape_error_mmoe_top_k_and_topk_are_aliases_set_one();
    r.k = c.top_k != 0 ? c.top_k : c.topk != 0 ? c.topk : 1;
    if (c.gate_type != mmoe_gate::softmax && r.k > r.E) report_shape_error(ctrec_shape_error_mmoe_top_k_must_be_at_most_num_experts, r.k, r.E);
    return r;
}
// Expert e's activation after Dense j (Keras get + MLP: hidden layers only).
constexpr activation mmoe_act(const mmoe_config& c, std::size_t e, std::size_t j) {
    return j + 1 < c.expert_output_dims.depth(e) ? c.expert_activations.at(e) : ctrec::layers::act_none;
}
constexpr dense_config mmoe_dense(const mmoe_config& c, std::size_t e, std::size_t j) {
    dense_config dc{};
    dc.units = c.expert_output_dims.width(e, j);
    dc.activation = ctrec::layers::act_linear;
    dc.use_bias = c.use_bias;
    dc.kernel_initializer = c.expert_initializers.at(e);
    dc.bias_initializer = init::Zeros{};
    dc.kernel_regularizer = c.kernel_regularizer;
    dc.bias_regularizer = c.bias_regularizer;
    dc.allow_kernel_norm = c.use_weight_norm;
    dc.kernel_norm_trainable = c.use_learnable_weight_norm;
    dc.monolith_compat = c.monolith_compat;
    return dc;
}
// An activation applied as layers::mlp applies it (PReLU: "p_re_lu", "p_re_lu_1", .. per expert).
constexpr val mmoe_apply(result& m, const name_string& ex, const activation& A, std::size_t& prelus, val x) {
    if (A.w == act_which::prelu) return apply_activation(m, A, scoped(ex, keras_name("p_re_lu", prelus++).view()), x);
    return apply_activation(m, A, ex, x);
}
// (a) -> (1, a)
constexpr val mmoe_row(val v) {
    dims s = v.shape();
    dims r{};
    r.rank = s.rank + 1;
    r.d[0] = 1;
    for (std::size_t i = 0; i < s.rank; ++i) r.d[i + 1] = s.d[i];
    return reshape(v, r);
}
} // namespace detail

constexpr mmoe_vals mmoe_values(result& m, const name_string& s, const mmoe_config& c, mode M, val x_e, val x_g) {
    const detail::mmoe_shape sh = detail::mmoe_check(c);
    if (!x_e.batched() || x_e.rank() != 1)  // axes with the batch axis: B by D is 2
        report_shape_error(ctrec_shape_error_mmoe_inputs_must_be_batched_B_by_D_tensors, x_e.rank() + x_e.batched(), 2);
    if (!x_g.batched() || x_g.rank() != 1)
        report_shape_error(ctrec_shape_error_mmoe_inputs_must_be_batched_B_by_D_tensors, x_g.rank() + x_g.batched(), 2);
    if (x_e.g != x_g.g) ctrec_shape_error_mmoe_inputs_must_be_batched_B_by_D_tensors();
    const std::size_t E = sh.E, T = sh.T, D = x_e.last(), Dg = x_g.last(), Dout = sh.D_out;
    const mmoe_dims& dd = c.expert_output_dims;
    const bool topk = c.gate_type != mmoe_gate::softmax;
    if (c.gate_type == mmoe_gate::noise_topk && M == mode::predict && c.monolith_compat && !c.acknowledge_compat_overrides)
        ctrec_error_mmoe_monolith_compat_draws_gate_noise_in_predict_set_acknowledge_compat_overrides();
    const bool noise = c.gate_type == mmoe_gate::noise_topk && (M != mode::predict || c.monolith_compat);
    name_string ex[ctrec::layers::mmoe_max_experts]{};
    for (std::size_t e = 0; e < E; ++e) ex[e] = scoped(s, (name_string("expert_") + e).view());

    val O{};  // (E, D_out): the expert outputs stacked, or
    val outs[ctrec::layers::mmoe_max_experts]{};  // each (D_out)
    val logits{}, noise_in{};
    const bool stacked = c.stack_experts && !c.enable_batch_normalization;
    auto gate_vars = [&](val& gw, val& gn) {
        gw = m.var(scoped(s, "gate_weight").view(), dims_of({Dg, E * T}), init::Zeros{});
        if (c.gate_type == mmoe_gate::noise_topk) gn = m.var(scoped(s, "gate_noise").view(), dims_of({Dg, E * T}), init::GlorotNormal{});
    };
    val gw{}, gn{};
    if (!stacked) {
        // the literal per-expert MLPs (layers::mlp's chain, per-expert structure)
        batch_norm_config bn{};
        bn.momentum = c.batch_normalization_momentum;
        bn.renorm = c.batch_normalization_renorm;
        bn.rmax = c.renorm_rmax;
        bn.rmin = c.renorm_rmin;
        bn.dmax = c.renorm_dmax;
        bn.renorm_momentum = c.batch_normalization_renorm_momentum;
        for (std::size_t e = 0; e < E; ++e) {
            val h = x_e;
            if (c.enable_batch_normalization) h = batch_norm(m, scoped(ex[e], "BatchNorm/in"), M, bn, h);
            std::size_t prelus = 0;
            for (std::size_t j = 0; j < dd.depth(e); ++j) {
                h = dense(m, scoped(ex[e], (name_string("dense_") + j).view()), detail::mmoe_dense(c, e, j), h);
                if (c.enable_batch_normalization && j + 1 < dd.depth(e))
                    h = batch_norm(m, scoped(ex[e], detail::keras_name("BatchNorm/out", j).view()), M, bn, h);
                h = detail::mmoe_apply(m, ex[e], detail::mmoe_act(c, e, j), prelus, h);
            }
            outs[e] = h;
        }
        gate_vars(gw, gn);
        logits = matmul(x_g, gw);
        if (noise) noise_in = matmul(x_g, gn);
    } else {
        // every variable first, expert by expert (the MLPs' creation order), then the gates
        val K[ctrec::layers::mmoe_max_experts][ctrec::layers::mmoe_max_depth]{};
        val Bv[ctrec::layers::mmoe_max_experts][ctrec::layers::mmoe_max_depth]{};
        for (std::size_t e = 0; e < E; ++e)
            for (std::size_t j = 0; j < dd.depth(e); ++j) {
                const name_string ls = scoped(ex[e], (name_string("dense_") + j).view());
                const dense_config dc = detail::mmoe_dense(c, e, j);
                K[e][j] = dense_kernel(m, ls, dc, j == 0 ? D : dd.width(e, j - 1));
                if (c.use_bias) {
                    Bv[e][j] = m.var(scoped(ls, "bias").view(), dims_of({dc.units}), init::Zeros{});
                    add_penalty(m, c.bias_regularizer, Bv[e][j]);
                }
            }
        gate_vars(gw, gn);

        // first layer: one GEMM over [W_1 | .. | W_E (| gate_weight (| gate_noise))]
        val parts[ctrec::layers::mmoe_max_experts + 2]{};
        std::size_t np = 0, S1 = 0;
        for (std::size_t e = 0; e < E; ++e) parts[np++] = K[e][0], S1 += dd.width(e, 0);
        // joining costs a copy of the S1 expert columns out of the joined row (the slice) and
        // saves a narrow GEMM that reads x again: worth it while S1 <= 2 D or the row is short
        // (W7, S1 = 2048 with D = 512, runs ~10% faster unjoined; D = 128 with S1 = 256 ~40%
        // faster joined)
        const bool join = c.join_gate && x_g.id == x_e.id && (S1 <= 2 * x_e.dim(x_e.rank() - 1) || S1 < 256);
        if (join) {
            parts[np++] = gw;
            if (noise) parts[np++] = gn;
        }
        const val z = matmul(x_e, np == 1 ? parts[0] : concat(1, parts, np));
        val ze = join ? slice(z, 0, 0, S1) : z;
        logits = join ? slice(z, 0, S1, S1 + E * T) : matmul(x_g, gw);
        if (noise) noise_in = join ? slice(z, 0, S1 + E * T, S1 + 2 * E * T) : matmul(x_g, gn);

        bool same_widths = true, same_acts = true;
        for (std::size_t e = 1; e < E; ++e) {
            same_widths = same_widths && dd.depth(e) == dd.depth(0);
            for (std::size_t j = 0; same_widths && j < dd.depth(0); ++j) same_widths = dd.width(e, j) == dd.width(0, j);
            same_acts = same_acts && detail::mmoe_act(c, e, 0) == detail::mmoe_act(c, 0, 0);
        }
        const activation A0 = detail::mmoe_act(c, 0, 0);
        const bool whole_first = same_acts && A0.w != act_which::prelu;
        std::size_t prelus[ctrec::layers::mmoe_max_experts]{};
        val h[ctrec::layers::mmoe_max_experts]{};  // per-expert values (when not kept stacked)
        val H{};                                   // the stacked first-layer output (S1)
        if (whole_first) {
            if (c.use_bias) {
                val bs[ctrec::layers::mmoe_max_experts]{};
                for (std::size_t e = 0; e < E; ++e) bs[e] = Bv[e][0];
                ze = ze + (E == 1 ? bs[0] : concat(0, bs, E));
            }
            H = apply_activation(m, A0, s, ze);
        } else {
            std::size_t off = 0;
            for (std::size_t e = 0; e < E; ++e) {
                const std::size_t w = dd.width(e, 0);
                h[e] = E == 1 ? ze : slice(ze, 0, off, off + w);
                if (c.use_bias) h[e] = h[e] + Bv[e][0];
                h[e] = detail::mmoe_apply(m, ex[e], detail::mmoe_act(c, e, 0), prelus[e], h[e]);
                off += w;
            }
        }
        // deeper layers batched over the expert axis when every expert has the same widths and
        // the same activations (parameter-free)
        bool batch = c.batch_deeper_layers && same_widths;
        for (std::size_t e = 0; batch && e < E; ++e)
            for (std::size_t j = 1; batch && j < dd.depth(0); ++j) {
                const activation A = detail::mmoe_act(c, e, j);
                batch = A == detail::mmoe_act(c, 0, j) && A.w != act_which::prelu;
            }
        if (batch && whole_first) {  // (with equal widths and activations the first ones agree too)
            val X = reshape(H, dims_of({E, dd.width(0, 0)}));
            for (std::size_t j = 1; j < dd.depth(0); ++j) {
                const std::size_t din = dd.width(0, j - 1), dout = dd.width(0, j);
                val ws[ctrec::layers::mmoe_max_experts]{}, bs[ctrec::layers::mmoe_max_experts]{};
                for (std::size_t e = 0; e < E; ++e) {
                    ws[e] = reshape(K[e][j], dims_of({1, din, dout}));
                    if (c.use_bias) bs[e] = detail::mmoe_row(Bv[e][j]);
                }
                X = einsum("ei,eio->eo", X, E == 1 ? ws[0] : concat(0, ws, E));
                if (c.use_bias) X = X + (E == 1 ? bs[0] : concat(0, bs, E));
                X = apply_activation(m, detail::mmoe_act(c, 0, j), s, X);
            }
            O = X;
        } else {
            std::size_t off = 0;
            for (std::size_t e = 0; e < E; ++e) {
                const std::size_t w = dd.width(e, 0);
                val x = whole_first ? (E == 1 ? H : slice(H, 0, off, off + w)) : h[e];
                off += w;
                for (std::size_t j = 1; j < dd.depth(e); ++j) {
                    x = matmul(x, K[e][j]);
                    if (c.use_bias) x = x + Bv[e][j];
                    x = detail::mmoe_apply(m, ex[e], detail::mmoe_act(c, e, j), prelus[e], x);
                }
                outs[e] = x;
            }
        }
    }

    // gates
    if (noise) {
        const val eps = make_random(m.g, (scoped(s, "noise_") + c.seed).view(), dims_of({E * T}), random_kind::normal, false);
        logits = logits + eps * apply_activation(m, ctrec::layers::act_softplus, s, noise_in);
    }
    mmoe_vals r;
    r.logits = reshape(logits, dims_of({T, E}));
    val g = softmax(r.logits, 1);
    if (topk) {
        // m_{t,e} = 1[#{j : g_j > g_e} < k], from the stopped gates: a constant of the derivative
        const val sg = stop_gradient(g);
        const val above = sum(greater(reshape(sg, dims_of({T, 1, E})), reshape(sg, dims_of({T, E, 1}))), {2});
        const val mask = stop_gradient(greater(static_cast<double>(sh.k) - above, 0.5));
        const val gm = g * mask;
        g = gm / reshape(sum(gm, {1}), dims_of({T, 1}));
        const val I = batch_sum(g);  // (T, E)
        const val mu = sum(I, {1}) * (1.0 / static_cast<double>(E));
        const val dev = I - reshape(mu, dims_of({T, 1}));
        r.cv2 = sum(dev * dev, {1}) * (1.0 / static_cast<double>(E)) / (mu * mu);
        r.has_cv2 = true;
    } else {
        r.cv2 = constant(m.g, 0.0, dims_of({T}));
    }
    r.gates = g;
    // y_t = sum_e g_{t,e} o_e as E multiply-adds over (T, D_out): one fused loop
    for (std::size_t e = 0; e < E; ++e) {
        const val oe = O.g ? slice(O, 0, e, e + 1) : detail::mmoe_row(outs[e]);
        const val term = (E == 1 ? g : slice(g, 1, e, e + 1)) * oe;
        r.out = e == 0 ? term : r.out + term;
    }
    r.num_tasks = T;
    for (std::size_t t = 0; t < T; ++t) r.tasks[t] = T == 1 ? reshape(r.out, dims_of({Dout})) : reshape(slice(r.out, 0, t, t + 1), dims_of({Dout}));
    return r;
}
constexpr mmoe_vals mmoe_values(result& m, const name_string& s, const mmoe_config& c, mode M, val x) {
    return mmoe_values(m, s, c, M, x, x);
}

// The facade's result: out() is the stacked (T, D_out) outputs; task(t), cv2(), gates(),
// logits() as documented above.
struct mmoe_result : result {
    std::uint32_t task_ids[mmoe_max_tasks]{};
    std::size_t num_tasks = 0;
    std::uint32_t cv2_id = none, gates_id = none, logits_id = none;
    bool cv2_active = false;
    constexpr mmoe_result(const result& r) : result(r) {}  // NOLINT: implicit on purpose
    constexpr mmoe_result(const expr& e) : result(e) {}    // NOLINT
    constexpr expr task(std::size_t t) const { return {g, task_ids[t]}; }
    constexpr expr cv2() const { return {g, cv2_id}; }
    constexpr bool has_cv2() const { return cv2_active; }
    constexpr expr gates() const { return {g, gates_id}; }
    constexpr expr logits() const { return {g, logits_id}; }
    constexpr void set(const mmoe_vals& v) {
        set_out(v.out);
        num_tasks = v.num_tasks;
        for (std::size_t t = 0; t < v.num_tasks; ++t) task_ids[t] = v.tasks[t].id;
        cv2_id = v.cv2.id;
        cv2_active = v.has_cv2;
        gates_id = v.gates.id;
        logits_id = v.logits.id;
    }
};

template <fixed_string Scope, mmoe_config C, mode M>
constexpr mmoe_result mmoe(const result& in) {
    mmoe_result m(in);
    m.set(mmoe_values(m, Scope.view(), C, M, m.value()));
    return m;
}
template <fixed_string Scope, mmoe_config C, mode M>
constexpr mmoe_result mmoe(const expr& x_e, const expr& x_g) {
    mmoe_result m(x_e);
    std::uint32_t ig = 0;
    join_into(m.g, x_g, ig);
    m.set(mmoe_values(m, Scope.view(), C, M, m.value(), m.at(ig)));
    return m;
}

} // namespace ctrec::layers
