// The pass pipeline and the runtime contract: fusion is observable through the
// plan, scoring allocates nothing, bad runtime input throws ctrec::error and
// changes nothing, parameters are shared read-only across threads.
#include "support.hpp"

#include <atomic>
#include <cstdlib>
#include <new>
#include <thread>

// ---- allocation counting (this test binary only) ----
namespace {
std::atomic<std::size_t> g_allocs{0};
}
void* operator new(std::size_t n) {
    ++g_allocs;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace ctrec;
using test::leaf_value;

namespace {
constexpr auto x = input<"x", 32>;
constexpr auto W = param<"W", 32, 48>;
constexpr auto b = param<"b", 48>;
constexpr auto s = input<"s", 48>;
// five elementwise ops over one contraction
constexpr auto chain5 = act::relu(tanh(matmul(x, W) + b) * s - lit<0.25>);
using Chain5 = std::remove_cvref_t<decltype(chain5)>;
} // namespace

TEST_CASE("five elementwise ops over a contraction run as one pass over the output") {
    using P = plan<Chain5>;
    // add, tanh, mul, sub, relu
    static_assert(P::steps == 1, "one step for the whole chain");
    constexpr std::size_t root = P::id<Chain5>;
    CHECK(P::data.fused_contraction[root] >= 0);
    CHECK(P::fused_into(root) == 6);  // contract + add + tanh + mul + sub + relu
    CHECK(P::data.tile_elems == 0);   // no intermediate buffer at all: the GEMM epilogue writes the output
    CHECK(program<float, Chain5>::describe().find("+contract-epilogue") != std::string::npos);
    // and the fused result is right
    std::vector<double> want;
    for (std::size_t e = 0; e < 5; ++e)
        for (std::size_t n = 0; n < 48; ++n) {
            double a = leaf_value("b", n);
            for (std::size_t k = 0; k < 32; ++k) a += leaf_value("x", e * 32 + k) * leaf_value("W", k * 48 + n);
            double t = std::tanh(a) * leaf_value("s", e * 48 + n) - 0.25;
            want.push_back(t > 0 ? t : 0);
        }
    test::check_forward<Chain5>(5, want);
}

TEST_CASE("equal subexpressions are one node; parameter-only work is hoisted out of the batch loop") {
    constexpr auto h = tanh(matmul(x, W));
    using E = std::remove_cvref_t<decltype(h * h + h)>;
    using G = graph_t<E>;
    static_assert(G::size == 6);  // x, W, contract, tanh, mul, add: h appears once
    constexpr auto scaled = matmul(x, W * lit<2.0>);
    using P = plan<std::remove_cvref_t<decltype(scaled)>>;
    constexpr std::size_t wid = P::id<std::remove_cvref_t<decltype(W * lit<2.0>)>>;
    CHECK(!P::data.rec[wid].batched);
    CHECK(P::data.avail[wid] == 0);  // computed before the first pass over the batch
}

TEST_CASE("dead intermediate buffers are reused") {
    // c1 -> c2 -> c3 -> root: c1 is dead once c2 exists, so c3 can take its place
    constexpr auto V = param<"V", 48, 48>;
    constexpr auto out = matmul(matmul(matmul(matmul(x, W), V), V), V);
    using P = plan<std::remove_cvref_t<decltype(out)>>;
    std::size_t total = 0;
    for (std::size_t i = 0; i < P::size; ++i)
        if (P::data.offset[i] >= 0 && P::data.rec[i].batched) total += detail::align16(P::data.rec[i].shape.size());
    CHECK(total == 3 * 48);
    CHECK(P::data.tile_elems == 2 * 48);
}

TEST_CASE("scoring and gradient evaluation allocate nothing") {
    using M = program<float, Chain5>;
    using G = grad_program<float, Chain5>;
    M::parameters p;
    M::workspace ws;
    G::parameters gp;
    G::workspace gws;
    std::vector<float> xv(100 * 32, 0.5f), sv(100 * 48, 0.25f), y(100 * 48), ct(100 * 48, 1.0f), dx(100 * 32),
        dW(32 * 48), db(48), ds(100 * 48);
    M::io io;
    io.input<"x">(xv.data()).input<"s">(sv.data()).output<0>(y.data());
    G::io gio;
    gio.input<"x">(xv.data()).input<"s">(sv.data()).input<"cotangent">(ct.data()).output<0>(y.data());
    gio.output<G::grad<"x">>(dx.data()).output<G::grad<"W">>(dW.data()).output<G::grad<"b">>(db.data());
    gio.output<G::grad<"s">>(ds.data());
    M::run(p, ws, 100, io);  // warm up
    std::size_t before = g_allocs.load();
    for (int r = 0; r < 3; ++r) {
        M::run(p, ws, 100, io);
        M::run(p, ws, 1, io);
        G::run(gp, gws, 100, gio);
    }
    CHECK(g_allocs.load() == before);
}

TEST_CASE("results do not depend on how the batch is tiled") {
    using M = program<double, Chain5>;
    constexpr std::size_t n = 3 * M::tile + 5;
    auto all = test::run<double, Chain5>(n);
    for (std::size_t e : {std::size_t(0), M::tile - 1, M::tile, n - 1}) {
        auto one = test::run<double, Chain5>(1, [&](std::string_view name, std::size_t i) {
            return name == "x" ? leaf_value(name, e * 32 + i) : name == "s" ? leaf_value(name, e * 48 + i) : leaf_value(name, i);
        });
        for (std::size_t k = 0; k < 48; ++k) CHECK(one[k] == all[e * 48 + k]);
    }
}

TEST_CASE("bad runtime input throws ctrec::error naming the tensor and changes nothing") {
    constexpr auto T = param<"table", 10, 4>;
    constexpr auto id = ids<"user_ids", 2>;
    using E = std::remove_cvref_t<decltype(gather(T, id) * lit<2.0>)>;
    using M = program<float, E>;
    M::parameters p;
    M::workspace ws;
    std::vector<std::int32_t> good{1, 2, 3, 4}, bad{1, 2, 10, 4}, neg{-1, 0, 0, 0};
    std::vector<float> y(2 * 8, -7.0f);
    M::io io;
    io.output<0>(y.data());
    CHECK_THROWS_WITH_AS(M::run(p, ws, 2, io), doctest::Contains("user_ids"), ctrec::error);
    io.index<"user_ids">(bad.data());
    CHECK_THROWS_WITH_AS(M::run(p, ws, 2, io), doctest::Contains("'user_ids' example 1 position 0 holds 10, expected 0 <= id < 10"),
                         ctrec::error);
    for (float v : y) CHECK(v == -7.0f);  // validation happens before any output is written
    io.index<"user_ids">(neg.data());
    CHECK_THROWS_AS(M::run(p, ws, 2, io), ctrec::error);
    io.index<"user_ids">(good.data());
    M::run(p, ws, 2, io);
    CHECK(y[0] == 0.0f);

    std::vector<float> three(3);
    CHECK_THROWS_WITH_AS(p.set("table", three), doctest::Contains("'table' holds 40 values, got 3"), ctrec::error);
    CHECK_THROWS_WITH_AS(p.set("tabel", three), doctest::Contains("no parameter named 'tabel'"), ctrec::error);
    std::vector<float> ok(40, 1.5f);
    p.set("table", ok);
    CHECK(p.get<"table">()[39] == 1.5f);
}

TEST_CASE("threads share one parameter set, each with its own workspace") {
    using M = program<float, Chain5>;
    M::parameters p;
    for (std::size_t i = 0; i < 32 * 48; ++i) p.get<"W">()[i] = static_cast<float>(leaf_value("W", i));
    for (std::size_t i = 0; i < 48; ++i) p.get<"b">()[i] = static_cast<float>(leaf_value("b", i));
    const M::parameters& shared = p;
    std::vector<float> xv(64 * 32), sv(64 * 48);
    for (std::size_t i = 0; i < xv.size(); ++i) xv[i] = static_cast<float>(leaf_value("x", i));
    for (std::size_t i = 0; i < sv.size(); ++i) sv[i] = static_cast<float>(leaf_value("s", i));
    std::vector<float> ref(64 * 48);
    {
        M::workspace ws;
        M::io io;
        io.input<"x">(xv.data()).input<"s">(sv.data()).output<0>(ref.data());
        M::run(shared, ws, 64, io);
    }
    std::vector<std::vector<float>> outs(4, std::vector<float>(64 * 48));
    std::vector<std::thread> th;
    for (std::size_t t = 0; t < 4; ++t)
        th.emplace_back([&, t] {
            M::workspace ws;
            M::io io;
            io.input<"x">(xv.data()).input<"s">(sv.data()).output<0>(outs[t].data());
            for (int r = 0; r < 50; ++r) M::run(shared, ws, 64, io);
        });
    for (auto& t : th) t.join();
    for (auto& o : outs) CHECK(o == ref);
}

TEST_CASE("dy . W^T reads W as stored: packed strips, no transposed copy") {
    using G = grad_program<float, Chain5>;
    // no transpose step, no derived copy of W
    CHECK(G::plan_type::derived_steps == 0);
    CHECK(G::describe().find("transpose") == std::string::npos);
    // every per-example contraction of the gradient program either streams along N or
    // reads B along k (sbk == 1), which the packed-B kernel handles
    bool all_fast = true;
    [&]<class... N>(tlist<N...>) {
        (([&] {
             if constexpr (N::node_kind == kind::contract && N::batched) {
                 constexpr contract_plan cp = contract_plan_of<N>;
                 all_fast = all_fast && ((cp.n.sb == 1 && cp.n.sc == 1) || (cp.k.sb == 1 && cp.n.sc == 1));
             }
         }()),
         ...);
    }(G::nodes{});
    CHECK(all_fast);
    // the kernel choice for dy (64 x 48) . W^T (48 x 80): packed_b
    CHECK(cpu::choose_gemm<float>(cpu::gemm_args{64, 80, 48, 48, 1, 1, 48, 80, 1}) == cpu::gemm_kernel::packed_b);
}
