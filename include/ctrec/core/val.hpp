#pragma once
// Values of a graph built in place: the DSL for code that builds many nodes in one constant
// evaluation (layers, models).
//
// An `expr` owns its graph, so every operation on exprs copies a whole fixed-capacity graph:
// cheap for a formula, but a deep model built from exprs in one constexpr initializer copies
// capacity x operations elements and runs into GCC's -fconstexpr-ops-limit (24 mixed-DCN layers
// did). A `val` is a node id plus a pointer to the graph under construction; its operations
// append to that graph and copy nothing:
//
//   constexpr expr cross(const expr& x0_) {
//       expr out = x0_;                       // one copy in
//       graph& g = out.g;
//       val x0{&g, x0_.id}, x = x0;
//       for (int i = 0; i < 3; ++i) x = x0 * (matmul(x, make_param(g, "W" ...)) + ...) + x;
//       out.id = x.id;                        // the same object out: no copy back
//       return out;
//   }
//
// The functions mirror dsl.hpp (same names, same shape checks: both build through build.hpp).
#include <initializer_list>
#include <string_view>

#include "ctrec/core/build.hpp"
#include "ctrec/core/matmul.hpp"

namespace ctrec {

void ctrec_error_values_of_different_graphs();

// A shape from run-time-computed extents: dims_of({in, units}).
constexpr dims dims_of(std::initializer_list<std::size_t> d) {
    dims r;
    for (std::size_t x : d) r.d[r.rank++] = x;
    return r;
}

struct val {
    graph* g = nullptr;
    std::uint32_t id = 0;
    constexpr const node& rec() const { return g->nodes[id]; }
    constexpr dims shape() const { return rec().shape; }
    constexpr bool batched() const { return rec().batched; }
    constexpr std::size_t rank() const { return rec().shape.rank; }
    constexpr std::size_t dim(std::size_t i) const { return rec().shape.d[i]; }
    constexpr std::size_t last() const { return rec().shape.d[rec().shape.rank - 1]; }
};

namespace detail {
constexpr graph& same_graph(val a, val b) {
    if (a.g != b.g) ctrec_error_values_of_different_graphs();
    return *a.g;
}
} // namespace detail

// ---- leaves -------------------------------------------------------------------------------------
// (named make_*: input<>, param<> and batch_size are the expr DSL's variable templates)
constexpr val make_input(graph& g, std::string_view name, dims s) { return {&g, build::leaf(g, opcode::input, s, true, name)}; }
constexpr val make_shared_input(graph& g, std::string_view name, dims s) {
    return {&g, build::leaf(g, opcode::input, s, false, name)};
}
constexpr val make_param(graph& g, std::string_view name, dims s) { return {&g, build::leaf(g, opcode::param, s, false, name)}; }
constexpr val constant(graph& g, double v, dims s = {}) { return {&g, build::constant(g, v, s)}; }
constexpr val make_batch_size(graph& g) { return {&g, build::batch_size(g)}; }
// Uniform [0, 1) numbers of stream `name`, shaped s per example (dropout masks): recomputed
// wherever read, so the forward and backward passes of a call see the same numbers.
constexpr val make_random(graph& g, std::string_view name, dims s) { return {&g, build::leaf(g, opcode::random, s, true, name)}; }
// Random numbers of any kind (core/random.hpp): per example, or shared = one draw per call for
// every example (an unbatched value: gate noise computed once per call); fixed_seed >= 0 gives
// constants of the model (a layer's mask_seed) instead of numbers seeded per call by io.seed.
constexpr val make_random(graph& g, std::string_view name, dims s, random_kind kind, bool shared = false,
                          std::int64_t fixed_seed = -1) {
    return {&g, build::random_leaf(g, s, kind, shared, fixed_seed, name)};
}

// ---- elementwise -------------------------------------------------------------------------------
constexpr val apply(opcode op, val a) { return {a.g, build::map(*a.g, op, a.id)}; }
constexpr val apply(opcode op, val a, val b) { return {a.g, build::map(detail::same_graph(a, b), op, a.id, b.id)}; }
constexpr val apply(opcode op, val a, val b, val c) {
    detail::same_graph(a, c);
    return {a.g, build::map(detail::same_graph(a, b), op, a.id, b.id, c.id)};
}
constexpr val operator+(val a, val b) { return apply(opcode::add, a, b); }
constexpr val operator-(val a, val b) { return apply(opcode::sub, a, b); }
constexpr val operator*(val a, val b) { return apply(opcode::mul, a, b); }
constexpr val operator/(val a, val b) { return apply(opcode::div, a, b); }
constexpr val operator-(val a) { return apply(opcode::neg, a); }
// with a scalar literal on either side
constexpr val operator+(val a, double b) { return a + constant(*a.g, b); }
constexpr val operator+(double a, val b) { return constant(*b.g, a) + b; }
constexpr val operator-(val a, double b) { return a - constant(*a.g, b); }
constexpr val operator-(double a, val b) { return constant(*b.g, a) - b; }
constexpr val operator*(val a, double b) { return a * constant(*a.g, b); }
constexpr val operator*(double a, val b) { return constant(*b.g, a) * b; }
constexpr val operator/(val a, double b) { return a / constant(*a.g, b); }
constexpr val operator/(double a, val b) { return constant(*b.g, a) / b; }

constexpr val exp(val a) { return apply(opcode::exp, a); }
constexpr val log(val a) { return apply(opcode::log, a); }
constexpr val log1p(val a) { return apply(opcode::log1p, a); }
constexpr val sqrt(val a) { return apply(opcode::sqrt, a); }
constexpr val rsqrt(val a) { return apply(opcode::rsqrt, a); }
constexpr val tanh(val a) { return apply(opcode::tanh, a); }
constexpr val sigmoid(val a) { return apply(opcode::sigmoid, a); }
constexpr val relu(val a) { return apply(opcode::relu, a); }
constexpr val abs(val a) { return apply(opcode::abs, a); }
constexpr val erf(val a) { return apply(opcode::erf, a); }
constexpr val maximum(val a, val b) { return apply(opcode::maximum, a, b); }
constexpr val maximum(val a, double b) { return maximum(a, constant(*a.g, b)); }
constexpr val minimum(val a, val b) { return apply(opcode::minimum, a, b); }
constexpr val minimum(val a, double b) { return minimum(a, constant(*a.g, b)); }
constexpr val greater(val a, val b) { return apply(opcode::greater, a, b); }
constexpr val greater(val a, double b) { return greater(a, constant(*a.g, b)); }
constexpr val greater_equal(val a, val b) { return apply(opcode::greater_equal, a, b); }
constexpr val greater_equal(val a, double b) { return greater_equal(a, constant(*a.g, b)); }
// where(c, a, b): a where c != 0, else b
constexpr val where(val c, val a, val b) { return apply(opcode::where, c, a, b); }
constexpr val where(val c, val a, double b) { return where(c, a, constant(*c.g, b)); }

// ---- contraction ---------------------------------------------------------------------------------
constexpr val einsum(std::string_view spec, val a, val b) {
    fixed_string<32> fs{};
    for (std::size_t i = 0; i < spec.size() && i < 31; ++i) fs.v[i] = spec[i];
    const contract_spec s = parse_contract(fs);  // a malformed spec stays unparsed: contract() rejects it
    return {a.g, build::contract(detail::same_graph(a, b), s, a.id, b.id)};
}
// matmul: (K) x (K, N), (M, K) x (K, N), (G, M, K) x (K, N); a concatenation holding broadcast
// pieces is split (matmul.hpp)
constexpr val matmul(val a, val b) { return {a.g, build::matmul(detail::same_graph(a, b), a.id, b.id)}; }
// khatri_rao_matmul(P, Q, W): out[r, j] = sum_{h, m} P[r, h] Q[r, m] W[h M + m, j] per example, P (R, H),
// Q (R, M), W (H M, J) unbatched; the R x H x M product is never stored (build.hpp, CIN)
constexpr val khatri_rao_matmul(val p, val q, val w) {
    detail::same_graph(p, w);
    return {p.g, build::kr_matmul(detail::same_graph(p, q), p.id, q.id, w.id)};
}
// the last two per-example axes swapped
constexpr val transpose(val a) { return {a.g, build::transpose(*a.g, a.id)}; }

// ---- reductions -----------------------------------------------------------------------------------
constexpr unsigned axes_mask(dims s, std::initializer_list<std::size_t> axes) {
    unsigned mask = 0;
    for (std::size_t ax : axes) {
        if (ax >= s.rank) ctrec_shape_error_reduction_axis_out_of_range();
        mask |= 1u << ax;
    }
    return axes.size() == 0 ? (1u << s.rank) - 1u : mask;
}
// sum over every per-example axis, or over the axes listed
constexpr val sum(val a, std::initializer_list<std::size_t> axes = {}) {
    return {a.g, build::reduce_sum(*a.g, a.id, axes_mask(a.shape(), axes))};
}
constexpr val sum_mask(val a, unsigned mask) { return {a.g, build::reduce_sum(*a.g, a.id, mask)}; }
// no derivative: under stop_gradient only (softmax's shift)
constexpr val max(val a, std::initializer_list<std::size_t> axes) {
    if (axes.size() == 0) ctrec_shape_error_reduction_axis_out_of_range();
    return {a.g, build::reduce(*a.g, opcode::reduce_max, a.id, axes_mask(a.shape(), axes))};
}
constexpr val batch_sum(val a) { return {a.g, build::batch_sum(*a.g, a.id)}; }
constexpr val batch_mean(val a) { return batch_sum(a) / make_batch_size(*a.g); }

// ---- shape ops --------------------------------------------------------------------------------------
constexpr val reshape(val a, dims s) { return {a.g, build::reshape(*a.g, a.id, s)}; }
constexpr val stop_gradient(val a) { return {a.g, build::stop_gradient(*a.g, a.id)}; }
constexpr val slice(val a, std::size_t axis, std::size_t begin, std::size_t end) {
    return {a.g, build::slice(*a.g, a.id, static_cast<std::uint32_t>(axis), static_cast<std::uint32_t>(begin), end - begin)};
}
// per-example broadcast to shape s (NumPy rules)
constexpr val broadcast_to(val a, dims s) { return {a.g, build::broadcast_to(*a.g, a.id, s, false)}; }
constexpr val concat(std::size_t axis, const val* parts, std::size_t n) {
    std::uint32_t ids[max_nodes]{};
    for (std::size_t i = 0; i < n; ++i) detail::same_graph(parts[0], parts[i]), ids[i] = parts[i].id;
    return {parts[0].g, build::concat(*parts[0].g, static_cast<std::uint32_t>(axis), ids, static_cast<std::uint32_t>(n))};
}
constexpr val concat(std::size_t axis, std::initializer_list<val> parts) { return concat(axis, parts.begin(), parts.size()); }

// ---- composites ---------------------------------------------------------------------------------------
// softmax along one axis, shifted by the (stop_gradient) max
constexpr val softmax(val x, std::size_t axis) {
    const dims kd = keepdims(x.shape(), 1u << axis);
    val e = exp(x - reshape(stop_gradient(max(x, {axis})), kd));
    return e / reshape(sum(e, {axis}), kd);
}
// TF's l2_normalize: x * rsqrt(max(sum(x^2, axis), epsilon))
constexpr val l2_normalize(val x, std::size_t axis, double eps = 1e-12) {
    const dims kd = keepdims(x.shape(), 1u << axis);
    return x * reshape(rsqrt(maximum(sum(x * x, {axis}), eps)), kd);
}
// softmax(x x^T) x per example, x (N, K): one fused node, no N x N value (build.hpp)
constexpr val self_attention(val x) { return {x.g, build::attention(*x.g, x.id)}; }

} // namespace ctrec
