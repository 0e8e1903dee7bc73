#pragma once
// Builders: constexpr functions that append one node to a graph (operands by id), check its
// shapes and derive its shape and batchedness. The DSL (dsl.hpp) and differentiation
// (autodiff.hpp) both build through these, so every node is checked the same way.
//
// A shape error calls a non-constexpr function named for the mistake; GCC reports that name
// with the chain of the user's calls ("in 'constexpr' expansion of ...") that led to it.
#include "ctrec/core/graph.hpp"

namespace ctrec {

void ctrec_shape_error_elementwise_operands_do_not_broadcast();
void ctrec_shape_error_einsum_spec_does_not_fit_the_operand_shapes();
void ctrec_shape_error_reshape_changes_the_number_of_elements();
void ctrec_shape_error_reduction_axis_out_of_range();
void ctrec_shape_error_concat_operands_differ_off_the_axis();
void ctrec_shape_error_slice_out_of_range();
void ctrec_shape_error_matmul_needs_K_by_N_weights_matching_the_last_axis();
void ctrec_shape_error_batch_sum_of_an_unbatched_value();
void ctrec_shape_error_rank_above_8();

namespace build {

constexpr std::uint32_t leaf(graph& g, opcode op, dims s, bool batched, std::string_view name) {
    node r;
    r.op = op;
    r.shape = s;
    r.batched = batched;
    return g.intern(r, nullptr, name);
}
constexpr std::uint32_t constant(graph& g, double v, dims s = {}) {
    node r;
    r.op = opcode::constant;
    r.shape = s;
    r.value = v;
    return g.intern(r, nullptr);
}
constexpr std::uint32_t batch_size(graph& g) {
    node r;
    r.op = opcode::batch_size;
    return g.intern(r, nullptr);
}

constexpr bool is_constant(const graph& g, std::uint32_t i, double v) {
    return g.nodes[i].op == opcode::constant && g.nodes[i].value == v;
}

// Elementwise op over 1-3 operands with NumPy broadcasting.
constexpr std::uint32_t map(graph& g, opcode op, std::uint32_t a, std::uint32_t b = ~0u, std::uint32_t c = ~0u) {
    std::uint32_t ops[3] = {a, b, c};
    const std::uint32_t n = c != ~0u ? 3 : b != ~0u ? 2 : 1;
    node r;
    r.op = op;
    r.nops = n;
    dims s{};
    bool batched = false;
    for (std::uint32_t j = 0; j < n; ++j) {
        const node& o = g.nodes[ops[j]];
        if (!can_broadcast(s, o.shape)) ctrec_shape_error_elementwise_operands_do_not_broadcast();
        s = broadcast(s, o.shape);
        batched = batched || o.batched;
    }
    if (op == opcode::batch_broadcast) batched = true;
    r.shape = s;
    r.batched = batched;
    // light algebra that keeps derivative graphs small: x * 1, 1 * x, x + 0, 0 + x, x - 0
    if (n == 2 && g.nodes[a].shape == s && g.nodes[a].batched == batched &&
        ((op == opcode::mul && is_constant(g, b, 1.0)) || ((op == opcode::add || op == opcode::sub) && is_constant(g, b, 0.0))))
        return a;
    if (n == 2 && g.nodes[b].shape == s && g.nodes[b].batched == batched &&
        ((op == opcode::mul && is_constant(g, a, 1.0)) || (op == opcode::add && is_constant(g, a, 0.0))))
        return b;
    return g.intern(r, ops);
}

constexpr std::uint32_t contract(graph& g, contract_spec s, std::uint32_t a, std::uint32_t b, bool keep_batch = true) {
    const node& x = g.nodes[a];
    const node& y = g.nodes[b];
    if (!ctrec::detail::contract_ok(s, x.shape, y.shape)) ctrec_shape_error_einsum_spec_does_not_fit_the_operand_shapes();
    node r;
    r.op = opcode::contract;
    r.spec = s;
    r.shape = ctrec::detail::contract_dims(s, x.shape, y.shape);
    r.batched = keep_batch && (x.batched || y.batched);
    r.keep_batch = keep_batch || !(x.batched || y.batched);  // nothing to sum: canonical form
    r.nops = 2;
    std::uint32_t ops[2] = {a, b};
    return g.intern(r, ops);
}

constexpr std::uint32_t reshape(graph& g, std::uint32_t a, dims s) {
    const node& x = g.nodes[a];
    if (s.size() != x.shape.size()) ctrec_shape_error_reshape_changes_the_number_of_elements();
    if (s == x.shape) return a;
    // values without a buffer are not viewed: a constant is refilled, the batch size broadcast
    if (x.op == opcode::constant) return constant(g, x.value, s);
    if (x.op == opcode::batch_size) return map(g, opcode::add, a, constant(g, 0.0, s));
    if (x.op == opcode::reshape) a = g.operand(a, 0);  // a reshape of a reshape is one reshape
    if (g.nodes[a].shape == s) return a;
    node r;
    r.op = opcode::reshape;
    r.shape = s;
    r.batched = g.nodes[a].batched;
    r.nops = 1;
    return g.intern(r, &a);
}

constexpr std::uint32_t unary_struct(graph& g, opcode op, std::uint32_t a, dims s, bool batched) {
    node r;
    r.op = op;
    r.shape = s;
    r.batched = batched;
    r.nops = 1;
    return g.intern(r, &a);
}

constexpr std::uint32_t stop_gradient(graph& g, std::uint32_t a) {
    if (g.nodes[a].op == opcode::stop_gradient || g.nodes[a].op == opcode::constant) return a;
    return unary_struct(g, opcode::stop_gradient, a, g.nodes[a].shape, g.nodes[a].batched);
}

constexpr std::uint32_t reduce(graph& g, opcode op, std::uint32_t a, unsigned mask) {
    const node& x = g.nodes[a];
    if (mask >> x.shape.rank) ctrec_shape_error_reduction_axis_out_of_range();
    if (mask == 0) return a;
    node r;
    r.op = op;
    r.mask = mask;
    r.shape = reduce_dims(x.shape, mask);
    r.batched = x.batched;
    r.nops = 1;
    return g.intern(r, &a);
}

constexpr std::uint32_t reduce_sum(graph& g, std::uint32_t a, unsigned mask) {
    return reduce(g, opcode::reduce_sum, a, mask);
}

constexpr std::uint32_t batch_sum(graph& g, std::uint32_t a) {
    if (!g.nodes[a].batched) ctrec_shape_error_batch_sum_of_an_unbatched_value();
    return unary_struct(g, opcode::batch_sum, a, g.nodes[a].shape, false);
}

constexpr std::uint32_t concat(graph& g, std::uint32_t axis, const std::uint32_t* ops, std::uint32_t n) {
    if (n == 1) return ops[0];
    dims s = g.nodes[ops[0]].shape;
    if (axis >= s.rank) ctrec_shape_error_reduction_axis_out_of_range();
    bool batched = false;
    std::size_t total = 0;
    for (std::uint32_t j = 0; j < n; ++j) {
        const dims o = g.nodes[ops[j]].shape;
        if (o.rank != s.rank) ctrec_shape_error_concat_operands_differ_off_the_axis();
        for (std::size_t k = 0; k < s.rank; ++k)
            if (k != axis && o.d[k] != s.d[k]) ctrec_shape_error_concat_operands_differ_off_the_axis();
        total += o.d[axis];
        batched = batched || g.nodes[ops[j]].batched;
    }
    s.d[axis] = total;
    node r;
    r.op = opcode::concat;
    r.axis = axis;
    r.shape = s;
    r.batched = batched;
    r.nops = n;
    return g.intern(r, ops);
}

constexpr std::uint32_t slice(graph& g, std::uint32_t a, std::uint32_t axis, std::uint32_t begin, std::size_t len) {
    dims s = g.nodes[a].shape;
    if (axis >= s.rank || begin + len > s.d[axis]) ctrec_shape_error_slice_out_of_range();
    if (begin == 0 && len == s.d[axis]) return a;
    s.d[axis] = len;
    node r;
    r.op = opcode::slice;
    r.axis = axis;
    r.begin = begin;
    r.shape = s;
    r.batched = g.nodes[a].batched;
    r.nops = 1;
    return g.intern(r, &a);
}

constexpr std::uint32_t pad(graph& g, std::uint32_t a, std::uint32_t axis, std::uint32_t before, std::size_t total) {
    dims s = g.nodes[a].shape;
    if (axis >= s.rank || before + s.d[axis] > total) ctrec_shape_error_slice_out_of_range();
    if (total == s.d[axis]) return a;
    s.d[axis] = total;
    node r;
    r.op = opcode::pad;
    r.axis = axis;
    r.begin = before;
    r.shape = s;
    r.batched = g.nodes[a].batched;
    r.nops = 1;
    return g.intern(r, &a);
}

// x broadcast (NumPy rules) to shape s, batched if `batched`.
constexpr std::uint32_t broadcast_to(graph& g, std::uint32_t a, dims s, bool batched) {
    const node& x = g.nodes[a];
    std::uint32_t r = a;
    if (x.op == opcode::constant && !(x.shape == s)) r = constant(g, x.value, s);
    else if (!(x.shape == s)) r = map(g, opcode::add, a, constant(g, 0.0, s));
    if (batched && !g.nodes[r].batched) r = map(g, opcode::batch_broadcast, r);
    return r;
}

// The sum of contribution c (shaped as a broadcast of node t's shape, possibly batched when
// t is not) back to t's shape and batchedness: the reverse of broadcasting.
constexpr std::uint32_t unbroadcast(graph& g, std::uint32_t c, std::uint32_t t) {
    const dims ts = g.nodes[t].shape;
    if (g.nodes[c].batched && !g.nodes[t].batched) c = batch_sum(g, c);
    const dims cs = g.nodes[c].shape;
    if (cs == ts) return c;
    unsigned mask = 0;
    for (std::size_t i = 0; i < cs.rank; ++i) {
        const std::size_t k = cs.rank - 1 - i;  // aligned from the right
        const std::size_t tv = i < ts.rank ? ts.d[ts.rank - 1 - i] : 0;
        if (tv != cs.d[k]) mask |= 1u << k;  // missing in t, or 1 there
    }
    return reshape(g, reduce_sum(g, c, mask), ts);
}

} // namespace build
} // namespace ctrec
