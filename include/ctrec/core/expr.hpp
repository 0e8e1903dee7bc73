#pragma once
// Expression nodes. A node is an empty type: its per-example shape, whether it
// varies across the batch ("batched"), its operands and its parameters are all
// part of the type, so equal subexpressions are the same type (free CSE) and a
// whole model is known to the compiler. Values live in buffers chosen by the
// plan (plan.hpp); nodes never hold data.
//
// Every node publishes:
//   node_kind   which primitive it is
//   shape       per-example dims (the batch axis is implicit and runtime)
//   batched     true if the value differs per example
//   operands    tlist of operand node types
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "ctrec/core/dims.hpp"
#include "ctrec/core/fixed_string.hpp"
#include "ctrec/core/tlist.hpp"

namespace ctrec {

enum class kind {
    input,        // batched leaf bound at run time
    param,        // unbatched leaf (parameters, or tangents of parameters)
    index_input,  // batched int32 leaf (ids for gather)
    constant,     // scalar literal
    zero,         // symbolic zero produced by differentiation
    map,          // elementwise op with broadcasting
    contract,     // two-operand einsum-like contraction
    reduce,       // sum / max over per-example axes
    batch_sum,    // sum over the batch axis (parameter gradients)
    reshape,      // same data, new shape (a view)
    stop_gradient,// identity forward, zero derivative (a view)
    transpose,
    slice,
    pad,          // zero padding along one axis (the transpose of slice)
    concat,
    gather,       // rows of a table picked by ids (embedding lookup)
    scatter_add,  // transpose of gather: add rows into a table-shaped result
    batch_size,   // the number of examples in this call, as a scalar
    random,       // batched uniform [0, 1) numbers: a pure function of (seed, stream, example, element)
    kr_matmul,    // GEMM whose A is a row-wise Khatri-Rao product P (*) Q, never stored (CIN)
    kr_gram,      // its weight gradient: (P (*) Q)^T . G summed over the batch
    kr_dual,      // both input gradients of kr_matmul in one pass: [dP | dQ]
    kr_matmul2,   // (P (*) Q + P2 (*) Q2) . W in one GEMM: the tangent of kr_matmul
    attention,    // softmax(X X^T) X per example, one pass, no N x N buffer (core/attention.hpp)
    attention_vjp,// its input gradient (X is query, key and value): dS X + dS^T X + A^T dO
    attention_jvp,// its tangent along dX
    scan,         // a gated recurrence over the per-example time axis (GRU / AGRU / AUGRU): a (T, S) record
    scan_vjp,     // its reverse mode (BPTT over the stored record): per-step pre-activation gradients
    scan_jvp,     // its forward mode: the state tangents, through the recurrence
};

inline constexpr std::string_view kind_name(kind k) {
    constexpr std::string_view names[] = {"input", "param", "index_input", "constant", "zero", "map",
                                          "contract", "reduce", "batch_sum", "reshape", "stop_gradient",
                                          "transpose", "slice", "pad", "concat", "gather", "scatter_add",
                                          "batch_size", "random", "kr_matmul", "kr_gram", "kr_dual", "kr_matmul2",
                                          "attention", "attention_vjp", "attention_jvp",
                                          "scan", "scan_vjp", "scan_jvp"};
    return names[static_cast<int>(k)];
}

template <class T>
concept node = requires {
    { T::node_kind } -> std::convertible_to<kind>;
    { T::shape } -> std::convertible_to<dims>;
    { T::batched } -> std::convertible_to<bool>;
    typename T::operands;
};

// ---- readable shape diagnostics -------------------------------------------
// When a check fails, the compiler prints the instantiation of this template,
// whose arguments spell the operation and both shapes, e.g.
//   incompatible_shapes<"matmul", shape<3, 4>, shape<5, 6>, false>
template <fixed_string Op, class ShapeA, class ShapeB, bool Ok>
struct incompatible_shapes {
    static_assert(Ok, "ctrec: shape mismatch: the operation and both operand shapes are the "
                      "template arguments of incompatible_shapes<...> above");
    static constexpr bool value = Ok;
};
template <fixed_string Op, dims A, dims B, bool Ok>
inline constexpr bool check_shapes = incompatible_shapes<Op, shape_of<A>, shape_of<B>, Ok>::value;

// ---- leaves -----------------------------------------------------------------
// Batched = false: a shared input, bound at run time like any input but the same for every
// example of the call (one user's behaviour sequence scored against a batch of candidate
// items). Values computed from shared inputs and parameters alone are evaluated once per
// call, not per example (plan.hpp's hoisting of unbatched values).
template <fixed_string Name, dims S, bool Batched = true>
struct input_node {
    static constexpr kind node_kind = kind::input;
    static constexpr dims shape = S;
    static constexpr bool batched = Batched;
    static constexpr auto name = Name;
    using operands = tlist<>;
};

template <fixed_string Name, dims S>
struct param_node {
    static constexpr kind node_kind = kind::param;
    static constexpr dims shape = S;
    static constexpr bool batched = false;
    static constexpr auto name = Name;
    using operands = tlist<>;
};

template <fixed_string Name, dims S>
struct index_node {
    static constexpr kind node_kind = kind::index_input;
    static constexpr dims shape = S;
    static constexpr bool batched = true;
    static constexpr auto name = Name;
    using operands = tlist<>;
};

template <double V>
struct const_node {
    static constexpr kind node_kind = kind::constant;
    static constexpr dims shape = {};
    static constexpr bool batched = false;
    static constexpr double value = V;
    using operands = tlist<>;
};

// The runtime batch size B as an unbatched scalar (batch means: batch_sum(x) / B).
struct batch_size_node {
    static constexpr kind node_kind = kind::batch_size;
    static constexpr dims shape = {};
    static constexpr bool batched = false;
    using operands = tlist<>;
};

// Uniform [0, 1) numbers, one per element of every example: a pure function of the
// call's seed (io.seed), the stream name, the example's index in the call and the element
// index. Recomputed wherever it is read, so a forward and a backward pass of the same call
// see the same values (dropout masks need no storage). Its derivative is zero.
template <fixed_string Stream, dims S>
struct random_node {
    static constexpr kind node_kind = kind::random;
    static constexpr dims shape = S;
    static constexpr bool batched = true;
    static constexpr auto name = Stream;
    using operands = tlist<>;
    // FNV-1a of the stream name: different streams give independent numbers
    static constexpr std::uint64_t stream_hash = [] {
        std::uint64_t h = 1469598103934665603ull;
        for (std::size_t i = 0; i < Stream.size(); ++i) h = (h ^ static_cast<unsigned char>(Stream.v[i])) * 1099511628211ull;
        return h;
    }();
};

namespace detail {
constexpr std::uint64_t splitmix64(std::uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
} // namespace detail

// Element i of example e of random stream `stream` under `seed`, in [0, 1): 24 random bits
// for float, 53 for double, so the value never rounds up to 1.
template <class T>
constexpr T random_uniform_value(std::uint64_t seed, std::uint64_t stream, std::uint64_t e, std::uint64_t i) {
    std::uint64_t h = detail::splitmix64(detail::splitmix64(detail::splitmix64(seed ^ stream) + e) + i);
    if constexpr (sizeof(T) <= 4) return static_cast<T>(static_cast<double>(h >> 40) * 0x1p-24);
    else return static_cast<T>(static_cast<double>(h >> 11) * 0x1p-53);
}

template <dims S, bool Batched>
struct zero_node {
    static constexpr kind node_kind = kind::zero;
    static constexpr dims shape = S;
    static constexpr bool batched = Batched;
    using operands = tlist<>;
};

template <class T> inline constexpr bool is_zero_v = false;
template <dims S, bool B> inline constexpr bool is_zero_v<zero_node<S, B>> = true;
template <class T> inline constexpr bool is_leaf_v = T::operands::size == 0;

// ---- elementwise map --------------------------------------------------------
namespace detail {
template <class... A>
constexpr dims broadcast_all() {
    dims r{};
    ((r = broadcast(r, A::shape)), ...);
    return r;
}
template <class Op, class... A>
constexpr bool map_shapes_ok() {
    dims r{};
    bool ok = true;
    ((ok = ok && can_broadcast(r, A::shape), r = broadcast(r, A::shape)), ...);
    return ok;
}
} // namespace detail

template <class Op, class... A>
struct map_node {
    static_assert(sizeof...(A) == Op::arity, "ctrec: wrong number of operands for an elementwise op");
    static_assert(sizeof...(A) != 2 ||
                      check_shapes<Op::name, std::tuple_element_t<0, std::tuple<A...>>::shape,
                                   std::tuple_element_t<sizeof...(A) - 1, std::tuple<A...>>::shape,
                                   detail::map_shapes_ok<Op, A...>()>,
                  "ctrec: operands of an elementwise op must broadcast");
    static_assert(detail::map_shapes_ok<Op, A...>(), "ctrec: operands of an elementwise op must broadcast");
    static constexpr kind node_kind = kind::map;
    static constexpr dims shape = detail::broadcast_all<A...>();
    static constexpr bool batched = (A::batched || ...);
    using op = Op;
    using operands = tlist<A...>;
};

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

// The spec is a value (not the user's string), so the same contraction written
// by a user and generated by differentiation is the same type.
template <contract_spec Spec, class A, class B, bool KeepBatch = true>
struct contract_node {
    static_assert(check_shapes<"contract", A::shape, B::shape, detail::contract_ok(Spec, A::shape, B::shape)>,
                  "ctrec: contraction spec does not fit the operand shapes");
    static constexpr kind node_kind = kind::contract;
    static constexpr contract_spec spec = Spec;
    static constexpr dims shape = detail::contract_dims(Spec, A::shape, B::shape);
    static constexpr bool batched = KeepBatch && (A::batched || B::batched);
    static constexpr bool keep_batch = KeepBatch;
    using operands = tlist<A, B>;
};

// ---- reductions ---------------------------------------------------------------
struct reduce_sum_op { static constexpr std::string_view name = "sum"; };
struct reduce_max_op { static constexpr std::string_view name = "max"; };

template <class Op, unsigned Mask, class A>
struct reduce_node {
    static_assert(Mask >> A::shape.rank == 0, "ctrec: reduction axis out of range");
    static constexpr kind node_kind = kind::reduce;
    static constexpr dims shape = reduce_dims(A::shape, Mask);
    static constexpr bool batched = A::batched;
    static constexpr unsigned mask = Mask;
    using op = Op;
    using operands = tlist<A>;
};

template <class A>
struct batch_sum_node {
    static constexpr kind node_kind = kind::batch_sum;
    static constexpr dims shape = A::shape;
    static constexpr bool batched = false;
    using operands = tlist<A>;
};

// ---- data movement --------------------------------------------------------------
template <dims S, class A>
struct reshape_node {
    static_assert(check_shapes<"reshape", A::shape, S, S.size() == A::shape.size()>,
                  "ctrec: reshape must keep the number of elements");
    static constexpr kind node_kind = kind::reshape;
    static constexpr dims shape = S;
    static constexpr bool batched = A::batched;
    using operands = tlist<A>;
};

template <class A>
struct stop_gradient_node {
    static constexpr kind node_kind = kind::stop_gradient;
    static constexpr dims shape = A::shape;
    static constexpr bool batched = A::batched;
    using operands = tlist<A>;
};

template <dims Perm, class A>
struct transpose_node {
    static_assert(check_shapes<"transpose", A::shape, Perm, is_permutation(Perm, A::shape.rank)>,
                  "ctrec: transpose needs a permutation of the operand's axes");
    static constexpr kind node_kind = kind::transpose;
    static constexpr dims shape = permute(A::shape, Perm);
    static constexpr bool batched = A::batched;
    static constexpr dims perm = Perm;
    using operands = tlist<A>;
};

template <std::size_t Axis, std::size_t Begin, std::size_t End, class A>
struct slice_node {
    static_assert(check_shapes<"slice", A::shape, make_dims<Axis, Begin, End>(),
                               (Axis < A::shape.rank && Begin < End && End <= A::shape.d[Axis])>,
                  "ctrec: slice [Begin, End) must lie inside the axis");
    static constexpr kind node_kind = kind::slice;
    static constexpr dims shape = with_axis(A::shape, Axis, End - Begin);
    static constexpr bool batched = A::batched;
    static constexpr std::size_t axis = Axis, begin = Begin, end = End;
    using operands = tlist<A>;
};

template <std::size_t Axis, std::size_t Before, std::size_t After, class A>
struct pad_node {
    static_assert(Axis < A::shape.rank, "ctrec: pad axis out of range");
    static constexpr kind node_kind = kind::pad;
    static constexpr dims shape = with_axis(A::shape, Axis, A::shape.d[Axis] + Before + After);
    static constexpr bool batched = A::batched;
    static constexpr std::size_t axis = Axis, before = Before, after = After;
    using operands = tlist<A>;
};

namespace detail {
template <std::size_t Axis, class... A>
constexpr bool concat_ok() {
    constexpr dims s[] = {A::shape...};
    for (auto& x : s) {
        if (x.rank != s[0].rank || Axis >= x.rank) return false;
        for (std::size_t i = 0; i < x.rank; ++i)
            if (i != Axis && x.d[i] != s[0].d[i]) return false;
    }
    return true;
}
template <std::size_t Axis, class... A>
constexpr dims concat_shape() {
    constexpr dims s[] = {A::shape...};
    dims o = s[0];
    if (Axis < o.rank) o.d[Axis] = (A::shape.d[Axis] + ...);
    return o;
}
} // namespace detail

template <std::size_t Axis, class... A>
struct concat_node {
    static_assert(sizeof...(A) >= 1, "ctrec: concat needs operands");
    static_assert(check_shapes<"concat", std::tuple_element_t<0, std::tuple<A...>>::shape,
                               std::tuple_element_t<sizeof...(A) - 1, std::tuple<A...>>::shape,
                               detail::concat_ok<Axis, A...>()>,
                  "ctrec: concat operands must agree on every axis but the concat axis");
    static constexpr kind node_kind = kind::concat;
    static constexpr dims shape = detail::concat_shape<Axis, A...>();
    static constexpr bool batched = (A::batched || ...);
    static constexpr std::size_t axis = Axis;
    using operands = tlist<A...>;
};

// gather: Table (V, R...) unbatched, Ids (n...) int32 batched -> (n..., R...).
template <class Table, class Ids>
struct gather_node {
    static_assert(Ids::node_kind == kind::index_input, "ctrec: gather ids must be an index input");
    static_assert(!Table::batched && Table::shape.rank >= 1, "ctrec: gather table must be an unbatched tensor of rank >= 1");
    static constexpr kind node_kind = kind::gather;
    static constexpr dims shape = concat_dims(Ids::shape, drop_front(Table::shape, 1));
    static constexpr bool batched = true;
    static constexpr std::size_t rows = Table::shape.d[0];
    static constexpr std::size_t row_size = drop_front(Table::shape, 1).size();
    using operands = tlist<Table, Ids>;
};

// scatter_add: the transpose of gather. Sums rows of Ct (n..., R...) into a
// (V, R...) table at the ids, over all examples (an unbatched result).
template <class Ids, class Ct, dims TableShape>
struct scatter_add_node {
    static constexpr kind node_kind = kind::scatter_add;
    static constexpr dims shape = TableShape;
    static constexpr bool batched = false;
    static constexpr std::size_t rows = TableShape.d[0];
    static constexpr std::size_t row_size = drop_front(TableShape, 1).size();
    using operands = tlist<Ids, Ct>;
};

// ---- Khatri-Rao products (CIN's outer products, contracted away) ---------------------
// kr_matmul_node<role, P, Q, W>: per example, P (R, ka) and Q (R, kb) are batched row sets
// and W (H * M, J) is an unbatched weight viewed as W[h, m, j]. The row-wise Khatri-Rao
// product A[r, a * kb + b] = P[r, a] Q[r, b] is contracted with W without being stored
// (kernels/cpu/kr_gemm.hpp packs one panel of it at a time). Three roles cover the forward
// product and both input gradients, each reading W as stored:
//   out_j: out[r, j] = sum_{h, m} P[r, h] Q[r, m] W[h, m, j]   (P ~ h, Q ~ m)   forward
//   out_h: out[r, h] = sum_{m, j} P[r, m] Q[r, j] W[h, m, j]   (P ~ m, Q ~ j)   d/d(first factor)
//   out_m: out[r, m] = sum_{h, j} P[r, h] Q[r, j] W[h, m, j]   (P ~ h, Q ~ j)   d/d(second factor)
enum class kr_role { out_j, out_h, out_m };

namespace detail {
constexpr bool kr_ok(kr_role role, dims p, dims q, dims w) {
    if (p.rank != 2 || q.rank != 2 || w.rank != 2 || p.d[0] != q.d[0] || p.d[1] == 0 || q.d[1] == 0) return false;
    if (role == kr_role::out_j) return w.d[0] == p.d[1] * q.d[1];
    if (role == kr_role::out_h) return w.d[1] == q.d[1] && w.d[0] % p.d[1] == 0;
    return w.d[1] == q.d[1] && w.d[0] % p.d[1] == 0;
}
} // namespace detail

template <kr_role Role, class P, class Q, class Wt>
struct kr_matmul_node {
    static_assert(check_shapes<"khatri_rao_matmul", P::shape, Q::shape,
                               detail::kr_ok(Role, P::shape, Q::shape, Wt::shape)>,
                  "ctrec: khatri_rao_matmul needs P (R, H), Q (R, M) and W (H * M, J)");
    static_assert(P::batched && Q::batched && !Wt::batched,
                  "ctrec: khatri_rao_matmul needs per-example P and Q and an unbatched W");
    static constexpr kind node_kind = kind::kr_matmul;
    static constexpr kr_role role = Role;
    static constexpr std::size_t R = P::shape.d[0], ka = P::shape.d[1], kb = Q::shape.d[1];
    // W[h, m, j] extents
    static constexpr std::size_t J = Wt::shape.d[1];
    static constexpr std::size_t H = Role == kr_role::out_j ? ka : Role == kr_role::out_h ? Wt::shape.d[0] / ka : ka;
    static constexpr std::size_t M = Role == kr_role::out_j ? kb : Role == kr_role::out_h ? ka : Wt::shape.d[0] / ka;
    static constexpr std::size_t out_cols = Role == kr_role::out_j ? J : Role == kr_role::out_h ? H : M;
    // W(kappa = a * kb + b, o) = W[a * swa + b * swb + o * swo]
    static constexpr std::ptrdiff_t swa = static_cast<std::ptrdiff_t>(Role == kr_role::out_h ? J : M * J);
    static constexpr std::ptrdiff_t swb = static_cast<std::ptrdiff_t>(Role == kr_role::out_j ? J : 1);
    static constexpr std::ptrdiff_t swo = static_cast<std::ptrdiff_t>(Role == kr_role::out_j ? 1 : Role == kr_role::out_h ? M * J : J);
    static constexpr dims shape = make_dims<R, out_cols>();
    static constexpr bool batched = true;
    using operands = tlist<P, Q, Wt>;
};

// kr_gram_node<P, Q, G>: out[a * kb + b, o] = sum over the batch and r of P[r, a] Q[r, b] G[r, o]
// (the weight gradient of kr_matmul; unbatched).
template <class P, class Q, class G>
struct kr_gram_node {
    static_assert(check_shapes<"khatri_rao_gram", P::shape, Q::shape,
                               P::shape.rank == 2 && Q::shape.rank == 2 && G::shape.rank == 2 &&
                                   P::shape.d[0] == Q::shape.d[0] && G::shape.d[0] == P::shape.d[0]>,
                  "ctrec: khatri_rao_gram needs P (R, H), Q (R, M) and G (R, J)");
    static_assert(P::batched && Q::batched && G::batched, "ctrec: khatri_rao_gram sums per-example operands");
    static constexpr kind node_kind = kind::kr_gram;
    static constexpr std::size_t R = P::shape.d[0], ka = P::shape.d[1], kb = Q::shape.d[1], J = G::shape.d[1];
    static constexpr dims shape = make_dims<ka * kb, J>();
    static constexpr bool batched = false;
    using operands = tlist<P, Q, G>;
};

// kr_dual_node<P, Q, W, G>: both input gradients of kr_matmul_node<out_j, P, Q, W> for the
// output gradient G, side by side: out[r, :ka] = d/dP, out[r, ka:] = d/dQ (the two VJP rules
// slice it, and type identity makes it one step). dZ = G W^T is formed tile by tile in
// registers and reduced against Q and P at once: one product's worth of FMAs for both.
inline constexpr std::size_t kr_dual_max_j = 256;  // = cpu::max_dual_j (a strip of W^T per column block)
template <class P, class Q, class Wt, class G>
struct kr_dual_node {
    static_assert(P::batched && Q::batched && G::batched && !Wt::batched);
    static_assert(Wt::shape.d[0] == P::shape.d[1] * Q::shape.d[1] && G::shape.d[1] == Wt::shape.d[1] &&
                      G::shape.d[0] == P::shape.d[0] && Wt::shape.d[1] <= kr_dual_max_j,
                  "ctrec internal: kr_dual operands");
    static constexpr kind node_kind = kind::kr_dual;
    static constexpr std::size_t R = P::shape.d[0], ka = P::shape.d[1], kb = Q::shape.d[1], J = Wt::shape.d[1];
    static constexpr dims shape = make_dims<R, ka + kb>();
    static constexpr bool batched = true;
    using operands = tlist<P, Q, Wt, G>;
};

// kr_matmul2_node<P, Q, P2, Q2, W>: out[r, j] = sum_{h, m} (P[r, h] Q[r, m] + P2[r, h] Q2[r, m]) W[h * M + m, j].
// The forward-mode tangent dP (*) Q + P (*) dQ of kr_matmul as one GEMM (one panel holds
// both products), so a JVP costs three products per layer (primal, this, the dW term).
template <class P, class Q, class P2, class Q2, class Wt>
struct kr_matmul2_node {
    static_assert(P::shape == P2::shape && Q::shape == Q2::shape && P::batched && Q::batched && P2::batched && Q2::batched,
                  "ctrec internal: kr_matmul2 operands");
    static_assert(detail::kr_ok(kr_role::out_j, P::shape, Q::shape, Wt::shape) && !Wt::batched, "ctrec internal: kr_matmul2 weight");
    static constexpr kind node_kind = kind::kr_matmul2;
    static constexpr std::size_t R = P::shape.d[0], ka = P::shape.d[1], kb = Q::shape.d[1], J = Wt::shape.d[1];
    static constexpr dims shape = make_dims<R, J>();
    static constexpr bool batched = true;
    using operands = tlist<P, Q, P2, Q2, Wt>;
};

// ---- gated recurrences (DIEN's GRU and AGRU / AUGRU scans) -------------------------------
// scan_node<Cell, Act, X, W1, W2, A, M...>: per example, a recurrence over the T rows of X
// with state h (U), h_0 = 0. The input-side products are NOT part of the node: X (T, 3U)
// already holds x_t W (+ the input bias) for every t, computed by one ordinary GEMM before
// the scan; the node does only the products with the state.
//   keras_gru (reset-after, gate order z, r, h; W1 = recurrent kernel (U, 3U), W2 = recurrent
//     bias (3U), A unused (a const_node)):
//       g = h W1 + W2; z = sig(X_z + g_z); r = sig(X_r + g_r); hh = act(X_h + r * g_h);
//       h' = z * h + (1 - z) * hh
//   agru / augru (Monolith AGRUCell, reset-before; W1 = state rows of gates/kernel (U, 2U),
//     W2 = state rows of candidate/kernel (U, U), A = attention scores (T)):
//       [r | u] = sig(X_g + h W1); c = act(X_c + (r * h) W2);
//       agru:  h' = (1 - a) h + a c;   augru: v = (1 - a) u, h' = v * h + (1 - v) * c
// M (optional, (T)): a step is real when m_t >= 1; a padded step leaves h unchanged.
// The value is a (T, S) record per example: row t = [h_t | gates of step t], the states the
// layer reads and everything the reverse mode needs (static BPTT storage, O(T U)):
//   keras_gru: S = 5U, [h | z | r | hh | g_h];   agru / augru: S = 4U, [h | r | u | c].
// Only the h columns are differentiable values: the gate columns are auxiliary (their
// cotangent is ignored by scan_vjp and scan_jvp gives them a zero tangent), so read them
// only through the layer's slices of h.
enum class scan_cell { keras_gru, agru, augru };
enum class scan_act { linear, relu, tanh, sigmoid };  // the candidate activation (derivative from its output)

constexpr std::size_t scan_record_width(scan_cell c, std::size_t u) { return c == scan_cell::keras_gru ? 5 * u : 4 * u; }
// width of scan_vjp's rows: keras_gru [dz | dr | dhh | dhh * r] (pre-activation gradients, the
// last block is the gradient of g_h); agru / augru [dr | du | dc | da] (3U + 1)
constexpr std::size_t scan_vjp_width(scan_cell c, std::size_t u) { return c == scan_cell::keras_gru ? 4 * u : 3 * u + 1; }

namespace detail {
template <scan_cell C, class X, class W1, class W2, class A, class... M>
constexpr bool scan_ok() {
    if (X::shape.rank != 2 || W1::shape.rank != 2 || sizeof...(M) > 1) return false;
    constexpr std::size_t T = X::shape.d[0], U = W1::shape.d[0];
    if (T == 0 || U == 0 || X::shape.d[1] != 3 * U) return false;
    if (((M::shape != make_dims<T>()) || ...)) return false;
    if constexpr (C == scan_cell::keras_gru) return W1::shape == make_dims<U, 3 * U>() && W2::shape == make_dims<3 * U>();
    else return W1::shape == make_dims<U, 2 * U>() && W2::shape == make_dims<U, U>() && A::shape == make_dims<T>();
}
} // namespace detail

template <scan_cell Cell, scan_act Act, class X, class W1, class W2, class A, class... M>
struct scan_node {
    static_assert(check_shapes<"scan", X::shape, W1::shape, detail::scan_ok<Cell, X, W1, W2, A, M...>()>,
                  "ctrec: scan needs X (T, 3U), the state weights of its cell, scores (T) and an optional mask (T)");
    static_assert(X::batched && !W1::batched && !W2::batched, "ctrec: scan needs per-example X and unbatched weights");
    static constexpr kind node_kind = kind::scan;
    static constexpr scan_cell cell = Cell;
    static constexpr scan_act act = Act;
    static constexpr bool masked = sizeof...(M) == 1;
    static constexpr std::size_t T = X::shape.d[0], U = W1::shape.d[0], S = scan_record_width(Cell, U);
    static constexpr dims shape = make_dims<T, S>();
    static constexpr bool batched = true;
    using operands = tlist<X, W1, W2, A, M...>;
};

// Reverse mode of scan_node<Cell, Act, ..., M...> whose value is Rec, for the cotangent Ct
// (T, S) of that record (only its h columns are read): BPTT over the stored record,
// giving per step the gradients of the pre-activations (width scan_vjp_width).
template <scan_cell Cell, scan_act Act, class Rec, class W1, class W2, class A, class Ct, class... M>
struct scan_vjp_node {
    static_assert(Rec::shape == Ct::shape && Rec::batched, "ctrec internal: scan_vjp operands");
    static constexpr kind node_kind = kind::scan_vjp;
    static constexpr scan_cell cell = Cell;
    static constexpr scan_act act = Act;
    static constexpr bool masked = sizeof...(M) == 1;
    static constexpr std::size_t T = Rec::shape.d[0], U = W1::shape.d[0], S = Rec::shape.d[1];
    static constexpr dims shape = make_dims<T, scan_vjp_width(Cell, U)>();
    static constexpr bool batched = true;
    using operands = tlist<Rec, W1, W2, A, Ct, M...>;
};

// Forward mode: the tangent of the record Rec (h columns; the gate columns are 0) for
// tangents entering the pre-activations from outside the recurrence: dX (T, 3U) (input
// projections; for agru / augru also the weight-tangent products), dE (T, 3U) (keras_gru:
// the tangent of g not due to h, h dW1 + dW2, whose h block is gated by r) and dA (T).
template <scan_cell Cell, scan_act Act, class Rec, class W1, class W2, class A, class dX, class dE, class dA, class... M>
struct scan_jvp_node {
    static_assert(Rec::batched && dX::shape == make_dims<Rec::shape.d[0], 3 * W1::shape.d[0]>() && dE::shape == dX::shape,
                  "ctrec internal: scan_jvp operands");
    static constexpr kind node_kind = kind::scan_jvp;
    static constexpr scan_cell cell = Cell;
    static constexpr scan_act act = Act;
    static constexpr bool masked = sizeof...(M) == 1;
    static constexpr std::size_t T = Rec::shape.d[0], U = W1::shape.d[0], S = Rec::shape.d[1];
    static constexpr dims shape = Rec::shape;
    static constexpr bool batched = true;
    using operands = tlist<Rec, W1, W2, A, dX, dE, dA, M...>;
};

// A node whose value is complete only after all batch tiles ran (it sums over
// the batch): parameter gradients are such nodes.
template <class N>
constexpr bool reduces_batch() {
    if constexpr (N::batched) return false;
    else return []<class... O>(tlist<O...>) { return (O::batched || ... || false); }(typename N::operands{});
}

} // namespace ctrec
