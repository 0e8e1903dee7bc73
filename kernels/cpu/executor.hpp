#pragma once
// CPU executor: runs a plan (core/plan.hpp) over a batch, tile by tile.
// Each step is one loop nest: a fused elementwise tree evaluated in SIMD runs,
// a GEMM (optionally with that tree as its epilogue), a reduction with its
// operand tree fused in, or a data-movement loop. Nothing here allocates.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "ctrec/core/error.hpp"
#include "ctrec/core/plan.hpp"
#include "cpu/attention.hpp"
#include "cpu/gemm.hpp"
#include "cpu/kr_gemm.hpp"
#include "cpu/scan.hpp"
#include "cpu/transpose.hpp"
#include "cpu/simd.hpp"

namespace ctrec::cpu {

template <class T, class Plan>
struct executor {
    using nodes = typename Plan::nodes;
    static constexpr const auto& D = Plan::data;
    static constexpr std::size_t n = Plan::size;
    using V = simd_t<T>;
    static constexpr std::size_t W = V::size;

    template <std::size_t I> using node_at = tl_at_t<I, nodes>;
    template <class N> static constexpr std::size_t id = Plan::template id<N>;

    struct context {
        T* base[n ? n : 1];                     // element 0 of the node's value for example 0 of the tile
        const std::int32_t* ibase[n ? n : 1];   // same, for index inputs
        T* out[Plan::roots::size];              // caller's outputs (tile-relative for batched roots)
        std::size_t nb = 0;                     // examples in this tile
        double batch = 0;                       // examples in this call
        bool first_tile = true;                 // batch-summed contractions overwrite instead of adding
        std::uint64_t seed = 0;                 // io.seed: random streams
        std::size_t example0 = 0;               // index of the tile's first example in the call
    };

    template <class N>
    static T* ptr(const context& c, std::size_t b) {
        return c.base[id<N>] + (N::batched ? b * N::shape.size() : 0);
    }

    // ---- fused elementwise work -----------------------------------------------------------
    // joined_t<S>: the elementwise nodes evaluated inside the loop of step S, in
    // topological order (S itself last when it is a map). Each is computed once
    // per element into a local array, so values shared inside the loop are not
    // recomputed; everything else is loaded.
    template <std::size_t S>
    struct in_step {
        template <class N>
        struct pred : std::bool_constant<N::node_kind == kind::map && D.absorber[id<N>] == static_cast<int>(S) &&
                                         (D.inlined[id<N>] || id<N> == S)> {};
    };
    template <std::size_t S> using joined_t = tl_filter_t<in_step<S>::template pred, nodes>;

    // value<Vt, N, S>: a value the loop reads from outside: N at flat index i of example b,
    // as a scalar (Vt = T) or W consecutive elements (Vt = V). S is a contraction
    // whose value is `acc` (GEMM epilogue).
    template <class Vt, class N, class S>
    static Vt value(const context& c, std::size_t b, std::size_t i, const Vt& acc) {
        if constexpr (std::is_same_v<N, S>) {
            return acc;
        } else if constexpr (N::node_kind == kind::constant) {
            return vmath<Vt>::splat(N::value);
        } else if constexpr (N::node_kind == kind::zero) {
            return vmath<Vt>::splat(0.0);
        } else if constexpr (N::node_kind == kind::batch_size) {
            return vmath<Vt>::splat(c.batch);
        } else if constexpr (N::node_kind == kind::random) {
            const std::uint64_t e = c.example0 + b;
            if constexpr (std::is_same_v<Vt, T>) {
                return random_uniform_value<T>(c.seed, N::stream_hash, e, i);
            } else {
                alignas(64) T lanes[W];
                for (std::size_t l = 0; l < W; ++l) lanes[l] = random_uniform_value<T>(c.seed, N::stream_hash, e, i + l);
                return Vt::load_aligned(lanes);
            }
        } else if constexpr (D.alias[id<N>]) {
            return value<Vt, tl_at_t<0, typename N::operands>, S>(c, b, i, acc);
        } else {
            static_assert(!D.inlined[id<N>], "ctrec internal: a joined node is read outside its loop");
            const T* p = ptr<N>(c, b) + i;
            if constexpr (std::is_same_v<Vt, T>) return *p;
            else return Vt::load_unaligned(p);
        }
    }

    // Operand O of joined node N: from the loop's array, or read (broadcast as needed).
    template <class Vt, class O, class N, class L, class S>
    static Vt operand(const context& c, std::size_t b, std::size_t i, const Vt& acc, const Vt* v) {
        if constexpr (tl_contains_v<O, L>) {
            return v[tl_index_v<O, L>];  // same shape as N by construction
        } else {
            constexpr dims os = O::shape, ns = N::shape;
            const std::size_t j = bcast_index<os, ns>(i);
            if constexpr (!std::is_same_v<Vt, T> && bcast_constant(os, ns)) return Vt(value<T, O, void>(c, b, j, T(0)));
            else return value<Vt, O, S>(c, b, j, acc);
        }
    }

    // Plain function templates, not nested generic lambdas: GCC 12.2 at -O3 with
    // AVX-512 miscompiled the lambda form of this loop body (wrong per-example
    // offsets in a fused gradient loop; test_structure's l2_normalize case).
    template <class Vt, class N, class L, class S, class... O>
    static Vt eval_node(const context& c, std::size_t b, std::size_t i, const Vt& acc, const Vt* v, tlist<O...>) {
        return N::op::apply(operand<Vt, O, N, L, S>(c, b, i, acc, v)...);
    }
    template <class Vt, class L, class S, std::size_t... K>
    static void eval_all(const context& c, std::size_t b, std::size_t i, const Vt& acc, Vt* v, std::index_sequence<K...>) {
        ((v[K] = eval_node<Vt, tl_at_t<K, L>, L, S>(c, b, i, acc, v, typename tl_at_t<K, L>::operands{})), ...);
    }
    // Evaluates the joined nodes of step Step at (b, i); returns the last one.
    template <class Vt, std::size_t Step, class S = void>
    static Vt joined(const context& c, std::size_t b, std::size_t i, const Vt& acc = Vt(T(0))) {
        using L = joined_t<Step>;
        Vt v[L::size];
        eval_all<Vt, L, S>(c, b, i, acc, v, std::make_index_sequence<L::size>{});
        return v[L::size - 1];
    }

    // Run length over the loop's flat index inside which every value read from
    // outside is contiguous or constant (SIMD steps stay inside runs).
    template <class N, class L, class... O>
    static constexpr std::size_t node_run(tlist<O...>) {
        std::size_t r = N::shape.size();
        ((r = tl_contains_v<O, L> ? r : std::min(r, bcast_run(O::shape, N::shape))), ...);
        return r;
    }
    template <class L, class... N>
    static constexpr std::size_t list_run(tlist<N...>) {
        std::size_t r = static_cast<std::size_t>(-1);
        ((r = std::min(r, node_run<N, L>(typename N::operands{}))), ...);
        return r;
    }
    template <std::size_t Step>
    static constexpr std::size_t tree_run() {
        return list_run<joined_t<Step>>(joined_t<Step>{});
    }

    // The operand A of reduction step Step: computed in the loop if joined, else loaded.
    template <class Vt, std::size_t Step, class A>
    static Vt tree(const context& c, std::size_t b, std::size_t i) {
        if constexpr (A::node_kind == kind::map && D.inlined[id<A>]) return joined<Vt, Step>(c, b, i);
        else return value<Vt, A, void>(c, b, i, Vt(T(0)));
    }
    template <std::size_t Step, class A>
    static constexpr std::size_t operand_run() {
        if constexpr (A::node_kind == kind::map && D.inlined[id<A>]) return tree_run<Step>();
        else return A::shape.size();
    }

    // ---- steps ---------------------------------------------------------------------------
    template <class N>
    static std::size_t rows(const context& c) { return N::batched ? c.nb : 1; }

    template <class N>
    static void map_step(const context& c) {
        constexpr int fc = D.fused_contraction[id<N>];
        if constexpr (fc >= 0) {
            using C = node_at<static_cast<std::size_t>(fc)>;
            gemm_step<C>(c, ptr<N>(c, 0), epilogue<N, C>{c}, false);
        } else {
            constexpr std::size_t size = N::shape.size(), R = tree_run<id<N>>();
            for (std::size_t b = 0; b < rows<N>(c); ++b) {
                T* dst = ptr<N>(c, b);
                for (std::size_t r0 = 0; r0 < size; r0 += R) {
                    std::size_t j = 0;
                    if constexpr (R >= W)
                        for (; j + W <= R; j += W) joined<V, id<N>>(c, b, r0 + j).store_unaligned(dst + r0 + j);
                    for (; j < R; ++j) {
                        dst[r0 + j] = joined<T, id<N>>(c, b, r0 + j);
                        // GCC 12.2 at -O3 with AVX-512 auto-vectorises this scalar tail across
                        // examples wrongly (a fused where(x >= 1, w, 0) of 6 doubles gave wrong
                        // rows for examples 2 and 3; tests/test_serving.cpp): an empty asm keeps
                        // the tail scalar. The SIMD runs above are explicit and unaffected.
                        asm volatile("" ::: "memory");
                    }
                }
            }
        }
    }

    // The elementwise tree rooted at N, applied to each GEMM result of contraction C.
    template <class N, class C>
    struct epilogue {
        const context& c;
        static constexpr contract_plan P = contract_plan_of<C>;
        static constexpr std::size_t size = N::shape.size();
        static constexpr bool identity = false;
        static constexpr bool vector_ok =
            P.n.sc == 1 && P.m.sc == static_cast<std::ptrdiff_t>(P.n.extent) && tree_run<id<N>>() % P.n.extent == 0;
        template <class Vt>
        Vt at(std::size_t m, std::size_t nn, Vt acc) const {
            std::size_t flat = m * static_cast<std::size_t>(P.m.sc) + nn * static_cast<std::size_t>(P.n.sc);
            return joined<Vt, id<N>, C>(c, flat / size, flat % size, acc);
        }
        V vec(std::size_t m, std::size_t nn, V acc) const { return at<V>(m, nn, acc); }
        T scalar(std::size_t m, std::size_t nn, T acc) const { return at<T>(m, nn, acc); }
    };

    template <class C, class Epi = no_epilogue>
    static void gemm_step(const context& c, T* dst, const Epi& epi = {}, bool accumulate = false) {
        constexpr contract_plan P = contract_plan_of<C>;
        using A = tl_at_t<0, typename C::operands>;
        using B = tl_at_t<1, typename C::operands>;
        const T* a = c.base[id<A>];
        const T* b = c.base[id<B>];
        if constexpr (P.swap) std::swap(a, b);
        const std::size_t nb = c.nb;
        auto ext = [nb](const gemm_dim& d) { return d.extent * (d.times_batch ? nb : 1); };
        gemm_args g{ext(P.m), ext(P.n), ext(P.k), P.m.sa, P.k.sa, P.k.sb, P.n.sb, P.m.sc, P.n.sc};
        if (g.M == 0 || g.N == 0) return;
        // a sum over the batch starts on the first tile by overwriting (its buffer is not
        // zeroed first: that would be one more pass over a possibly large gradient)
        outer_loops<P, 0>(a, b, dst, g, epi, accumulate || (P.reduces_batch && !c.first_tile), nb);
    }

    template <contract_plan P, std::size_t L, class Epi>
    static void outer_loops(const T* a, const T* b, T* dst, const gemm_args& g, const Epi& epi, bool acc,
                            std::size_t nb) {
        if constexpr (L == P.n_outer) {
            gemm(a, b, dst, g, acc, epi);
        } else {
            constexpr gemm_dim d = P.outer[L];
            const std::size_t e = d.extent * (d.times_batch ? nb : 1);
            for (std::size_t t = 0; t < e; ++t) {
                std::ptrdiff_t s = static_cast<std::ptrdiff_t>(t);
                outer_loops<P, L + 1>(a + s * d.sa, b + s * d.sb, dst + s * d.sc, g, epi,
                                      acc || (P.outer_is_k[L] && t > 0), nb);
            }
        }
    }

    // Size of the contiguous segment each output element reduces, when the
    // reduced axes are a suffix of the operand's axes; 0 otherwise.
    static constexpr std::size_t suffix_segment(dims as, unsigned mask) {
        std::size_t k = 0, len = 1;
        while (k < as.rank && (mask >> (as.rank - 1 - k) & 1u)) len *= as.d[as.rank - 1 - k], ++k;
        return mask == (all_axes(as.rank) & ~all_axes(as.rank - k)) ? len : 0;
    }

    // Reduced axes forming one contiguous block of axes: outer x reduced x inner extents.
    struct block_split {
        bool ok = false;
        std::size_t outer = 1, reduced = 1, inner = 1;
    };
    static constexpr block_split middle_block(dims as, unsigned mask) {
        block_split r;
        std::size_t first = as.rank, last = 0;
        for (std::size_t ax = 0; ax < as.rank; ++ax)
            if (mask >> ax & 1u) first = std::min(first, ax), last = ax;
        if (first == as.rank) return r;
        for (std::size_t ax = first; ax <= last; ++ax)
            if (!(mask >> ax & 1u)) return r;
        for (std::size_t ax = 0; ax < as.rank; ++ax)
            (ax < first ? r.outer : ax <= last ? r.reduced : r.inner) *= as.d[ax];
        r.ok = r.inner > 1;
        return r;
    }

    template <class N>
    static void reduce_step(const context& c) {
        using A = tl_at_t<0, typename N::operands>;
        constexpr bool is_max = std::is_same_v<typename N::op, reduce_max_op>;
        constexpr T init = is_max ? -std::numeric_limits<T>::infinity() : T(0);
        constexpr dims as = A::shape;
        constexpr unsigned mask = N::mask;
        // reduced axes form a suffix: each output element reduces a contiguous segment
        constexpr std::size_t L = suffix_segment(as, mask);
        auto combine = [](auto x, auto y) {
            if constexpr (is_max) return vmath<decltype(x)>::max(x, y);
            else return x + y;
        };
        for (std::size_t b = 0; b < rows<N>(c); ++b) {
            T* dst = ptr<N>(c, b);
            if constexpr (L != 0) {
                constexpr std::size_t O = as.size() / L;
                constexpr bool vec = L >= W && operand_run<id<N>, A>() % L == 0;
                for (std::size_t o = 0; o < O; ++o) {
                    T s = init;
                    std::size_t j = 0;
                    if constexpr (vec) {
                        V va(init);
                        for (; j + W <= L; j += W) va = combine(va, tree<V, id<N>, A>(c, b, o * L + j));
                        alignas(64) T lanes[W];
                        va.store_aligned(lanes);
                        for (std::size_t l = 0; l < W; ++l) s = combine(s, lanes[l]);
                    }
                    for (; j < L; ++j) s = combine(s, tree<T, id<N>, A>(c, b, o * L + j));
                    dst[o] = s;
                }
            } else if constexpr (constexpr block_split bs = middle_block(as, mask); bs.ok) {
                // the reduced axes are one block between kept outer and inner axes (e.g. pooling
                // over fields or over the embedding axis): whole inner rows combine, in SIMD
                constexpr std::size_t I = bs.inner, Rr = bs.reduced, O = bs.outer;
                constexpr bool vec = I >= W && operand_run<id<N>, A>() % I == 0;
                for (std::size_t o = 0; o < O; ++o) {
                    T* d = dst + o * I;
                    std::size_t j = 0;
                    if constexpr (vec)
                        for (; j + W <= I; j += W) {
                            V va(init);
                            for (std::size_t r = 0; r < Rr; ++r) va = combine(va, tree<V, id<N>, A>(c, b, (o * Rr + r) * I + j));
                            va.store_unaligned(d + j);
                        }
                    for (; j < I; ++j) {
                        T t = init;
                        for (std::size_t r = 0; r < Rr; ++r) t = combine(t, tree<T, id<N>, A>(c, b, (o * Rr + r) * I + j));
                        d[j] = t;
                    }
                }
            } else {
                constexpr dims os = N::shape;
                for (std::size_t o = 0; o < os.size(); ++o) dst[o] = init;
                for (std::size_t i = 0; i < as.size(); ++i) {
                    std::size_t o = 0, k = 0;
                    for (std::size_t ax = 0; ax < as.rank; ++ax) {
                        std::size_t coord = i / as.stride(ax) % as.d[ax];
                        if (!(mask >> ax & 1u)) o += coord * os.stride(k++);
                    }
                    dst[o] = combine(dst[o], tree<T, id<N>, A>(c, b, i));
                }
            }
        }
    }

    template <class N>
    static void batch_sum_step(const context& c) {
        using A = tl_at_t<0, typename N::operands>;
        constexpr std::size_t size = N::shape.size(), R = operand_run<id<N>, A>();
        T* dst = ptr<N>(c, 0);
        for (std::size_t b = 0; b < c.nb; ++b)
            for (std::size_t r0 = 0; r0 < size; r0 += R) {
                std::size_t j = 0;
                if constexpr (R >= W)
                    for (; j + W <= R; j += W)
                        (V::load_unaligned(dst + r0 + j) + tree<V, id<N>, A>(c, b, r0 + j)).store_unaligned(dst + r0 + j);
                for (; j < R; ++j) dst[r0 + j] += tree<T, id<N>, A>(c, b, r0 + j);
            }
    }

    // Data movement: out[o] = operand value at the mapped index (or 0).
    template <class N>
    static void movement_step(const context& c) {
        using A = tl_at_t<0, typename N::operands>;
        constexpr dims os = N::shape, as = A::shape;
        for (std::size_t b = 0; b < rows<N>(c); ++b) {
            T* dst = ptr<N>(c, b);
            if constexpr (N::node_kind == kind::transpose && as.rank == 2) {
                // dense matrix transpose (cpu/transpose.hpp) straight from the operand's
                // buffer; an operand computed inside this loop goes element by element
                constexpr std::size_t R = as.d[0], C = as.d[1];
                constexpr bool direct = A::node_kind == kind::param || A::node_kind == kind::input ||
                                        (D.step[id<A>] && !D.alias[id<A>]);
                if constexpr (direct) {
                    transpose(static_cast<const T*>(ptr<A>(c, b)), R, C, dst);
                } else {
                    for (std::size_t i = 0; i < R; ++i)
                        for (std::size_t j = 0; j < C; ++j) dst[j * R + i] = value<T, A, void>(c, b, i * C + j, T(0));
                }
            } else if constexpr (N::node_kind == kind::transpose) {
                for (std::size_t o = 0; o < os.size(); ++o) {
                    std::size_t i = 0;
                    for (std::size_t ax = 0; ax < os.rank; ++ax)
                        i += (o / os.stride(ax) % os.d[ax]) * as.stride(N::perm.d[ax]);
                    dst[o] = value<T, A, void>(c, b, i, T(0));
                }
            } else if constexpr (N::node_kind == kind::slice || N::node_kind == kind::pad) {
                constexpr std::size_t ax = N::axis;
                constexpr std::size_t outer = os.size() / (os.d[ax] * os.stride(ax)), inner = os.stride(ax);
                for (std::size_t u = 0; u < outer; ++u)
                    for (std::size_t x = 0; x < os.d[ax]; ++x)
                        for (std::size_t v = 0; v < inner; ++v) {
                            T& d = dst[(u * os.d[ax] + x) * inner + v];
                            if constexpr (N::node_kind == kind::slice) {
                                d = value<T, A, void>(c, b, (u * as.d[ax] + x + N::begin) * inner + v, T(0));
                            } else {
                                bool in = x >= N::before && x < N::before + as.d[ax];
                                d = in ? value<T, A, void>(c, b, (u * as.d[ax] + x - N::before) * inner + v, T(0)) : T(0);
                            }
                        }
            } else if constexpr (N::node_kind == kind::concat) {
                constexpr std::size_t ax = N::axis;
                constexpr std::size_t outer = os.size() / (os.d[ax] * os.stride(ax)), inner = os.stride(ax);
                std::size_t at = 0;
                [&]<class... O>(tlist<O...>) {
                    ((copy_part<O>(c, b, dst, outer, inner, os.d[ax], at), at += O::shape.d[ax]), ...);
                }(typename N::operands{});
            }
        }
    }
    template <class O>
    static void copy_part(const context& c, std::size_t b, T* dst, std::size_t outer, std::size_t inner,
                          std::size_t out_ax, std::size_t at) {
        const std::size_t len = O::shape.size() / outer;  // elements of one outer slab of the operand
        for (std::size_t u = 0; u < outer; ++u)
            for (std::size_t j = 0; j < len; ++j)
                dst[(u * out_ax + at) * inner + j] = value<T, O, void>(c, b, u * len + j, T(0));
    }

    // Khatri-Rao GEMMs (cpu/kr_gemm.hpp): every row of every example of the tile is one GEMM
    // row (per-example operands are row-major and consecutive, so the rows merge).
    template <class N>
    static void kr_matmul_step(const context& c) {
        using P = tl_at_t<0, typename N::operands>;
        using Q = tl_at_t<1, typename N::operands>;
        using Wt = tl_at_t<2, typename N::operands>;
        kr_matmul(static_cast<const T*>(c.base[id<P>]), static_cast<std::ptrdiff_t>(N::ka),
                  static_cast<const T*>(c.base[id<Q>]), static_cast<std::ptrdiff_t>(N::kb), N::R * c.nb, N::ka, N::kb,
                  static_cast<const T*>(c.base[id<Wt>]), N::swa, N::swb, N::swo, N::out_cols, ptr<N>(c, 0),
                  static_cast<std::ptrdiff_t>(N::out_cols), false);
    }
    template <class N>
    static void kr_gram_step(const context& c) {
        using P = tl_at_t<0, typename N::operands>;
        using Q = tl_at_t<1, typename N::operands>;
        using G = tl_at_t<2, typename N::operands>;
        // accumulates over tiles: the buffer starts at zero (program::zero_reducers)
        kr_gram(static_cast<const T*>(c.base[id<P>]), static_cast<std::ptrdiff_t>(N::ka),
                static_cast<const T*>(c.base[id<Q>]), static_cast<std::ptrdiff_t>(N::kb), N::R * c.nb, N::ka, N::kb,
                static_cast<const T*>(c.base[id<G>]), static_cast<std::ptrdiff_t>(N::J), N::J, ptr<N>(c, 0), true);
    }

    template <class N>
    static void kr_matmul2_step(const context& c) {
        using P = tl_at_t<0, typename N::operands>;
        using Q = tl_at_t<1, typename N::operands>;
        using P2 = tl_at_t<2, typename N::operands>;
        using Q2 = tl_at_t<3, typename N::operands>;
        using Wt = tl_at_t<4, typename N::operands>;
        constexpr auto J = static_cast<std::ptrdiff_t>(N::J);
        kr_matmul(static_cast<const T*>(c.base[id<P>]), static_cast<std::ptrdiff_t>(N::ka),
                  static_cast<const T*>(c.base[id<Q>]), static_cast<std::ptrdiff_t>(N::kb), N::R * c.nb, N::ka, N::kb,
                  static_cast<const T*>(c.base[id<Wt>]), static_cast<std::ptrdiff_t>(N::kb) * J, J, 1, N::J, ptr<N>(c, 0), J,
                  false, static_cast<const T*>(c.base[id<P2>]), static_cast<const T*>(c.base[id<Q2>]));
    }
    template <class N>
    static void kr_dual_step(const context& c) {
        using P = tl_at_t<0, typename N::operands>;
        using Q = tl_at_t<1, typename N::operands>;
        using Wt = tl_at_t<2, typename N::operands>;
        using G = tl_at_t<3, typename N::operands>;
        T* d = ptr<N>(c, 0);
        std::fill_n(d, N::shape.size() * c.nb, T(0));  // the kernel accumulates both gradients
        kr_dual(static_cast<const T*>(c.base[id<P>]), static_cast<std::ptrdiff_t>(N::ka),
                static_cast<const T*>(c.base[id<Q>]), static_cast<std::ptrdiff_t>(N::kb), N::R * c.nb, N::ka, N::kb,
                static_cast<const T*>(c.base[id<Wt>]), N::J, static_cast<const T*>(c.base[id<G>]),
                static_cast<std::ptrdiff_t>(N::J), d, static_cast<std::ptrdiff_t>(N::ka + N::kb));
    }

    // Fused self-attention (cpu/attention.hpp): one pass per example, no N x N buffer.
    template <class N>
    static void attention_step(const context& c) {
        using X = tl_at_t<0, typename N::operands>;
        if constexpr (N::node_kind == kind::attention) {
            attention_forward<T, N::n, N::k>(static_cast<const T*>(c.base[id<X>]), ptr<N>(c, 0), c.nb);
        } else if constexpr (N::node_kind == kind::attention_vjp) {
            using O = tl_at_t<1, typename N::operands>;
            using G = tl_at_t<2, typename N::operands>;
            attention_backward<T, N::n, N::k>(static_cast<const T*>(c.base[id<X>]), static_cast<const T*>(c.base[id<O>]),
                                              static_cast<const T*>(c.base[id<G>]), ptr<N>(c, 0), c.nb);
        } else {
            using dX = tl_at_t<1, typename N::operands>;
            attention_jvp<T, N::n, N::k>(static_cast<const T*>(c.base[id<X>]), static_cast<const T*>(c.base[id<dX>]),
                                         ptr<N>(c, 0), c.nb);
        }
    }

    // Gated recurrences (cpu/scan.hpp): one example at a time, the T steps in order (forward,
    // forward mode) or reversed (reverse mode). A zero or constant operand is passed as null.
    template <class O>
    static const T* opt_ptr(const context& c, std::size_t b) {
        if constexpr (O::node_kind == kind::zero || O::node_kind == kind::constant) return nullptr;
        else {
            static_assert(O::node_kind != kind::random && O::node_kind != kind::batch_size,
                          "ctrec internal: a scan operand must be stored");
            return ptr<O>(c, b);
        }
    }
    template <class N, std::size_t I>
    using op_t = tl_at_t<I, typename N::operands>;
    template <class N, std::size_t I>
    static const T* op_or_null(const context& c, std::size_t b) {
        if constexpr (I < N::operands::size) return opt_ptr<op_t<N, I>>(c, b);
        else return nullptr;
    }
    template <class N>
    static void scan_step(const context& c) {
        for (std::size_t b = 0; b < c.nb; ++b) {
            if constexpr (N::node_kind == kind::scan)
                scan::forward<T, N::cell, N::act, N::T, N::U>(opt_ptr<op_t<N, 0>>(c, b), opt_ptr<op_t<N, 1>>(c, b),
                                                              opt_ptr<op_t<N, 2>>(c, b), opt_ptr<op_t<N, 3>>(c, b),
                                                              op_or_null<N, 4>(c, b), ptr<N>(c, b));
            else if constexpr (N::node_kind == kind::scan_vjp)
                scan::backward<T, N::cell, N::act, N::T, N::U>(opt_ptr<op_t<N, 0>>(c, b), opt_ptr<op_t<N, 1>>(c, b),
                                                               opt_ptr<op_t<N, 2>>(c, b), opt_ptr<op_t<N, 3>>(c, b),
                                                               opt_ptr<op_t<N, 4>>(c, b), op_or_null<N, 5>(c, b), ptr<N>(c, b));
            else
                scan::tangent<T, N::cell, N::act, N::T, N::U>(opt_ptr<op_t<N, 0>>(c, b), opt_ptr<op_t<N, 1>>(c, b),
                                                              opt_ptr<op_t<N, 2>>(c, b), opt_ptr<op_t<N, 3>>(c, b),
                                                              opt_ptr<op_t<N, 4>>(c, b), opt_ptr<op_t<N, 5>>(c, b),
                                                              opt_ptr<op_t<N, 6>>(c, b), op_or_null<N, 7>(c, b), ptr<N>(c, b));
        }
    }

    template <class N>
    static void gather_step(const context& c) {
        using Table = tl_at_t<0, typename N::operands>;
        using Ids = tl_at_t<1, typename N::operands>;
        constexpr std::size_t np = Ids::shape.size(), rs = N::row_size;
        for (std::size_t b = 0; b < c.nb; ++b) {
            const std::int32_t* idv = c.ibase[id<Ids>] + b * np;
            T* dst = ptr<N>(c, b);
            for (std::size_t p = 0; p < np; ++p) {
                const std::size_t row = static_cast<std::size_t>(idv[p]);  // validated before the run
                for (std::size_t r = 0; r < rs; ++r) dst[p * rs + r] = value<T, Table, void>(c, 0, row * rs + r, T(0));
            }
        }
    }

    template <class N>
    static void scatter_step(const context& c) {
        using Ids = tl_at_t<0, typename N::operands>;
        using Ct = tl_at_t<1, typename N::operands>;
        constexpr std::size_t np = Ids::shape.size(), rs = N::row_size;
        T* dst = ptr<N>(c, 0);
        for (std::size_t b = 0; b < c.nb; ++b) {
            const std::int32_t* idv = c.ibase[id<Ids>] + b * np;
            for (std::size_t p = 0; p < np; ++p) {
                const std::size_t row = static_cast<std::size_t>(idv[p]);
                for (std::size_t r = 0; r < rs; ++r) dst[row * rs + r] += value<T, Ct, void>(c, b, p * rs + r, T(0));
            }
        }
    }

    // A root that no step computes (a leaf, a view, a zero): copied to the output.
    template <class N>
    static constexpr bool has_buffer() {
        if constexpr (N::node_kind == kind::constant || N::node_kind == kind::zero || N::node_kind == kind::index_input ||
                      N::node_kind == kind::batch_size || N::node_kind == kind::random)
            return false;
        else if constexpr (D.alias[id<N>]) return has_buffer<tl_at_t<0, typename N::operands>>();
        else return true;
    }
    template <class N>
    static void copy_root_step(const context& c) {
        constexpr std::size_t size = N::shape.size();
        for (std::size_t b = 0; b < rows<N>(c); ++b) {
            T* dst = c.out[D.rec[id<N>].root] + b * (N::batched ? size : 0);
            if constexpr (has_buffer<N>()) std::copy_n(static_cast<const T*>(ptr<N>(c, b)), size, dst);  // a view of a buffer
            else for (std::size_t i = 0; i < size; ++i) dst[i] = value<T, N, void>(c, b, i, T(0));
        }
    }

    // Not inlined: a step is a whole loop nest, and a plan with several batch passes calls
    // the same step from each of them; inlining would compile it once per pass.
    template <std::size_t I>
    [[gnu::noinline]] static void run_step(const context& c) {
#if defined(CTREC_PROFILE_STEPS) && (defined(__x86_64__) || defined(__i386__))
        // per-step cycle counts for plan tuning (single-threaded use; off by default)
        const unsigned long long t0 = __builtin_ia32_rdtsc();
        run_step_body<I>(c);
        step_cycles[I] += __builtin_ia32_rdtsc() - t0;
    }
    static inline unsigned long long step_cycles[n ? n : 1] = {};
    template <std::size_t I>
    static void run_step_body(const context& c) {
#endif
        using N = node_at<I>;
        constexpr kind k = N::node_kind;
        if constexpr (ctrec::detail::is_leafish(k) || D.alias[I]) copy_root_step<N>(c);
        else if constexpr (k == kind::map) map_step<N>(c);
        else if constexpr (k == kind::contract) gemm_step<N>(c, ptr<N>(c, 0));
        else if constexpr (k == kind::reduce) reduce_step<N>(c);
        else if constexpr (k == kind::batch_sum) batch_sum_step<N>(c);
        else if constexpr (k == kind::kr_matmul) kr_matmul_step<N>(c);
        else if constexpr (k == kind::kr_gram) kr_gram_step<N>(c);
        else if constexpr (k == kind::kr_dual) kr_dual_step<N>(c);
        else if constexpr (k == kind::kr_matmul2) kr_matmul2_step<N>(c);
        else if constexpr (k == kind::attention || k == kind::attention_vjp || k == kind::attention_jvp) attention_step<N>(c);
        else if constexpr (k == kind::gather) gather_step<N>(c);
        else if constexpr (k == kind::scan || k == kind::scan_vjp || k == kind::scan_jvp) scan_step<N>(c);
        else if constexpr (k == kind::scatter_add) scatter_step<N>(c);
        else movement_step<N>(c);
    }

    // Unbatched steps that become computable before pass A (A = passes: after the last).
    template <std::size_t I, int A>
    static void maybe_unbatched(const context& c) {
        if constexpr (D.step[I] && !D.derived[I] && !D.rec[I].batched && !D.rec[I].reducer && D.avail[I] == A)
            run_step<I>(c);
    }
    // Derived parameters (steps that read only parameters), run when they change.
    template <std::size_t I>
    static void maybe_derived(const context& c) {
        if constexpr (D.derived[I]) run_step<I>(c);
    }
    static void run_derived(const context& c) {
        [&]<std::size_t... I>(std::index_sequence<I...>) { (maybe_derived<I>(c), ...); }(std::make_index_sequence<n>{});
    }
    template <int A>
    static void run_unbatched(const context& c) {
        [&]<std::size_t... I>(std::index_sequence<I...>) { (maybe_unbatched<I, A>(c), ...); }(std::make_index_sequence<n>{});
    }
    // Tile steps of pass Q, in topological order (reducers accumulate).
    template <std::size_t I, int Q>
    static void maybe_tile(const context& c) {
        if constexpr (D.step[I] && Q < max_passes && D.needed[Q < max_passes ? Q : 0][I]) run_step<I>(c);
    }
    template <int Q>
    static void run_pass(const context& c) {
        [&]<std::size_t... I>(std::index_sequence<I...>) { (maybe_tile<I, Q>(c), ...); }(std::make_index_sequence<n>{});
    }
};

} // namespace ctrec::cpu
