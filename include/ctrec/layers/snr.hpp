#pragma once
// SNR, Sub-Network Routing (spec layers-trans-seq-multitask-nas.md 3.2): n_in input sub-networks
// routed to n_out output sub-networks through blocks W_ij scaled by hard-concrete gates z_ij.
//
//   constexpr auto r = layers::snr<"snr", {.num_out_subnet = 3, .out_subnet_dim = 16}>({x0, x1});
//   r.output(j)   y_j, (D_out) per example          r.out()     the n_out outputs stacked, (n_out, D_out)
//   r.l0_loss()   the L0 penalty (unbatched scalar)  r.penalty() the regularizer on weight
//   r.gates()     z, (R) unbatched (one value per route, shared by the batch)
// then() keeps out/penalty/updates/inits only: collect l0_loss from this result (as iRazor's
// nas_loss). Add it to the objective yourself (weight 1.0 in Monolith, spec 0.4).
//
// Inputs: a list of n_in >= 1 values (D_in) per example (the source's list of [B, D_in]; the
// facade takes {x0, x1, ...}, the in-place function an array of vals), or, a ctrec extension,
// one (n_in, D_in) value per example whose rows are the list. R = n_in n_out; route
// r = i n_out + j connects input i to output j.
//
// Variables: "<scope>/log_alpha" (R, 1), zeros; trans: "<scope>/weight" (R, D_in D_out) with
// `initializer` (Glorot fans R and D_in D_out) and `regularizer`. aver has no weight variable
// (the source's identity blocks are a constant).
//
// Gate, per call, one value per route shared by every example:
//   train / eval:  s = sigmoid((L + log_alpha) / beta),  L = ln u - ln(1 - u) logistic noise
//   predict:       s = sigmoid(log_alpha)                 (deterministic, no beta)
//   sbar = s (zeta - gamma) + gamma,  z = min(1, max(0, sbar))
// dz/dsbar: use_ste -> 1 everywhere (the forward value is still clamped); otherwise
// 1[0 <= sbar < 1] (TF's max/min ties: at 0 the gradient passes, at 1 it does not). Both are
// built explicitly (where / straight-through), not left to the graph's max/min tie rules.
//   trans: y_j = sum_i x_i . (z_r W_r),  W_r = reshape(weight[r], (D_in, D_out))
//   aver:  y_j = sum_i z_r x_i  (identity blocks exploited: a z-weighted SUM, not a mean)
//   L0 = sum_r sigmoid(log_alpha_r - beta ln(-gamma / zeta))   (exists in aver too)
//
// Cost (spec 3.2.9): the block matrix [n_in D_in, n_out D_out] is assembled from weight's rows
// once per parameter change (a derived parameter), scaled by z once per call (z reads an
// unbatched random leaf, so the scaled matrix is an unbatched per-call value, never per
// example), and the layer is one GEMM of the concatenated inputs with it.
//
// Decisions:
// - Noise: a random leaf (core/random.hpp) of kind logistic, shared by the batch, on stream
//   "<scope>/gate_noise_<seed>": a pure function of (io.seed, stream, route). Spec 0.3's
//   open-interval uniform, so L is always finite (TF's u = 0 case cannot happen). `seed`
//   (default 0) selects another stream; the scope in the stream name already separates
//   layers. The in-place function takes injected noise instead (spec 0.3.3): an unbatched
//   (R) value holding L itself (not u). Predict ignores the noise.
// - mode: layers::mode, default train as the source. eval samples like train (spec 7 #13).
// - zeta, gamma, beta are validated: gamma < 0 < zeta (L0 takes ln(-gamma / zeta)) and
//   beta > 0. The source checks nothing.
// - snr_type is an enum; snr_type_from maps the source's strings "trans" / "aver".
#include <initializer_list>

#include "ctrec/layers/layer.hpp"
#include "ctrec/layers/merge_list.hpp"  // longest_expr

namespace ctrec::layers {

enum class snr_type { trans, aver };

constexpr snr_type snr_type_from(std::string_view s) {
    if (s == "trans") return snr_type::trans;
    if (s == "aver") return snr_type::aver;
    throw error("ctrec::layers::snr: snr_type must be \"trans\" or \"aver\"");
}

inline constexpr std::size_t snr_max_subnets = 64;  // n_in and n_out each

struct snr_config {
    std::size_t num_out_subnet = 0;  // n_out
    std::size_t out_subnet_dim = 0;  // D_out
    layers::snr_type snr_type = layers::snr_type::trans;
    double zeta = 1.1;
    double gamma = -0.1;
    double beta = 0.5;
    bool use_ste = false;
    init::spec initializer = init::GlorotUniform{};  // weight (trans)
    layers::regularizer regularizer{};               // weight (trans)
    std::uint64_t seed = 0;                          // noise stream "<scope>/gate_noise_<seed>"
};

void ctrec_shape_error_snr_num_out_subnet_and_out_subnet_dim_must_be_positive();
void ctrec_shape_error_snr_needs_1_to_64_inputs_and_at_most_64_outputs();
void ctrec_shape_error_snr_inputs_must_be_batched_B_by_D_in_tensors_of_one_width();
void ctrec_shape_error_snr_aver_needs_the_input_width_equal_to_out_subnet_dim();
void ctrec_shape_error_snr_needs_gamma_below_0_below_zeta_and_beta_above_0();
void ctrec_shape_error_snr_noise_must_be_an_unbatched_vector_of_R_logistic_values();

struct snr_vals {
    val out[snr_max_subnets]{};  // y_j, (D_out) per example
    std::size_t n = 0;           // n_out
    val stacked{};               // (n_out, D_out): row j is y_j
    val l0_loss{};               // unbatched scalar
    val gates{};                 // z, (R) unbatched
};

namespace detail {
constexpr val snr_cat(std::size_t axis, const val* parts, std::size_t n) { return n == 1 ? parts[0] : concat(axis, parts, n); }

// z (R) per call, with the gradient of the header comment
constexpr val snr_gates(result& m, const name_string& s, const snr_config& c, mode M, val la, val noise) {
    const std::size_t R = la.dim(0);
    val sv{};
    if (M == mode::predict) {
        sv = sigmoid(la);
    } else {
        val L = noise;
        if (!L.g) L = make_random(m.g, (scoped(s, "gate_noise_") + static_cast<std::size_t>(c.seed)).view(), dims_of({R}),
                                  random_kind::logistic, /*shared=*/true);
        else if (L.batched() || L.rank() != 1 || L.dim(0) != R)
            ctrec_shape_error_snr_noise_must_be_an_unbatched_vector_of_R_logistic_values();
        sv = sigmoid((L + la) / c.beta);
    }
    const val sbar = sv * (c.zeta - c.gamma) + c.gamma;
    const val hard = stop_gradient(minimum(maximum(sbar, 0.0), 1.0));
    if (c.use_ste) return hard + (sbar - stop_gradient(sbar));  // exactly hard forward, d/dsbar = 1
    const val inside = greater_equal(sbar, 0.0) * greater(constant(m.g, 1.0), sbar);
    return where(inside, sbar, hard);
}
} // namespace detail

namespace detail {
// xcat: the inputs concatenated, (n_in D_in) (a reshape when they came stacked), or none
constexpr snr_vals snr_impl(result& m, const name_string& s, const snr_config& c, mode M, const val* xs, std::size_t n_in,
                            val xcat, val noise) {
    const std::size_t n_out = c.num_out_subnet, Do = c.out_subnet_dim;
    if (n_out == 0 || Do == 0) ctrec_shape_error_snr_num_out_subnet_and_out_subnet_dim_must_be_positive();
    if (n_in == 0 || n_in > ctrec::layers::snr_max_subnets || n_out > ctrec::layers::snr_max_subnets)
        ctrec_shape_error_snr_needs_1_to_64_inputs_and_at_most_64_outputs();
    const std::size_t Di = xs[0].rank() == 1 ? xs[0].dim(0) : 0;
    for (std::size_t i = 0; i < n_in; ++i)
        if (!xs[i].batched() || xs[i].rank() != 1 || xs[i].dim(0) != Di)
            ctrec_shape_error_snr_inputs_must_be_batched_B_by_D_in_tensors_of_one_width();
    if (c.snr_type == snr_type::aver && Di != Do) ctrec_shape_error_snr_aver_needs_the_input_width_equal_to_out_subnet_dim();
    if (!(c.gamma < 0.0 && c.zeta > 0.0 && c.beta > 0.0)) ctrec_shape_error_snr_needs_gamma_below_0_below_zeta_and_beta_above_0();
    const std::size_t R = n_in * n_out;

    snr_vals v{};
    v.n = n_out;
    const val la = reshape(m.var(scoped(s, "log_alpha").view(), dims_of({R, 1}), init::Zeros{}), dims_of({R}));
    v.gates = detail::snr_gates(m, s, c, M, la, noise);
    if (c.snr_type == snr_type::trans) {
        const val w = m.var(scoped(s, "weight").view(), dims_of({R, Di * Do}), c.initializer);
        add_penalty(m, c.regularizer, w);
        // block (i, j) of the [n_in D_in, n_out D_out] matrix is weight row r reshaped (D_in, D_out)
        val rows[ctrec::layers::snr_max_subnets]{}, blocks[ctrec::layers::snr_max_subnets]{};
        for (std::size_t i = 0; i < n_in; ++i) {
            for (std::size_t j = 0; j < n_out; ++j)
                blocks[j] = reshape(slice(w, 0, i * n_out + j, i * n_out + j + 1), dims_of({Di, Do}));
            rows[i] = detail::snr_cat(1, blocks, n_out);
        }
        const val block = reshape(detail::snr_cat(0, rows, n_in), dims_of({n_in, Di, n_out, Do}));
        const val scaled = reshape(block * reshape(v.gates, dims_of({n_in, 1, n_out, 1})), dims_of({n_in * Di, n_out * Do}));
        const val y = matmul(xcat.g ? xcat : detail::snr_cat(0, xs, n_in), scaled);
        for (std::size_t j = 0; j < n_out; ++j) v.out[j] = n_out == 1 ? y : slice(y, 0, j * Do, (j + 1) * Do);
        v.stacked = reshape(y, dims_of({n_out, Do}));
    } else {
        val rows[ctrec::layers::snr_max_subnets]{};
        for (std::size_t j = 0; j < n_out; ++j) {
            val y = xs[0] * slice(v.gates, 0, j, j + 1);
            for (std::size_t i = 1; i < n_in; ++i) y = y + xs[i] * slice(v.gates, 0, i * n_out + j, i * n_out + j + 1);
            v.out[j] = y;
            rows[j] = reshape(y, dims_of({1, Do}));
        }
        v.stacked = detail::snr_cat(0, rows, n_out);
    }
    v.l0_loss = sum(sigmoid(la - c.beta * __builtin_log(-c.gamma / c.zeta)));
    return v;
}
} // namespace detail

// xs: n_in values (D_in) per example.
constexpr snr_vals snr(result& m, const name_string& s, const snr_config& c, mode M, const val* xs, std::size_t n_in,
                       val noise = {}) {
    return detail::snr_impl(m, s, c, M, xs, n_in, {}, noise);
}

// x: (n_in, D_in) per example, its rows the list.
constexpr snr_vals snr(result& m, const name_string& s, const snr_config& c, mode M, val x, val noise = {}) {
    if (!x.batched() || x.rank() != 2) ctrec_shape_error_snr_inputs_must_be_batched_B_by_D_in_tensors_of_one_width();
    const std::size_t n_in = x.dim(0), Di = x.dim(1);
    if (n_in > ctrec::layers::snr_max_subnets) ctrec_shape_error_snr_needs_1_to_64_inputs_and_at_most_64_outputs();
    val xs[ctrec::layers::snr_max_subnets]{};
    for (std::size_t i = 0; i < n_in; ++i) xs[i] = reshape(slice(x, 0, i, i + 1), dims_of({Di}));
    return detail::snr_impl(m, s, c, M, xs, n_in, reshape(x, dims_of({n_in * Di})), noise);
}

// The facade's result: out() is the stacked (n_out, D_out) output; output(j), l0_loss() and
// gates() as described above.
struct snr_result : result {
    std::uint32_t n_out = 0;
    std::uint32_t out_ids[snr_max_subnets]{};
    std::uint32_t l0_id = 0, gates_id = 0;
    constexpr snr_result(const result& r) : result(r) {}
    constexpr snr_result(const expr& e) : result(e) {}
    constexpr expr output(std::size_t j) const { return {g, out_ids[j]}; }
    constexpr expr l0_loss() const { return {g, l0_id}; }
    constexpr expr gates() const { return {g, gates_id}; }
    constexpr void set(const snr_vals& v) {
        set_out(v.stacked);
        n_out = static_cast<std::uint32_t>(v.n);
        for (std::size_t j = 0; j < v.n; ++j) out_ids[j] = v.out[j].id;
        l0_id = v.l0_loss.id;
        gates_id = v.gates.id;
    }
};

template <fixed_string Scope, snr_config C, mode M = mode::train>
constexpr snr_result snr(std::initializer_list<expr> inputs) {
    snr_result m(longest_expr(inputs));
    val xs[ctrec::layers::snr_max_subnets]{};
    if (inputs.size() > ctrec::layers::snr_max_subnets) ctrec_shape_error_snr_needs_1_to_64_inputs_and_at_most_64_outputs();
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        std::uint32_t id = 0;
        join_into(m.g, inputs.begin()[i], id);
        xs[i] = m.at(id);
    }
    m.set(snr(m, Scope.view(), C, M, xs, inputs.size()));
    return m;
}
// One (n_in, D_in) value per example (a result continues with its declarations).
template <fixed_string Scope, snr_config C, mode M = mode::train>
constexpr snr_result snr(const result& in) {
    snr_result m(in);
    m.set(snr(m, Scope.view(), C, M, m.value()));
    return m;
}

} // namespace ctrec::layers
