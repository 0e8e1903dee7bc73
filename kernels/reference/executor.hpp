#pragma once
// The reference backend of the core: the program's table interpreted at run time,
// node by node, over the whole batch at once, with plain scalar loops (a generic einsum for
// contractions). It shares nothing with the CPU backend but the table itself: no plan, no tiles,
// no passes, no fusion, no GEMM kernels. The tests use it as an independent oracle for the CPU
// backend's plans. It allocates (a buffer per node) and is slow on purpose: it is for checking.
//
//   using R = ctrec::program<double, y>::with_backend<ctrec::reference_backend>;
#include <cstdint>
#include <limits>
#include <vector>

#include "ctrec/core/program.hpp"

namespace ctrec {

namespace reference_detail {

template <class T>
struct value {
    std::vector<T> v;
    bool batched = false;
    std::size_t size = 0;
    const T* at(std::size_t b) const { return v.data() + (batched ? b * size : 0); }
    T* at(std::size_t b) { return v.data() + (batched ? b * size : 0); }
};

// Flat index into an operand of shape `op` broadcast (NumPy rules) to `out`, for out index i.
inline std::size_t bcast(const dims& op, const dims& out, std::size_t i) {
    std::size_t r = 0;
    for (std::size_t k = 0; k < out.rank; ++k) {
        const std::size_t oi = out.rank - 1 - k;  // aligned from the right
        if (k >= op.rank) break;
        const std::size_t ai = op.rank - 1 - k;
        const std::size_t x = (i / out.stride(oi)) % out.d[oi];
        if (op.d[ai] != 1) r += x * op.stride(ai);
    }
    return r;
}

template <class T>
T apply(opcode op, T a, T b, T c) {
    using M = vmath<T>;
    switch (op) {
        case opcode::add: return a + b;
        case opcode::sub: return a - b;
        case opcode::mul: return a * b;
        case opcode::div: return a / b;
        case opcode::neg: return -a;
        case opcode::exp: return M::exp(a);
        case opcode::log: return M::log(a);
        case opcode::log1p: return M::log1p(a);
        case opcode::sqrt: return M::sqrt(a);
        case opcode::rsqrt: return T(1) / M::sqrt(a);
        case opcode::tanh: return M::tanh(a);
        case opcode::sigmoid: return T(1) / (T(1) + M::exp(-a));
        case opcode::relu: return a > T(0) || a != a ? a : T(0);  // NaN stays NaN (core/vmath.hpp)
        case opcode::maximum: return a >= b || a != a ? a : b;
        case opcode::greater: return a > b ? T(1) : T(0);
        case opcode::greater_equal: return a >= b ? T(1) : T(0);
        case opcode::where: return a != T(0) ? b : c;
        case opcode::minimum: return a <= b || a != a ? a : b;
        case opcode::abs: return a < T(0) ? -a : a;
        case opcode::erf: return M::erf(a);
        case opcode::batch_broadcast: return a;
        default: return T(0);
    }
}

// einsum over one example's operands (or, with batch_sum, summing examples): C (+)= A * B.
template <class T>
void einsum(const contract_spec& s, const dims& as, const T* a, const dims& bs, const T* b, const dims& cs, T* c) {
    char letters[3 * max_rank];
    std::size_t ext[3 * max_rank], n = 0;
    auto add = [&](char ch, std::size_t e) {
        for (std::size_t i = 0; i < n; ++i)
            if (letters[i] == ch) return;
        letters[n] = ch, ext[n++] = e;
    };
    for (std::size_t i = 0; i < s.ra; ++i) add(s.a[i], as.d[i]);
    for (std::size_t i = 0; i < s.rb; ++i) add(s.b[i], bs.d[i]);
    std::size_t total = 1;
    for (std::size_t i = 0; i < n; ++i) total *= ext[i];
    std::size_t idx[3 * max_rank] = {};
    auto pos = [&](const char* ls, std::size_t r, const dims& d) {
        std::size_t p = 0;
        for (std::size_t k = 0; k < r; ++k)
            for (std::size_t i = 0; i < n; ++i)
                if (letters[i] == ls[k]) p += idx[i] * d.stride(k);
        return p;
    };
    for (std::size_t t = 0; t < total; ++t) {
        std::size_t rem = t;
        for (std::size_t i = n; i-- > 0;) idx[i] = rem % ext[i], rem /= ext[i];
        c[pos(s.c, s.rc, cs)] += a[pos(s.a, s.ra, as)] * b[pos(s.b, s.rb, bs)];
    }
}

// Self-attention of one example, x (n, k) row-major, from the formulas (the N x N matrices are
// local here; the CPU kernels never form them):
//   S = x x^T, A = softmax over each row of S (max-shifted), O = A x            (attention)
//   dA = c x^T, dS = A * (dA - rowsum(A * dA)), dx = dS x + dS^T x + A^T c       (attention_vjp)
//   dS = t x^T + x t^T, dA = A * (dS - rowsum(A * dS)), dO = dA x + A t          (attention_jvp)
// (* elementwise; rowsum(A * dA) is the softmax Jacobian's term, computed from A, not from O.)
template <class T>
void attention(opcode op, std::size_t n, std::size_t k, const T* x, const T* ct, T* out) {
    std::vector<T> A(n * n), D(n * n);
    for (std::size_t i = 0; i < n; ++i) {
        T m = -std::numeric_limits<T>::infinity();
        for (std::size_t j = 0; j < n; ++j) {
            T s = 0;
            for (std::size_t c = 0; c < k; ++c) s += x[i * k + c] * x[j * k + c];
            A[i * n + j] = s;
            m = s > m ? s : m;
        }
        T z = 0;
        for (std::size_t j = 0; j < n; ++j) z += A[i * n + j] = vmath<T>::exp(A[i * n + j] - m);
        for (std::size_t j = 0; j < n; ++j) A[i * n + j] /= z;
    }
    for (std::size_t e = 0; e < n * k; ++e) out[e] = T(0);
    if (op == opcode::attention) {
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < n; ++j)
                for (std::size_t c = 0; c < k; ++c) out[i * k + c] += A[i * n + j] * x[j * k + c];
        return;
    }
    // D = dA (vjp) or dS (jvp), then D = A * (D - rowsum(A * D)), written relative to the row's
    // first D: rowsum(A) is 1 only up to rounding, and D - rowsum(A * D) would keep that rounding
    // times |D| (|x|^2 |ct| at equal rows, O(1) in float at |x| = 1e4) where it is exactly 0.
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            T d = 0;
            for (std::size_t c = 0; c < k; ++c)
                d += op == opcode::attention_vjp ? ct[i * k + c] * x[j * k + c] : ct[i * k + c] * x[j * k + c] + x[i * k + c] * ct[j * k + c];
            D[i * n + j] = d;
        }
        const T p = D[i * n];
        T rs = 0;
        for (std::size_t j = 0; j < n; ++j) rs += A[i * n + j] * (D[i * n + j] - p);
        for (std::size_t j = 0; j < n; ++j) D[i * n + j] = A[i * n + j] * ((D[i * n + j] - p) - rs);
    }
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j)
            for (std::size_t c = 0; c < k; ++c) {
                if (op == opcode::attention_vjp)
                    out[i * k + c] += (D[i * n + j] + D[j * n + i]) * x[j * k + c] + A[j * n + i] * ct[j * k + c];
                else
                    out[i * k + c] += D[i * n + j] * x[j * k + c] + A[i * n + j] * ct[j * k + c];
            }
}

struct no_hook {
    template <class V>
    bool operator()(std::size_t, const V&) const { return false; }
};

// Evaluates the table node by node. After node i, hook(i, its value) may return true to stop
// (checked.hpp uses it to find the first non-finite value); the outputs are then not written.
template <class T, class Table, class Prog, class Hook = no_hook>
void interpret(const Table& tab, const T* params, std::size_t B, const T* const* in, T* const* out, std::uint64_t seed,
               Hook&& hook = {}) {
    constexpr std::size_t N = Table::size;
    std::vector<value<T>> vals(N);
    for (std::size_t i = 0; i < N; ++i) {
        const node& r = tab.nodes[i];
        value<T>& y = vals[i];
        y.batched = r.batched;
        y.size = r.shape.size();
        const std::size_t rows = r.batched ? B : 1;
        y.v.assign(rows * y.size, T(0));
        auto X = [&](std::size_t j) -> const value<T>& { return vals[tab.operand(i, j)]; };
        auto XS = [&](std::size_t j) -> const dims& { return tab.nodes[tab.operand(i, j)].shape; };
        switch (r.op) {
            case opcode::input:
                for (std::size_t k = 0; k < rows * y.size; ++k) y.v[k] = in[Prog::input_slot(i)][k];
                break;
            case opcode::param:
                for (std::size_t k = 0; k < y.size; ++k) y.v[k] = params[Prog::parameters::offsets[Prog::param_slot(i)] + k];
                break;
            case opcode::constant:
                for (auto& e : y.v) e = static_cast<T>(r.value);
                break;
            case opcode::batch_size:
                y.v[0] = static_cast<T>(B);
                break;
            case opcode::random: {
                const std::uint64_t h = stream_hash(tab.name_of(i));
                const random_kind kind = static_cast<random_kind>(r.axis);
                const std::uint64_t s = r.begin == 1 ? static_cast<std::uint64_t>(r.value) : seed;
                if (r.batched) {
                    for (std::size_t b = 0; b < B; ++b)
                        for (std::size_t k = 0; k < y.size; ++k) y.v[b * y.size + k] = random_value<T>(kind, s, h, b, k);
                } else {
                    for (std::size_t k = 0; k < y.size; ++k) y.v[k] = random_value<T>(kind, s, h, shared_example, k);
                }
                break;
            }
            case opcode::contract: {
                const bool sums_batch = !r.batched && (X(0).batched || X(1).batched);
                const std::size_t runs = r.batched || sums_batch ? B : 1;
                for (std::size_t b = 0; b < runs; ++b)
                    einsum(r.spec, XS(0), X(0).at(b), XS(1), X(1).at(b), r.shape, y.at(r.batched ? b : 0));
                break;
            }
            case opcode::reduce_sum:
            case opcode::reduce_max: {
                const dims as = XS(0);
                for (std::size_t b = 0; b < rows; ++b) {
                    T* d = y.at(b);
                    if (r.op == opcode::reduce_max)
                        for (std::size_t k = 0; k < y.size; ++k) d[k] = -std::numeric_limits<T>::infinity();
                    for (std::size_t k = 0; k < as.size(); ++k) {
                        std::size_t o = 0, st = 1;
                        for (std::size_t ax = as.rank; ax-- > 0;)
                            if (!(r.mask >> ax & 1u)) o += (k / as.stride(ax) % as.d[ax]) * st, st *= as.d[ax];
                        const T v = X(0).at(b)[k];
                        d[o] = r.op == opcode::reduce_max ? (v > d[o] ? v : d[o]) : d[o] + v;
                    }
                }
                break;
            }
            case opcode::batch_sum:
                for (std::size_t b = 0; b < B; ++b)
                    for (std::size_t k = 0; k < y.size; ++k) y.v[k] += X(0).at(b)[k];
                break;
            case opcode::reshape:
            case opcode::stop_gradient:
                for (std::size_t b = 0; b < rows; ++b)
                    for (std::size_t k = 0; k < y.size; ++k) y.at(b)[k] = X(0).at(b)[k];
                break;
            case opcode::concat:
            case opcode::slice:
            case opcode::pad: {
                const dims os = r.shape;
                const std::size_t ax = r.axis;
                for (std::size_t b = 0; b < rows; ++b)
                    for (std::size_t k = 0; k < y.size; ++k) {
                        const std::size_t x = k / os.stride(ax) % os.d[ax];
                        const std::size_t outer = k / (os.stride(ax) * os.d[ax]), inner = k % os.stride(ax);
                        std::size_t j = 0, at = 0, xo = x;
                        if (r.op == opcode::concat) {
                            while (xo >= at + XS(j).d[ax]) at += XS(j).d[ax], ++j;
                            xo -= at;
                        } else if (r.op == opcode::slice) {
                            xo = x + r.begin;
                        } else {
                            if (x < r.begin || x >= r.begin + XS(0).d[ax]) continue;  // zero padding
                            xo = x - r.begin;
                        }
                        const dims as = XS(j);
                        y.at(b)[k] = X(j).at(b)[(outer * as.d[ax] + xo) * as.stride(ax) + inner];
                    }
                break;
            }
            case opcode::attention:
            case opcode::attention_vjp:
            case opcode::attention_jvp:
                for (std::size_t b = 0; b < B; ++b)
                    attention(r.op, r.shape.d[0], r.shape.d[1], X(0).at(b), r.nops > 2 ? X(2).at(b) : nullptr, y.at(b));
                break;
            case opcode::kr_matmul:
            case opcode::kr_matmul2:
            case opcode::kr_gram:
            case opcode::kr_dual: {
                // straight from the formulas (graph.hpp, build.hpp): Z[r, a kb + b] = P[r, a] Q[r, b]
                // (+ P2[r, a] Q2[r, b]) one element at a time, never stored
                const std::size_t R = XS(0).d[0], ka = XS(0).d[1], kb = XS(1).d[1];
                const bool two = r.op == opcode::kr_matmul2;
                const std::size_t wi = r.op == opcode::kr_matmul ? 2 : r.op == opcode::kr_matmul2 ? 4 : r.op == opcode::kr_dual ? 2 : 0;
                const std::size_t gi = r.op == opcode::kr_gram ? 2 : 3;
                const std::size_t J = r.op == opcode::kr_gram ? XS(2).d[1] : XS(wi).d[1];
                for (std::size_t b = 0; b < B; ++b) {
                    const T* p = X(0).at(b);
                    const T* q = X(1).at(b);
                    T* o = y.at(b);  // kr_gram: unbatched, every example adds
                    for (std::size_t i = 0; i < R; ++i)
                        for (std::size_t a = 0; a < ka; ++a)
                            for (std::size_t m = 0; m < kb; ++m) {
                                const std::size_t kap = a * kb + m;
                                if (r.op == opcode::kr_gram) {
                                    const T z = p[i * ka + a] * q[i * kb + m];
                                    for (std::size_t j = 0; j < J; ++j) o[kap * J + j] += z * X(gi).at(b)[i * J + j];
                                } else if (r.op == opcode::kr_dual) {
                                    // dZ[i, kap] = sum_j G[i, j] W[kap, j]
                                    T dz = 0;
                                    for (std::size_t j = 0; j < J; ++j) dz += X(gi).at(b)[i * J + j] * X(wi).at(b)[kap * J + j];
                                    o[i * (ka + kb) + a] += dz * q[i * kb + m];
                                    o[i * (ka + kb) + ka + m] += dz * p[i * ka + a];
                                } else {
                                    T z = p[i * ka + a] * q[i * kb + m];
                                    if (two) z += X(2).at(b)[i * ka + a] * X(3).at(b)[i * kb + m];
                                    for (std::size_t j = 0; j < J; ++j) o[i * J + j] += z * X(wi).at(b)[kap * J + j];
                                }
                            }
                }
                break;
            }
            case opcode::transpose: {
                const dims os = r.shape;
                const std::size_t R = os.d[os.rank - 1], C = os.d[os.rank - 2];
                for (std::size_t b = 0; b < rows; ++b)
                    for (std::size_t k = 0; k < y.size; ++k) {
                        const std::size_t u = k / (R * C), j = k / R % C, i = k % R;  // out[u, j, i] = in[u, i, j]
                        y.at(b)[k] = X(0).at(b)[u * R * C + i * C + j];
                    }
                break;
            }
            default: {  // elementwise
                for (std::size_t b = 0; b < rows; ++b)
                    for (std::size_t k = 0; k < y.size; ++k) {
                        T v[3] = {};
                        for (std::size_t j = 0; j < r.nops; ++j) v[j] = X(j).at(b)[bcast(XS(j), r.shape, k)];
                        y.at(b)[k] = apply(r.op, v[0], v[1], v[2]);
                    }
                break;
            }
        }
        if (hook(i, vals[i])) return;
    }
    if (!out) return;  // a hook-only run
    for (std::size_t r = 0; r < Table::n_roots; ++r) {
        const value<T>& y = vals[tab.roots[r]];
        for (std::size_t k = 0; k < y.v.size(); ++k) out[r][k] = y.v[k];
    }
}

} // namespace reference_detail

struct reference_backend {
    // Derived parameters are recomputed with everything else: nothing to prepare.
    template <class P, class T>
    static void prepare(const T*, T*) {}
    template <class P, class T>
    static void run(const T* params, const T* /*derived*/, T* /*ws*/, std::size_t batch, const T* const* in, T* const* out,
                    std::uint64_t seed) {
        reference_detail::interpret<T, std::remove_cvref_t<decltype(P::tab)>, P>(P::tab, params, batch, in, out, seed);
    }
};

} // namespace ctrec
