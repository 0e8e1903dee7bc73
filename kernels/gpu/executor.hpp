#pragma once
// Thrust backend: a program's plan (core/plan.hpp) run as per-example fused programs over the
// batch, on a CUDA device (nvcc) or on the CPU through Thrust's OMP or CPP device systems (g++
// with -DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP -fopenmp, or _CPP), so CI tests the same
// code without a GPU.
//
//   using G = ctrec::program<float, y>::with_backend<ctrec::thrust_backend>;
//
// Design.
// - The plan is the CPU backend's: the same steps, passes, elementwise fusion (a step's loop
//   evaluates its inlined nodes per element), contraction epilogues, derived parameters and
//   buffer offsets. What differs is who runs a step: here one thread runs, for one example, every
//   batched step of a pass segment in topological order (`segment_fn`, a plain functor run by
//   thrust::for_each over a counting_iterator of the chunk's examples). The step list is unrolled
//   at compile time from the constexpr plan (a fold over std::index_sequence, `if constexpr` on
//   the opcode): no interpreter, no std::vector, exceptions or virtual calls in device code.
// - Buffers: a chunk of up to `max_chunk` examples (compile time: the workspace budget over one
//   example's plan.tile_elems) has one device workspace, [persistent | tile region]. Element k of
//   a tile buffer at plan offset o for example b of the chunk sits at (o + k) * stride + b
//   (example-minor: neighbouring threads touch neighbouring addresses, coalesced on a GPU).
//   Inputs and outputs stay batch-major as bound by io. The workspace is the backend's, one per
//   host thread, grown to the largest chunk run so far; program::workspace is not used.
// - Values summed over the batch (batch_sum, contractions with keep_batch = false, kr_gram) end a
//   segment: a functor per output element sums its examples in order b = 0, 1, ... (chunks in
//   order; the first overwrites): deterministic, no atomics. Their operands' buffers are live
//   until the reducer's step (plan liveness), so later segments cannot overwrite them first.
// - Unbatched values that become available between passes (batch statistics, the batch size,
//   shared random draws, unbatched nodes computed from them) and the derived parameters
//   (prepare()) are computed by a one-thread functor with the same step code.
// - Contractions are per-example loop nests from the contract spec (one sum per output element);
//   attention, attention_vjp/jvp, kr_matmul/kr_matmul2/kr_dual and transpose are per-example loops
//   from the formulas in kernels/reference/executor.hpp (attention one query row at a time, no
//   N x N buffer). Correctness first: shared-memory tiling for CUDA is the next step.
// - Random leaves draw core/random.hpp's numbers (gpu::random_value, device-callable).
// - Errors: the per-example plan must fit the workspace budget (thrown as ctrec::error before
//   anything runs, on every device system); under CUDA also no device, out of device memory,
//   kernel arguments above the launch limit, and device errors, each with its reason.
// - CUDA only (the `#if CTREC_THRUST_CUDA` parts, not yet run on a GPU): parameters are uploaded
//   by prepare() into a device copy keyed by the host parameters pointer (prepare() runs after
//   every change: program::parameters requires it), derived parameters computed there and copied
//   back; a run with parameters never prepared uploads them. Inputs and outputs in host memory
//   are staged through a device buffer; device (or managed) pointers are used as they are.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <thrust/copy.h>
#include <thrust/execution_policy.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include "ctrec/core/program.hpp"
#include "gpu/device.hpp"

#ifndef CTREC_THRUST_WORKSPACE_BYTES
#define CTREC_THRUST_WORKSPACE_BYTES (std::size_t(512) << 20)
#endif

namespace ctrec::gpu {

using ctrec::node;
using ctrec::opcode;

// Where a node's value is read from (views resolved to their operand first).
enum class home : std::uint8_t { none, param, input, root, derived, persistent, tile };
struct location {
    home where = home::none;
    std::size_t slot = 0;  // parameter offset, input or output index, or element offset
};

// A broadcast operand's flat index from the flat index of the output: only the axes the operand
// is not broadcast along, with their output strides and extents and operand strides.
struct bcast_map {
    std::size_t n = 0;
    std::size_t out_stride[max_rank]{}, extent[max_rank]{}, op_stride[max_rank]{};
};
constexpr bcast_map make_bcast(dims op, dims out) {
    const auto s = bcast_strides(op, out);
    bcast_map m;
    for (std::size_t ax = 0; ax < out.rank; ++ax)
        if (s[ax] != 0 && out.d[ax] != 1)
            m.out_stride[m.n] = out.stride(ax), m.extent[m.n] = out.d[ax], m.op_stride[m.n++] = s[ax];
    return m;
}
template <dims Op, dims Out>
CTREC_HOST_DEVICE inline std::size_t bcast(std::size_t i) {
    if constexpr (Op == Out) {
        return i;
    } else if constexpr (Op.size() == 1) {
        return 0;
    } else {
        constexpr bcast_map m = make_bcast(Op, Out);
        std::size_t r = 0;
        for (std::size_t ax = 0; ax < m.n; ++ax) r += (i / m.out_stride[ax]) % m.extent[ax] * m.op_stride[ax];
        return r;
    }
}

// A reduction's output index from the operand's flat index k: sum over axes of
// (k / in[ax]) % ext[ax] * out[ax], out[ax] = 0 for the reduced axes.
struct reduce_map {
    std::size_t in[max_rank]{}, ext[max_rank]{}, out[max_rank]{};
};
constexpr reduce_map make_reduce_map(dims as, unsigned mask) {
    reduce_map s;
    std::size_t o = 1;
    for (std::size_t ax = as.rank; ax-- > 0;) {
        s.in[ax] = as.stride(ax), s.ext[ax] = as.d[ax];
        if (!(mask >> ax & 1u)) s.out[ax] = o, o *= as.d[ax];
    }
    return s;
}

// The loops of an einsum "a,b->c" for one example: output axes (with their strides in c, a and b)
// and summed letters (in a and b, not in c), each summed letter's strides in a and b.
struct einsum_loops {
    std::size_t no = 0, nk = 0, out_size = 1, sum_size = 1;
    std::size_t oext[max_rank]{}, ostr[max_rank]{}, oa[max_rank]{}, ob[max_rank]{};
    std::size_t kext[max_rank]{}, ka[max_rank]{}, kb[max_rank]{};
};
constexpr einsum_loops make_einsum(const contract_spec& s, dims as, dims bs, dims cs) {
    einsum_loops e;
    auto find = [](const char* l, std::size_t n, char ch) {
        for (std::size_t i = 0; i < n; ++i)
            if (l[i] == ch) return static_cast<int>(i);
        return -1;
    };
    for (std::size_t i = 0; i < s.rc; ++i) {
        const int ja = find(s.a, s.ra, s.c[i]), jb = find(s.b, s.rb, s.c[i]);
        e.oext[e.no] = cs.d[i], e.ostr[e.no] = cs.stride(i);
        e.oa[e.no] = ja >= 0 ? as.stride(static_cast<std::size_t>(ja)) : 0;
        e.ob[e.no++] = jb >= 0 ? bs.stride(static_cast<std::size_t>(jb)) : 0;
        e.out_size *= cs.d[i];
    }
    for (std::size_t i = 0; i < s.ra; ++i) {
        if (find(s.c, s.rc, s.a[i]) >= 0) continue;
        const int jb = find(s.b, s.rb, s.a[i]);  // contract_ok: a letter of a alone is in c
        e.kext[e.nk] = as.d[i], e.ka[e.nk] = as.stride(i), e.kb[e.nk++] = bs.stride(static_cast<std::size_t>(jb));
        e.sum_size *= as.d[i];
    }
    return e;
}

template <class P>
struct exec {
    using T = typename P::element_type;
    static constexpr const auto& tab = P::tab;
    static constexpr const auto& pl = P::pl;
    static constexpr std::size_t N = P::size;
    static constexpr std::size_t NI = P::n_inputs ? P::n_inputs : 1;
    static constexpr std::size_t NO = P::n_outputs ? P::n_outputs : 1;

    // The kernels' arguments (plain pointers: device pointers under CUDA).
    struct args {
        const T* params = nullptr;
        const T* derived = nullptr;
        T* persistent = nullptr;
        T* tile = nullptr;
        std::size_t stride = 1;  // examples per chunk (the tile layout's element stride)
        std::size_t b0 = 0;      // the chunk's first example in the call
        std::size_t nb = 0;      // examples in the chunk
        T batch = T(0);          // examples in the call
        std::uint64_t seed = 0;
        bool first = true;       // first chunk: reducers overwrite
        const T* in[NI] = {};
        T* out[NO] = {};
    };

    template <std::uint32_t I>
    static constexpr dims shape_of = tab.nodes[I].shape;
    template <std::uint32_t I>
    static constexpr std::size_t size_of = tab.nodes[I].shape.size();

    static constexpr std::uint32_t base_of(std::uint32_t i) {
        while (pl.alias[i]) i = tab.operand(i, 0);
        return i;
    }
    static constexpr location locate(std::uint32_t i) {
        const node& r = tab.nodes[i];
        location l;
        if (r.op == opcode::param) l = {home::param, P::parameters::offsets[P::param_slot(i)]};
        else if (r.op == opcode::input) l = {home::input, P::input_slot(i)};
        else if (pl.root[i] >= 0 && !ctrec::is_leaf(r.op)) l = {home::root, static_cast<std::size_t>(pl.root[i])};
        else if (pl.derived[i]) l = {home::derived, static_cast<std::size_t>(pl.offset[i])};
        else if (pl.offset[i] >= 0) l = {r.batched ? home::tile : home::persistent, static_cast<std::size_t>(pl.offset[i])};
        return l;
    }

    // Element k of node O's buffer for example b of the chunk.
    template <std::uint32_t O>
    CTREC_HOST_DEVICE static T* at(const args& a, std::size_t b, std::size_t k) {
        constexpr std::uint32_t B = base_of(O);
        constexpr location l = locate(B);
        constexpr bool batched = tab.nodes[B].batched;
        constexpr std::size_t n = size_of<B>;
        static_assert(l.where != home::none, "ctrec internal: a value read outside its step has no buffer");
        if constexpr (l.where == home::param) return const_cast<T*>(a.params) + l.slot + k;
        else if constexpr (l.where == home::input) return const_cast<T*>(a.in[l.slot]) + (batched ? (a.b0 + b) * n : 0) + k;
        else if constexpr (l.where == home::root) return a.out[l.slot] + (batched ? (a.b0 + b) * n : 0) + k;
        else if constexpr (l.where == home::derived) return const_cast<T*>(a.derived) + l.slot + k;
        else if constexpr (l.where == home::persistent) return a.persistent + l.slot + k;
        else return a.tile + (l.slot + k) * a.stride + b;
    }
    // Element k of node O for example b (constants, the batch size and random leaves have no buffer).
    template <std::uint32_t O>
    CTREC_HOST_DEVICE static T read(const args& a, std::size_t b, std::size_t k) {
        constexpr std::uint32_t B = base_of(O);
        constexpr opcode op = tab.nodes[B].op;
        if constexpr (op == opcode::constant) {
            constexpr double v = tab.nodes[B].value;
            return static_cast<T>(v);
        } else if constexpr (op == opcode::batch_size) {
            return a.batch;
        } else if constexpr (op == opcode::random) {
            // core/random.hpp: kind in axis, a fixed seed in value when begin == 1, one draw per
            // call (shared_example) when unbatched
            constexpr std::uint64_t h = ctrec::stream_hash(tab.name_of(B));
            constexpr random_kind kind = static_cast<random_kind>(tab.nodes[B].axis);
            constexpr bool fixed = tab.nodes[B].begin == 1;
            constexpr std::uint64_t fixed_seed = static_cast<std::uint64_t>(tab.nodes[B].value);
            constexpr bool batched = tab.nodes[B].batched;
            const std::uint64_t e = batched ? a.b0 + b : shared_example;
            return gpu::random_value<T>(kind, fixed ? fixed_seed : a.seed, h, e, k);
        } else {
            return *at<B>(a, b, k);
        }
    }

    // ---- fused elementwise loops (the CPU backend's `loops`) -----------------------------------
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
    template <std::uint32_t S>
    static constexpr int loop_pos(std::uint32_t o) {
        for (std::uint32_t k = loops.first[S]; k < loops.first[S + 1]; ++k)
            if (loops.ids[k] == o) return static_cast<int>(k - loops.first[S]);
        return -1;
    }
    // Operand J of loop node I of step S at flat index i: a loop value, the fused contraction's
    // value `acc` (C), or read with broadcasting.
    template <std::uint32_t I, std::uint32_t J, std::uint32_t S, int C>
    CTREC_HOST_DEVICE static T operand(const args& a, std::size_t b, std::size_t i, T acc, const T* v) {
        if constexpr (J >= tab.nodes[I].nops) {
            return T(0);
        } else {
            constexpr std::uint32_t O = tab.operand(I, J);
            constexpr int k = loop_pos<S>(O);
            if constexpr (k >= 0) return v[k];
            else if constexpr (static_cast<int>(O) == C) return acc;
            else return read<O>(a, b, bcast<shape_of<O>, shape_of<I>>(i));
        }
    }
    template <std::uint32_t I, std::uint32_t S, int C>
    CTREC_HOST_DEVICE static T eval_node(const args& a, std::size_t b, std::size_t i, T acc, const T* v) {
        return apply<tab.nodes[I].op, T>(operand<I, 0, S, C>(a, b, i, acc, v), operand<I, 1, S, C>(a, b, i, acc, v),
                                          operand<I, 2, S, C>(a, b, i, acc, v));
    }
    template <std::uint32_t S, int C, std::size_t... K>
    CTREC_HOST_DEVICE static void eval_all(const args& a, std::size_t b, std::size_t i, T acc, T* v, std::index_sequence<K...>) {
        ((v[K] = eval_node<loops.ids[loops.first[S] + K], S, C>(a, b, i, acc, v)), ...);
    }
    // Every node of step S's loop at (b, i), each once; the last is the loop's value.
    template <std::uint32_t S, int C>
    CTREC_HOST_DEVICE static T joined(const args& a, std::size_t b, std::size_t i, T acc) {
        constexpr std::size_t n = loops.first[S + 1] - loops.first[S];
        T v[n];
        eval_all<S, C>(a, b, i, acc, v, std::make_index_sequence<n>{});
        return v[n - 1];
    }
    // Operand A of a reduction step S: its loop's value when inlined, else read.
    template <std::uint32_t S, std::uint32_t A>
    CTREC_HOST_DEVICE static T tree(const args& a, std::size_t b, std::size_t i) {
        if constexpr (pl.inlined[A]) return joined<S, -1>(a, b, i, T(0));
        else return read<A>(a, b, i);
    }

    template <std::uint32_t I>
    CTREC_HOST_DEVICE static void map_step(const args& a, std::size_t b) {
        constexpr int fc = pl.fused_contraction[I];
        if constexpr (fc >= 0) contract_into<static_cast<std::uint32_t>(fc), I>(a, b);
        for (std::size_t k = 0; k < size_of<I>; ++k) {
            T* d = at<I>(a, b, k);
            *d = joined<I, fc>(a, b, k, fc >= 0 ? *d : T(0));
        }
    }

    // ---- contractions ----------------------------------------------------------------------------
    template <std::uint32_t Cn>
    static constexpr einsum_loops loops_of = make_einsum(tab.nodes[Cn].spec, shape_of<tab.operand(Cn, 0)>,
                                                         shape_of<tab.operand(Cn, 1)>, shape_of<Cn>);
    // Offsets of output element o in a and b.
    template <std::uint32_t Cn>
    CTREC_HOST_DEVICE static void output_offsets(std::size_t o, std::size_t& ao, std::size_t& bo) {
        constexpr einsum_loops e = loops_of<Cn>;
        ao = 0, bo = 0;
        for (std::size_t ax = 0; ax < e.no; ++ax) {
            const std::size_t x = (o / e.ostr[ax]) % e.oext[ax];
            ao += x * e.oa[ax], bo += x * e.ob[ax];
        }
    }
    // Sum over the summed letters for example b, from offsets ao, bo.
    template <std::uint32_t Cn>
    CTREC_HOST_DEVICE static T contract_sum(const args& a, std::size_t b, std::size_t ao, std::size_t bo) {
        constexpr einsum_loops e = loops_of<Cn>;
        constexpr std::uint32_t A = tab.operand(Cn, 0), B = tab.operand(Cn, 1);
        T s = T(0);
        if constexpr (e.nk == 1) {
            for (std::size_t kk = 0; kk < e.sum_size; ++kk) s += read<A>(a, b, ao + kk * e.ka[0]) * read<B>(a, b, bo + kk * e.kb[0]);
        } else {
            for (std::size_t kk = 0; kk < e.sum_size; ++kk) {
                std::size_t ak = ao, bk = bo, rem = kk;
                for (std::size_t ax = e.nk; ax-- > 0;) {
                    const std::size_t x = rem % e.kext[ax];
                    rem /= e.kext[ax];
                    ak += x * e.ka[ax], bk += x * e.kb[ax];
                }
                s += read<A>(a, b, ak) * read<B>(a, b, bk);
            }
        }
        return s;
    }
    // Contraction Cn of example b into the buffer of node D (Cn itself, or the step it is fused into).
    template <std::uint32_t Cn, std::uint32_t D>
    CTREC_HOST_DEVICE static void contract_into(const args& a, std::size_t b) {
        for (std::size_t o = 0; o < size_of<Cn>; ++o) {
            std::size_t ao, bo;
            output_offsets<Cn>(o, ao, bo);
            *at<D>(a, b, o) = contract_sum<Cn>(a, b, ao, bo);
        }
    }

    // ---- reductions over per-example axes --------------------------------------------------------
    template <std::uint32_t I>
    CTREC_HOST_DEVICE static void reduce_step(const args& a, std::size_t b) {
        constexpr std::uint32_t A = tab.operand(I, 0);
        constexpr dims as = shape_of<A>;
        constexpr bool is_max = tab.nodes[I].op == opcode::reduce_max;
        constexpr reduce_map st = make_reduce_map(as, tab.nodes[I].mask);
        for (std::size_t o = 0; o < size_of<I>; ++o) *at<I>(a, b, o) = is_max ? -T(INFINITY) : T(0);
        for (std::size_t k = 0; k < as.size(); ++k) {
            std::size_t o = 0;
            for (std::size_t ax = 0; ax < as.rank; ++ax) o += (k / st.in[ax]) % st.ext[ax] * st.out[ax];
            const T v = tree<I, A>(a, b, k);
            T* d = at<I>(a, b, o);
            if constexpr (is_max) *d = v > *d ? v : *d;
            else *d += v;
        }
    }

    // ---- data movement ---------------------------------------------------------------------------
    // Operand J of concat I starts at this index of the concatenated axis.
    static constexpr std::size_t part_start(std::uint32_t i, std::uint32_t j) {
        std::size_t at_ = 0;
        for (std::uint32_t k = 0; k < j; ++k) at_ += tab.nodes[tab.operand(i, k)].shape.d[tab.nodes[i].axis];
        return at_;
    }
    template <std::uint32_t I, std::uint32_t J>
    CTREC_HOST_DEVICE static void copy_part(const args& a, std::size_t b, std::size_t outer, std::size_t inner) {
        constexpr std::uint32_t O = tab.operand(I, J);
        constexpr std::size_t start = part_start(I, J), out_ax = shape_of<I>.d[tab.nodes[I].axis];
        const std::size_t len = size_of<O> / outer;
        for (std::size_t u = 0; u < outer; ++u)
            for (std::size_t j = 0; j < len; ++j) *at<I>(a, b, (u * out_ax + start) * inner + j) = read<O>(a, b, u * len + j);
    }
    template <std::uint32_t I, std::uint32_t... J>
    CTREC_HOST_DEVICE static void concat_parts(const args& a, std::size_t b, std::size_t outer, std::size_t inner,
                                               std::integer_sequence<std::uint32_t, J...>) {
        (copy_part<I, J>(a, b, outer, inner), ...);
    }
    template <std::uint32_t I>
    CTREC_HOST_DEVICE static void movement_step(const args& a, std::size_t b) {
        constexpr opcode op = tab.nodes[I].op;
        constexpr dims os = shape_of<I>;
        constexpr std::size_t ax = tab.nodes[I].axis, begin = tab.nodes[I].begin;
        constexpr std::size_t outer = os.size() / (os.d[ax] * os.stride(ax)), inner = os.stride(ax);
        if constexpr (op == opcode::concat) {
            concat_parts<I>(a, b, outer, inner, std::make_integer_sequence<std::uint32_t, tab.nodes[I].nops>{});
        } else {
            static_assert(op == opcode::slice || op == opcode::pad, "ctrec internal: an op without a thrust step");
            constexpr std::uint32_t A = tab.operand(I, 0);
            constexpr std::size_t in_ax = shape_of<A>.d[ax];
            for (std::size_t u = 0; u < outer; ++u)
                for (std::size_t x = 0; x < os.d[ax]; ++x)
                    for (std::size_t v = 0; v < inner; ++v) {
                        T* d = at<I>(a, b, (u * os.d[ax] + x) * inner + v);
                        if constexpr (op == opcode::slice) {
                            *d = read<A>(a, b, (u * in_ax + x + begin) * inner + v);
                        } else {
                            const bool in = x >= begin && x < begin + in_ax;
                            *d = in ? read<A>(a, b, (u * in_ax + x - begin) * inner + v) : T(0);
                        }
                    }
        }
    }
    // The last two axes swapped: out[u, j, i] = in[u, i, j].
    template <std::uint32_t I>
    CTREC_HOST_DEVICE static void transpose_step(const args& a, std::size_t b) {
        constexpr std::uint32_t A = tab.operand(I, 0);
        constexpr dims os = shape_of<I>;
        constexpr std::size_t R = os.d[os.rank - 1], C = os.d[os.rank - 2];
        for (std::size_t k = 0; k < size_of<I>; ++k) {
            const std::size_t u = k / (R * C), j = k / R % C, i = k % R;
            *at<I>(a, b, k) = read<A>(a, b, u * R * C + i * C + j);
        }
    }

    // ---- self-attention, one query row at a time (kernels/reference/executor.hpp's formulas) -----
    //   A = softmax over each row of x x^T; attention: O = A x
    //   vjp (c): D = A * (c x^T - rowsum(A * c x^T)); dx = D x + D^T x + A^T c
    //   jvp (t): D = A * (dS - rowsum(A * dS)), dS = t x^T + x t^T; dO = D x + A t
    template <std::uint32_t I>
    CTREC_HOST_DEVICE static void attention_step(const args& a, std::size_t b) {
        constexpr opcode op = tab.nodes[I].op;
        constexpr std::size_t n = shape_of<I>.d[0], k = shape_of<I>.d[1];
        constexpr std::uint32_t X = tab.operand(I, 0);
        constexpr std::uint32_t C = tab.nodes[I].nops > 2 ? tab.operand(I, 2) : X;
        T A[n], D[n];
        if constexpr (op == opcode::attention_vjp)
            for (std::size_t e = 0; e < n * k; ++e) *at<I>(a, b, e) = T(0);
        for (std::size_t i = 0; i < n; ++i) {
            T m = -T(INFINITY);
            for (std::size_t j = 0; j < n; ++j) {
                T s = T(0);
                for (std::size_t c = 0; c < k; ++c) s += read<X>(a, b, i * k + c) * read<X>(a, b, j * k + c);
                A[j] = s;
                m = s > m ? s : m;
            }
            T z = T(0);
            for (std::size_t j = 0; j < n; ++j) z += A[j] = dmath<T>::exp(A[j] - m);
            for (std::size_t j = 0; j < n; ++j) A[j] /= z;
            if constexpr (op == opcode::attention) {
                for (std::size_t c = 0; c < k; ++c) {
                    T o = T(0);
                    for (std::size_t j = 0; j < n; ++j) o += A[j] * read<X>(a, b, j * k + c);
                    *at<I>(a, b, i * k + c) = o;
                }
            } else {
                T rs = T(0);
                for (std::size_t j = 0; j < n; ++j) {
                    T d = T(0);
                    for (std::size_t c = 0; c < k; ++c) {
                        d += read<C>(a, b, i * k + c) * read<X>(a, b, j * k + c);
                        if constexpr (op == opcode::attention_jvp) d += read<X>(a, b, i * k + c) * read<C>(a, b, j * k + c);
                    }
                    D[j] = d;
                    rs += A[j] * d;
                }
                for (std::size_t j = 0; j < n; ++j) D[j] = A[j] * (D[j] - rs);
                if constexpr (op == opcode::attention_vjp) {
                    for (std::size_t j = 0; j < n; ++j)
                        for (std::size_t c = 0; c < k; ++c) {
                            *at<I>(a, b, i * k + c) += D[j] * read<X>(a, b, j * k + c);
                            *at<I>(a, b, j * k + c) += D[j] * read<X>(a, b, i * k + c) + A[j] * read<C>(a, b, i * k + c);
                        }
                } else {
                    for (std::size_t c = 0; c < k; ++c) {
                        T o = T(0);
                        for (std::size_t j = 0; j < n; ++j) o += D[j] * read<X>(a, b, j * k + c) + A[j] * read<C>(a, b, j * k + c);
                        *at<I>(a, b, i * k + c) = o;
                    }
                }
            }
        }
    }

    // ---- Khatri-Rao products (CIN): Z[r, a kb + m] = P[r, a] Q[r, m], never stored --------------
    //   kr_matmul (P, Q, W)          out[r, j] = sum_{a, m} Z[r, a kb + m] W[a kb + m, j]
    //   kr_matmul2 (P, Q, P2, Q2, W) the same with Z + P2 (*) Q2
    //   kr_dual (P, Q, W, G)         out[r, a] = sum_{m, j} Q[r, m] G[r, j] W[a kb + m, j],
    //                                out[r, ka + m] = sum_{a, j} P[r, a] G[r, j] W[a kb + m, j]
    //   kr_gram (P, Q, G)            a reducer: reduce_over_batch
    template <std::uint32_t I>
    CTREC_HOST_DEVICE static void kr_step(const args& a, std::size_t b) {
        constexpr opcode op = tab.nodes[I].op;
        constexpr std::uint32_t Pn = tab.operand(I, 0), Qn = tab.operand(I, 1);
        constexpr std::size_t R = shape_of<Pn>.d[0], ka = shape_of<Pn>.d[1], kb = shape_of<Qn>.d[1];
        if constexpr (op == opcode::kr_dual) {
            constexpr std::uint32_t W = tab.operand(I, 2), G = tab.operand(I, 3);
            constexpr std::size_t J = shape_of<G>.d[1];
            for (std::size_t r = 0; r < R; ++r) {
                for (std::size_t x = 0; x < ka; ++x) {
                    T s = T(0);
                    for (std::size_t m = 0; m < kb; ++m) {
                        T dz = T(0);
                        for (std::size_t j = 0; j < J; ++j) dz += read<G>(a, b, r * J + j) * read<W>(a, b, (x * kb + m) * J + j);
                        s += dz * read<Qn>(a, b, r * kb + m);
                    }
                    *at<I>(a, b, r * (ka + kb) + x) = s;
                }
                for (std::size_t m = 0; m < kb; ++m) {
                    T s = T(0);
                    for (std::size_t x = 0; x < ka; ++x) {
                        T dz = T(0);
                        for (std::size_t j = 0; j < J; ++j) dz += read<G>(a, b, r * J + j) * read<W>(a, b, (x * kb + m) * J + j);
                        s += dz * read<Pn>(a, b, r * ka + x);
                    }
                    *at<I>(a, b, r * (ka + kb) + ka + m) = s;
                }
            }
        } else {
            constexpr bool two = op == opcode::kr_matmul2;
            constexpr std::uint32_t W = tab.operand(I, two ? 4 : 2);
            constexpr std::uint32_t P2 = tab.operand(I, two ? 2 : 0), Q2 = tab.operand(I, two ? 3 : 1);
            constexpr std::size_t J = shape_of<I>.d[1];
            for (std::size_t r = 0; r < R; ++r)
                for (std::size_t j = 0; j < J; ++j) {
                    T s = T(0);
                    for (std::size_t x = 0; x < ka; ++x)
                        for (std::size_t m = 0; m < kb; ++m) {
                            T z = read<Pn>(a, b, r * ka + x) * read<Qn>(a, b, r * kb + m);
                            if constexpr (two) z += read<P2>(a, b, r * ka + x) * read<Q2>(a, b, r * kb + m);
                            s += z * read<W>(a, b, (x * kb + m) * J + j);
                        }
                    *at<I>(a, b, r * J + j) = s;
                }
        }
    }

    // A root no step computes (a leaf, a view, a constant): copied into its output.
    template <std::uint32_t I>
    CTREC_HOST_DEVICE static void copy_root(const args& a, std::size_t b) {
        constexpr std::size_t r = static_cast<std::size_t>(pl.root[I]);
        constexpr bool batched = tab.nodes[I].batched;
        for (std::size_t k = 0; k < size_of<I>; ++k) a.out[r][(batched ? (a.b0 + b) * size_of<I> : 0) + k] = read<I>(a, b, k);
    }

    // Step I for example b (b = 0 for an unbatched step). Not inlined on the host: a step runs in
    // several passes (recomputation), and one copy of each compiles faster.
    template <std::uint32_t I>
    CTREC_HOST_NOINLINE CTREC_HOST_DEVICE static void step(const args& a, std::size_t b) {
        constexpr opcode op = tab.nodes[I].op;
        if constexpr (ctrec::is_leaf(op) || pl.alias[I]) copy_root<I>(a, b);
        else if constexpr (ctrec::is_elementwise(op)) map_step<I>(a, b);
        else if constexpr (op == opcode::contract) contract_into<I, I>(a, b);
        else if constexpr (op == opcode::reduce_sum || op == opcode::reduce_max) reduce_step<I>(a, b);
        else if constexpr (op == opcode::attention || op == opcode::attention_vjp || op == opcode::attention_jvp)
            attention_step<I>(a, b);
        else if constexpr (op == opcode::kr_matmul || op == opcode::kr_dual || op == opcode::kr_matmul2) kr_step<I>(a, b);
        else if constexpr (op == opcode::transpose) transpose_step<I>(a, b);
        else movement_step<I>(a, b);
    }

    // Element o of reducer I: the sum over the chunk's examples in order (plus the earlier chunks').
    template <std::uint32_t I>
    CTREC_HOST_DEVICE static void reduce_over_batch(const args& a, std::size_t o) {
        constexpr opcode op = tab.nodes[I].op;
        T* d = at<I>(a, 0, o);
        T acc = a.first ? T(0) : *d;
        if constexpr (op == opcode::batch_sum) {
            constexpr std::uint32_t A = tab.operand(I, 0);
            for (std::size_t b = 0; b < a.nb; ++b) acc += tree<I, A>(a, b, o);
        } else if constexpr (op == opcode::contract) {
            std::size_t ao, bo;
            output_offsets<I>(o, ao, bo);
            for (std::size_t b = 0; b < a.nb; ++b) acc += contract_sum<I>(a, b, ao, bo);
        } else {
            static_assert(op == opcode::kr_gram, "ctrec internal: an unknown reduction over the batch");
            constexpr std::uint32_t Pn = tab.operand(I, 0), Qn = tab.operand(I, 1), G = tab.operand(I, 2);
            constexpr std::size_t R = shape_of<Pn>.d[0], ka = shape_of<Pn>.d[1], kb = shape_of<Qn>.d[1], J = shape_of<I>.d[1];
            const std::size_t kap = o / J, j = o % J, x = kap / kb, m = kap % kb;
            for (std::size_t b = 0; b < a.nb; ++b)
                for (std::size_t r = 0; r < R; ++r)
                    acc += read<Pn>(a, b, r * ka + x) * read<Qn>(a, b, r * kb + m) * read<G>(a, b, r * J + j);
        }
        *d = acc;
    }

    // ---- phases (the CPU backend's): -1 - A = unbatched steps computable before pass A (A =
    // passes: after the last); Q >= 0 = the batched and reducer steps of pass Q ------------------
    static constexpr int derived_phase = 1 << 20;
    static constexpr bool in_phase(std::size_t i, int phase) {
        if (phase == derived_phase) return pl.derived[i];
        if (!pl.step[i] || pl.derived[i]) return false;
        const bool tiled = tab.nodes[i].batched || pl.reducer[i];
        if (phase >= 0) return tiled && (pl.needed[i] >> phase & 1u);
        return !tiled && pl.avail[i] == -1 - phase;
    }
    static constexpr std::size_t count_steps(int phase) {
        std::size_t n = 0;
        for (std::size_t i = 0; i < N; ++i) n += in_phase(i, phase);
        return n;
    }
    // A phase's steps, split into segments: a run of per-example steps, or one reducer.
    template <int Phase>
    struct phase_info {
        static constexpr std::size_t count = count_steps(Phase);
        struct table {
            std::uint32_t steps[count + 1]{};
            std::size_t n_segments = 0;
            std::size_t first[count + 2]{};
            bool reducer[count + 1]{};
        };
        static constexpr table t = [] {
            table r{};
            std::size_t k = 0;
            for (std::size_t i = 0; i < N; ++i)
                if (in_phase(i, Phase)) r.steps[k++] = static_cast<std::uint32_t>(i);
            for (std::size_t s = 0; s < count; ++s) {
                const bool red = pl.reducer[r.steps[s]];
                if (s == 0 || red || r.reducer[r.n_segments - 1]) {
                    r.first[r.n_segments] = s;
                    r.reducer[r.n_segments++] = red;
                }
            }
            r.first[r.n_segments] = count;
            return r;
        }();
    };

    template <int Phase, std::size_t F, std::size_t... K>
    CTREC_HOST_DEVICE static void run_steps(const args& a, std::size_t b, std::index_sequence<K...>) {
        (step<phase_info<Phase>::t.steps[F + K]>(a, b), ...);
    }
    // Segment S of a phase for example b: its steps in topological order.
    template <int Phase, std::size_t S>
    struct segment_fn {
        args a;
        CTREC_HOST_DEVICE void operator()(std::size_t b) const {
            using info = phase_info<Phase>;
            run_steps<Phase, info::t.first[S]>(a, b, std::make_index_sequence<info::t.first[S + 1] - info::t.first[S]>{});
        }
    };
    template <std::uint32_t I>
    struct reducer_fn {
        args a;
        CTREC_HOST_DEVICE void operator()(std::size_t o) const { reduce_over_batch<I>(a, o); }
    };

    template <class F>
    static void launch(std::size_t n, const F& f) {
        if (n == 0) return;
        thrust::for_each(thrust::device, thrust::counting_iterator<std::size_t>(0), thrust::counting_iterator<std::size_t>(n), f);
    }
    template <int Phase, std::size_t S>
    static void run_segment(const args& a) {
        constexpr auto& t = phase_info<Phase>::t;
        if constexpr (t.reducer[S]) {
            constexpr std::uint32_t I = t.steps[t.first[S]];
            launch(size_of<I>, reducer_fn<I>{a});
        } else {
            launch(Phase >= 0 && Phase != derived_phase ? a.nb : 1, segment_fn<Phase, S>{a});
        }
    }
    template <int Phase, std::size_t... S>
    static void run_segments(const args& a, std::index_sequence<S...>) {
        (run_segment<Phase, S>(a), ...);
    }
    template <int Phase>
    static void run_phase(const args& a) {
        run_segments<Phase>(a, std::make_index_sequence<phase_info<Phase>::t.n_segments>{});
    }
    // Pass Q over the batch, chunk by chunk (an empty batch once: its reducers are zero).
    template <int Q>
    static void run_pass(args a, std::size_t batch) {
        std::size_t b0 = 0;
        do {
            a.b0 = b0;
            a.nb = batch - b0 < a.stride ? batch - b0 : a.stride;
            a.first = b0 == 0;
            run_phase<Q>(a);
            b0 += a.stride;
        } while (b0 < batch);
    }
    template <int... Q>
    static void run_passes(const args& a, std::size_t batch, std::integer_sequence<int, Q...>) {
        ((run_phase<-1 - Q>(a), run_pass<Q>(a, batch)), ...);
        run_phase<-1 - pl.passes>(a);
    }

    // Examples per chunk: the workspace budget over one example's tile region.
    template <std::size_t Budget>
    static constexpr std::size_t max_chunk = [] {
        const std::size_t e = pl.tile_elems * sizeof(T);
        const std::size_t room = Budget > pl.persistent * sizeof(T) ? Budget - pl.persistent * sizeof(T) : 0;
        std::size_t c = e ? room / e : 65536;
        return c > 65536 ? std::size_t(65536) : c;
    }();
};

// ---- host side -------------------------------------------------------------------------------------
// The calling thread's device workspace, shared by every program that thread runs.
inline device_bytes& thread_workspace() {
    thread_local device_bytes ws;
    return ws;
}

#if CTREC_THRUST_CUDA
// ---- CUDA only (untested here: no GPU in CI) -------------------------------------------------------
inline void cuda_check(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return;
    cudaGetLastError();
    if (e == cudaErrorMemoryAllocation)
        throw error(std::string("ctrec thrust backend: out of device memory (") + what + ")");
    throw error(std::string("ctrec thrust backend: ") + what + ": " + cudaGetErrorString(e));
}
inline void require_device() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        throw error(std::string("ctrec thrust backend: no CUDA device (") +
                    (e != cudaSuccess ? cudaGetErrorString(e) : "none found") + ")");
    }
}
inline bool on_device(const void* p) {
    cudaPointerAttributes at{};
    if (cudaPointerGetAttributes(&at, p) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return at.type == cudaMemoryTypeDevice || at.type == cudaMemoryTypeManaged;
}
// Device copies of one program's parameter objects, keyed by the host parameters pointer: the
// parameters and the derived block. Kept until the process ends (one per parameters object).
template <class T>
struct parameter_mirror {
    const void* key = nullptr;
    device_bytes params, derived;
};
template <class P>
struct mirrors {
    using T = typename P::element_type;
    std::mutex m;
    std::vector<std::unique_ptr<parameter_mirror<T>>> list;
    static mirrors& get() {
        static mirrors s;
        return s;
    }
    // The mirror of host parameters p, uploading them when `upload` or when new.
    parameter_mirror<T>& of(const T* p, bool upload) {
        std::lock_guard<std::mutex> lock(m);
        parameter_mirror<T>* found = nullptr;
        for (auto& x : list)
            if (x->key == p) found = x.get();
        if (!found) {
            list.push_back(std::make_unique<parameter_mirror<T>>());
            found = list.back().get();
            found->key = p;
            upload = true;
        }
        constexpr std::size_t np = P::parameters::offsets[P::n_params], nd = P::pl.derived_elems;
        found->params.reserve((np ? np : 1) * sizeof(T), "the parameters");
        found->derived.reserve((nd ? nd : 1) * sizeof(T), "the derived parameters");
        if (upload && np) cuda_check(cudaMemcpy(found->params.get(), p, np * sizeof(T), cudaMemcpyHostToDevice), "uploading the parameters");
        return *found;
    }
};
#endif

} // namespace ctrec::gpu

namespace ctrec {

// The backend class: program<T, y>::with_backend<basic_thrust_backend<Bytes>> (thrust_backend:
// the default budget). WorkspaceBytes bounds one chunk's device workspace; a model whose single
// example does not fit is refused with ctrec::error.
template <std::size_t WorkspaceBytes = CTREC_THRUST_WORKSPACE_BYTES>
struct basic_thrust_backend {
    template <class P>
    static constexpr std::size_t max_chunk = gpu::exec<P>::template max_chunk<WorkspaceBytes>;

    template <class P, class T>
    static void check_fits() {
        if constexpr (max_chunk<P> == 0)
            throw error("ctrec thrust backend: model too large for the per-example kernel: one example needs " +
                        std::to_string(P::pl.tile_elems * sizeof(T)) + " bytes of workspace and the unbatched values " +
                        std::to_string(P::pl.persistent * sizeof(T)) + ", above the budget of " +
                        std::to_string(WorkspaceBytes) + " bytes (basic_thrust_backend<Bytes>, CTREC_THRUST_WORKSPACE_BYTES)");
#if CTREC_THRUST_CUDA
        gpu::require_device();
        constexpr std::size_t arg_limit = CUDART_VERSION >= 12010 ? 32764 : 4096;
        if constexpr (sizeof(typename gpu::exec<P>::args) > arg_limit)
            throw error("ctrec thrust backend: model too large for the per-example kernel: its " +
                        std::to_string(P::n_inputs) + " inputs and " + std::to_string(P::n_outputs) +
                        " outputs exceed the kernel argument limit of " + std::to_string(arg_limit) + " bytes");
#endif
    }

    // Computes the derived parameters (under CUDA: on the device, after uploading the parameters).
    template <class P, class T>
    static void prepare(const T* params, T* derived) {
        using E = gpu::exec<P>;
        check_fits<P, T>();
        typename E::args a{};
#if CTREC_THRUST_CUDA
        auto& mirror = gpu::mirrors<P>::get().of(params, true);
        a.params = reinterpret_cast<const T*>(mirror.params.get());
        a.derived = reinterpret_cast<T*>(mirror.derived.get());
#else
        a.params = params;
        a.derived = derived;
#endif
        if constexpr (P::pl.derived_steps > 0) {
            try {
                E::template run_phase<E::derived_phase>(a);
            } catch (const thrust::system_error& e) {
                throw error(std::string("ctrec thrust backend: device error: ") + e.what());
            }
#if CTREC_THRUST_CUDA
            gpu::cuda_check(cudaMemcpy(derived, a.derived, P::pl.derived_elems * sizeof(T), cudaMemcpyDeviceToHost),
                            "downloading the derived parameters");
#endif
        }
    }

    // The program's run (program.hpp): `ws` (the CPU workspace) is not used, the backend keeps its own.
    template <class P, class T>
    static void run(const T* params, const T* derived, T* /*ws*/, std::size_t batch, const T* const* in, T* const* out,
                    std::uint64_t seed) {
        using E = gpu::exec<P>;
        constexpr auto& pl = P::pl;
        constexpr auto& tab = P::tab;
        check_fits<P, T>();
        const std::size_t stride = batch == 0 ? 1 : batch < max_chunk<P> ? batch : max_chunk<P>;
        typename E::args a{};
        a.stride = stride;
        a.batch = static_cast<T>(batch);
        a.seed = seed;
        // one allocation: the workspace, then (CUDA) staging for host inputs and outputs
        const std::size_t ws_elems = pl.persistent + pl.tile_elems * stride;
        std::size_t total = ws_elems;
        std::size_t in_at[E::NI] = {}, out_at[E::NO] = {};
        bool stage_in[E::NI] = {}, stage_out[E::NO] = {};
        auto elems = [&](std::uint32_t i) { return tab.nodes[i].shape.size() * (tab.nodes[i].batched ? batch : 1); };
#if CTREC_THRUST_CUDA
        const auto& mirror = gpu::mirrors<P>::get().of(params, false);
        a.params = reinterpret_cast<const T*>(mirror.params.get());
        a.derived = reinterpret_cast<const T*>(mirror.derived.get());
        for (std::size_t i = 0; i < P::n_inputs; ++i)
            if ((stage_in[i] = !gpu::on_device(in[i]))) in_at[i] = total, total += (elems(P::input_ids[i]) + 15) / 16 * 16;
        for (std::size_t r = 0; r < P::n_outputs; ++r)
            if ((stage_out[r] = !gpu::on_device(out[r]))) out_at[r] = total, total += (elems(tab.roots[r]) + 15) / 16 * 16;
#else
        a.params = params;
        a.derived = derived;
#endif
        T* ws = reinterpret_cast<T*>(gpu::thread_workspace().reserve((total ? total : 1) * sizeof(T), "the workspace"));
        a.persistent = ws;
        a.tile = ws + pl.persistent;
        for (std::size_t i = 0; i < P::n_inputs; ++i) a.in[i] = stage_in[i] ? ws + in_at[i] : in[i];
        for (std::size_t r = 0; r < P::n_outputs; ++r) a.out[r] = stage_out[r] ? ws + out_at[r] : out[r];
#if CTREC_THRUST_CUDA
        for (std::size_t i = 0; i < P::n_inputs; ++i)
            if (stage_in[i] && elems(P::input_ids[i]))
                gpu::cuda_check(cudaMemcpy(const_cast<T*>(a.in[i]), in[i], elems(P::input_ids[i]) * sizeof(T), cudaMemcpyHostToDevice),
                                "uploading an input");
#endif
        try {
            E::run_passes(a, batch, std::make_integer_sequence<int, pl.passes>{});
            // a node that is several roots was written into the first; copy it to the others
            for (std::size_t r = 0; r < P::n_outputs; ++r) {
                const std::size_t first = static_cast<std::size_t>(pl.root[tab.roots[r]]);
                if (first != r && elems(tab.roots[r]))
                    thrust::copy_n(thrust::device, a.out[first], elems(tab.roots[r]), a.out[r]);
            }
        } catch (const thrust::system_error& e) {
            throw error(std::string("ctrec thrust backend: device error: ") + e.what());
        }
#if CTREC_THRUST_CUDA
        for (std::size_t r = 0; r < P::n_outputs; ++r)
            if (stage_out[r] && elems(tab.roots[r]))
                gpu::cuda_check(cudaMemcpy(out[r], a.out[r], elems(tab.roots[r]) * sizeof(T), cudaMemcpyDeviceToHost),
                                "downloading an output");
#else
        (void)in_at, (void)out_at;
#endif
    }
};

using thrust_backend = basic_thrust_backend<>;

} // namespace ctrec
