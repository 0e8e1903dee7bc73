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

TEST_CASE("cdot defaults (relu, GlorotNormal): forward against the reference in float64 and float32; derivatives") {
    constexpr auto r = cdot<"c", cdot_config<2>{.project_dim = P, .compress_units = {5, 4}}>(xf);
    using E = std::remove_cvref_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<N * P + K * P>());
    test::check_forward<E>(Bc, cdot_ref(Bc, {5, 4}, relu));
    // the reference is not trivially the tower alone: the cross part depends on every field
    intermediates in;
    cdot_ref(1, {5, 4}, relu, "c", N, K, P, &in);
    double zsum = 0;
    for (double z : in.Z) zsum += std::abs(z);
    CHECK(zsum > 0.1);

    // reverse mode vs finite differences for x and every parameter, JVP, duality
    auto rep = ctrec::check_derivatives<E>(Bc, 7);
    INFO("worst: " << rep.worst);
    CHECK(rep.grad_error < 1e-6);
    CHECK(rep.jvp_error < 1e-6);
    CHECK(rep.duality_error < 1e-9);
    // every element of x and of every parameter was differenced: nothing is held constant
    using M = program<double, E>;
    CHECK(M::n_params == 1 + 3 * 3);
    CHECK(rep.checked == Bc * N * K + param_count<M>());
    CHECK(param_count<M>() == N * P + (KP * 5 + 5 + 5) + (5 * 4 + 4 + 4) + (4 * KP + KP + KP));
}

TEST_CASE("cdot variables: names, shapes, creation order; no penalty without a regularizer") {
    constexpr auto r = cdot<"cdot", cdot_config<2>{.project_dim = P, .compress_units = {5, 4}}>(xf);
    using M = program<float, std::remove_cvref_t<decltype(r.out)>>;
    using V = std::vector<std::size_t>;
    const std::map<std::string, V> want{
        {"cdot/project_weight", V{N, P}},
        {"cdot/compress_tower/dense_0/kernel", V{KP, 5}},
        {"cdot/compress_tower/dense_0/trainable_kernel_norm", V{5}},
        {"cdot/compress_tower/dense_0/bias", V{5}},
        {"cdot/compress_tower/dense_1/kernel", V{5, 4}},
        {"cdot/compress_tower/dense_1/trainable_kernel_norm", V{4}},
        {"cdot/compress_tower/dense_1/bias", V{4}},
        {"cdot/compress_tower/dense_2/kernel", V{4, KP}},
        {"cdot/compress_tower/dense_2/trainable_kernel_norm", V{KP}},
        {"cdot/compress_tower/dense_2/bias", V{KP}},
    };
    CHECK(param_shapes<M>() == want);
    // creation order (for import): project_weight first, then the tower layer by layer
    auto names = init_names<decltype(r)::inits>();
    REQUIRE(names.size() == want.size());
    CHECK(names[0] == "cdot/project_weight");
    auto at = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
    CHECK(at("cdot/compress_tower/dense_0/kernel") < at("cdot/compress_tower/dense_1/kernel"));
    CHECK(at("cdot/compress_tower/dense_1/kernel") < at("cdot/compress_tower/dense_2/kernel"));
    static_assert(is_zero_v<std::remove_cvref_t<decltype(r.penalty)>>);
}

TEST_CASE("cdot with tanh and a regularizer: forward, derivatives, the penalty over project_weight and the tower kernels") {
    constexpr double l1 = 0.01, l2 = 0.02;
    constexpr cdot_config<1> cfg{.project_dim = P, .compress_units = {5}, .activation = keras_activation("tanh"),
                                 .regularizer = regularizer{l1, l2}};
    constexpr auto r = cdot<"c", cfg>(xf);
    using E = std::remove_cvref_t<decltype(r.out)>;
    const mat want = cdot_ref(Bc, {5}, tanh_fn);
    test::check_forward<E>(Bc, want);
    // tanh is really applied: the relu reference differs
    const mat with_relu = cdot_ref(Bc, {5}, relu);
    double diff = 0;
    for (std::size_t i = 0; i < want.size(); ++i) diff = std::max(diff, std::abs(want[i] - with_relu[i]));
    CHECK(diff > 1e-3);

    // penalty: l1 |w| + l2 w^2 over project_weight and both raw kernels; not over biases or norms
    using Pen = std::remove_cvref_t<decltype(r.penalty)>;
    double pen = 0;
    for (auto [name, n] : {std::pair<std::string, std::size_t>{"c/project_weight", N * P},
                           {"c/compress_tower/dense_0/kernel", KP * 5},
                           {"c/compress_tower/dense_1/kernel", 5 * KP}})
        for (std::size_t i = 0; i < n; ++i) {
            double w = leaf_value(name, i);
            pen += l1 * std::abs(w) + l2 * w * w;
        }
    CHECK(test::run<double, Pen>(1)[0] == doctest::Approx(pen).epsilon(1e-12));
    CHECK(test::run<float, Pen>(1)[0] == doctest::Approx(pen).epsilon(1e-5));
    using PP = program<double, Pen>;
    CHECK(param_shapes<PP>().size() == 3);

    // derivatives of the loss mean(sum(out)) + penalty: the layer and the penalty's gradients
    using Loss = std::remove_cvref_t<decltype(batch_mean(sum(r.out)) + r.penalty)>;
    test::check_ad<Loss>(Bc);

    SUBCASE("one SGD step through train_program lowers the loss by about lr |g|^2") {
        using S = train_program<double, Loss>;
        typename S::parameters p;
        typename S::workspace ws;
        [&]<class... L>(tlist<L...>) {
            (([&] {
                 auto w = p.template get<L::name>();
                 for (std::size_t i = 0; i < w.size(); ++i) w[i] = leaf_value(L::name.view(), i);
             }()),
             ...);
        }(typename S::param_leaves{});
        static_assert(S::trainable::size == 1 + 2 * 3);  // every parameter is trainable
        mat xs = values("x", Bc * N * K);
        std::vector<std::vector<double>> g(S::trainable::size);
        auto step = [&] {
            double l = 0;
            typename S::io io;
            io.template input<"x">(xs.data()).template output<0>(&l);
            [&]<class... L>(tlist<L...>) {
                std::size_t i = 0;
                ((g[i].assign(L::shape.size(), 0.0), io.template output<S::template grad<L::name>>(g[i].data()), ++i), ...);
            }(typename S::trainable{});
            S::run(p, ws, Bc, io);
            return l;
        };
        const double l0 = step();
        // the loss value is the reference's mean output sum plus the penalty
        double ref = 0;
        for (double v : want) ref += v / Bc;
        CHECK(l0 == doctest::Approx(ref + pen).epsilon(1e-12));
        constexpr double lr = 1e-3;
        double g2 = 0;
        [&]<class... L>(tlist<L...>) {
            std::size_t i = 0;
            (([&] {
                 for (double v : g[i]) g2 += v * v;
                 train::sgd_update<double>(p.template get<L::name>(), g[i], lr);
                 ++i;
             }()),
             ...);
        }(typename S::trainable{});
        const double l1v = step();
        CHECK(g2 > 0);
        CHECK(l1v < l0);
        CHECK((l0 - l1v) == doctest::Approx(lr * g2).epsilon(0.05));
    }
}

TEST_CASE("cdot with an empty compress_units: one tower layer (K P, K P), linear") {
    constexpr auto r = cdot<"c", cdot_config<0>{.project_dim = P}>(xf);
    using E = std::remove_cvref_t<decltype(r.out)>;
    static_assert(E::shape == make_dims<N * P + K * P>());
    test::check_forward<E>(Bc, cdot_ref(Bc, {}, ident));
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
    constexpr auto r = cdot<"c", cdot_config<1>{.project_dim = P, .compress_units = {5}}>(xf);
    using M = program<float, std::remove_cvref_t<decltype(r.out)>>;
    const std::string d = M::describe();
    INFO(d);
    CHECK(d.find("reshape") == std::string::npos);  // no step copies for a reshape
    std::size_t contractions = 0;
    for (std::size_t at = d.find("contract"); at != std::string::npos; at = d.find("contract", at + 1)) ++contractions;
    CHECK(contractions >= 2);
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
        if (stats) {
            CHECK(std::abs(m) < 0.05 * sd);
            CHECK(std::sqrt(v) == doctest::Approx(sd).epsilon(0.05));
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
