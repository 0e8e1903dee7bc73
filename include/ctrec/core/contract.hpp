#pragma once
// Two-operand einsum specs: parsing and shape rules, as constexpr values (the graph's
// contraction nodes carry one; contract_plan.hpp lowers it to a strided GEMM).
#include <cstddef>

#include "ctrec/core/dims.hpp"
#include "ctrec/core/fixed_string.hpp"

namespace ctrec {

// ---- contraction --------------------------------------------------------------
// Spec "ik,kj->ij" over per-example axes, one letter per axis. A letter in both
// operands and not in the output is summed. The batch axis is implicit: when
// KeepBatch is false and an operand is batched, the batch axis is summed too
// (this is how parameter gradients x^T . dy are written).
struct contract_spec {
    char a[max_rank]{}, b[max_rank]{}, c[max_rank]{};
    std::size_t ra = 0, rb = 0, rc = 0;
    bool parsed = false;
    constexpr bool operator==(const contract_spec&) const = default;
};

template <std::size_t N>
constexpr contract_spec parse_contract(const fixed_string<N>& s) {
    contract_spec p;
    std::size_t i = 0;
    auto is_letter = [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); };
    while (i < s.size() && is_letter(s.v[i]) && p.ra < max_rank) p.a[p.ra++] = s.v[i++];
    if (i >= s.size() || s.v[i] != ',') return p;
    ++i;
    while (i < s.size() && is_letter(s.v[i]) && p.rb < max_rank) p.b[p.rb++] = s.v[i++];
    if (i + 1 >= s.size() || s.v[i] != '-' || s.v[i + 1] != '>') return p;
    i += 2;
    while (i < s.size() && is_letter(s.v[i]) && p.rc < max_rank) p.c[p.rc++] = s.v[i++];
    p.parsed = i == s.size() || s.v[i] == '\0';
    return p;
}

namespace detail {
constexpr int find(const char* s, std::size_t n, char ch) {
    for (std::size_t i = 0; i < n; ++i)
        if (s[i] == ch) return static_cast<int>(i);
    return -1;
}
// Checks ranks, repeated letters, equal extents and that output letters exist.
constexpr bool contract_ok(contract_spec p, dims a, dims b) {
    if (!p.parsed || p.ra != a.rank || p.rb != b.rank) return false;
    for (std::size_t i = 0; i < p.ra; ++i) {
        if (find(p.a, i, p.a[i]) >= 0) return false;
        int j = find(p.b, p.rb, p.a[i]);
        if (j >= 0 && b.d[j] != a.d[i]) return false;
        if (j < 0 && find(p.c, p.rc, p.a[i]) < 0) return false;  // summed over one operand only
    }
    for (std::size_t i = 0; i < p.rb; ++i) {
        if (find(p.b, i, p.b[i]) >= 0) return false;
        if (find(p.a, p.ra, p.b[i]) < 0 && find(p.c, p.rc, p.b[i]) < 0) return false;
    }
    for (std::size_t i = 0; i < p.rc; ++i) {
        if (find(p.c, i, p.c[i]) >= 0) return false;
        if (find(p.a, p.ra, p.c[i]) < 0 && find(p.b, p.rb, p.c[i]) < 0) return false;
    }
    return true;
}
constexpr dims contract_dims(contract_spec p, dims a, dims b) {
    dims o;
    if (!contract_ok(p, a, b)) return o;
    o.rank = p.rc;
    for (std::size_t i = 0; i < p.rc; ++i) {
        int j = find(p.a, p.ra, p.c[i]);
        o.d[i] = j >= 0 ? a.d[j] : b.d[find(p.b, p.rb, p.c[i])];
    }
    return o;
}
} // namespace detail

} // namespace ctrec
