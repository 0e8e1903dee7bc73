#pragma once
// initialize<Inits>(params, seed): gives every variable a layer declared (a result's
// `inits`) its initial value in the parameters of any program built from that model.
//
//   constexpr auto r = layers::mlp<"mlp", cfg, layers::mode::train>(x);
//   Train::parameters p;
//   layers::initialize<decltype(r)::inits>(p, 42);
//
// Each variable draws from its own stream, derive_seed(seed, name), so a scoring and a
// training program of the same model get identical values whatever other variables they
// hold. Variables the program does not use (e.g. a monitor state in a scoring program)
// are skipped. Column-norm variables (Dense's kernel norm) are computed after all plain
// initializers, from the kernel's initial values, which must then be in the program.
#include <cmath>
#include <type_traits>

#include "ctrec/layers/layer.hpp"

namespace ctrec::layers {

namespace detail {
template <class I> struct is_column_norm : std::false_type {};
template <fixed_string N, fixed_string O, dims S> struct is_column_norm<column_norm_init<N, O, S>> : std::true_type {};

template <class Params, fixed_string Name>
constexpr bool has_param() { return Params::position(Name.view()) < Params::count; }
} // namespace detail

template <class Inits, class Params>
void initialize(Params& p, std::uint64_t seed) {
    using T = std::remove_cvref_t<decltype(p.data()[0])>;
    [&]<class... I>(tlist<I...>) {
        // plain initializers first, then values derived from them
        (([&] {
             if constexpr (!detail::is_column_norm<I>::value && detail::has_param<Params, I::name>()) {
                 static_assert(Params::shapes[Params::position(I::name.view())] == I::shape,
                               "ctrec::layers::initialize: a variable's declared shape differs from the program's");
                 init::fill(I::spec.get(), p.template get<I::name>(), I::shape, init::derive_seed(seed, I::name.view()));
             }
         }()),
         ...);
        (([&] {
             if constexpr (detail::is_column_norm<I>::value && detail::has_param<Params, I::name>()) {
                 static_assert(detail::has_param<Params, I::of>(),
                               "ctrec::layers::initialize: a kernel-norm variable needs its kernel in the same program");
                 auto k = p.template get<I::of>();
                 auto g = p.template get<I::name>();
                 const std::size_t cols = g.size(), rows = k.size() / cols;
                 for (std::size_t j = 0; j < cols; ++j) {
                     double s = 0;
                     for (std::size_t i = 0; i < rows; ++i) s += static_cast<double>(k[i * cols + j]) * k[i * cols + j];
                     g[j] = static_cast<T>(std::sqrt(s));  // plain Euclidean norm, no epsilon (spec 2.4)
                 }
             }
         }()),
         ...);
    }(Inits{});
}

} // namespace ctrec::layers
