// DCN (vector / matrix / mixed, kernel norm, the source's gating) and DIN (sum / weighted, mask,
// decay, shared keys), against naive float64 references written from
// the spec (layers-core-and-cross.md 8; layers-trans-seq-multitask-nas.md 2.2); float64 central
// differences and JVP/VJP duality; variable names and creation order.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "layer_reference.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using ctrec::make_dims;
using cl::mode;
using flat_ref::get;
using flat_ref::vec;
using test::leaves;
using test::check_forward;

namespace {

constexpr std::size_t D = 5, NR = 3, E = 3, R = 2;

// ---- DCN reference ------------------------------------------------------------------------------
// variable P (a, c) as used: raw or t * P / sqrt(max(|P_col|^2, 1e-6))
vec var(leaves& L, const std::string& name, std::size_t a, std::size_t c, bool kn) {
    vec p = get(L, name);
    if (!kn) return p;
    const vec& t = get(L, name + "/trainable_norm");
    for (std::size_t j = 0; j < c; ++j) {
        double s = 0;
        for (std::size_t i = 0; i < a; ++i) s += p[i * c + j] * p[i * c + j];
        for (std::size_t i = 0; i < a; ++i) p[i * c + j] = p[i * c + j] / std::sqrt(std::max(s, 1e-6)) * t[j];
    }
    return p;
}
// one example's rows (rows x D) through L cross layers
// keep > 0: inverted dropout after every layer, u from stream "dcn/dropout_<i>" of example b
vec dcn_rows(leaves& L, const vec& x0, std::size_t rows, cl::dcn_type type, std::size_t layers, bool kn, bool compat,
             double keep, std::uint64_t seed, std::size_t example) {
    vec x = x0;
    for (std::size_t i = 0; i < layers; ++i) {
        const std::string I = std::to_string(i);
        const vec b = var(L, "dcn/bias_" + I, 1, D, kn);
        vec nx(x.size());
        for (std::size_t n = 0; n < rows; ++n) {
            const double* xr = &x[n * D];
            const double* x0r = &x0[n * D];
            if (type == cl::dcn_type::vector) {
                const vec w = var(L, "dcn/kernel_" + I, D, 1, kn);
                double s = 0;
                for (std::size_t d = 0; d < D; ++d) s += xr[d] * w[d];
                for (std::size_t d = 0; d < D; ++d) nx[n * D + d] = x0r[d] * s + b[d] + xr[d];
            } else if (type == cl::dcn_type::matrix) {
                const vec w = var(L, "dcn/kernel_" + I, D, D, kn);
                for (std::size_t d = 0; d < D; ++d) {
                    double s = b[d];
                    for (std::size_t k = 0; k < D; ++k) s += xr[k] * w[k * D + d];
                    nx[n * D + d] = x0r[d] * s + xr[d];
                }
            } else {
                vec u(E * D, 0.0), g(E, 0.0);
                for (std::size_t j = 0; j < E; ++j) {
                    const std::string J = I + "_" + std::to_string(j);
                    const vec V = var(L, "dcn/V_" + J, D, R, kn), C = var(L, "dcn/C_" + J, R, R, kn);
                    const vec U = var(L, "dcn/U_" + J, D, R, kn), G = var(L, "dcn/G_" + J, D, 1, kn);
                    vec v(R, 0.0), c(R, 0.0);
                    for (std::size_t a = 0; a < R; ++a) {
                        for (std::size_t k = 0; k < D; ++k) v[a] += xr[k] * V[k * R + a];
                        v[a] = std::tanh(v[a]);
                    }
                    for (std::size_t a = 0; a < R; ++a) {
                        for (std::size_t q = 0; q < R; ++q) c[a] += v[q] * C[q * R + a];
                        c[a] = std::tanh(c[a]);
                    }
                    for (std::size_t d = 0; d < D; ++d)
                        for (std::size_t a = 0; a < R; ++a) u[j * D + d] += c[a] * U[d * R + a];
                    for (std::size_t k = 0; k < D; ++k) g[j] += xr[k] * G[k];
                }
                vec w(E, 1.0);
                if (!compat) {
                    double mx = g[0], s = 0;
                    for (double v : g) mx = std::max(mx, v);
                    for (std::size_t j = 0; j < E; ++j) s += w[j] = std::exp(g[j] - mx);
                    for (double& v : w) v /= s;
                }
                for (std::size_t d = 0; d < D; ++d) {
                    double s = 0;  // sum_j w_j x0 (u_j + b)
                    for (std::size_t j = 0; j < E; ++j) s += w[j] * x0r[d] * (u[j * D + d] + b[d]);
                    nx[n * D + d] = s + xr[d];
                }
            }
        }
        if (keep > 0)
            for (std::size_t e = 0; e < nx.size(); ++e) {
                const double u = ctrec::random_uniform_value<double>(seed, f::stream_hash("dcn/dropout_" + I), example, e);
                nx[e] = u >= 1 - keep ? nx[e] / keep : 0.0;
            }
        x = nx;
    }
    return x;
}
vec dcn_reference(leaves& L, std::size_t batch, std::size_t rows, cl::dcn_type type, std::size_t layers, bool kn, bool compat,
                  double keep = 0, std::uint64_t seed = 0) {
    const vec& x = get(L, "x");
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        const vec r = dcn_rows(L, vec(x.begin() + b * rows * D, x.begin() + (b + 1) * rows * D), rows, type, layers, kn, compat,
                               keep, seed, b);
        out.insert(out.end(), r.begin(), r.end());
    }
    return out;
}

constexpr auto x_rows = f::input<"x", NR, D>;
constexpr auto x_vec = f::input<"x", D>;
constexpr auto x_r3 = f::input<"x", 2, 2, D>;
constexpr auto dcn_vec = fl::dcn<"dcn", {.type = fl::dcn_type::vector, .layer_num = 2, .allow_kernel_norm = true}>(x_vec).out();
constexpr auto dcn_mat = fl::dcn<"dcn", {.type = fl::dcn_type::matrix, .layer_num = 3}, mode::predict>(x_rows).out();
constexpr auto dcn_mat3 = fl::dcn<"dcn", {.type = fl::dcn_type::matrix, .layer_num = 2, .allow_kernel_norm = true}>(x_r3).out();
constexpr cl::dcn_config mixed_cfg{.type = fl::dcn_type::mixed, .layer_num = 2, .regularizer = cl::regularizer(0.0, 0.1), .num_experts = E, .low_rank = R};
constexpr auto dcn_mixed_r = fl::dcn<"dcn", mixed_cfg>(x_rows);
constexpr auto dcn_mixed = dcn_mixed_r.out();
constexpr auto dcn_mixed_loss = f::batch_mean(f::sum(f::tanh(dcn_mixed))) + dcn_mixed_r.penalty();
constexpr auto dcn_mixed_kn = fl::dcn<"dcn", {.type = fl::dcn_type::mixed, .layer_num = 2, .num_experts = E, .low_rank = R, .allow_kernel_norm = true}>(x_rows).out();
constexpr auto dcn_drop = fl::dcn<"dcn", {.type = fl::dcn_type::matrix, .layer_num = 2, .use_dropout = true, .keep_prob = 0.7}, mode::train>(x_rows).out();
constexpr auto dcn_drop_eval = fl::dcn<"dcn", {.type = fl::dcn_type::matrix, .layer_num = 2, .use_dropout = true, .keep_prob = 0.7}, mode::eval>(x_rows).out();
constexpr auto dcn_mixed_compat = fl::dcn<"dcn", {.type = fl::dcn_type::mixed, .layer_num = 1, .num_experts = E, .low_rank = R, .monolith_compat = true}>(x_vec).out();

// ---- DIN reference --------------------------------------------------------------------------------
constexpr std::size_t H = 4, T = 5;
// per example: scores through the compress tower (weight norm, trainable), hidden act, last linear
vec din_reference(leaves& L, std::size_t batch, const std::vector<std::size_t>& units, int act, bool weighted, bool decay,
                  bool masked, bool shared_k) {
    const vec& q = get(L, "q");
    const vec& k = get(L, "k");
    vec out;
    for (std::size_t b = 0; b < batch; ++b) {
        const double* qb = &q[b * H];
        const double* kb = &k[shared_k ? 0 : b * T * H];
        vec s(T);
        for (std::size_t t = 0; t < T; ++t) {
            vec z(4 * H);
            for (std::size_t h = 0; h < H; ++h) {
                const double kv = kb[t * H + h];
                z[h] = qb[h], z[H + h] = kv, z[2 * H + h] = qb[h] - kv, z[3 * H + h] = qb[h] * kv;
            }
            std::size_t in = 4 * H;
            for (std::size_t i = 0; i < units.size(); ++i) {
                z = flat_ref::dense(L, z, 1, in, units[i], "din/compress_tower/dense_" + std::to_string(i), flat_ref::norm::trainable);
                if (i + 1 < units.size())
                    for (double& v : z) v = act == 0 ? v : act == 1 ? flat_ref::relu(v) : std::tanh(v);
                in = units[i];
            }
            s[t] = z[0] / (decay ? std::sqrt(double(H)) : 1.0);
            if (masked && !(get(L, "mask")[b * T + t] >= 1)) s[t] = 0;
        }
        if (weighted) {
            for (std::size_t t = 0; t < T; ++t)
                for (std::size_t h = 0; h < H; ++h) out.push_back(s[t] * kb[t * H + h]);
        } else {
            for (std::size_t h = 0; h < H; ++h) {
                double a = 0;
                for (std::size_t t = 0; t < T; ++t) a += s[t] * kb[t * H + h];
                out.push_back(a);
            }
        }
    }
    return out;
}

constexpr auto q_in = f::input<"q", H>;
constexpr auto k_in = f::input<"k", T, H>;
constexpr auto mask_in = f::input<"mask", T>;
constexpr auto din_sum = fl::din<"din", cl::din_config<3>{.hidden_units = {6, 4, 1}, .activation = cl::act_relu}>(q_in, k_in).out();
constexpr auto din_tanh = fl::din<"din", cl::din_config<2>{.hidden_units = {3, 1}, .activation = cl::act_tanh}>(q_in, k_in).out();
constexpr auto din_masked =
    fl::din<"din", cl::din_config<2>{.hidden_units = {4, 1}, .activation = cl::act_tanh, .mode = cl::din_mode::weighted, .decay = true}>(q_in, k_in, mask_in).out();
constexpr auto din_shared =
    fl::din<"din", cl::din_config<2>{.hidden_units = {3, 1}, .activation = cl::act_tanh}>(q_in, f::shared_input<"k", T, H>).out();

// masks in {0, 0.5, 1, 2}: steps count when mask >= 1
void din_mask(leaves& L, std::size_t batch) {
    vec m(batch * T);
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = (i * 7 % 4) * 0.5 + (i % 3 == 0 ? 1.0 : 0.0);
    L["mask"] = m;
}

const auto no_prep = [](leaves&, std::size_t) {};

} // namespace

TEST_CASE("DCN: vector, matrix (rank 2 and 3), mixed (documented and source gating), kernel norm") {
    using cl::dcn_type;
    for (std::size_t batch : {1, 5, 70}) {
        check_forward<f::program<double, dcn_vec>>(batch, 1e-12, [](leaves& L, std::size_t b) { return dcn_reference(L, b, 1, dcn_type::vector, 2, true, false); }, no_prep);
        check_forward<f::program<double, dcn_mat>>(batch, 1e-12, [](leaves& L, std::size_t b) { return dcn_reference(L, b, NR, dcn_type::matrix, 3, false, false); }, no_prep);
        check_forward<f::program<double, dcn_mat3>>(batch, 1e-12, [](leaves& L, std::size_t b) { return dcn_reference(L, b, 4, dcn_type::matrix, 2, true, false); }, no_prep);
        check_forward<f::program<double, dcn_mixed>>(batch, 1e-12, [](leaves& L, std::size_t b) { return dcn_reference(L, b, NR, dcn_type::mixed, 2, false, false); }, no_prep);
        check_forward<f::program<double, dcn_mixed_kn>>(batch, 1e-12, [](leaves& L, std::size_t b) { return dcn_reference(L, b, NR, dcn_type::mixed, 2, true, false); }, no_prep);
        check_forward<f::program<double, dcn_mixed_compat>>(batch, 1e-12, [](leaves& L, std::size_t b) { return dcn_reference(L, b, 1, dcn_type::mixed, 1, false, true); }, no_prep);
        check_forward<f::program<float, dcn_mixed_kn>>(batch, 2e-5, [](leaves& L, std::size_t b) { return dcn_reference(L, b, NR, dcn_type::mixed, 2, true, false); }, no_prep);
    }
    // the source's creation order: every U, V, C, G (i-major, j-minor), then the biases; the L2
    // regularizer on every U / V / C / G, never on a bias
    CHECK(dcn_mixed_r.n_inits == 4 * 2 * E + 2);
    CHECK(dcn_mixed_r.g.name_of(dcn_mixed_r.inits[0].var) == "dcn/U_0_0");
    CHECK(dcn_mixed_r.g.name_of(dcn_mixed_r.inits[1].var) == "dcn/U_0_1");
    CHECK(dcn_mixed_r.g.name_of(dcn_mixed_r.inits[E].var) == "dcn/U_1_0");
    CHECK(dcn_mixed_r.g.name_of(dcn_mixed_r.inits[2 * E].var) == "dcn/V_0_0");
    CHECK(dcn_mixed_r.g.name_of(dcn_mixed_r.inits[8 * E].var) == "dcn/bias_0");
    leaves L;
    const double got = test::run<f::program<double, dcn_mixed_loss>>(L, 3)[0][0];
    double want = 0;
    for (double v : dcn_reference(L, 3, NR, cl::dcn_type::mixed, 2, false, false)) want += std::tanh(v) / 3;
    for (const char* p : {"U_", "V_", "C_", "G_"})
        for (std::size_t i = 0; i < 2; ++i)
            for (std::size_t j = 0; j < E; ++j)
                for (double w : get(L, std::string("dcn/") + p + std::to_string(i) + "_" + std::to_string(j))) want += 0.1 * w * w;
    CHECK(got == doctest::Approx(want).epsilon(1e-12));
}

TEST_CASE("DCN: dropout in train mode (seeded streams, same mask forward and backward), none in eval") {
    using cl::dcn_type;
    for (std::size_t batch : {1, 5, 70}) {
        check_forward<f::program<double, dcn_drop>>(batch, 1e-12, [](leaves& L, std::size_t b) { return dcn_reference(L, b, NR, dcn_type::matrix, 2, false, false, 0.7); }, no_prep);
        check_forward<f::program<double, dcn_drop_eval>>(batch, 1e-12, [](leaves& L, std::size_t b) { return dcn_reference(L, b, NR, dcn_type::matrix, 2, false, false); }, no_prep);
    }
    // another seed, another mask; about 1 - keep_prob of the last layer's values dropped
    using P = f::program<float, dcn_drop>;
    P::parameters p;
    for (std::size_t k = 0; k < P::n_params; ++k)
        for (float& w : p.get(k)) w = 0.1f;
    P::workspace ws;
    const std::size_t batch = 200;
    std::vector<float> xs(batch * NR * D, 1.0f), y1(xs.size()), y2(xs.size());
    P::io io;
    io.input<"x">(xs.data()).output<0>(y1.data());
    io.seed = 1;
    P::run(p, ws, batch, io);
    io.output<0>(y2.data());
    io.seed = 2;
    P::run(p, ws, batch, io);
    std::size_t zeros = 0, differ = 0;
    for (std::size_t e = 0; e < xs.size(); ++e) zeros += y1[e] == 0.f, differ += y1[e] != y2[e];
    CHECK(std::abs(double(zeros) / xs.size() - 0.3) < 0.03);
    CHECK(differ > xs.size() / 4);
    test::check_derivatives<f::grad_program<double, dcn_drop>, f::jvp_program<double, dcn_drop>>(2);
}

TEST_CASE("DCN: derivatives (float64 central differences, JVP / VJP duality)") {
    SUBCASE("vector with kernel norm") { test::check_derivatives<f::grad_program<double, dcn_vec>, f::jvp_program<double, dcn_vec>>(3); }
    SUBCASE("matrix, rank 3, kernel norm") { test::check_derivatives<f::grad_program<double, dcn_mat3>, f::jvp_program<double, dcn_mat3>>(2); }
    SUBCASE("mixed with its penalty") {
        test::check_derivatives<f::grad_program<double, dcn_mixed_loss>, f::jvp_program<double, dcn_mixed_loss>>(3);
    }
    SUBCASE("mixed, two layers, kernel norm") {
        test::check_derivatives<f::grad_program<double, dcn_mixed_kn>, f::jvp_program<double, dcn_mixed_kn>>(2);
    }
}

TEST_CASE("DIN: sum, weighted with mask and decay, shared keys, against the literal reference; derivatives") {
    for (std::size_t batch : {1, 5, 70}) {
        check_forward<f::program<double, din_sum>>(batch, 1e-12, [](leaves& L, std::size_t b) { return din_reference(L, b, {6, 4, 1}, 1, false, false, false, false); }, no_prep);
        check_forward<f::program<double, din_masked>>(batch, 1e-12, [](leaves& L, std::size_t b) { return din_reference(L, b, {4, 1}, 2, true, true, true, false); }, din_mask);
        check_forward<f::program<double, din_shared>>(batch, 1e-12, [](leaves& L, std::size_t b) { return din_reference(L, b, {3, 1}, 2, false, false, false, true); }, no_prep);
        check_forward<f::program<float, din_sum>>(batch, 1e-5, [](leaves& L, std::size_t b) { return din_reference(L, b, {6, 4, 1}, 1, false, false, false, false); }, no_prep);
    }
    test::check_derivatives<f::grad_program<double, din_tanh>, f::jvp_program<double, din_tanh>>(3);
    test::check_derivatives<f::grad_program<double, din_shared>, f::jvp_program<double, din_shared>>(3);
}
