#pragma once
// Fused self-attention: self_attention(X) = softmax(X X^T) X per example, X (N, K), the
// softmax over the last axis (row i of S = X X^T). AutoInt's layer (layers/autoint.hpp).
//
// Written from primitives (two einsums around a softmax) the plan stores S, exp(S - max) and
// A, three N x N matrices per example, and reads each of them back. Here it is one node and
// one step (kernels/cpu/attention.hpp): per block of query rows the scores stay in registers
// and an L1 row buffer, with an online (running max / running sum) softmax over key blocks,
// so no N x N value exists in the plan, in the forward pass or in any derivative.
//
// Derivatives are nodes of their own, each one step that recomputes the scores per block:
//   attention_vjp_node<X, O, G>: dX = dS X + dS^T X + A^T G, dS = A (G X^T - rowsum(G O))
//     (X is the query, the key and the value). It reads the forward value O for
//     rowsum(G O), so nothing else (no per-row logsumexp) has to be kept from the forward.
//   attention_jvp_node<X, dX>: dO = A dX + dA X, dA = A (dS - rowsum(A dS)), dS = dX X^T + X dX^T.
// They are linear in G / dX; second derivatives are not provided (no rules for the two
// derivative nodes), as for the Khatri-Rao nodes.
#include "ctrec/core/build.hpp"

namespace ctrec {

// The CPU kernels keep per-example scratch on the stack: X^T (and dX^T) and a few rows x N
// score rows, at most (2 K + 24) N values (the JVP, in double: 8 bytes each). Bounded here at
// 4 MiB so that a thread with a default stack cannot overflow (N = 39, K = 16: 17 KB;
// K = 16 allows N up to ~9000).
inline constexpr std::size_t attention_max_scratch_bytes = std::size_t(4) << 20;

template <class X>
struct attention_node {
    static_assert(check_shapes<"self_attention", X::shape, X::shape, (X::shape.rank == 2 && X::shape.d[0] > 0 && X::shape.d[1] > 0)>,
                  "ctrec: self_attention needs a per-example (N, K) matrix");
    static_assert(X::batched, "ctrec: self_attention needs a per-example (batched) operand");
    static_assert((2 * X::shape.d[1] + 24) * (X::shape.d[0] + 16) * 8 <= attention_max_scratch_bytes,
                  "ctrec: self_attention: N x K too large for the CPU kernels' stack scratch (attention_max_scratch_bytes)");
    static constexpr kind node_kind = kind::attention;
    static constexpr std::size_t n = X::shape.d[0], k = X::shape.d[1];
    static constexpr dims shape = X::shape;
    static constexpr bool batched = true;
    using operands = tlist<X>;
};

template <class X, class O, class G>
struct attention_vjp_node {
    static_assert(X::shape == O::shape && X::shape == G::shape && X::batched && O::batched && G::batched,
                  "ctrec internal: attention_vjp operands");
    static constexpr kind node_kind = kind::attention_vjp;
    static constexpr std::size_t n = X::shape.d[0], k = X::shape.d[1];
    static constexpr dims shape = X::shape;
    static constexpr bool batched = true;
    using operands = tlist<X, O, G>;
};

template <class X, class dX>
struct attention_jvp_node {
    static_assert(X::shape == dX::shape && X::batched && dX::batched, "ctrec internal: attention_jvp operands");
    static constexpr kind node_kind = kind::attention_jvp;
    static constexpr std::size_t n = X::shape.d[0], k = X::shape.d[1];
    static constexpr dims shape = X::shape;
    static constexpr bool batched = true;
    using operands = tlist<X, dX>;
};

// Linear in the gradient / the tangent: a zero one gives a zero result.
template <class X, class O, class G>
struct make<attention_vjp_node<X, O, G>> { using type = detail::linear_t<attention_vjp_node<X, O, G>, G>; };
template <class X, class dX>
struct make<attention_jvp_node<X, dX>> { using type = detail::linear_t<attention_jvp_node<X, dX>, dX>; };

// self_attention(x): softmax(x x^T) x per example, x (N, K), the softmax along the last axis.
// The same values as einsum<"ij,jk->ik">(softmax<1>(einsum<"ik,jk->ij">(x, x)), x).
template <node X>
constexpr auto self_attention(X) { return attention_node<X>{}; }

} // namespace ctrec
