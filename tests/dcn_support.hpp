#pragma once
// Shared by the DCN test files (test_dcn, test_dcn_ad, test_dcn_mixed): sizes, configs and
// small runners. The files are split only to bound each one's compile memory.
#include "support.hpp"

#include <string_view>
#include <vector>

#include "ctrec/layers/dcn.hpp"

namespace dcn_support {
using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

inline constexpr std::size_t B = 4, N = 3, D = 5, R = 3;

inline std::vector<double> leaf_values(std::string_view name, std::size_t n) {
    std::vector<double> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = leaf_value(name, i);
    return v;
}
template <class Res>
using out_t = std::remove_cvref_t<decltype(Res::out)>;
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

inline constexpr auto x2 = input<"x", N, D>;
inline constexpr dcn_config vec_kn{.type = dcn_type::vector, .layer_num = 2, .allow_kernel_norm = true};
inline constexpr dcn_config mat{.type = dcn_type::matrix, .layer_num = 2};
inline constexpr dcn_config mat_kn{.type = dcn_type::matrix, .layer_num = 2, .allow_kernel_norm = true};
inline constexpr dcn_config mix{.type = dcn_type::mixed, .layer_num = 2, .num_experts = 2, .low_rank = R};
inline constexpr dcn_config mix_compat{.type = dcn_type::mixed, .layer_num = 2, .num_experts = 2, .low_rank = R,
                                       .monolith_compat = true};
} // namespace dcn_support
