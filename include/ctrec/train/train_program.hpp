#pragma once
// Training.
//
//   constexpr auto r = ctrec::layers::mlp<"mlp", cfg, layers::mode::train>(x);   // a result
//   constexpr auto y = r.out();
//   constexpr auto loss = ctrec::batch_mean(ctrec::log1p(ctrec::exp(y)) - clicks * y) + r.penalty();
//   using Step = ctrec::train_program<float, loss, r>;    // r: the state updates (none: omit it)
//   Step::parameters p;  ctrec::layers::initialize<r>(p, 42);
//   Step::gradients g;   Step::io io;  g.bind(io);
//   io.input<"x">(xs).input<"name_string">(ys).output<0>(&l);
//   Step::run(p, ws, batch, io);   // p's state variables now hold their new values
//   g.sgd(p, 0.1f);
//
// Outputs: 0 the loss, 1 + i the gradient of the i-th trainable parameter (parameters the loss
// reaches with a gradient that is not identically zero, in graph order; `grad<"name">` is its
// index), then the new state values (written into p by run, after everything else has been
// evaluated from the parameters as they were before the step).
// A per-example loss is seeded by the input "cotangent" (as grad_program); an unbatched scalar
// loss by 1.
#include <algorithm>
#include <cmath>
#include <array>
#include <initializer_list>
#include <type_traits>
#include <span>
#include <string>

#include "ctrec/layers/layer.hpp"
#include "ctrec/core/program.hpp"

namespace ctrec {

void ctrec_error_train_program_needs_a_per_example_loss_or_an_unbatched_scalar();
void ctrec_error_input_gradients_names_no_input_of_the_loss();
void ctrec_error_input_gradients_lists_more_than_16_inputs();

// Inputs whose gradients a training step also returns (after the parameter gradients and the
// state updates): the pooled embeddings of sparse features, whose tables are updated outside
// the graph (io/embedding.hpp). Pass it among the results:
//   constexpr ctrec::input_gradients wants{"sparse", "seq"};
//   using Step = ctrec::train_program<float, loss, wants>;   // Step::input_grad<"sparse">
struct input_gradients {
    std::string_view names[16]{};
    std::size_t n = 0;
    constexpr input_gradients(std::initializer_list<std::string_view> l) {
        if (l.size() > 16) ctrec_error_input_gradients_lists_more_than_16_inputs();
        for (std::string_view v : l) names[n++] = v;
    }
};

// The training model of `loss` with the state updates of result(s) `state` (and the gradients
// of the inputs named in `wants`, if any).
constexpr model_graph train_model(const expr& loss, const layers::result* const* state, std::size_t n_state,
                                  input_gradients wants = input_gradients({})) {
    model_graph m;
    m.g = loss.g;
    graph& g = m.g;
    const node r = loss.rec();
    if (!r.batched && r.shape.size() != 1) ctrec_error_train_program_needs_a_per_example_loss_or_an_unbatched_scalar();
    // the state results' graphs in this one (free when the loss was built from their outputs)
    std::uint32_t upd_var[max_roots]{}, upd_val[max_roots]{};
    std::uint32_t n_upd = 0;
    for (std::size_t k = 0; k < n_state; ++k) {
        const layers::result& s = *state[k];
        std::uint32_t map[max_nodes]{};
        if (g.has_prefix(s.g))
            for (std::uint32_t i = 0; i < s.g.n; ++i) map[i] = i;
        else
            g.merge(s.g, map);
        for (std::uint32_t u = 0; u < s.n_updates; ++u) {
            if (n_upd >= max_roots) ctrec_error_too_many_roots();
            upd_var[n_upd] = map[s.updates[u].var], upd_val[n_upd++] = map[s.updates[u].value];
        }
    }
    const std::uint32_t seed =
        r.batched ? build::leaf(g, opcode::input, r.shape, true, "cotangent") : build::constant(g, 1.0, r.shape);
    std::uint32_t ct[max_nodes]{};
    m.edges = reverse(g, loss.id, seed, ct).edges;
    m.roots[m.n_roots++] = loss.id;
    for (std::uint32_t i = 0; i <= loss.id; ++i) {
        const node l = g.nodes[i];
        if (l.op != opcode::param || ct[i] == none) continue;
        if (m.n_roots >= max_roots) ctrec_error_too_many_roots();
        m.roots[m.n_roots++] = build::broadcast_to(g, ct[i], l.shape, false);
        m.wrt[m.n_wrt++] = i;
    }
    for (std::uint32_t u = 0; u < n_upd; ++u) {
        if (m.n_roots >= max_roots) ctrec_error_too_many_roots();
        m.roots[m.n_roots++] = upd_val[u];
        m.targets[m.n_updates++] = upd_var[u];
    }
    for (std::size_t k = 0; k < wants.n; ++k) {
        std::uint32_t i = 0;
        while (i <= loss.id && !(g.nodes[i].op == opcode::input && g.name_of(i) == wants.names[k])) ++i;
        if (i > loss.id) ctrec_error_input_gradients_names_no_input_of_the_loss();
        const node l = g.nodes[i];
        const std::uint32_t c = ct[i] == none ? build::constant(g, 0.0, l.shape) : ct[i];
        if (m.n_roots >= max_roots) ctrec_error_too_many_roots();
        m.roots[m.n_roots++] = build::broadcast_to(g, c, l.shape, l.batched);
    }
    return m;
}

namespace detail {
template <const auto& Loss, const auto&... State>
constexpr model_graph train_model_of() {
    const layers::result* s[sizeof...(State) + 1]{};
    std::size_t n = 0;
    // by value: `&State != nullptr` is not a constant expression under the sanitizers
    // (-fno-delete-null-pointer-checks), so no pointer to a global is tested here
    input_gradients wants({});
    (
        [&] {
            if constexpr (std::is_same_v<std::remove_cvref_t<decltype(State)>, input_gradients>) wants = State;
            else s[n++] = &State;
        }(),
        ...);
    return train_model(Loss, s, n, wants);
}
// The input_gradients among State (none listed when there is none).
template <const auto&... State>
constexpr input_gradients wanted_inputs() {
    input_gradients wants({});
    (
        [&] {
            if constexpr (std::is_same_v<std::remove_cvref_t<decltype(State)>, input_gradients>) wants = State;
        }(),
        ...);
    return wants;
}
// Position of input `name` among them, ~0 when it is not listed.
template <const auto&... State>
constexpr std::size_t wanted_position(std::string_view name) {
    const input_gradients w = wanted_inputs<State...>();
    for (std::size_t i = 0; i < w.n; ++i)
        if (w.names[i] == name) return i;
    return ~std::size_t(0);
}
} // namespace detail

template <class T, class Backend, const auto& Loss, const auto&... State>
class basic_train_program : public basic_program<T, Backend, model_kind::train, Loss, State...> {
    using base = basic_program<T, Backend, model_kind::train, Loss, State...>;

public:
    using typename base::io;
    using typename base::parameters;
    template <class B>
    using with_backend = basic_train_program<T, B, Loss, State...>;

    static constexpr std::size_t n_trainable = base::tab.n_wrt;
    static constexpr std::size_t n_updates = base::tab.n_updates;
    static constexpr std::size_t first_update = 1 + n_trainable;
    // Output index of the gradient of input Name (listed in an input_gradients argument).
    template <fixed_string Name>
    static constexpr std::size_t input_grad = [] {
        constexpr std::size_t k = detail::wanted_position<State...>(Name.view());
        static_assert(k != ~std::size_t(0), "ctrec: input_grad<Name>: Name is not listed in the program's input_gradients");
        return first_update + n_updates + k;
    }();

    // The trainable parameters' names, in output order.
    static constexpr auto trainable = [] {
        std::array<std::string_view, n_trainable ? n_trainable : 1> a{};
        for (std::size_t i = 0; i < n_trainable; ++i) a[i] = base::tab.name_of(base::tab.wrt[i]);
        return a;
    }();

    // One buffer holding the gradient of every trainable parameter.
    class gradients {
    public:
        static constexpr auto offsets = [] {
            std::array<std::size_t, n_trainable + 1> o{};
            std::size_t at = 0;
            for (std::size_t i = 0; i < n_trainable; ++i) o[i] = at, at += align16(base::tab.nodes[base::tab.wrt[i]].shape.size());
            o[n_trainable] = at;
            return o;
        }();
        template <fixed_string Name>
        std::span<T> get() {
            constexpr std::size_t i = base::template grad<Name> - 1;
            return get(i);
        }
        std::span<T> get(std::size_t i) { return {buf_.data() + offsets[i], base::tab.nodes[base::tab.wrt[i]].shape.size()}; }
        // Points every gradient output of io at this buffer.
        void bind(io& b) {
            for (std::size_t i = 0; i < n_trainable; ++i) b.out[1 + i] = buf_.data() + offsets[i];
        }
        // p <- p - lr * gradient, for every trainable parameter.
        void sgd(parameters& p, T lr) const {
            for (std::size_t i = 0; i < n_trainable; ++i) {
                auto w = p.get(base::param_slot(base::tab.wrt[i]));
                const T* g = buf_.data() + offsets[i];
                for (std::size_t e = 0; e < w.size(); ++e) w[e] -= lr * g[e];
            }
        }

    private:
        aligned_buffer<T> buf_{offsets[n_trainable] ? offsets[n_trainable] : 1};
    };

    // The base workspace plus room for the new state values.
    class workspace : public base::workspace {
    public:
        static constexpr auto state_offsets = [] {
            std::array<std::size_t, n_updates + 1> o{};
            std::size_t at = 0;
            for (std::size_t u = 0; u < n_updates; ++u) o[u] = at, at += align16(base::tab.nodes[base::tab.targets[u]].shape.size());
            o[n_updates] = at;
            return o;
        }();
        T* state() { return state_.data(); }

    private:
        aligned_buffer<T> state_{state_offsets[n_updates] ? state_offsets[n_updates] : 1};
    };

    // Outputs 0 (the loss) and the gradients must be bound; the state outputs are not (they go
    // to the workspace and then into p).
    static void run(parameters& p, workspace& ws, std::size_t batch, io b) {
        for (std::size_t u = 0; u < n_updates; ++u) b.out[first_update + u] = ws.state() + workspace::state_offsets[u];
        base::run(p, static_cast<typename base::workspace&>(ws), batch, b);
        for (std::size_t u = 0; u < n_updates; ++u) {
            auto dst = p.get(base::param_slot(base::tab.targets[u]));
            std::copy_n(ws.state() + workspace::state_offsets[u], dst.size(), dst.begin());
        }
    }
};

template <class T, const auto& Loss, const auto&... State>
using train_program = basic_train_program<T, cpu_backend, Loss, State...>;

// Copies every parameter of `dst` from the parameter of the same name in `src` (a training
// program's weights into a scoring program's). All names and sizes are checked before anything
// is written: on an error (naming the parameter) dst is unchanged.
template <class Src, class Dst>
void copy_parameters(const Src& src, Dst& dst) {
    std::array<std::size_t, Dst::count ? Dst::count : 1> from{};
    for (std::size_t i = 0; i < Dst::count; ++i) {
        from[i] = Src::position(Dst::names[i]);
        if (from[i] == Src::count)
            throw error("ctrec: copy_parameters: the source has no parameter '" + std::string(Dst::names[i]) + "'");
        if (Src::sizes[from[i]] != Dst::sizes[i])
            throw error("ctrec: copy_parameters: parameter '" + std::string(Dst::names[i]) + "' holds " +
                        std::to_string(Src::sizes[from[i]]) + " values in the source, " + std::to_string(Dst::sizes[i]) +
                        " in the destination");
    }
    for (std::size_t i = 0; i < Dst::count; ++i) {
        auto a = src.get(from[i]);
        auto b = dst.get(i);
        for (std::size_t k = 0; k < b.size(); ++k) b[k] = static_cast<std::remove_cvref_t<decltype(b[0])>>(a[k]);
    }
}

} // namespace ctrec

namespace ctrec::layers {

void ctrec_error_initialize_a_variable_s_declared_shape_differs_from_the_program_s();
void ctrec_error_initialize_a_kernel_norm_variable_needs_its_kernel_in_the_same_program();

// Gives every variable result R declared its initial value in the parameters of any program
// built from R's model (variables the program does not use are skipped). Each variable draws
// from its own stream, init::derive_seed(seed, name): a scoring and a training program get the
// same values. Column-norm variables are computed after all plain initializers, from the
// initial value of their kernel, which must then be in the same program.
template <const auto& R, class Params>
void initialize(Params& p, std::uint64_t seed) {
    struct entry {
        std::size_t slot = 0, of = 0;
        init::spec spec{};
        dims shape{};
    };
    static constexpr auto entries = [] {
        std::array<entry, R.n_inits ? R.n_inits : 1> a{};
        for (std::size_t i = 0; i < R.n_inits; ++i) {
            const var_init& v = R.inits[i];
            a[i].slot = Params::position(R.g.name_of(v.var));
            a[i].of = v.of == none ? Params::count + 1 : Params::position(R.g.name_of(v.of));
            a[i].spec = v.spec;
            a[i].shape = R.g.nodes[v.var].shape;
            if (a[i].slot < Params::count && Params::sizes[a[i].slot] != a[i].shape.size())
                ctrec_error_initialize_a_variable_s_declared_shape_differs_from_the_program_s();
            if (a[i].slot < Params::count && a[i].of == Params::count)
                ctrec_error_initialize_a_kernel_norm_variable_needs_its_kernel_in_the_same_program();
        }
        return a;
    }();
    using T = std::remove_cvref_t<decltype(p.data()[0])>;
    for (std::size_t i = 0; i < R.n_inits; ++i) {
        const entry& e = entries[i];
        if (e.slot >= Params::count || e.of <= Params::count) continue;
        init::fill(e.spec.get(), p.get(e.slot), e.shape, init::derive_seed(seed, Params::names[e.slot]));
    }
    for (std::size_t i = 0; i < R.n_inits; ++i) {
        const entry& e = entries[i];
        if (e.slot >= Params::count || e.of > Params::count) continue;
        auto k = p.get(e.of);
        auto g = p.get(e.slot);
        const std::size_t cols = g.size(), rows = k.size() / cols;
        for (std::size_t j = 0; j < cols; ++j) {
            double s = 0;
            for (std::size_t r = 0; r < rows; ++r) s += static_cast<double>(k[r * cols + j]) * k[r * cols + j];
            g[j] = static_cast<T>(std::sqrt(s));  // plain Euclidean norm, no epsilon (spec 2.4)
        }
    }
}

} // namespace ctrec::layers
