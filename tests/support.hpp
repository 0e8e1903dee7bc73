#pragma once
// Test support: deterministic leaf values, a forward runner that binds leaves by
// name, and tolerances. Naive references in the tests read the same values
// through leaf_value(), so they never share code with the library.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "ctrec/ad/check.hpp"
#include "ctrec/ctrec.hpp"

namespace test {

// A fixed pseudo-random value in [-1, 1] for element i of the leaf called name.
inline double leaf_value(std::string_view name, std::size_t i) {
    std::uint64_t h = 1469598103934665603ull;
    for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    h ^= (i + 1) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return static_cast<double>(h % 2000001) / 1000000.0 - 1.0;
}
inline std::int32_t id_value(std::string_view name, std::size_t i, std::size_t rows) {
    return static_cast<std::int32_t>(static_cast<std::size_t>((leaf_value(name, i) + 1.0) * 1e6) % rows);
}

using value_fn = std::function<double(std::string_view, std::size_t)>;

// Runs every root of program M for `batch` examples (leaves, ids and a gradient program's
// "cotangent" input take their values from f) and returns all outputs (batch x size each,
// or size when unbatched).
template <class M>
std::vector<std::vector<typename M::element_type>> run_all(std::size_t batch, value_fn f = leaf_value,
                                                           std::size_t id_rows = 1) {
    using T = typename M::element_type;
    typename M::parameters p;
    typename M::workspace ws;
    std::vector<std::vector<T>> in(M::n_inputs);
    std::vector<std::vector<std::int32_t>> ids(M::n_ids);
    typename M::io io;
    [&]<class... L>(ctrec::tlist<L...>) {
        [[maybe_unused]] std::size_t k = 0;
        (([&] {
             in[k].resize(batch * L::shape.size());
             for (std::size_t i = 0; i < in[k].size(); ++i) in[k][i] = static_cast<T>(f(L::name.view(), i));
             io.template input<L::name>(in[k].data());
             ++k;
         }()),
         ...);
    }(typename M::input_leaves{});
    [&]<class... L>(ctrec::tlist<L...>) {
        (([&] {
             auto w = p.template get<L::name>();
             for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<T>(f(L::name.view(), i));
         }()),
         ...);
    }(typename M::param_leaves{});
    [&]<class... L>(ctrec::tlist<L...>) {
        [[maybe_unused]] std::size_t k = 0;
        (([&] {
             ids[k].resize(batch * L::shape.size());
             for (std::size_t i = 0; i < ids[k].size(); ++i) ids[k][i] = id_value(L::name.view(), i, id_rows);
             io.template index<L::name>(ids[k].data());
             ++k;
         }()),
         ...);
    }(typename M::index_leaves{});
    std::vector<std::vector<T>> outs(M::n_outputs);
    [&]<std::size_t... O>(std::index_sequence<O...>) {
        ((outs[O].assign(M::template output_size<O> * (M::template output_batched<O> ? batch : 1), T(-12345)),
          io.template output<O>(outs[O].data())),
         ...);
    }(std::make_index_sequence<M::n_outputs>{});
    M::run(p, ws, batch, io);
    return outs;
}

// Output R of program<T, Expr, More...> for `batch` examples with leaf values from f.
template <class T, class Expr, std::size_t R = 0, class... More>
std::vector<T> run(std::size_t batch, value_fn f = leaf_value, std::size_t id_rows = 1) {
    return run_all<ctrec::program<T, Expr, More...>>(batch, f, id_rows)[R];
}

// Compares a program output with a naive reference, element by element.
template <class T>
void check_close(const std::vector<T>& got, const std::vector<double>& want, double tol) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        double err = std::abs(static_cast<double>(got[i]) - want[i]) / std::max(1.0, std::abs(want[i]));
        if (err > tol) {
            INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
            CHECK(err <= tol);
            return;
        }
    }
}

// Forward value in float64 and float32 against the reference, then derivatives.
template <class Expr>
void check_forward(std::size_t batch, const std::vector<double>& want, value_fn f = leaf_value, std::size_t id_rows = 1) {
    check_close(run<double, Expr>(batch, f, id_rows), want, 1e-12);
    check_close(run<float, Expr>(batch, f, id_rows), want, 2e-5);
}

template <class Expr>
void check_ad(std::size_t batch = 3, std::function<double(std::string_view, double)> shape = {}) {
    auto rep = ctrec::check_derivatives<Expr>(batch, 7, shape);
    INFO("worst gradient element: " << rep.worst << ", checked " << rep.checked);
    CHECK(rep.checked > 0);
    CHECK(rep.grad_error < 1e-6);
    CHECK(rep.jvp_error < 1e-6);
    CHECK(rep.duality_error < 1e-9);
}

} // namespace test
