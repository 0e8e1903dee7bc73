// Serving one user against many candidates: the user's behaviour sequence is a shared input
// (one value per call), the candidates are the batch. DIN and DMR_U2I give the same scores as
// with the user's features repeated for every candidate, their user-side terms are planned
// once per call, and gradients w.r.t. a shared input are the batch sums.
#include "support.hpp"

#include <cmath>

#include "ctrec/layers/din.hpp"
#include "ctrec/layers/dmr_u2i.hpp"

using namespace ctrec;
using namespace ctrec::layers;
using test::leaf_value;

namespace {
constexpr std::size_t T = 6, H = 4, I = 5, Cd = 3, B = 7;
constexpr din_config<3> cfg{.hidden_units = {8, 4, 1}, .activation = act_relu};

// user features: the same for every candidate in the batched form
double one_user(std::string_view name, std::size_t i) {
    if (name == "k") return leaf_value("k", i % (T * H));
    if (name == "seq") return leaf_value("seq", i % (T * H));
    if (name == "mask") return (i % T) < 4 ? 1.0 : 0.0;  // the user has 4 behaviours, 2 padded
    return leaf_value(name, i);
}

constexpr auto q = input<"q", H>;
constexpr auto item = input<"item", I>;
using DinShared = std::remove_cvref_t<decltype(din<"din", cfg>(q, shared_input<"k", T, H>, shared_input<"mask", T>).out)>;
using DinBatched = std::remove_cvref_t<decltype(din<"din", cfg>(q, input<"k", T, H>, input<"mask", T>).out)>;
using DmrShared = std::remove_cvref_t<decltype(dmr_u2i<"dmr", {.cmp_dim = Cd}>(item, shared_input<"seq", T, H>).out)>;
using DmrBatched = std::remove_cvref_t<decltype(dmr_u2i<"dmr", {.cmp_dim = Cd}>(item, input<"seq", T, H>).out)>;

template <class Plan>
std::size_t contracts(bool batched, std::size_t size = 0) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < Plan::size; ++i)
        n += Plan::data.rec[i].k == kind::contract && Plan::data.step[i] && Plan::data.rec[i].batched == batched &&
             (!size || Plan::data.rec[i].shape.size() == size);
    return n;
}
template <class Plan>
std::size_t epilogues(std::size_t size) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < Plan::size; ++i)
        n += Plan::data.rec[i].k == kind::contract && Plan::data.epilogue[i] && Plan::data.rec[i].batched &&
             Plan::data.rec[i].shape.size() == size;
    return n;
}
} // namespace

TEST_CASE("serving: DIN with a shared behaviour sequence scores like the per-candidate form") {
    const auto want = test::run<double, DinBatched>(B, one_user);
    test::check_close(test::run<double, DinShared>(B, one_user), want, 1e-12);
    test::check_close(test::run<float, DinShared>(B, one_user), want, 2e-5);
}

TEST_CASE("serving: DIN's user-side product runs once per call, the candidate-side ones per candidate") {
    using P = program<float, DinShared>::plan_type;
    INFO(P::describe());
    CHECK(contracts<P>(false, T * 8) == 1);  // k (W_b - W_c): once per request
    CHECK(contracts<P>(true, 8) == 1);       // q (W_a + W_c): per candidate, once
    CHECK(contracts<P>(true, T * 8) + epilogues<P>(T * 8) == 1);  // (q * k) W_d: per candidate (maybe in an epilogue)
}

TEST_CASE("serving: DMR_U2I with a shared sequence: everything but the product with the item runs once") {
    test::check_close(test::run<double, DmrShared>(B, one_user), test::run<double, DmrBatched>(B, one_user), 1e-12);
    using P = program<float, DmrShared>::plan_type;
    INFO(P::describe());
    CHECK(contracts<P>(true) == 0);
    CHECK(contracts<P>(false) >= 3);  // the score, the pooling and the projection
}

TEST_CASE("serving: the gradient w.r.t. a shared input is the sum over the batch") {
    using GS = grad_program<double, DinShared>;
    using GB = grad_program<double, DinBatched>;
    const auto s = test::run_all<GS>(B, one_user);
    const auto b = test::run_all<GB>(B, one_user);
    const auto& dks = s[GS::grad<"k">];
    const auto& dkb = b[GB::grad<"k">];
    REQUIRE(dks.size() == T * H);
    REQUIRE(dkb.size() == B * T * H);
    double scale = 0;
    for (std::size_t i = 0; i < T * H; ++i) {
        double sum = 0;
        for (std::size_t e = 0; e < B; ++e) sum += dkb[e * T * H + i];
        CHECK(dks[i] == doctest::Approx(sum).epsilon(1e-10));
        scale = std::max(scale, std::abs(sum));
    }
    CHECK(scale > 1e-3);
    // parameter gradients agree too
    const auto& w0s = s[GS::grad<"din/compress_tower/dense_0/kernel">];
    const auto& w0b = b[GB::grad<"din/compress_tower/dense_0/kernel">];
    for (std::size_t i = 0; i < w0s.size(); ++i) CHECK(w0s[i] == doctest::Approx(w0b[i]).epsilon(1e-10));
}
