// The plan and the runtime contract, and contractions, ported from the
// type core's test_plan.cpp, test_einsum_order.cpp and test_contract.cpp: fusion is observable
// through the plan (GEMM epilogues, inlined elementwise nodes, buffer reuse, derived parameters),
// scoring and gradient evaluation allocate nothing, results do not depend on tiling, bad runtime
// input throws ctrec::error and changes nothing, parameters are shared read-only across threads;
// every GEMM path (vector along N, dot products along K, packed B, scalar fallback, per-example
// groups, batch as M / as K, k chunks, edge columns, row remainders, large B) against naive loops,
// and derivatives of both operands.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#include "ref_core.hpp"

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

namespace f = ctrec;
using ctrec::make_dims;
using flat_core::check_ad;
using flat_core::check_close;
using flat_core::check_forward;
using test::leaf_value;

namespace {
template <class P>
constexpr std::size_t count_op(f::opcode op) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < P::size; ++i) n += P::tab.nodes[i].op == op;
    return n;
}
template <class P>
constexpr std::size_t first_op(f::opcode op) {
    std::size_t i = 0;
    while (i < P::size && P::tab.nodes[i].op != op) ++i;
    return i;
}
} // namespace

// =================================================================================================
// plan and runtime contract (test_plan.cpp)
// =================================================================================================
namespace {
constexpr auto x = f::input<"x", 32>;
constexpr auto W = f::param<"W", 32, 48>;
constexpr auto b = f::param<"b", 48>;
constexpr auto s = f::input<"s", 48>;
// five elementwise ops over one contraction
constexpr auto chain5 = f::relu(f::tanh(f::matmul(x, W) + b) * s - f::lit<0.25>);

std::vector<double> chain5_reference(std::size_t batch, const flat_core::value_fn& v = leaf_value) {
    std::vector<double> want;
    for (std::size_t e = 0; e < batch; ++e)
        for (std::size_t n = 0; n < 48; ++n) {
            double a = v("b", n);
            for (std::size_t k = 0; k < 32; ++k) a += v("x", e * 32 + k) * v("W", k * 48 + n);
            const double t = std::tanh(a) * v("s", e * 48 + n) - 0.25;
            want.push_back(t > 0 ? t : 0);
        }
    return want;
}
} // namespace

TEST_CASE("five elementwise ops over a contraction run as one pass over the output") {
    using P = f::program<float, chain5>;
    // add, tanh, mul, sub, relu
    static_assert(P::pl.steps == 1, "one step for the whole chain");
    constexpr std::size_t root = P::tab.roots[0];
    CHECK(P::pl.fused_contraction[root] >= 0);
    CHECK(P::tab.nodes[static_cast<std::size_t>(P::pl.fused_contraction[root])].op == f::opcode::contract);
    std::size_t fused = 0;  // nodes evaluated by the root's step
    for (std::size_t i = 0; i < P::size; ++i) fused += !f::is_leaf(P::tab.nodes[i].op) && P::pl.absorber[i] == int(root);
    CHECK(fused == 6);  // contract + add + tanh + mul + sub + relu
    CHECK(P::pl.tile_elems == 0);  // no intermediate buffer at all: the GEMM epilogue writes the output
    // and the fused result is right
    check_forward<chain5>(5, chain5_reference(5));
}

namespace {
constexpr auto h = f::tanh(f::matmul(x, W));
constexpr auto hh = h * h + h;
constexpr auto W2x = W * f::lit<2.0>;
constexpr auto scaled = f::matmul(x, W2x);
} // namespace

TEST_CASE("equal subexpressions are one node; parameter-only work is hoisted out of the batch loop") {
    static_assert(hh.g.n == 6);  // x, W, contract, tanh, mul, add: h appears once
    static_assert(f::program<double, hh>::size == 6);
    using P = f::program<double, scaled>;
    constexpr std::size_t wid = first_op<P>(f::opcode::mul);
    REQUIRE(wid < P::size);
    CHECK(!P::tab.nodes[wid].batched);
    CHECK(P::pl.avail[wid] == 0);  // computed before the first pass over the batch
    CHECK(P::pl.derived[wid]);     // by parameters::prepare(), once per change
    // and the result is right
    std::vector<double> want;
    for (std::size_t e = 0; e < 3; ++e)
        for (std::size_t n = 0; n < 48; ++n) {
            double a = 0;
            for (std::size_t k = 0; k < 32; ++k) a += leaf_value("x", e * 32 + k) * 2 * leaf_value("W", k * 48 + n);
            want.push_back(a);
        }
    check_forward<scaled>(3, want);
}

namespace {
// c1 -> c2 -> c3 -> root: c1 is dead once c2 exists, so c3 can take its place
constexpr auto V = f::param<"V", 48, 48>;
constexpr auto chain4 = f::matmul(f::matmul(f::matmul(f::matmul(x, W), V), V), V);
} // namespace

TEST_CASE("dead intermediate buffers are reused") {
    using P = f::program<double, chain4>;
    std::size_t total = 0;
    for (std::size_t i = 0; i < P::size; ++i)
        if (P::pl.offset[i] >= 0 && P::tab.nodes[i].batched) total += f::align16(P::tab.nodes[i].shape.size());
    CHECK(total == 3 * 48);
    CHECK(P::pl.tile_elems == 2 * 48);
}

TEST_CASE("scoring and gradient evaluation allocate nothing") {
    using M = f::program<float, chain5>;
    using G = f::grad_program<float, chain5>;
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
    const std::size_t before = g_allocs.load();
    for (int r = 0; r < 3; ++r) {
        M::run(p, ws, 100, io);
        M::run(p, ws, 1, io);
        M::run(static_cast<const M::parameters&>(p), ws, 100, io);
        G::run(gp, gws, 100, gio);
    }
    CHECK(g_allocs.load() == before);
}

TEST_CASE("results do not depend on how the batch is tiled") {
    using M = f::program<double, chain5>;
    constexpr std::size_t n = 3 * M::tile + 5;
    const auto all = flat_core::run<M>(n);
    for (std::size_t e : {std::size_t(0), M::tile - 1, M::tile, n - 1}) {
        const auto one = flat_core::run<M>(1, [&](std::string_view name, std::size_t i) {
            return name == "x" ? leaf_value(name, e * 32 + i) : name == "s" ? leaf_value(name, e * 48 + i) : leaf_value(name, i);
        });
        for (std::size_t k = 0; k < 48; ++k) CHECK(one[k] == all[e * 48 + k]);
    }
}

namespace {
constexpr auto table_model = f::matmul(f::input<"user_vec", 10>, f::param<"table", 10, 4>) * f::lit<2.0>;
} // namespace

TEST_CASE("bad runtime input throws ctrec::error naming the tensor and changes nothing") {
    // (the type core's id range checks are about gather, which the core does not have)
    using M = f::program<float, table_model>;
    M::parameters p;
    M::workspace ws;
    std::vector<float> uv(2 * 10);
    for (std::size_t i = 0; i < uv.size(); ++i) uv[i] = static_cast<float>(leaf_value("user_vec", i));
    std::vector<float> y(2 * 4, -7.0f);
    M::io io;
    io.output<0>(y.data());
    CHECK_THROWS_WITH_AS(M::run(p, ws, 2, io), doctest::Contains("user_vec"), ctrec::error);
    for (float v : y) CHECK(v == -7.0f);  // validation happens before any output is written
    M::io unbound_out;
    unbound_out.input<"user_vec">(uv.data());
    CHECK_THROWS_WITH_AS(M::run(p, ws, 2, unbound_out), doctest::Contains("output 0 is not bound"), ctrec::error);
    io.input<"user_vec">(uv.data());
    M::run(p, ws, 2, io);
    CHECK(y[0] == 0.0f);  // parameters start at zero

    std::vector<float> three(3);
    CHECK_THROWS_WITH_AS(p.set("table", three), doctest::Contains("'table' holds 40 values, got 3"), ctrec::error);
    CHECK_THROWS_WITH_AS(p.set("tabel", three), doctest::Contains("no parameter named 'tabel'"), ctrec::error);
    CHECK(p.get<"table">()[0] == 0.0f);  // a rejected set changes nothing
    std::vector<float> ok(40, 1.5f);
    p.set("table", ok);
    CHECK(p.get<"table">()[39] == 1.5f);
    // const parameters changed since prepare() are refused, the outputs untouched
    std::fill(y.begin(), y.end(), -7.0f);
    CHECK_THROWS_WITH_AS(M::run(static_cast<const M::parameters&>(p), ws, 2, io), doctest::Contains("prepare()"), ctrec::error);
    for (float v : y) CHECK(v == -7.0f);
    p.prepare();
    M::run(static_cast<const M::parameters&>(p), ws, 2, io);
    double want = 0;
    for (std::size_t i = 0; i < 10; ++i) want += 2 * 1.5 * double(uv[i]);
    CHECK(double(y[0]) == doctest::Approx(want).epsilon(1e-6));
}

TEST_CASE("threads share one parameter set, each with its own workspace") {
    using M = f::program<float, chain5>;
    M::parameters p;
    for (std::size_t i = 0; i < 32 * 48; ++i) p.get<"W">()[i] = static_cast<float>(leaf_value("W", i));
    for (std::size_t i = 0; i < 48; ++i) p.get<"b">()[i] = static_cast<float>(leaf_value("b", i));
    p.prepare();
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
    using G = f::grad_program<float, chain5>;
    // no derived copy of W (the core has no transpose node at all)
    CHECK(G::pl.derived_steps == 0);
    // every per-example contraction of the gradient program either streams along N or
    // reads B along k (sbk == 1), which the packed-B kernel handles
    bool all_fast = true;
    std::size_t batched_contractions = 0;
    for (std::size_t i = 0; i < G::size; ++i) {
        const auto& r = G::tab.nodes[i];
        if (r.op != f::opcode::contract || !r.batched) continue;
        const auto& na = G::tab.nodes[G::tab.operand(i, 0)];
        const auto& nb = G::tab.nodes[G::tab.operand(i, 1)];
        const ctrec::contract_plan cp = ctrec::plan_contraction(r.spec, na.shape, nb.shape, na.batched, nb.batched, r.batched);
        ++batched_contractions;
        all_fast = all_fast && ((cp.n.sb == 1 && cp.n.sc == 1) || (cp.k.sb == 1 && cp.n.sc == 1));
    }
    CHECK(batched_contractions == 2);  // x W and dz W^T
    CHECK(all_fast);
    // the kernel choice for dy (64 x 48) . W^T (48 x 80): packed_b
    CHECK(ctrec::cpu::choose_gemm<float>(ctrec::cpu::gemm_args{64, 80, 48, 48, 1, 1, 48, 80, 1}) == ctrec::cpu::gemm_kernel::packed_b);
}

// =================================================================================================
// einsum order (test_einsum_order.cpp). The core's einsum takes two operands: a product of
// three or more is written as a tree of two-operand einsums in the order the type core chose
// (its FLOP-minimising search has no flat counterpart). Checked: the values of those trees against
// the naive multi-operand sums, derivatives, that the cheap order keeps the workspace small, and
// that a product of parameters is hoisted out of the batch.
// =================================================================================================
namespace {
// true when no node of program M has per-example shape (a, b)
template <class M>
bool no_node_shaped(std::size_t a, std::size_t b) {
    for (std::size_t i = 0; i < M::size; ++i) {
        const auto& r = M::tab.nodes[i];
        if (r.shape.rank == 2 && r.shape.d[0] == a && r.shape.d[1] == b) return false;
    }
    return true;
}
double v(std::string_view n, std::size_t i) { return leaf_value(n, i); }

constexpr std::size_t EN = 39, EK = 16, EC = 8;
constexpr auto eX = f::input<"X", EN, EK>;
constexpr auto eC = f::param<"C", EN, EC>;
// "mk,nk,nc->mc" as X . (X^T C): 4 N K C flops, never the N x N matrix
constexpr auto xxc = f::einsum("mk,kc->mc", eX, f::einsum("nk,nc->kc", eX, eC));
constexpr auto eX2 = f::input<"X", 2, 64>;
constexpr auto eC2 = f::param<"C", 2, 64>;
// with few fields and wide embeddings: (X X^T) C
constexpr auto gram_first = f::einsum("mn,nc->mc", f::einsum("mk,nk->mn", eX2, eX2), eC2);
constexpr auto cA = f::input<"A", 10, 20>;
constexpr auto cB = f::input<"B", 20, 5>;
constexpr auto cC = f::input<"C", 5, 30>;
constexpr auto chain_abc = f::einsum("ik,kl->il", f::einsum("ij,jk->ik", cA, cB), cC);  // (A B) C
constexpr auto ex = f::input<"x", 32>;
constexpr auto eW1 = f::param<"W1", 32, 32>;
constexpr auto eW2 = f::param<"W2", 32, 32>;
constexpr auto x_w1w2 = f::einsum("i,ik->k", ex, f::einsum("ij,jk->ik", eW1, eW2));  // x (W1 W2)
constexpr auto qa = f::input<"a", 6, 4>;
constexpr auto qb = f::param<"b", 4, 7>;
constexpr auto qc = f::input<"c", 7, 3>;
constexpr auto qd = f::param<"d", 3, 6>;
constexpr auto four = f::einsum("il,lm->im", f::einsum("ik,kl->il", f::einsum("ij,jk->ik", qa, qb), qc), qd);
} // namespace

TEST_CASE("einsum order: X . X^T . C written as X . (X^T C) never builds the N x N matrix") {
    constexpr std::size_t N = EN, K = EK, C = EC, Bt = 3;
    using M = f::program<double, xxc>;
    CHECK(no_node_shaped<M>(N, N));
    CHECK(M::pl.tile_elems < N * N);  // the workspace per example is below the avoided matrix
    const auto out = flat_core::run<M>(Bt);
    const auto out_ref = flat_core::run<M::with_backend<f::reference_backend>>(Bt);
    for (std::size_t bb = 0; bb < Bt; ++bb)
        for (std::size_t m = 0; m < N; ++m)
            for (std::size_t c = 0; c < C; ++c) {
                double sum = 0;
                for (std::size_t n = 0; n < N; ++n) {
                    double g = 0;
                    for (std::size_t k = 0; k < K; ++k) g += v("X", (bb * N + m) * K + k) * v("X", (bb * N + n) * K + k);
                    sum += g * v("C", n * C + c);
                }
                CHECK(out[(bb * N + m) * C + c] == doctest::Approx(sum));
                CHECK(out_ref[(bb * N + m) * C + c] == doctest::Approx(sum));
            }
}

TEST_CASE("einsum order: with few fields and wide embeddings the Gram matrix first; derivatives") {
    std::vector<double> want;
    for (std::size_t bb = 0; bb < 2; ++bb)
        for (std::size_t m = 0; m < 2; ++m)
            for (std::size_t c = 0; c < 64; ++c) {
                double sum = 0;
                for (std::size_t n = 0; n < 2; ++n) {
                    double g = 0;
                    for (std::size_t k = 0; k < 64; ++k) g += v("X", (bb * 2 + m) * 64 + k) * v("X", (bb * 2 + n) * 64 + k);
                    sum += g * v("C", n * 64 + c);
                }
                want.push_back(sum);
            }
    check_forward<gram_first>(2, want);
    check_ad<gram_first>(2);
}

TEST_CASE("einsum order: matrix chains, and a product of parameters is hoisted out of the batch") {
    SUBCASE("(A B) C") {
        const auto out = flat_core::run<f::program<double, chain_abc>>(2);
        for (std::size_t bb = 0; bb < 2; ++bb)
            for (std::size_t i = 0; i < 10; ++i)
                for (std::size_t l = 0; l < 30; ++l) {
                    double sum = 0;
                    for (std::size_t j = 0; j < 20; ++j)
                        for (std::size_t k = 0; k < 5; ++k)
                            sum += v("A", bb * 200 + i * 20 + j) * v("B", bb * 100 + j * 5 + k) * v("C", bb * 150 + k * 30 + l);
                    CHECK(out[bb * 300 + i * 30 + l] == doctest::Approx(sum));
                }
        check_ad<chain_abc>(2);
    }
    SUBCASE("x (W1 W2) with parameters: W1 W2 is computed once with the parameters") {
        using M = f::program<double, x_w1w2>;
        CHECK(M::pl.derived_steps == 1);
        check_ad<x_w1w2>(3);
    }
}

TEST_CASE("einsum order: four operands, same values as the naive sum") {
    const auto out = flat_core::run<f::program<double, four>>(2);
    for (std::size_t e = 0; e < 2; ++e)
        for (std::size_t i = 0; i < 6; ++i)
            for (std::size_t m = 0; m < 6; ++m) {
                double sum = 0;
                for (std::size_t j = 0; j < 4; ++j)
                    for (std::size_t k = 0; k < 7; ++k)
                        for (std::size_t l = 0; l < 3; ++l)
                            sum += v("a", e * 24 + i * 4 + j) * v("b", j * 7 + k) * v("c", e * 21 + k * 3 + l) * v("d", l * 6 + m);
                CHECK(out[e * 36 + i * 6 + m] == doctest::Approx(sum));
            }
    check_ad<four>(2);
}

// =================================================================================================
// contractions (test_contract.cpp)
// =================================================================================================
namespace {
// y[b, n] = sum_k x[b, k] W[k, n] via matmul, for several K, N and batch sizes
template <std::size_t K, std::size_t N>
constexpr auto vm = f::matmul(f::input<"x", K>, f::param<"W", K, N>);

template <std::size_t K, std::size_t N>
void vec_mat(std::size_t batch) {
    INFO("K " << K << ", N " << N << ", batch " << batch);
    std::vector<double> want(batch * N);
    for (std::size_t bb = 0; bb < batch; ++bb)
        for (std::size_t n = 0; n < N; ++n) {
            double sum = 0;
            for (std::size_t k = 0; k < K; ++k) sum += leaf_value("x", bb * K + k) * leaf_value("W", k * N + n);
            want[bb * N + n] = sum;
        }
    check_close(flat_core::run<f::program<double, vm<K, N>>>(batch), want, 1e-12);
    // float rounding grows with the length of the sum (~sqrt(K) ulps)
    check_close(flat_core::run<f::program<float, vm<K, N>>>(batch), want, K > 256 ? 4e-5 : 1e-5);
}
} // namespace

TEST_CASE("matmul (K) x (K, N) over many shapes and batch sizes") {
    for (std::size_t batch : {1, 2, 5, 7, 13, 64, 70, 131}) {
        vec_mat<7, 5>(batch);     // below one SIMD vector: dot / scalar paths
        vec_mat<33, 40>(batch);   // vector blocks plus a column tail
        vec_mat<64, 1>(batch);    // N = 1: dot products
        vec_mat<20, 129>(batch);  // several register blocks plus a one-column tail
        vec_mat<1030, 21>(batch); // K too deep for the packed tail panel: scalar tail
    }
    check_ad<vm<9, 21>>(5);
}

namespace {
constexpr std::size_t CB = 4;
constexpr auto pX = f::input<"X", 3, 5>;
constexpr auto pW = f::param<"W", 5, 18>;
constexpr auto mk_kn = f::matmul(pX, pW);
constexpr auto gX = f::input<"X", 4, 6>;
constexpr auto gram = f::einsum("ik,jk->ij", gX, gX);
constexpr auto gP = f::input<"P", 2, 3, 4>;
constexpr auto gQ = f::input<"Q", 2, 4, 17>;
constexpr auto grouped = f::einsum("gik,gkj->gij", gP, gQ);  // batched matmul with a group axis
constexpr auto tA = f::input<"A", 5, 3>;
constexpr auto tW = f::param<"W", 5, 2>;
constexpr auto ki_kj_ji = f::einsum("ki,kj->ji", tA, tW);
constexpr auto ou = f::input<"u", 3>;
constexpr auto ov = f::param<"v", 20>;
constexpr auto outer = f::einsum("i,j->ij", ou, ov);
constexpr auto hx = f::input<"x", 4>;
constexpr auto hU = f::param<"U", 4, 3>;
constexpr auto hV = f::param<"V", 3, 16>;
constexpr auto hoisted = f::matmul(hx, f::matmul(hU, hV));
} // namespace

TEST_CASE("per-example matrices, batched x batched, and general einsum specs") {
    SUBCASE("(M, K) x (K, N) parameter") {
        std::vector<double> want;
        for (std::size_t bb = 0; bb < CB; ++bb)
            for (std::size_t m = 0; m < 3; ++m)
                for (std::size_t n = 0; n < 18; ++n) {
                    double sum = 0;
                    for (std::size_t k = 0; k < 5; ++k) sum += leaf_value("X", bb * 15 + m * 5 + k) * leaf_value("W", k * 18 + n);
                    want.push_back(sum);
                }
        check_forward<mk_kn>(CB, want);
        check_ad<mk_kn>(CB);
    }
    SUBCASE("X . X^T of one batched operand (a value used twice)") {
        std::vector<double> want;
        for (std::size_t bb = 0; bb < CB; ++bb)
            for (std::size_t i = 0; i < 4; ++i)
                for (std::size_t j = 0; j < 4; ++j) {
                    double sum = 0;
                    for (std::size_t k = 0; k < 6; ++k) sum += leaf_value("X", bb * 24 + i * 6 + k) * leaf_value("X", bb * 24 + j * 6 + k);
                    want.push_back(sum);
                }
        check_forward<gram>(CB, want);
        check_ad<gram>(CB);
    }
    SUBCASE("batched matmul with a per-example group axis") {
        std::vector<double> want;
        for (std::size_t bb = 0; bb < CB; ++bb)
            for (std::size_t g = 0; g < 2; ++g)
                for (std::size_t i = 0; i < 3; ++i)
                    for (std::size_t j = 0; j < 17; ++j) {
                        double sum = 0;
                        for (std::size_t k = 0; k < 4; ++k)
                            sum += leaf_value("P", bb * 24 + g * 12 + i * 4 + k) * leaf_value("Q", bb * 136 + g * 68 + k * 17 + j);
                        want.push_back(sum);
                    }
        check_forward<grouped>(CB, want);
        check_ad<grouped>(CB);
    }
    SUBCASE("transposed operand layout ki,kj->ji and outer products") {
        std::vector<double> want;
        for (std::size_t bb = 0; bb < CB; ++bb)
            for (std::size_t j = 0; j < 2; ++j)
                for (std::size_t i = 0; i < 3; ++i) {
                    double sum = 0;
                    for (std::size_t k = 0; k < 5; ++k) sum += leaf_value("A", bb * 15 + k * 3 + i) * leaf_value("W", k * 2 + j);
                    want.push_back(sum);
                }
        check_forward<ki_kj_ji>(CB, want);
        check_ad<ki_kj_ji>(CB);
        std::vector<double> wo;
        for (std::size_t bb = 0; bb < CB; ++bb)
            for (std::size_t i = 0; i < 3; ++i)
                for (std::size_t j = 0; j < 20; ++j) wo.push_back(leaf_value("u", bb * 3 + i) * leaf_value("v", j));
        check_forward<outer>(CB, wo);
        check_ad<outer>(CB);
    }
    SUBCASE("parameter x parameter contraction is hoisted out of the batch loop") {
        std::vector<double> want;
        for (std::size_t bb = 0; bb < CB; ++bb)
            for (std::size_t n = 0; n < 16; ++n) {
                double sum = 0;
                for (std::size_t k = 0; k < 4; ++k)
                    for (std::size_t r = 0; r < 3; ++r)
                        sum += leaf_value("x", bb * 4 + k) * leaf_value("U", k * 3 + r) * leaf_value("V", r * 16 + n);
                want.push_back(sum);
            }
        check_forward<hoisted>(CB, want);
        check_ad<hoisted>(CB);
        // U.V reads only parameters: computed when they change, not per call or example
        using M = f::program<float, hoisted>;
        CHECK(M::pl.derived_steps == 1);
        const std::size_t uv = first_op<M>(f::opcode::contract);
        REQUIRE(uv < M::size);
        CHECK(M::pl.derived[uv]);
        CHECK(!M::tab.nodes[uv].batched);
    }
}

namespace {
constexpr auto dx24 = f::input<"x", 24>;
constexpr auto dW24 = f::param<"W", 24, 40>;
constexpr auto db40 = f::param<"b", 40>;
constexpr auto ds40 = f::input<"s", 40>;
constexpr auto dense_fused = f::tanh(f::matmul(dx24, dW24) + db40) * ds40;
} // namespace

TEST_CASE("a dense layer with bias and activation fused into the GEMM epilogue") {
    for (std::size_t batch : {1, 6, 67}) {
        std::vector<double> want;
        for (std::size_t e = 0; e < batch; ++e)
            for (std::size_t n = 0; n < 40; ++n) {
                double a = leaf_value("b", n);
                for (std::size_t k = 0; k < 24; ++k) a += leaf_value("x", e * 24 + k) * leaf_value("W", k * 40 + n);
                want.push_back(std::tanh(a) * leaf_value("s", e * 40 + n));
            }
        check_forward<dense_fused>(batch, want);
    }
    check_ad<dense_fused>(3);
    using M = f::program<float, dense_fused>;
    CHECK(M::pl.steps == 1);
    CHECK(M::pl.fused_contraction[M::tab.roots[0]] >= 0);
}

namespace {
constexpr auto gx13 = f::input<"x", 13>;
constexpr auto gW13 = f::param<"W", 13, 84>;
constexpr auto relu84 = f::relu(f::matmul(gx13, gW13));
} // namespace

TEST_CASE("parameter gradient x^T . dy over several tiles: packed A panels, first tile overwrites") {
    // N = 84 columns: full register blocks plus a 4-column tail (float and double), so the packed
    // vec-N path runs with its accumulating tail panel; 150 examples
    // span several tiles, so the batch sum overwrites on the first and adds on the others.
    using G = f::grad_program<double, relu84>;
    for (std::size_t batch : {std::size_t(1), std::size_t(7), std::size_t(150)}) {
        G::parameters p;
        for (std::size_t i = 0; i < 13 * 84; ++i) p.get<"W">()[i] = leaf_value("W", i);
        G::workspace ws;
        std::vector<double> xs(batch * 13), ct(batch * 84), y(batch * 84), dx(batch * 13), dW(13 * 84, -7.0);
        for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i);
        for (std::size_t i = 0; i < ct.size(); ++i) ct[i] = leaf_value("ct", i);
        G::io io;
        io.input<"x">(xs.data()).input<"cotangent">(ct.data()).output<0>(y.data());
        io.output<G::grad<"x">>(dx.data()).output<G::grad<"W">>(dW.data());
        for (int rep = 0; rep < 2; ++rep) {  // twice: no state survives between calls
            G::run(p, ws, batch, io);
            for (std::size_t k = 0; k < 13; ++k)
                for (std::size_t n = 0; n < 84; ++n) {
                    double want = 0;
                    for (std::size_t bb = 0; bb < batch; ++bb) {
                        double z = 0;
                        for (std::size_t i = 0; i < 13; ++i) z += xs[bb * 13 + i] * leaf_value("W", i * 84 + n);
                        if (z > 0) want += xs[bb * 13 + k] * ct[bb * 84 + n];
                    }
                    CHECK(dW[k * 84 + n] == doctest::Approx(want).epsilon(1e-12));
                }
        }
    }
    // relu's derivative is read from its output: the only per-example buffer of the gradient
    // program is dy * (y > 0) (read by both products); no stored mask, no pre-activation
    CHECK(f::grad_program<float, relu84>::pl.tile_elems == 96);  // 84 rounded up to 16
}

namespace {
constexpr auto sx = f::input<"x", 100>;
constexpr auto sW1 = f::param<"W1", 100, 300>;
constexpr auto sW2 = f::param<"W2", 300, 70>;
constexpr auto strips = f::matmul(f::relu(f::matmul(sx, sW1)), sW2);

template <class T>
void check_strips(double tol) {
    using G = f::grad_program<T, strips>;
    for (std::size_t batch : {std::size_t(1), std::size_t(7), std::size_t(13)}) {
        typename G::parameters p;
        for (std::size_t i = 0; i < 100 * 300; ++i) p.template get<"W1">()[i] = static_cast<T>(leaf_value("W1", i));
        for (std::size_t i = 0; i < 300 * 70; ++i) p.template get<"W2">()[i] = static_cast<T>(leaf_value("W2", i));
        typename G::workspace ws;
        std::vector<T> xs(batch * 100), ct(batch * 70), y(batch * 70), dx(batch * 100), d1(100 * 300), d2(300 * 70);
        for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<T>(leaf_value("x", i));
        for (std::size_t i = 0; i < ct.size(); ++i) ct[i] = static_cast<T>(leaf_value("ct", i));
        typename G::io io;
        io.template input<"x">(xs.data()).template input<"cotangent">(ct.data()).template output<0>(y.data());
        io.template output<G::template grad<"x">>(dx.data()).template output<G::template grad<"W1">>(d1.data());
        io.template output<G::template grad<"W2">>(d2.data());
        G::run(p, ws, batch, io);
        for (std::size_t bb = 0; bb < batch; ++bb) {
            std::vector<double> hv(300), dh(300);
            for (std::size_t j = 0; j < 300; ++j) {
                double z = 0;
                for (std::size_t i = 0; i < 100; ++i) z += double(xs[bb * 100 + i]) * leaf_value("W1", i * 300 + j);
                hv[j] = z > 0 ? z : 0;
            }
            for (std::size_t j = 0; j < 300; ++j) {
                double sum = 0;
                for (std::size_t o = 0; o < 70; ++o) sum += double(ct[bb * 70 + o]) * leaf_value("W2", j * 70 + o);
                dh[j] = hv[j] > 0 ? sum : 0;
            }
            for (std::size_t i = 0; i < 100; ++i) {
                double sum = 0;
                for (std::size_t j = 0; j < 300; ++j) sum += dh[j] * leaf_value("W1", i * 300 + j);
                CHECK(double(dx[bb * 100 + i]) == doctest::Approx(sum).epsilon(tol).scale(10));
            }
        }
    }
}
} // namespace

TEST_CASE("dy . W^T through packed strips of W: edge columns, k chunks, epilogue, row remainders") {
    // x (100) -> h = relu(x W1), W1 100 x 300 -> y = h W2, W2 300 x 70.
    // dh = (dy W2^T) * relu'(h): N = 300 (blocks + edge), K = 70, fused epilogue;
    // dx = dh W1^T: N = 100, K = 300 (more than one packed k chunk).
    check_strips<double>(1e-12);
    check_strips<float>(2e-5);
}

namespace {
constexpr auto lx = f::input<"x", 700>;
constexpr auto lW = f::param<"W", 700, 600>;
constexpr auto lb = f::param<"b", 600>;
constexpr auto large = f::relu(f::matmul(lx, lW) + lb);

template <class T>
void check_large(double tol) {
    const std::size_t batch = 70;  // 64 rows in the first tile, 6 in the second
    using G = f::grad_program<T, large>;
    typename G::parameters p;
    for (std::size_t i = 0; i < 700 * 600; ++i) p.template get<"W">()[i] = static_cast<T>(leaf_value("W", i) * 0.05);
    for (std::size_t i = 0; i < 600; ++i) p.template get<"b">()[i] = static_cast<T>(leaf_value("b", i));
    typename G::workspace ws;
    std::vector<T> xs(batch * 700), ct(batch * 600), y(batch * 600), dx(batch * 700), dW(700 * 600), db(600);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<T>(leaf_value("x", i));
    for (std::size_t i = 0; i < ct.size(); ++i) ct[i] = static_cast<T>(leaf_value("ct", i));
    typename G::io io;
    io.template input<"x">(xs.data()).template input<"cotangent">(ct.data()).template output<0>(y.data());
    io.template output<G::template grad<"x">>(dx.data()).template output<G::template grad<"W">>(dW.data());
    io.template output<G::template grad<"b">>(db.data());
    G::run(p, ws, batch, io);
    const auto& pc = static_cast<const typename G::parameters&>(p);
    std::vector<double> dz(batch * 600);
    for (std::size_t e = 0; e < batch; ++e)
        for (std::size_t j = 0; j < 600; ++j) {
            double z = leaf_value("b", j);
            for (std::size_t i = 0; i < 700; ++i) z += double(xs[e * 700 + i]) * double(pc.template get<"W">()[i * 600 + j]);
            CHECK(double(y[e * 600 + j]) == doctest::Approx(z > 0 ? z : 0).epsilon(tol).scale(1));
            dz[e * 600 + j] = z > 0 ? double(ct[e * 600 + j]) : 0.0;
        }
    for (std::size_t e = 0; e < batch; e += 23)
        for (std::size_t i = 0; i < 700; ++i) {
            double sum = 0;
            for (std::size_t j = 0; j < 600; ++j) sum += dz[e * 600 + j] * double(pc.template get<"W">()[i * 600 + j]);
            CHECK(double(dx[e * 700 + i]) == doctest::Approx(sum).epsilon(tol).scale(1));
        }
    for (std::size_t i = 0; i < 700; i += 37)
        for (std::size_t j = 0; j < 600; ++j) {
            double sum = 0;
            for (std::size_t e = 0; e < batch; ++e) sum += double(xs[e * 700 + i]) * dz[e * 600 + j];
            CHECK(double(dW[i * 600 + j]) == doctest::Approx(sum).epsilon(tol).scale(1));
        }
    for (std::size_t j = 0; j < 600; ++j) {
        double sum = 0;
        for (std::size_t e = 0; e < batch; ++e) sum += dz[e * 600 + j];
        CHECK(double(db[j]) == doctest::Approx(sum).epsilon(tol).scale(1));
    }
}
} // namespace

TEST_CASE("large B: cache-blocked vec-N GEMM (k and n blocks, epilogue on the last k block) and packed-B remainders") {
    // W5-like: x (700) -> relu(x W + b), W 700 x 600: K > 384 and N > 512 with enough rows to
    // block; the gradient's dy W^T has N = 700 = 10 x 64 + 3 x 16 + 12 (vector remainders, then
    // scalar columns), and x^T dy accumulates over tiles.
    check_large<double>(1e-12);
    check_large<float>(1e-4);
}

// A root that reads parameters only, read in turn by a parameter-only step: the step cannot be a
// derived parameter (prepare() would read the root from an output that is not bound yet).
namespace {
constexpr auto pr_w = ctrec::param<"W", 3, 2>;
constexpr auto pr_s = ctrec::sigmoid(ctrec::param<"a", 2>);
constexpr auto pr_y = ctrec::matmul(ctrec::input<"x", 3>, pr_w * pr_s);
} // namespace

TEST_CASE("plan: a parameter-only root read by a parameter-only step (regression: prepare() read a null output)") {
    using P = ctrec::program<double, pr_y, pr_s>;
    P::parameters p;
    for (std::size_t k = 0; k < P::n_params; ++k)
        for (auto& v : p.get(k)) v = 0.5;
    P::workspace ws;
    double x[3] = {1, 2, 3}, y[2] = {}, s[2] = {};
    P::io io;
    io.input<"x">(x).output<0>(y).output<1>(s);
    P::run(p, ws, 1, io);
    const double sig = 1 / (1 + std::exp(-0.5));
    CHECK(s[0] == doctest::Approx(sig));
    CHECK(y[0] == doctest::Approx(6 * 0.5 * sig));
    CHECK(y[1] == doctest::Approx(6 * 0.5 * sig));
}
