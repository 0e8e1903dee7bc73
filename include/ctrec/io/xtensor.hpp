#pragma once
// xtensor at the user boundary: bind xtensor containers (and contiguous row-major views) as a
// program's inputs and outputs with their shapes checked against the model's, and see each
// parameter as an xtensor adaptor of its storage with the model's shape.
//
//   xt::xtensor<float, 2> x = ...;                       // (batch, 256): input "x" is (256)
//   xt::xtensor<float, 2> y = xt::empty<float>({batch, std::size_t(1)});
//   M::io io;
//   const std::size_t batch = ctrec::bind_input<"x", M>(io, x);   // the batch size it implies
//   ctrec::bind_output<0, M>(io, y, batch);
//   M::run(p, ws, batch, io);
//   auto W = ctrec::parameter<"mlp/dense_0/kernel", M>(p);         // (256, 64) adaptor, writable
//
// A batched value of per-example shape (d0, .., dk) binds to an expression of shape
// (batch, d0, .., dk); an unbatched one (a shared input, an unbatched output) to (d0, .., dk).
// Anything else, or an expression that is not contiguous and row-major, is rejected with an
// error naming the tensor, the expected shape and the given one. Raw pointers keep working:
// this only fills io's pointers.
#include <array>
#include <string>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>

#include "ctrec/core/error.hpp"
#include "ctrec/core/program.hpp"

namespace ctrec {

namespace detail {
inline std::string shape_string(const std::vector<std::size_t>& s) {
    std::string r = "(";
    for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + ")";
}
// The data pointer of a contiguous row-major expression of the expected shape (batch is taken
// from its first extent when `batch` is ~0); throws otherwise.
template <class E>
auto* checked_data(E& x, std::string_view what, const dims& d, bool batched, std::size_t& batch) {
    std::vector<std::size_t> want;
    if (batched) want.push_back(batch);
    for (std::size_t i = 0; i < d.rank; ++i) want.push_back(d.d[i]);
    std::vector<std::size_t> got(x.shape().begin(), x.shape().end());
    if (batched && batch == ~std::size_t(0) && !got.empty()) want[0] = got[0];
    if (got != want) {
        std::string e = shape_string(std::vector<std::size_t>(d.d, d.d + d.rank));
        if (batched)
            e = "(" + (batch == ~std::size_t(0) ? std::string("batch") : std::to_string(batch)) +
                (d.rank ? ", " + e.substr(1) : std::string(")"));
        throw error("ctrec: " + std::string(what) + " has shape " + e + ", the xtensor bound to it has " + shape_string(got));
    }
    // row-major and contiguous: stride k is the product of the extents after k (any stride of
    // an extent-1 axis is fine)
    std::size_t expect = 1;
    for (std::size_t k = got.size(); k-- > 0;) {
        if (got[k] != 1 && static_cast<std::size_t>(x.strides()[k]) != expect)
            throw error("ctrec: " + std::string(what) + ": the xtensor bound to it is not contiguous and row-major " +
                        "(copy it into an xt::xtensor first)");
        expect *= got[k];
    }
    if (batched) batch = got[0];
    return x.data() + x.data_offset();
}
} // namespace detail

// Binds input Name of program P to x; returns the batch size x's shape implies (0 for a shared
// input: it has no batch extent).
template <fixed_string Name, class P, class E>
std::size_t bind_input(typename P::io& io, const E& x) {
    constexpr std::size_t k = P::template input_index<Name>;
    constexpr node n = P::tab.nodes[P::input_ids[k]];
    std::size_t batch = ~std::size_t(0);
    const auto* d = detail::checked_data(x, "input '" + std::string(Name.view()) + "'", n.shape, n.batched, batch);
    io.in[k] = d;
    return n.batched ? batch : 0;
}

// Binds output R of program P to y, whose shape must be (batch, output shape) (or the output
// shape when it is unbatched).
template <std::size_t R, class P, class E>
void bind_output(typename P::io& io, E& y, std::size_t batch) {
    constexpr node n = P::tab.nodes[P::tab.roots[R]];
    auto* d = detail::checked_data(y, "output " + std::to_string(R), n.shape, n.batched, batch);
    io.out[R] = d;
}

// An xtensor of the right shape for output R (batch-major when batched), to bind with bind_output.
template <std::size_t R, class P>
auto make_output(std::size_t batch) {
    using T = typename P::element_type;
    constexpr node n = P::tab.nodes[P::tab.roots[R]];
    std::vector<std::size_t> s;
    if (n.batched) s.push_back(batch);
    for (std::size_t i = 0; i < n.shape.rank; ++i) s.push_back(n.shape.d[i]);
    return xt::xarray<T>::from_shape(s);
}

// Parameter Name of program P as an xtensor adaptor of p's storage, with the model's shape
// (rank and extents fixed by the model). Writing through it writes the parameter (call
// p.prepare() before scoring with const parameters, as after any change).
template <fixed_string Name, class P>
auto parameter(typename P::parameters& p) {
    constexpr std::size_t i = P::template param_index<Name>;
    constexpr dims d = P::tab.nodes[P::param_ids[i]].shape;
    std::array<std::size_t, d.rank> shape{};
    for (std::size_t k = 0; k < d.rank; ++k) shape[k] = d.d[k];
    auto s = p.get(i);
    return xt::adapt(s.data(), s.size(), xt::no_ownership(), shape);
}
template <fixed_string Name, class P>
auto parameter(const typename P::parameters& p) {
    constexpr std::size_t i = P::template param_index<Name>;
    constexpr dims d = P::tab.nodes[P::param_ids[i]].shape;
    std::array<std::size_t, d.rank> shape{};
    for (std::size_t k = 0; k < d.rank; ++k) shape[k] = d.d[k];
    auto s = p.get(i);
    return xt::adapt(s.data(), s.size(), xt::no_ownership(), shape);
}

// Copies an xtensor expression into parameter Name (shape checked; p is unchanged on error).
template <fixed_string Name, class P, class E>
void set_parameter(typename P::parameters& p, const E& value) {
    constexpr std::size_t i = P::template param_index<Name>;
    constexpr dims d = P::tab.nodes[P::param_ids[i]].shape;
    std::vector<std::size_t> want(d.d, d.d + d.rank), got(value.shape().begin(), value.shape().end());
    if (want != got)
        throw error("ctrec: parameter '" + std::string(Name.view()) + "' has shape " + detail::shape_string(want) +
                    ", the value given has " + detail::shape_string(got));
    auto dst = parameter<Name, P>(p);
    dst = value;
}

} // namespace ctrec
