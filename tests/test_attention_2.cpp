// iRazor : forward against a naive float64
// reference written from the spec (layers-trans-seq-multitask-nas.md 1.3: P, the rigid masks R,
// M = P . R built literally) on the CPU and reference backends at batch 1, 5 and 70, float too;
// the auxiliary loss; derivatives (central differences, JVP/VJP duality); the spec's reference
// value; leading zero columns, an empty group; variable, initializer, penalty.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ctrec/ctrec.hpp"
#include "ctrec/layers/irazor.hpp"
#include "layer_reference.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using ctrec::make_dims;
using flat_ref::get;
using flat_ref::vec;
using test::leaves;
using test::forward;

namespace {


// ---- iRazor (spec 1.3): P, the rigid masks R, M = P . R and Y = X * M built literally -------------
struct irazor_reference {
    std::vector<std::size_t> ns;
    std::size_t n, k;
    vec P, M;
    irazor_reference(leaves& L, std::vector<std::size_t> ns_, double t, std::size_t n_, std::size_t k_)
        : ns(std::move(ns_)), n(n_), k(k_) {
        const std::size_t Ln = ns.size();
        const vec& w = get(L, "r/nas_weight");
        P.assign(n * Ln, 0);
        for (std::size_t a = 0; a < n; ++a) {
            double mx = -1e300, s = 0;
            for (std::size_t i = 0; i < Ln; ++i) mx = std::max(mx, w[a * Ln + i] / t);
            for (std::size_t i = 0; i < Ln; ++i) s += P[a * Ln + i] = std::exp(w[a * Ln + i] / t - mx);
            for (std::size_t i = 0; i < Ln; ++i) P[a * Ln + i] /= s;
        }
        vec R(Ln * k, 0.0);  // row 0 zeros; row i ones on [ns[i-1], ns[i])
        for (std::size_t i = 1; i < Ln; ++i)
            for (std::size_t c = ns[i - 1]; c < ns[i]; ++c) R[i * k + c] = 1;
        M.assign(n * k, 0);
        for (std::size_t a = 0; a < n; ++a)
            for (std::size_t c = 0; c < k; ++c)
                for (std::size_t i = 0; i < Ln; ++i) M[a * k + c] += P[a * Ln + i] * R[i * k + c];
    }
    vec y(leaves& L, std::size_t batch) const {
        const vec& x = get(L, "x");
        vec out;
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t e = 0; e < n * k; ++e) out.push_back(x[b * n * k + e] * M[e]);
        return out;
    }
    double nas_loss(leaves& L) const {
        double s = 0;
        for (std::size_t a = 0; a < n; ++a)
            for (std::size_t c = 0; c < k; ++c) s += get(L, "fw")[a] * M[a * k + c];
        return s;
    }
};

constexpr auto x310 = f::input<"x", 3, 10>;
constexpr auto fw3 = f::param<"fw", 3>;
constexpr cl::irazor_config ir_cfg{.nas_space = {0, 2, 5, 7, 10}, .t = 0.08};
constexpr auto ir_main = fl::irazor<"r", ir_cfg>(x310, fw3);
constexpr auto ir_main_y = ir_main.out();
constexpr auto ir_main_loss = ir_main.nas_loss();
constexpr auto ir_lead = fl::irazor<"r", {.nas_space = {3, 5, 6, 10}, .t = 0.7, .out_type = cl::merge_type::stack,
                                          .leading_zero_columns = true}>(x310);
constexpr auto ir_lead_y = ir_lead.out();
constexpr auto ir_empty = fl::irazor<"r", {.nas_space = {0, 4, 4, 10}, .t = 0.5, .regularizer = cl::regularizer(0.1, 0.0)}>(x310);
constexpr auto ir_empty_y = ir_empty.out();
constexpr auto ir_empty_pen = ir_empty.penalty();
constexpr auto x13 = f::input<"x", 1, 3>;
constexpr auto fw11 = f::param<"fw", 1, 1>;  // Monolith's [1, N] form
constexpr auto ir_spec = fl::irazor<"r", {.nas_space = {0, 1, 3}, .t = 1.0}>(x13, fw11);
constexpr auto ir_spec_y = ir_spec.out();
constexpr auto ir_spec_loss = ir_spec.nas_loss();
// out_type none and keep_list (merge_tensor_list, as AllInt / SeNet): lists from the in-place
// function, flattened into one output: [the 3 rows of none (10 each), keep_list stack (3, 10) flat]
constexpr fl::result ir_lists_model() {
    fl::result m;
    const f::val x = m.input("x", make_dims<3, 10>());
    using cl::merge_type;
    const cl::irazor_config none_cfg{.nas_space = {0, 2, 5, 7, 10}, .t = 0.08, .out_type = merge_type::none, .keep_list = true};
    const fl::val_list nn = fl::irazor(m, "r", none_cfg, x);
    const cl::irazor_config keep_cfg{.nas_space = {0, 2, 5, 7, 10}, .t = 0.08, .out_type = merge_type::stack, .keep_list = true};
    const fl::val_list sk = fl::irazor(m, "r", keep_cfg, x);
    if (!nn.list || nn.n != 3 || nn[2].rank() != 1 || nn[2].dim(0) != 10) throw "none: N tensors (K); keep_list ignored";
    if (!sk.list || sk.n != 1 || sk[0].rank() != 2 || sk[0].dim(0) != 3) throw "keep_list: [stack]";
    m.set_out(f::concat(0, {nn[0], nn[1], nn[2], f::reshape(sk[0], f::dims_of({30}))}));
    return m;
}
constexpr auto ir_lists_y = ir_lists_model().out();
static_assert(ir_lists_y.shape() == make_dims<60>());
static_assert(ir_main_y.shape() == make_dims<30>() && ir_lead_y.shape() == make_dims<3, 10>() && ir_empty_y.shape() == make_dims<30>());
// without feature weights the auxiliary loss is the constant 0
static_assert(ir_lead.nas_loss_id == f::none && ir_lead.nas_loss().rec().op == f::opcode::constant && ir_lead.nas_loss().rec().value == 0.0);

} // namespace

TEST_CASE("iRazor: Y = X * (softmax(w / t) . R) and nas_loss against the literal masks; derivatives") {
    for (std::size_t batch : {1, 5, 70}) {
        leaves L;
        const vec got = forward<f::program<double, ir_main_y>>(L, batch);
        const vec ref = forward<f::program<double, ir_main_y>::with_backend<f::reference_backend>>(L, batch);
        const vec got32 = forward<f::program<float, ir_main_y>>(L, batch);
        const irazor_reference r(L, {0, 2, 5, 7, 10}, 0.08, 3, 10);
        INFO("batch " << batch);
        CHECK(test::max_rel_diff(got, r.y(L, batch)) <= 1e-12);
        CHECK(test::max_rel_diff(ref, r.y(L, batch)) <= 1e-12);
        CHECK(test::max_rel_diff(got32, r.y(L, batch)) <= 1e-5);
        // the lists (one nas_weight "r/nas_weight", shared by both calls): [none rows, stack] = [y, y]
        const vec lists = forward<f::program<double, ir_lists_y>>(L, batch);
        vec twice;
        const vec y = r.y(L, batch);
        for (std::size_t b = 0; b < batch; ++b)
            for (int part = 0; part < 2; ++part) twice.insert(twice.end(), y.begin() + b * 30, y.begin() + (b + 1) * 30);
        CHECK(test::max_rel_diff(lists, twice) <= 1e-12);
        const double loss = forward<f::program<double, ir_main_loss>>(L, batch)[0];
        const double loss32 = forward<f::program<float, ir_main_loss>>(L, batch)[0];
        CHECK(loss == doctest::Approx(r.nas_loss(L)).epsilon(1e-12));
        CHECK(loss32 == doctest::Approx(r.nas_loss(L)).epsilon(1e-5));
    }
    test::check_derivatives<f::grad_program<double, ir_main_y>, f::jvp_program<double, ir_main_y>>(3);
    test::check_derivatives<f::grad_program<double, ir_main_loss>, f::jvp_program<double, ir_main_loss>>(3);  // nas_weight and fw
}

TEST_CASE("iRazor: the spec's reference value (nas_space {0, 1, 3}, t = 1, logits [0, 0, ln 2])") {
    leaves L;
    L["r/nas_weight"] = {0.0, 0.0, std::log(2.0)};
    L["fw"] = {2.0};
    L["x"] = vec(6, 1.0);  // x = ones: Y = M
    const auto outs = test::run<f::program<double, ir_spec_y, ir_spec_loss>>(L, 2);
    const double want[] = {0.25, 0.5, 0.5, 0.25, 0.5, 0.5};
    for (std::size_t i = 0; i < 6; ++i) CHECK(outs[0][i] == doctest::Approx(want[i]).epsilon(1e-14));
    CHECK(outs[1][0] == doctest::Approx(2.5).epsilon(1e-14));
}

TEST_CASE("iRazor: leading zero columns (stack), an empty group; variable, initializer, penalty") {
    for (std::size_t batch : {1, 5, 70}) {
        leaves L;
        const vec lead = forward<f::program<double, ir_lead_y>>(L, batch);
        const vec lead_ref = forward<f::program<double, ir_lead_y>::with_backend<f::reference_backend>>(L, batch);
        const irazor_reference r(L, {3, 5, 6, 10}, 0.7, 3, 10);
        const vec want = r.y(L, batch);
        for (std::size_t b = 0; b < batch; ++b)
            for (std::size_t a = 0; a < 3; ++a)
                for (std::size_t c = 0; c < 3; ++c) REQUIRE(want[(b * 3 + a) * 10 + c] == 0.0);
        CHECK(test::max_rel_diff(lead, want) <= 1e-12);
        CHECK(test::max_rel_diff(lead_ref, want) <= 1e-12);
        leaves E;
        const vec empty = forward<f::program<double, ir_empty_y>>(E, batch);
        const vec empty_ref = forward<f::program<double, ir_empty_y>::with_backend<f::reference_backend>>(E, batch);
        const vec empty32 = forward<f::program<float, ir_empty_y>>(E, batch);
        const irazor_reference q(E, {0, 4, 4, 10}, 0.5, 3, 10);
        CHECK(test::max_rel_diff(empty, q.y(E, batch)) <= 1e-12);
        CHECK(test::max_rel_diff(empty_ref, q.y(E, batch)) <= 1e-12);
        CHECK(test::max_rel_diff(empty32, q.y(E, batch)) <= 1e-5);
    }
    test::check_derivatives<f::grad_program<double, ir_lead_y>, f::jvp_program<double, ir_lead_y>>(2);
    // one variable, (N, L), GlorotUniform; the penalty 0.1 sum |w|
    static_assert(ir_empty.n_inits == 1 && ir_empty.g.name_of(ir_empty.inits[0].var) == "r/nas_weight");
    static_assert(ir_empty.g.nodes[ir_empty.inits[0].var].shape == make_dims<3, 4>());
    static_assert(ir_empty.inits[0].spec.w == ctrec::init::spec(ctrec::init::GlorotUniform{}).w);
    using P = f::program<double, ir_empty_y>;
    CHECK(P::n_params == 1);
    P::parameters p;
    fl::initialize<ir_empty>(p, 7);
    double mx = 0;
    for (double v : p.get<"r/nas_weight">()) mx = std::max(mx, std::abs(v));
    CHECK(mx <= std::sqrt(6.0 / (3 + 4)));
    CHECK(mx > 0.3 * std::sqrt(6.0 / (3 + 4)));
    leaves L;
    const double pen = forward<f::program<double, ir_empty_pen>>(L, 1)[0];
    double want = 0;
    for (double w : get(L, "r/nas_weight")) want += 0.1 * std::abs(w);
    CHECK(pen == doctest::Approx(want).epsilon(1e-12));
}

