#pragma once
// Builders: constexpr functions that append one node to a graph (operands by id), check its
// shapes and derive its shape and batchedness. The DSL (dsl.hpp) and differentiation
// (autodiff.hpp) both build through these, so every node is checked the same way.
//
// A shape error calls report_shape_error (core/shape_error.hpp) with a non-constexpr function
// named for the mistake and the offending numbers; GCC reports both with the chain of the user's
// calls ("in 'constexpr' expansion of ...") that led to it.
#include "ctrec/core/graph.hpp"
#include "ctrec/core/shape_error.hpp"
#include <bit>

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
void ctrec_shape_error_self_attention_needs_a_batched_N_by_K_matrix();
void ctrec_shape_error_self_attention_N_by_K_too_large_for_the_cpu_kernels_stack_scratch();

namespace build {

constexpr std::uint32_t leaf(graph& g, opcode op, dims s, bool batched, std::string_view name) {
    node r;
    r.op = op;
    r.shape = s;
    r.batched = batched;
    return g.intern(r, nullptr, name);
}
// A random leaf (core/random.hpp): kind in axis; shared = one draw per call for every example
// (an unbatched leaf); fixed_seed >= 0: seeded by that value (below 2^53) instead of io.seed.
constexpr std::uint32_t random_leaf(graph& g, dims s, random_kind kind, bool shared, std::int64_t fixed_seed,
                                    std::string_view name) {
    node r;
    r.op = opcode::random;
    r.shape = s;
    r.batched = !shared;
    r.axis = static_cast<std::uint32_t>(kind);
    if (fixed_seed >= 0) r.begin = 1, r.value = static_cast<double>(fixed_seed);
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
        if (!can_broadcast(s, o.shape)) report_broadcast_error(ctrec_shape_error_elementwise_operands_do_not_broadcast, s, o.shape);
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

// A value with a buffer of its own: a constant, the batch size or a random leaf (which have
// none; GEMM operands must be stored) is copied by an elementwise step (-(-x) is exact).
constexpr std::uint32_t stored(graph& g, std::uint32_t a) {
    const opcode o = g.nodes[a].op;
    if (o != opcode::constant && o != opcode::batch_size && o != opcode::random) return a;
    return g.nodes[a].batched ? map(g, opcode::batch_broadcast, a) : map(g, opcode::neg, map(g, opcode::neg, a));
}

// An einsum spec that does not fit: the rank of the operand it misfits, else a shared index's
// extent in b and in a.
constexpr void report_contract_error(void (*mistake)(), contract_spec p, dims a, dims b) {
    if (p.parsed && p.ra != a.rank) report_shape_error(mistake, a.rank, p.ra);
    if (p.parsed && p.rb != b.rank) report_shape_error(mistake, b.rank, p.rb);
    for (std::size_t i = 0; p.parsed && i < p.ra; ++i)
        for (std::size_t j = 0; j < p.rb; ++j)
            if (p.b[j] == p.a[i] && b.d[j] != a.d[i]) report_shape_error(mistake, b.d[j], a.d[i]);
    mistake();
}
constexpr std::uint32_t contract(graph& g, contract_spec s, std::uint32_t a, std::uint32_t b, bool keep_batch = true) {
    a = stored(g, a), b = stored(g, b);  // e.g. the ones cotangent of a sum, in reverse mode
    const node& x = g.nodes[a];
    const node& y = g.nodes[b];
    if (!ctrec::detail::contract_ok(s, x.shape, y.shape)) report_contract_error(ctrec_shape_error_einsum_spec_does_not_fit_the_operand_shapes, s, x.shape, y.shape);
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
    if (s.size() != x.shape.size()) report_shape_error(ctrec_shape_error_reshape_changes_the_number_of_elements, s.size(), x.shape.size());
    if (s == x.shape) return a;
    // values without a buffer are not viewed: a constant is refilled, the batch size broadcast
    if (x.op == opcode::constant) return constant(g, x.value, s);
    if (x.op == opcode::batch_size) return map(g, opcode::add, a, constant(g, 0.0, s));
    if (x.op == opcode::random) {  // the same stream in the new shape: element k is still element k
        node r = x;
        r.shape = s;
        const std::string_view nm = g.name_of(a);
        char buf[256]{};  // intern may grow the name pool while reading the name
        for (std::size_t i = 0; i < nm.size() && i < sizeof buf; ++i) buf[i] = nm[i];
        return g.intern(r, nullptr, std::string_view(buf, nm.size() < sizeof buf ? nm.size() : sizeof buf));
    }
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
    // values without a derivative are not wrapped (nor viewed: a constant, the batch size and a
    // random leaf have no buffer for a view to alias)
    const opcode o = g.nodes[a].op;
    if (o == opcode::stop_gradient || o == opcode::constant || o == opcode::batch_size || o == opcode::random) return a;
    return unary_struct(g, opcode::stop_gradient, a, g.nodes[a].shape, g.nodes[a].batched);
}

constexpr std::uint32_t reduce(graph& g, opcode op, std::uint32_t a, unsigned mask) {
    const node& x = g.nodes[a];
    if (mask >> x.shape.rank) report_shape_error(ctrec_shape_error_reduction_axis_out_of_range, std::bit_width(mask) - 1u, x.shape.rank);
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
    if (axis >= s.rank) report_shape_error(ctrec_shape_error_reduction_axis_out_of_range, axis, s.rank);
    bool batched = false;
    std::size_t total = 0;
    for (std::uint32_t j = 0; j < n; ++j) {
        const dims o = g.nodes[ops[j]].shape;
        if (o.rank != s.rank) report_shape_error(ctrec_shape_error_concat_operands_differ_off_the_axis, o.rank, s.rank);
        for (std::size_t k = 0; k < s.rank; ++k)
            if (k != axis && o.d[k] != s.d[k]) report_shape_error(ctrec_shape_error_concat_operands_differ_off_the_axis, o.d[k], s.d[k]);
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
    if (axis >= s.rank) report_shape_error(ctrec_shape_error_slice_out_of_range, axis, s.rank);
    if (begin + len > s.d[axis]) report_shape_error(ctrec_shape_error_slice_out_of_range, begin + len, s.d[axis]);
    if (begin == 0 && len == s.d[axis]) return a;
    // A slice of a batch-summed contraction (a parameter gradient) along an axis of one operand
    // only is the contraction of that operand's slice: the gradient of one of
    // several parameters used as a concatenation (MMoE's stacked expert kernels) is its own GEMM
    // over the batch instead of a block copied out of the whole gradient (per example the slice
    // copies len / d columns of the operand, not of the (K, d) result).
    if (g.nodes[a].op == opcode::contract && !g.nodes[a].batched) {
        const contract_spec sp = g.nodes[a].spec;
        const std::uint32_t x = g.operand(a, 0), y = g.operand(a, 1);
        const char l = sp.c[axis];
        int ia = -1, ib = -1;
        for (std::size_t i = 0; i < sp.ra; ++i)
            if (sp.a[i] == l) ia = static_cast<int>(i);
        for (std::size_t i = 0; i < sp.rb; ++i)
            if (sp.b[i] == l) ib = static_cast<int>(i);
        if (g.nodes[x].batched || g.nodes[y].batched) {
            if (ia >= 0 && ib < 0) return contract(g, sp, slice(g, x, static_cast<std::uint32_t>(ia), begin, len), y, false);
            if (ib >= 0 && ia < 0) return contract(g, sp, x, slice(g, y, static_cast<std::uint32_t>(ib), begin, len), false);
        }
    }
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
    if (axis >= s.rank) report_shape_error(ctrec_shape_error_slice_out_of_range, axis, s.rank);
    if (before + s.d[axis] > total) report_shape_error(ctrec_shape_error_slice_out_of_range, before + s.d[axis], total);
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

// ---- fused self-attention ------------------------------------------------------------------------
// self_attention(x) = softmax(x x^T) x per example, x (N, K), the softmax along the last axis
// (row i of S = x x^T), the same values as einsum("ij,jk->ik", softmax(einsum("ik,jk->ij", x, x), 1), x).
// One node, one step (kernels/cpu/attention.hpp): the scores of a block of query rows stay in
// registers and an L1 row buffer, so no N x N value is a node or a workspace buffer, in the
// forward pass or in a derivative. The derivatives are nodes of their own, each one step that
// recomputes the scores per block:
//   attention_vjp(x, y, c) = dS x + dS^T x + A^T c, dS = A (c x^T - rowsum(c y)), y = attention(x)
//   attention_jvp(x, y, t) = A t + dA x, dA = A (dS - rowsum(A dS)), dS = t x^T + x t^T
// (y is not read by the CPU kernel of the JVP). Both are linear in c / t and have no derivative
// of their own: differentiating them is a compile-time error (ad/autodiff.hpp).
//
// The CPU kernels keep per-example scratch on the stack, at most (2 K + 24) (N + 16) values of
// 8 bytes (the JVP in double); bounded at 4 MiB (N = 39, K = 16: 24 KB; K = 16 allows N ~ 9000).
inline constexpr std::size_t attention_max_scratch_bytes = std::size_t(4) << 20;

// a per-example (N, K) value with a buffer of its own shape, for the kernels to read: broadcast
// (and given one) when it has another shape, is shared by every example, or has no buffer (a
// constant, the batch size, a random leaf, or a view of one)
constexpr std::uint32_t stored_per_example(graph& g, std::uint32_t a, dims s) {
    a = broadcast_to(g, a, s, true);
    std::uint32_t base = a;
    while (is_view(g.nodes[base].op)) base = g.operand(base, 0);
    const opcode o = g.nodes[base].op;
    if (o == opcode::constant || o == opcode::batch_size || o == opcode::random) a = map(g, opcode::batch_broadcast, a);
    return a;
}
constexpr std::uint32_t attention_node(graph& g, opcode op, const std::uint32_t* ops, std::uint32_t nops) {
    node r;
    r.op = op;
    r.shape = g.nodes[ops[0]].shape;
    r.batched = true;
    r.nops = nops;
    return g.intern(r, ops);
}
constexpr std::uint32_t attention(graph& g, std::uint32_t x) {
    const node& xn = g.nodes[x];
    if (!xn.batched || xn.shape.rank != 2)  // axes counted with the batch axis: B, N, K
        report_shape_error(ctrec_shape_error_self_attention_needs_a_batched_N_by_K_matrix, xn.shape.rank + xn.batched, 3);
    if (xn.shape.d[0] == 0 || xn.shape.d[1] == 0)
        report_shape_error(ctrec_shape_error_self_attention_needs_a_batched_N_by_K_matrix, xn.shape.size(), 1);
    if ((2 * xn.shape.d[1] + 24) * (xn.shape.d[0] + 16) * 8 > attention_max_scratch_bytes)
        report_shape_error(ctrec_shape_error_self_attention_N_by_K_too_large_for_the_cpu_kernels_stack_scratch,
                           (2 * xn.shape.d[1] + 24) * (xn.shape.d[0] + 16) * 8, attention_max_scratch_bytes);
    const std::uint32_t ops[1] = {stored_per_example(g, x, xn.shape)};
    return attention_node(g, opcode::attention, ops, 1);
}
// y = attention(x) (its operand); c, t: a cotangent / tangent of y, broadcast to y's shape here
constexpr std::uint32_t attention_vjp(graph& g, std::uint32_t y, std::uint32_t c) {
    const std::uint32_t ops[3] = {g.operand(y, 0), y, stored_per_example(g, c, g.nodes[y].shape)};
    return attention_node(g, opcode::attention_vjp, ops, 3);
}
constexpr std::uint32_t attention_jvp(graph& g, std::uint32_t y, std::uint32_t t) {
    const std::uint32_t ops[3] = {g.operand(y, 0), y, stored_per_example(g, t, g.nodes[y].shape)};
    return attention_node(g, opcode::attention_jvp, ops, 3);
}

// ---- Khatri-Rao GEMMs (CIN) -----------------------------------------------------------------------
// kr_matmul(P, Q, W): per example, P (R, ka) and Q (R, kb) are row sets and W (ka kb, J) an
// unbatched weight; out (R, J) = A W with A[r, a kb + b] = P[r, a] Q[r, b], the row-wise
// Khatri-Rao (face-splitting) product. A (R ka kb values per example: CIN's outer-product tensor)
// is never a node or a buffer: the CPU kernel (kernels/cpu/kr_gemm.hpp) forms one packed panel of
// it at a time. Its derivatives are nodes of their own, none of which stores A or dA either:
//   d/dW     kr_gram(P, Q, G)       out[a kb + b, j] = sum over the batch and r of P[r, a] Q[r, b] G[r, j]
//   d/dP,dQ  kr_dual(P, Q, W, G)    out (R, ka + kb): [sum_{b, j} Q[r, b] G[r, j] W[a kb + b, j] |
//                                                      sum_{a, j} P[r, a] G[r, j] W[a kb + b, j]]
//   tangent  kr_matmul2(P, Q, P2, Q2, W) = (P (*) Q + P2 (*) Q2) W, one GEMM for dP (*) Q + P (*) dQ
// (the two input gradients are slices of one kr_dual: one pass over dZ = G W^T for both). These
// three have no derivative of their own: differentiating them is a compile-time error.
} // namespace build
void ctrec_shape_error_khatri_rao_matmul_needs_P_R_by_H_Q_R_by_M_and_W_H_times_M_by_J();
void ctrec_shape_error_khatri_rao_matmul_needs_an_unbatched_W();
void ctrec_shape_error_khatri_rao_matmul_W_must_not_be_a_constant();
void ctrec_shape_error_transpose_needs_rank_2_or_more();
namespace build {

// A per-example value of shape s with a buffer of that shape, for the kr kernels to read rows of:
// broadcast (and given one) when it has another shape, is shared by every example, or has no
// buffer (a constant, the batch size, a random leaf, or a view of one).
constexpr std::uint32_t kr_rows(graph& g, std::uint32_t a, dims s) {
    a = broadcast_to(g, a, s, true);
    std::uint32_t base = a;
    while (is_view(g.nodes[base].op)) base = g.operand(base, 0);
    const opcode o = g.nodes[base].op;
    if (o == opcode::constant || o == opcode::batch_size || o == opcode::random) a = map(g, opcode::batch_broadcast, a);
    return a;
}
constexpr dims kr_dims(std::size_t a, std::size_t b) {
    dims d;
    d.rank = 2, d.d[0] = a, d.d[1] = b;
    return d;
}
constexpr std::uint32_t kr_node(graph& g, opcode op, dims s, bool batched, const std::uint32_t* ops, std::uint32_t nops) {
    node r;
    r.op = op;
    r.shape = s;
    r.batched = batched;
    r.nops = nops;
    return g.intern(r, ops);
}
constexpr std::uint32_t kr_matmul(graph& g, std::uint32_t p, std::uint32_t q, std::uint32_t w) {
    const dims ps = g.nodes[p].shape, qs = g.nodes[q].shape, ws = g.nodes[w].shape;
    // the first misfit: a rank (P, Q, W), R (Q's rows against P's), W's rows against H M, a zero width
    if (ps.rank != 2 || qs.rank != 2 || ws.rank != 2)
        report_shape_error(ctrec_shape_error_khatri_rao_matmul_needs_P_R_by_H_Q_R_by_M_and_W_H_times_M_by_J,
                           ps.rank != 2 ? ps.rank : qs.rank != 2 ? qs.rank : ws.rank, 2);
    if (ps.d[0] != qs.d[0])
        report_shape_error(ctrec_shape_error_khatri_rao_matmul_needs_P_R_by_H_Q_R_by_M_and_W_H_times_M_by_J, qs.d[0], ps.d[0]);
    if (ws.d[0] != ps.d[1] * qs.d[1])
        report_shape_error(ctrec_shape_error_khatri_rao_matmul_needs_P_R_by_H_Q_R_by_M_and_W_H_times_M_by_J, ws.d[0], ps.d[1] * qs.d[1]);
    if (ps.d[1] == 0 || qs.d[1] == 0 || ws.d[1] == 0)
        report_shape_error(ctrec_shape_error_khatri_rao_matmul_needs_P_R_by_H_Q_R_by_M_and_W_H_times_M_by_J, 0, 1);
    if (g.nodes[w].batched) ctrec_shape_error_khatri_rao_matmul_needs_an_unbatched_W();
    std::uint32_t wb = w;
    while (is_view(g.nodes[wb].op)) wb = g.operand(wb, 0);
    if (g.nodes[wb].op == opcode::constant || g.nodes[wb].op == opcode::batch_size)
        ctrec_shape_error_khatri_rao_matmul_W_must_not_be_a_constant();
    const std::uint32_t ops[3] = {kr_rows(g, p, ps), kr_rows(g, q, qs), w};
    return kr_node(g, opcode::kr_matmul, kr_dims(ps.d[0], ws.d[1]), true, ops, 3);
}
// The derivative nodes of y = kr_matmul(P, Q, W) (operands as y's), for cotangent c of y.
constexpr std::uint32_t kr_gram(graph& g, std::uint32_t y, std::uint32_t c) {
    const std::uint32_t ops[3] = {g.operand(y, 0), g.operand(y, 1), kr_rows(g, c, g.nodes[y].shape)};
    return kr_node(g, opcode::kr_gram, g.nodes[g.operand(y, 2)].shape, false, ops, 3);
}
constexpr std::uint32_t kr_dual(graph& g, std::uint32_t y, std::uint32_t c) {
    const std::uint32_t p = g.operand(y, 0), q = g.operand(y, 1);
    const std::uint32_t ops[4] = {p, q, g.operand(y, 2), kr_rows(g, c, g.nodes[y].shape)};
    return kr_node(g, opcode::kr_dual, kr_dims(g.nodes[p].shape.d[0], g.nodes[p].shape.d[1] + g.nodes[q].shape.d[1]),
                   true, ops, 4);
}
// The tangent of y = kr_matmul(P, Q, W) along tangents tp of P and tq of Q: (tp (*) Q + P (*) tq) W,
// as kr_matmul2(tp, Q, P, tq, W)
constexpr std::uint32_t kr_matmul2(graph& g, std::uint32_t y, std::uint32_t tp, std::uint32_t tq) {
    const std::uint32_t p = g.operand(y, 0), q = g.operand(y, 1);
    const std::uint32_t ops[5] = {kr_rows(g, tp, g.nodes[p].shape), q, p, kr_rows(g, tq, g.nodes[q].shape), g.operand(y, 2)};
    return kr_node(g, opcode::kr_matmul2, g.nodes[y].shape, true, ops, 5);
}

// The last two per-example axes swapped (a copy; CIN's X^T).
constexpr std::uint32_t transpose(graph& g, std::uint32_t a) {
    const node& x = g.nodes[a];
    if (x.shape.rank < 2) report_shape_error(ctrec_shape_error_transpose_needs_rank_2_or_more, x.shape.rank, 2);
    dims s = x.shape;
    s.d[s.rank - 2] = x.shape.d[s.rank - 1], s.d[s.rank - 1] = x.shape.d[s.rank - 2];
    if (x.op == opcode::constant) return constant(g, x.value, s);
    if (x.op == opcode::transpose) return g.operand(a, 0);
    return unary_struct(g, opcode::transpose, a, s, x.batched);
}

} // namespace build
} // namespace ctrec
