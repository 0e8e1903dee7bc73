// DCN (spec layers-core-and-cross.md section 8): the checks of the
// type-core tests test_dcn.cpp, test_dcn_ad.cpp and test_dcn_mixed.cpp that
// test_flat_dcn_din.cpp does not already make, against the type core's naive scalar-loop
// reference (vector, matrix, mixed with the documented gating and the source's monolith_compat
// form, kernel norm, rank 1 / 2 / 3 inputs, dropout with the spec's mask), with its tolerances
// and error formulas (flat_ref_dense_dcn.hpp), on the CPU and reference backends; and the
// derivative test the type core had to leave out for its compile cost: a TWO-layer mixed DCN with
// kernel norm (E = 2, r = 3 on (3, 5) rows, with its L1 + L2 penalty), forward against the
// reference and float64 central differences with JVP / VJP duality. Each TEST_CASE name is the
// type-core case's, prefixed with "flat ".
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "layer_reference.hpp"
#include "ref_dense_dcn.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
namespace init = ctrec::init;
using ctrec::dims;
using ctrec::make_dims;
using cl::dcn_type;
using cl::mode;
using flat_port::check_close;
using flat_port::check_derivatives;
using flat_port::check_forward;
using flat_ref::get;
using flat_ref::vec;
using test::leaf_value;
using test::leaves;

namespace {

constexpr std::size_t B = 4, N = 3, D = 5, R = 3;
constexpr std::size_t batches[] = {1, B, 70};  // one example, the type core's batch, across tiles

// ---- the type core's naive reference (spec 8.6), all in double ---------------------------------
using getter = std::function<double(std::string_view, std::size_t)>;
struct ref_config {
    dcn_type type = dcn_type::matrix;
    std::size_t L = 1, E = 1, r = 0;
    bool kn = false, compat = false;
    bool dropout = false;
    double keep = 1.0;
    std::uint64_t seed = 0;
};
std::string ij(const char* p, std::size_t i, std::size_t j) { return p + std::to_string(i) + "_" + std::to_string(j); }
// effective (a x c) variable `name`: raw, or t_j * P_ij / sqrt(max(sum_i P_ij^2, 1e-6))
vec eff(const getter& g, const std::string& name, std::size_t a, std::size_t c, bool kn) {
    vec v(a * c);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = g(name, i);
    if (!kn) return v;
    for (std::size_t j = 0; j < c; ++j) {
        double s = 0;
        for (std::size_t i = 0; i < a; ++i) s += v[i * c + j] * v[i * c + j];
        const double n = std::sqrt(std::max(s, 1e-6)), t = g(name + "/trainable_norm", j);
        for (std::size_t i = 0; i < a; ++i) v[i * c + j] = v[i * c + j] / n * t;
    }
    return v;
}
std::uint64_t fnv1a(std::string_view s) {
    std::uint64_t h = 1469598103934665603ull;
    for (char ch : s) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
    return h;
}
// x: batch examples of `rows` rows of d values (flat); parameters from g under "dcn/".
vec reference(const getter& g, const vec& x, std::size_t batch, std::size_t rows, std::size_t d, const ref_config& c) {
    vec out(x.size());
    auto P = [&](const std::string& leaf, std::size_t a, std::size_t cols) { return eff(g, "dcn/" + leaf, a, cols, c.kn); };
    for (std::size_t e = 0; e < batch; ++e)
        for (std::size_t n = 0; n < rows; ++n) {
            const double* x0 = &x[(e * rows + n) * d];
            vec xl(x0, x0 + d), next(d);
            for (std::size_t i = 0; i < c.L; ++i) {
                const auto b = P("bias_" + std::to_string(i), 1, d);
                if (c.type == dcn_type::vector) {
                    const auto w = P("kernel_" + std::to_string(i), d, 1);
                    double s = 0;
                    for (std::size_t k = 0; k < d; ++k) s += xl[k] * w[k];
                    for (std::size_t k = 0; k < d; ++k) next[k] = x0[k] * s + b[k] + xl[k];
                } else if (c.type == dcn_type::matrix) {
                    const auto w = P("kernel_" + std::to_string(i), d, d);
                    for (std::size_t k = 0; k < d; ++k) {
                        double s = b[k];
                        for (std::size_t m = 0; m < d; ++m) s += xl[m] * w[m * d + k];
                        next[k] = x0[k] * s + xl[k];
                    }
                } else {
                    std::vector<vec> outs(c.E, vec(d));
                    vec gate(c.E);
                    for (std::size_t j = 0; j < c.E; ++j) {
                        const auto U = P(ij("U_", i, j), d, c.r), V = P(ij("V_", i, j), d, c.r);
                        const auto C = P(ij("C_", i, j), c.r, c.r), G = P(ij("G_", i, j), d, 1);
                        vec v(c.r), cc(c.r);
                        for (std::size_t a = 0; a < c.r; ++a) {
                            double s = 0;
                            for (std::size_t k = 0; k < d; ++k) s += xl[k] * V[k * c.r + a];
                            v[a] = std::tanh(s);
                        }
                        for (std::size_t a = 0; a < c.r; ++a) {
                            double s = 0;
                            for (std::size_t q = 0; q < c.r; ++q) s += v[q] * C[q * c.r + a];
                            cc[a] = std::tanh(s);
                        }
                        for (std::size_t k = 0; k < d; ++k) {
                            double u = 0;
                            for (std::size_t a = 0; a < c.r; ++a) u += cc[a] * U[k * c.r + a];
                            outs[j][k] = x0[k] * (u + b[k]);
                        }
                        gate[j] = 0;
                        for (std::size_t k = 0; k < d; ++k) gate[j] += xl[k] * G[k];
                    }
                    // compat: softmax over a size-1 axis = 1; default: softmax over the experts
                    vec w(c.E, 1.0);
                    if (!c.compat) {
                        const double mx = *std::max_element(gate.begin(), gate.end());
                        double z = 0;
                        for (std::size_t j = 0; j < c.E; ++j) z += std::exp(gate[j] - mx);
                        for (std::size_t j = 0; j < c.E; ++j) w[j] = std::exp(gate[j] - mx) / z;
                    }
                    for (std::size_t k = 0; k < d; ++k) {
                        next[k] = xl[k];
                        for (std::size_t j = 0; j < c.E; ++j) next[k] += w[j] * outs[j][k];
                    }
                }
                if (c.dropout) {
                    const std::uint64_t stream = fnv1a("dcn/dropout_" + std::to_string(i));
                    for (std::size_t k = 0; k < d; ++k) {
                        const double u = ctrec::random_uniform_value<double>(c.seed, stream, e, n * d + k);
                        next[k] = u >= 1.0 - c.keep ? next[k] / c.keep : 0.0;
                    }
                }
                xl = next;
            }
            std::copy(xl.begin(), xl.end(), out.begin() + static_cast<std::ptrdiff_t>((e * rows + n) * d));
        }
    return out;
}
// the reference on the leaves of a program (rows of D per example)
auto ref_on(std::size_t rows, ref_config c) {
    return [=](leaves& L, std::size_t batch) {
        getter g = [&](std::string_view n, std::size_t i) { return get(L, std::string(n))[i]; };
        return reference(g, get(L, "x"), batch, rows, D, c);
    };
}

// ---- models -------------------------------------------------------------------------------------
constexpr auto x2 = f::input<"x", N, D>;
constexpr cl::dcn_config vec_kn{.type = dcn_type::vector, .layer_num = 2, .allow_kernel_norm = true};
constexpr cl::dcn_config mat{.type = dcn_type::matrix, .layer_num = 2};
constexpr cl::dcn_config mat_kn{.type = dcn_type::matrix, .layer_num = 2, .allow_kernel_norm = true};
constexpr cl::dcn_config mix{.type = dcn_type::mixed, .layer_num = 2, .num_experts = 2, .low_rank = R};
constexpr cl::dcn_config mix_compat{.type = dcn_type::mixed, .layer_num = 2, .num_experts = 2, .low_rank = R, .monolith_compat = true};
constexpr cl::dcn_config mix_kn1{.type = dcn_type::mixed, .layer_num = 1, .num_experts = 2, .low_rank = R, .allow_kernel_norm = true};

// forward (the configurations test_flat_dcn_din.cpp does not have)
constexpr auto v_plain_y = fl::dcn<"dcn", {.type = dcn_type::vector, .layer_num = 2}>(x2).out();
constexpr auto v_kn_y = fl::dcn<"dcn", vec_kn>(x2).out();
constexpr auto m_kn_y = fl::dcn<"dcn", mat_kn>(x2).out();
constexpr auto compat_y = fl::dcn<"dcn", mix_compat>(x2).out();
constexpr auto r1_mat_y = fl::dcn<"dcn", {.type = dcn_type::matrix, .layer_num = 3}>(f::input<"x", D>).out();
constexpr auto r1_mix_y = fl::dcn<"dcn", mix>(f::input<"x", D>).out();
constexpr auto r3_vec_y = fl::dcn<"dcn", {.type = dcn_type::vector, .layer_num = 2}>(f::input<"x", 2, N, D>).out();

// the acceptance test: two-layer mixed DCN with kernel norm, with the type core's penalty config
constexpr cl::dcn_config mix_kn2_cfg{.type = dcn_type::mixed, .layer_num = 2, .regularizer = cl::regularizer(0.01, 0.02),
                                     .num_experts = 2, .low_rank = R, .allow_kernel_norm = true};
constexpr auto mix_kn2 = fl::dcn<"dcn", mix_kn2_cfg>(x2);
constexpr auto mix_kn2_y = mix_kn2.out();
constexpr auto mix_kn2_pen = mix_kn2.penalty();
constexpr auto mix_kn2_loss = f::batch_mean(f::sum(f::tanh(mix_kn2_y))) + mix_kn2.penalty();

// matrix mode's contraction fusion
constexpr auto mat3_y = fl::dcn<"dcn", {.type = dcn_type::matrix, .layer_num = 3}>(x2).out();

// dropout
constexpr cl::dcn_config drop1{.type = dcn_type::matrix, .layer_num = 1, .use_dropout = true, .keep_prob = 0.8};
constexpr auto drop1_ev_y = fl::dcn<"dcn", drop1, mode::eval>(x2).out();
constexpr auto drop1_pr_y = fl::dcn<"dcn", drop1, mode::predict>(x2).out();
constexpr auto drop1_tr_y = fl::dcn<"dcn", drop1>(x2).out();  // the default mode is train
constexpr auto drop1_off_y = fl::dcn<"dcn", {.type = dcn_type::matrix, .layer_num = 1}, mode::train>(x2).out();
constexpr auto drop_v2_y = fl::dcn<"dcn", {.type = dcn_type::vector, .layer_num = 2, .use_dropout = true, .keep_prob = 0.5}>(x2).out();
constexpr auto drop_m2_y = fl::dcn<"dcn", {.type = dcn_type::matrix, .layer_num = 2, .use_dropout = true, .keep_prob = 0.5}, mode::train>(x2).out();

// the original tests' configurations: (10, 10) inputs, kernel norm, dropout 0.5, two layers
constexpr auto x10 = f::input<"x", 10, 10>;
constexpr auto orig_v = fl::dcn<"dcn", {.type = dcn_type::vector, .layer_num = 2, .allow_kernel_norm = true, .use_dropout = true, .keep_prob = 0.5}>(x10);
constexpr auto orig_v_y = orig_v.out();
constexpr auto orig_m = fl::dcn<"dcn", {.type = dcn_type::matrix, .layer_num = 2, .allow_kernel_norm = true, .use_dropout = true, .keep_prob = 0.5}>(x10);
constexpr auto orig_m_y = orig_m.out();
constexpr auto orig_x = fl::dcn<"dcn", {.type = dcn_type::mixed, .layer_num = 2, .num_experts = 2, .low_rank = 5, .allow_kernel_norm = true,
                                        .use_dropout = true, .keep_prob = 0.5}>(x10);
constexpr auto orig_x_y = orig_x.out();

// variables
constexpr auto names_mat = fl::dcn<"m/dcn", cl::dcn_config{.layer_num = 2}>(x2);  // matrix is the default type
constexpr auto names_vkn = fl::dcn<"dcn", vec_kn>(x2);
constexpr auto names_mkn = fl::dcn<"dcn", mat_kn>(x2);
constexpr auto names_mix = fl::dcn<"dcn", mix>(x2);
constexpr auto names_mkn1 = fl::dcn<"dcn", mix_kn1>(x2);
constexpr auto names_mkn1_y = names_mkn1.out();
constexpr auto names_mat_plain = fl::dcn<"dcn", mat>(x2);

// initial values
constexpr std::size_t W64 = 64;
constexpr auto init_m = fl::dcn<"dcn", {.type = dcn_type::matrix, .layer_num = 2, .allow_kernel_norm = true}>(f::input<"x", W64>);
constexpr auto init_m_y = init_m.out();
constexpr auto init_u = fl::dcn<"dcn", {.type = dcn_type::mixed, .initializer = init::Ones{}, .low_rank = 2}>(f::input<"x", 4>);
constexpr auto init_u_y = init_u.out();

// kernel norm: frozen biases through SGD steps
constexpr auto frozen = fl::dcn<"dcn", {.type = dcn_type::vector, .layer_num = 2, .allow_kernel_norm = true, .use_dropout = true, .keep_prob = 0.5},
                                mode::train>(x2);
constexpr auto frozen_loss = f::batch_mean(f::sum(frozen.out() * frozen.out())) + frozen.penalty();
// penalty gradients
constexpr auto pen_v = fl::dcn<"dcn", {.type = dcn_type::vector, .regularizer = ctrec::reg::L2{0.3}, .allow_kernel_norm = true}>(x2);
constexpr auto pen_v_loss = f::batch_mean(f::sum(pen_v.out())) + pen_v.penalty();

// Runs program M on xs with parameters p and io.seed = seed; output 0.
template <class M, class P>
std::vector<typename M::element_type> run_with(P& p, const std::vector<typename M::element_type>& xs, std::size_t batch, std::uint64_t seed) {
    typename M::workspace ws;
    std::vector<typename M::element_type> y(batch * M::template output_size<0>);
    typename M::io io;
    io.seed = seed;
    io.template input<"x">(xs.data()).template output<0>(y.data());
    M::run(p, ws, batch, io);
    return y;
}
template <class M>
void fill_leaf_values(typename M::parameters& p) {
    using T = typename M::element_type;
    for (std::size_t k = 0; k < M::parameters::count; ++k) {
        auto w = p.get(k);
        for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<T>(leaf_value(M::parameters::names[k], i));
    }
}
template <class M>
ctrec::dims param_shape(std::string_view name) {
    const std::size_t k = M::parameters::position(name);
    REQUIRE(k < M::parameters::count);
    return M::tab.nodes[M::param_ids[k]].shape;
}

} // namespace

// ================================================================================================
// test_dcn.cpp
// ================================================================================================

TEST_CASE("dcn forward against the naive reference: vector, matrix, mixed (gated, compat), kernel norm, f64 and f32") {
    // (matrix, mixed gated (three experts), mixed with kernel norm: test_flat_dcn_din.cpp and the
    // two-layer kernel-norm case below; the gated form with E = 2, r = 3 in float: rank 1 here)
    SUBCASE("vector") {
        for (std::size_t batch : batches) check_forward<v_plain_y>(batch, ref_on(N, {.type = dcn_type::vector, .L = 2}));
    }
    SUBCASE("vector, kernel norm") {
        for (std::size_t batch : batches) check_forward<v_kn_y>(batch, ref_on(N, {.type = dcn_type::vector, .L = 2, .kn = true}));
    }
    SUBCASE("matrix, kernel norm (in float too)") {
        for (std::size_t batch : batches) check_forward<m_kn_y>(batch, ref_on(N, {.L = 2, .kn = true}));
    }
    SUBCASE("mixed, monolith_compat: the unweighted expert sum") {
        const ref_config c{.type = dcn_type::mixed, .L = 2, .E = 2, .r = R, .compat = true};
        for (std::size_t batch : batches) check_forward<compat_y>(batch, ref_on(N, c));
        // and that is not the gated output
        leaves L;
        const vec got = flat_port::run<f::program<double, compat_y>>(L, B)[0];
        const vec gated = ref_on(N, {.type = dcn_type::mixed, .L = 2, .E = 2, .r = R})(L, B);
        double diff = 0;
        for (std::size_t i = 0; i < got.size(); ++i) diff = std::max(diff, std::abs(got[i] - gated[i]));
        CHECK(diff > 1e-3);
    }
    SUBCASE("rank-1 input (D): one row per example") {
        static_assert(r1_mat_y.shape() == make_dims<D>());
        check_forward<r1_mat_y>(B, ref_on(1, {.L = 3}));
        check_forward<r1_mix_y>(B, ref_on(1, {.type = dcn_type::mixed, .L = 2, .E = 2, .r = R}));
    }
    SUBCASE("rank-3 input (2, N, D): every row, shape kept") {
        static_assert(r3_vec_y.shape() == make_dims<2, N, D>());
        check_forward<r3_vec_y>(B, ref_on(2 * N, {.type = dcn_type::vector, .L = 2}));
    }
}

TEST_CASE("dcn mixed, two layers, kernel norm: forward against the naive reference, float64 derivatives, JVP / VJP duality") {
    // the type core checked this form forward only (its derivative programs' compile cost grew
    // steeply with depth); E = 2, r = 3 on (3, 5) rows, every variable weight-normalised
    const ref_config c{.type = dcn_type::mixed, .L = 2, .E = 2, .r = R, .kn = true};
    for (std::size_t batch : batches) check_forward<mix_kn2_y, true>(batch, ref_on(N, c));
    // reverse mode against central differences for every element of x and of the 36 variables
    // (U, V, C, G, bias and their trainable norms), forward mode along a direction, duality
    check_derivatives<mix_kn2_y>(B);
    // and a training loss with the L1 + L2 penalty, differentiated as a whole
    check_derivatives<mix_kn2_loss>(B);
    using G = f::grad_program<double, mix_kn2_y>;
    CHECK(G::tab.n_wrt == 1 + 2 * (4 * 2 * 2 + 2));  // x; U, V, C, G (2 layers x 2 experts) and 2 biases, each with its norm
    // the documented gating gives G a real gradient
    leaves L;
    const auto g = flat_port::run<G>(L, B);
    double mx = 0;
    for (const char* n : {"dcn/G_0_0", "dcn/G_0_1", "dcn/G_1_0", "dcn/G_1_1"})
        for (double v : g[flat_port::grad_index<G>(n)]) mx = std::max(mx, std::abs(v));
    CHECK(mx > 1e-3);
}

TEST_CASE("dcn matrix mode: one GEMM per cross layer over all rows, x0 * (acc + b) + x in its epilogue") {
    // the core's form: each layer's x W writes the buffer of the one elementwise step that
    // computes x0 * (. + b) + x (contraction fusion), and the plan has no other contraction
    using M = f::program<float, mat3_y>;
    std::size_t contractions = 0, fused = 0;
    for (std::size_t i = 0; i < M::size; ++i) {
        contractions += M::tab.nodes[i].op == f::opcode::contract;
        fused += M::pl.epilogue[i];
    }
    CHECK(contractions == 3);
    CHECK(fused == 3);
    check_forward<mat3_y>(B, ref_on(N, {.L = 3}));
}

TEST_CASE("dcn dropout: train mode only, seeded masks, keep fraction, 1/keep_prob scale") {
    SUBCASE("eval and predict are the model without dropout (the same expression)") {
        CHECK(flat_port::same_table(f::program<double, drop1_ev_y>::tab, f::program<double, drop1_off_y>::tab));
        CHECK(flat_port::same_table(f::program<double, drop1_pr_y>::tab, f::program<double, drop1_off_y>::tab));
        CHECK_FALSE(flat_port::same_table(f::program<double, drop1_tr_y>::tab, f::program<double, drop1_off_y>::tab));
        check_forward<drop1_ev_y>(B, ref_on(N, {.L = 1}));
    }
    SUBCASE("kept fraction ~ keep_prob, kept values scaled by 1/keep_prob, seed determines the mask") {
        using Tr = f::program<float, drop1_tr_y>;
        using Ev = f::program<float, drop1_ev_y>;
        constexpr std::size_t batch = 256;
        std::vector<float> xs(batch * N * D);
        for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(leaf_value("x", i));
        Tr::parameters tp;
        Ev::parameters ep;
        fill_leaf_values<Tr>(tp), fill_leaf_values<Ev>(ep);
        const auto plain = run_with<Ev>(ep, xs, batch, 0);
        const auto a = run_with<Tr>(tp, xs, batch, 42), a2 = run_with<Tr>(tp, xs, batch, 42), b = run_with<Tr>(tp, xs, batch, 43);
        CHECK(a == a2);
        std::size_t kept = 0, differ = 0;
        for (std::size_t i = 0; i < a.size(); ++i) {
            REQUIRE(plain[i] != 0.0f);
            if (a[i] != 0.0f) {
                ++kept;
                CHECK(a[i] == doctest::Approx(plain[i] / 0.8f).epsilon(1e-6));
            }
            differ += (a[i] == 0.0f) != (b[i] == 0.0f);
        }
        const double frac = double(kept) / double(a.size());
        CHECK(frac == doctest::Approx(0.8).epsilon(0.02));  // n = 3840: sd 0.0065
        CHECK(differ > a.size() / 10);                        // another seed, another mask
    }
    SUBCASE("two layers against the reference with the spec's mask; the mask of a layer is its own stream") {
        using M = f::program<double, drop_v2_y>;
        leaves L;
        const vec got = flat_port::run<M>(L, B, 7)[0];
        const vec want = ref_on(N, {.type = dcn_type::vector, .L = 2, .dropout = true, .keep = 0.5, .seed = 7})(L, B);
        check_close(got, want, 1e-12);
        check_close(flat_port::run<M::with_backend<f::reference_backend>>(L, B, 7)[0], want, 1e-12);
        std::size_t zeros = 0;
        for (double v : got) zeros += v == 0.0;
        CHECK(zeros > 0);
        CHECK(zeros < got.size());
    }
}

TEST_CASE("dcn: the original tests' configurations, (128, 10, 10) ones, kernel norm, dropout 0.5, layer_num 2") {
    const vec ones(128 * 10 * 10, 1.0);
    const std::vector<float> one(ones.begin(), ones.end());
    auto check = [&]<const auto& Rs, const auto& Y>(ref_config rc) {
        using M = f::program<float, Y>;
        static_assert(M::template output_size<0> == 100);
        typename M::parameters p;
        fl::initialize<Rs>(p, 2021);
        const auto y = run_with<M>(p, one, 128, 9);
        CHECK(y.size() == 128 * 100);
        getter g = [&](std::string_view n, std::size_t i) { return double(p.get(M::parameters::position(n))[i]); };
        rc.kn = true, rc.dropout = true, rc.keep = 0.5, rc.seed = 9, rc.L = 2;
        const vec want = reference(g, ones, 128, 10, 10, rc);
        check_close(vec(y.begin(), y.end()), want, 2e-5);
    };
    check.operator()<orig_v, orig_v_y>({.type = dcn_type::vector});
    check.operator()<orig_m, orig_m_y>({.type = dcn_type::matrix});
    check.operator()<orig_x, orig_x_y>({.type = dcn_type::mixed, .E = 2, .r = 5});
}

TEST_CASE("dcn variables: names, shapes and creation order (inits), trainable_norm shapes") {
    using S = std::vector<std::string>;
    using Sh = std::vector<dims>;
    CHECK(flat_port::var_names(names_mat) == S{"m/dcn/kernel_0", "m/dcn/kernel_1", "m/dcn/bias_0", "m/dcn/bias_1"});
    CHECK(flat_port::var_shapes(names_mat) == Sh{make_dims<D, D>(), make_dims<D, D>(), make_dims<1, D>(), make_dims<1, D>()});
    CHECK(flat_port::var_names(names_vkn) == S{"dcn/kernel_0", "dcn/kernel_0/trainable_norm", "dcn/kernel_1", "dcn/kernel_1/trainable_norm",
                                               "dcn/bias_0", "dcn/bias_0/trainable_norm", "dcn/bias_1", "dcn/bias_1/trainable_norm"});
    CHECK(flat_port::var_shapes(names_vkn) == Sh{make_dims<D, 1>(), make_dims<1>(), make_dims<D, 1>(), make_dims<1>(), make_dims<1, D>(),
                                                 make_dims<D>(), make_dims<1, D>(), make_dims<D>()});
    CHECK(flat_port::var_shapes(names_mkn)[1] == make_dims<D>());
    CHECK(flat_port::var_names(names_mix) == S{"dcn/U_0_0", "dcn/U_0_1", "dcn/U_1_0", "dcn/U_1_1", "dcn/V_0_0", "dcn/V_0_1", "dcn/V_1_0",
                                               "dcn/V_1_1", "dcn/C_0_0", "dcn/C_0_1", "dcn/C_1_0", "dcn/C_1_1", "dcn/G_0_0", "dcn/G_0_1",
                                               "dcn/G_1_0", "dcn/G_1_1", "dcn/bias_0", "dcn/bias_1"});
    const Sh s = flat_port::var_shapes(names_mix);
    REQUIRE(s.size() == 18);
    CHECK(s[0] == make_dims<D, R>());
    CHECK(s[4] == make_dims<D, R>());
    CHECK(s[8] == make_dims<R, R>());
    CHECK(s[12] == make_dims<D, 1>());
    CHECK(s[16] == make_dims<1, D>());
    const S nk = flat_port::var_names(names_mkn1);
    const Sh sk = flat_port::var_shapes(names_mkn1);
    REQUIRE(nk.size() == 18);  // one layer, two experts, each with its norm
    CHECK(nk == S{"dcn/U_0_0", "dcn/U_0_0/trainable_norm", "dcn/U_0_1", "dcn/U_0_1/trainable_norm", "dcn/V_0_0", "dcn/V_0_0/trainable_norm",
                  "dcn/V_0_1", "dcn/V_0_1/trainable_norm", "dcn/C_0_0", "dcn/C_0_0/trainable_norm", "dcn/C_0_1", "dcn/C_0_1/trainable_norm",
                  "dcn/G_0_0", "dcn/G_0_0/trainable_norm", "dcn/G_0_1", "dcn/G_0_1/trainable_norm", "dcn/bias_0", "dcn/bias_0/trainable_norm"});
    CHECK(sk[1] == make_dims<R>());   // U (r,)
    CHECK(sk[9] == make_dims<R>());   // C (r,)
    CHECK(sk[13] == make_dims<1>());  // G (1,)
    CHECK(sk[17] == make_dims<D>());  // bias (D,)
    // the program's parameter shapes agree with the declared ones
    using M = f::program<float, names_mkn1_y>;
    CHECK(M::parameters::count == 18);
    CHECK(param_shape<M>("dcn/C_0_1/trainable_norm") == make_dims<R>());
    CHECK(param_shape<M>("dcn/bias_0") == make_dims<1, D>());
    // dcn_type strings: exactly the source's, anything else rejected
    static_assert(cl::dcn_type_from("vector") == dcn_type::vector && cl::dcn_type_from("matrix") == dcn_type::matrix &&
                  cl::dcn_type_from("mixed") == dcn_type::mixed);
    CHECK_THROWS_AS(cl::dcn_type_from("Matrix"), ctrec::error);
}

TEST_CASE("dcn initial values: GlorotNormal kernels, zero biases, trainable_norm = column norms of the initial value") {
    // (forward program only: the initial values do not depend on the program)
    using M = f::program<double, init_m_y>;
    M::parameters p;
    fl::initialize<init_m>(p, 3);
    const auto k = p.get<"dcn/kernel_1">();
    double s = 0, mx = 0;
    for (double v : k) s += v * v, mx = std::max(mx, std::abs(v));
    const double sigma = std::sqrt(2.0 / (W64 + W64));  // realised std of the truncated normal
    CHECK(std::sqrt(s / double(k.size())) == doctest::Approx(sigma).epsilon(0.05));
    CHECK(mx <= 2 * sigma / 0.87962566103423978);
    const auto t = p.get<"dcn/kernel_1/trainable_norm">();
    for (std::size_t j = 0; j < W64; ++j) {
        double c = 0;
        for (std::size_t i = 0; i < W64; ++i) c += k[i * W64 + j] * k[i * W64 + j];
        CHECK(t[j] == doctest::Approx(std::sqrt(c)).epsilon(1e-14));
    }
    for (double v : p.get<"dcn/bias_0">()) CHECK(v == 0.0);
    for (double v : p.get<"dcn/bias_0/trainable_norm">()) CHECK(v == 0.0);
    // the kernels differ (independent streams per variable)
    CHECK(p.get<"dcn/kernel_0">()[0] != p.get<"dcn/kernel_1">()[0]);
    // a custom initializer reaches every kernel
    using MU = f::program<double, init_u_y>;
    MU::parameters pu;
    fl::initialize<init_u>(pu, 3);
    for (const char* n : {"dcn/U_0_0", "dcn/V_0_0", "dcn/C_0_0", "dcn/G_0_0"})
        for (double v : pu.get(MU::parameters::position(n))) CHECK(v == 1.0);
    for (double v : pu.get<"dcn/bias_0">()) CHECK(v == 0.0);
}

TEST_CASE("dcn penalties: the regularizer on every raw kernel / U / V / C / G, never biases or norms") {
    leaves L;
    const double got = flat_port::run<f::program<double, mix_kn2_pen>>(L, 1)[0][0];
    double want = 0;
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t j = 0; j < 2; ++j)
            for (auto [p, n] : {std::pair{"U_", D * R}, std::pair{"V_", D * R}, std::pair{"C_", R * R}, std::pair{"G_", D}})
                for (std::size_t e = 0; e < n; ++e) {
                    const double v = leaf_value("dcn/" + ij(p, i, j), e);
                    want += 0.01 * std::abs(v) + 0.02 * v * v;
                }
    CHECK(got == doctest::Approx(want).epsilon(1e-12));
    const auto pn = flat_port::param_names<f::program<float, mix_kn2_pen>>();
    CHECK(pn.size() == 16);
    for (const auto& n : pn) {
        CHECK(n.find("bias") == std::string::npos);
        CHECK(n.find("trainable_norm") == std::string::npos);
    }
    // no regularizer: no penalty term (the constant 0)
    static_assert(!names_mat_plain.has_penalty());
}

// ================================================================================================
// test_dcn_ad.cpp
// ================================================================================================

TEST_CASE("dcn gradients and JVP by finite differences (every input and parameter element), dropout off") {
    // (matrix with kernel norm: test_flat_dcn_din.cpp, rank 3 -> rows, the same matrix path)
    SUBCASE("vector, kernel norm") { check_derivatives<v_kn_y>(B); }
}

TEST_CASE("dcn kernel norm: the biases (and their norms) stay exactly 0 through SGD steps") {
    using S = f::train_program<double, frozen_loss, frozen>;
    S::parameters p;
    fl::initialize<frozen>(p, 5);
    const vec u0(p.get<"dcn/kernel_0">().begin(), p.get<"dcn/kernel_0">().end());
    S::workspace ws;
    S::gradients g;
    vec xs(B * N * D);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
    for (int step = 0; step < 3; ++step) {
        double l = 0;
        S::io io;
        io.seed = 100 + step;
        io.input<"x">(xs.data()).output<0>(&l);
        g.bind(io);
        S::run(p, ws, B, io);
        for (double v : g.get<"dcn/bias_0">()) CHECK(v == 0.0);
        for (double v : g.get<"dcn/bias_1/trainable_norm">()) CHECK(v == 0.0);
        g.sgd(p, 0.1);
    }
    for (const char* n : {"dcn/bias_0", "dcn/bias_1", "dcn/bias_0/trainable_norm", "dcn/bias_1/trainable_norm"})
        for (double v : p.get(S::parameters::position(n))) CHECK(v == 0.0);
    // while the other variables train
    double moved = 0;
    for (std::size_t i = 0; i < u0.size(); ++i) moved = std::max(moved, std::abs(p.get<"dcn/kernel_0">()[i] - u0[i]));
    CHECK(moved > 1e-6);
}

TEST_CASE("dcn dropout gradient uses the forward's mask: finite differences in train mode with a fixed seed") {
    // (seed 0, keep_prob 0.7: test_flat_dcn_din.cpp) every leaf element under seed 12345
    check_derivatives<drop_m2_y>(B, {}, {}, 12345);
    using G = f::grad_program<double, drop_m2_y>;
    leaves L;
    const auto g = flat_port::run<G>(L, B, 12345);
    const vec& dx = g[G::grad<"x">];
    std::size_t zero_grads = 0;
    for (double v : dx) zero_grads += v == 0.0;
    CHECK(zero_grads < dx.size());
    std::size_t dropped = 0;  // the mask drops something at this seed
    for (double v : g[0]) dropped += v == 0.0;
    CHECK(dropped > 0);
}

TEST_CASE("dcn penalty gradients: a training loss with the penalty, differentiated as a whole") {
    // the loss is linear in the layer's output, whose example-independent cotangent reaches the
    // unbatched biases through batched adds: summed over the batch (ad/autodiff.hpp, `contribution`)
    check_derivatives<pen_v_loss>(B);
}

// ================================================================================================
// test_dcn_mixed.cpp
// ================================================================================================

TEST_CASE("dcn mixed gradients and JVP by finite differences: documented gating, monolith_compat") {
    // (gated: test_flat_dcn_din.cpp, one and two layers' worth in its two-layer models, and the
    // two-layer kernel-norm case above)
    SUBCASE("monolith_compat, two layers") { check_derivatives<compat_y>(B); }
}

TEST_CASE("dcn mixed: G gets exactly zero gradient under monolith_compat, a real one with the documented gating") {
    using G = f::grad_program<double, compat_y>;
    leaves L;
    const auto g = flat_port::run<G>(L, B);
    vec compat;
    for (const char* n : {"dcn/G_0_0", "dcn/G_0_1", "dcn/G_1_0", "dcn/G_1_1"}) {
        const vec& v = g[flat_port::grad_index<G>(n)];
        compat.insert(compat.end(), v.begin(), v.end());
    }
    REQUIRE(compat.size() == 4 * D);
    for (double v : compat) CHECK(v == 0.0);
    // (the gated form's real G gradient: the two-layer kernel-norm case above)
    // the compat forward is the unweighted sum: its gate weights are exactly 1
    using F = f::program<float, compat_y>;
    leaves M;
    const vec y = flat_port::run<F>(M, B)[0];
    CHECK(y.size() == B * N * D);
    static_assert(F::parameters::position("dcn/G_1_1") < F::parameters::count, "G stays a parameter of the program");
}
