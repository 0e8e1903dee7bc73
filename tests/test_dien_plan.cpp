// DIEN (spec 2.3) plan: the node count of a forward and of a gradient program does not grow
// with T (a T = 50 model plans exactly as many nodes as T = 4: the recurrences are scan
// nodes, not unrolled), and the scans keep O(T U) per example (their records are the BPTT
// storage).
#include "support.hpp"

#include "ctrec/layers/dien.hpp"

using namespace ctrec;
using namespace ctrec::layers;

namespace {
constexpr std::size_t T = 4, E = 3, U = 5;
constexpr auto q = input<"q", U>;
constexpr auto k = input<"k", T, E>;
constexpr auto mask = input<"mask", T>;
template <class R>
using out_t = std::remove_cvref_t<decltype(R::out)>;
} // namespace

TEST_CASE("dien: the plan does not grow with T; the scan keeps O(T U) per example") {
    constexpr auto k50 = input<"k", 50, E>;
    using F4 = program<float, out_t<decltype(dien<"d", {.num_units = U}>(q, k))>>;
    using F50 = program<float, out_t<decltype(dien<"d", {.num_units = U}>(q, k50))>>;
    static_assert(F4::plan_type::size == F50::plan_type::size);
    using G4 = grad_program<float, out_t<decltype(dien<"d", {.num_units = U}>(q, k, mask))>>;
    using G50 = grad_program<float, out_t<decltype(dien<"d", {.num_units = U}>(q, input<"k", 50, E>, input<"mask", 50>))>>;
    static_assert(G4::plan_type::size == G50::plan_type::size);
    CHECK(F4::plan_type::size == F50::plan_type::size);
    // the scan nodes: (T, 5U) and (T, 4U) records; their reverse rows (T, 4U), (T, 3U + 1)
    std::size_t scans = 0;
    [&]<class... N>(tlist<N...>) {
        (([&] {
             if constexpr (N::node_kind == kind::scan) {
                 ++scans;
                 CHECK(N::shape.size() == 50 * (N::cell == scan_cell::keras_gru ? 5 : 4) * U);
             } else if constexpr (N::node_kind == kind::scan_vjp) {
                 ++scans;
                 CHECK(N::shape.size() == 50 * (N::cell == scan_cell::keras_gru ? 4 * U : 3 * U + 1));
             }
         }()),
         ...);
    }(typename G50::nodes{});
    CHECK(scans == 4);  // two scans, two reverse scans: nothing unrolled
    // the workspace grows linearly in T (per-example buffers), not with the node count
    CHECK(F50::workspace_size < 50 * F4::workspace_size);
}
