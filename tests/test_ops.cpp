// Elementwise primitives, activations and random streams (ported from
// the type core's test_elementwise.cpp, test_activations.cpp and test_random.cpp): values against
// the formulas (float64 and float32, CPU and reference backends), gradients against central
// differences, JVP/VJP duality, TF's derivative conventions at ties and kinks, and random_uniform
// streams (deterministic per seed, independent of tiling, the same mask forward and backward).
#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ref_core.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using ctrec::make_dims;
using flat_core::check_ad;
using flat_core::check_close;
using flat_core::check_forward;
using test::leaf_value;

// =================================================================================================
// elementwise (test_elementwise.cpp)
// =================================================================================================
namespace {
constexpr std::size_t B = 3;
constexpr auto x = f::input<"x", 3, 4>;

double positive(std::string_view n, std::size_t i) { return 0.25 + std::abs(leaf_value(n, i)); }
double shift_pos(std::string_view, double v) { return 0.25 + std::abs(v); }

// One program per group of expressions of the same leaves: their concat along axis 0, every
// expression a block checked on its own (flat_core::block: its values, and its derivatives with
// the cotangent zero outside the block), as the type core checked one program per expression.
// Signed arguments: neg, exp, abs, sigmoid, tanh, erf, pow 3 and pow 2 (the core has no
// pow node: the spellings a model uses instead), constants.
constexpr auto unary_signed = f::concat<0>(-x, f::exp(x), f::abs(x), f::sigmoid(x), f::tanh(x), f::erf(x), x * x * x, x * x,
                                           x * f::lit<2.5> + f::lit<1.0>);
// Positive arguments: log, log1p, sqrt (= pow 0.5), rsqrt, pow -1.5 as rsqrt(x) / x.
constexpr auto unary_positive = f::concat<0>(f::log(x), f::log1p(x), f::sqrt(x), f::rsqrt(x), f::rsqrt(x) / x);

template <const auto& E, class F>
void unary(std::size_t count, std::size_t index, F fn, bool pos = false) {
    const flat_core::value_fn vf = pos ? flat_core::value_fn(positive) : flat_core::value_fn(leaf_value);
    std::vector<double> want(B * 12);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] = fn(vf("x", i));
    check_forward<E>(B, want, vf, {count, index});
    check_ad<E>(B, pos ? flat_core::shape_fn(shift_pos) : flat_core::shape_fn{}, {count, index});
}
template <class F>
void signed_unary(std::size_t index, F fn) { unary<unary_signed>(9, index, fn); }
template <class F>
void positive_unary(std::size_t index, F fn) { unary<unary_positive>(5, index, fn, true); }
} // namespace

TEST_CASE("unary primitives match their formulas and derivatives") {
    SUBCASE("neg") { signed_unary(0, [](double v) { return -v; }); }
    SUBCASE("exp") { signed_unary(1, [](double v) { return std::exp(v); }); }
    SUBCASE("log") { positive_unary(0, [](double v) { return std::log(v); }); }
    SUBCASE("log1p") { positive_unary(1, [](double v) { return std::log1p(v); }); }
    SUBCASE("sqrt") { positive_unary(2, [](double v) { return std::sqrt(v); }); }
    SUBCASE("rsqrt") { positive_unary(3, [](double v) { return 1 / std::sqrt(v); }); }
    SUBCASE("abs") { signed_unary(2, [](double v) { return std::abs(v); }); }
    SUBCASE("sigmoid") { signed_unary(3, [](double v) { return 1 / (1 + std::exp(-v)); }); }
    SUBCASE("tanh") { signed_unary(4, [](double v) { return std::tanh(v); }); }
    SUBCASE("erf") { signed_unary(5, [](double v) { return std::erf(v); }); }
    SUBCASE("pow 3 (as x * x * x)") { signed_unary(6, [](double v) { return v * v * v; }); }
    SUBCASE("pow 2 (as x * x)") { signed_unary(7, [](double v) { return v * v; }); }
    SUBCASE("pow 0.5 (as sqrt)") { positive_unary(2, [](double v) { return std::pow(v, 0.5); }); }
    SUBCASE("pow -1.5 (as rsqrt(x) / x)") { positive_unary(4, [](double v) { return std::pow(v, -1.5); }); }
    SUBCASE("constants") { signed_unary(8, [](double v) { return 2.5 * v + 1.0; }); }
}

namespace {
// a: (B, 2, 3) input, w: (3) parameter, c: (B, 2, 1) input -> broadcast to (B, 2, 3)
constexpr auto a = f::input<"a", 2, 3>;
constexpr auto w = f::param<"w", 3>;
constexpr auto c = f::input<"c", 2, 1>;
constexpr auto binaries = f::concat<0>(
    a + w, c - a, a * w * c, a / (f::lit<2.0> + c), f::maximum(a, w), f::minimum(c, a), f::where(f::greater(a, w), a * c, w),
    // the core has no equal(): equal(a, a) (a constant 1) is left out of the type core's sum
    f::greater(a, w) + f::greater_equal(c, a) + f::lit<0.5> * a * w * c,
    a * a + f::exp(a) * a - a / (f::lit<3.0> + w * w));

template <class F>
void binary(std::size_t index, F fn) {
    std::vector<double> want;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t i = 0; i < 2; ++i)
            for (std::size_t j = 0; j < 3; ++j)
                want.push_back(fn(leaf_value("a", b * 6 + i * 3 + j), leaf_value("w", j), leaf_value("c", b * 2 + i)));
    check_forward<binaries>(B, want, leaf_value, {9, index});
    check_ad<binaries>(B, {}, {9, index});
}
} // namespace

TEST_CASE("binary primitives broadcast like NumPy, over the batch too") {
    SUBCASE("add") { binary(0, [](double x, double y, double) { return x + y; }); }
    SUBCASE("sub") { binary(1, [](double x, double, double z) { return z - x; }); }
    SUBCASE("mul") { binary(2, [](double x, double y, double z) { return x * y * z; }); }
    SUBCASE("div") { binary(3, [](double x, double, double z) { return x / (2 + z); }); }
    SUBCASE("maximum") { binary(4, [](double x, double y, double) { return x >= y ? x : y; }); }
    SUBCASE("minimum") { binary(5, [](double x, double, double z) { return z <= x ? z : x; }); }
    SUBCASE("where") { binary(6, [](double x, double y, double z) { return x > y ? x * z : y; }); }
    SUBCASE("comparisons are piecewise constant") {
        // plus a smooth term, so that every leaf has a derivative to check: the
        // comparisons must add exactly nothing to it
        binary(7, [](double x, double y, double z) { return (x > y) + (z >= x) + 0.5 * x * y * z; });
    }
    SUBCASE("a value used several times accumulates every contribution") {
        binary(8, [](double x, double y, double) { return x * x + std::exp(x) * x - x / (3 + y * y); });
    }
}

namespace {
constexpr auto tp = f::input<"p", 4>;
constexpr auto tq = f::input<"q", 4>;
constexpr auto ties = f::maximum(tp, tq) + f::lit<2.0> * f::minimum(tp, tq);
} // namespace

TEST_CASE("max/min ties send the derivative to the first operand, as TF does") {
    using G = f::grad_program<double, ties>;
    auto check = [](auto tag) {
        using P = typename decltype(tag)::type;
        typename P::parameters gp;
        typename P::workspace ws;
        std::vector<double> pv{1, 2, 3, 4}, qv{1, 0, 3, 5}, ct{1, 1, 1, 1}, y(4), dp(4), dq(4);
        typename P::io io;
        io.template input<"p">(pv.data()).template input<"q">(qv.data()).template input<"cotangent">(ct.data());
        io.template output<0>(y.data()).template output<P::template grad<"p">>(dp.data()).template output<P::template grad<"q">>(dq.data());
        P::run(gp, ws, 1, io);
        // ties at 0 and 2: both max and min pick p
        CHECK(dp == std::vector<double>{3, 1, 3, 2});
        CHECK(dq == std::vector<double>{0, 2, 0, 1});
    };
    check(std::type_identity<G>{});
    check(std::type_identity<G::with_backend<f::reference_backend>>{});
}

namespace {
constexpr auto sw = f::input<"w", 6>;
constexpr auto sm = f::input<"m", 6>;
constexpr auto fused_select = f::where(f::greater_equal(sm, f::lit<1.0>), sw, f::lit<0.0>) * f::lit<2.0>;
} // namespace

TEST_CASE("a fused select over runs shorter than one SIMD vector is right for every example") {
    // Regression (type core): GCC 12.2 -O3 -march=native (AVX-512) auto-vectorised the scalar tail
    // of a fused map step across examples and gave wrong rows for examples 2 and 3 (6 doubles per
    // example, 7 examples). The flat executor keeps that tail scalar too.
    auto fv = [](std::string_view n, std::size_t i) { return n == "m" ? ((i % 6) < 4 ? 1.0 : 0.0) : leaf_value(n, i); };
    std::vector<double> want(7 * 6);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] = fv("m", i) >= 1 ? 2 * leaf_value("w", i) : 0.0;
    check_forward<fused_select>(7, want, fv);
}

// =================================================================================================
// activations (test_activations.cpp): spec layers-core-and-cross.md 1.2, TF's conventions at kinks
// =================================================================================================
namespace {
constexpr std::size_t AB = 4, AX = 10;
// values in [-3, 3] so every branch is exercised
double wide(std::string_view n, std::size_t i) { return 3 * leaf_value(n, i); }
double wide_shape(std::string_view, double v) { return 3 * v; }

constexpr cl::activation acts[] = {
    cl::act_linear,       cl::act_exponential, cl::act_sigmoid,  cl::act_sigmoid2,        cl::act_tanh,
    cl::act_relu,         cl::act_leakyrelu(), cl::act_leakyrelu(0.2), cl::act_elu,       cl::act_selu,
    cl::act_gelu,         cl::act_hard_sigmoid, cl::act_softplus, cl::act_softsign,       cl::act_swish,
    cl::act_thresholdedrelu(), cl::act_keras_relu(2.0, 0.1, 0.5)};
constexpr std::size_t n_acts = sizeof acts / sizeof acts[0];

double act_formula(std::size_t k, double v) {
    const double sa = 1.6732632423543772, sl = 1.0507009873554805;
    switch (k) {
        case 0: return v;
        case 1: return std::exp(v);
        case 2: return 1 / (1 + std::exp(-v));
        case 3: return 2 / (1 + std::exp(-v));
        case 4: return std::tanh(v);
        case 5: return v > 0 ? v : 0;
        case 6: return v > 0 ? v : 0.3 * v;
        case 7: return v > 0 ? v : 0.2 * v;
        case 8: return v > 0 ? v : std::exp(v) - 1;
        case 9: return sl * (v > 0 ? v : sa * (std::exp(v) - 1));
        case 10: return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
        case 11: return std::clamp(0.2 * v + 0.5, 0.0, 1.0);
        case 12: return std::log1p(std::exp(v));
        case 13: return v / (1 + std::abs(v));
        case 14: return v / (1 + std::exp(-v));
        case 15: return v > 1 ? v : 0;
        default: {
            double p = v > 0.5 ? v : 0;
            p = std::clamp(p, 0.0, 2.0);
            return p - 0.1 * std::max(0.5 - v, 0.0);
        }
    }
}

// activations of one input of per-example shape (n), concatenated: block k is as[k](x)
template <std::size_t K>
constexpr f::expr act_model(const cl::activation (&as)[K], std::string_view in, std::size_t n) {
    fl::result m;
    const f::val v = m.input(in, f::dims_of({n}));
    f::val outs[K]{};
    for (std::size_t k = 0; k < K; ++k) outs[k] = fl::apply_activation(m, as[k], f::name_string("act_") + k, v);
    m.set_out(f::concat(0, outs, K));
    return m.out();
}
constexpr auto all_acts = act_model(acts, "x", AX);

void activation(std::size_t k) {
    std::vector<double> want(AB * AX);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] = act_formula(k, wide("x", i));
    check_forward<all_acts>(AB, want, wide, {n_acts, k});
    check_ad<all_acts>(AB, wide_shape, {n_acts, k});
}

// the activations probed at their kinks and where they saturate, on a (4) input "v"
constexpr cl::activation kink_acts[] = {cl::act_relu, cl::act_leakyrelu(), cl::act_thresholdedrelu(), cl::act_hard_sigmoid,
                                        cl::act_softplus, cl::act_elu, cl::act_selu, cl::act_sigmoid};
enum kink { k_relu, k_leaky, k_thresh, k_hard, k_softplus, k_elu, k_selu, k_sigmoid, n_kinks };
constexpr auto kinks = act_model(kink_acts, "v", 4);

// derivative of activation k at the given points (reverse mode, cotangent 1 on its block)
std::vector<double> derivative_at(kink k, std::vector<double> pts, bool reference = false) {
    auto go = [&](auto tag) {
        using G = typename decltype(tag)::type;
        typename G::parameters p;
        typename G::workspace ws;
        std::vector<double> ct(4 * n_kinks, 0.0), y(4 * n_kinks), dx(4);
        std::fill_n(ct.begin() + 4 * k, 4, 1.0);
        typename G::io io;
        io.template input<"v">(pts.data()).template input<"cotangent">(ct.data()).template output<0>(y.data());
        io.template output<G::template grad<"v">>(dx.data());
        G::run(p, ws, 1, io);
        return dx;
    };
    using G = f::grad_program<double, kinks>;
    return reference ? go(std::type_identity<G::with_backend<f::reference_backend>>{}) : go(std::type_identity<G>{});
}
} // namespace

TEST_CASE("activation formulas and their derivatives") {
    SUBCASE("linear") { activation(0); }
    SUBCASE("exponential") { activation(1); }
    SUBCASE("sigmoid") { activation(2); }
    SUBCASE("sigmoid2") { activation(3); }
    SUBCASE("tanh") { activation(4); }
    SUBCASE("relu") { activation(5); }
    SUBCASE("leakyrelu alpha 0.3") { activation(6); }
    SUBCASE("leakyrelu alpha 0.2") { activation(7); }
    SUBCASE("elu") { activation(8); }
    SUBCASE("selu") { activation(9); }
    SUBCASE("gelu (exact erf form)") { activation(10); }
    SUBCASE("hard_sigmoid (slope 0.2)") { activation(11); }
    SUBCASE("softplus") { activation(12); }
    SUBCASE("softsign") { activation(13); }
    SUBCASE("swish") { activation(14); }
    SUBCASE("thresholdedrelu theta 1") { activation(15); }
    SUBCASE("keras relu with max_value, negative_slope and threshold") { activation(16); }
}

TEST_CASE("derivatives at the kinks follow TF") {
    for (bool reference : {false, true}) {
        INFO("reference backend " << reference);
        CHECK(derivative_at(k_relu, {0, 1, -1, 0}, reference) == std::vector<double>{0, 1, 0, 0});
        CHECK(derivative_at(k_leaky, {0, 1, -1, 2}, reference) == std::vector<double>{0.3, 1, 0.3, 1});
        CHECK(derivative_at(k_thresh, {1, 1.5, 0.5, -1}, reference) == std::vector<double>{0, 1, 0, 0});
        // hard_sigmoid passes 0.2 on the closed interval [-2.5, 2.5] (the boundary tie itself
        // goes to the first operand of max/min; 0.2 x + 0.5 is not exact at x = -2.5 once the
        // compiler contracts it into an FMA, so probe just inside)
        auto hs = derivative_at(k_hard, {-2.4999999, 2.5, 3, -3}, reference);
        CHECK(hs[0] == doctest::Approx(0.2));
        CHECK(hs[1] == doctest::Approx(0.2));
        CHECK(hs[2] == 0);
        CHECK(hs[3] == 0);
        auto sp = derivative_at(k_softplus, {0, 50, -50, 1}, reference);
        CHECK(sp[0] == doctest::Approx(0.5));
        CHECK(sp[1] == doctest::Approx(1.0));
        CHECK(sp[2] == doctest::Approx(0.0));
        CHECK(sp[3] == doctest::Approx(1 / (1 + std::exp(-1.0))));
    }
}

TEST_CASE("saturated inputs give finite values and derivatives") {
    auto all_finite = [](const std::vector<double>& d) {
        for (double e : d)
            if (!std::isfinite(e)) return false;
        return true;
    };
    std::vector<double> big{-800, 800, -1e4, 1e4};
    CHECK(all_finite(derivative_at(k_elu, big)));
    CHECK(all_finite(derivative_at(k_selu, big)));
    CHECK(all_finite(derivative_at(k_softplus, big)));
    CHECK(all_finite(derivative_at(k_sigmoid, big)));
    const auto out = flat_core::run<f::program<float, kinks>>(1, [&](std::string_view, std::size_t i) { return big[i]; });
    const auto sp = flat_core::block_of(out, 1, {n_kinks, k_softplus});
    CHECK(all_finite(sp));
    CHECK(sp[1] == doctest::Approx(800));
    CHECK(sp[0] == doctest::Approx(0.0));
}

// =================================================================================================
// random_uniform (test_random.cpp): per-example uniform [0, 1) streams (dropout masks). Values are
// a pure function of (seed, stream, example index in the call, element index): checked across tile
// boundaries, in the SIMD and scalar paths, statistically, and through a gradient and a JVP (the
// backward pass sees the forward's mask).
// =================================================================================================
namespace {
constexpr std::size_t S = 37;  // not a multiple of any SIMD width: SIMD runs and scalar tails
constexpr auto u = f::random_uniform<"drop", S>;
constexpr auto u2 = u * f::lit<2.0>;
constexpr auto v_other = f::random_uniform<"other", S>;
constexpr auto xr = f::input<"x", S>;
constexpr double keep = 0.7;
// inverted dropout: x / keep where u < keep, else 0
constexpr auto dropped = f::where(f::greater(f::lit<keep>, u), xr * f::lit<1.0 / keep>, f::lit<0.0>);

// The stream's definition (ctrec/core/expr.hpp, random_uniform_value; flat/graph.hpp stream_hash):
// FNV-1a of the stream name, splitmix64 chained over (seed ^ stream, example, element); 24 random
// bits for float, 53 for double.
std::uint64_t splitmix64(std::uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
template <class T>
T expected(std::uint64_t seed, std::string_view stream, std::size_t e, std::size_t i) {
    std::uint64_t s = 1469598103934665603ull;
    for (char ch : stream) s = (s ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
    const std::uint64_t h = splitmix64(splitmix64(splitmix64(seed ^ s) + e) + i);
    if constexpr (sizeof(T) <= 4) return static_cast<T>(static_cast<double>(h >> 40) * 0x1p-24);
    else return static_cast<T>(static_cast<double>(h >> 11) * 0x1p-53);
}

template <class M>
void check_streams() {
    using T = typename M::element_type;
    const std::size_t batch = 3 * f::program<T, u2, u>::tile + 5;  // several tiles, the last one partial
    typename M::parameters p;
    typename M::workspace ws;
    std::vector<T> twice(batch * S), once(batch * S), again(batch * S), other(batch * S);
    typename M::io io;
    io.seed = 1234;
    io.template output<0>(twice.data()).template output<1>(once.data());
    M::run(p, ws, batch, io);
    double sum = 0, sq = 0;
    bool in_range = true, as_defined = true, doubled = true;
    for (std::size_t e = 0; e < batch; ++e)
        for (std::size_t i = 0; i < S; ++i) {
            const T v = once[e * S + i];
            in_range = in_range && v >= T(0) && v < T(1);
            as_defined = as_defined && v == expected<T>(1234, "drop", e, i);  // the example index counts across tiles
            doubled = doubled && twice[e * S + i] == T(2) * v;
            sum += v, sq += double(v) * double(v);
        }
    CHECK(in_range);
    CHECK(as_defined);
    CHECK(doubled);
    const double n = double(batch * S), mean = sum / n, var = sq / n - mean * mean;
    CHECK(mean == doctest::Approx(0.5).epsilon(0.02));
    CHECK(var == doctest::Approx(1.0 / 12).epsilon(0.04));

    io.template output<0>(twice.data()).template output<1>(again.data());
    M::run(p, ws, batch, io);
    CHECK(again == once);  // same seed, same numbers
    io.seed = 1235;
    io.template output<1>(other.data());
    M::run(p, ws, batch, io);
    std::size_t same = 0;
    for (std::size_t i = 0; i < other.size(); ++i) same += other[i] == once[i];
    CHECK(same < other.size() / 100);  // another seed, other numbers
    // distinct examples and elements get distinct values
    std::set<T> distinct(once.begin(), once.end());
    CHECK(distinct.size() > once.size() * 99 / 100);
}
} // namespace

TEST_CASE_TEMPLATE("random_uniform: in [0, 1), deterministic per seed, independent of tiling", T, float, double) {
    // 2 * u is a fused elementwise step (SIMD runs); u alone is a root copy (scalar reads)
    using M = f::program<T, u2, u>;
    check_streams<M>();
    check_streams<typename M::template with_backend<f::reference_backend>>();
}

TEST_CASE("random_uniform: streams are independent") {
    using M = f::program<double, u, v_other>;
    M::parameters p;
    M::workspace ws;
    std::vector<double> a(8 * S), b(8 * S);
    M::io io;
    io.output<0>(a.data()).output<1>(b.data());
    M::run(p, ws, 8, io);
    std::size_t same = 0;
    for (std::size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
    CHECK(same == 0);
    bool as_defined = true;
    for (std::size_t e = 0; e < 8; ++e)
        for (std::size_t i = 0; i < S; ++i) as_defined = as_defined && b[e * S + i] == expected<double>(0, "other", e, i);
    CHECK(as_defined);
}

TEST_CASE("random_uniform: a dropout mask is the same in the forward and the backward pass") {
    using G = f::grad_program<double, dropped>;
    const std::size_t batch = 2 * G::tile + 3;
    G::parameters p;
    G::workspace ws;
    std::vector<double> xs(batch * S), ct(batch * S), out(batch * S), dx(batch * S);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = leaf_value("x", i), ct[i] = leaf_value("ct", i);
    G::io io;
    io.seed = 99;
    io.input<"x">(xs.data()).input<"cotangent">(ct.data());
    io.output<0>(out.data()).output<G::grad<"x">>(dx.data());
    G::run(p, ws, batch, io);
    std::size_t kept = 0;
    for (std::size_t e = 0; e < batch; ++e)
        for (std::size_t i = 0; i < S; ++i) {
            const std::size_t k = e * S + i;
            const bool on = expected<double>(99, "drop", e, i) < keep;
            kept += on;
            CHECK(out[k] == doctest::Approx(on ? xs[k] / keep : 0.0));
            CHECK(dx[k] == doctest::Approx(on ? ct[k] / keep : 0.0));
        }
    CHECK(double(kept) / double(batch * S) == doctest::Approx(keep).epsilon(0.05));
    // forward mode: the mask is a constant, so d y = mask * d x / keep
    using J = f::jvp_program<double, dropped>;
    J::parameters jp;
    J::workspace jws;
    std::vector<double> tx(batch * S), jy(batch * S), jt(batch * S);
    for (std::size_t i = 0; i < tx.size(); ++i) tx[i] = leaf_value("tx", i);
    J::io jio;
    jio.seed = 99;
    jio.input<"x">(xs.data()).input<"d.x">(tx.data());
    jio.output<0>(jy.data()).output<1>(jt.data());
    J::run(jp, jws, batch, jio);
    CHECK(jy == out);
    for (std::size_t k = 0; k < jt.size(); ++k) CHECK(jt[k] == doctest::Approx(out[k] == 0 ? 0.0 : tx[k] / keep));
}

// =================================================================================================
// Random leaves of other kinds (core/random.hpp): open uniform, normal, Gumbel, logistic; shared
// by every example of a call (unbatched: gate noise drawn once per call); a fixed seed (constants
// of the model). Checked against the definition, statistically, and CPU against reference.
// =================================================================================================
namespace {
constexpr std::size_t R = 21;
constexpr auto open_u = f::random_leaf<"open", f::random_kind::open_uniform, false, R>;
constexpr auto normal_v = f::random_leaf<"normal", f::random_kind::normal, false, R>;
constexpr auto gumbel_v = f::random_leaf<"gumbel", f::random_kind::gumbel, false, R>;
constexpr auto logistic_v = f::random_leaf<"logistic", f::random_kind::logistic, false, R>;
constexpr auto shared_v = f::random_leaf<"shared", f::random_kind::gumbel, true, R>;
// a shared draw used by every example: x + shared (batched), and the draw itself (unbatched)
constexpr auto x_plus_shared = f::input<"x", R> + shared_v;
constexpr auto fixed_v = [] {
    f::expr e;
    e.id = f::build::random_leaf(e.g, f::make_dims<R>(), f::random_kind::open_uniform, true, 77, "fixed");
    return e;
}();

double open_expected(std::uint64_t seed, std::string_view stream, std::uint64_t e, std::uint64_t i) {
    std::uint64_t s = 1469598103934665603ull;
    for (char ch : stream) s = (s ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
    const std::uint64_t h = splitmix64(splitmix64(splitmix64(seed ^ s) + e) + i);
    return (static_cast<double>(h >> 40) + 0.5) * 0x1p-24;
}
} // namespace

TEST_CASE("random leaves: open uniform, normal, Gumbel and logistic as defined, with their moments") {
    using M = f::program<double, open_u, normal_v, gumbel_v, logistic_v>;
    const std::size_t batch = 2 * M::tile + 7;
    M::parameters p;
    M::workspace ws;
    std::vector<double> o(batch * R), n(batch * R), g(batch * R), l(batch * R);
    M::io io;
    io.seed = 5;
    io.output<0>(o.data()).output<1>(n.data()).output<2>(g.data()).output<3>(l.data());
    M::run(p, ws, batch, io);
    double sn = 0, sn2 = 0, sg = 0, sl = 0, sl2 = 0;
    bool defined = true, open = true;
    for (std::size_t e = 0; e < batch; ++e)
        for (std::size_t i = 0; i < R; ++i) {
            const std::size_t k = e * R + i;
            const double u = open_expected(5, "open", e, i);
            defined = defined && o[k] == u;
            open = open && o[k] > 0 && o[k] < 1;
            const double u1 = open_expected(5, "normal", e, 2 * i), u2 = open_expected(5, "normal", e, 2 * i + 1);
            defined = defined && n[k] == std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
            defined = defined && g[k] == -std::log(-std::log(open_expected(5, "gumbel", e, i)));
            const double ul = open_expected(5, "logistic", e, i);
            defined = defined && l[k] == std::log(ul) - std::log1p(-ul);
            sn += n[k], sn2 += n[k] * n[k], sg += g[k], sl += l[k], sl2 += l[k] * l[k];
        }
    CHECK(defined);
    CHECK(open);
    const double cnt = double(batch * R);
    CHECK(std::abs(sn / cnt) < 0.05);
    CHECK(sn2 / cnt == doctest::Approx(1.0).epsilon(0.05));
    CHECK(sg / cnt == doctest::Approx(0.5772156649).epsilon(0.05));  // Euler-Mascheroni
    CHECK(std::abs(sl / cnt) < 0.1);
    CHECK(sl2 / cnt == doctest::Approx(3.289868).epsilon(0.08));     // pi^2 / 3
    // the reference backend draws the same numbers
    using Ref = M::with_backend<f::reference_backend>;
    Ref::parameters rp;
    Ref::workspace rws;
    std::vector<double> ro(batch * R), rn(batch * R), rg(batch * R), rl(batch * R);
    Ref::io rio;
    rio.seed = 5;
    rio.output<0>(ro.data()).output<1>(rn.data()).output<2>(rg.data()).output<3>(rl.data());
    Ref::run(rp, rws, batch, rio);
    CHECK(ro == o);
    CHECK(rn == n);
    CHECK(rg == g);
    CHECK(rl == l);
}

TEST_CASE("random leaves: float open uniforms stay inside (0, 1)") {
    // 1 - 2^-25 rounds to 1 in float: the generator keeps it below 1
    CHECK(f::random_value<float>(f::random_kind::open_uniform, 0, 0, 0, 0) < 1.0f);
    using M = f::program<float, open_u>;
    M::parameters p;
    M::workspace ws;
    const std::size_t batch = 4000;
    std::vector<float> o(batch * R);
    M::io io;
    io.output<0>(o.data());
    M::run(p, ws, batch, io);
    bool open = true;
    for (float v : o) open = open && v > 0.0f && v < 1.0f;
    CHECK(open);
}

TEST_CASE("random leaves: a shared draw is the same for every example and tile, new per seed") {
    using M = f::program<double, x_plus_shared, shared_v>;
    const std::size_t batch = 3 * M::tile + 2;
    M::parameters p;
    M::workspace ws;
    std::vector<double> xs(batch * R, 0.0), y(batch * R), s(R);
    M::io io;
    io.seed = 11;
    io.input<"x">(xs.data()).output<0>(y.data()).output<1>(s.data());
    M::run(p, ws, batch, io);
    CHECK(s[0] == -std::log(-std::log(open_expected(11, "shared", f::shared_example, 0))));
    bool same = true;
    for (std::size_t e = 0; e < batch; ++e)
        for (std::size_t i = 0; i < R; ++i) same = same && y[e * R + i] == s[i];
    CHECK(same);
    std::vector<double> s2(R);
    io.seed = 12;
    io.output<1>(s2.data());
    M::run(p, ws, batch, io);
    CHECK(s2 != s);
}

TEST_CASE("random leaves: a fixed seed gives constants of the model, whatever io.seed") {
    using M = f::program<double, fixed_v>;
    M::parameters p;
    M::workspace ws;
    std::vector<double> a(R), b(R);
    M::io io;
    io.seed = 1;
    io.output<0>(a.data());
    M::run(p, ws, 4, io);
    io.seed = 2;
    io.output<0>(b.data());
    M::run(p, ws, 4, io);
    CHECK(a == b);
    for (std::size_t i = 0; i < R; ++i) CHECK(a[i] == open_expected(77, "fixed", f::shared_example, i));
}

namespace {
// views of a random leaf (no buffer of its own) and a random leaf as a GEMM operand
constexpr auto vu = f::random_leaf<"vu", f::random_kind::uniform, false, 6>;
constexpr auto v_sg = f::input<"x", 3> * f::stop_gradient(f::reshape(f::slice(vu, 0, 0, 3), f::make_dims<3>()));
constexpr auto v_mm = f::matmul(f::reshape(vu, f::make_dims<2, 3>()), f::param<"W", 3, 2>);
constexpr auto v_cat = f::concat(0, {f::reshape(vu, f::make_dims<6>()), f::input<"x", 3>});
constexpr auto v_shared = f::matmul(f::input<"x", 3>, f::reshape(f::random_leaf<"vs", f::random_kind::normal, true, 6>, f::make_dims<3, 2>()));
} // namespace

TEST_CASE("random leaves: reshaped, under stop_gradient, concatenated and as GEMM operands (CPU = reference)") {
    using P = f::program<double, v_sg, v_mm, v_cat, v_shared>;
    using Ref = P::with_backend<f::reference_backend>;
    const std::size_t batch = 5;
    std::vector<double> x(batch * 3), w(6);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.1 * double(i) - 0.4;
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.3 * double(i) - 0.5;
    auto run = [&](auto tag) {
        using Q = decltype(tag);
        typename Q::parameters p;
        p.set("W", w);
        typename Q::workspace ws;
        std::vector<std::vector<double>> out = {std::vector<double>(batch * 3), std::vector<double>(batch * 4),
                                                std::vector<double>(batch * 9), std::vector<double>(batch * 2)};
        typename Q::io io;
        io.seed = 21;
        io.in[0] = x.data();
        for (std::size_t r = 0; r < 4; ++r) io.out[r] = out[r].data();
        Q::run(p, ws, batch, io);
        return out;
    };
    const auto got = run(P{}), want = run(Ref{});
    CHECK(got[0] == want[0]);  // products and copies of the stream: exact
    CHECK(got[2] == want[2]);
    for (std::size_t r : {1, 3})  // GEMMs: the CPU backend's multiply-adds are fused where the target has FMA
        for (std::size_t i = 0; i < got[r].size(); ++i) CHECK(got[r][i] == doctest::Approx(want[r][i]).epsilon(1e-14));
    // the concatenation's first six values are the stream itself
    for (std::size_t e = 0; e < batch; ++e)
        for (std::size_t k = 0; k < 6; ++k)
            CHECK(got[2][e * 9 + k] == f::random_uniform_value<double>(21, f::stream_hash("vu"), e, k));
}

namespace {
// reverse mode of a per-example einsum under sum: the cotangent reaching the einsum is a constant
// (ones), which the contraction's VJP uses as a GEMM operand (regression: a compile error)
constexpr auto ce_a = f::input<"a", 2, 3>;
constexpr auto ce_s = f::input<"s", 2, 3>;
constexpr auto ce_o = f::input<"o", 3, 4>;
constexpr auto ce_y = f::batch_sum(f::sum(f::einsum<"te,ed->td">(ce_a / ce_s, ce_o)));
} // namespace

TEST_CASE("reverse mode: a constant cotangent as a contraction operand is stored") {
    using G = f::grad_program<double, ce_y>;
    G::parameters p;
    G::workspace ws;
    G::io io;
    double av[6] = {1, 2, 3, 4, 5, 6}, sv[6] = {1, 1, 1, 2, 2, 2}, ov[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    double out[1], da[6], ds[6], dov[12];
    io.input<"a">(av).input<"s">(sv).input<"o">(ov).output<0>(out);
    io.output<G::grad<"a">>(da).output<G::grad<"s">>(ds).output<G::grad<"o">>(dov);
    G::run(p, ws, 1, io);
    CHECK(out[0] == doctest::Approx(399));
    const double rows[3] = {10, 26, 42};
    for (int t = 0; t < 2; ++t)
        for (int e = 0; e < 3; ++e) {
            CHECK(da[t * 3 + e] == doctest::Approx(rows[e] / sv[t * 3 + e]));
            CHECK(ds[t * 3 + e] == doctest::Approx(-rows[e] * av[t * 3 + e] / (sv[t * 3 + e] * sv[t * 3 + e])));
        }
    for (int e = 0; e < 3; ++e)
        for (int d = 0; d < 4; ++d) CHECK(dov[e * 4 + d] == doctest::Approx(av[e] / sv[e] + av[3 + e] / sv[3 + e]));
}

// kernels/cpu/gemm.hpp's batch invariance rests on its scalar paths rounding a * b + c exactly as
// the vector FMA does on the target (fused with FMA3 / AVX-512, two roundings on the SSE2 baseline;
// this file also builds for AVX2 and the baseline).
TEST_CASE("the scalar multiply-add of the GEMM tails rounds as the SIMD FMA does") {
    auto check = [](auto zero) {
        using T = decltype(zero);
        using V = ctrec::simd_t<T>;
        std::size_t fused_differs = 0;
        for (int i = 1; i < 2000; ++i) {
            const T a = T(1) + T(i) * std::numeric_limits<T>::epsilon() * T(3.7);
            const T b = T(1) - T(i) * std::numeric_limits<T>::epsilon() * T(1.3);
            const T c = -(a * b);
            alignas(64) T lane[V::size];
            ctrec::simd_fma(V(a), V(b), V(c)).store_aligned(lane);
            CHECK(ctrec::fma_like_simd(a, b, c) == lane[0]);
            fused_differs += std::fma(a, b, c) != a * b + c;
        }
        CHECK(fused_differs > 0);  // the inputs do tell fused from unfused apart
    };
    check(0.0f);
    check(0.0);
}
