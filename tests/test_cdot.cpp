// CDot (spec layers-core-and-cross.md section 6): against a naive scalar-loop reference that
// builds every intermediate (Q, q, the tower, M, Z), in float64 and float32; derivatives of
// the input and every parameter; tanh and an empty compress_units; the regularizer penalty
// and its gradient; variable names, shapes and creation order; initialisation; the original
// test's shapes; the plan (free reshapes, a batched x batched cross); one SGD step.
#include "mlp_reference.hpp"

#include <map>

#include "ctrec/layers/cdot.hpp"

namespace {
constexpr std::size_t N = 4, K = 3, P = 2, KP = K * P, Bc = 3;
constexpr auto xf = input<"x", N, K>;

using act_fn = double (*)(double);
double ident(double z) { return z; }
double tanh_fn(double z) { return std::tanh(z); }

// The reference of spec 6.5 for `batch` examples with leaf values, tower widths `units`
// (without the final K P) and hidden activation f. Writes the intermediates of example 0.
struct intermediates {
    mat Q, q, c, M, Z;
};
mat cdot_ref(std::size_t batch, const std::vector<std::size_t>& units, act_fn f, const std::string& s = "c",
             std::size_t n_ = N, std::size_t k_ = K, std::size_t p_ = P, intermediates* first = nullptr) {
    const mat X = values("x", batch * n_ * k_), Wp = values(s + "/project_weight", n_ * p_);
    const std::size_t kp = k_ * p_;
    mat out;
    for (std::size_t b = 0; b < batch; ++b) {
        auto x = [&](std::size_t n, std::size_t k) { return X[(b * n_ + n) * k_ + k]; };
        // 1. Q = X^T Wp (K, P)
        mat Q(kp, 0.0);
        for (std::size_t k = 0; k < k_; ++k)
            for (std::size_t p = 0; p < p_; ++p)
                for (std::size_t n = 0; n < n_; ++n) Q[k * p_ + p] += x(n, k) * Wp[n * p_ + p];
        // 2. q[k P + p] = Q[k, p]
        mat q(kp);
        for (std::size_t k = 0; k < k_; ++k)
            for (std::size_t p = 0; p < p_; ++p) q[k * p_ + p] = Q[k * p_ + p];
        // 3. c = MLP(q): hidden layers with f, the last linear; weight norm with learnable scale
        mat h = q;
        std::size_t in = kp;
        std::vector<std::size_t> widths = units;
        widths.push_back(kp);
        for (std::size_t i = 0; i < widths.size(); ++i) {
            h = dense_ref(h, 1, in, widths[i], s + "/compress_tower/dense_" + std::to_string(i), true);
            if (i + 1 < widths.size()) h = map(h, f);
            in = widths[i];
        }
        const mat c = h;
        // 4. M[k, p] = c[k P + p]
        mat M(kp);
        for (std::size_t k = 0; k < k_; ++k)
            for (std::size_t p = 0; p < p_; ++p) M[k * p_ + p] = c[k * p_ + p];
        // 5. Z = X M (N, P)
        mat Z(n_ * p_, 0.0);
        for (std::size_t n = 0; n < n_; ++n)
            for (std::size_t p = 0; p < p_; ++p)
                for (std::size_t k = 0; k < k_; ++k) Z[n * p_ + p] += x(n, k) * M[k * p_ + p];
        // 6. out = concat(z, c)
        out.insert(out.end(), Z.begin(), Z.end());
        out.insert(out.end(), c.begin(), c.end());
        if (b == 0 && first) *first = {Q, q, c, M, Z};
    }
    return out;
}

// name -> shape of every parameter of program M
template <class M>
std::map<std::string, std::vector<std::size_t>> param_shapes() {
    std::map<std::string, std::vector<std::size_t>> r;
    [&]<class... L>(tlist<L...>) {
        ((r[std::string(L::name.view())] = std::vector<std::size_t>(L::shape.d, L::shape.d + L::shape.rank)), ...);
    }(typename M::param_leaves{});
    return r;
}
template <class Inits>
std::vector<std::string> init_names() {
    std::vector<std::string> r;
    [&]<class... I>(tlist<I...>) { (r.emplace_back(I::name.view()), ...); }(Inits{});
    return r;
}
template <class M>
std::size_t param_count() {
    std::size_t n = 0;
    [&]<class... L>(tlist<L...>) { ((n += L::shape.size()), ...); }(typename M::param_leaves{});
    return n;
}
} // namespace

// Instantiations are few (compile time): the default model (relu) runs forward in float64
// and float32; the tanh model with a regularizer carries the derivative checks, the penalty,
// an SGD step and the plan inspection; the empty-list model and the original test's model.
constexpr cdot_config<2> relu_cfg{.project_dim = P, .compress_units = {5, 4}};
constexpr double l1 = 0.01, l2 = 0.02;
constexpr cdot_config<1> tanh_cfg{.project_dim = P, .compress_units = {5}, .activation = keras_activation("tanh"),
                                  .regularizer = regularizer{l1, l2}};

TEST_CASE("cdot defaults (relu, GlorotNormal): forward against the reference in float64 and float32") {
    constexpr auto r = cdot<"c", relu_cfg>(xf);
    using E = std::remove_cvref_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<N * P + K * P>());
    test::check_forward<E>(Bc, cdot_ref(Bc, {5, 4}, relu));
    // the cross part is not trivially small, so an error there shows
    intermediates in;
    cdot_ref(1, {5, 4}, relu, "c", N, K, P, &in);
    double zsum = 0;
    for (double z : in.Z) zsum += std::abs(z);
    CHECK(zsum > 0.1);
    // relu is the default: the tanh reference differs
    const mat a = cdot_ref(Bc, {5, 4}, relu), b = cdot_ref(Bc, {5, 4}, tanh_fn);
    double diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
    CHECK(diff > 1e-3);
}

TEST_CASE("cdot variables: names, shapes, creation order; no penalty without a regularizer") {
    constexpr auto r = cdot<"c", relu_cfg>(xf);  // the first test's model
    using M = program<float, std::remove_cvref_t<decltype(r.out)>>;
    using V = std::vector<std::size_t>;
    const std::map<std::string, V> want{
        {"c/project_weight", V{N, P}},
        {"c/compress_tower/dense_0/kernel", V{KP, 5}},
        {"c/compress_tower/dense_0/trainable_kernel_norm", V{5}},
        {"c/compress_tower/dense_0/bias", V{5}},
        {"c/compress_tower/dense_1/kernel", V{5, 4}},
        {"c/compress_tower/dense_1/trainable_kernel_norm", V{4}},
        {"c/compress_tower/dense_1/bias", V{4}},
        {"c/compress_tower/dense_2/kernel", V{4, KP}},
        {"c/compress_tower/dense_2/trainable_kernel_norm", V{KP}},
        {"c/compress_tower/dense_2/bias", V{KP}},
    };
    CHECK(param_shapes<M>() == want);
    // creation order (for import): project_weight first, then the tower layer by layer
    auto names = init_names<decltype(r)::inits>();
    REQUIRE(names.size() == want.size());
    CHECK(names[0] == "c/project_weight");
    auto at = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
    CHECK(at("c/compress_tower/dense_0/kernel") < at("c/compress_tower/dense_1/kernel"));
    CHECK(at("c/compress_tower/dense_1/kernel") < at("c/compress_tower/dense_2/kernel"));
    static_assert(is_zero_v<std::remove_cvref_t<decltype(r.penalty)>>);
}

namespace {
constexpr auto rt = cdot<"c", tanh_cfg>(xf);
using ET = std::remove_cvref_t<decltype(rt.out)>;
constexpr auto y = input<"y", N * P + K * P>;
// a squared error against a per-example target weights every output element differently,
// so reverse mode is checked along a cotangent that is not all ones
using Loss = std::remove_cvref_t<decltype(batch_mean(sum((rt.out - y) * (rt.out - y))) + rt.penalty)>;
double tanh_penalty(test::value_fn f = leaf_value) {
    double pen = 0;
    for (auto [name, n] : {std::pair<std::string, std::size_t>{"c/project_weight", N * P},
                           {"c/compress_tower/dense_0/kernel", KP * 5},
                           {"c/compress_tower/dense_1/kernel", 5 * KP}})
        for (std::size_t i = 0; i < n; ++i) {
            double w = f(name, i);
            pen += l1 * std::abs(w) + l2 * w * w;
        }
    return pen;
}
} // namespace

TEST_CASE("cdot with tanh: forward; penalty over project_weight and the tower kernels; derivatives of x and every parameter") {
    test::check_close(test::run<double, ET>(Bc), cdot_ref(Bc, {5}, tanh_fn), 1e-12);

    // penalty: l1 |w| + l2 w^2 over project_weight and the raw kernels; not over biases or norms
    using Pen = std::remove_cvref_t<decltype(rt.penalty)>;
    CHECK(test::run<double, Pen>(1)[0] == doctest::Approx(tanh_penalty()).epsilon(1e-12));
    CHECK(param_shapes<program<double, Pen>>().size() == 3);

    // the loss value against the reference
    const mat out = cdot_ref(Bc, {5}, tanh_fn);
    double want = 0;
    for (std::size_t i = 0; i < out.size(); ++i) want += (out[i] - leaf_value("y", i)) * (out[i] - leaf_value("y", i)) / Bc;
    CHECK(test::run<double, Loss>(Bc)[0] == doctest::Approx(want + tanh_penalty()).epsilon(1e-12));

    // reverse mode vs finite differences for x, y and every parameter, JVP, duality
    auto rep = ctrec::check_derivatives<Loss>(Bc, 7);
    INFO("worst: " << rep.worst);
    CHECK(rep.grad_error < 1e-6);
    CHECK(rep.jvp_error < 1e-6);
    CHECK(rep.duality_error < 1e-9);
    // every element of x, y and every parameter was differenced: nothing is held constant
    using M = program<double, Loss>;
    CHECK(M::n_params == 1 + 2 * 3);
    CHECK(param_count<M>() == N * P + (KP * 5 + 5 + 5) + (5 * KP + KP + KP));
    CHECK(rep.checked == Bc * (N * K + N * P + K * P) + param_count<M>());
}

TEST_CASE("cdot: one SGD step on the squared error lowers the loss by about lr |g|^2") {
    using G = grad_program<double, Loss>;
    const auto g = test::run_all<G>(Bc);
    const double l0 = g[0][0];
    constexpr double lr = 1e-3;
    std::map<std::string, mat> next;
    double g2 = 0;
    [&]<class... L>(tlist<L...>) {
        (([&] {
             const auto& gr = g[G::template grad<L::name>];
             mat w = values(std::string(L::name.view()), L::shape.size());
             std::vector<double> gs(gr.begin(), gr.end());
             train::sgd_update<double>(w, gs, lr);
             for (double v : gs) g2 += v * v;
             next[std::string(L::name.view())] = w;
         }()),
         ...);
    }(typename G::param_leaves{});
    auto stepped = [&](std::string_view name, std::size_t i) {
        auto it = next.find(std::string(name));
        return it == next.end() ? leaf_value(name, i) : it->second[i];
    };
    const double l1v = test::run<double, Loss>(Bc, stepped)[0];
    CHECK(g2 > 0);
    CHECK(l1v < l0);
    CHECK((l0 - l1v) == doctest::Approx(lr * g2).epsilon(0.05));
}

TEST_CASE("cdot with an empty compress_units: one linear tower layer (K P, K P); derivatives") {
    constexpr auto r = cdot<"c", cdot_config<0>{.project_dim = P, .activation = keras_activation("tanh")}>(xf);
    using E = std::remove_cvref_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<N * P + K * P>());
    // the single layer is the last one: linear, whatever the activation
    test::check_close(test::run<double, E>(Bc), cdot_ref(Bc, {}, ident), 1e-12);
    test::check_ad<E>(Bc);
    using M = program<double, E>;
    using V = std::vector<std::size_t>;
    const std::map<std::string, V> want{{"c/project_weight", V{N, P}},
                                        {"c/compress_tower/dense_0/kernel", V{KP, KP}},
                                        {"c/compress_tower/dense_0/trainable_kernel_norm", V{KP}},
                                        {"c/compress_tower/dense_0/bias", V{KP}}};
    CHECK(param_shapes<M>() == want);
}

TEST_CASE("cdot plan: the reshapes are views, the cross is one batched x batched contraction") {
    using PT = program<double, ET>::plan_type;
    const std::string d = program<double, ET>::describe();
    INFO(d);
    const auto& D = PT::data;
    std::size_t reshapes = 0, cross = 0, projections = 0;
    for (std::size_t i = 0; i < PT::size; ++i) {
        const auto& r = D.rec[i];
        CHECK(r.k != kind::transpose);
        if (r.k == kind::reshape && r.batched) {  // (the weight norm's reshapes are per parameter)
            // flatten(Q), reshape(c) to M, flatten(Z): views over their operand's buffer
            ++reshapes;
            CHECK(D.alias[i]);
            CHECK_FALSE(D.step[i]);
            CHECK(D.rec[r.ops[0]].k != kind::reshape);
        }
        if (r.k == kind::contract && r.batched) {
            const bool a = D.rec[r.ops[0]].batched, b = D.rec[r.ops[1]].batched;
            if (a && b) {
                // Z = X . M: M is the view of the tower's output, read in place
                ++cross;
                const std::size_t m = D.rec[r.ops[0]].k == kind::reshape ? r.ops[0] : r.ops[1];
                CHECK(D.rec[m].k == kind::reshape);
                CHECK(D.rec[m].shape == make_dims<K, P>());
            }
            projections += D.rec[r.ops[0]].k == kind::input && D.rec[r.ops[1]].k == kind::param;
            projections += D.rec[r.ops[1]].k == kind::input && D.rec[r.ops[0]].k == kind::param;
        }
    }
    CHECK(reshapes == 3);
    CHECK(cross == 1);
    CHECK(projections == 1);  // Q = X^T Wp
    CHECK(d.find("reshape") == std::string::npos);
}

TEST_CASE("the original test: project_dim 8, compress_units [128, 256], tanh, ones (100, 10, 10) -> (100, 160); init") {
    constexpr std::size_t No = 10, Ko = 10, Po = 8, Bo = 100;
    constexpr cdot_config<2> cfg{.project_dim = Po, .compress_units = {128, 256}, .activation = keras_activation("tanh")};
    constexpr auto r = cdot<"CDot", cfg>(input<"x", No, Ko>);
    using E = std::remove_cvref_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<160>());
    using M = program<float, E>;
    M::parameters p;
    initialize<decltype(r)::inits>(p, 3);
    M::workspace ws;
    std::vector<float> ones(Bo * No * Ko, 1.f), y(Bo * 160, -1.f);
    M::io io;
    io.input<"x">(ones.data()).output<0>(y.data());
    M::run(p, ws, Bo, io);
    for (float v : y) CHECK(std::isfinite(v));
    // with all-ones fields every example is the same, and Z[n, p] = sum_k M[k, p] for every n
    for (std::size_t b = 1; b < Bo; ++b)
        for (std::size_t i = 0; i < 160; ++i) CHECK(y[b * 160 + i] == y[i]);
    for (std::size_t n = 0; n < No; ++n)
        for (std::size_t pp = 0; pp < Po; ++pp) {
            double s = 0;
            for (std::size_t k = 0; k < Ko; ++k) s += y[No * Po + k * Po + pp];
            CHECK(y[n * Po + pp] == doctest::Approx(s).epsilon(1e-4));
        }
    double sum = 0;
    for (float v : y) sum += std::abs(v);
    CHECK(sum > 0);

    // initialisation: GlorotNormal (truncated at 2 sigma) on project_weight and the kernels,
    // zero biases, trainable_kernel_norm = the column norms of the initial kernel
    auto glorot = [&](std::string_view name, std::size_t fi, std::size_t fo, bool stats) {
        auto w = p.get(p.index_of(name));
        REQUIRE(w.size() == fi * fo);
        const double sd = std::sqrt(2.0 / double(fi + fo)), sigma = sd / 0.87962566103423978;
        double m = 0, v = 0;
        for (float e : w) {
            CHECK(std::abs(e) <= 2 * sigma + 1e-6);
            m += e / double(w.size());
        }
        for (float e : w) v += (e - m) * (e - m) / double(w.size());
        // the shape of the distribution: GlorotUniform has the same std but no values
        // beyond sqrt(3) sd; the truncated normal has about 7% beyond 1.8 sd
        double tail = 0;
        for (float e : w) tail += std::abs(e) > 1.8 * sd;
        tail /= double(w.size());
        if (stats) {
            CHECK(std::abs(m) < 0.05 * sd);
            CHECK(std::sqrt(v) == doctest::Approx(sd).epsilon(0.05));
            CHECK(tail > 0.04);
            CHECK(tail < 0.10);
        } else {
            CHECK(tail > 0);  // too few values for statistics (80), but not uniform (seed 3)
        }
    };
    glorot("CDot/project_weight", No, Po, false);
    glorot("CDot/compress_tower/dense_0/kernel", Ko * Po, 128, true);
    glorot("CDot/compress_tower/dense_1/kernel", 128, 256, true);
    glorot("CDot/compress_tower/dense_2/kernel", 256, Ko * Po, true);
    const std::size_t widths[] = {Ko * Po, 128, 256, Ko * Po};
    for (std::size_t i = 0; i < 3; ++i) {
        const std::string s = "CDot/compress_tower/dense_" + std::to_string(i);
        auto k = p.get(p.index_of(s + "/kernel"));
        auto g = p.get(p.index_of(s + "/trainable_kernel_norm"));
        auto b = p.get(p.index_of(s + "/bias"));
        const std::size_t in = widths[i], out = widths[i + 1];
        REQUIRE(g.size() == out);
        for (std::size_t j = 0; j < out; ++j) {
            double n2 = 0;
            for (std::size_t a = 0; a < in; ++a) n2 += double(k[a * out + j]) * k[a * out + j];
            CHECK(g[j] == doctest::Approx(std::sqrt(n2)).epsilon(1e-5));
            CHECK(b[j] == 0.f);
        }
    }
}
