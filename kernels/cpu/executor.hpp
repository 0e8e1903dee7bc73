#pragma once
// CPU backend of the core : runs a program's plan tile by tile.
// Step code is instantiated per (program, step index): `exec<P>::step<I>`, a short symbol whatever
// the model's size, and each step reads its node record from the program's constexpr table. A
// pass runs the exact list of its steps (a constexpr array), not a filter over every node.
// Each step is one loop nest: an elementwise loop (SIMD where every operand is contiguous or a
// scalar), a GEMM (cpu/gemm.hpp, via the same contraction lowering as the type core), a
// reduction, a batch sum or a data movement. Nothing here allocates.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "ctrec/core/contract_plan.hpp"
#include "ctrec/core/program.hpp"
#include "cpu/attention.hpp"
#include "cpu/bf16.hpp"
#include "cpu/gemm.hpp"
#include "cpu/kr_gemm.hpp"
#include "cpu/simd.hpp"

namespace ctrec::cpu {

using ctrec::node;
using ctrec::opcode;

// The elementwise ops, for scalars and SIMD batches alike (vmath<V>).
template <opcode Op, class V>
inline V apply(V a, V b, V c) {
    using M = vmath<V>;
    if constexpr (Op == opcode::add) return a + b;
    else if constexpr (Op == opcode::sub) return a - b;
    else if constexpr (Op == opcode::mul) return a * b;
    else if constexpr (Op == opcode::div) return a / b;
    else if constexpr (Op == opcode::neg) return -a;
    else if constexpr (Op == opcode::exp) return M::exp(a);
    else if constexpr (Op == opcode::log) return M::log(a);
    else if constexpr (Op == opcode::log1p) return M::log1p(a);
    else if constexpr (Op == opcode::sqrt) return M::sqrt(a);
    else if constexpr (Op == opcode::rsqrt) return M::splat(1.0) / M::sqrt(a);
    else if constexpr (Op == opcode::tanh) return M::tanh(a);
    else if constexpr (Op == opcode::sigmoid) return M::splat(1.0) / (M::splat(1.0) + M::exp(-a));
    else if constexpr (Op == opcode::relu) return M::max(a, M::splat(0.0));
    else if constexpr (Op == opcode::maximum) return M::max(a, b);
    else if constexpr (Op == opcode::greater) return M::gt(a, b);
    else if constexpr (Op == opcode::greater_equal) return M::ge(a, b);
    else if constexpr (Op == opcode::where) return M::select(a, b, c);
    else if constexpr (Op == opcode::minimum) return M::min(a, b);
    else if constexpr (Op == opcode::abs) return M::abs(a);
    else if constexpr (Op == opcode::erf) return M::erf(a);
    else if constexpr (Op == opcode::batch_broadcast) return a;
    else static_assert(Op == opcode::add, "ctrec internal: not an elementwise op");
    (void)b, (void)c;
}

// Bf16: cpu_bf16_backend (below): every parameter and derived parameter a contraction reads is
// rounded to bfloat16 by prepare(), and the one-row GEMV streams it as bf16 (cpu/bf16.hpp).
template <class P, bool Bf16 = false>
struct exec {
    using T = typename P::element_type;
    static_assert(!Bf16 || std::is_same_v<T, float>, "ctrec: cpu_bf16_backend runs float programs");
    using V = simd_t<T>;
    static constexpr std::size_t W = V::size;
    static constexpr const auto& tab = P::tab;
    static constexpr const auto& pl = P::pl;
    static constexpr std::size_t N = P::size;

    struct context {
        T* base[N ? N : 1] = {};  // element 0 of the node's value for example 0 of the tile
        std::size_t nb = 0;       // examples in this tile
        double batch = 0;         // examples in this call
        bool first_tile = true;   // reducers overwrite instead of adding
        std::size_t b0 = 0;       // index in the call of the tile's first example (random streams)
        std::uint64_t seed = 0;   // io.seed
        const T* derived = nullptr;  // the derived block (Bf16: with the rounded weights after it)
    };

    template <std::uint32_t O>
    static T* ptr(const context& c, std::size_t b) {
        constexpr node o = tab.nodes[O];
        return c.base[O] + (o.batched ? b * o.shape.size() : 0);
    }
    // Element k of operand O for example b (constants and the batch size have no buffer).
    // The node a chain of views (reshape, stop_gradient) reads: element k of a view is element k
    // of its base, so a view of a leaf without a buffer (a constant, the batch size, a random
    // leaf) is read from that leaf.
    template <std::uint32_t O>
    static constexpr std::uint32_t view_base() {
        std::uint32_t i = O;
        while (is_view(tab.nodes[i].op)) i = tab.operand(i, 0);
        return i;
    }
    template <class Vt, std::uint32_t O>
    static Vt read(const context& c, std::size_t b, std::size_t k) {
        constexpr node o = tab.nodes[O];
        constexpr std::uint32_t base = view_base<O>();
        constexpr opcode bop = tab.nodes[base].op;
        if constexpr (base != O && (bop == opcode::constant || bop == opcode::batch_size || bop == opcode::random))
            return read<Vt, base>(c, b, k);
        else if constexpr (o.op == opcode::constant) return vmath<Vt>::splat(o.value);
        else if constexpr (o.op == opcode::batch_size) return vmath<Vt>::splat(c.batch);
        else if constexpr (o.op == opcode::random) {
            // random.hpp: kind in axis, a fixed seed in value when begin == 1, one draw per call
            // (shared_example) when unbatched
            static constexpr std::uint64_t h = ctrec::stream_hash(tab.name_of(O));
            constexpr random_kind kind = static_cast<random_kind>(o.axis);
            const std::uint64_t seed = o.begin == 1 ? static_cast<std::uint64_t>(o.value) : c.seed;
            const std::uint64_t e = o.batched ? c.b0 + b : shared_example;
            if constexpr (std::is_same_v<Vt, T>) {
                return random_value<T>(kind, seed, h, e, k);
            } else {
                alignas(64) T lanes[Vt::size];
                for (std::size_t l = 0; l < Vt::size; ++l) lanes[l] = random_value<T>(kind, seed, h, e, k + l);
                return Vt::load_aligned(lanes);
            }
        }
        else if constexpr (std::is_same_v<Vt, T>) return ptr<O>(c, b)[k];
        else return Vt::load_unaligned(ptr<O>(c, b) + k);
    }

    // ---- fused elementwise work ------------------------------------------------------------------
    // The nodes evaluated inside each step's loop (the plan's inlined elementwise nodes, and the
    // step itself when it is elementwise), in topological order: loops.ids[first[S] .. first[S+1]).
    struct loop_table {
        std::uint32_t first[N + 1]{};
        std::uint32_t ids[N ? N : 1]{};
    };
    static constexpr bool in_loop(std::size_t i) {
        return ctrec::is_elementwise(tab.nodes[i].op) && (pl.inlined[i] || pl.step[i]);
    }
    static constexpr loop_table loops = [] {
        loop_table t{};
        for (std::size_t i = 0; i < N; ++i)
            if (in_loop(i)) ++t.first[pl.absorber[i] + 1];
        for (std::size_t i = 0; i < N; ++i) t.first[i + 1] += t.first[i];
        std::uint32_t fill[N ? N : 1]{};
        for (std::size_t i = 0; i < N; ++i)
            if (in_loop(i)) {
                const std::size_t s = static_cast<std::size_t>(pl.absorber[i]);
                t.ids[t.first[s] + fill[s]++] = static_cast<std::uint32_t>(i);
            }
        return t;
    }();
    // Position of node O in step S's loop, or -1.
    template <std::uint32_t S>
    static constexpr int loop_pos(std::uint32_t o) {
        for (std::uint32_t k = loops.first[S]; k < loops.first[S + 1]; ++k)
            if (loops.ids[k] == o) return static_cast<int>(k - loops.first[S]);
        return -1;
    }

    // Operand J of loop node I in step S at flat index i: from the loop's values v, the GEMM
    // result `acc` when it is the epilogue's contraction C, or read (broadcast as needed).
    template <class Vt, std::uint32_t I, std::uint32_t J, std::uint32_t S, int C>
    static Vt operand(const context& c, std::size_t b, std::size_t i, const Vt& acc, const Vt* v) {
        constexpr node r = tab.nodes[I];
        if constexpr (J >= r.nops) {
            return Vt(T(0));
        } else {
            constexpr std::uint32_t O = tab.operand(I, J);
            constexpr int k = loop_pos<S>(O);
            constexpr node o = tab.nodes[O];
            if constexpr (k >= 0) return v[k];  // same shape as I by construction
            else if constexpr (static_cast<int>(O) == C) return acc;
            else if constexpr (!std::is_same_v<Vt, T> && bcast_constant(o.shape, r.shape))
                return Vt(read<T, O>(c, b, bcast_index<o.shape, r.shape>(i)));
            else return read<Vt, O>(c, b, bcast_index<o.shape, r.shape>(i));
        }
    }
    // Plain function templates, not generic lambdas: GCC 12.2 at -O3 with AVX-512 miscompiled the
    // lambda form of such a loop body in the type core's executor.
    template <class Vt, std::uint32_t I, std::uint32_t S, int C>
    static Vt eval_node(const context& c, std::size_t b, std::size_t i, const Vt& acc, const Vt* v) {
        return apply<tab.nodes[I].op, Vt>(operand<Vt, I, 0, S, C>(c, b, i, acc, v), operand<Vt, I, 1, S, C>(c, b, i, acc, v),
                                          operand<Vt, I, 2, S, C>(c, b, i, acc, v));
    }
    template <class Vt, std::uint32_t S, int C, std::size_t... K>
    static void eval_all(const context& c, std::size_t b, std::size_t i, const Vt& acc, Vt* v, std::index_sequence<K...>) {
        ((v[K] = eval_node<Vt, loops.ids[loops.first[S] + K], S, C>(c, b, i, acc, v)), ...);
    }
    // Every node of step S's loop at (b, i), each once; returns the last (the loop's result).
    template <class Vt, std::uint32_t S, int C = -1>
    static Vt joined(const context& c, std::size_t b, std::size_t i, const Vt& acc = Vt(T(0))) {
        constexpr std::size_t n = loops.first[S + 1] - loops.first[S];
        Vt v[n];
        eval_all<Vt, S, C>(c, b, i, acc, v, std::make_index_sequence<n>{});
        return v[n - 1];
    }
    // Run length over the loop's flat index inside which every value read from outside is
    // contiguous or constant (SIMD stays inside runs).
    template <std::uint32_t S>
    static constexpr std::size_t loop_run() {
        std::size_t run = tab.nodes[S].shape.size();
        for (std::uint32_t k = loops.first[S]; k < loops.first[S + 1]; ++k) {
            const std::uint32_t n = loops.ids[k];
            for (std::uint32_t j = 0; j < tab.nodes[n].nops; ++j) {
                const std::uint32_t o = tab.operand(n, j);
                if (loop_pos<S>(o) >= 0) continue;
                run = std::min(run, bcast_run(tab.nodes[o].shape, tab.nodes[n].shape));
            }
        }
        return run;
    }
    // Operand A of reduction step S: computed in S's loop when inlined, else read.
    template <class Vt, std::uint32_t S, std::uint32_t A>
    static Vt tree(const context& c, std::size_t b, std::size_t i) {
        if constexpr (pl.inlined[A]) return joined<Vt, S>(c, b, i);
        else return read<Vt, A>(c, b, i);
    }
    template <std::uint32_t S, std::uint32_t A>
    static constexpr std::size_t tree_run() {
        if constexpr (pl.inlined[A]) return loop_run<S>();
        else return tab.nodes[A].shape.size();
    }

    // An elementwise step. With a fused contraction C the GEMM writes the step's buffer and the
    // loop then runs over it in place, reading C's value from there: one buffer and one pass
    // less than unfused. (Not an in-register GEMM epilogue: that instantiates every GEMM kernel
    // variant once per step, which tripled compile time; the GEMM kernels stay shared instead.)
    template <std::uint32_t I>
    static void map_step(const context& c) {
        constexpr node r = tab.nodes[I];
        constexpr int fc = pl.fused_contraction[I];
        if constexpr (fc >= 0) contract_into<static_cast<std::uint32_t>(fc)>(c, c.base[I]);
        constexpr std::size_t size = r.shape.size(), R = loop_run<I>();
        const std::size_t rows = r.batched ? c.nb : 1;
        for (std::size_t b = 0; b < rows; ++b) {
            T* dst = ptr<I>(c, b);
            for (std::size_t r0 = 0; r0 < size; r0 += R) {
                std::size_t j = 0;
                if constexpr (R >= W)
                    for (; j + W <= R; j += W) {
                        const V acc = fc >= 0 ? V::load_unaligned(dst + r0 + j) : V(T(0));
                        joined<V, I, fc>(c, b, r0 + j, acc).store_unaligned(dst + r0 + j);
                    }
                for (; j < R; ++j) {
                    const T acc = fc >= 0 ? dst[r0 + j] : T(0);
                    dst[r0 + j] = joined<T, I, fc>(c, b, r0 + j, acc);
                    // GCC 12.2 -O3 with AVX-512 auto-vectorised such scalar tails across examples
                    // wrongly in the type core's executor (tests/test_serving.cpp): keep it scalar
                    asm volatile("" ::: "memory");
                }
            }
        }
    }

    // ---- bf16 weights (Bf16) --------------------------------------------------------------------
    // The node whose buffer node i reads (views share their operand's buffer).
    static constexpr std::uint32_t storage_root(std::uint32_t i) {
        while (pl.alias[i]) i = tab.operand(i, 0);
        return i;
    }
    // Rounded: a parameter or derived parameter whose buffer a contraction reads (either operand).
    struct rounded_set {
        bool is[N ? N : 1]{};
    };
    static constexpr rounded_set rounded_nodes = [] {
        rounded_set r{};
        for (std::uint32_t n = 0; n < N; ++n)
            if (tab.nodes[n].op == opcode::contract)
                for (std::uint32_t j = 0; j < 2; ++j) {
                    const std::uint32_t w = storage_root(tab.operand(n, j));
                    r.is[w] = tab.nodes[w].op == opcode::param || pl.derived[w];
                }
        return r;
    }();
    static constexpr bool rounded(std::size_t i) { return rounded_nodes.is[i]; }
    // After the derived block, per rounded node: a parameter's rounded float32 copy (`copy`; a
    // derived parameter is rounded in place), then its bf16 halves (`halves`); offsets in floats,
    // 64-byte aligned.
    struct bf16_table {
        std::ptrdiff_t copy[N ? N : 1]{};
        std::ptrdiff_t halves[N ? N : 1]{};
        std::size_t end = 0;
    };
    static constexpr bf16_table bf16_layout = [] {
        bf16_table t{};
        std::size_t at = (pl.derived_elems + 15) / 16 * 16;
        for (std::size_t i = 0; i < N; ++i) {
            t.copy[i] = t.halves[i] = -1;
            if (!rounded(i)) continue;
            const std::size_t n = tab.nodes[i].shape.size();
            if (tab.nodes[i].op == opcode::param) t.copy[i] = static_cast<std::ptrdiff_t>(at), at += (n + 15) / 16 * 16;
            t.halves[i] = static_cast<std::ptrdiff_t>(at), at += ((n + 1) / 2 + 15) / 16 * 16;
        }
        t.end = at;
        return t;
    }();
    // Floats the derived block needs beyond pl.derived_elems.
    static constexpr std::size_t derived_extra = [] {
        if constexpr (Bf16) return bf16_layout.end - pl.derived_elems;
        else return std::size_t{0};
    }();

    // ---- contraction --------------------------------------------------------------------------
    template <std::uint32_t Cn>
    static constexpr contract_plan plan_of() {
        constexpr node r = tab.nodes[Cn];
        constexpr node na = tab.nodes[tab.operand(Cn, 0)], nbn = tab.nodes[tab.operand(Cn, 1)];
        static_assert(na.op != opcode::constant && nbn.op != opcode::constant && na.op != opcode::batch_size &&
                          nbn.op != opcode::batch_size && na.op != opcode::random && nbn.op != opcode::random,
                      "ctrec internal: a contraction operand must be stored");
        return plan_contraction(r.spec, na.shape, nbn.shape, na.batched, nbn.batched, r.batched);
    }
    template <std::uint32_t Cn, class Epi = no_epilogue>
    static void contract_into(const context& c, T* dst, const Epi& epi = {}) {
        constexpr contract_plan Pc = plan_of<Cn>();
        const T* a = c.base[tab.operand(Cn, 0)];
        const T* bp = c.base[tab.operand(Cn, 1)];
        if constexpr (Pc.swap) std::swap(a, bp);
        const std::size_t nb = c.nb;
        auto ext = [nb](const gemm_dim& d) { return d.extent * (d.times_batch ? nb : 1); };
        gemm_args g{ext(Pc.m), ext(Pc.n), ext(Pc.k), Pc.m.sa, Pc.k.sa, Pc.k.sb, Pc.n.sb, Pc.m.sc, Pc.n.sc};
        if (g.M == 0 || g.N == 0) {
            if (Pc.reduces_batch && c.first_tile) std::fill_n(dst, tab.nodes[Cn].shape.size(), T(0));  // empty batch
            return;
        }
        if constexpr (Bf16) {
            constexpr std::uint32_t w = storage_root(tab.operand(Cn, Pc.swap ? 0 : 1));
            if constexpr (rounded(w)) {
                const std::byte* h = reinterpret_cast<const std::byte*>(c.derived + bf16_layout.halves[w]);
                outer_loops<Pc, 0>(a, bp, dst, g, epi, Pc.reduces_batch && !c.first_tile, nb, h);
                return;
            }
        }
        outer_loops<Pc, 0>(a, bp, dst, g, epi, Pc.reduces_batch && !c.first_tile, nb);
    }
    template <std::uint32_t I>
    static void contract_step(const context& c) {
        contract_into<I>(c, c.base[I]);
    }
    // h: B's bf16 copy (Bf16 and a rounded B), walked with B's strides
    template <contract_plan Pc, std::size_t L, class Epi>
    static void outer_loops(const T* a, const T* b, T* dst, const gemm_args& g, const Epi& epi, bool acc, std::size_t nb,
                            const std::byte* h = nullptr) {
        if constexpr (L == Pc.n_outer) {
            if constexpr (Bf16) {
                if (h) return gemm_bf16_b(a, b, h, dst, g, acc, epi);
            }
            gemm(a, b, dst, g, acc, epi);
        } else {
            constexpr gemm_dim d = Pc.outer[L];
            const std::size_t e = d.extent * (d.times_batch ? nb : 1);
            for (std::size_t t = 0; t < e; ++t) {
                const auto s = static_cast<std::ptrdiff_t>(t);
                outer_loops<Pc, L + 1>(a + s * d.sa, b + s * d.sb, dst + s * d.sc, g, epi, acc || (Pc.outer_is_k[L] && t > 0), nb,
                                       h ? h + 2 * s * d.sb : nullptr);
            }
        }
    }

    // ---- reductions ------------------------------------------------------------------------------
    template <std::uint32_t I>
    static void reduce_step(const context& c) {
        constexpr node r = tab.nodes[I];
        constexpr std::uint32_t A = tab.operand(I, 0);
        constexpr dims as = tab.nodes[A].shape;
        constexpr bool is_max = r.op == opcode::reduce_max;
        constexpr T init = is_max ? -std::numeric_limits<T>::infinity() : T(0);
        // output index of operand element k: drop the reduced axes
        constexpr auto ostride = [as, r] {
            std::array<std::size_t, max_rank> s{};
            std::size_t o = 1;
            for (std::size_t ax = as.rank; ax-- > 0;)
                if (!(r.mask >> ax & 1u)) s[ax] = o, o *= as.d[ax];
            return s;
        }();
        const std::size_t rows = r.batched ? c.nb : 1;
        for (std::size_t b = 0; b < rows; ++b) {
            T* dst = ptr<I>(c, b);
            std::fill_n(dst, r.shape.size(), init);
            for (std::size_t k = 0; k < as.size(); ++k) {
                std::size_t o = 0;
                for (std::size_t ax = 0; ax < as.rank; ++ax) o += (k / as.stride(ax) % as.d[ax]) * ostride[ax];
                const T v = tree<T, I, A>(c, b, k);
                if constexpr (is_max) dst[o] = v > dst[o] ? v : dst[o];
                else dst[o] += v;
            }
        }
    }
    template <std::uint32_t I>
    static void batch_sum_step(const context& c) {
        constexpr node r = tab.nodes[I];
        constexpr std::uint32_t A = tab.operand(I, 0);
        constexpr std::size_t size = r.shape.size();
        T* dst = c.base[I];
        if (c.first_tile) std::fill_n(dst, size, T(0));
        constexpr bool simd = size >= W && tree_run<I, A>() == size;
        for (std::size_t b = 0; b < c.nb; ++b) {
            std::size_t i = 0;
            if constexpr (simd)
                for (; i + W <= size; i += W) (V::load_unaligned(dst + i) + tree<V, I, A>(c, b, i)).store_unaligned(dst + i);
            for (; i < size; ++i) dst[i] += tree<T, I, A>(c, b, i);
        }
    }

    // ---- data movement ---------------------------------------------------------------------------
    template <std::uint32_t I>
    static void movement_step(const context& c) {
        constexpr node r = tab.nodes[I];
        constexpr dims os = r.shape;
        constexpr std::size_t ax = r.axis;
        constexpr std::size_t outer = os.size() / (os.d[ax] * os.stride(ax)), inner = os.stride(ax);
        const std::size_t rows = r.batched ? c.nb : 1;
        for (std::size_t b = 0; b < rows; ++b) {
            T* dst = ptr<I>(c, b);
            if constexpr (r.op == opcode::concat) {
                [&]<std::uint32_t... J>(std::integer_sequence<std::uint32_t, J...>) {
                    std::size_t at = 0;
                    ((copy_part<tab.operand(I, J)>(c, b, dst, outer, inner, os.d[ax], at),
                      at += tab.nodes[tab.operand(I, J)].shape.d[ax]),
                     ...);
                }(std::make_integer_sequence<std::uint32_t, r.nops>{});
            } else {
                constexpr std::uint32_t A = tab.operand(I, 0);
                constexpr dims as = tab.nodes[A].shape;
                for (std::size_t u = 0; u < outer; ++u)
                    for (std::size_t x = 0; x < os.d[ax]; ++x) {
                        T* d = dst + (u * os.d[ax] + x) * inner;
                        if constexpr (r.op == opcode::slice) {
                            for (std::size_t v = 0; v < inner; ++v) d[v] = read<T, A>(c, b, (u * as.d[ax] + x + r.begin) * inner + v);
                        } else {
                            const bool in = x >= r.begin && x < r.begin + as.d[ax];
                            for (std::size_t v = 0; v < inner; ++v)
                                d[v] = in ? read<T, A>(c, b, (u * as.d[ax] + x - r.begin) * inner + v) : T(0);
                        }
                    }
            }
        }
    }
    template <std::uint32_t O>
    static void copy_part(const context& c, std::size_t b, T* dst, std::size_t outer, std::size_t inner, std::size_t out_ax,
                          std::size_t at) {
        constexpr std::size_t size = tab.nodes[O].shape.size();
        const std::size_t len = size / outer;
        for (std::size_t u = 0; u < outer; ++u)
            for (std::size_t j = 0; j < len; ++j) dst[(u * out_ax + at) * inner + j] = read<T, O>(c, b, u * len + j);
    }

    // ---- fused self-attention (cpu/attention.hpp) --------------------------------------------------
    // One call per tile over its nb examples: no N x N value outside the kernel (its scores stay in
    // registers and a stack row buffer). The kernels are templates of (T, N, K) only, so every
    // attention step of one shape shares one instantiation.
    template <std::uint32_t I, std::uint32_t J>
    static const T* stored(const context& c) {
        constexpr node o = tab.nodes[tab.operand(I, J)];
        static_assert(o.batched && o.op != opcode::constant && o.op != opcode::batch_size && o.op != opcode::random,
                      "ctrec internal: an attention operand must be a stored per-example value (build::stored_per_example)");
        return c.base[tab.operand(I, J)];
    }
    template <std::uint32_t I>
    static void attention_step(const context& c) {
        constexpr node r = tab.nodes[I];
        constexpr std::size_t n = r.shape.d[0], k = r.shape.d[1];
        if constexpr (r.op == opcode::attention) attention_forward<T, n, k>(stored<I, 0>(c), c.base[I], c.nb);
        else if constexpr (r.op == opcode::attention_vjp)
            attention_backward<T, n, k>(stored<I, 0>(c), stored<I, 1>(c), stored<I, 2>(c), c.base[I], c.nb);
        else attention_jvp<T, n, k>(stored<I, 0>(c), stored<I, 2>(c), c.base[I], c.nb);
    }

    // ---- Khatri-Rao GEMMs (cpu/kr_gemm.hpp) ------------------------------------------------------------
    // Every row of every example of the tile is one GEMM row: per-example operands are row-major
    // and consecutive, so the R rows of the nb examples merge into one call of R nb rows. The
    // kernels are templates of T only (shared by every kr step of a program).
    template <std::uint32_t I, std::uint32_t J>
    static const T* kr_operand(const context& c) {
        constexpr node o = tab.nodes[tab.operand(I, J)];
        static_assert(o.op != opcode::constant && o.op != opcode::batch_size && o.op != opcode::random,
                      "ctrec internal: a Khatri-Rao operand must be stored (build::kr_rows)");
        return c.base[tab.operand(I, J)];
    }
    template <std::uint32_t I>
    static void kr_step(const context& c) {
        constexpr node r = tab.nodes[I];
        constexpr std::size_t R = tab.nodes[tab.operand(I, 0)].shape.d[0];
        constexpr std::size_t ka = tab.nodes[tab.operand(I, 0)].shape.d[1], kb = tab.nodes[tab.operand(I, 1)].shape.d[1];
        constexpr auto ska = static_cast<std::ptrdiff_t>(ka), skb = static_cast<std::ptrdiff_t>(kb);
        const std::size_t rows = R * c.nb;
        T* out = c.base[I];
        if constexpr (r.op == opcode::kr_matmul || r.op == opcode::kr_matmul2) {
            constexpr std::size_t J = r.shape.d[1];
            constexpr auto sj = static_cast<std::ptrdiff_t>(J);
            constexpr std::uint32_t w = r.op == opcode::kr_matmul ? 2 : 4;
            if constexpr (r.op == opcode::kr_matmul)
                kr_matmul(kr_operand<I, 0>(c), ska, kr_operand<I, 1>(c), skb, rows, ka, kb, kr_operand<I, w>(c), skb * sj, sj,
                          std::ptrdiff_t{1}, J, out, sj, false);
            else
                kr_matmul(kr_operand<I, 0>(c), ska, kr_operand<I, 1>(c), skb, rows, ka, kb, kr_operand<I, w>(c), skb * sj, sj,
                          std::ptrdiff_t{1}, J, out, sj, false, kr_operand<I, 2>(c), kr_operand<I, 3>(c));
        } else if constexpr (r.op == opcode::kr_gram) {
            // sums the batch: zeroed before the first tile, then every tile adds
            constexpr std::size_t J = r.shape.d[1];
            if (c.first_tile) std::fill_n(out, r.shape.size(), T(0));
            kr_gram(kr_operand<I, 0>(c), ska, kr_operand<I, 1>(c), skb, rows, ka, kb, kr_operand<I, 2>(c),
                    static_cast<std::ptrdiff_t>(J), J, out, true);
        } else {  // kr_dual: both input gradients, accumulated into a zeroed [dP | dQ]
            constexpr std::size_t J = tab.nodes[tab.operand(I, 2)].shape.d[1];
            std::fill_n(out, rows * (ka + kb), T(0));
            kr_dual(kr_operand<I, 0>(c), ska, kr_operand<I, 1>(c), skb, rows, ka, kb, kr_operand<I, 2>(c), J,
                    kr_operand<I, 3>(c), static_cast<std::ptrdiff_t>(J), out, static_cast<std::ptrdiff_t>(ka + kb));
        }
    }
    // The last two axes swapped: (outer, R, C) -> (outer, C, R).
    template <std::uint32_t I>
    static void transpose_step(const context& c) {
        constexpr node r = tab.nodes[I];
        constexpr std::uint32_t A = tab.operand(I, 0);
        constexpr std::size_t R = r.shape.d[r.shape.rank - 1], C = r.shape.d[r.shape.rank - 2];
        constexpr std::size_t outer = r.shape.size() / (R * C);
        const std::size_t rows = r.batched ? c.nb : 1;
        for (std::size_t b = 0; b < rows; ++b) {
            T* dst = ptr<I>(c, b);
            for (std::size_t u = 0; u < outer; ++u)
                for (std::size_t i = 0; i < R; ++i)
                    for (std::size_t j = 0; j < C; ++j) dst[u * R * C + j * R + i] = read<T, A>(c, b, u * R * C + i * C + j);
        }
    }

    // A root no step computes (a leaf, a view, a constant): copied into its output.
    template <std::uint32_t I>
    static void copy_root(const context& c, T* out) {
        constexpr node r = tab.nodes[I];
        constexpr std::size_t size = r.shape.size();
        const std::size_t rows = r.batched ? c.nb : 1;
        for (std::size_t b = 0; b < rows; ++b)
            for (std::size_t i = 0; i < size; ++i) out[b * size + i] = read<T, I>(c, b, i);
    }

    // Not inlined: a step is a whole loop nest, and a plan with several passes calls it from each.
    template <std::uint32_t I>
    [[gnu::noinline]] static void step(const context& c, T* const* out) {
        constexpr node r = tab.nodes[I];
        if constexpr (ctrec::is_leaf(r.op) || pl.alias[I]) {
            copy_root<I>(c, out[pl.root[I]]);
        } else if constexpr (ctrec::is_elementwise(r.op)) map_step<I>(c);
        else if constexpr (r.op == opcode::contract) contract_step<I>(c);
        else if constexpr (r.op == opcode::reduce_sum || r.op == opcode::reduce_max) reduce_step<I>(c);
        else if constexpr (r.op == opcode::batch_sum) batch_sum_step<I>(c);
        else if constexpr (r.op == opcode::attention || r.op == opcode::attention_vjp || r.op == opcode::attention_jvp)
            attention_step<I>(c);
        else if constexpr (r.op == opcode::kr_matmul || r.op == opcode::kr_gram || r.op == opcode::kr_dual ||
                           r.op == opcode::kr_matmul2)
            kr_step<I>(c);
        else if constexpr (r.op == opcode::transpose) transpose_step<I>(c);
        else movement_step<I>(c);
        // Bf16: a rounded derived parameter is rounded as soon as it is computed, so that every
        // reader (a contraction, another derived parameter, a root) sees the same value
        if constexpr (Bf16) {
            if constexpr (pl.derived[I] && rounded(I))
                bf16_round_into(c.base[I], r.shape.size(), c.base[I],
                                reinterpret_cast<std::byte*>(const_cast<T*>(c.derived) + bf16_layout.halves[I]));
        }
    }

    // The steps of one phase, as an exact constexpr list: Phase -1 - A = unbatched steps that
    // become computable before pass A (A = passes: after the last); Phase Q >= 0: tile steps of
    // pass Q.
    template <int Phase>
    static constexpr std::size_t count_steps() {
        std::size_t n = 0;
        for (std::size_t i = 0; i < N; ++i) n += in_phase(i, Phase);
        return n;
    }
    static constexpr int derived_phase = 1 << 20;  // the steps parameters::prepare() runs
    static constexpr bool in_phase(std::size_t i, int phase) {
        if (phase == derived_phase) return pl.derived[i];
        if (!pl.step[i] || pl.derived[i]) return false;
        const bool tiled = tab.nodes[i].batched || pl.reducer[i];
        if (phase >= 0) return tiled && (pl.needed[i] >> phase & 1u);
        return !tiled && pl.avail[i] == -1 - phase;
    }
    template <int Phase>
    static constexpr auto steps_of() {
        std::array<std::uint32_t, count_steps<Phase>() + 1> a{};
        std::size_t k = 0;
        for (std::size_t i = 0; i < N; ++i)
            if (in_phase(i, Phase)) a[k++] = static_cast<std::uint32_t>(i);
        return a;
    }
    template <int Phase>
    static void run_phase(const context& c, T* const* out) {
        [[maybe_unused]] static constexpr auto list = steps_of<Phase>();  // unused when a phase is empty
        [&]<std::size_t... K>(std::index_sequence<K...>) {
            (step<list[K]>(c, out), ...);
        }(std::make_index_sequence<count_steps<Phase>()>{});
    }

    // Runtime tables for binding (one loop over the nodes per tile, no per-node templates).
    struct binding {
        std::uint8_t what[N ? N : 1] = {};  // 0 none, 1 param, 2 input, 3 alias, 4 root, 5 workspace, 6 derived
        std::uint32_t slot[N ? N : 1] = {};
        std::size_t size[N ? N : 1] = {};
        bool batched[N ? N : 1] = {};
    };
    static constexpr binding bind_table = [] {
        binding t{};
        for (std::size_t i = 0; i < N; ++i) {
            const node& r = tab.nodes[i];
            t.size[i] = r.shape.size();
            t.batched[i] = r.batched;
            if (r.op == opcode::param) t.what[i] = 1, t.slot[i] = static_cast<std::uint32_t>(P::param_slot(i));
            else if (r.op == opcode::input) t.what[i] = 2, t.slot[i] = static_cast<std::uint32_t>(P::input_slot(i));
            else if (pl.alias[i]) t.what[i] = 3, t.slot[i] = tab.operand(i, 0);
            else if (pl.root[i] >= 0 && !ctrec::is_leaf(r.op)) t.what[i] = 4, t.slot[i] = static_cast<std::uint32_t>(pl.root[i]);
            else if (pl.derived[i]) t.what[i] = 6, t.slot[i] = static_cast<std::uint32_t>(pl.offset[i]);
            else if (pl.offset[i] >= 0) t.what[i] = 5, t.slot[i] = static_cast<std::uint32_t>(pl.offset[i]);
        }
        return t;
    }();

    // (prepare binds parameters and the derived block only: no inputs, outputs or workspace)
    static void bind(context& c, const T* params, const T* derived, T* ws, const T* const* in, T* const* out, std::size_t b0) {
        static constexpr const binding& t = bind_table;
        c.derived = derived;
        for (std::size_t i = 0; i < N; ++i) {
            const std::size_t off = t.batched[i] ? b0 * t.size[i] : 0;
            switch (t.what[i]) {
                case 1:
                    c.base[i] = const_cast<T*>(params) + P::parameters::offsets[t.slot[i]];
                    // Bf16: a rounded parameter is read from its rounded copy, by every reader
                    if constexpr (Bf16)
                        if (bf16_layout.copy[i] >= 0) c.base[i] = const_cast<T*>(derived) + bf16_layout.copy[i];
                    break;
                case 2: c.base[i] = in ? const_cast<T*>(in[t.slot[i]]) + off : nullptr; break;
                case 3: c.base[i] = c.base[t.slot[i]]; break;
                case 4: c.base[i] = out ? out[t.slot[i]] + off : nullptr; break;
                case 5: c.base[i] = !ws ? nullptr : t.batched[i] ? ws + pl.persistent + t.slot[i] * P::tile : ws + t.slot[i]; break;
                case 6: c.base[i] = const_cast<T*>(derived) + t.slot[i]; break;
                default: break;
            }
        }
    }

    // Computes the derived parameters (pl.derived) into `derived` from the parameters (Bf16:
    // from the rounded parameters; step() rounds the derived ones a contraction reads).
    static void prepare(const T* params, T* derived) {
        if constexpr (Bf16) {
            for (std::size_t i = 0; i < N; ++i)
                if (bf16_layout.copy[i] >= 0)
                    bf16_round_into(params + P::parameters::offsets[P::param_slot(i)], tab.nodes[i].shape.size(),
                                    derived + bf16_layout.copy[i], reinterpret_cast<std::byte*>(derived + bf16_layout.halves[i]));
        }
        if constexpr (pl.derived_steps > 0) {
            context c{};
            c.nb = 1;
            bind(c, params, derived, nullptr, nullptr, nullptr, 0);
            run_phase<derived_phase>(c, nullptr);  // (step rounds the rounded derived parameters)
        }
    }

    static void run(const T* params, const T* derived, T* ws, std::size_t batch, const T* const* in, T* const* out,
                    std::uint64_t seed) {
        context c{};
        c.batch = static_cast<double>(batch);
        c.seed = seed;
        T* tile_out[P::n_outputs ? P::n_outputs : 1];
        auto outs_at = [&](std::size_t b0) {
            for (std::size_t r = 0; r < P::n_outputs; ++r)
                tile_out[r] = out[r] + (tab.nodes[tab.roots[r]].batched ? b0 * tab.nodes[tab.roots[r]].shape.size() : 0);
        };
        [&]<int... Q>(std::integer_sequence<int, Q...>) {
            ((c.nb = 1, c.b0 = 0, bind(c, params, derived, ws, in, out, 0), outs_at(0), run_phase<-1 - Q>(c, tile_out),
              [&] {
                  for (std::size_t b0 = 0; b0 < batch; b0 += P::tile) {
                      c.nb = batch - b0 < P::tile ? batch - b0 : P::tile;
                      c.first_tile = b0 == 0;
                      c.b0 = b0;
                      bind(c, params, derived, ws, in, out, b0);
                      outs_at(b0);
                      run_phase<Q>(c, tile_out);
                  }
                  if (batch == 0) {  // reducers of an empty batch are zero
                      c.nb = 0, c.first_tile = true, c.b0 = 0;
                      bind(c, params, derived, ws, in, out, 0);
                      outs_at(0);
                      run_phase<Q>(c, tile_out);
                  }
              }()),
             ...);
        }(std::make_integer_sequence<int, pl.passes>{});
        c.nb = 1, c.b0 = 0;
        bind(c, params, derived, ws, in, out, 0);
        outs_at(0);
        run_phase<-1 - pl.passes>(c, tile_out);
        // a node that is several roots was written into the first; copy it to the others
        for (std::size_t r = 0; r < P::n_outputs; ++r) {
            const std::size_t i = tab.roots[r];
            const auto first = static_cast<std::size_t>(pl.root[i]);
            if (first != r) std::copy_n(out[first], tab.nodes[i].shape.size() * (tab.nodes[i].batched ? batch : 1), out[r]);
        }
    }
};

} // namespace ctrec::cpu

namespace ctrec {
struct cpu_backend {
    template <class P, class T>
    static void run(const T* params, const T* derived, T* ws, std::size_t batch, const T* const* in, T* const* out,
                    std::uint64_t seed) {
        cpu::exec<P>::run(params, derived, ws, batch, in, out, seed);
    }
    template <class P, class T>
    static void prepare(const T* params, T* derived) {
        cpu::exec<P>::prepare(params, derived);
    }
};

// The CPU backend with bfloat16 weights, for float scoring programs whose batch-1 latency is
// bound by streaming weights (cpu/bf16.hpp): prepare() rounds every parameter and derived
// parameter that a contraction reads to bf16 (nearest even), and every reader uses the rounded
// value, so the program is exactly the float32 program on those rounded weights, batch-invariant,
// with half the weight bytes read at batch 1. Biases, scales and every other parameter stay
// float32, and so do weights that only other fused kernels read (CIN's Khatri-Rao products).
// The parameters object keeps the values as set (saving them saves float32), plus the rounded
// copies (1.5x the contraction weights' bytes).
//   using Fast = ctrec::program<float, y>::with_backend<ctrec::cpu_bf16_backend>;
struct cpu_bf16_backend {
    template <class P, class T>
    static void run(const T* params, const T* derived, T* ws, std::size_t batch, const T* const* in, T* const* out,
                    std::uint64_t seed) {
        static_assert(P::kind == model_kind::forward, "ctrec: cpu_bf16_backend scores (program<float, ...>); train in float32");
        cpu::exec<P, true>::run(params, derived, ws, batch, in, out, seed);
    }
    template <class P, class T>
    static void prepare(const T* params, T* derived) {
        cpu::exec<P, true>::prepare(params, derived);
    }
    template <class P>
    static constexpr std::size_t derived_extra = cpu::exec<P, true>::derived_extra;
    // Whether the parameter called `name` reaches the model through a rounded weight: it is one,
    // or a rounded derived parameter is computed from it (a weight-normalised kernel and its
    // norm, MMoE's stacked expert and gate kernels). Biases added after a contraction are not.
    template <class P>
    static constexpr bool rounds(std::string_view name) {
        using E = cpu::exec<P, true>;
        std::size_t k = 0;
        while (k < P::n_params && P::tab.name_of(P::param_ids[k]) != name) ++k;
        if (k == P::n_params) return false;
        bool from[P::size ? P::size : 1]{};  // node i is computed from the parameter
        for (std::size_t i = 0; i < P::size; ++i) {
            from[i] = i == P::param_ids[k];
            for (std::uint32_t j = 0; j < P::tab.nodes[i].nops; ++j)
                from[i] = from[i] || from[P::tab.operand(static_cast<std::uint32_t>(i), j)];  // operands come first
            if (from[i] && E::rounded(i)) return true;
        }
        return false;
    }
};
} // namespace ctrec
