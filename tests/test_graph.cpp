// The core (include/ctrec/core, issue 11): graph structure (CSE by value, a value
// used three times is one node, reverse mode visits each edge once, no operand cap), values
// against naive loops, the CPU backend against the reference backend (forward, gradient, JVP;
// batches across tiles; batch statistics over several passes; shared inputs), float64 central
// differences and JVP/VJP duality.
#include "support.hpp"

#include <array>

namespace f = ctrec;
using ctrec::make_dims;
using namespace test;

namespace {

// ---- models (namespace-scope constexpr objects: programs are keyed by them) ----------------------
constexpr auto x = f::input<"x", 5>;
constexpr auto W = f::param<"W", 5, 3>;
constexpr auto b = f::param<"b", 3>;
constexpr auto W2 = f::param<"W2", 3, 1>;
constexpr auto dense = f::tanh(f::matmul(x, W) + b);
constexpr auto mlp = f::sigmoid(f::matmul(dense, W2));
constexpr auto label = f::input<"label", 1>;
constexpr auto bce = f::batch_mean(f::log1p(f::exp(f::matmul(dense, W2))) - label * f::matmul(dense, W2));

// a cross layer that uses x three times: x0 * (x W + b) + x, three times over
constexpr auto x0 = f::input<"x0", 4, 6>;
constexpr f::expr cross(const f::expr& in, std::size_t layers) {
    f::expr v = in;
    for (std::size_t i = 0; i < layers; ++i)
        v = in * (f::matmul(v, f::param_named((f::name_string("cross/kernel_") + i).view(), make_dims<6, 6>())) +
                  f::param_named((f::name_string("cross/bias_") + i).view(), make_dims<6>())) +
            v;
    return v;
}
constexpr auto cross3 = cross(x0, 3);
constexpr auto cross3_loss = f::batch_mean(f::sum(f::tanh(cross3)));
constexpr auto cross12 = cross(x0, 12);
constexpr auto cross6 = cross(x0, 6);

// mixed DCN (documented gating) with kernel norm, two layers: the test the type core had to drop
constexpr std::size_t Nn = 3, Dd = 4, Ee = 2, Rr = 2;
constexpr auto xm = f::input<"x", Nn, Dd>;
constexpr f::expr knorm(f::name_string name, ctrec::dims s) {
    ctrec::dims t;
    t.rank = 1;
    t.d[0] = s.d[1];
    return f::l2_normalize(f::param_named(name.view(), s), 0, 1e-6) * f::param_named((name + "/trainable_norm").view(), t);
}
constexpr f::expr experts(const char* prefix, std::size_t i, ctrec::dims s) {
    return f::concat(1, {knorm(f::name_string("dcn/") + std::string_view(prefix) + i + "_0", s),
                         knorm(f::name_string("dcn/") + std::string_view(prefix) + i + "_1", s)});
}
constexpr f::expr mixed_dcn(const f::expr& in, std::size_t layers) {
    f::expr v = in;
    for (std::size_t i = 0; i < layers; ++i) {
        f::expr bias = f::reshape(knorm(f::name_string("dcn/bias_") + i, make_dims<1, Dd>()), make_dims<Dd>());
        f::expr V = experts("V_", i, make_dims<Dd, Rr>());
        f::expr C = f::reshape(experts("C_", i, make_dims<Rr, Rr>()), make_dims<Rr, Ee, Rr>());
        f::expr U = experts("U_", i, make_dims<Dd, Rr>());
        f::expr G = experts("G_", i, make_dims<Dd, 1>());
        f::expr t = f::reshape(f::tanh(f::matmul(v, V)), make_dims<Nn, Ee, Rr>());
        f::expr c = f::tanh(f::einsum("neq,qea->nea", t, C));
        f::expr w = f::softmax(f::matmul(v, G), 1);
        f::expr u = f::einsum("nk,dk->nd", f::reshape(c * f::reshape(w, make_dims<Nn, Ee, 1>()), make_dims<Nn, Ee * Rr>()), U);
        v = in * (u + bias) + v;
    }
    return v;
}
constexpr auto dcn2 = mixed_dcn(xm, 2);

// batch statistics: a BatchNorm-like normalisation (mean, then variance: three passes)
constexpr auto xb = f::input<"x", 4>;
constexpr auto mu = f::batch_mean(xb);
constexpr auto var = f::batch_mean((xb - mu) * (xb - mu));
constexpr auto bn = (xb - mu) * f::rsqrt(var + f::lit<1e-3>) * f::param<"gamma", 4> + f::param<"beta", 4>;
constexpr auto bn_loss = f::batch_mean(f::sum(bn * bn * f::param<"scale", 4>));

// structure: slices, concat, pad (via gradients), reductions over several axes, softmax, a
// shared input (one user against a batch of candidates), maximum and where
constexpr auto q = f::input<"q", 4>;
constexpr auto seq = f::shared_input<"seq", 6, 4>;
constexpr auto att = f::softmax(f::einsum("th,h->t", seq, q), 0);
constexpr auto pooled = f::einsum("t,th->h", att, seq);
constexpr auto mixed_ops = f::concat<0>(f::slice(pooled, 0, 1, 3), f::maximum(q, f::lit<0.1>),
                                        f::where(f::greater(q, f::lit<0.0>), q * q, -q));
constexpr auto reduce_ops = f::sum(f::reshape<3, 3, 2>(f::concat<0>(mixed_ops, f::lit<0.5> * q, f::slice(q, 0, 0, 4))), {0, 2});
constexpr auto reduce_loss = f::batch_mean(f::sum(reduce_ops));

// no operand cap: 26 fields, and 160 pair results joined in one node
constexpr auto fields = f::input<"fields", 26, 4>;
constexpr auto field_concat = [] {
    f::expr parts[26]{};
    for (std::size_t i = 0; i < 26; ++i) parts[i] = f::slice(fields, 0, i, i + 1) * f::lit<2.0>;
    // concat of 26 operands, written as one call
    return f::concat(0, {parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6], parts[7], parts[8],
                         parts[9], parts[10], parts[11], parts[12], parts[13], parts[14], parts[15], parts[16],
                         parts[17], parts[18], parts[19], parts[20], parts[21], parts[22], parts[23], parts[24], parts[25]});
}();
constexpr auto pairs160 = [] {
    // 16 left x 10 right fields, one product per pair, joined: GroupInt's shape
    constexpr std::size_t Lf = 16, Rf = 10;
    f::expr left = f::slice(fields, 0, 0, Lf), right = f::slice(fields, 0, Lf, Lf + Rf);
    f::graph g = left.g;
    std::uint32_t l = left.id, r;
    f::join_into(g, right, r);
    std::uint32_t ids[Lf * Rf]{};
    for (std::uint32_t i = 0; i < Lf; ++i)
        for (std::uint32_t j = 0; j < Rf; ++j) {
            const std::uint32_t a = f::build::slice(g, l, 0, i, 1), c = f::build::slice(g, r, 0, j, 1);
            ids[i * Rf + j] = f::build::map(g, f::opcode::mul, a, c);
        }
    f::expr e{g, 0};
    e.id = f::build::concat(g, 0, ids, Lf * Rf);
    e.g = g;
    return e;
}();

// a value read through one slice per step (an unrolled recurrence over x's rows): its gradient is
// one concat of the pieces, not a sum of zero-padded copies
constexpr auto steps = [] {
    f::expr xs = f::input<"xs", 6, 4>;
    f::expr h = f::reshape(f::slice(xs, 0, 0, 1), ctrec::make_dims<4>());
    for (std::size_t t = 1; t < 5; ++t)  // row 5 is never read: its gradient is a zero fill
        h = f::tanh(h * f::param<"u", 4> + f::reshape(f::slice(xs, 0, t, t + 1), ctrec::make_dims<4>()));
    return f::sum(h);
}();
using StepsG = f::grad_program<double, steps>;

// programs
using Mlp = f::program<double, mlp>;
using Cross3 = f::program<double, cross3>;
using Cross3G = f::grad_program<double, cross3_loss>;
using Cross3J = f::jvp_program<double, cross3_loss>;

} // namespace

TEST_CASE("graph: common subexpressions are found by value; a value used three times is one node") {
    constexpr auto y1 = f::matmul(x, W) + f::matmul(x, W);
    static_assert(y1.g.nodes[y1.g.operand(y1.id, 0)] == y1.g.nodes[y1.g.operand(y1.id, 1)]);
    static_assert(y1.g.operand(y1.id, 0) == y1.g.operand(y1.id, 1), "the two products are one node");
    static_assert(y1.g.n == 4, "x, W, x W, and the sum");
    // built separately and joined: the shared part is merged by value
    constexpr auto a = f::tanh(f::matmul(x, W) + b);
    constexpr auto c = f::sigmoid(f::matmul(x, W) + b);
    constexpr auto s = a + c;
    static_assert(s.g.n == 8, "x, W, xW, b, xW+b, tanh, sigmoid, sum");
    // the cross chain: one input node, used 3 times per layer; nodes grow linearly with depth
    static_assert(Cross3::n_inputs == 1);
    auto count = [](const auto& t, std::uint32_t id) {
        std::size_t n = 0;
        for (std::size_t i = 0; i < std::remove_cvref_t<decltype(t)>::size; ++i)
            for (std::size_t j = 0; j < t.nodes[i].nops; ++j) n += t.operand(i, j) == id;
        return n;
    };
    // layer 0 reads x0 three times (x0 * (x0 W + b) + x0), later layers once: one node, 5 edges
    CHECK(count(Cross3::tab, Cross3::input_ids[0]) == 3 + 1 + 1);
    CHECK(cross12.g.n - cross6.g.n == cross6.g.n - cross(x0, 0).g.n);
}

TEST_CASE("graph: reverse mode visits each edge once") {
    // every node of the loss carries a cotangent, so the sweep visits exactly its operand slots
    using F = f::program<double, cross3_loss>;
    std::size_t slots = 0;
    for (std::size_t i = 0; i < F::size; ++i) slots += F::tab.nodes[i].nops;
    CHECK(Cross3G::tab.edges == slots);
    // the gradient graph is a constant factor larger than the forward graph, not a square
    CHECK(Cross3G::size < 4 * F::size);
}

TEST_CASE("graph: a value read through many slices gets one concat as its gradient") {
    std::size_t pads = 0, concats = 0;
    for (std::size_t i = 0; i < StepsG::size; ++i)
        pads += StepsG::tab.nodes[i].op == f::opcode::pad, concats += StepsG::tab.nodes[i].op == f::opcode::concat;
    CHECK(pads == 0);
    CHECK(concats == 1);
    check_derivatives<StepsG, f::jvp_program<double, steps>>(3);
    leaves L;
    const auto g = run<StepsG>(L, 2);
    for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t k = 0; k < 4; ++k) CHECK(g[StepsG::grad<"xs">][b * 24 + 5 * 4 + k] == 0.0);
}

TEST_CASE("graph: no operand cap (26-field concat, 160 pair products in one node)") {
    using C26 = f::program<double, field_concat>;
    leaves L;
    auto out = run<C26>(L, 3);
    const auto& in = L["fields"];
    REQUIRE(out[0].size() == in.size());
    for (std::size_t e = 0; e < in.size(); ++e) CHECK(out[0][e] == doctest::Approx(2 * in[e]));
    static_assert(pairs160.g.nodes[pairs160.id].nops == 160);
    using P160 = f::program<double, pairs160>;
    leaves L2;
    auto o2 = run<P160>(L2, 2);
    const auto& fi = L2["fields"];
    for (std::size_t bb = 0; bb < 2; ++bb)
        for (std::size_t i = 0; i < 16; ++i)
            for (std::size_t j = 0; j < 10; ++j)
                for (std::size_t k = 0; k < 4; ++k)
                    CHECK(o2[0][bb * 640 + (i * 10 + j) * 4 + k] ==
                          doctest::Approx(fi[bb * 104 + i * 4 + k] * fi[bb * 104 + (16 + j) * 4 + k]));
    check_backends<P160>(3, 1e-12);
}

TEST_CASE("values: a dense MLP against naive loops, float and double, across tiles") {
    for (std::size_t batch : {1, 7, 130}) {
        leaves L;
        auto y = run<Mlp>(L, batch);
        auto yf = run<f::program<float, mlp>>(L, batch);
        for (std::size_t n = 0; n < batch; ++n) {
            double o = 0;
            for (std::size_t j = 0; j < 3; ++j) {
                double z = L["b"][j];
                for (std::size_t i = 0; i < 5; ++i) z += L["x"][n * 5 + i] * L["W"][i * 3 + j];
                o += std::tanh(z) * L["W2"][j];
            }
            const double want = 1 / (1 + std::exp(-o));
            CHECK(y[0][n] == doctest::Approx(want).epsilon(1e-12));
            CHECK(yf[0][n] == doctest::Approx(want).epsilon(1e-6));
        }
    }
}

TEST_CASE("backends: the CPU backend agrees with the reference backend") {
    for (std::size_t batch : {1, 9, 70}) {
        check_backends<Mlp>(batch, 1e-12);
        check_backends<Cross3>(batch, 1e-12);
        check_backends<Cross3G>(batch, 1e-12);
        check_backends<Cross3J>(batch, 1e-12);
        check_backends<f::program<double, dcn2>>(batch, 1e-12);
        check_backends<f::grad_program<double, bn_loss>>(batch, 1e-10);
        check_backends<f::program<double, reduce_ops>>(batch, 1e-12);
        check_backends<f::grad_program<double, reduce_loss>>(batch, 1e-12);
        check_backends<f::program<float, dcn2>>(batch, 1e-5);
    }
    using BN = f::grad_program<double, bn_loss>;
    CHECK(BN::pl.passes >= 3);  // mean, variance, then the normalised values
}

TEST_CASE("derivatives: float64 central differences and JVP/VJP duality") {
    SUBCASE("mlp, binary cross-entropy") {
        check_derivatives<f::grad_program<double, bce>, f::jvp_program<double, bce>>(5);
    }
    SUBCASE("cross chain, three layers") { check_derivatives<Cross3G, Cross3J>(4); }
    SUBCASE("mixed DCN with kernel norm, two layers, per-example root") {
        check_derivatives<f::grad_program<double, dcn2>, f::jvp_program<double, dcn2>>(3);
    }
    SUBCASE("batch statistics over several passes") {
        check_derivatives<f::grad_program<double, bn_loss>, f::jvp_program<double, bn_loss>>(6);
    }
    SUBCASE("softmax, shared input, slices, maximum, where, reductions") {
        check_derivatives<f::grad_program<double, reduce_ops>, f::jvp_program<double, reduce_ops>>(3);
    }
}

TEST_CASE("programs: names, errors, empty batch") {
    using M = Mlp;
    static_assert(M::parameters::position("W2") < M::parameters::count);
    static_assert(M::parameters::position("nope") == M::parameters::count);
    M::parameters p;
    std::vector<double> wrong(4);
    CHECK_THROWS_WITH_AS(p.set("W", wrong), "ctrec: parameter 'W' holds 15 values, got 4", ctrec::error);
    CHECK_THROWS_AS(p.set("nope", wrong), ctrec::error);
    M::workspace ws;
    M::io io;
    std::vector<double> y(1);
    io.output<0>(y.data());
    CHECK_THROWS_WITH_AS(M::run(p, ws, 1, io), "ctrec: input 'x' is not bound", ctrec::error);
    // a loss over an empty batch: the reducers are zero, not garbage
    using G = f::grad_program<double, cross3_loss>;
    leaves L;
    auto g = run<G>(L, 0);
    for (std::size_t k = 1; k < g.size(); ++k)
        for (double v : g[k]) CHECK(v == 0.0);
}

namespace {
// d/db of batch_mean(sum(x + b)) is 1 for every element: the cotangent of x + b is the same 1/B for
// every example (unbatched), and b's gradient is its sum over the batch
constexpr auto lin_x = f::input<"x", 3>;
constexpr auto lin_b = f::param<"b", 3>;
constexpr auto lin_loss = f::batch_mean(f::sum(lin_x + lin_b));
constexpr auto lin_loss2 = f::batch_mean(f::sum(f::concat(0, {lin_x, lin_b * f::constant(2.0)})));
} // namespace

TEST_CASE("reverse mode: an example-independent cotangent reaching a parameter is summed over the batch") {
    for (std::size_t batch : {1, 5, 70}) {
        INFO("batch " << batch);
        leaves L;
        auto g = run<f::grad_program<double, lin_loss>>(L, batch);
        auto r = run<f::grad_program<double, lin_loss>::with_backend<f::reference_backend>>(L, batch);
        using G = f::grad_program<double, lin_loss>;
        for (double v : g[G::grad<"b">]) CHECK(v == doctest::Approx(1.0));
        for (double v : r[G::grad<"b">]) CHECK(v == doctest::Approx(1.0));
        for (double v : g[G::grad<"x">]) CHECK(v == doctest::Approx(1.0 / static_cast<double>(batch)));
        leaves L2;
        using G2 = f::grad_program<double, lin_loss2>;
        const auto g2 = run<G2>(L2, batch);
        for (double v : g2[G2::grad<"b">]) CHECK(v == doctest::Approx(2.0));
    }
    check_derivatives<f::grad_program<double, lin_loss>, f::jvp_program<double, lin_loss>>(5);
    check_derivatives<f::grad_program<double, lin_loss2>, f::jvp_program<double, lin_loss2>>(5);
}
