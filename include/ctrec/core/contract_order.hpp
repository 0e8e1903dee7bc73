#pragma once
// Contraction ordering: einsum over three or more operands.
//
//   einsum<"mk,nk,nc->mc">(X, X, C)      // AllInt's X . X^T . C
//
// is evaluated as a tree of two-operand contractions (contract_node) chosen at compile
// time by FLOP count: dynamic programming over operand subsets (opt_einsum's "optimal"
// path; at most 6 operands, 63 subsets). A pairwise step costs 2 * prod(extents of its
// letters) per example (1 * prod for a pure outer product). Steps between unbatched
// operands only (parameters) are computed once per call or cached with the parameters,
// so they weigh 1/1000 of a per-example step. Ties go to the smaller intermediates.
//
// For AllInt (N fields, K dims, C columns) the orders cost
//   (X . X^T) . C:  2 N^2 K + 2 N^2 C   and an N x N intermediate per example,
//   X . (X^T . C):  4 N K C             and a K x C intermediate,
// and the pass picks the second whenever it is cheaper, without the layer saying so.
// einsum_order<Spec, Ops...> exposes the chosen tree (per-example FLOPs, steps, shapes)
// for tests and for users who want to see what their expression became.
//
// Every index letter must appear in the output or in at least two operands (a letter of
// one operand only would be a plain sum: write sum<axis>(x) first). The batch axis is
// implicit and kept.
#include <tuple>

#include "ctrec/core/dsl.hpp"

namespace ctrec {

inline constexpr std::size_t max_einsum_operands = 6;

struct multi_spec {
    std::size_t n = 0;
    char op[max_einsum_operands][max_rank]{};
    std::size_t rank[max_einsum_operands]{};
    char out[max_rank]{};
    std::size_t rout = 0;
    bool parsed = false;
};

template <std::size_t L>
constexpr multi_spec parse_multi(const fixed_string<L>& s) {
    multi_spec p;
    std::size_t i = 0;
    auto is_letter = [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); };
    for (;;) {
        if (p.n == max_einsum_operands) return p;
        std::size_t r = 0;
        while (i < s.size() && is_letter(s.v[i]) && r < max_rank) p.op[p.n][r++] = s.v[i++];
        p.rank[p.n++] = r;
        if (i < s.size() && s.v[i] == ',') { ++i; continue; }
        break;
    }
    if (i + 1 >= s.size() || s.v[i] != '-' || s.v[i + 1] != '>') return p;
    i += 2;
    while (i < s.size() && is_letter(s.v[i]) && p.rout < max_rank) p.out[p.rout++] = s.v[i++];
    p.parsed = i == s.size();
    return p;
}

// The chosen evaluation tree. Nodes 0 .. n-1 are the operands; n .. 2n-2 are pairwise
// contractions in evaluation order; the last one is the result.
enum class einsum_problem {
    none,
    spec_does_not_parse,                 // expected "ab,bc,cd->ad"
    operand_count_differs_from_spec,
    operand_rank_differs_from_its_letters,
    letter_repeats_within_one_operand,
    letter_has_two_extents,
    output_letter_in_no_operand,
    letter_of_one_operand_only_is_summed,  // sum that axis first
};

struct einsum_tree {
    std::size_t n = 0;
    int left[2 * max_einsum_operands] = {}, right[2 * max_einsum_operands] = {};
    contract_spec spec[2 * max_einsum_operands] = {};
    dims shape[2 * max_einsum_operands] = {};
    bool batched[2 * max_einsum_operands] = {};
    double flops = 0;          // per example (batched steps), as the cost model counts them
    double naive_flops = 0;    // left-to-right order, for comparison
    std::size_t max_intermediate = 0;  // largest per-example intermediate (batched) in elements
    bool ok = false;
    einsum_problem problem = einsum_problem::none;
};

namespace detail {
struct letter_info {
    char ch[4 * max_rank * max_einsum_operands] = {};
    std::size_t ext[4 * max_rank * max_einsum_operands] = {};
    std::size_t n = 0;
    constexpr int find(char c) const {
        for (std::size_t i = 0; i < n; ++i)
            if (ch[i] == c) return static_cast<int>(i);
        return -1;
    }
};

// Letters of subset S (bit i = operand i) still needed outside it (output or another operand),
// in order of first appearance in S's operands (ascending operand index).
struct letter_list {
    char c[max_rank * max_einsum_operands] = {};
    std::size_t n = 0;
    constexpr bool has(char x) const {
        for (std::size_t i = 0; i < n; ++i)
            if (c[i] == x) return true;
        return false;
    }
};

constexpr bool op_has(const multi_spec& p, std::size_t o, char x) {
    for (std::size_t i = 0; i < p.rank[o]; ++i)
        if (p.op[o][i] == x) return true;
    return false;
}
constexpr bool out_has(const multi_spec& p, char x) {
    for (std::size_t i = 0; i < p.rout; ++i)
        if (p.out[i] == x) return true;
    return false;
}
constexpr letter_list kept_letters(const multi_spec& p, unsigned S) {
    letter_list l;
    for (std::size_t o = 0; o < p.n; ++o) {
        if (!(S >> o & 1u)) continue;
        for (std::size_t i = 0; i < p.rank[o]; ++i) {
            char x = p.op[o][i];
            if (l.has(x)) continue;
            bool needed = out_has(p, x);
            for (std::size_t q = 0; q < p.n && !needed; ++q) needed = !(S >> q & 1u) && op_has(p, q, x);
            if (needed) l.c[l.n++] = x;
        }
    }
    return l;
}
constexpr letter_list all_letters(const multi_spec& p, unsigned S) {
    letter_list l;
    for (std::size_t o = 0; o < p.n; ++o)
        if (S >> o & 1u)
            for (std::size_t i = 0; i < p.rank[o]; ++i)
                if (!l.has(p.op[o][i])) l.c[l.n++] = p.op[o][i];
    return l;
}

constexpr einsum_tree order_contractions(const multi_spec& p, const dims* shapes, const bool* batched) {
    einsum_tree t;
    t.n = p.n;
    if (!p.parsed || p.n < 2) { t.problem = einsum_problem::spec_does_not_parse; return t; }
    letter_info li;
    for (std::size_t o = 0; o < p.n; ++o) {
        if (p.rank[o] != shapes[o].rank) { t.problem = einsum_problem::operand_rank_differs_from_its_letters; return t; }
        for (std::size_t i = 0; i < p.rank[o]; ++i) {
            char x = p.op[o][i];
            for (std::size_t j = 0; j < i; ++j)
                if (p.op[o][j] == x) { t.problem = einsum_problem::letter_repeats_within_one_operand; return t; }
            int k = li.find(x);
            if (k < 0) li.ch[li.n] = x, li.ext[li.n++] = shapes[o].d[i];
            else if (li.ext[k] != shapes[o].d[i]) { t.problem = einsum_problem::letter_has_two_extents; return t; }
        }
    }
    for (std::size_t i = 0; i < p.rout; ++i)
        if (li.find(p.out[i]) < 0) { t.problem = einsum_problem::output_letter_in_no_operand; return t; }
    for (std::size_t k = 0; k < li.n; ++k) {
        std::size_t uses = out_has(p, li.ch[k]);
        for (std::size_t o = 0; o < p.n; ++o) uses += op_has(p, o, li.ch[k]);
        if (uses < 2) { t.problem = einsum_problem::letter_of_one_operand_only_is_summed; return t; }
    }
    auto extent_of = [&](const letter_list& l) {
        double e = 1;
        for (std::size_t i = 0; i < l.n; ++i) e *= static_cast<double>(li.ext[li.find(l.c[i])]);
        return e;
    };
    const unsigned full = (1u << p.n) - 1;
    double cost[1u << max_einsum_operands] = {}, inter[1u << max_einsum_operands] = {};
    unsigned split[1u << max_einsum_operands] = {};
    bool sb[1u << max_einsum_operands] = {};
    for (unsigned S = 1; S <= full; ++S) {
        for (std::size_t o = 0; o < p.n; ++o) sb[S] = sb[S] || ((S >> o & 1u) && batched[o]);
        if ((S & (S - 1)) == 0) continue;  // one operand: nothing to compute
        cost[S] = -1;
        const letter_list kept = kept_letters(p, S);
        for (unsigned A = (S - 1) & S; A > 0; A = (A - 1) & S) {
            const unsigned Bs = S & ~A;
            if (A > Bs) continue;  // each unordered split once
            const letter_list la = kept_letters(p, A), lb = kept_letters(p, Bs);
            letter_list u = la;
            bool summed = false;
            for (std::size_t i = 0; i < lb.n; ++i)
                if (!u.has(lb.c[i])) u.c[u.n++] = lb.c[i];
            for (std::size_t i = 0; i < u.n; ++i) summed = summed || !kept.has(u.c[i]);
            double step = (summed ? 2.0 : 1.0) * extent_of(u) * (sb[S] ? 1.0 : 1e-3);
            double c = cost[A] + cost[Bs] + step;
            double m = inter[A] + inter[Bs] + (S != full && sb[S] ? extent_of(kept) : 0.0);
            if (cost[S] < 0 || c < cost[S] || (c == cost[S] && m < inter[S])) cost[S] = c, inter[S] = m, split[S] = A;
        }
    }
    // emit the tree in evaluation order (children before parents)
    int node_of[1u << max_einsum_operands] = {};
    for (std::size_t o = 0; o < p.n; ++o) {
        node_of[1u << o] = static_cast<int>(o);
        t.shape[o] = shapes[o];
        t.batched[o] = batched[o];
        for (std::size_t i = 0; i < p.rank[o]; ++i) t.spec[o].c[i] = p.op[o][i];
        t.spec[o].rc = p.rank[o];
    }
    std::size_t next = p.n;
    unsigned subset_of[2 * max_einsum_operands] = {};
    unsigned stack[2 * max_einsum_operands] = {};
    bool expanded[2 * max_einsum_operands] = {};
    std::size_t sp = 0;
    stack[sp++] = full;
    while (sp > 0) {
        const unsigned S = stack[sp - 1];
        if ((S & (S - 1)) == 0) { --sp; continue; }
        if (!expanded[sp - 1]) {
            expanded[sp - 1] = true;
            const unsigned A = split[S], Bs = S & ~A;
            stack[sp] = A, expanded[sp++] = false;
            stack[sp] = Bs, expanded[sp++] = false;
            continue;
        }
        --sp;
        const unsigned A = split[S], Bs = S & ~A;
        const int l = node_of[A], r = node_of[Bs];
        const std::size_t me = next++;
        node_of[S] = static_cast<int>(me);
        subset_of[me] = S;
        t.left[me] = l, t.right[me] = r;
        contract_spec& cs = t.spec[me];
        for (std::size_t i = 0; i < t.spec[l].rc; ++i) cs.a[i] = t.spec[l].c[i];
        cs.ra = t.spec[l].rc;
        for (std::size_t i = 0; i < t.spec[r].rc; ++i) cs.b[i] = t.spec[r].c[i];
        cs.rb = t.spec[r].rc;
        const letter_list kept = S == full ? [&] {
            letter_list o;
            for (std::size_t i = 0; i < p.rout; ++i) o.c[o.n++] = p.out[i];
            return o;
        }() : kept_letters(p, S);
        for (std::size_t i = 0; i < kept.n; ++i) cs.c[i] = kept.c[i];
        cs.rc = kept.n;
        cs.parsed = true;
        t.shape[me].rank = kept.n;
        for (std::size_t i = 0; i < kept.n; ++i) t.shape[me].d[i] = li.ext[li.find(kept.c[i])];
        t.batched[me] = sb[S];
        if (S != full && sb[S] && t.shape[me].size() > t.max_intermediate) t.max_intermediate = t.shape[me].size();
    }
    // per-example FLOPs of the chosen and of the left-to-right order
    auto step_flops = [&](unsigned A, unsigned Bs) {
        const unsigned S = A | Bs;
        const letter_list la = kept_letters(p, A), lb = kept_letters(p, Bs), kept = kept_letters(p, S);
        letter_list u = la;
        bool summed = false;
        for (std::size_t i = 0; i < lb.n; ++i)
            if (!u.has(lb.c[i])) u.c[u.n++] = lb.c[i];
        for (std::size_t i = 0; i < u.n; ++i) summed = summed || !kept.has(u.c[i]);
        return sb[S] ? (summed ? 2.0 : 1.0) * extent_of(u) : 0.0;
    };
    double f = 0;
    for (std::size_t me = p.n; me < next; ++me) {
        const unsigned S = subset_of[me];
        f += step_flops(split[S], S & ~split[S]);
    }
    t.flops = f;
    unsigned acc = 1;
    double nf = 0;
    for (std::size_t o = 1; o < p.n; ++o) nf += step_flops(acc, 1u << o), acc |= 1u << o;
    t.naive_flops = nf;
    t.ok = true;
    return t;
}

template <fixed_string Spec, class... Ops>
constexpr einsum_tree einsum_order_of() {
    constexpr multi_spec p = parse_multi(Spec);
    constexpr dims shapes[] = {Ops::shape...};
    constexpr bool batched[] = {Ops::batched...};
    if constexpr (sizeof...(Ops) != p.n) {
        einsum_tree t;
        t.problem = einsum_problem::operand_count_differs_from_spec;
        return t;
    } else {
        return order_contractions(p, shapes, batched);
    }
}

template <einsum_tree T, int I, class Tuple>
constexpr auto build_tree(Tuple ops) {
    if constexpr (I < static_cast<int>(T.n)) {
        return std::get<I>(ops);
    } else {
        using L = decltype(build_tree<T, T.left[I]>(ops));
        using R = decltype(build_tree<T, T.right[I]>(ops));
        return contract_node<T.spec[I], L, R>{};
    }
}

// The failing check names the spec and the problem: invalid_einsum<"ab,bc->ad", einsum_problem::...>.
template <fixed_string Spec, einsum_problem P>
struct invalid_einsum {
    static_assert(P == einsum_problem::none,
                  "ctrec: invalid einsum: the spec and the problem are the template arguments of invalid_einsum<...> above");
    static constexpr bool value = P == einsum_problem::none;
};
} // namespace detail

// The evaluation tree einsum<Spec>(ops...) uses (for inspection and tests).
template <fixed_string Spec, node... Ops>
inline constexpr einsum_tree einsum_order = detail::einsum_order_of<Spec, Ops...>();

template <fixed_string Spec, node A, node B, node C, node... R>
constexpr auto einsum(A a, B b, C c, R... r) {
    constexpr einsum_tree t = einsum_order<Spec, A, B, C, R...>;
    static_assert(detail::invalid_einsum<Spec, t.problem>::value);
    if constexpr (!t.ok) {
        return a;
    } else {
        return detail::build_tree<t, static_cast<int>(2 * t.n - 2)>(std::tuple{a, b, c, r...});
    }
}

} // namespace ctrec
