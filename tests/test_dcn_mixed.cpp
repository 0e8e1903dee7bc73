// DCN mixed-mode derivatives: finite-difference gradients and JVP/VJP duality for every
// input and parameter element (documented gating and monolith_compat), and the G gradient:
// exactly zero under monolith_compat, a real one with the gating. (A third file, for the
// compile memory of the derivative programs; test_dcn.cpp has the forward tests.)
#include "dcn_support.hpp"

#include <algorithm>
#include <string>

#include "ctrec/layers/dcn.hpp"
#include "ctrec/layers/initialize.hpp"
#include "ctrec/train/train_program.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
using namespace dcn_support;


// (mixed with kernel norm: one layer in the derivative programs, whose compile cost grows
// steeply with depth; the two-layer form is checked forward and in the original config)
constexpr dcn_config mix1{.type = dcn_type::mixed, .layer_num = 1, .num_experts = 2, .low_rank = R};
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

