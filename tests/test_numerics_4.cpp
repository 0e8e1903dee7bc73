// NaN / Inf at padded steps of the masked sequence layers (issue 15): AGRU / AUGRU with a mask
// (inputs and attention scores) and DIEN with a mask (behaviour keys). A masked step does not
// enter the result, so a NaN or an infinity there changes no output and no gradient (bit for
// bit, in float64 on the CPU and the reference backends; float outputs too), and the padded
// inputs get exactly zero gradient. A NaN at a real step poisons its own example only.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/agru.hpp"
#include "ctrec/layers/dien.hpp"
#include "numerics_support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
using num::inf;
using num::leaves;
using num::qnan;
using num::vec;

namespace {

constexpr std::size_t B = 70, T = 4, I = 2, U = 3, E = 2;
constexpr auto mask = f::input<"mask", T>;
constexpr auto rnn = fl::agru_rnn<"c", {.units = U, .att_type = fl::agru_att::augru}>(f::input<"x", T, I>, f::input<"a", T>, mask);
constexpr auto dien_y = fl::dien<"d", {.num_units = U, .att_type = fl::agru_att::augru}>(f::input<"q", U>, f::input<"k", T, E>, mask).out();
constexpr auto root = f::concat<0>(f::reshape<T * U>(rnn.out()), rnn.final_state(), dien_y);
constexpr std::size_t NR = T * U + U + U;
using Fwd64 = f::program<double, root>;
using Fwd32 = f::program<float, root>;
using Grad = f::grad_program<double, root>;

// step 1 padded everywhere, step 3 padded in odd examples, example 5 has no real step but 0
bool padded(std::size_t b, std::size_t t) { return t == 1 || (t == 3 && b % 2 == 1) || (b == 5 && t != 0); }

leaves make_leaves() {
    leaves L;
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t t = 0; t < T; ++t) L["mask"].push_back(padded(b, t) ? 0.0 : 1.0);
    num::prepare<Grad>(L, B);
    return L;
}
// every padded element of x, a and k set to v
leaves poisoned(leaves L, double v) {
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t t = 0; t < T; ++t) {
            if (!padded(b, t)) continue;
            for (std::size_t i = 0; i < I; ++i) L["x"][(b * T + t) * I + i] = v;
            for (std::size_t e = 0; e < E; ++e) L["k"][(b * T + t) * E + e] = v;
            L["a"][b * T + t] = v;
        }
    return L;
}

template <class P>
std::vector<vec> run_on(int backend, leaves L) {
    return backend ? test::run<num::ref_of<P>>(L, B) : test::run<P>(L, B);
}

} // namespace

TEST_CASE("AGRU / AUGRU and DIEN with a mask: NaN or inf at padded steps changes no output") {
    auto check = [](auto prog) {
        using P = decltype(prog);
        for (int backend = 0; backend < 2; ++backend) {
            INFO(std::string(backend ? "reference" : "CPU") << " backend, "
                                                            << std::string(sizeof(typename P::element_type) == 4 ? "float" : "double"));
            const leaves L0 = make_leaves();
            const vec base = run_on<P>(backend, L0)[0];
            for (double v : {qnan, inf, -inf}) {
                INFO("padding " << v);
                num::check_identical(run_on<P>(backend, poisoned(L0, v))[0], base);
            }
            // a NaN at a real step poisons its example (from that step on) and nothing else
            leaves L = L0;
            L["x"][(8 * T + 2) * I] = qnan;  // example 8, real step 2
            L["k"][(9 * T + 0) * E] = qnan;  // example 9, real step 0
            const vec got = run_on<P>(backend, L)[0];
            std::size_t wrong = 0;
            for (std::size_t b = 0; b < B; ++b)
                for (std::size_t i = 0; i < NR; ++i) {
                    const double g = got[b * NR + i], w = base[b * NR + i];
                    const bool agru_after = b == 8 && i >= 2 * U && i < T * U + U;  // h_3, h_4 and the final state
                    const bool dien_out = b == 9 && i >= T * U + U;
                    if (agru_after || dien_out) wrong += !std::isnan(g);
                    else wrong += !(g == w);
                }
            CHECK(wrong == 0);
        }
    };
    check(Fwd64{});
    check(Fwd32{});
}

TEST_CASE("AGRU / AUGRU and DIEN with a mask: NaN or inf at padded steps changes no gradient; padded inputs get 0") {
    const leaves L0 = make_leaves();
    for (int backend = 0; backend < 2; ++backend) {
        INFO(std::string(backend ? "reference" : "CPU") << " backend");
        const auto base = run_on<Grad>(backend, L0);
        for (double v : {qnan, inf}) {
            INFO("padding " << v);
            const auto got = run_on<Grad>(backend, poisoned(L0, v));
            for (std::size_t r = 0; r < got.size(); ++r) {
                INFO("output " << r);
                num::check_identical(got[r], base[r]);
            }
            std::size_t nonzero = 0;
            for (std::size_t b = 0; b < B; ++b)
                for (std::size_t t = 0; t < T; ++t) {
                    if (!padded(b, t)) continue;
                    for (std::size_t i = 0; i < I; ++i) nonzero += got[Grad::grad<"x">][(b * T + t) * I + i] != 0.0;
                    for (std::size_t e = 0; e < E; ++e) nonzero += got[Grad::grad<"k">][(b * T + t) * E + e] != 0.0;
                    nonzero += got[Grad::grad<"a">][b * T + t] != 0.0;
                }
            CHECK(nonzero == 0);
        }
    }
}
