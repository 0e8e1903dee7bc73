// The Thrust backend (kernels/gpu/executor.hpp), built for Thrust's OMP or CPP device system,
// against the CPU backend (the same leaves and seed, every output within 1e-9 relative in double,
// thrust_support.hpp): the forward, gradient and JVP programs of a small net, of structure ops
// (softmax, slice, concat, transpose, reductions, a shared input) and of Dense and LayerNorm;
// batch statistics over several passes; a node that is two roots; three training steps of a
// train program with state updates (BatchNorm's moving statistics); every random-leaf kind (per
// example, shared, fixed seed), and the device-callable draws bit for bit against
// core/random.hpp; batches across chunks; an empty batch; float programs; the size error.
// The layers are split over test_thrust_2.cpp (MLP with BatchNorm, DCN), _3 (GroupInt, AllInt,
// CDot, CAN, SeNet, iRazor, DMR_U2I), _4 (CIN, AutoInt, DIN) and _5 (DIEN) for compile time.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ctrec/layers/batch_norm.hpp"
#include "ctrec/layers/dense.hpp"
#include "ctrec/layers/layer_norm.hpp"
#include "ctrec/train/train_program.hpp"
#include "thrust_support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;
namespace cl = ctrec::layers;
using ctrec::make_dims;
using thrust_test::same;
using thrust_test::same_all;

namespace {

// ---- core: a two-layer net, and batch statistics (mean, then variance: three passes) ---------------
constexpr auto x = f::input<"x", 5>;
constexpr auto dense = f::tanh(f::matmul(x, f::param<"W", 5, 3>) + f::param<"b", 3>);
constexpr auto net = f::sigmoid(f::matmul(dense, f::param<"W2", 3, 1>));
constexpr auto xb = f::input<"x", 4>;
constexpr auto mu = f::batch_mean(xb);
constexpr auto var = f::batch_mean((xb - mu) * (xb - mu));
constexpr auto bn = (xb - mu) * f::rsqrt(var + f::lit<1e-3>) * f::param<"gamma", 4> + f::param<"beta", 4>;
constexpr auto bn_loss = f::batch_mean(f::sum(bn * bn * f::param<"scale", 4>));
// structure: slice, concat, transpose, reductions (max under stop_gradient), softmax, a shared input
constexpr auto xs = f::input<"x", 3, 4>;
constexpr auto shared = f::shared_input<"u", 4>;
constexpr auto st_y = f::concat(0, {f::softmax(xs * shared, 1), f::slice(xs, 0, 1, 2), f::reshape(f::transpose(xs), make_dims<3, 4>()) * f::lit<0.5>}) +
                      f::sum(xs, {0});

// d/da = d/db = the cotangent: one node that is two roots (copied from the first)
constexpr auto two = f::tanh(f::input<"c", 3>) * (f::input<"a", 3> + f::input<"b", 3>);
static_assert([] {
    using G = f::grad_program<double, two>;
    std::size_t same_node = 0;
    for (std::size_t r = 0; r < G::n_outputs; ++r)
        for (std::size_t q = 0; q < r; ++q) same_node += G::tab.roots[r] == G::tab.roots[q];
    return same_node == 1;
}());

// ---- layers ------------------------------------------------------------------------------------------
constexpr auto d_relu = fl::dense<"d", {.units = 3, .activation = cl::act_relu}>(f::input<"x", 2, 4>).out();
constexpr auto d_kn = fl::dense<"d", {.units = 3, .activation = cl::act_sigmoid, .allow_kernel_norm = true, .kernel_norm_trainable = true}>(x).out();

constexpr auto ln_r = fl::layer_norm<"ln", {.regularizer = cl::regularizer(0.0, 0.5)}>(f::input<"x", 3, 5>);
constexpr auto ln_y = ln_r.out();
constexpr auto ln_loss = f::batch_mean(f::sum(f::tanh(ln_y))) + ln_r.penalty();

// a training step: BatchNorm's moving statistics are state updates written into the parameters
constexpr auto bn_r = fl::batch_norm<"bn", cl::mode::train, cl::batch_norm_config{.momentum = 0.9}>(
    fl::dense<"d", {.units = 4, .activation = cl::act_tanh}>(f::input<"x", 3>));
constexpr auto bn_y = bn_r.out();
constexpr auto bn_train_loss = f::batch_mean(f::sum(bn_y * bn_y * f::input<"w", 4>)) + bn_r.penalty();

// Three training steps (seeds 0, 1, 2; SGD at 0.1) of train program S: every loss, gradient and
// parameter value after each step, in order.
template <class S>
std::vector<double> train_steps(std::size_t batch) {
    test::leaves L;
    test::fill<S>(L, batch);
    typename S::parameters p;
    for (std::size_t k = 0; k < S::n_params; ++k) {
        auto w = p.get(k);
        const auto& v = L[S::parameters::names[k]];
        const bool variance = std::string(S::parameters::names[k]).find("variance") != std::string::npos;
        for (std::size_t e = 0; e < w.size(); ++e) w[e] = variance ? 0.5 + std::abs(v[e]) : v[e];
    }
    typename S::workspace ws;
    typename S::gradients g;
    typename S::io io;
    g.bind(io);
    std::vector<std::vector<double>> in(S::n_inputs);
    for (std::size_t k = 0; k < S::n_inputs; ++k) {
        in[k] = L[S::tab.name_of(S::input_ids[k])];
        io.in[k] = in[k].data();
    }
    double loss = 0;
    io.out[0] = &loss;
    std::vector<double> trace;
    for (std::uint64_t step = 0; step < 3; ++step) {
        io.seed = step;
        S::run(p, ws, batch, io);
        trace.push_back(loss);
        for (std::size_t i = 0; i < S::n_trainable; ++i)
            for (double v : g.get(i)) trace.push_back(v);
        g.sgd(p, 0.1);
        for (std::size_t k = 0; k < S::n_params; ++k)
            for (double v : static_cast<const typename S::parameters&>(p).get(k)) trace.push_back(v);
    }
    return trace;
}

// ---- random leaves: every kind, per example and shared, seeded per call or fixed ---------------------
using ctrec::random_kind;
constexpr f::expr random_model() {
    f::expr e = f::input<"x", 6>;
    f::graph& g = e.g;
    const f::val x{&g, e.id};
    f::val y = x;
    const random_kind kinds[] = {random_kind::uniform, random_kind::open_uniform, random_kind::normal, random_kind::gumbel,
                                 random_kind::logistic};
    for (std::size_t k = 0; k < 5; ++k) {
        y = y + f::make_random(g, (f::name_string("r/batched_") + k).view(), make_dims<6>(), kinds[k]);
        y = y * f::make_random(g, (f::name_string("r/shared_") + k).view(), make_dims<6>(), kinds[k], true);
        y = y + f::make_random(g, (f::name_string("r/fixed_") + k).view(), make_dims<6>(), kinds[k], k % 2 == 0, 12345 + k);
    }
    e.id = y.id;
    return e;
}
constexpr auto rnd = random_model();

} // namespace

TEST_CASE("thrust: core programs, structure, a node that is two roots, batch statistics, an empty batch") {
    same_all<net>();
    same_all<st_y>();
    same_all<two>();
    for (std::size_t batch : {1, 2, 5, 70}) same<f::grad_program<double, bn_loss>>(batch);
    // an empty batch: batch sums are zero, per-example outputs empty
    same<f::grad_program<double, net>>(0);
    same<f::program<double, st_y>>(0);
}

TEST_CASE("thrust: Dense (kernel norm: derived parameters)") {
    same_all<d_relu>();
    same_all<d_kn>();
}

TEST_CASE("thrust: LayerNorm") {
    same_all<ln_y>();
    for (std::size_t batch : {1, 70}) same<f::grad_program<double, ln_loss>>(batch);
}

TEST_CASE("thrust: training steps with state updates") {
    using S = f::train_program<double, bn_train_loss, bn_r>;
    static_assert(S::n_updates == 2);
    for (std::size_t batch : {1, 6, 70})
        test::check_close(train_steps<S::with_backend<ctrec::thrust_backend>>(batch), train_steps<S>(batch), 1e-9);
}

TEST_CASE("thrust: random leaves of every kind") {
    for (std::uint64_t seed : {0, 1, 99})
        for (std::size_t batch : {1, 5, 70}) {
            same<f::program<double, rnd>>(batch, seed);
            same<f::program<float, rnd>>(batch, seed, 1e-5);
        }
    same<f::grad_program<double, rnd>>(5, 3);
    same<f::jvp_program<double, rnd>>(5, 3);
    // the device-callable draws are core/random.hpp's, bit for bit
    const random_kind kinds[] = {random_kind::uniform, random_kind::open_uniform, random_kind::normal, random_kind::gumbel,
                                 random_kind::logistic};
    std::size_t differ = 0;
    for (random_kind k : kinds)
        for (std::uint64_t seed : {0ull, 5ull, ~0ull})
            for (std::uint64_t e : {std::uint64_t(0), std::uint64_t(3), ctrec::shared_example})
                for (std::uint64_t i = 0; i < 200; ++i) {
                    differ += ctrec::gpu::random_value<float>(k, seed, 42, e, i) != ctrec::random_value<float>(k, seed, 42, e, i);
                    differ += ctrec::gpu::random_value<double>(k, seed, 42, e, i) != ctrec::random_value<double>(k, seed, 42, e, i);
                }
    CHECK(differ == 0);
}

TEST_CASE("thrust: batches across chunks") {
    // workspaces of 1 and 3 examples: every pass runs chunk by chunk, batch sums accumulate across chunks
    using G = f::grad_program<double, bn_loss>;
    for (std::size_t batch : {1, 3, 7, 70}) {
        same<G, thrust_test::chunked<G, 1>>(batch);
        same<G, thrust_test::chunked<G, 3>>(batch);
    }
    using Ra = f::program<double, rnd>;
    same<Ra, thrust_test::chunked<Ra, 4>>(70, 5);
}

TEST_CASE("thrust: float programs") {
    for (std::size_t batch : {1, 70}) {
        same<f::program<float, d_kn>>(batch, 0, 1e-5);
        same<f::grad_program<float, bn_loss>>(batch, 0, 1e-5);
    }
}

TEST_CASE("thrust: a model too large for the per-example kernel is refused") {
    using P = f::program<double, net>::with_backend<ctrec::basic_thrust_backend<64>>;  // tanh(x W + b): 128 bytes
    static_assert(ctrec::basic_thrust_backend<64>::max_chunk<P> == 0);
    test::leaves L;
    std::string what;
    try {
        test::run<P>(L, 3, 0);
    } catch (const ctrec::error& e) {
        what = e.what();
    }
    INFO(what);
    CHECK(what.find("model too large for the per-example kernel") != std::string::npos);
    CHECK(what.find("bytes of workspace") != std::string::npos);
}
