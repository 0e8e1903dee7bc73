// DIN (spec layers-trans-seq-multitask-nas.md 2.2) against a naive reference that builds
// z_t = [q, k_t, q - k_t, q * k_t] and runs the weight-normalised MLP on it literally; both
// modes, decay, masks (padding invariance, zero gradient at padded keys); derivatives for
// q, k and every variable; the plans of the rewritten layer (no 4H-wide row, q's share once
// per example, forward and gradient); the original test; variable names.
#include "support.hpp"

#include <algorithm>
#include <cmath>

#include "ctrec/layers/din.hpp"
#include "ctrec/layers/initialize.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
constexpr std::size_t T = 5, H = 3, B = 3;
constexpr auto q = input<"q", H>;
constexpr auto k = input<"k", T, H>;
constexpr auto mask = input<"mask", T>;

constexpr din_config<3> relu_cfg{.hidden_units = {6, 4, 1}, .activation = act_relu};
constexpr din_config<2> masked_cfg{.hidden_units = {4, 1}, .activation = act_sigmoid, .mode = din_mode::weighted, .decay = true};

using Plain = std::remove_cvref_t<decltype(din<"din", relu_cfg>(q, k).out)>;
using Masked = std::remove_cvref_t<decltype(din<"din", masked_cfg>(q, k, mask).out)>;

// mask values far from the threshold 1 (finite differences must not cross it)
double mask_value(std::string_view name, std::size_t i) {
    if (name == "mask") return (i * 7 + 3) % 5 < 2 ? 0.0 : 2.0;  // steps 2 of every 5 padded
    return leaf_value(name, i);
}

// Spec 2.2.5, literally. act: 0 identity, 1 relu, 2 sigmoid.
std::vector<double> reference(std::size_t batch, const std::vector<std::size_t>& units, int act, bool weighted,
                              bool decay, bool use_mask, test::value_fn f = mask_value) {
    const std::size_t n = units.size();
    std::vector<double> out(batch * (weighted ? T * H : H), 0.0);
    for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t t = 0; t < T; ++t) {
            std::vector<double> h(4 * H);
            for (std::size_t j = 0; j < H; ++j) {
                double qv = f("q", b * H + j), kv = f("k", (b * T + t) * H + j);
                h[j] = qv, h[H + j] = kv, h[2 * H + j] = qv - kv, h[3 * H + j] = qv * kv;
            }
            std::size_t in = 4 * H;
            for (std::size_t l = 0; l < n; ++l) {
                const std::string s = "din/compress_tower/dense_" + std::to_string(l);
                std::vector<double> z(units[l]);
                for (std::size_t o = 0; o < units[l]; ++o) {
                    double norm = 0;  // weight norm over all `in` rows of the column (4H for the first layer)
                    for (std::size_t i = 0; i < in; ++i) norm += f(s + "/kernel", i * units[l] + o) * f(s + "/kernel", i * units[l] + o);
                    double g = f(s + "/trainable_kernel_norm", o) / std::sqrt(std::max(norm, 1e-6));
                    double a = f(s + "/bias", o);
                    for (std::size_t i = 0; i < in; ++i) a += h[i] * f(s + "/kernel", i * units[l] + o) * g;
                    if (l + 1 < n) a = act == 1 ? std::max(a, 0.0) : act == 2 ? 1 / (1 + std::exp(-a)) : a;
                    z[o] = a;
                }
                h = z;
                in = units[l];
            }
            double w = h[0];
            if (decay) w /= std::sqrt(double(H));
            if (use_mask && !(f("mask", b * T + t) >= 1)) w = 0;
            for (std::size_t j = 0; j < H; ++j) {
                double v = w * f("k", (b * T + t) * H + j);
                if (weighted) out[(b * T + t) * H + j] = v;
                else out[b * H + j] += v;
            }
        }
    return out;
}

template <class Plan>
std::size_t count_contract(std::size_t size, bool batched) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < Plan::size; ++i)
        n += Plan::data.rec[i].k == kind::contract && Plan::data.rec[i].batched == batched &&
             Plan::data.rec[i].shape.size() == size;
    return n;
}
template <class Plan>
bool has_wide_row() {
    for (std::size_t i = 0; i < Plan::size; ++i)
        if (Plan::data.rec[i].batched && Plan::data.rec[i].shape.size() % (4 * H) == 0 &&
            Plan::data.rec[i].shape.size() >= T * 4 * H)
            return true;
    return false;
}
} // namespace

TEST_CASE("din: relu MLP with weight norm, mode sum, against the literal reference; derivatives") {
    test::check_forward<Plain>(B, reference(B, {6, 4, 1}, 1, false, false, false));
    test::check_ad<Plain>(B);
}

TEST_CASE("din: mask, decay and mode weighted against the reference; derivatives with padded steps") {
    const auto want = reference(B, {4, 1}, 2, true, true, true);
    test::check_forward<Masked>(B, want, mask_value);
    // padded steps are exactly zero rows in mode weighted
    std::size_t zero_rows = 0;
    for (std::size_t r = 0; r < B * T; ++r) zero_rows += std::all_of(want.begin() + r * H, want.begin() + (r + 1) * H, [](double v) { return v == 0.0; });
    CHECK(zero_rows >= 3);
    test::check_ad<Masked>(B, [](std::string_view name, double v) { return name == "mask" ? (v > 0 ? 2.0 : 0.0) : v; });
}

TEST_CASE("din: padding never changes the result; padded keys get zero gradient") {
    using S = std::remove_cvref_t<decltype(din<"din", din_config<2>{.hidden_units = {4, 1}, .activation = act_relu}>(q, k, mask).out)>;
    auto garbage = [](std::string_view name, std::size_t i) {
        if (name == "k" && mask_value("mask", i / H) == 0.0) return 1e3 * leaf_value("other", i);
        return mask_value(name, i);
    };
    using G = grad_program<double, S>;
    const auto clean = test::run_all<G>(B, mask_value);
    const auto dirty = test::run_all<G>(B, garbage);
    REQUIRE(clean.size() == dirty.size());
    for (std::size_t r = 0; r < clean.size(); ++r) {
        if (r == G::grad<"k">) continue;  // the keys differ at padded steps; checked below
        for (std::size_t i = 0; i < clean[r].size(); ++i) CHECK(clean[r][i] == doctest::Approx(dirty[r][i]).epsilon(1e-12));
    }
    const auto& dk = dirty[G::grad<"k">];
    for (std::size_t i = 0; i < dk.size(); ++i)
        if (mask_value("mask", i / H) == 0.0) CHECK(dk[i] == 0.0);
    // and the padded steps really were different inputs that matter when unmasked
    using U = std::remove_cvref_t<decltype(din<"din", din_config<2>{.hidden_units = {4, 1}, .activation = act_relu}>(q, k).out)>;
    const auto a = test::run<double, U>(B, mask_value), c = test::run<double, U>(B, garbage);
    double diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - c[i]));
    CHECK(diff > 1.0);
}

TEST_CASE("din: the plans never build the 4H-wide row and compute q's share once per example") {
    using F = program<double, Plain>::plan_type;
    using G = grad_program<double, Plain>::plan_type;
    INFO(F::describe());
    CHECK_FALSE(has_wide_row<F>());
    CHECK_FALSE(has_wide_row<G>());
    // first layer: q (W_a + W_c) is a (6)-vector per example; k (W_b - W_c) and (q * k) W_d are (T, 6)
    CHECK(count_contract<F>(6, true) == 1);
    CHECK(count_contract<F>(T * 6, true) == 2);
    // the literal form would contract a (T, 4H) concat
    using L = plan<Plain>;
    std::size_t concats = 0;
    for (std::size_t i = 0; i < L::size; ++i) concats += L::data.rec[i].k == kind::concat;
    CHECK(concats == 1);
    // backward: dq gets its share through one (6) x (6, H) product per example
    CHECK(count_contract<G>(H, true) >= 1);
}

TEST_CASE("din: the original test: hidden_units [10, 1] on ones q (100, 10), k (100, 15, 10)") {
    constexpr auto q10 = input<"q", 10>;
    constexpr auto k10 = input<"k", 15, 10>;
    constexpr auto r = din<"din", din_config<2>{.hidden_units = {10, 1}}>(q10, k10);
    using M = program<float, decltype(r.out)>;
    static_assert(M::output_size<0> == 10);
    auto ones = [](std::string_view name, std::size_t i) {
        return name == "q" || name == "k" ? 1.0 : leaf_value(name, i);
    };
    const auto got = test::run<float, std::remove_cvref_t<decltype(r.out)>>(100, ones);
    REQUIRE(got.size() == 100 * 10);
    // identity activation (the default): the MLP is affine; on ones every example is the same
    double w = 0;  // the score of one step, from the leaf values
    {
        std::vector<double> h(40);
        for (std::size_t j = 0; j < 10; ++j) h[j] = 1, h[10 + j] = 1, h[20 + j] = 0, h[30 + j] = 1;
        std::size_t in = 40;
        for (std::size_t l = 0, units[] = {10, 1}; l < 2; ++l) {
            const std::string s = "din/compress_tower/dense_" + std::to_string(l);
            std::vector<double> z(units[l]);
            for (std::size_t o = 0; o < units[l]; ++o) {
                double norm = 0, a = leaf_value(s + "/bias", o);
                for (std::size_t i = 0; i < in; ++i) norm += std::pow(leaf_value(s + "/kernel", i * units[l] + o), 2);
                for (std::size_t i = 0; i < in; ++i)
                    a += h[i] * leaf_value(s + "/kernel", i * units[l] + o) * leaf_value(s + "/trainable_kernel_norm", o) / std::sqrt(norm);
                z[o] = a;
            }
            h = z, in = units[l];
        }
        w = h[0];
    }
    for (float v : got) CHECK(v == doctest::Approx(15 * w).epsilon(1e-4));
}

TEST_CASE("din: variables, shapes and initializers") {
    constexpr auto r = din<"din", relu_cfg>(q, k);
    using M = program<float, decltype(r.out)>;
    CHECK(M::parameters::names.size() == 9);
    CHECK(M::parameters::shapes[M::param_index<"din/compress_tower/dense_0/kernel">] == make_dims<4 * H, 6>());
    CHECK(M::parameters::shapes[M::param_index<"din/compress_tower/dense_1/kernel">] == make_dims<6, 4>());
    CHECK(M::parameters::shapes[M::param_index<"din/compress_tower/dense_2/kernel">] == make_dims<4, 1>());
    CHECK(M::parameters::shapes[M::param_index<"din/compress_tower/dense_0/trainable_kernel_norm">] == make_dims<6>());
    M::parameters p;
    initialize<decltype(r)::inits>(p, 5);
    for (float v : p.get<"din/compress_tower/dense_0/bias">()) CHECK(v == 0.0f);
    double s = 0;
    for (float v : p.get<"din/compress_tower/dense_0/kernel">()) s += double(v) * v;
    CHECK(s > 0);
}
