#pragma once
// Programs that evaluate derivatives next to the value, planned and fused
// together with it (forward values are shared with the derivative graph).
//
// grad_program<T, Root>: outputs 0 = Root, then dRoot/dLeaf for every input and
//   parameter leaf (in graph order). A per-example Root is seeded by the input
//   "cotangent" (shape of Root, per example) and parameter gradients are summed
//   over the batch; an unbatched scalar Root (e.g. batch_mean(loss) + penalty) is
//   seeded by 1, so the outputs are its plain gradients.
// jvp_program<T, Root>: outputs 0 = Root, 1 = its directional derivative along
//   the tangent leaves "d.<name>" (inputs: per example; parameters: unbatched).
#include "ctrec/ad/jvp.hpp"
#include "ctrec/ad/vjp.hpp"
#include "ctrec/program.hpp"

namespace ctrec {

namespace detail {
template <class T, class Roots> struct program_of;
template <class T, class... R> struct program_of<T, tlist<R...>> { using type = basic_program<T, R...>; };

// Derivatives are taken of the rewritten root (core/rewrite.hpp), so the derivative graphs
// inherit the rewrites; basic_program rewrites the derivative roots again.
template <class UserRoot>
struct grad_roots {
    using Root = rewrite_t<UserRoot>;
    static_assert(Root::batched || Root::shape.size() == 1,
                  "ctrec: grad_program needs a per-example root or an unbatched scalar (a loss)");
    using G = graph_t<Root>;
    using leaves = tl_concat_t<tl_filter_t<is_input_leaf, G>, tl_filter_t<is_param_leaf, G>>;
    template <class L> using grad = ad::cotangent_t<G, L>;
    using type = decltype([]<class... L>(tlist<L...>) { return tlist<Root, grad<L>...>{}; }(leaves{}));
};
} // namespace detail

template <class T, node Root>
struct grad_program : detail::program_of<T, typename detail::grad_roots<std::remove_cvref_t<Root>>::type>::type {
    using leaves = typename detail::grad_roots<std::remove_cvref_t<Root>>::leaves;
    // Output index of the gradient w.r.t. the input or parameter called Name.
    template <fixed_string Name>
    static constexpr std::size_t grad = [] {
        constexpr std::size_t i = detail::find_leaf_v<Name, leaves>;
        static_assert(detail::no_such_tensor<Name, (i < leaves::size)>::value);
        return 1 + i;
    }();
};

template <class T, node Root>
struct jvp_program : program<T, Root, ad::tangent_t<rewrite_t<std::remove_cvref_t<Root>>>> {};

} // namespace ctrec
