#pragma once
// The compile-time pass pipeline that turns a set of root expressions into an
// execution plan. Each pass is a constexpr function over a flat array of node
// records (never a recursive template), in this order:
//   1. graph:      topological node list with CSE by type identity (graph.hpp)
//   2. records:    kind, shape, batchedness, operands, roots
//   3. staging:    batch passes. Pass 0 computes what needs no sum over the
//                  batch; a reducer (unbatched value summed over the batch,
//                  e.g. a parameter gradient or a batch statistic) accumulates
//                  during a pass and can be read from the next pass on; batched
//                  values are recomputed in later passes where needed (never
//                  stored for the whole batch). Unbatched values that depend on
//                  no batched one are computed once, before pass 0 (hoisting).
//   4. fusion:     elementwise nodes used once by an elementwise/reduction
//                  consumer are inlined into its loop; a contraction used once
//                  by an elementwise tree becomes that tree's GEMM epilogue
//   5. derived:    steps that read only parameters (an effective kernel, a
//                  hoisted transpose) are cached with the parameters and rerun
//                  only when they change (parameters::prepare)
//   6. buffers:    liveness-based offsets in one workspace (tile region shared
//                  between dead buffers; unbatched values persistent); derived
//                  values in the parameters' derived block
// Later rewrites (concat-split, hoisting, contraction ordering) are passes that
// run on the expression before step 1 and need no change to the evaluators.
#include <algorithm>
#include <array>
#include <cstddef>
#include <string>

#include "ctrec/core/contract_plan.hpp"
#include "ctrec/core/graph.hpp"

namespace ctrec {

struct node_record {
    kind k = kind::zero;
    dims shape;
    bool batched = false;
    bool reducer = false;     // unbatched result summed over the batch
    bool gemm_fusable = false;  // contraction whose GEMM can take an epilogue
    std::size_t nops = 0;
    std::size_t ops[16] = {};
    int root = -1;            // index among the roots, or -1
};

template <class N, class Nodes>
constexpr node_record make_record() {
    node_record r;
    r.k = N::node_kind;
    r.shape = N::shape;
    r.batched = N::batched;
    r.reducer = reduces_batch<N>();
    [&]<class... O>(tlist<O...>) {
        static_assert(sizeof...(O) <= 16, "ctrec: at most 16 operands per node");
        ((r.ops[r.nops++] = tl_index_v<O, Nodes>), ...);
    }(typename N::operands{});
    if constexpr (N::node_kind == kind::contract) {
        constexpr contract_plan p = contract_plan_of<N>;
        r.gemm_fusable = p.n_outer == 0 && !p.reduces_batch;
    }
    return r;
}

// Passes over the batch a plan may need: each level of batch statistics (a BatchNorm's
// mean, then its variance) and each backward sum through them adds one; a training MLP
// with BN on the input and on two hidden layers needs about ten.
inline constexpr int max_passes = 16;

template <std::size_t N>
struct plan_data {
    node_record rec[N ? N : 1];
    std::size_t uses[N ? N : 1] = {};
    bool inlined[N ? N : 1] = {};    // evaluated inside its consumer's loop
    int fused_contraction[N ? N : 1] = {};  // for a map step: the contraction in its epilogue, or -1
    bool epilogue[N ? N : 1] = {};   // a contraction fused into a consumer's epilogue
    int absorber[N ? N : 1] = {};    // step that evaluates this node (itself when it is a step)
    bool alias[N ? N : 1] = {};      // reshape / stop_gradient: same buffer as the operand
    bool step[N ? N : 1] = {};       // has a compute step (incl. root copies)
    int pass[N ? N : 1] = {};        // batched: pass computing it first; reducer: pass accumulating it
    int avail[N ? N : 1] = {};       // first pass that may read the value (unbatched nodes)
    bool needed[max_passes][N ? N : 1] = {};  // tile step runs in pass q
    int passes = 1;
    std::size_t last_use[N ? N : 1] = {};
    std::ptrdiff_t offset[N ? N : 1] = {};  // -1: not in the workspace
    std::size_t tile_elems = 0;      // per-example elements of the tile region
    std::size_t persistent = 0;      // elements of the unbatched region
    bool param_only[N ? N : 1] = {}; // depends on parameters and constants only
    bool derived[N ? N : 1] = {};    // a param-only step: cached with the parameters
    std::size_t derived_elems = 0;   // elements of the derived-parameter region
    bool too_many_passes = false;
};

namespace detail {
constexpr bool is_leafish(kind k) {
    return k == kind::input || k == kind::param || k == kind::index_input || k == kind::constant || k == kind::zero ||
           k == kind::batch_size || k == kind::random;
}
constexpr std::size_t align16(std::size_t x) { return (x + 15) / 16 * 16; }

template <std::size_t N>
constexpr plan_data<N> analyse(const std::array<node_record, N>& recs) {
    plan_data<N> p;
    for (std::size_t i = 0; i < N; ++i) {
        p.rec[i] = recs[i];
        p.fused_contraction[i] = -1;
        p.absorber[i] = static_cast<int>(i);
        p.offset[i] = -1;
    }
    // uses
    for (std::size_t i = 0; i < N; ++i)
        for (std::size_t j = 0; j < p.rec[i].nops; ++j) {
            std::size_t o = p.rec[i].ops[j];
            ++p.uses[o];
        }
    for (std::size_t i = 0; i < N; ++i)
        if (p.rec[i].root >= 0) ++p.uses[i];
    // staging: passes over the batch
    for (std::size_t i = 0; i < N; ++i) {
        const auto& r = p.rec[i];
        int q = 0;
        for (std::size_t j = 0; j < r.nops; ++j) {
            std::size_t o = r.ops[j];
            q = std::max(q, p.rec[o].batched ? p.pass[o] : p.avail[o]);
        }
        p.pass[i] = q;
        p.avail[i] = r.reducer ? q + 1 : r.batched ? q : q;
        if ((r.batched || r.reducer) && q + 1 > p.passes) p.passes = q + 1;
        p.alias[i] = r.k == kind::reshape || r.k == kind::stop_gradient;
    }
    if (p.passes > max_passes) p.too_many_passes = true;
    for (int q = 0; q < p.passes && q < max_passes; ++q)
        for (std::size_t i = N; i-- > 0;) {
            const auto& r = p.rec[i];
            if (!r.batched && !r.reducer) continue;
            bool need = r.reducer ? p.pass[i] == q : (r.root >= 0 && p.pass[i] == q);
            if (!r.reducer && p.pass[i] <= q)
                for (std::size_t c = i + 1; c < N && !need; ++c)
                    for (std::size_t j = 0; j < p.rec[c].nops; ++j)
                        if (p.rec[c].ops[j] == i && p.needed[q][c]) need = true;
            p.needed[q][i] = need;
        }
    // fusion: an elementwise node joins its consumers' loop when every consumer
    // is evaluated by the same step (an elementwise node of its shape, or a
    // reduction / batch sum of it). Visiting consumers first (descending order)
    // lets whole DAGs of elementwise work, shared values included, join one loop,
    // where each value is computed once per element.
    auto joins = [&](std::size_t i, std::size_t c) {
        const auto& r = p.rec[i];
        const auto& k = p.rec[c];
        return (k.k == kind::map && k.shape == r.shape && k.batched == r.batched) ||
               (k.k == kind::reduce && k.batched == r.batched) || (k.k == kind::batch_sum && r.batched);
    };
    for (std::size_t i = N; i-- > 0;) {
        const auto& r = p.rec[i];
        if (r.k != kind::map || r.root >= 0 || p.uses[i] == 0) continue;
        int step = -1;
        bool ok = true;
        for (std::size_t c = i + 1; c < N && ok; ++c)
            for (std::size_t j = 0; j < p.rec[c].nops && ok; ++j)
                if (p.rec[c].ops[j] == i) {
                    ok = joins(i, c) && (step < 0 || step == p.absorber[c]);
                    step = p.absorber[c];
                }
        if (ok && step >= 0) {
            p.inlined[i] = true;
            p.absorber[i] = step;
        }
    }
    // contraction epilogues: a contraction read only by one elementwise step of its shape
    for (std::size_t i = 0; i < N; ++i) {
        const auto& r = p.rec[i];
        if (r.k != kind::contract || !r.gemm_fusable || r.root >= 0 || p.uses[i] == 0) continue;
        int step = -1;
        bool ok = true;
        for (std::size_t c = i + 1; c < N && ok; ++c)
            for (std::size_t j = 0; j < p.rec[c].nops && ok; ++j)
                if (p.rec[c].ops[j] == i) {
                    ok = p.rec[c].k == kind::map && (step < 0 || step == p.absorber[c]);
                    step = p.absorber[c];
                }
        if (!ok || step < 0) continue;
        std::size_t s = static_cast<std::size_t>(step);
        if (p.rec[s].k != kind::map || p.fused_contraction[s] >= 0) continue;
        if (!(p.rec[s].shape == r.shape) || p.rec[s].batched != r.batched) continue;
        p.fused_contraction[s] = static_cast<int>(i);
        p.epilogue[i] = true;
        p.absorber[i] = static_cast<int>(s);
    }
    for (std::size_t i = 0; i < N; ++i) {
        const auto& r = p.rec[i];
        bool computed = !is_leafish(r.k) && !p.alias[i] && !p.inlined[i] && !p.epilogue[i];
        p.step[i] = computed || r.root >= 0;
    }
    // derived parameters: steps that read only parameters and constants (an effective
    // kernel, a hoisted transpose) depend on no call, so they are computed when the
    // parameters change (parameters::prepare) and kept next to them, not once per call.
    for (std::size_t i = 0; i < N; ++i) {
        const auto& r = p.rec[i];
        if (r.k == kind::param || r.k == kind::constant || r.k == kind::zero) {
            p.param_only[i] = true;
            continue;
        }
        if (is_leafish(r.k) || r.batched || r.reducer) continue;
        bool only = true;
        for (std::size_t j = 0; j < r.nops; ++j) only = only && p.param_only[r.ops[j]];
        p.param_only[i] = only;
        p.derived[i] = only && p.step[i] && r.root < 0 && !p.alias[i];
    }
    // liveness (time = node index of the reading step; aliases forward their readers)
    for (std::size_t i = N; i-- > 0;) {
        std::size_t last = i;
        for (std::size_t c = i + 1; c < N; ++c)
            for (std::size_t j = 0; j < p.rec[c].nops; ++j)
                if (p.rec[c].ops[j] == i) {
                    std::size_t t = p.alias[c] ? p.last_use[c] : static_cast<std::size_t>(p.absorber[c]);
                    if (t > last) last = t;
                }
        p.last_use[i] = last;
    }
    // buffers: roots write to the caller's outputs; the rest get workspace
    std::size_t live_off[N ? N : 1] = {}, live_end[N ? N : 1] = {}, live_size[N ? N : 1] = {};
    std::size_t nlive = 0;
    for (std::size_t i = 0; i < N; ++i) {
        const auto& r = p.rec[i];
        bool needs = !is_leafish(r.k) && !p.alias[i] && !p.inlined[i] && !p.epilogue[i] && r.root < 0;
        if (!needs) continue;
        std::size_t sz = align16(r.shape.size());
        if (p.derived[i]) {
            p.offset[i] = static_cast<std::ptrdiff_t>(p.derived_elems);
            p.derived_elems += sz;
            continue;
        }
        if (!r.batched) {
            p.offset[i] = static_cast<std::ptrdiff_t>(p.persistent);
            p.persistent += sz;
            continue;
        }
        // first fit among buffers still live at time i
        std::size_t off = 0;
        for (bool moved = true; moved;) {
            moved = false;
            for (std::size_t j = 0; j < nlive; ++j)
                if (live_end[j] >= i && off < live_off[j] + live_size[j] && live_off[j] < off + sz) {
                    off = live_off[j] + live_size[j];
                    moved = true;
                }
        }
        live_off[nlive] = off, live_size[nlive] = sz, live_end[nlive] = p.last_use[i], ++nlive;
        p.offset[i] = static_cast<std::ptrdiff_t>(off);
        if (off + sz > p.tile_elems) p.tile_elems = off + sz;
    }
    return p;
}
} // namespace detail

template <class... Roots>
struct plan {
    using nodes = graph_t<Roots...>;
    using roots = tlist<Roots...>;
    static constexpr std::size_t size = nodes::size;
    template <class N> static constexpr std::size_t id = tl_index_v<N, nodes>;

    static constexpr std::array<node_record, size> records = []<class... N>(tlist<N...>) {
        std::array<node_record, size> a{make_record<N, nodes>()...};
        std::size_t r = 0;
        ((a[tl_index_v<Roots, nodes>].root = a[tl_index_v<Roots, nodes>].root < 0 ? static_cast<int>(r) : a[tl_index_v<Roots, nodes>].root, ++r), ...);
        return a;
    }(nodes{});
    static constexpr plan_data<size> data = detail::analyse(records);
    static_assert(!data.too_many_passes,
                  "ctrec: more than max_passes (16) nested sums over the batch (batch statistics of batch statistics)");

    template <class N> static constexpr bool inlined = data.inlined[id<N>];
    template <class N> static constexpr bool is_alias = data.alias[id<N>];
    template <class N> static constexpr int fused_contraction = data.fused_contraction[id<N>];
    template <class N> static constexpr bool derived = data.derived[id<N>];
    static constexpr std::size_t derived_steps = [] {
        std::size_t n = 0;
        for (std::size_t i = 0; i < size; ++i) n += data.derived[i];
        return n;
    }();

    // ---- plan inspection -------------------------------------------------------------
    // Number of compute steps (each is one pass writing its output once).
    static constexpr std::size_t steps = [] {
        std::size_t n = 0;
        for (std::size_t i = 0; i < size; ++i) n += data.step[i];
        return n;
    }();
    // Nodes evaluated inside step s (the node itself, inlined nodes, a fused contraction).
    static constexpr std::size_t fused_into(std::size_t s) {
        std::size_t n = 0;
        for (std::size_t i = 0; i < size; ++i)
            if (static_cast<std::size_t>(data.absorber[i]) == s && !detail::is_leafish(data.rec[i].k) && !data.alias[i])
                ++n;
        return n;
    }
    static std::string describe() {
        std::string s;
        for (std::size_t i = 0; i < size; ++i) {
            if (!data.step[i]) continue;
            s += "step " + std::to_string(i) + ": " + std::string(kind_name(data.rec[i].k));
            if (data.fused_contraction[i] >= 0) s += " +contract-epilogue";
            s += " fuses " + std::to_string(fused_into(i)) + " node(s)";
            if (data.rec[i].batched || data.rec[i].reducer) {
                s += data.rec[i].reducer ? " [tile, accumulate, pass " : " [tile, pass";
                for (int q = 0; q < data.passes; ++q)
                    if (data.needed[q][i]) s += " " + std::to_string(q);
                s += "]";
            } else if (data.derived[i]) {
                s += " [derived: on parameter change]";
            } else {
                s += data.avail[i] == 0 ? " [pre]" : " [after pass " + std::to_string(data.avail[i] - 1) + "]";
            }
            if (data.rec[i].root >= 0) s += " -> output " + std::to_string(data.rec[i].root);
            s += "\n";
        }
        return s;
    }
};

} // namespace ctrec
