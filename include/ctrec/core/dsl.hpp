#pragma once
// The DSL: the same spelling as the type core (core/dsl.hpp), but
// every expression is a constexpr value of type `expr`.
//
//   constexpr auto x = ctrec::input<"x", 256>;       // (B, 256), B at run time
//   constexpr auto W = ctrec::param<"W", 256, 64>;   // (256, 64)
//   constexpr auto y = ctrec::sigmoid(ctrec::matmul(x, W) + ctrec::param<"b", 64>);
//   using M = ctrec::program<float, y>;               // keyed by the object y, not its type
//
// Layers are ordinary constexpr functions of `expr` values; names built at compile time use
// `name_string` (a fixed-capacity string: "dcn/" + "kernel_" + 3).
#include <initializer_list>

#include "ctrec/core/build.hpp"
#include "ctrec/core/matmul.hpp"

namespace ctrec {

// ---- names built at compile time --------------------------------------------------------
struct name_string {
    char s[120]{};
    std::size_t n = 0;
    constexpr name_string() = default;
    constexpr name_string(std::string_view v) {
        for (char c : v) s[n++] = c;
    }
    template <std::size_t N>
    constexpr name_string(const char (&v)[N]) : name_string(std::string_view(v, N - 1)) {}
    constexpr std::string_view view() const { return {s, n}; }
    constexpr name_string operator+(std::string_view v) const {
        name_string r = *this;
        for (char c : v) r.s[r.n++] = c;
        return r;
    }
    constexpr name_string operator+(const name_string& v) const { return *this + v.view(); }
    template <std::size_t N>
    constexpr name_string operator+(const char (&v)[N]) const {
        return *this + std::string_view(v, N - 1);
    }
    constexpr name_string operator+(std::size_t i) const {
        char d[24]{};
        std::size_t k = 0;
        do d[k++] = static_cast<char>('0' + i % 10), i /= 10;
        while (i);
        name_string r = *this;
        while (k) r.s[r.n++] = d[--k];
        return r;
    }
};

// ---- leaves ---------------------------------------------------------------------------------
constexpr expr make_leaf(opcode op, dims s, bool batched, std::string_view name) {
    expr e;
    e.id = build::leaf(e.g, op, s, batched, name);
    return e;
}
constexpr expr input_named(std::string_view name, dims s) { return make_leaf(opcode::input, s, true, name); }
constexpr expr shared_input_named(std::string_view name, dims s) { return make_leaf(opcode::input, s, false, name); }
constexpr expr param_named(std::string_view name, dims s) { return make_leaf(opcode::param, s, false, name); }
constexpr expr constant(double v, dims s = {}) {
    expr e;
    e.id = build::constant(e.g, v, s);
    return e;
}

template <fixed_string Name, std::size_t... D>
inline constexpr expr input = input_named(Name.view(), make_dims<D...>());
template <fixed_string Name, std::size_t... D>
inline constexpr expr param = param_named(Name.view(), make_dims<D...>());
// The same for every example of a call (one user against many candidates).
template <fixed_string Name, std::size_t... D>
inline constexpr expr shared_input = shared_input_named(Name.view(), make_dims<D...>());
template <double V>
inline constexpr expr lit = constant(V);
// Per-example uniform [0, 1) numbers of stream Name (see opcode::random), seeded per call by io.seed.
template <fixed_string Name, std::size_t... D>
inline constexpr expr random_uniform = make_leaf(opcode::random, make_dims<D...>(), true, Name.view());
// Random numbers of any kind (core/random.hpp): per example, or Shared = one draw per call
// used by every example (an unbatched value).
template <fixed_string Name, random_kind Kind, bool Shared, std::size_t... D>
inline constexpr expr random_leaf = [] {
    expr e;
    e.id = build::random_leaf(e.g, make_dims<D...>(), Kind, Shared, -1, Name.view());
    return e;
}();
inline constexpr expr batch_size = [] {
    expr e;
    e.id = build::batch_size(e.g);
    return e;
}();

// ---- combining expressions -------------------------------------------------------------------
constexpr expr apply(opcode op, const expr& a) {
    expr r{a.g, 0};
    r.id = build::map(r.g, op, a.id);
    return r;
}
constexpr expr apply(opcode op, const expr& a, const expr& b) {
    const expr* es[2] = {&a, &b};
    std::uint32_t ids[2]{};
    expr r{join_all(es, ids), 0};
    r.id = build::map(r.g, op, ids[0], ids[1]);
    return r;
}
constexpr expr apply(opcode op, const expr& a, const expr& b, const expr& c) {
    const expr* es[3] = {&a, &b, &c};
    std::uint32_t ids[3]{};
    expr r{join_all(es, ids), 0};
    r.id = build::map(r.g, op, ids[0], ids[1], ids[2]);
    return r;
}

constexpr expr operator+(const expr& a, const expr& b) { return apply(opcode::add, a, b); }
constexpr expr operator-(const expr& a, const expr& b) { return apply(opcode::sub, a, b); }
constexpr expr operator*(const expr& a, const expr& b) { return apply(opcode::mul, a, b); }
constexpr expr operator/(const expr& a, const expr& b) { return apply(opcode::div, a, b); }
constexpr expr operator-(const expr& a) { return apply(opcode::neg, a); }
constexpr expr exp(const expr& a) { return apply(opcode::exp, a); }
constexpr expr log(const expr& a) { return apply(opcode::log, a); }
constexpr expr log1p(const expr& a) { return apply(opcode::log1p, a); }
constexpr expr sqrt(const expr& a) { return apply(opcode::sqrt, a); }
constexpr expr rsqrt(const expr& a) { return apply(opcode::rsqrt, a); }
constexpr expr tanh(const expr& a) { return apply(opcode::tanh, a); }
constexpr expr sigmoid(const expr& a) { return apply(opcode::sigmoid, a); }
constexpr expr relu(const expr& a) { return apply(opcode::relu, a); }
constexpr expr maximum(const expr& a, const expr& b) { return apply(opcode::maximum, a, b); }
constexpr expr minimum(const expr& a, const expr& b) { return apply(opcode::minimum, a, b); }
constexpr expr abs(const expr& a) { return apply(opcode::abs, a); }
constexpr expr erf(const expr& a) { return apply(opcode::erf, a); }
constexpr expr greater(const expr& a, const expr& b) { return apply(opcode::greater, a, b); }
constexpr expr greater_equal(const expr& a, const expr& b) { return apply(opcode::greater_equal, a, b); }
// where(c, a, b): a where c != 0, else b.
constexpr expr where(const expr& c, const expr& a, const expr& b) { return apply(opcode::where, c, a, b); }

// ---- contraction ------------------------------------------------------------------------------
constexpr expr einsum(std::string_view spec, const expr& a, const expr& b) {
    fixed_string<32> fs{};
    for (std::size_t i = 0; i < spec.size() && i < 31; ++i) fs.v[i] = spec[i];
    const contract_spec s = parse_contract(fs);  // a malformed spec stays unparsed: contract() rejects it
    const expr* es[2] = {&a, &b};
    std::uint32_t ids[2]{};
    expr r{join_all(es, ids), 0};
    r.id = build::contract(r.g, s, ids[0], ids[1]);
    return r;
}
template <fixed_string Spec>
constexpr expr einsum(const expr& a, const expr& b) {
    return einsum(Spec.view(), a, b);
}
// matmul: (K) x (K, N), (M, K) x (K, N), (G, M, K) x (K, N); a concatenation holding broadcast
// pieces is split (matmul.hpp)
constexpr expr matmul(const expr& a, const expr& b) {
    const expr* es[2] = {&a, &b};
    std::uint32_t ids[2]{};
    expr r{join_all(es, ids), 0};
    r.id = build::matmul(r.g, ids[0], ids[1]);
    return r;
}
// khatri_rao_matmul(P, Q, W): out[r, j] = sum_{h, m} P[r, h] Q[r, m] W[h M + m, j] per example, P (R, H)
// and Q (R, M) per example (an unbatched one is broadcast), W (H M, J) unbatched. The product
// P[r, h] Q[r, m] (R x H x M per example: CIN's outer-product tensor) is never stored, forward or
// backward (build.hpp, kernels/cpu/kr_gemm.hpp).
constexpr expr khatri_rao_matmul(const expr& p, const expr& q, const expr& w) {
    const expr* es[3] = {&p, &q, &w};
    std::uint32_t ids[3]{};
    expr r{join_all(es, ids), 0};
    r.id = build::kr_matmul(r.g, ids[0], ids[1], ids[2]);
    return r;
}
// the last two per-example axes swapped (x^T for a matrix)
constexpr expr transpose(const expr& a) {
    expr r{a.g, 0};
    r.id = build::transpose(r.g, a.id);
    return r;
}

// ---- reductions ---------------------------------------------------------------------------------
// sum(x) over every per-example axis; sum(x, {0, 2}) over axes 0 and 2.
constexpr expr sum(const expr& a, std::initializer_list<std::size_t> axes = {}) {
    unsigned mask = 0;
    for (std::size_t ax : axes) {
        if (ax >= a.shape().rank) ctrec_shape_error_reduction_axis_out_of_range();
        mask |= 1u << ax;
    }
    if (axes.size() == 0) mask = (1u << a.shape().rank) - 1u;
    expr r{a.g, 0};
    r.id = build::reduce_sum(r.g, a.id, mask);
    return r;
}
// max over axes. It has no derivative rule in this core: use it under stop_gradient (as
// softmax does); differentiating through it is a compile-time error.
constexpr expr max(const expr& a, std::initializer_list<std::size_t> axes) {
    unsigned mask = 0;
    for (std::size_t ax : axes) {
        if (ax >= a.shape().rank) ctrec_shape_error_reduction_axis_out_of_range();
        mask |= 1u << ax;
    }
    expr r{a.g, 0};
    r.id = build::reduce(r.g, opcode::reduce_max, a.id, mask);
    return r;
}
constexpr expr batch_sum(const expr& a) {
    expr r{a.g, 0};
    r.id = build::batch_sum(r.g, a.id);
    return r;
}
constexpr expr batch_mean(const expr& a) { return batch_sum(a) / batch_size; }

// ---- shape ops ----------------------------------------------------------------------------------
constexpr expr reshape(const expr& a, dims s) {
    expr r{a.g, 0};
    r.id = build::reshape(r.g, a.id, s);
    return r;
}
template <std::size_t... D>
constexpr expr reshape(const expr& a) {
    return reshape(a, make_dims<D...>());
}
constexpr expr stop_gradient(const expr& a) {
    expr r{a.g, 0};
    r.id = build::stop_gradient(r.g, a.id);
    return r;
}
constexpr expr slice(const expr& a, std::size_t axis, std::size_t begin, std::size_t end) {
    expr r{a.g, 0};
    r.id = build::slice(r.g, a.id, static_cast<std::uint32_t>(axis), static_cast<std::uint32_t>(begin), end - begin);
    return r;
}
// per-example broadcast to shape s (NumPy rules)
constexpr expr broadcast_to(const expr& a, dims s) {
    expr r{a.g, 0};
    r.id = build::broadcast_to(r.g, a.id, s, false);
    return r;
}
// concat(axis, {a, b, c, ...}): any number of operands (26 fields, 160 pair results).
constexpr expr concat(std::size_t axis, std::initializer_list<expr> parts) {
    const expr* first = parts.begin();
    std::size_t longest = 0;
    for (std::size_t i = 1; i < parts.size(); ++i)
        if (first[i].g.n > first[longest].g.n) longest = i;
    expr r{first[longest].g, 0};
    std::uint32_t ids[max_nodes]{};
    for (std::size_t i = 0; i < parts.size(); ++i) join_into(r.g, first[i], ids[i]);
    r.id = build::concat(r.g, static_cast<std::uint32_t>(axis), ids, static_cast<std::uint32_t>(parts.size()));
    return r;
}
template <std::size_t Axis, class... E>
constexpr expr concat(const E&... parts) {
    return concat(Axis, {parts...});
}

// ---- composites (their derivatives follow from their parts) --------------------------------------
// softmax along one axis; the max shift is a stop_gradient (the softmax does not depend on it,
// so its derivative would only add terms that cancel).
constexpr expr softmax(const expr& x, std::size_t axis) {
    const dims kd = keepdims(x.shape(), 1u << axis);
    expr shift = reshape(stop_gradient(max(x, {axis})), kd);
    expr e = exp(x - shift);
    return e / reshape(sum(e, {axis}), kd);
}
// TF's l2_normalize: x * rsqrt(max(sum(x^2, axis), epsilon)).
constexpr expr l2_normalize(const expr& x, std::size_t axis, double eps = 1e-12) {
    const dims kd = keepdims(x.shape(), 1u << axis);
    return x * reshape(rsqrt(maximum(sum(x * x, {axis}), constant(eps))), kd);
}
// self_attention(x) = softmax(x x^T) x per example, x (N, K), the softmax along the last axis:
// the values of einsum("ij,jk->ik", softmax(einsum("ik,jk->ij", x, x), 1), x) as one fused node
// whose scores are never stored (build.hpp, kernels/cpu/attention.hpp).
constexpr expr self_attention(const expr& x) {
    expr r{x.g, 0};
    r.id = build::attention(r.g, x.id);
    return r;
}

} // namespace ctrec
