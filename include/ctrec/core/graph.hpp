#pragma once
// The model graph as data (issue 11). An expression is a constexpr *value* of one fixed-capacity
// type, `expr`: a table of node records (op, per-example shape, batchedness, operands by index
// into an operand pool, the op's own parameters, leaf names in a name pool) plus the index of the
// node it denotes. Operators and layers are ordinary constexpr functions that append records, so
// a value used k times is one node referenced k times (never spelled k times in a type), and the
// cost of building a model grows with its number of nodes.
//
// Appending hash-conses: a record equal to an existing one (same op, parameters and operand ids)
// returns the existing node, so common subexpressions are found by value. Combining two
// expressions first checks, in O(1), whether one table is a prefix of the other (the usual case: a
// later layer reuses an earlier value) and copies the longer table whole; otherwise the smaller
// table is merged into the larger one node by node through the hash index.
//
// Capacities are compile-time constants (CTREC_MAX_NODES, ...); exceeding one is a compile
// error naming the capacity, never a silent truncation.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ctrec/core/dims.hpp"
#include "ctrec/core/contract.hpp"
#include "ctrec/core/random.hpp"
#include "ctrec/core/fixed_string.hpp"

#ifndef CTREC_MAX_NODES
#define CTREC_MAX_NODES 8192
#endif
#ifndef CTREC_MAX_OPERANDS
#define CTREC_MAX_OPERANDS 16384
#endif
#ifndef CTREC_MAX_NAME_CHARS
#define CTREC_MAX_NAME_CHARS 32768
#endif

namespace ctrec {

inline constexpr std::size_t max_nodes = CTREC_MAX_NODES;
inline constexpr std::size_t max_operands = CTREC_MAX_OPERANDS;
inline constexpr std::size_t max_name_chars = CTREC_MAX_NAME_CHARS;

enum class opcode : std::uint8_t {
    // leaves
    input,       // bound at run time (batched, or shared: one value for every example of a call)
    param,       // unbatched, owned by the parameters object
    constant,    // a scalar (or a shaped fill) literal
    batch_size,  // examples in the call, as an unbatched scalar
    random,      // random numbers (core/random.hpp: kind in axis; per example, or unbatched = one draw
                 // per call shared by every example; seeded by io.seed, or by value when begin == 1):
                 // a pure function of (seed, stream name, example index in the call, element);
                 // derivative zero, no storage
    // elementwise (NumPy broadcasting over the per-example axes; batchedness is "any operand")
    add, sub, mul, div, neg, exp, log, log1p, sqrt, rsqrt, tanh, sigmoid, relu, maximum, greater,
    greater_equal, where, minimum, abs, erf, batch_broadcast,
    // structure
    contract,    // two-operand einsum; keep_batch = false sums the batch (a parameter gradient)
    reduce_sum,  // sum over the per-example axes in `mask`
    reduce_max,  // max over them (derivative: split equally among ties, TF's rule)
    batch_sum,   // sum over the batch axis: an unbatched result
    reshape,     // same elements, new shape (a view)
    stop_gradient,  // identity, zero derivative (a view)
    concat,      // along `axis`, any number of operands
    slice,       // [begin, begin + shape[axis]) along `axis`
    pad,         // zero padding: `begin` zeros before the operand along `axis` (transpose of slice)
    attention,      // self_attention(x) = softmax(x x^T) x per example, x (N, K) (core/build.hpp)
    attention_vjp,  // (x, y = attention(x), c): attention's cotangent for x (no derivative of its own)
    attention_jvp,  // (x, y = attention(x), t): attention's tangent along t (no derivative of its own)
    kr_matmul,   // (P, Q, W): out[r, j] = sum_{a, b} P[r, a] Q[r, b] W[a kb + b, j], the Khatri-Rao rows
                 // P[r, a] Q[r, b] never stored (CIN, core/build.hpp)
    kr_gram,     // (P, Q, G): out[a kb + b, j] = sum over the batch and r of P[r, a] Q[r, b] G[r, j] (no derivative)
    kr_dual,     // (P, Q, W, G): [d/dP | d/dQ] of kr_matmul for cotangent G, side by side (no derivative)
    kr_matmul2,  // (P, Q, P2, Q2, W): (P (*) Q + P2 (*) Q2) W, kr_matmul's tangent in one GEMM (no derivative)
    transpose,   // swaps the last two per-example axes
};

inline constexpr std::string_view opcode_name(opcode o) {
    constexpr std::string_view names[] = {
        "input", "param", "constant", "batch_size", "random", "add", "sub", "mul", "div", "neg", "exp", "log", "log1p",
        "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "maximum", "greater", "greater_equal", "where",
        "minimum", "abs", "erf", "batch_broadcast", "contract", "reduce_sum", "reduce_max", "batch_sum", "reshape", "stop_gradient", "concat", "slice",
        "pad", "attention", "attention_vjp", "attention_jvp", "kr_matmul", "kr_gram", "kr_dual",
        "kr_matmul2", "transpose"};
    return names[static_cast<int>(o)];
}

constexpr bool is_leaf(opcode o) { return o <= opcode::random; }
constexpr bool is_elementwise(opcode o) { return o >= opcode::add && o <= opcode::batch_broadcast; }
constexpr bool is_view(opcode o) { return o == opcode::reshape || o == opcode::stop_gradient; }

// One node. Parameters that an op does not use stay zero, so equal records mean equal nodes.
struct node {
    opcode op = opcode::constant;
    bool batched = false;
    bool keep_batch = true;        // contract: false = the batch axis is summed
    dims shape{};
    std::uint32_t first = 0;       // operands: pool[first .. first + nops)
    std::uint32_t nops = 0;
    double value = 0;              // constant
    contract_spec spec{};          // contract
    unsigned mask = 0;             // reduce_sum: per-example axes summed
    std::uint32_t axis = 0;        // concat, slice, pad
    std::uint32_t begin = 0;       // slice, pad
    std::uint32_t name = 0;        // leaves: name_pool[name .. name + name_len)
    std::uint32_t name_len = 0;
    constexpr bool operator==(const node&) const = default;
};

// Compile-time errors: calling a function that is not constexpr stops constant evaluation,
// and GCC prints its name (which says what went wrong) and the user's expression that led to it.
void ctrec_error_too_many_nodes_raise_CTREC_MAX_NODES();
void ctrec_error_too_many_operands_raise_CTREC_MAX_OPERANDS();
void ctrec_error_names_too_long_raise_CTREC_MAX_NAME_CHARS();

namespace detail {
constexpr std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}
constexpr std::uint64_t hash_double(double v) {
    // constexpr-friendly: the value scaled to an integer is enough to spread buckets; equality
    // is still decided by comparing the records
    if (v != v) return 0x7ff8;
    double a = v < 0 ? -v : v;
    std::uint64_t h = static_cast<std::uint64_t>(a < 1e18 ? a * 1048576.0 : 1e18) ^ (v < 0 ? 0x5555 : 0);
    return h;
}
} // namespace detail

// The graph: nodes in topological order (operands before their users).
struct graph {
    std::uint32_t n = 0, npool = 0, nchars = 0;
    node nodes[max_nodes]{};
    std::uint32_t pool[max_operands]{};
    char names[max_name_chars]{};
    std::uint64_t node_hash[max_nodes]{};    // hash of the record with its operands' hashes
    std::uint64_t prefix_hash[max_nodes]{};  // running hash of the table up to and including node i
    std::uint32_t index[2 * max_nodes]{};    // open addressing: node id + 1, 0 = empty

    constexpr const std::uint32_t* operands(std::uint32_t i) const { return pool + nodes[i].first; }
    constexpr std::uint32_t operand(std::uint32_t i, std::uint32_t j) const { return pool[nodes[i].first + j]; }
    constexpr std::string_view name_of(std::uint32_t i) const { return {names + nodes[i].name, nodes[i].name_len}; }

    // Hash of a record whose operands are given as hashes (so equal subgraphs hash equally
    // whatever their ids in different tables).
    constexpr std::uint64_t record_hash(const node& r, const std::uint32_t* ops, std::string_view nm) const {
        std::uint64_t h = detail::mix(static_cast<std::uint64_t>(r.op) + 1, r.batched + 2 * r.keep_batch);
        for (std::size_t i = 0; i < r.shape.rank; ++i) h = detail::mix(h, r.shape.d[i]);
        h = detail::mix(h, r.shape.rank);
        h = detail::mix(h, detail::hash_double(r.value));
        h = detail::mix(h, r.mask + (std::uint64_t(r.axis) << 32) + (std::uint64_t(r.begin) << 48));
        for (std::size_t i = 0; i < r.spec.ra; ++i) h = detail::mix(h, static_cast<unsigned char>(r.spec.a[i]));
        for (std::size_t i = 0; i < r.spec.rb; ++i) h = detail::mix(h, 256u + static_cast<unsigned char>(r.spec.b[i]));
        for (std::size_t i = 0; i < r.spec.rc; ++i) h = detail::mix(h, 512u + static_cast<unsigned char>(r.spec.c[i]));
        for (char ch : nm) h = detail::mix(h, static_cast<unsigned char>(ch));
        for (std::uint32_t j = 0; j < r.nops; ++j) h = detail::mix(h, node_hash[ops[j]]);
        return h;
    }

    constexpr bool same(std::uint32_t i, const node& r, const std::uint32_t* ops, std::string_view nm) const {
        const node& a = nodes[i];
        if (a.op != r.op || a.batched != r.batched || a.keep_batch != r.keep_batch || !(a.shape == r.shape) ||
            a.nops != r.nops || a.value != r.value || !(a.spec == r.spec) || a.mask != r.mask || a.axis != r.axis ||
            a.begin != r.begin || name_of(i) != nm)
            return false;
        for (std::uint32_t j = 0; j < r.nops; ++j)
            if (operand(i, j) != ops[j]) return false;
        return true;
    }

    // Appends a record (operands are ids in this table), or returns the equal node already here.
    constexpr std::uint32_t intern(node r, const std::uint32_t* ops, std::string_view nm = {}) {
        const std::uint64_t h = record_hash(r, ops, nm);
        std::size_t slot = h % (2 * max_nodes);
        while (index[slot] != 0) {
            const std::uint32_t id = index[slot] - 1;
            if (node_hash[id] == h && same(id, r, ops, nm)) return id;
            slot = (slot + 1) % (2 * max_nodes);
        }
        if (n >= max_nodes) ctrec_error_too_many_nodes_raise_CTREC_MAX_NODES();
        if (npool + r.nops > max_operands) ctrec_error_too_many_operands_raise_CTREC_MAX_OPERANDS();
        if (nchars + nm.size() > max_name_chars) ctrec_error_names_too_long_raise_CTREC_MAX_NAME_CHARS();
        r.first = npool;
        for (std::uint32_t j = 0; j < r.nops; ++j) pool[npool++] = ops[j];
        r.name = nchars;
        r.name_len = static_cast<std::uint32_t>(nm.size());
        for (char ch : nm) names[nchars++] = ch;
        const std::uint32_t id = n++;
        nodes[id] = r;
        node_hash[id] = h;
        prefix_hash[id] = detail::mix(id ? prefix_hash[id - 1] : 0x243F6A8885A308D3ull, h);
        index[slot] = id + 1;
        return id;
    }

    // Is `o` (with o.n nodes) a prefix of this table?
    constexpr bool has_prefix(const graph& o) const {
        if (o.n == 0) return true;
        if (o.n > n) return false;
        return prefix_hash[o.n - 1] == o.prefix_hash[o.n - 1] && nodes[o.n - 1] == o.nodes[o.n - 1];
    }

    // Adds every node of o; map[i] is o's node i here.
    constexpr void merge(const graph& o, std::uint32_t* map) {
        std::uint32_t ops[64];
        for (std::uint32_t i = 0; i < o.n; ++i) {
            const node& r = o.nodes[i];
            if (r.nops <= 64) {
                for (std::uint32_t j = 0; j < r.nops; ++j) ops[j] = map[o.operand(i, j)];
                map[i] = intern(r, ops, o.name_of(i));
            } else {
                // a wide node (a concat of many fields): its operands go through a large buffer
                std::uint32_t big[max_nodes];
                for (std::uint32_t j = 0; j < r.nops; ++j) big[j] = map[o.operand(i, j)];
                map[i] = intern(r, big, o.name_of(i));
            }
        }
    }
};

// An expression: a graph and the node it denotes.
struct expr {
    graph g{};
    std::uint32_t id = 0;
    constexpr const node& rec() const { return g.nodes[id]; }
    constexpr dims shape() const { return rec().shape; }
    constexpr bool batched() const { return rec().batched; }
};

// FNV-1a of a random stream's name: different streams give independent numbers.
constexpr std::uint64_t stream_hash(std::string_view name) {
    std::uint64_t h = 1469598103934665603ull;
    for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return h;
}

// Brings a and b into one graph; returns it with the ids of a and b in it.
struct joined {
    graph g;
    std::uint32_t a, b;
};
constexpr void join_into(graph& g, const expr& e, std::uint32_t& id) {
    if (g.has_prefix(e.g)) {
        id = e.id;
        return;
    }
    std::uint32_t map[max_nodes]{};
    g.merge(e.g, map);
    id = map[e.id];
}

// The graph holding every expression of the list (the longest first: usually the others are
// its prefixes and cost nothing), with their ids.
template <std::size_t N>
constexpr graph join_all(const expr* const (&es)[N], std::uint32_t (&ids)[N]) {
    std::size_t longest = 0;
    for (std::size_t i = 1; i < N; ++i)
        if (es[i]->g.n > es[longest]->g.n) longest = i;
    graph g = es[longest]->g;
    for (std::size_t i = 0; i < N; ++i) join_into(g, *es[i], ids[i]);
    return g;
}

} // namespace ctrec
