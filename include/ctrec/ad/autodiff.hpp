#pragma once
// Differentiation on the graph as data: constexpr functions from a graph to a bigger graph.
//
// Reverse mode is one sweep over the nodes in reverse topological order. A node's cotangent is
// complete when the sweep reaches it (every consumer has a larger id), so the sweep applies the
// node's rule once per operand slot and adds the result into the operand's cotangent: each edge
// is visited once (`edges` counts them), nothing is done per pair of nodes. A missing cotangent
// is a symbolic zero: no node is built for it.
//
// Forward mode is one sweep in topological order: the tangent of a node from its operands'
// tangents. Leaves map to tangent leaves "d.<name>" (inputs per example, parameters unbatched).
#include "ctrec/core/build.hpp"

namespace ctrec {

void ctrec_error_attention_vjp_and_attention_jvp_have_no_derivative_no_second_order_through_self_attention();
void ctrec_error_kr_gram_kr_dual_and_kr_matmul2_have_no_derivative_no_second_order_through_khatri_rao_matmul();

inline constexpr std::uint32_t none = ~0u;

namespace detail {
constexpr std::uint32_t add_or(graph& g, std::uint32_t acc, std::uint32_t c) {
    if (c == none) return acc;
    if (acc == none) return c;
    return build::map(g, opcode::add, acc, c);
}
constexpr std::uint32_t lit(graph& g, double v) { return build::constant(g, v); }
} // namespace detail

// Contribution of node y's operand slot j to that operand's cotangent, given y's cotangent c
// (before unbroadcasting to the operand's shape).
constexpr std::uint32_t vjp(graph& g, std::uint32_t y, std::uint32_t j, std::uint32_t c) {
    using namespace build;
    const node r = g.nodes[y];
    const std::uint32_t x0 = r.nops > 0 ? g.operand(y, 0) : none;
    const std::uint32_t x1 = r.nops > 1 ? g.operand(y, 1) : none;
    const std::uint32_t xj = g.operand(y, j);
    auto L = [&](double v) { return detail::lit(g, v); };
    switch (r.op) {
        case opcode::add: return c;
        case opcode::sub: return j == 0 ? c : map(g, opcode::neg, c);
        case opcode::mul: return map(g, opcode::mul, c, j == 0 ? x1 : x0);
        case opcode::div:
            return j == 0 ? map(g, opcode::div, c, x1) : map(g, opcode::neg, map(g, opcode::div, map(g, opcode::mul, c, y), x1));
        case opcode::neg: return map(g, opcode::neg, c);
        case opcode::exp: return map(g, opcode::mul, c, y);
        case opcode::log: return map(g, opcode::div, c, x0);
        case opcode::log1p: return map(g, opcode::div, c, map(g, opcode::add, L(1.0), x0));
        case opcode::sqrt: return map(g, opcode::div, map(g, opcode::mul, c, L(0.5)), y);
        case opcode::rsqrt:
            return map(g, opcode::mul, c, map(g, opcode::mul, L(-0.5), map(g, opcode::mul, y, map(g, opcode::mul, y, y))));
        case opcode::tanh: return map(g, opcode::mul, c, map(g, opcode::sub, L(1.0), map(g, opcode::mul, y, y)));
        case opcode::sigmoid: return map(g, opcode::mul, c, map(g, opcode::mul, y, map(g, opcode::sub, L(1.0), y)));
        case opcode::relu: return map(g, opcode::mul, c, map(g, opcode::greater, y, L(0.0)));  // relu'(0) = 0
        case opcode::maximum:  // ties go to the first operand (TF)
            return j == 0 ? map(g, opcode::mul, c, map(g, opcode::greater_equal, x0, x1))
                          : map(g, opcode::mul, c, map(g, opcode::greater, x1, x0));
        case opcode::minimum:  // ties go to the first operand (TF)
            return j == 0 ? map(g, opcode::mul, c, map(g, opcode::greater_equal, x1, x0))
                          : map(g, opcode::mul, c, map(g, opcode::greater, x0, x1));
        case opcode::abs:  // sign(x), 0 at 0 (TF)
            return map(g, opcode::mul, c, map(g, opcode::sub, map(g, opcode::greater, x0, L(0.0)), map(g, opcode::greater, L(0.0), x0)));
        case opcode::erf:  // 2 / sqrt(pi) exp(-x^2)
            return map(g, opcode::mul, c, map(g, opcode::mul, L(1.1283791670955126), map(g, opcode::exp, map(g, opcode::neg, map(g, opcode::mul, x0, x0)))));
        case opcode::greater:
        case opcode::greater_equal: return none;
        case opcode::where:
            if (j == 0) return none;
            return j == 1 ? map(g, opcode::where, x0, c, L(0.0)) : map(g, opcode::where, x0, L(0.0), c);
        case opcode::batch_broadcast: return c;  // unbroadcast sums it over the batch
        case opcode::contract: {
            // d/dA of einsum(a,b->c) is einsum(c,b->a) (and symmetrically for B): every letter
            // of an operand is in the other operand or in the output (checked when built)
            const contract_spec s = r.spec;
            contract_spec d;
            d.parsed = true;
            const char* other = j == 0 ? s.b : s.a;
            const std::size_t ro = j == 0 ? s.rb : s.ra;
            const char* mine = j == 0 ? s.a : s.b;
            const std::size_t rm = j == 0 ? s.ra : s.rb;
            for (std::size_t k = 0; k < s.rc; ++k) d.a[d.ra++] = s.c[k];
            for (std::size_t k = 0; k < ro; ++k) d.b[d.rb++] = other[k];
            for (std::size_t k = 0; k < rm; ++k) d.c[d.rc++] = mine[k];
            const std::uint32_t o = j == 0 ? x1 : x0;
            const bool keep = g.nodes[xj].batched;
            return contract(g, d, c, o, keep);
        }
        case opcode::reduce_sum:
            return broadcast_to(g, reshape(g, c, keepdims(g.nodes[x0].shape, r.mask)), g.nodes[x0].shape, false);
        case opcode::reduce_max: {
            // TF's rule: the cotangent split equally among the inputs equal to the max (ties);
            // hit = (x >= max), dx = c / #hits on the hits
            const dims xs = g.nodes[x0].shape, kd = keepdims(xs, r.mask);
            const std::uint32_t hit = map(g, opcode::greater_equal, x0, broadcast_to(g, reshape(g, y, kd), xs, false));
            const std::uint32_t share = map(g, opcode::div, c, reduce_sum(g, hit, r.mask));
            return map(g, opcode::mul, broadcast_to(g, reshape(g, share, kd), xs, false), hit);
        }
        case opcode::batch_sum: return c;
        case opcode::reshape: return reshape(g, c, g.nodes[x0].shape);
        case opcode::stop_gradient: return none;
        case opcode::concat: {
            std::uint32_t at = 0;
            for (std::uint32_t k = 0; k < j; ++k) at += static_cast<std::uint32_t>(g.nodes[g.operand(y, k)].shape.d[r.axis]);
            return slice(g, c, r.axis, at, g.nodes[xj].shape.d[r.axis]);
        }
        case opcode::slice: return pad(g, c, r.axis, r.begin, g.nodes[x0].shape.d[r.axis]);
        case opcode::pad: return slice(g, c, r.axis, r.begin, g.nodes[x0].shape.d[r.axis]);
        case opcode::attention: return attention_vjp(g, y, c);
        case opcode::attention_vjp:
        case opcode::attention_jvp:
            ctrec_error_attention_vjp_and_attention_jvp_have_no_derivative_no_second_order_through_self_attention();
            return none;
        case opcode::kr_matmul: {
            // d/dP and d/dQ: the two halves of one kr_dual node (hash-consed: one step for both)
            if (j == 2) return kr_gram(g, y, c);
            const std::size_t ka = g.nodes[x0].shape.d[1];
            return j == 0 ? slice(g, kr_dual(g, y, c), 1, 0, ka) : slice(g, kr_dual(g, y, c), 1, static_cast<std::uint32_t>(ka), g.nodes[x1].shape.d[1]);
        }
        case opcode::kr_gram:
        case opcode::kr_dual:
        case opcode::kr_matmul2:
            ctrec_error_kr_gram_kr_dual_and_kr_matmul2_have_no_derivative_no_second_order_through_khatri_rao_matmul();
            return none;
        case opcode::transpose: return transpose(g, c);
        default: return none;
    }
}

// Node y's contribution through operand slot j to that operand's cotangent, in the operand's
// shape and batchedness (none: zero). A batched node's cotangent may be unbatched: the same value
// for every example (it came through a batch_sum); what such a node hands an unbatched operand
// through a per-example rule is then the sum over the batch of that value, B times it (a
// contraction's rule sums the batch itself when it reduces it).
constexpr std::uint32_t contribution(graph& g, std::uint32_t y, std::uint32_t j, std::uint32_t cy) {
    const std::uint32_t o = g.operand(y, j);
    std::uint32_t c = vjp(g, y, j, cy);
    if (c == none) return none;
    if (g.nodes[y].batched && !g.nodes[c].batched && !g.nodes[o].batched && g.nodes[y].op != opcode::contract &&
        g.nodes[y].op != opcode::kr_matmul)  // kr_matmul's W rule (kr_gram) sums the batch itself too
        c = build::map(g, opcode::mul, c, build::batch_size(g));
    return build::unbroadcast(g, c, o);
}

struct reverse_result {
    std::uint32_t edges = 0;  // operand slots visited: one per edge below the root
};

// Reverse mode from `root` seeded with cotangent `seed`; ct[i] receives node i's cotangent
// (`none` where it is zero), for every node up to the root.
// Cotangents that are zero-padded pieces of one value along one axis (a value read through
// several slices: one per step of an unrolled recurrence) are collected per value and joined
// into one concat (with zero fills) when the sweep reaches the value, instead of adding T
// full-size zero-padded copies (T^2 work per example).
struct pad_pieces {
    std::uint32_t head[max_nodes]{};  // per value: first piece + 1 (0: none)
    std::uint32_t axis[max_nodes]{};
    std::uint32_t next[max_nodes]{}, value[max_nodes]{}, begin[max_nodes]{};
    std::uint32_t n = 0;
};
namespace detail {
constexpr bool add_piece(graph& g, pad_pieces& pp, std::uint32_t o, std::uint32_t c) {
    const node& r = g.nodes[c];
    if (r.op != opcode::pad || pp.n >= max_nodes) return false;
    const std::uint32_t v = g.operand(c, 0);
    const std::uint32_t b = r.begin, e = b + static_cast<std::uint32_t>(g.nodes[v].shape.d[r.axis]);
    if (pp.head[o] != 0 && pp.axis[o] != r.axis) return false;
    for (std::uint32_t k = pp.head[o]; k != 0; k = pp.next[k - 1]) {
        const std::uint32_t kb = pp.begin[k - 1], ke = kb + static_cast<std::uint32_t>(g.nodes[pp.value[k - 1]].shape.d[r.axis]);
        if (b < ke && kb < e) return false;  // overlapping pieces are added as usual
    }
    pp.axis[o] = r.axis;
    pp.value[pp.n] = v, pp.begin[pp.n] = b, pp.next[pp.n] = pp.head[o];
    pp.head[o] = ++pp.n;
    return true;
}
// The pieces of value o as one concat along their axis, zero where no piece lies.
constexpr std::uint32_t join_pieces(graph& g, const pad_pieces& pp, std::uint32_t o) {
    std::uint32_t ids[max_nodes]{}, starts[max_nodes]{};
    std::uint32_t n = 0;
    for (std::uint32_t k = pp.head[o]; k != 0; k = pp.next[k - 1]) {  // insertion sort by begin
        std::uint32_t at = n++;
        while (at > 0 && starts[at - 1] > pp.begin[k - 1]) ids[at] = ids[at - 1], starts[at] = starts[at - 1], --at;
        ids[at] = pp.value[k - 1], starts[at] = pp.begin[k - 1];
    }
    const std::uint32_t ax = pp.axis[o];
    const dims full = g.nodes[o].shape;
    std::uint32_t parts[max_nodes]{};
    std::uint32_t np = 0, pos = 0;
    auto zeros = [&](std::uint32_t len) {
        dims s = full;
        s.d[ax] = len;
        parts[np++] = build::constant(g, 0.0, s);
    };
    for (std::uint32_t k = 0; k < n; ++k) {
        if (starts[k] > pos) zeros(starts[k] - pos);
        parts[np++] = ids[k];
        pos = starts[k] + static_cast<std::uint32_t>(g.nodes[ids[k]].shape.d[ax]);
    }
    if (pos < full.d[ax]) zeros(static_cast<std::uint32_t>(full.d[ax]) - pos);
    return build::concat(g, ax, parts, np);
}
} // namespace detail

constexpr reverse_result reverse(graph& g, std::uint32_t root, std::uint32_t seed, std::uint32_t* ct) {
    reverse_result res;
    for (std::uint32_t i = 0; i <= root; ++i) ct[i] = none;
    ct[root] = seed;
    pad_pieces pp{};
    for (std::uint32_t i = root + 1; i-- > 0;) {
        if (pp.head[i] != 0) ct[i] = detail::add_or(g, ct[i], detail::join_pieces(g, pp, i));
        if (ct[i] == none) continue;
        const std::uint32_t nops = g.nodes[i].nops;
        for (std::uint32_t j = 0; j < nops; ++j) {
            ++res.edges;
            const std::uint32_t o = g.operand(i, j);
            std::uint32_t c = contribution(g, i, j, ct[i]);
            if (c == none) continue;
            if (detail::add_piece(g, pp, o, c)) continue;
            ct[o] = detail::add_or(g, ct[o], c);
        }
    }
    return res;
}

// The name of a tangent leaf: "d." + name.
struct tangent_name {
    char s[128]{};
    std::size_t n = 0;
    constexpr std::string_view view() const { return {s, n}; }
};
constexpr tangent_name tangent_of(std::string_view nm) {
    tangent_name t;
    t.s[t.n++] = 'd', t.s[t.n++] = '.';
    for (char ch : nm) t.s[t.n++] = ch;
    return t;
}

// Forward mode up to `root`: tan[i] receives node i's tangent (`none` where it is zero).
constexpr void forward(graph& g, std::uint32_t root, std::uint32_t* tan) {
    using namespace build;
    for (std::uint32_t i = 0; i <= root; ++i) {
        const node r = g.nodes[i];
        auto T = [&](std::uint32_t j) { return tan[g.operand(i, j)]; };
        auto X = [&](std::uint32_t j) { return g.operand(i, j); };
        auto mul_or = [&](std::uint32_t t, std::uint32_t f) { return t == none ? none : map(g, opcode::mul, t, f); };
        auto L = [&](double v) { return detail::lit(g, v); };
        std::uint32_t t = none;
        switch (r.op) {
            case opcode::input:
            case opcode::param: t = leaf(g, r.op, r.shape, r.batched, tangent_of(g.name_of(i)).view()); break;
            case opcode::constant:
            case opcode::batch_size:
            case opcode::random:
            case opcode::greater:
            case opcode::greater_equal:
            case opcode::stop_gradient: t = none; break;
            case opcode::add: t = detail::add_or(g, T(0), T(1)); break;
            case opcode::sub:
                t = T(1) == none ? T(0) : detail::add_or(g, T(0), map(g, opcode::neg, T(1)));
                break;
            case opcode::mul: t = detail::add_or(g, mul_or(T(0), X(1)), mul_or(T(1), X(0))); break;
            case opcode::div:
                t = detail::add_or(g, T(0) == none ? none : map(g, opcode::div, T(0), X(1)),
                                   T(1) == none ? none : map(g, opcode::neg, map(g, opcode::div, map(g, opcode::mul, T(1), i), X(1))));
                break;
            case opcode::neg: t = T(0) == none ? none : map(g, opcode::neg, T(0)); break;
            case opcode::exp: t = mul_or(T(0), i); break;
            case opcode::log: t = T(0) == none ? none : map(g, opcode::div, T(0), X(0)); break;
            case opcode::log1p: t = T(0) == none ? none : map(g, opcode::div, T(0), map(g, opcode::add, L(1.0), X(0))); break;
            case opcode::sqrt: t = T(0) == none ? none : map(g, opcode::div, map(g, opcode::mul, T(0), L(0.5)), i); break;
            case opcode::rsqrt:
                t = mul_or(T(0), map(g, opcode::mul, L(-0.5), map(g, opcode::mul, i, map(g, opcode::mul, i, i))));
                break;
            case opcode::tanh: t = mul_or(T(0), map(g, opcode::sub, L(1.0), map(g, opcode::mul, i, i))); break;
            case opcode::sigmoid: t = mul_or(T(0), map(g, opcode::mul, i, map(g, opcode::sub, L(1.0), i))); break;
            case opcode::relu: t = mul_or(T(0), map(g, opcode::greater, i, L(0.0))); break;
            case opcode::maximum:
                t = detail::add_or(g, mul_or(T(0), map(g, opcode::greater_equal, X(0), X(1))),
                                   mul_or(T(1), map(g, opcode::greater, X(1), X(0))));
                break;
            case opcode::minimum:
                t = detail::add_or(g, mul_or(T(0), map(g, opcode::greater_equal, X(1), X(0))),
                                   mul_or(T(1), map(g, opcode::greater, X(0), X(1))));
                break;
            case opcode::abs:
                t = mul_or(T(0), map(g, opcode::sub, map(g, opcode::greater, X(0), L(0.0)), map(g, opcode::greater, L(0.0), X(0))));
                break;
            case opcode::erf:
                t = mul_or(T(0), map(g, opcode::mul, L(1.1283791670955126),
                                     map(g, opcode::exp, map(g, opcode::neg, map(g, opcode::mul, X(0), X(0))))));
                break;
            case opcode::where:
                if (T(1) != none || T(2) != none)
                    t = map(g, opcode::where, X(0), T(1) == none ? L(0.0) : T(1), T(2) == none ? L(0.0) : T(2));
                break;
            case opcode::batch_broadcast:
                t = T(0) == none ? none : g.nodes[T(0)].batched ? T(0) : map(g, opcode::batch_broadcast, T(0));
                break;
            case opcode::contract: {
                auto part = [&](std::uint32_t j) {
                    if (T(j) == none) return none;
                    const std::uint32_t tj = broadcast_to(g, T(j), g.nodes[X(j)].shape, false);
                    return j == 0 ? contract(g, r.spec, tj, X(1), r.keep_batch) : contract(g, r.spec, X(0), tj, r.keep_batch);
                };
                t = detail::add_or(g, part(0), part(1));
                break;
            }
            case opcode::reduce_sum:
                t = T(0) == none ? none : reduce_sum(g, broadcast_to(g, T(0), g.nodes[X(0)].shape, false), r.mask);
                break;
            case opcode::reduce_max:  // the mean of the tangents at the max (the VJP's tie rule)
                if (T(0) != none) {
                    const dims xs = g.nodes[X(0)].shape;
                    const std::uint32_t hit = map(g, opcode::greater_equal, X(0), broadcast_to(g, reshape(g, i, keepdims(xs, r.mask)), xs, false));
                    t = map(g, opcode::div, reduce_sum(g, map(g, opcode::mul, broadcast_to(g, T(0), xs, false), hit), r.mask),
                            reduce_sum(g, hit, r.mask));
                }
                break;
            case opcode::batch_sum:
                if (T(0) != none) t = g.nodes[T(0)].batched ? batch_sum(g, T(0)) : map(g, opcode::mul, T(0), build::batch_size(g));
                break;
            case opcode::reshape:
                t = T(0) == none ? none : reshape(g, broadcast_to(g, T(0), g.nodes[X(0)].shape, false), r.shape);
                break;
            case opcode::concat: {
                bool any = false;
                for (std::uint32_t j = 0; j < r.nops; ++j) any = any || T(j) != none;
                if (!any) break;
                std::uint32_t parts[max_nodes]{};
                for (std::uint32_t j = 0; j < r.nops; ++j) {
                    const node& o = g.nodes[X(j)];
                    parts[j] = T(j) == none ? constant(g, 0.0, o.shape) : broadcast_to(g, T(j), o.shape, false);
                }
                t = concat(g, r.axis, parts, r.nops);
                break;
            }
            case opcode::slice:
            case opcode::pad:
                if (T(0) != none) {
                    const std::uint32_t t0 = broadcast_to(g, T(0), g.nodes[X(0)].shape, false);
                    t = r.op == opcode::slice ? slice(g, t0, r.axis, r.begin, r.shape.d[r.axis])
                                              : pad(g, t0, r.axis, r.begin, r.shape.d[r.axis]);
                }
                break;
            case opcode::attention: t = T(0) == none ? none : attention_jvp(g, i, T(0)); break;
            case opcode::attention_vjp:
            case opcode::attention_jvp:
                for (std::uint32_t j = 0; j < r.nops; ++j)
                    if (T(j) != none)
                        ctrec_error_attention_vjp_and_attention_jvp_have_no_derivative_no_second_order_through_self_attention();
                break;
            case opcode::kr_matmul: {
                // (dP (*) Q + P (*) dQ) W as one product when both move, plus P (*) Q dW
                const std::uint32_t tp = T(0), tq = T(1), tw = T(2);
                if (tp != none && tq != none) t = kr_matmul2(g, i, tp, tq);
                else if (tp != none) t = kr_matmul(g, kr_rows(g, tp, g.nodes[X(0)].shape), X(1), X(2));
                else if (tq != none) t = kr_matmul(g, X(0), kr_rows(g, tq, g.nodes[X(1)].shape), X(2));
                if (tw != none && !(g.nodes[tw].op == opcode::constant && g.nodes[tw].value == 0.0))
                    t = detail::add_or(g, t, kr_matmul(g, X(0), X(1), broadcast_to(g, tw, g.nodes[X(2)].shape, false)));
                break;
            }
            case opcode::kr_gram:
            case opcode::kr_dual:
            case opcode::kr_matmul2:
                for (std::uint32_t j = 0; j < r.nops; ++j)
                    if (T(j) != none)
                        ctrec_error_kr_gram_kr_dual_and_kr_matmul2_have_no_derivative_no_second_order_through_khatri_rao_matmul();
                break;
            case opcode::transpose:
                t = T(0) == none ? none : transpose(g, broadcast_to(g, T(0), g.nodes[X(0)].shape, false));
                break;
        }
        tan[i] = t;
    }
}

} // namespace ctrec
