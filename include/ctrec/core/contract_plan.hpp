#pragma once
// Lowering of a contraction node to a strided GEMM:
//   C[m, n] (+)= sum_k A[m, k] * B[k, n]
// plus outer loops for whatever does not merge into m, n, k. Index letters are
// classified (G: in A, B and C; M: A and C; N: B and C; K: A and B), the
// implicit batch axis joins one of the groups, and letters inside a group merge
// when their strides allow. All of it is constexpr: the backend only reads the
// result. The batch extent is the one runtime number (`times_batch`).
#include <cstddef>

#include "ctrec/core/contract.hpp"
#include "ctrec/core/random.hpp"

namespace ctrec {

struct gemm_dim {
    std::size_t extent = 1;    // per-example extent
    bool times_batch = false;  // the runtime extent is extent * rows-in-tile
    std::ptrdiff_t sa = 0, sb = 0, sc = 0;
};

struct contract_plan {
    bool swap = false;  // operands swapped so that the batch lands in M, never in N
    gemm_dim m, n, k;
    std::size_t n_outer = 0;
    gemm_dim outer[2 * max_rank + 2];
    bool outer_is_k[2 * max_rank + 2] = {};  // an outer loop over a summed index accumulates
    bool reduces_batch = false;              // the batch is summed: accumulate across tiles
};

namespace detail {
struct letter {
    char ch = 0;
    bool batch = false;
    std::size_t extent = 1;
    std::ptrdiff_t sa = 0, sb = 0, sc = 0;
    bool in_a = false, in_b = false, in_c = false;
};

// Merges the letters of one group (listed outer to inner) and returns the
// innermost merged dim; unmerged outer letters go to the plan's outer loops.
constexpr gemm_dim merge_group(const letter* ls, std::size_t n, contract_plan& p, bool is_k) {
    gemm_dim cur;
    if (n == 0) return cur;
    std::size_t i = n - 1;
    cur = gemm_dim{ls[i].extent, ls[i].batch, ls[i].sa, ls[i].sb, ls[i].sc};
    while (i-- > 0) {
        const letter& o = ls[i];
        auto fits = [&](std::ptrdiff_t so, std::ptrdiff_t si) {
            return so == static_cast<std::ptrdiff_t>(cur.extent) * si;
        };
        if (!cur.times_batch && fits(o.sa, cur.sa) && fits(o.sb, cur.sb) && fits(o.sc, cur.sc)) {
            cur.extent *= o.extent;
            cur.times_batch = o.batch;
        } else {
            p.outer[p.n_outer] = gemm_dim{o.extent, o.batch, o.sa, o.sb, o.sc};
            p.outer_is_k[p.n_outer++] = is_k;
        }
    }
    return cur;
}
} // namespace detail

constexpr contract_plan plan_contraction(contract_spec s, dims a, dims b, bool a_batched, bool b_batched,
                                         bool c_batched) {
    contract_plan p;
    dims c = detail::contract_dims(s, a, b);
    detail::letter ls[3 * max_rank + 1];
    std::size_t nl = 0;
    auto add = [&](char ch) -> detail::letter& {
        for (std::size_t i = 0; i < nl; ++i)
            if (!ls[i].batch && ls[i].ch == ch) return ls[i];
        ls[nl].ch = ch;
        return ls[nl++];
    };
    if (a_batched || b_batched) {  // the batch axis is outermost everywhere
        detail::letter& l = ls[nl++];
        l.batch = true;
        l.in_a = a_batched, l.in_b = b_batched, l.in_c = c_batched;
        l.sa = a_batched ? static_cast<std::ptrdiff_t>(a.size()) : 0;
        l.sb = b_batched ? static_cast<std::ptrdiff_t>(b.size()) : 0;
        l.sc = c_batched ? static_cast<std::ptrdiff_t>(c.size()) : 0;
    }
    for (std::size_t i = 0; i < s.rc; ++i) {
        auto& l = add(s.c[i]);
        l.in_c = true, l.sc = static_cast<std::ptrdiff_t>(c.stride(i)), l.extent = c.d[i];
    }
    for (std::size_t i = 0; i < s.ra; ++i) {
        auto& l = add(s.a[i]);
        l.in_a = true, l.sa = static_cast<std::ptrdiff_t>(a.stride(i)), l.extent = a.d[i];
    }
    for (std::size_t i = 0; i < s.rb; ++i) {
        auto& l = add(s.b[i]);
        l.in_b = true, l.sb = static_cast<std::ptrdiff_t>(b.stride(i)), l.extent = b.d[i];
    }
    // batch only in B and C would sit in N: swap the operands so it sits in M
    for (std::size_t i = 0; i < nl; ++i)
        if (ls[i].batch && ls[i].in_b && ls[i].in_c && !ls[i].in_a) p.swap = true;
    if (p.swap)
        for (std::size_t i = 0; i < nl; ++i) {
            auto t = ls[i].sa; ls[i].sa = ls[i].sb; ls[i].sb = t;
            bool u = ls[i].in_a; ls[i].in_a = ls[i].in_b; ls[i].in_b = u;
        }
    detail::letter g[3 * max_rank + 1], m[3 * max_rank + 1], n[3 * max_rank + 1], k[3 * max_rank + 1];
    std::size_t ng = 0, nm = 0, nn = 0, nk = 0;
    for (std::size_t i = 0; i < nl; ++i) {
        const auto& l = ls[i];
        if (l.in_c && l.in_a && l.in_b) g[ng++] = l;
        else if (l.in_c && l.in_a) m[nm++] = l;
        else if (l.in_c) n[nn++] = l;
        else {
            k[nk++] = l;
            if (l.batch) p.reduces_batch = true;
        }
    }
    for (std::size_t i = 0; i < ng; ++i) {
        p.outer[p.n_outer] = gemm_dim{g[i].extent, g[i].batch, g[i].sa, g[i].sb, g[i].sc};
        p.outer_is_k[p.n_outer++] = false;
    }
    p.m = detail::merge_group(m, nm, p, false);
    p.n = detail::merge_group(n, nn, p, false);
    p.k = detail::merge_group(k, nk, p, true);
    // Orientation: the fast kernel streams N contiguously through B and C. When
    // that holds for M instead (e.g. the parameter gradient x^T . dy written as
    // (k, n) with n from dy), compute the transposed product: swap A/B and M/N.
    const bool n_fast = p.n.sb == 1 && p.n.sc == 1;
    const bool m_fast = p.m.sa == 1 && p.m.sc == 1 && !p.m.times_batch;
    if (!n_fast && m_fast) {
        p.swap = !p.swap;
        auto flip = [](gemm_dim& d) { auto t = d.sa; d.sa = d.sb; d.sb = t; };
        gemm_dim t = p.m;
        p.m = p.n;
        p.n = t;
        flip(p.m), flip(p.n), flip(p.k);
        for (std::size_t i = 0; i < p.n_outer; ++i) flip(p.outer[i]);
    }
    return p;
}


} // namespace ctrec
