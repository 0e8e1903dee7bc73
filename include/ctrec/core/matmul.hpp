#pragma once
// matmul x . W (W unbatched, (K, N)) and the one rewrite it applies: the split of a concatenation
// that holds broadcast values.
//
// DIN scores every step t from [q, k_t, q - k_t, q * k_t] . W0: literally a (T, 4H) row per step
// and a (T x 4H x U) GEMM, although q is the same for every step. When x is a concatenation along
// K and some piece of it is (a sum of) values broadcast along another axis, x . W is built as
//
//   sum over the distinct terms v of  broadcast(v . W_v),   W_v = sum of +-W[rows of v's pieces]
//
// (the pieces expanded through +, - and unary -; a broadcast term is contracted before it is
// broadcast; equal terms share one product with the sum of their blocks). For DIN that is q . (W_q + W_c) once per example, k . (W_k - W_c) and
// (q * k) . W_d: two (T x H x U) GEMMs instead of the four-wide one, and no 4H-wide row. The W_v
// read parameters only, so they are derived parameters (computed by prepare(), not per call), and
// reverse and forward mode differentiate the rewritten graph: their graphs hold no 4H row either.
// The result equals the literal product up to float rounding (a different summation order).
// A plain concatenation of independent features (no broadcast piece, no repeated piece) stays one
// GEMM.
#include "ctrec/core/build.hpp"

namespace ctrec::build {

namespace matmul_split {
inline constexpr std::size_t max_split_terms = 32;

struct split_term {
    std::uint32_t x = 0;  // the value contracted (its last axis matches W's rows)
    std::uint32_t w = 0;  // the signed sum of W's row blocks it meets
};
struct split_terms {
    split_term t[max_split_terms]{};
    std::size_t n = 0;
    std::size_t pieces = 0;  // terms before merging equal values
    bool ok = true;  // false: more terms than max_split_terms (the rewrite is not applied)
};

// Adds sign * w to the term of value x.
constexpr void add_term(graph& g, split_terms& ts, std::uint32_t x, std::uint32_t w, bool negative) {
    ++ts.pieces;
    for (std::size_t i = 0; i < ts.n; ++i)
        if (ts.t[i].x == x) {
            ts.t[i].w = map(g, negative ? opcode::sub : opcode::add, ts.t[i].w, w);
            return;
        }
    if (ts.n == max_split_terms) {
        ts.ok = false;
        return;
    }
    ts.t[ts.n++] = {x, negative ? map(g, opcode::neg, w) : w};
}

// Expands value a (whose last axis is W-block w's rows, and which broadcasts to `full`) into
// terms: through +, -, unary -, zero constants and concatenations along the last axis.
constexpr void expand(graph& g, split_terms& ts, std::uint32_t a, std::uint32_t w, bool negative, const dims& full) {
    const node r = g.nodes[a];
    const std::size_t last = r.shape.rank - 1;
    if (r.op == opcode::constant && r.value == 0.0) return;
    if ((r.op == opcode::add || r.op == opcode::sub) && r.shape.rank == full.rank) {
        const std::uint32_t x = g.operand(a, 0), y = g.operand(a, 1);
        // each operand must keep the contracted axis whole (not broadcast along it)
        const dims sx = g.nodes[x].shape, sy = g.nodes[y].shape;
        const bool x_ok = (sx.rank >= 1 && sx.d[sx.rank - 1] == r.shape.d[last]) || is_constant(g, x, 0.0);
        const bool y_ok = (sy.rank >= 1 && sy.d[sy.rank - 1] == r.shape.d[last]) || is_constant(g, y, 0.0);
        if (x_ok && y_ok) {
            expand(g, ts, x, w, negative, full);
            expand(g, ts, y, w, r.op == opcode::sub ? !negative : negative, full);
            return;
        }
    }
    if (r.op == opcode::batch_broadcast) {  // the batch broadcast is redone on the product
        expand(g, ts, g.operand(a, 0), w, negative, full);
        return;
    }
    if (r.op == opcode::neg) {
        expand(g, ts, g.operand(a, 0), w, !negative, full);
        return;
    }
    if (r.op == opcode::concat && r.axis == last && r.shape.rank == full.rank) {
        std::uint32_t at = 0;
        for (std::uint32_t j = 0; j < r.nops; ++j) {
            const std::uint32_t p = g.operand(a, j);
            const std::uint32_t len = static_cast<std::uint32_t>(g.nodes[p].shape.d[last]);
            expand(g, ts, p, slice(g, w, 0, at, len), negative, full);
            at += len;
        }
        return;
    }
    add_term(g, ts, a, w, negative);
}

constexpr bool same_rows(const dims& s, const dims& full) {  // equal but for the last axis
    if (s.rank != full.rank) return false;
    for (std::size_t k = 0; k + 1 < s.rank; ++k)
        if (s.d[k] != full.d[k]) return false;
    return true;
}

constexpr std::uint32_t plain_matmul(graph& g, std::uint32_t a, std::uint32_t w) {
    const std::size_t ra = g.nodes[a].shape.rank;
    const char* spec = ra == 1 ? "k,kn->n" : ra == 2 ? "mk,kn->mn" : "gmk,kn->gmn";
    fixed_string<32> fs{};
    for (std::size_t i = 0; spec[i]; ++i) fs.v[i] = spec[i];
    return contract(g, parse_contract(fs), a, w);
}
} // namespace matmul_split

// x . W for x of rank 1-3 (last axis K) and W (K, N).
constexpr std::uint32_t matmul(graph& g, std::uint32_t a, std::uint32_t w) {
    const dims sa = g.nodes[a].shape, sw = g.nodes[w].shape;
    if (sw.rank != 2) report_shape_error(ctrec_shape_error_matmul_needs_K_by_N_weights_matching_the_last_axis, sw.rank, 2);
    if (sa.rank < 1 || sa.rank > 3)
        report_shape_error(ctrec_shape_error_matmul_needs_K_by_N_weights_matching_the_last_axis, sa.rank, sa.rank < 1 ? 1 : 3);
    if (sa.d[sa.rank - 1] != sw.d[0])  // got: W's rows, want: x's last axis
        report_shape_error(ctrec_shape_error_matmul_needs_K_by_N_weights_matching_the_last_axis, sw.d[0], sa.d[sa.rank - 1]);
    const bool batched = g.nodes[a].batched;
    const node& ra = g.nodes[a];
    if (g.nodes[w].batched || ra.op != opcode::concat || ra.axis != sa.rank - 1) return matmul_split::plain_matmul(g, a, w);
    matmul_split::split_terms ts;
    matmul_split::expand(g, ts, a, w, false, sa);
    // worth it when a term is broadcast (contracted before broadcasting) or equal pieces merged;
    // otherwise the nodes built here are unused (dropped when the program is frozen)
    bool gain = ts.n < ts.pieces;
    for (std::size_t i = 0; i < ts.n; ++i) {
        const node& x = g.nodes[ts.t[i].x];
        gain = gain || !matmul_split::same_rows(x.shape, sa) || (batched && !x.batched);
    }
    if (!ts.ok || !gain || ts.n == 0) return matmul_split::plain_matmul(g, a, w);
    dims out = sa;
    out.d[out.rank - 1] = sw.d[1];
    std::uint32_t sum = ~0u;
    for (std::size_t i = 0; i < ts.n; ++i) {
        // a broadcast term: drop its leading 1s so the contraction runs on its own rows only
        std::uint32_t x = ts.t[i].x;
        dims sx = g.nodes[x].shape;
        std::size_t lead = 0;
        while (sx.rank - lead > 1 && sx.d[lead] == 1) ++lead;
        if (lead) {
            dims s{};
            for (std::size_t k = lead; k < sx.rank; ++k) s.d[s.rank++] = sx.d[k];
            x = reshape(g, x, s);
        }
        const std::uint32_t y = broadcast_to(g, matmul_split::plain_matmul(g, x, ts.t[i].w), out, batched);
        sum = sum == ~0u ? y : map(g, opcode::add, sum, y);
    }
    return sum;
}

} // namespace ctrec::build
