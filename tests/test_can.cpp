// CAN, the co-action unit (spec layers-core-and-cross.md section 7): the four is_seq /
// is_stacked modes against a naive per-row reference built from the item slices (7.5), in
// float64 and float32, finite-difference gradients of user and item, the original tests'
// all-ones sums (7.7), activation after every layer, the (false, false) shape kept (B, D)
// (also for B = 1 and D = 1), and unmasked sequence padding (7.9).
#include "support.hpp"

#include <algorithm>

#include "ctrec/layers/can.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
using mat = std::vector<double>;

// The spec's math with every intermediate built: user per example holds G groups of S rows
// of D values (stacked: G = F, else 1; seq: S steps, else 1); the output per example is
// (G, D): out[g] = sum_s rows after the layer_num per-example layers (7.5).
template <class Act>
mat can_ref(std::size_t batch, std::size_t G, std::size_t S, std::size_t D, std::size_t layers, Act act,
            const test::value_fn& f = leaf_value) {
    const std::size_t I = layers * (D * D + D);
    mat out;
    for (std::size_t b = 0; b < batch; ++b) {
        // W_i[p][q] = item[o_i + p*D + q], beta_i[q] = item[o_i + D*D + q]
        std::vector<std::vector<mat>> W(layers, std::vector<mat>(D, mat(D)));
        std::vector<mat> beta(layers, mat(D));
        for (std::size_t i = 0; i < layers; ++i) {
            const std::size_t o = i * (D * D + D);
            for (std::size_t p = 0; p < D; ++p)
                for (std::size_t q = 0; q < D; ++q) W[i][p][q] = f("item", b * I + o + p * D + q);
            for (std::size_t q = 0; q < D; ++q) beta[i][q] = f("item", b * I + o + D * D + q);
        }
        for (std::size_t g = 0; g < G; ++g) {
            mat acc(D, 0.0);
            for (std::size_t s = 0; s < S; ++s) {
                mat u(D);
                for (std::size_t p = 0; p < D; ++p) u[p] = f("user", ((b * G + g) * S + s) * D + p);
                for (std::size_t i = 0; i < layers; ++i) {
                    mat z(D);
                    for (std::size_t q = 0; q < D; ++q) {
                        z[q] = beta[i][q];
                        for (std::size_t p = 0; p < D; ++p) z[q] += u[p] * W[i][p][q];
                        z[q] = act(z[q]);  // after every layer, the last included
                    }
                    u = z;
                }
                for (std::size_t q = 0; q < D; ++q) acc[q] += u[q];
            }
            out.insert(out.end(), acc.begin(), acc.end());
        }
    }
    return out;
}
double relu(double z) { return z > 0 ? z : 0; }
double tanh_(double z) { return std::tanh(z); }
double sigm(double z) { return 1 / (1 + std::exp(-z)); }

constexpr std::size_t B = 3, F = 2, S = 3, D = 3;
} // namespace

TEST_CASE("can: the four is_seq / is_stacked modes against the reference, gradients of user and item") {
    SUBCASE("is_seq false, is_stacked true (default): (F, D) -> (F, D)") {
        constexpr auto r = can<"CAN", can_config{}>(input<"user", F, D>, input<"item", 2 * (D * D + D)>);
        using E = std::remove_cvref_t<decltype(r.out)>;
        static_assert(E::shape == make_dims<F, D>());
        test::check_forward<E>(B, can_ref(B, F, 1, D, 2, relu));
        test::check_ad<E>(B);
        CHECK(program<double, E>::n_params == 0);  // no variables: the weights are item
        static_assert(is_zero_v<std::remove_cvref_t<decltype(r.penalty)>>);
    }
    SUBCASE("is_seq true, is_stacked true: (F, S, D) -> (F, D), summed over S") {
        constexpr auto r = can<"CAN", can_config{.is_seq = true}>(input<"user", F, S, D>, input<"item", 2 * (D * D + D)>);
        using E = std::remove_cvref_t<decltype(r.out)>;
        static_assert(E::shape == make_dims<F, D>());
        test::check_forward<E>(B, can_ref(B, F, S, D, 2, relu));
        test::check_ad<E>(B);
    }
    SUBCASE("is_seq true, is_stacked false, tanh, 3 layers: (S, D) -> (D)") {
        constexpr can_config cfg{.layer_num = 3, .activation = keras_activation("tanh"), .is_seq = true, .is_stacked = false};
        constexpr auto r = can<"CAN", cfg>(input<"user", S, D>, input<"item", 3 * (D * D + D)>);
        using E = std::remove_cvref_t<decltype(r.out)>;
        static_assert(E::shape == make_dims<D>());
        test::check_forward<E>(B, can_ref(B, 1, S, D, 3, tanh_));
        test::check_ad<E>(B);
        // no masking: all-zero (padded) steps still contribute act(act(act(beta_0) W_1 + beta_1) W_2 + beta_2)
        auto zero_user = [](std::string_view n, std::size_t i) { return n == "user" ? 0.0 : leaf_value(n, i); };
        const mat padded = can_ref(B, 1, S, D, 3, tanh_, zero_user);
        test::check_close(test::run<double, E>(B, zero_user), padded, 1e-12);
        CHECK(std::any_of(padded.begin(), padded.end(), [](double v) { return std::abs(v) > 1e-3; }));
    }
    SUBCASE("is_seq false, is_stacked false, sigmoid, 1 layer: (D) -> (D), not squeezed") {
        constexpr can_config cfg{.layer_num = 1, .activation = keras_activation("sigmoid"), .is_stacked = false};
        constexpr auto r = can<"CAN", cfg>(input<"user", D>, input<"item", D * D + D>);
        using E = std::remove_cvref_t<decltype(r.out)>;
        static_assert(E::shape == make_dims<D>());
        test::check_forward<E>(B, can_ref(B, 1, 1, D, 1, sigm));
        test::check_ad<E>(B);
    }
}

TEST_CASE("can (false, false) keeps (B, D) where the source squeezes: B = 1 and D = 1") {
    // D = 1: the source would return (B,); B = 1 as well: it would return a scalar
    constexpr can_config cfg{.is_stacked = false};
    constexpr auto r = can<"CAN", cfg>(input<"user", 1>, input<"item", 2 * (1 + 1)>);
    using E = std::remove_cvref_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<1>() && E::batched);
    auto y = test::run<double, E>(1);
    REQUIRE(y.size() == 1);
    test::check_close(y, can_ref(1, 1, 1, 1, 2, relu), 1e-12);
    test::check_close(test::run<double, E>(4), can_ref(4, 1, 1, 1, 2, relu), 1e-12);
}

TEST_CASE("can original tests: all-ones inputs, layer_num 2, relu, item (128, 220)") {
    auto ones = [](std::string_view, std::size_t) { return 1.0; };
    auto total = [](const std::vector<float>& v) {
        double s = 0;
        for (float x : v) s += x;
        return s;
    };
    SUBCASE("non-sequence, stacked: user (128, 10, 10) -> (128, 10, 10), every element 111, sum 1,420,800") {
        using E = decltype(can<"CAN", can_config{}>(input<"user", 10, 10>, input<"item", 220>).out);
        static_assert(E::shape == make_dims<10, 10>());
        auto y = test::run<float, E>(128, ones);
        REQUIRE(y.size() == 128 * 100);
        CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 111.f; }));  // relu(10*1 + 1) = 11, relu(10*11 + 1)
        CHECK(total(y) == 1420800.0);
    }
    SUBCASE("sequence, stacked: user (128, 10, 12, 10) -> (128, 10, 10), every element 12 * 111, sum 17,049,600") {
        using E = decltype(can<"CAN", can_config{.is_seq = true}>(input<"user", 10, 12, 10>, input<"item", 220>).out);
        static_assert(E::shape == make_dims<10, 10>());
        auto y = test::run<float, E>(128, ones);
        REQUIRE(y.size() == 128 * 100);
        CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == 1332.f; }));
        CHECK(total(y) == 17049600.0);
    }
}

TEST_CASE("can construction test: layer_num 8, sigmoid, stacked (the activation after all eight layers)") {
    constexpr can_config cfg{.layer_num = 8, .activation = keras_activation("sigmoid")};
    constexpr std::size_t d = 2;
    constexpr auto r = can<"CAN", cfg>(input<"user", F, d>, input<"item", 8 * (d * d + d)>);
    using E = std::remove_cvref_t<decltype(r.out)>;
    test::check_close(test::run<double, E>(B), can_ref(B, F, 1, d, 8, sigm), 1e-12);
    // Keras' None is linear: no activation at all
    constexpr auto lin = can<"CAN", can_config{.layer_num = 1, .activation = keras_activation("")}>(input<"user", F, d>, input<"item", d * d + d>);
    test::check_close(test::run<double, decltype(lin.out)>(B), can_ref(B, F, 1, d, 1, [](double z) { return z; }), 1e-12);
}
