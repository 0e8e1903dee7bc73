#pragma once
// check_derivatives<Root>(): the one-line derivative check for any expression
// (primitives, layers, your own models), in float64:
//   * reverse mode vs central finite differences, for every element of every
//     input and parameter leaf;
//   * forward mode (JVP) vs a central finite difference along a random tangent;
//   * duality <v, J u> == <J^T v, u>.
// Leaves the expression holds constant (all uses behind stop_gradient: a fixed kernel
// norm, BN's moving statistics in eval mode) have zero derivative by definition and are
// neither finite-differenced nor moved along the tangent.
// Leaf values are uniform in [-1, 1], then passed through `shape_value`
// (e.g. to keep a log's argument positive). Ids are uniform over the rows of
// every table they index.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "ctrec/ad/programs.hpp"

namespace ctrec {

struct derivative_report {
    double grad_error = 0;     // max |ad - fd| / max(1, |ad|, |fd|) over all leaf elements
    double jvp_error = 0;      // same, for the JVP vs a directional finite difference
    double duality_error = 0;  // |<v, J u> - <J^T v, u>| / max(1, |.|)
    std::string worst;         // leaf and element with the largest gradient error
    std::size_t checked = 0;   // number of leaf elements checked
};

namespace detail {
// Leaf values for a batch: one vector per input / parameter / ids leaf, by name.
struct leaf_values {
    std::vector<std::vector<double>> in, par;
    std::vector<std::vector<std::int32_t>> ids;
};

template <class Ids, class Nodes>
constexpr std::size_t id_rows() {
    std::size_t rows = static_cast<std::size_t>(-1);
    [&]<class... N>(tlist<N...>) {
        (([&] {
             if constexpr (N::node_kind == kind::gather) {
                 if constexpr (std::is_same_v<tl_at_t<1, typename N::operands>, Ids>) rows = std::min(rows, N::rows);
             }
         }()),
         ...);
    }(Nodes{});
    return rows == static_cast<std::size_t>(-1) ? 1 : rows;
}
} // namespace detail

namespace detail {
template <class Root, class L>
inline constexpr bool constant_leaf_v = is_zero_v<ad::cotangent_t<graph_t<Root>, L>>;
} // namespace detail

template <class RootExpr>
derivative_report check_derivatives(std::size_t batch = 3, unsigned seed = 1,
                                    std::function<double(std::string_view, double)> shape_value = {},
                                    double h = 1e-6) {
    using Root = std::remove_cvref_t<RootExpr>;
    using F = program<double, Root>;
    using G = grad_program<double, Root>;
    using J = jvp_program<double, Root>;
    using inputs = typename F::input_leaves;
    using params = typename F::param_leaves;
    using idl = typename F::index_leaves;
    constexpr std::size_t out_size = Root::shape.size();
    // an unbatched (scalar loss) root has one value per call, and its seed is 1
    const std::size_t out_count = Root::batched ? batch * out_size : out_size;

    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> uni(-1.0, 1.0);
    auto val = [&](std::string_view name) {
        double v = uni(rng);
        return shape_value ? shape_value(name, v) : v;
    };

    typename F::parameters p;
    std::vector<std::vector<double>> in(F::n_inputs);
    std::vector<std::vector<std::int32_t>> ids(F::n_ids);
    [&]<class... L>(tlist<L...>) {
        [[maybe_unused]] std::size_t i = 0;
        ((in[i].resize(batch * L::shape.size()), std::generate(in[i].begin(), in[i].end(), [&] { return val(L::name.view()); }), ++i), ...);
    }(inputs{});
    [&]<class... L>(tlist<L...>) {
        ((std::generate(p.template get<L::name>().begin(), p.template get<L::name>().end(), [&] { return val(L::name.view()); })), ...);
    }(params{});
    [&]<class... L>(tlist<L...>) {
        [[maybe_unused]] std::size_t i = 0;
        ((ids[i].resize(batch * L::shape.size()),
          std::generate(ids[i].begin(), ids[i].end(),
                        [&] { return static_cast<std::int32_t>(rng() % detail::id_rows<L, typename F::nodes>()); }),
          ++i),
         ...);
    }(idl{});
    std::vector<double> ct(out_count);
    for (auto& v : ct) v = Root::batched ? uni(rng) : 1.0;

    typename F::workspace fws;
    std::vector<double> y(out_count);
    auto bind_common = [&](auto& io) {
        [&]<class... L>(tlist<L...>) {
            [[maybe_unused]] std::size_t i = 0;
            ((io.template input<L::name>(in[i++].data())), ...);
        }(inputs{});
        [&]<class... L>(tlist<L...>) {
            [[maybe_unused]] std::size_t i = 0;
            ((io.template index<L::name>(ids[i++].data())), ...);
        }(idl{});
    };
    auto loss = [&] {  // sum_b sum_i ct * f
        typename F::io io;
        bind_common(io);
        io.template output<0>(y.data());
        F::run(p, fws, batch, io);
        double s = 0;
        for (std::size_t i = 0; i < y.size(); ++i) s += ct[i] * y[i];
        return s;
    };

    // ---- reverse mode ----
    typename G::parameters gp;
    [&]<class... L>(tlist<L...>) {
        ((std::copy(p.template get<L::name>().begin(), p.template get<L::name>().end(), gp.template get<L::name>().begin())), ...);
    }(params{});
    typename G::workspace gws;
    std::vector<std::vector<double>> grads(G::n_outputs);
    {
        typename G::io io;
        [&]<class... L>(tlist<L...>) {
            [[maybe_unused]] std::size_t i = 0;
            ((io.template input<L::name>(in[i++].data())), ...);
        }(inputs{});
        if constexpr (detail::find_leaf_v<"cotangent", typename G::input_leaves> < G::n_inputs)
            io.template input<"cotangent">(ct.data());
        [&]<class... L>(tlist<L...>) {
            [[maybe_unused]] std::size_t i = 0;
            ((io.template index<L::name>(ids[i++].data())), ...);
        }(idl{});
        [&]<std::size_t... R>(std::index_sequence<R...>) {
            ((grads[R].resize(G::template output_size<R> * (G::template output_batched<R> ? batch : 1)),
              io.template output<R>(grads[R].data())),
             ...);
        }(std::make_index_sequence<G::n_outputs>{});
        G::run(gp, gws, batch, io);
    }

    derivative_report rep;
    auto rel = [](double a, double b) { return std::abs(a - b) / std::max({1.0, std::abs(a), std::abs(b)}); };
    auto fd = [&](double& x) {
        double x0 = x;
        x = x0 + h;
        double lp = loss();
        x = x0 - h;
        double lm = loss();
        x = x0;
        return (lp - lm) / (2 * h);
    };
    [&]<class... L>(tlist<L...>) {
        [[maybe_unused]] std::size_t i = 0;
        (([&] {
             auto& g = grads[G::template grad<L::name>];
             if constexpr (!detail::constant_leaf_v<Root, L>)
             for (std::size_t e = 0; e < in[i].size(); ++e) {
                 double err = rel(g[e], fd(in[i][e]));
                 ++rep.checked;
                 if (err > rep.grad_error) rep.grad_error = err, rep.worst = std::string(L::name.view()) + "[" + std::to_string(e) + "]";
             }
             ++i;
         }()),
         ...);
    }(inputs{});
    [&]<class... L>(tlist<L...>) {
        (([&] {
             auto& g = grads[G::template grad<L::name>];
             auto w = p.template get<L::name>();
             if constexpr (!detail::constant_leaf_v<Root, L>)
             for (std::size_t e = 0; e < w.size(); ++e) {
                 double err = rel(g[e], fd(w[e]));
                 ++rep.checked;
                 if (err > rep.grad_error) rep.grad_error = err, rep.worst = std::string(L::name.view()) + "[" + std::to_string(e) + "]";
             }
         }()),
         ...);
    }(params{});

    // ---- forward mode: tangents u for every leaf ----
    typename J::parameters jp;
    std::vector<std::vector<double>> uin(F::n_inputs);
    [&]<class... L>(tlist<L...>) {
        [[maybe_unused]] std::size_t i = 0;
        ((uin[i].resize(batch * L::shape.size()), std::generate(uin[i].begin(), uin[i].end(), [&] { return uni(rng); }), ++i), ...);
    }(inputs{});
    std::vector<std::vector<double>> upar(F::n_params);
    [&]<class... L>(tlist<L...>) {
        [[maybe_unused]] std::size_t i = 0;
        ((upar[i].resize(L::shape.size()), std::generate(upar[i].begin(), upar[i].end(), [&] { return uni(rng); }),
          std::copy(p.template get<L::name>().begin(), p.template get<L::name>().end(), jp.template get<L::name>().begin()),
          ++i),
         ...);
    }(params{});
    std::vector<double> jv(out_count), jy(out_count);
    {
        typename J::io io;
        typename J::workspace jws;
        bind_common(io);
        // tangent leaves exist only where the root depends on the leaf
        [&]<class... L>(tlist<L...>) {
            [[maybe_unused]] std::size_t i = 0;
            (([&] {
                 constexpr auto tn = join<"d.", L::name>();
                 if constexpr (detail::find_leaf_v<tn, typename J::input_leaves> < J::n_inputs)
                     io.template input<tn>(uin[i].data());
                 ++i;
             }()),
             ...);
        }(inputs{});
        [&]<class... L>(tlist<L...>) {
            [[maybe_unused]] std::size_t i = 0;
            (([&] {
                 constexpr auto tn = join<"d.", L::name>();
                 if constexpr (detail::find_leaf_v<tn, typename J::param_leaves> < J::n_params)
                     std::copy(upar[i].begin(), upar[i].end(), jp.template get<tn>().begin());
                 ++i;
             }()),
             ...);
        }(params{});
        io.template output<0>(jy.data()).template output<1>(jv.data());
        J::run(jp, jws, batch, io);
    }
    // <v, J u> vs <J^T v, u>
    double vju = 0, jtvu = 0;
    for (std::size_t i = 0; i < jv.size(); ++i) vju += ct[i] * jv[i];
    [&]<class... L>(tlist<L...>) {
        [[maybe_unused]] std::size_t i = 0;
        (([&] {
             auto& g = grads[G::template grad<L::name>];
             for (std::size_t e = 0; e < g.size(); ++e) jtvu += g[e] * uin[i][e];
             ++i;
         }()),
         ...);
    }(inputs{});
    [&]<class... L>(tlist<L...>) {
        [[maybe_unused]] std::size_t i = 0;
        (([&] {
             auto& g = grads[G::template grad<L::name>];
             for (std::size_t e = 0; e < g.size(); ++e) jtvu += g[e] * upar[i][e];
             ++i;
         }()),
         ...);
    }(params{});
    rep.duality_error = rel(vju, jtvu);
    // JVP vs finite difference along u: d/dt sum(ct * f(x + t u))
    auto shift = [&](double t) {
        [&]<class... L>(tlist<L...>) {
            [[maybe_unused]] std::size_t i = 0;
            (([&] {
                 if constexpr (!detail::constant_leaf_v<Root, L>)
                     for (std::size_t e = 0; e < in[i].size(); ++e) in[i][e] += t * uin[i][e];
                 ++i;
             }()),
             ...);
        }(inputs{});
        [&]<class... L>(tlist<L...>) {
            [[maybe_unused]] std::size_t i = 0;
            (([&] {
                 auto w = p.template get<L::name>();
                 if constexpr (!detail::constant_leaf_v<Root, L>)
                     for (std::size_t e = 0; e < w.size(); ++e) w[e] += t * upar[i][e];
                 ++i;
             }()),
             ...);
        }(params{});
    };
    shift(h);
    double lp = loss();
    shift(-2 * h);
    double lm = loss();
    shift(h);
    rep.jvp_error = rel(vju, (lp - lm) / (2 * h));
    return rep;
}

} // namespace ctrec
