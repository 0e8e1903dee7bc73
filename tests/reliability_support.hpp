#pragma once
// Issue 15's per-layer guarantees, as checks any test file can run on a program:
//   check_batch_invariance<P>(n)  every batched output of every example is bit-identical
//                                 whether the example is scored alone, in a batch of n, or at
//                                 another position of a batch (rotated order): tiles, GEMM row
//                                 blocks and kernel choices must not change its arithmetic.
//   check_no_allocation<P>(n)     run() performs no heap allocation after setup, at batch n,
//                                 batch 1 and on const parameters (the test binary counts every
//                                 operator new: define CTREC_TEST_COUNT_ALLOCATIONS in exactly one
//                                 file of the binary before including this header; malloc,
//                                 calloc, realloc and aligned_alloc are counted too outside the
//                                 sanitizer builds).
#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "support.hpp"

namespace test {
inline std::atomic<std::size_t> allocations{0};
} // namespace test

#ifdef CTREC_TEST_COUNT_ALLOCATIONS
// malloc and its relatives too (a library could call them directly), through glibc's own entry
// points; not under the sanitizers, whose runtimes own malloc.
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void* malloc(std::size_t n) {
    test::allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t s) {
    test::allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_calloc(n, s);
}
void* realloc(void* p, std::size_t n) {
    test::allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) {
    test::allocations.fetch_add(1, std::memory_order_relaxed);
    return __libc_memalign(a, n);
}
int posix_memalign(void** p, std::size_t a, std::size_t n) {
    test::allocations.fetch_add(1, std::memory_order_relaxed);
    *p = __libc_memalign(a, n);
    return *p ? 0 : 12;  // ENOMEM
}
}
#endif
void* operator new(std::size_t n) {
    test::allocations.fetch_add(1, std::memory_order_relaxed);  // and once more if malloc is hooked
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    test::allocations.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace test {

// Fills P's leaves; BatchNorm's moving variances are made positive (leaf values lie in [-1, 1]),
// so that every output is a number and a comparison means something.
template <class P>
void fill_positive_variances(leaves& L, std::size_t n) {
    fill<P>(L, n);
    for (auto& [name, v] : L.v)
        if (name.find("variance") != std::string::npos)
            for (double& x : v) x = 0.5 + std::abs(x);
}

// A batch of n examples of `all`: example e is example pick(e) of `all`; unbatched leaves are shared.
template <class P, class Pick>
leaves picked(leaves& all, std::size_t n, Pick pick) {
    leaves r = all;
    for (std::size_t k = 0; k < P::n_inputs; ++k) {
        const auto id = P::input_ids[k];
        const auto& node = P::tab.nodes[id];
        if (!node.batched) continue;
        const std::size_t sz = node.shape.size();
        const auto& src = all[P::tab.name_of(id)];
        auto& dst = r[P::tab.name_of(id)];
        dst.resize(n * sz);
        for (std::size_t e = 0; e < n; ++e)
            for (std::size_t i = 0; i < sz; ++i) dst[e * sz + i] = src[pick(e) * sz + i];
    }
    return r;
}

template <class P>
void check_batch_invariance(std::size_t n = 70) {
    leaves all;
    fill_positive_variances<P>(all, n);
    const auto full = run<P>(all, n);
    std::size_t non_finite = 0;
    for (const auto& o : full)
        for (double v : o) non_finite += !std::isfinite(v);
    REQUIRE(non_finite == 0);
    const std::size_t shift = 29;
    leaves rot_leaves = picked<P>(all, n, [&](std::size_t e) { return (e + shift) % n; });
    const auto rot = run<P>(rot_leaves, n);
    std::size_t compared = 0, differ_alone = 0, differ_moved = 0;
    for (std::size_t e = 0; e < n; ++e) {
        const std::size_t at = (e + n - shift) % n;  // e's position in the rotated batch
        for (std::size_t r = 0; r < P::n_outputs; ++r) {
            if (!P::tab.nodes[P::tab.roots[r]].batched) continue;
            const std::size_t sz = full[r].size() / n;
            for (std::size_t i = 0; i < sz; ++i) differ_moved += rot[r][at * sz + i] != full[r][e * sz + i];
        }
        // Each example alone: every one, except at -O0 under ASan (CI's build-asan, where a
        // single-example run is mostly setup): the first and last of each tile, and every 9th.
#if defined(__SANITIZE_ADDRESS__)
        if (e % 9 != 0 && e % P::tile != 0 && e % P::tile != P::tile - 1 && e != n - 1) continue;
#endif
        leaves one_leaves = picked<P>(all, 1, [e](std::size_t) { return e; });
        const auto one = run<P>(one_leaves, 1);
        for (std::size_t r = 0; r < P::n_outputs; ++r) {
            if (!P::tab.nodes[P::tab.roots[r]].batched) continue;
            const std::size_t sz = one[r].size();
            for (std::size_t i = 0; i < sz; ++i) {
                ++compared;
                differ_alone += one[r][i] != full[r][e * sz + i];
            }
        }
    }
    INFO("batch " << n << " (tile " << P::tile << "): " << compared << " values compared");
    CHECK(compared > 0);
    CHECK(differ_alone == 0);  // alone vs in the batch
    CHECK(differ_moved == 0);  // at another position of a batch of the same size
}

// Binds every leaf, runs once (setup), then counts allocations over runs at batch n, batch 1 and
// on const parameters.
template <class P>
void check_no_allocation(std::size_t n = 70) {
    using T = typename P::element_type;
    leaves L;
    fill_positive_variances<P>(L, n);
    typename P::parameters p;
    for (std::size_t k = 0; k < P::n_params; ++k) {
        auto w = p.get(k);
        const auto& x = L[P::parameters::names[k]];
        for (std::size_t e = 0; e < w.size(); ++e) w[e] = static_cast<T>(x[e]);
    }
    std::vector<std::vector<T>> in(P::n_inputs), out(P::n_outputs);
    typename P::io io;
    for (std::size_t k = 0; k < P::n_inputs; ++k) {
        const auto& x = L[P::tab.name_of(P::input_ids[k])];
        in[k].assign(x.begin(), x.end());
        io.in[k] = in[k].data();
    }
    for (std::size_t r = 0; r < P::n_outputs; ++r) {
        const auto& node = P::tab.nodes[P::tab.roots[r]];
        out[r].assign(node.shape.size() * (node.batched ? n : 1), T(0));
        io.out[r] = out[r].data();
    }
    typename P::workspace ws;
    P::run(p, ws, n, io);  // setup done: from here on nothing may allocate
    const std::size_t before = allocations.load();
    for (std::uint64_t step = 1; step <= 2; ++step) {
        io.seed = step;
        P::run(p, ws, n, io);
        P::run(p, ws, 1, io);
        if constexpr (requires { P::run(static_cast<const typename P::parameters&>(p), ws, n, io); })
            P::run(static_cast<const typename P::parameters&>(p), ws, n, io);  // scoring on shared weights
    }
    CHECK(allocations.load() == before);
}

// Both checks for the scoring program of Y and both for its gradient program (d Y / d inputs per
// example must not depend on the batch either; the parameter gradients are batch sums).
template <const auto& Y>
void check_layer_guarantees() {
    using F = ctrec::program<float, Y>;
    using G = ctrec::grad_program<float, Y>;
    SUBCASE("forward: batch invariance") { check_batch_invariance<F>(); }
    SUBCASE("forward: no allocation") { check_no_allocation<F>(); }
    SUBCASE("backward: batch invariance of the per-example outputs") { check_batch_invariance<G>(); }
    SUBCASE("backward: no allocation") { check_no_allocation<G>(); }
}

} // namespace test
