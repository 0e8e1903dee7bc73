#pragma once
// train_program<T, Loss, Updates>: one training step of a model. Evaluates the loss,
// its gradient w.r.t. every input and parameter, and the state updates a model declares
// (BatchNorm moving statistics, Dense's relu monitor: a layer result's `updates`), then
// writes the new state into the parameters. Gradients are outputs; applying them is the
// optimizer's business (train/sgd.hpp).
//
//   constexpr auto r = layers::mlp<"mlp", cfg, layers::mode::train>(x);
//   constexpr auto loss = batch_mean(act::softplus(r.out) - label * r.out) + r.penalty;
//   using Step = train_program<float, decltype(loss), decltype(r)::updates>;
//   Step::io io; io.input<"x">(x).input<"label">(y).output<0>(&l).output<Step::grad<"mlp/dense_0/kernel">>(g0) ...
//   Step::run(p, ws, batch, io);   // p's state variables now hold their new values
//
// Loss is an unbatched scalar (seeded with 1) or a per-example value (seeded by the input
// "cotangent", as grad_program). Gradients are given for the trainable parameters only:
// parameter leaves whose gradient is not identically zero. State values are computed from the parameters as they
// were before the step, and written after everything else has been evaluated.
#include <algorithm>
#include <array>
#include <span>

#include "ctrec/ad/programs.hpp"
#include "ctrec/layers/layer.hpp"

namespace ctrec {

namespace detail {
// The trainable parameters of Loss: parameter leaves with a non-zero gradient (a
// stop_gradient'ed variable such as a fixed kernel norm or a moving statistic has none).
template <class Loss>
struct trainable_of {
    using G = graph_t<rewrite_t<Loss>>;  // the graph that is differentiated (rewrite.hpp)
    template <class P>
    struct has_grad : std::bool_constant<!is_zero_v<ad::cotangent_t<G, P>>> {};
    using type = tl_filter_t<has_grad, tl_filter_t<is_param_leaf, G>>;
};
template <class Loss, class Leaves, class Updates> struct train_roots;
template <class Loss, class... P, class... U>
struct train_roots<Loss, tlist<P...>, tlist<U...>> {
    static_assert(Loss::batched || Loss::shape.size() == 1,
                  "ctrec: train_program needs a per-example loss or an unbatched scalar loss");
    using G = graph_t<rewrite_t<Loss>>;
    using type = tlist<rewrite_t<Loss>, ad::cotangent_t<G, P>..., typename U::value...>;
};
} // namespace detail

template <class T, node Loss, class Updates = tlist<>>
class train_program
    : public detail::program_of<T, typename detail::train_roots<std::remove_cvref_t<Loss>,
                                                                 typename detail::trainable_of<std::remove_cvref_t<Loss>>::type,
                                                                 Updates>::type>::type {
    using L = std::remove_cvref_t<Loss>;
    using leaves = typename detail::trainable_of<L>::type;
    using base = typename detail::program_of<T, typename detail::train_roots<L, leaves, Updates>::type>::type;
    static constexpr std::size_t n_updates = Updates::size;
    static constexpr std::size_t first_update = 1 + leaves::size;

    static constexpr auto update_offsets = []<class... U>(tlist<U...>) {
        std::array<std::size_t, sizeof...(U) + 1> o{};
        std::size_t at = 0, i = 0;
        ((o[i++] = at, at += U::value::shape.size()), ...);
        o[i] = at;
        return o;
    }(Updates{});

public:
    using typename base::io;
    using typename base::parameters;

    // The trainable parameters, in output order (output 1 + i is the gradient of the i-th).
    using trainable = leaves;
    // Output index of the gradient w.r.t. the trainable parameter called Name.
    template <fixed_string Name>
    static constexpr std::size_t grad = [] {
        constexpr std::size_t i = detail::find_leaf_v<Name, leaves>;
        static_assert(detail::no_such_tensor<Name, (i < leaves::size)>::value);
        return 1 + i;
    }();

    // One buffer holding the gradient of every trainable parameter, bound in one call.
    class gradients {
    public:
        static constexpr auto offsets = []<class... P>(tlist<P...>) {
            std::array<std::size_t, sizeof...(P) + 1> o{};
            std::size_t at = 0, i = 0;
            ((o[i++] = at, at += detail::align16(P::shape.size())), ...);
            o[i] = at;
            return o;
        }(leaves{});
        template <fixed_string Name>
        std::span<T> get() {
            constexpr std::size_t i = grad<Name> - 1;
            return {buf_.data() + offsets[i], tl_at_t<i, leaves>::shape.size()};
        }
        // Points every gradient output of io at this buffer.
        void bind(io& b) {
            for (std::size_t i = 0; i < leaves::size; ++i) b.out[1 + i] = buf_.data() + offsets[i];
        }
        // p <- p - lr * gradient, for every trainable parameter.
        void sgd(parameters& p, T lr) const {
            [&]<class... P>(tlist<P...>) {
                std::size_t i = 0;
                (([&] {
                     auto w = p.template get<P::name>();
                     const T* g = buf_.data() + offsets[i++];
                     for (std::size_t e = 0; e < w.size(); ++e) w[e] -= lr * g[e];
                 }()),
                 ...);
            }(leaves{});
        }

    private:
        aligned_buffer<T> buf_{offsets[leaves::size] ? offsets[leaves::size] : 1};
    };

    // The base workspace plus room for the new state values.
    class workspace : public base::workspace {
    public:
        T* state() { return state_.data(); }

    private:
        aligned_buffer<T> state_{update_offsets[n_updates] ? update_offsets[n_updates] : 1};
    };

    // Outputs 0 (the loss) and the gradients must be bound; the state outputs are not
    // (they go to the workspace and then into p).
    static void run(parameters& p, workspace& ws, std::size_t batch, io b) {
        for (std::size_t u = 0; u < n_updates; ++u) b.out[first_update + u] = ws.state() + update_offsets[u];
        base::run(p, static_cast<typename base::workspace&>(ws), batch, b);
        [&]<class... U>(tlist<U...>) {
            std::size_t u = 0;
            ((std::copy_n(ws.state() + update_offsets[u++], U::value::shape.size(), p.template get<U::name>().begin())), ...);
        }(Updates{});
    }
};

} // namespace ctrec
