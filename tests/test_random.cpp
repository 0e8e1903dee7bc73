// random_uniform: per-example uniform [0, 1) streams (dropout masks). Values are a pure
// function of (seed, stream, example index in the call, element index): checked across
// tile boundaries, in the SIMD and scalar paths, statistically, and through a gradient
// (the backward pass sees the forward's mask).
#include "support.hpp"

#include <set>

using namespace ctrec;

namespace {
constexpr std::size_t S = 37;  // not a multiple of any SIMD width: SIMD runs and scalar tails
constexpr auto u = random_uniform<"drop", S>;
constexpr auto x = input<"x", S>;

template <class T>
T expected(std::uint64_t seed, std::size_t e, std::size_t i) {
    return random_uniform_value<T>(seed, decltype(u)::stream_hash, e, i);
}
} // namespace

TEST_CASE_TEMPLATE("random_uniform: in [0, 1), deterministic per seed, independent of tiling", T, float, double) {
    // 2 * u is a fused elementwise step (SIMD runs); u alone is a root copy (scalar reads)
    using M = program<T, decltype(u * lit<2.0>), decltype(u)>;
    const std::size_t batch = 3 * M::tile + 5;  // several tiles, the last one partial
    typename M::parameters p;
    typename M::workspace ws;
    std::vector<T> twice(batch * S), once(batch * S), again(batch * S), other(batch * S);
    typename M::io io;
    io.seed = 1234;
    io.template output<0>(twice.data()).template output<1>(once.data());
    M::run(p, ws, batch, io);
    double sum = 0, sq = 0;
    for (std::size_t e = 0; e < batch; ++e)
        for (std::size_t i = 0; i < S; ++i) {
            const T v = once[e * S + i];
            CHECK(v >= T(0));
            CHECK(v < T(1));
            CHECK(v == expected<T>(1234, e, i));  // the example index counts across tiles
            CHECK(twice[e * S + i] == T(2) * v);
            sum += v, sq += double(v) * double(v);
        }
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

TEST_CASE("random_uniform: streams are independent") {
    constexpr auto v = random_uniform<"other", S>;
    using M = program<double, decltype(u), decltype(v)>;
    typename M::parameters p;
    typename M::workspace ws;
    std::vector<double> a(8 * S), b(8 * S);
    typename M::io io;
    io.template output<0>(a.data()).template output<1>(b.data());
    M::run(p, ws, 8, io);
    std::size_t same = 0;
    for (std::size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
    CHECK(same == 0);
}

TEST_CASE("random_uniform: a dropout mask is the same in the forward and the backward pass") {
    constexpr double keep = 0.7;
    // inverted dropout: x / keep where u < keep, else 0
    constexpr auto y = where(greater(lit<keep>, u), x * lit<1.0 / keep>, lit<0.0>);
    using G = grad_program<double, decltype(y)>;
    const std::size_t batch = 2 * G::tile + 3;
    typename G::parameters p;
    typename G::workspace ws;
    std::vector<double> xs(batch * S), ct(batch * S), out(batch * S), dx(batch * S);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = test::leaf_value("x", i), ct[i] = test::leaf_value("ct", i);
    typename G::io io;
    io.seed = 99;
    io.template input<"x">(xs.data()).template input<"cotangent">(ct.data());
    io.template output<0>(out.data()).template output<G::grad<"x">>(dx.data());
    G::run(p, ws, batch, io);
    std::size_t kept = 0;
    for (std::size_t e = 0; e < batch; ++e)
        for (std::size_t i = 0; i < S; ++i) {
            const std::size_t k = e * S + i;
            const bool on = expected<double>(99, e, i) < keep;
            kept += on;
            CHECK(out[k] == doctest::Approx(on ? xs[k] / keep : 0.0));
            CHECK(dx[k] == doctest::Approx(on ? ct[k] / keep : 0.0));
        }
    CHECK(double(kept) / double(batch * S) == doctest::Approx(keep).epsilon(0.05));
    // forward mode: the mask is a constant, so d y = mask * d x / keep
    using J = jvp_program<double, decltype(y)>;
    typename J::parameters jp;
    typename J::workspace jws;
    std::vector<double> tx(batch * S), jy(batch * S), jt(batch * S);
    for (std::size_t i = 0; i < tx.size(); ++i) tx[i] = test::leaf_value("tx", i);
    typename J::io jio;
    jio.seed = 99;
    jio.template input<"x">(xs.data()).template input<"d.x">(tx.data());
    jio.template output<0>(jy.data()).template output<1>(jt.data());
    J::run(jp, jws, batch, jio);
    for (std::size_t k = 0; k < jt.size(); ++k) CHECK(jt[k] == doctest::Approx(out[k] == 0 ? 0.0 : tx[k] / keep));
}
