#pragma once
// The reference backend of the graph-as-data core: the program's table interpreted at run time,
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
        case opcode::relu: return a > T(0) ? a : T(0);
        case opcode::maximum: return a >= b ? a : b;
        case opcode::greater: return a > b ? T(1) : T(0);
        case opcode::greater_equal: return a >= b ? T(1) : T(0);
        case opcode::where: return a != T(0) ? b : c;
        case opcode::minimum: return a <= b ? a : b;
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

template <class T, class Table, class Prog>
void interpret(const Table& tab, const T* params, std::size_t B, const T* const* in, T* const* out, std::uint64_t seed) {
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
                for (std::size_t b = 0; b < B; ++b)
                    for (std::size_t k = 0; k < y.size; ++k) y.v[b * y.size + k] = random_uniform_value<T>(seed, h, b, k);
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
    }
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
