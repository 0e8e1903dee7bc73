#pragma once
// program<T, Roots...>: a compiled model. Parameters (shareable, read-only
// while scoring) and a per-thread workspace (its size a compile-time constant)
// are separate objects; run() evaluates every root for a batch and allocates
// nothing.
//
//   using M = ctrec::program<float, decltype(y)>;
//   M::parameters p;  p.get<"W">()[0] = ...;       // or io::load into it
//   M::workspace ws;                                 // one per thread
//   M::io io; io.input<"x">(x).output<0>(y_out);
//   M::run(p, ws, batch, io);
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "ctrec/core/error.hpp"
#include "ctrec/core/plan.hpp"
#include "ctrec/core/rewrite.hpp"
#include "ctrec/core/storage.hpp"
#include "cpu/executor.hpp"

namespace ctrec {

namespace detail {
template <fixed_string Name, class L> struct find_leaf;
template <fixed_string Name, class... N>
struct find_leaf<Name, tlist<N...>> {
    static constexpr std::size_t value = [] {
        constexpr bool hit[] = {(N::name == Name)..., false};
        std::size_t i = 0;
        while (i < sizeof...(N) && !hit[i]) ++i;
        return i;
    }();
};
template <fixed_string Name, class L>
inline constexpr std::size_t find_leaf_v = find_leaf<Name, L>::value;

template <fixed_string Name, bool Found>
struct no_such_tensor {
    static_assert(Found, "ctrec: the model has no tensor of this name and kind (see no_such_tensor<...>)");
    static constexpr bool value = Found;
};
} // namespace detail

template <class T, node... Roots>
class basic_program {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "ctrec: program element type must be float or double");

public:
    using element_type = T;
    // The roots after the rewrite passes (core/rewrite.hpp): what is planned and run.
    using plan_type = plan<rewrite_t<Roots>...>;
    using nodes = typename plan_type::nodes;
    using input_leaves = tl_filter_t<is_input_leaf, nodes>;
    using param_leaves = tl_filter_t<is_param_leaf, nodes>;
    using index_leaves = tl_filter_t<is_index_leaf, nodes>;
    using roots = tlist<rewrite_t<Roots>...>;
    using exec = cpu::executor<T, plan_type>;

    static constexpr std::size_t n_inputs = input_leaves::size;
    static constexpr std::size_t n_params = param_leaves::size;
    static constexpr std::size_t n_ids = index_leaves::size;
    static constexpr std::size_t n_outputs = sizeof...(Roots);

    // Examples per tile: up to 64 (enough rows for the GEMM register blocks to reuse
    // each weight many times) while the tile region stays within ~1 MiB (L2).
    static constexpr std::size_t tile = [] {
        std::size_t e = plan_type::data.tile_elems * sizeof(T);
        std::size_t t = e ? (1024 * 1024) / e : 64;
        t = t > 64 ? 64 : t < 1 ? 1 : t;
        return t >= 8 ? t / 8 * 8 : t;
    }();
    static constexpr std::size_t workspace_size = plan_type::data.persistent + tile * plan_type::data.tile_elems;

    template <std::size_t R>
    static constexpr std::size_t output_size = tl_at_t<R, roots>::shape.size();
    template <std::size_t R>
    static constexpr bool output_batched = tl_at_t<R, roots>::batched;

    template <fixed_string Name>
    static constexpr std::size_t param_index = [] {
        constexpr std::size_t i = detail::find_leaf_v<Name, param_leaves>;
        static_assert(detail::no_such_tensor<Name, (i < n_params)>::value);
        return i;
    }();
    template <fixed_string Name>
    static constexpr std::size_t input_index = [] {
        constexpr std::size_t i = detail::find_leaf_v<Name, input_leaves>;
        static_assert(detail::no_such_tensor<Name, (i < n_inputs)>::value);
        return i;
    }();
    template <fixed_string Name>
    static constexpr std::size_t ids_index = [] {
        constexpr std::size_t i = detail::find_leaf_v<Name, index_leaves>;
        static_assert(detail::no_such_tensor<Name, (i < n_ids)>::value);
        return i;
    }();

    // ---- parameters: one aligned block, a slice per parameter leaf --------------------------
    class parameters {
    public:
        static constexpr std::size_t count = n_params;
        static constexpr auto offsets = []<class... P>(tlist<P...>) {
            std::array<std::size_t, sizeof...(P) + 1> o{};
            std::size_t at = 0, i = 0;
            ((o[i++] = at, at += detail::align16(P::shape.size())), ...);
            o[i] = at;
            return o;
        }(param_leaves{});
        static constexpr std::array<std::string_view, n_params> names = []<class... P>(tlist<P...>) {
            return std::array<std::string_view, n_params>{P::name.view()...};
        }(param_leaves{});
        static constexpr std::array<std::size_t, n_params> sizes = []<class... P>(tlist<P...>) {
            return std::array<std::size_t, n_params>{P::shape.size()...};
        }(param_leaves{});
        static constexpr std::array<dims, n_params> shapes = []<class... P>(tlist<P...>) {
            return std::array<dims, n_params>{P::shape...};
        }(param_leaves{});

        parameters() : buf_(offsets[n_params]) {}

        // Non-const access marks the parameters changed: derived values (e.g. a folded
        // kernel norm) must be recomputed by prepare() before run() on const parameters
        // (run() on non-const parameters always recomputes them).
        template <fixed_string Name>
        std::span<T> get() {
            constexpr std::size_t i = param_index<Name>;
            fresh_ = false;
            return {buf_.data() + offsets[i], sizes[i]};
        }
        template <fixed_string Name>
        std::span<const T> get() const {
            constexpr std::size_t i = param_index<Name>;
            return {buf_.data() + offsets[i], sizes[i]};
        }
        // Position of the parameter called name, or count when there is none.
        static constexpr std::size_t position(std::string_view name) {
            std::size_t i = 0;
            while (i < n_params && names[i] != name) ++i;
            return i;
        }
        // Runtime lookup by name (weight files): throws ctrec::error for unknown names.
        std::size_t index_of(std::string_view name) const {
            for (std::size_t i = 0; i < n_params; ++i)
                if (names[i] == name) return i;
            throw error("ctrec: the model has no parameter named '" + std::string(name) + "'");
        }
        std::span<T> get(std::size_t i) {
            fresh_ = false;
            return {buf_.data() + offsets[i], sizes[i]};
        }
        std::span<const T> get(std::size_t i) const { return {buf_.data() + offsets[i], sizes[i]}; }
        // Copies values into a parameter after checking the name and the size.
        void set(std::string_view name, std::span<const T> v) {
            std::size_t i = index_of(name);
            if (v.size() != sizes[i])
                throw error("ctrec: parameter '" + std::string(name) + "' holds " + std::to_string(sizes[i]) +
                            " values, got " + std::to_string(v.size()));
            std::copy(v.begin(), v.end(), get(i).begin());
        }
        const T* data() const { return buf_.data(); }
        T* data() {
            fresh_ = false;
            return buf_.data();
        }

        // Computes the derived parameters (the plan's steps that read only parameters:
        // normalised kernels, hoisted transposes) into this object. Call it after loading
        // or changing weights and before sharing the parameters between threads; run()
        // on const parameters refuses stale ones.
        void prepare() {
            if constexpr (plan_type::derived_steps > 0) {
                typename exec::context c{};
                c.nb = 1;
                c.batch = 1;
                [&]<class... N>(tlist<N...>) { (bind_derived<N>(c), ...); }(nodes{});
                exec::run_derived(c);
            }
            fresh_ = true;
        }
        bool prepared() const { return plan_type::derived_steps == 0 || fresh_; }
        const T* derived_data() const { return derived_.data(); }

    private:
        template <class N>
        void bind_derived(typename exec::context& c) {
            constexpr std::size_t i = plan_type::template id<N>;
            if constexpr (N::node_kind == kind::param)
                c.base[i] = buf_.data() + offsets[tl_index_v<N, param_leaves>];
            else if constexpr (D.alias[i])
                c.base[i] = c.base[plan_type::template id<tl_at_t<0, typename N::operands>>];
            else if constexpr (D.derived[i])
                c.base[i] = derived_.data() + D.offset[i];
        }

        aligned_buffer<T> buf_;
        aligned_buffer<T> derived_{plan_type::data.derived_elems ? plan_type::data.derived_elems : 1};
        bool fresh_ = false;
    };

    // ---- per-thread scratch ---------------------------------------------------------------
    class workspace {
    public:
        static constexpr std::size_t size = workspace_size;
        workspace() : buf_(workspace_size ? workspace_size : 1) {}
        T* data() { return buf_.data(); }

    private:
        aligned_buffer<T> buf_;
    };

    // ---- per-call bindings (batch-major: example b at b * per-example size) --------------------
    struct io {
        const T* in[n_inputs ? n_inputs : 1] = {};
        const std::int32_t* ids[n_ids ? n_ids : 1] = {};
        T* out[n_outputs] = {};
        std::uint64_t seed = 0;  // random streams (dropout masks): same seed, same numbers
        template <fixed_string Name>
        io& input(const T* p) { in[input_index<Name>] = p; return *this; }
        template <fixed_string Name>
        io& index(const std::int32_t* p) { ids[ids_index<Name>] = p; return *this; }
        template <std::size_t R>
        io& output(T* p) { out[R] = p; return *this; }
    };

    // Scoring with shared, read-only parameters: they must be prepared (see prepare()).
    static void run(const parameters& p, workspace& ws, std::size_t batch, const io& b) {
        if (!p.prepared())
            throw error("ctrec: parameters changed since prepare(); call prepare() after loading or updating "
                        "weights (run() on non-const parameters does it automatically)");
        validate(b, batch);
        typename exec::context c{};
        c.batch = static_cast<double>(batch);
        c.seed = b.seed;
        for (std::size_t r = 0; r < n_outputs; ++r) c.out[r] = b.out[r];
        // one instantiation per pass the plan has (a compile-time count)
        [&]<int... Q>(std::integer_sequence<int, Q...>) {
            (run_batch_pass<Q>(c, p, ws, b, batch), ...);
        }(std::make_integer_sequence<int, D.passes>{});
        c.nb = 1;
        bind(c, p, ws, b, 0);
        exec::template run_unbatched<D.passes>(c);
        copy_duplicate_roots(b, batch);
    }

    // Single-owner use (training loops, tests): weights may have been written through a
    // span kept from get(), so derived parameters are always recomputed first (what a
    // training step needs anyway). Score through a const reference after prepare() to
    // reuse them across calls.
    static void run(parameters& p, workspace& ws, std::size_t batch, const io& b) {
        p.prepare();
        run(std::as_const(p), ws, batch, b);
    }

    static std::string describe() { return plan_type::describe(); }

private:
    static constexpr const auto& D = plan_type::data;

    // Pass Q over the batch: the unbatched steps that became computable, then every tile.
    template <int Q>
    static void run_batch_pass(typename exec::context& c, const parameters& p, workspace& ws, const io& b,
                               std::size_t batch) {
        c.nb = 1;
        bind(c, p, ws, b, 0);
        exec::template run_unbatched<Q>(c);
        zero_reducers(c, Q, batch);
        for (std::size_t b0 = 0; b0 < batch; b0 += tile) {
            c.nb = batch - b0 < tile ? batch - b0 : tile;
            c.first_tile = b0 == 0;
            c.example0 = b0;
            bind(c, p, ws, b, b0);
            exec::template run_pass<Q>(c);
        }
    }

    static void validate(const io& b, std::size_t batch) {
        [&]<class... L>(tlist<L...>) {
            std::size_t i = 0;
            ((b.in[i++] ? void() : throw error("ctrec: input '" + std::string(L::name.view()) + "' is not bound")), ...);
        }(input_leaves{});
        [&]<class... L>(tlist<L...>) {
            std::size_t i = 0;
            ((b.ids[i++] ? void() : throw error("ctrec: ids '" + std::string(L::name.view()) + "' are not bound")), ...);
        }(index_leaves{});
        for (std::size_t r = 0; r < n_outputs; ++r)
            if (!b.out[r]) throw error("ctrec: output " + std::to_string(r) + " is not bound");
        // every id must address a row of every table it indexes
        [&]<class... N>(tlist<N...>) { (check_ids<N>(b, batch), ...); }(nodes{});
    }
    template <class N>
    static void check_ids(const io& b, std::size_t batch) {
        if constexpr (N::node_kind == kind::gather || N::node_kind == kind::scatter_add) {
            using Ids = std::conditional_t<N::node_kind == kind::gather, tl_at_t<1, typename N::operands>,
                                           tl_at_t<0, typename N::operands>>;
            const std::int32_t* v = b.ids[tl_index_v<Ids, index_leaves>];
            constexpr std::size_t np = Ids::shape.size();
            for (std::size_t i = 0; i < batch * np; ++i)
                if (v[i] < 0 || static_cast<std::size_t>(v[i]) >= N::rows)
                    throw error("ctrec: ids '" + std::string(Ids::name.view()) + "' example " + std::to_string(i / np) +
                                " position " + std::to_string(i % np) + " holds " + std::to_string(v[i]) +
                                ", expected 0 <= id < " + std::to_string(N::rows));
        }
    }

    // Points every node at its data for the tile starting at example b0.
    static void bind(typename exec::context& c, const parameters& p, workspace& ws, const io& b, std::size_t b0) {
        [&]<class... N>(tlist<N...>) { (bind_one<N>(c, p, ws, b, b0), ...); }(nodes{});
    }
    template <class N>
    static void bind_one(typename exec::context& c, const parameters& p, workspace& ws, const io& b, std::size_t b0) {
        constexpr std::size_t i = plan_type::template id<N>;
        constexpr std::size_t size = N::shape.size();
        constexpr int root = D.rec[i].root;
        T* w = ws.data();
        if constexpr (N::node_kind == kind::param) {
            c.base[i] = const_cast<T*>(p.data()) + parameters::offsets[tl_index_v<N, param_leaves>];
        } else if constexpr (N::node_kind == kind::input) {
            c.base[i] = const_cast<T*>(b.in[tl_index_v<N, input_leaves>]) + (N::batched ? b0 * size : 0);
        } else if constexpr (N::node_kind == kind::index_input) {
            c.ibase[i] = b.ids[tl_index_v<N, index_leaves>] + b0 * size;
        } else if constexpr (D.alias[i]) {
            c.base[i] = c.base[plan_type::template id<tl_at_t<0, typename N::operands>>];
        } else if constexpr (D.derived[i]) {
            c.base[i] = const_cast<T*>(p.derived_data()) + D.offset[i];
        } else if constexpr (root >= 0 && D.step[i]) {
            c.base[i] = b.out[root] + (N::batched ? b0 * size : 0);
            c.out[root] = c.base[i];
        } else if constexpr (D.offset[i] >= 0) {
            c.base[i] = N::batched ? w + D.persistent + static_cast<std::size_t>(D.offset[i]) * tile
                                   : w + static_cast<std::size_t>(D.offset[i]);
        }
        if constexpr (root >= 0 && N::batched) c.out[root] = b.out[root] + b0 * size;
    }

    // Batch sums start at zero; a contraction over the batch overwrites on its first tile
    // instead (when there is one).
    static void zero_reducers(typename exec::context& c, int pass, std::size_t batch) {
        for (std::size_t i = 0; i < plan_type::size; ++i)
            if (D.rec[i].reducer && D.step[i] && D.pass[i] == pass && !(D.rec[i].k == kind::contract && batch > 0))
                std::fill_n(c.base[i], D.rec[i].shape.size(), T(0));
    }

    static void copy_duplicate_roots(const io& b, std::size_t batch) {
        [&]<std::size_t... R>(std::index_sequence<R...>) {
            (copy_dup<R>(b, batch), ...);
        }(std::make_index_sequence<n_outputs>{});
    }
    template <std::size_t R>
    static void copy_dup(const io& b, std::size_t batch) {
        using N = tl_at_t<R, roots>;
        constexpr int first = D.rec[plan_type::template id<N>].root;
        if constexpr (first != static_cast<int>(R)) {
            std::size_t count = N::shape.size() * (N::batched ? batch : 1);
            std::copy_n(b.out[first], count, b.out[R]);
        }
    }
};

// program<T, decltype(expr)...>: cv-qualifiers of the expression objects are dropped.
template <class T, class... Roots>
using program = basic_program<T, std::remove_cvref_t<Roots>...>;

} // namespace ctrec
