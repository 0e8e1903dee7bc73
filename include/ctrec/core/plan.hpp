#pragma once
// From expressions to an exact-size table and an execution plan, all constexpr.
//
//   model   the roots of a program in one graph: the user's roots (program), the root and the
//           gradient of every input and parameter (grad_program), or the root and its tangent
//           (jvp_program)
//   table   the nodes reachable from the roots, renumbered, in arrays of exactly their size: the
//           one constant a program keeps (a `static constexpr` member of the program class, so
//           every symbol of the executor is keyed by the short program name plus a step index)
//   plan    per node: whether it is a step, its batch pass, its buffer (liveness, first fit)
#include <algorithm>

#include "ctrec/core/contract_plan.hpp"
#include "ctrec/ad/autodiff.hpp"

namespace ctrec {

inline constexpr std::size_t max_roots = 1024;

void ctrec_error_too_many_roots();
void ctrec_error_two_leaves_share_a_name_with_different_shapes();
void ctrec_error_grad_program_needs_a_per_example_root_or_an_unbatched_scalar();

struct model_graph {
    graph g{};
    std::uint32_t n_roots = 0;
    std::uint32_t roots[max_roots]{};
    std::uint32_t edges = 0;  // reverse mode: edges visited
    std::uint32_t n_wrt = 0;  // grad_program: the leaves differentiated (roots 1..n_wrt)
    std::uint32_t wrt[max_roots]{};
    std::uint32_t n_updates = 0;  // train_program: roots 1 + n_wrt + u are the new values of the
    std::uint32_t targets[max_roots]{};  // state variables targets[u]
};

enum class model_kind { forward, grad, jvp, train };

template <std::size_t N>
constexpr model_graph forward_model(const expr* const (&roots)[N]) {
    model_graph m;
    std::uint32_t ids[N]{};
    m.g = join_all(roots, ids);
    for (std::size_t i = 0; i < N; ++i) m.roots[m.n_roots++] = ids[i];
    return m;
}

// Root, then d root / d leaf for every input leaf, then every parameter leaf (graph order).
// A per-example root is seeded by the input "cotangent"; an unbatched scalar root (a loss) by 1.
constexpr model_graph grad_model(const expr& root) {
    model_graph m;
    m.g = root.g;
    graph& g = m.g;
    const node r = root.rec();
    if (!r.batched && r.shape.size() != 1) ctrec_error_grad_program_needs_a_per_example_root_or_an_unbatched_scalar();
    const std::uint32_t seed =
        r.batched ? build::leaf(g, opcode::input, r.shape, true, "cotangent") : build::constant(g, 1.0, r.shape);
    std::uint32_t ct[max_nodes]{};
    m.edges = reverse(g, root.id, seed, ct).edges;
    m.roots[m.n_roots++] = root.id;
    bool reach[max_nodes]{};  // leaves the root depends on (the graph may hold other values)
    reach[root.id] = true;
    for (std::uint32_t i = root.id + 1; i-- > 0;)
        if (reach[i])
            for (std::uint32_t j = 0; j < g.nodes[i].nops; ++j) reach[g.operand(i, j)] = true;
    for (int pass = 0; pass < 2; ++pass)
        for (std::uint32_t i = 0; i <= root.id; ++i) {
            const node l = g.nodes[i];
            if (!reach[i] || l.op != (pass == 0 ? opcode::input : opcode::param)) continue;
            if (g.name_of(i) == "cotangent") continue;
            const std::uint32_t c = ct[i] == none ? build::constant(g, 0.0, l.shape) : ct[i];
            if (m.n_roots >= max_roots) ctrec_error_too_many_roots();
            m.roots[m.n_roots++] = build::broadcast_to(g, c, l.shape, l.batched);
            m.wrt[m.n_wrt++] = i;
        }
    return m;
}

// Root and its tangent along the tangent leaves "d.<name>".
constexpr model_graph jvp_model(const expr& root) {
    model_graph m;
    m.g = root.g;
    std::uint32_t tan[max_nodes]{};
    forward(m.g, root.id, tan);
    const node r = root.rec();
    const std::uint32_t t = tan[root.id] == none ? build::constant(m.g, 0.0, r.shape) : tan[root.id];
    m.roots[m.n_roots++] = root.id;
    m.roots[m.n_roots++] = build::broadcast_to(m.g, t, r.shape, r.batched);
    return m;
}

// ---- the exact-size table ---------------------------------------------------------------------
struct table_sizes {
    std::size_t nodes = 0, operands = 0, chars = 0, roots = 0;
};

constexpr void mark_live(const model_graph& m, bool* live) {
    for (std::uint32_t r = 0; r < m.n_roots; ++r) live[m.roots[r]] = true;
    for (std::uint32_t r = 0; r < m.n_wrt; ++r) live[m.wrt[r]] = true;
    for (std::uint32_t r = 0; r < m.n_updates; ++r) live[m.targets[r]] = true;
    for (std::uint32_t i = m.g.n; i-- > 0;)
        if (live[i])
            for (std::uint32_t j = 0; j < m.g.nodes[i].nops; ++j) live[m.g.operand(i, j)] = true;
}

constexpr table_sizes sizes_of(const model_graph& m) {
    bool live[max_nodes]{};
    mark_live(m, live);
    table_sizes s;
    for (std::uint32_t i = 0; i < m.g.n; ++i)
        if (live[i]) ++s.nodes, s.operands += m.g.nodes[i].nops, s.chars += m.g.nodes[i].name_len;
    s.roots = m.n_roots;
    return s;
}

template <table_sizes S>
struct table {
    static constexpr std::size_t size = S.nodes, n_roots = S.roots, n_operands = S.operands;
    node nodes[S.nodes ? S.nodes : 1]{};
    std::uint32_t pool[S.operands ? S.operands : 1]{};
    char names[S.chars ? S.chars : 1]{};
    std::uint32_t roots[S.roots ? S.roots : 1]{};
    std::uint32_t wrt[S.roots ? S.roots : 1]{};  // grad programs: the leaf of gradient root 1 + k
    std::uint32_t targets[S.roots ? S.roots : 1]{};  // train programs: the variable of state root 1 + n_wrt + u
    std::uint32_t edges = 0, n_wrt = 0, n_updates = 0;
    constexpr std::uint32_t operand(std::size_t i, std::size_t j) const { return pool[nodes[i].first + j]; }
    constexpr std::string_view name_of(std::size_t i) const { return {names + nodes[i].name, nodes[i].name_len}; }
};

template <table_sizes S>
constexpr table<S> freeze(const model_graph& m) {
    table<S> t;
    bool live[max_nodes]{};
    mark_live(m, live);
    std::uint32_t map[max_nodes]{};
    std::uint32_t n = 0, np = 0, nc = 0;
    for (std::uint32_t i = 0; i < m.g.n; ++i) {
        if (!live[i]) continue;
        node r = m.g.nodes[i];
        const std::uint32_t first = r.first, name = r.name;
        r.first = np;
        for (std::uint32_t j = 0; j < r.nops; ++j) t.pool[np++] = map[m.g.pool[first + j]];
        r.name = nc;
        for (std::uint32_t k = 0; k < r.name_len; ++k) t.names[nc++] = m.g.names[name + k];
        t.nodes[n] = r;
        map[i] = n++;
    }
    for (std::uint32_t r = 0; r < m.n_roots; ++r) t.roots[r] = map[m.roots[r]];
    t.edges = m.edges;
    t.n_wrt = m.n_wrt;
    for (std::uint32_t r = 0; r < m.n_wrt; ++r) t.wrt[r] = map[m.wrt[r]];
    t.n_updates = m.n_updates;
    for (std::uint32_t r = 0; r < m.n_updates; ++r) t.targets[r] = map[m.targets[r]];
    // one leaf per name and kind (leaves are interned by name and shape, so a second leaf of one
    // name has another shape, and would share storage): names hashed into an open-addressing table
    constexpr std::size_t slots = 2 * S.nodes + 1;
    std::uint32_t seen[slots]{};  // leaf id + 1
    for (std::uint32_t i = 0; i < n; ++i) {
        if (t.nodes[i].op != opcode::param && t.nodes[i].op != opcode::input) continue;
        std::uint64_t h = static_cast<std::uint64_t>(t.nodes[i].op) + 1;
        for (char ch : t.name_of(i)) h = detail::mix(h, static_cast<unsigned char>(ch));
        std::size_t k = h % slots;
        for (; seen[k] != 0; k = (k + 1) % slots) {
            const std::uint32_t j = seen[k] - 1;
            if (t.nodes[j].op == t.nodes[i].op && t.name_of(i) == t.name_of(j))
                ctrec_error_two_leaves_share_a_name_with_different_shapes();
        }
        seen[k] = i + 1;
    }
    return t;
}

// ---- the plan ----------------------------------------------------------------------------------
// Passes over the batch a plan may need: each level of batch statistics adds one.
// (A BatchNorm in a training program adds about four: mean, variance, and their gradients.)
inline constexpr int max_passes = 64;
void ctrec_error_more_than_64_nested_sums_over_the_batch();

constexpr bool reduces_batch(const node& r, bool any_batched_operand) {
    return !r.batched && any_batched_operand;  // batch_sum, or a contraction that sums the batch
}

template <std::size_t N>
struct plan {
    bool step[N ? N : 1]{};      // has a compute step (incl. copies into outputs)
    bool inlined[N ? N : 1]{};   // elementwise, evaluated inside its consumers' step (one loop)
    bool epilogue[N ? N : 1]{};  // a contraction whose consumer step is its GEMM epilogue
    int fused_contraction[N ? N : 1]{};  // map step: the contraction in its epilogue, or -1
    int absorber[N ? N : 1]{};   // the step that evaluates the node (itself when it is a step)
    bool reducer[N ? N : 1]{};   // unbatched, summed over the batch while tiles run
    bool alias[N ? N : 1]{};     // a view of its operand's buffer
    int pass[N ? N : 1]{};       // batched: first pass computing it; reducer: the pass accumulating it
    int avail[N ? N : 1]{};      // unbatched: first pass that may read it
    std::uint64_t needed[N ? N : 1]{};  // bit q: the batched or reducer step runs in pass q
    int root[N ? N : 1]{};       // first root index it is, or -1
    std::ptrdiff_t offset[N ? N : 1]{};  // workspace offset (derived: in the derived block), -1 if none
    bool derived[N ? N : 1]{};   // a step reading parameters and constants only: computed by
                                 // parameters::prepare() and kept with them, not per call
    int passes = 1;
    std::size_t tile_elems = 0;  // per-example elements of the tile region
    std::size_t persistent = 0;  // unbatched region
    std::size_t derived_elems = 0;  // the derived block
    std::size_t steps = 0, derived_steps = 0;
};

constexpr std::size_t align16(std::size_t x) { return (x + 15) / 16 * 16; }

template <class Table>
constexpr plan<Table::size> make_plan(const Table& t) {
    constexpr std::size_t N = Table::size;
    plan<N> p;
    for (std::size_t i = 0; i < N; ++i) p.root[i] = -1, p.offset[i] = -1, p.fused_contraction[i] = -1, p.absorber[i] = static_cast<int>(i);
    for (std::size_t r = Table::n_roots; r-- > 0;) p.root[t.roots[r]] = static_cast<int>(r);
    // consumers of every node (CSR), so each pass below costs O(edges), not O(nodes^2)
    std::size_t cfirst[N + 1]{};
    std::uint32_t cons[Table::n_operands ? Table::n_operands : 1]{};
    for (std::size_t i = 0; i < N; ++i)
        for (std::size_t j = 0; j < t.nodes[i].nops; ++j) ++cfirst[t.operand(i, j) + 1];
    for (std::size_t i = 0; i < N; ++i) cfirst[i + 1] += cfirst[i];
    {
        std::size_t fill[N + 1]{};
        for (std::size_t i = 0; i < N; ++i)
            for (std::size_t j = 0; j < t.nodes[i].nops; ++j) {
                const std::uint32_t o = t.operand(i, j);
                cons[cfirst[o] + fill[o]++] = static_cast<std::uint32_t>(i);
            }
    }
    for (std::size_t i = 0; i < N; ++i) {
        const node& r = t.nodes[i];
        bool any_batched = false;
        int q = 0;
        for (std::size_t j = 0; j < r.nops; ++j) {
            const std::uint32_t o = t.operand(i, j);
            any_batched = any_batched || t.nodes[o].batched;
            q = std::max(q, t.nodes[o].batched ? p.pass[o] : p.avail[o]);
        }
        p.reducer[i] = reduces_batch(r, any_batched);
        p.pass[i] = q;
        p.avail[i] = p.reducer[i] ? q + 1 : q;
        if ((r.batched || p.reducer[i]) && q + 1 > p.passes) p.passes = q + 1;
        p.alias[i] = is_view(r.op);
    }
    // fusion: an elementwise node joins its consumers' loop when every consumer is evaluated by
    // the same step (an elementwise node of its shape and batchedness, a reduction or a batch
    // sum of it). Visiting consumers first lets whole DAGs of elementwise work join one loop.
    for (std::size_t i = N; i-- > 0;) {
        const node& r = t.nodes[i];
        if (!is_elementwise(r.op) || p.root[i] >= 0 || cfirst[i] == cfirst[i + 1]) continue;
        int step = -1;
        bool ok = true;
        for (std::size_t e = cfirst[i]; e < cfirst[i + 1] && ok; ++e) {
            const std::uint32_t c = cons[e];
            const node& k = t.nodes[c];
            const bool joins = (is_elementwise(k.op) && k.shape == r.shape && k.batched == r.batched) ||
                               ((k.op == opcode::reduce_sum || k.op == opcode::reduce_max) && k.batched == r.batched) ||
                               (k.op == opcode::batch_sum && r.batched);
            ok = joins && (step < 0 || step == p.absorber[c]);
            step = p.absorber[c];
        }
        if (ok && step >= 0) p.inlined[i] = true, p.absorber[i] = step;
    }
    // GEMM epilogues: a contraction read only by one elementwise step of its shape
    for (std::size_t i = 0; i < N; ++i) {
        const node& r = t.nodes[i];
        if (r.op != opcode::contract || p.root[i] >= 0 || cfirst[i] == cfirst[i + 1]) continue;
        const node& na = t.nodes[t.operand(i, 0)];
        const node& nb = t.nodes[t.operand(i, 1)];
        const contract_plan cp = plan_contraction(r.spec, na.shape, nb.shape, na.batched, nb.batched, r.batched);
        if (cp.n_outer != 0 || cp.reduces_batch) continue;
        int step = -1;
        bool ok = true;
        for (std::size_t e = cfirst[i]; e < cfirst[i + 1] && ok; ++e) {
            const std::uint32_t c = cons[e];
            ok = is_elementwise(t.nodes[c].op) && (step < 0 || step == p.absorber[c]);
            step = p.absorber[c];
        }
        if (!ok || step < 0) continue;
        const std::size_t st = static_cast<std::size_t>(step);
        if (!is_elementwise(t.nodes[st].op) || p.fused_contraction[st] >= 0) continue;
        if (!(t.nodes[st].shape == r.shape) || t.nodes[st].batched != r.batched) continue;
        p.fused_contraction[st] = static_cast<int>(i);
        p.epilogue[i] = true;
        p.absorber[i] = static_cast<int>(st);
    }
    // derived parameters: steps that read only parameters and constants (an effective kernel under
    // weight norm, a folded BatchNorm scale) depend on no call: parameters::prepare() computes
    // them when the parameters change, and runs read them
    bool param_only[N ? N : 1]{};
    for (std::size_t i = 0; i < N; ++i) {
        const node& r = t.nodes[i];
        p.step[i] = (!is_leaf(r.op) && !p.alias[i] && !p.inlined[i] && !p.epilogue[i]) || p.root[i] >= 0;
        p.steps += p.step[i];
        if (r.op == opcode::param || r.op == opcode::constant) {
            param_only[i] = true;
            continue;
        }
        if (is_leaf(r.op) || r.batched || p.reducer[i]) continue;
        bool only = true;
        for (std::size_t j = 0; j < r.nops; ++j) only = only && param_only[t.operand(i, j)];
        param_only[i] = only && p.root[i] < 0;  // a root is written by run() into an output: its readers cannot be derived
        p.derived[i] = only && p.step[i] && p.root[i] < 0 && !p.alias[i];
        p.derived_steps += p.derived[i];
    }
    if (p.passes > max_passes) ctrec_error_more_than_64_nested_sums_over_the_batch();
    // which batched steps run in which pass: a batched value is recomputed in every pass that
    // reads it (never stored for the whole batch)
    for (int q = 0; q < p.passes; ++q) {
        bool need_as_operand[N ? N : 1]{};
        for (std::size_t i = N; i-- > 0;) {
            const node& r = t.nodes[i];
            if (!r.batched && !p.reducer[i]) continue;
            bool need = p.reducer[i] ? p.pass[i] == q : (p.pass[i] <= q && (need_as_operand[i] || (p.root[i] >= 0 && p.pass[i] == q)));
            if (p.reducer[i] && p.pass[i] != q) need = false;
            if (need && p.step[i]) p.needed[i] |= std::uint64_t{1} << q;
            if (need || (p.alias[i] && need_as_operand[i]))
                for (std::size_t j = 0; j < r.nops; ++j) need_as_operand[t.operand(i, j)] = true;
        }
    }
    // liveness: the last step reading each value (views forward their readers; a node evaluated
    // inside another step is read when that step runs)
    std::size_t last_use[N ? N : 1]{};
    for (std::size_t i = 0; i < N; ++i) last_use[i] = i;
    for (std::size_t i = N; i-- > 0;)
        for (std::size_t j = 0; j < t.nodes[i].nops; ++j) {
            const std::uint32_t o = t.operand(i, j);
            const std::size_t u = p.alias[i] || p.inlined[i] || p.epilogue[i] ? last_use[i] : i;
            if (u > last_use[o]) last_use[o] = u;
        }
    for (std::size_t i = 0; i < N; ++i)
        if (p.inlined[i] || p.epilogue[i]) last_use[i] = static_cast<std::size_t>(p.absorber[i]);
    // buffers: roots are written into the caller's outputs; the rest get workspace. Tile buffers
    // by first fit over the free gaps of the tile region (sorted by offset, neighbours merged),
    // a buffer returning its space once its last reader has run: O(gaps) per buffer, where a
    // scan over every placed buffer was cubic in an unrolled 50-step recurrence's training plan.
    std::uint32_t release_head[N ? N : 1]{}, release_next[N ? N : 1]{};  // +1 encoded, 0 = end
    std::size_t gap_off[N + 1]{}, gap_len[N + 1]{};
    std::size_t ngaps = 0, top = 0;
    auto release = [&](std::size_t off, std::size_t len) {
        std::size_t k = 0;
        while (k < ngaps && gap_off[k] < off) ++k;
        for (std::size_t j = ngaps; j > k; --j) gap_off[j] = gap_off[j - 1], gap_len[j] = gap_len[j - 1];
        gap_off[k] = off, gap_len[k] = len, ++ngaps;
        if (k + 1 < ngaps && gap_off[k] + gap_len[k] == gap_off[k + 1]) {  // merge with the next
            gap_len[k] += gap_len[k + 1];
            for (std::size_t j = k + 1; j + 1 < ngaps; ++j) gap_off[j] = gap_off[j + 1], gap_len[j] = gap_len[j + 1];
            --ngaps;
        }
        if (k > 0 && gap_off[k - 1] + gap_len[k - 1] == gap_off[k]) {  // merge with the previous
            gap_len[k - 1] += gap_len[k];
            for (std::size_t j = k; j + 1 < ngaps; ++j) gap_off[j] = gap_off[j + 1], gap_len[j] = gap_len[j + 1];
            --ngaps;
        }
        if (ngaps && gap_off[ngaps - 1] + gap_len[ngaps - 1] == top) top = gap_off[--ngaps];  // the end is free
    };
    for (std::size_t i = 0; i < N; ++i) {
        if (i > 0)
            for (std::uint32_t j = release_head[i - 1]; j != 0; j = release_next[j - 1])
                release(static_cast<std::size_t>(p.offset[j - 1]), align16(t.nodes[j - 1].shape.size()));
        const node& r = t.nodes[i];
        if (is_leaf(r.op) || p.alias[i] || p.inlined[i] || p.epilogue[i] || p.root[i] >= 0) continue;
        const std::size_t sz = align16(r.shape.size());
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
        std::size_t off = top, k = 0;
        while (k < ngaps && gap_len[k] < sz) ++k;
        if (k < ngaps) {
            off = gap_off[k];
            gap_off[k] += sz, gap_len[k] -= sz;
            if (gap_len[k] == 0) {
                for (std::size_t j = k; j + 1 < ngaps; ++j) gap_off[j] = gap_off[j + 1], gap_len[j] = gap_len[j + 1];
                --ngaps;
            }
        } else {
            top += sz;
        }
        p.offset[i] = static_cast<std::ptrdiff_t>(off);
        if (off + sz > p.tile_elems) p.tile_elems = off + sz;
        const std::size_t until = last_use[i] < N ? last_use[i] : N - 1;
        release_next[i] = release_head[until], release_head[until] = static_cast<std::uint32_t>(i + 1);
    }
    return p;
}

} // namespace ctrec
