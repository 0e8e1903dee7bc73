#pragma once
// Programs, keyed by the expression objects themselves:
//
//   constexpr auto y = ctrec::sigmoid(ctrec::matmul(x, W) + b);     // namespace scope or static
//   using M = ctrec::program<float, y>;                             // CPU backend
//   using R = ctrec::program<float, y>::with_backend<ctrec::reference_backend>;
//   using G = ctrec::grad_program<double, loss>;                    // loss and every gradient
//   M::parameters p; M::workspace ws; M::io io; io.input<"x">(xs).output<0>(ys);
//   M::run(p, ws, batch, io);
//
// The program's name is short (the type, the backend, the kind and a reference to y), and so
// is every executor symbol keyed by it plus a step index: nothing spells the graph.
// A backend is a class with `template <class Program> static void run(...)`: the CPU backend
// (kernels/cpu/flat_executor.hpp: SIMD loops and the GEMM kernels, tile by tile) and the
// scalar reference backend (kernels/reference/flat_reference.hpp: the table interpreted node
// by node over the whole batch, an independent oracle for the tests). A Thrust backend would
// be a third such class.
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "ctrec/core/error.hpp"
#include "ctrec/core/storage.hpp"
#include "ctrec/core/plan.hpp"

namespace ctrec {

struct cpu_backend;
struct reference_backend;

namespace detail {
// train_program.hpp: the loss, the gradient of every trainable parameter, the new state values
template <const auto& Loss, const auto&... State>
constexpr model_graph train_model_of();

template <model_kind K, const auto&... Roots>
constexpr model_graph model_of() {
    if constexpr (K == model_kind::train) {
        return train_model_of<Roots...>();
    } else {
        if constexpr (sizeof...(Roots) == 1 && K != model_kind::forward) {
            constexpr const expr* r[1] = {&Roots...};
            if (K == model_kind::grad) return grad_model(*r[0]);
            return jvp_model(*r[0]);
        }
        const expr* rs[sizeof...(Roots)] = {&Roots...};
        return forward_model(rs);
    }
}
template <class Table, opcode Op>
constexpr std::size_t count_leaves(const Table& t) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < Table::size; ++i) n += t.nodes[i].op == Op;
    return n;
}
template <std::size_t N, class Table, opcode Op>
constexpr std::array<std::uint32_t, N ? N : 1> leaves_of(const Table& t) {
    std::array<std::uint32_t, N ? N : 1> a{};
    std::size_t k = 0;
    for (std::size_t i = 0; i < Table::size; ++i)
        if (t.nodes[i].op == Op) a[k++] = static_cast<std::uint32_t>(i);
    return a;
}
template <class Table, std::size_t N>
constexpr std::size_t find_name(const Table& t, const std::array<std::uint32_t, N>& ids, std::size_t n, std::string_view s) {
    std::size_t i = 0;
    while (i < n && t.name_of(ids[i]) != s) ++i;
    return i;
}
} // namespace detail

template <fixed_string Name, bool Found>
struct no_such_tensor {
    static_assert(Found, "ctrec: the model has no tensor of this name and kind (see no_such_tensor<...>)");
    static constexpr bool value = Found;
};

template <class T, class Backend, model_kind Kind, const auto&... Roots>
class basic_program {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "ctrec: program element type must be float or double");

    static constexpr model_graph model_ = detail::model_of<Kind, Roots...>();
    static constexpr table_sizes sizes_ = sizes_of(model_);

public:
    using element_type = T;
    using backend = Backend;
    static constexpr model_kind kind = Kind;
    template <class B>
    using with_backend = basic_program<T, B, Kind, Roots...>;

    static constexpr table<sizes_> tab = freeze<sizes_>(model_);
    static constexpr plan<sizes_.nodes> pl = make_plan(tab);
    static constexpr std::size_t size = sizes_.nodes;
    static constexpr std::size_t n_outputs = sizes_.roots;
    static constexpr std::size_t n_inputs = detail::count_leaves<decltype(tab), opcode::input>(tab);
    static constexpr std::size_t n_params = detail::count_leaves<decltype(tab), opcode::param>(tab);
    static constexpr auto input_ids = detail::leaves_of<n_inputs, decltype(tab), opcode::input>(tab);
    static constexpr auto param_ids = detail::leaves_of<n_params, decltype(tab), opcode::param>(tab);

    // Examples per tile: up to 64 while the tile region stays within ~1 MiB (L2).
    static constexpr std::size_t tile = [] {
        std::size_t e = pl.tile_elems * sizeof(T);
        std::size_t t = e ? (1024 * 1024) / e : 64;
        t = t > 64 ? 64 : t < 1 ? 1 : t;
        return t >= 8 ? t / 8 * 8 : t;
    }();
    static constexpr std::size_t workspace_size = pl.persistent + tile * pl.tile_elems;

    template <std::size_t R>
    static constexpr std::size_t output_size = tab.nodes[tab.roots[R]].shape.size();
    template <std::size_t R>
    static constexpr bool output_batched = tab.nodes[tab.roots[R]].batched;

    template <fixed_string Name>
    static constexpr std::size_t param_index = [] {
        constexpr std::size_t i = detail::find_name(tab, param_ids, n_params, Name.view());
        static_assert(no_such_tensor<Name, (i < n_params)>::value);
        return i;
    }();
    template <fixed_string Name>
    static constexpr std::size_t input_index = [] {
        constexpr std::size_t i = detail::find_name(tab, input_ids, n_inputs, Name.view());
        static_assert(no_such_tensor<Name, (i < n_inputs)>::value);
        return i;
    }();
    // grad_program: output index of the gradient w.r.t. the input or parameter called Name.
    template <fixed_string Name>
    static constexpr std::size_t grad = [] {
        constexpr std::size_t i = [] {
            std::size_t k = 0;
            while (k < tab.n_wrt && tab.name_of(tab.wrt[k]) != Name.view()) ++k;
            return k;
        }();
        static_assert(no_such_tensor<Name, (i < tab.n_wrt)>::value);
        return 1 + i;
    }();

    // ---- parameters: one aligned block, a slice per parameter leaf ----------------------------
    class parameters {
    public:
        static constexpr std::size_t count = n_params;
        static constexpr auto offsets = [] {
            std::array<std::size_t, n_params + 1> o{};
            std::size_t at = 0;
            for (std::size_t i = 0; i < n_params; ++i) o[i] = at, at += align16(tab.nodes[param_ids[i]].shape.size());
            o[n_params] = at;
            return o;
        }();
        static constexpr auto names = [] {
            std::array<std::string_view, n_params> a{};
            for (std::size_t i = 0; i < n_params; ++i) a[i] = tab.name_of(param_ids[i]);
            return a;
        }();
        static constexpr auto sizes = [] {
            std::array<std::size_t, n_params> a{};
            for (std::size_t i = 0; i < n_params; ++i) a[i] = tab.nodes[param_ids[i]].shape.size();
            return a;
        }();

        parameters() : buf_(offsets[n_params] ? offsets[n_params] : 1) {}
        // The derived block: the derived parameters, plus what the backend keeps after them
        // (cpu_bf16_backend: the rounded weights), all computed by prepare().
        static constexpr std::size_t derived_size() {
            if constexpr (requires { Backend::template derived_extra<basic_program>; })
                return pl.derived_elems + Backend::template derived_extra<basic_program>;
            else return pl.derived_elems;
        }
        // Non-const access marks the parameters changed: the derived parameters (the plan's steps
        // that read parameters only, e.g. weight-normalised kernels) must be recomputed by
        // prepare() before run() on const parameters (run() on non-const ones prepares itself).
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
        std::span<T> get(std::size_t i) {
            fresh_ = false;
            return {buf_.data() + offsets[i], sizes[i]};
        }
        std::span<const T> get(std::size_t i) const { return {buf_.data() + offsets[i], sizes[i]}; }
        static constexpr std::size_t position(std::string_view name) {
            std::size_t i = 0;
            while (i < n_params && names[i] != name) ++i;
            return i;
        }
        // Copies values into a parameter after checking the name and the size.
        void set(std::string_view name, std::span<const T> v) {
            const std::size_t i = position(name);
            if (i == n_params) throw error("ctrec: the model has no parameter named '" + std::string(name) + "'");
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
        // Computes the derived parameters from the current values; cheap, once per change.
        void prepare() {
            Backend::template prepare<basic_program>(buf_.data(), derived_.data());
            fresh_ = true;
        }
        bool prepared() const { return fresh_; }
        const T* derived_data() const { return derived_.data(); }

    private:
        aligned_buffer<T> buf_;
        aligned_buffer<T> derived_{derived_size() ? derived_size() : 1};
        bool fresh_ = pl.derived_steps == 0 && derived_size() == pl.derived_elems;
    };

    class workspace {
    public:
        static constexpr std::size_t size = workspace_size;
        workspace() : buf_(workspace_size ? workspace_size : 1) {}
        T* data() { return buf_.data(); }

    private:
        aligned_buffer<T> buf_;
    };

    // Per-call bindings (batch-major: example b at b * per-example size).
    struct io {
        const T* in[n_inputs ? n_inputs : 1] = {};
        T* out[n_outputs ? n_outputs : 1] = {};
        std::uint64_t seed = 0;
        template <fixed_string Name>
        io& input(const T* p) {
            in[input_index<Name>] = p;
            return *this;
        }
        template <std::size_t R>
        io& output(T* p) {
            out[R] = p;
            return *this;
        }
    };

    // Scoring with shared, read-only parameters: they must be prepared (see parameters::prepare).
    static void run(const parameters& p, workspace& ws, std::size_t batch, const io& b) {
        if (!p.prepared())
            throw error("ctrec: parameters changed since prepare(); call prepare() after loading or updating "
                        "them, or run with non-const parameters");
        for (std::size_t i = 0; i < n_inputs; ++i)
            if (!b.in[i])
                throw error("ctrec: input '" + std::string(tab.name_of(input_ids[i])) + "' is not bound");
        for (std::size_t r = 0; r < n_outputs; ++r)
            if (!b.out[r]) throw error("ctrec: output " + std::to_string(r) + " is not bound");
        Backend::template run<basic_program>(p.data(), p.derived_data(), ws.data(), batch, b.in, b.out, b.seed);
    }
    // With non-const parameters the derived parameters are recomputed first (a training step
    // changes the weights every time anyway).
    static void run(parameters& p, workspace& ws, std::size_t batch, const io& b) {
        p.prepare();
        run(static_cast<const parameters&>(p), ws, batch, b);
    }

    // Parameter leaf position of table node i (for the backends).
    static constexpr std::size_t param_slot(std::size_t i) {
        std::size_t k = 0;
        while (k < n_params && param_ids[k] != i) ++k;
        return k;
    }
    static constexpr std::size_t input_slot(std::size_t i) {
        std::size_t k = 0;
        while (k < n_inputs && input_ids[k] != i) ++k;
        return k;
    }
};

template <class T, const auto&... Roots>
using program = basic_program<T, cpu_backend, model_kind::forward, Roots...>;
// Outputs: 0 = Root, then d Root / d leaf for every input leaf, then every parameter leaf.
template <class T, const auto& Root>
using grad_program = basic_program<T, cpu_backend, model_kind::grad, Root>;
// Outputs: 0 = Root, 1 = its derivative along the tangent leaves "d.<name>".
template <class T, const auto& Root>
using jvp_program = basic_program<T, cpu_backend, model_kind::jvp, Root>;

} // namespace ctrec
