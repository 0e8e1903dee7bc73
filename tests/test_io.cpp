// The user boundary: embedding tables (io/embedding.hpp), xtensor bindings (io/xtensor.hpp) and
// the type-erased scorer (io/scorer.hpp).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <xtensor/xfixed.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>
#include <xtensor/xstrided_view.hpp>

#include "ctrec/ctrec.hpp"
#include <sstream>

#include "ctrec/io/criteo.hpp"
#include "ctrec/io/embedding.hpp"
#include "ctrec/io/scorer.hpp"
#include "ctrec/io/xtensor.hpp"
#include "support.hpp"

namespace f = ctrec;
namespace fl = ctrec::layers;

namespace {
constexpr std::size_t Dm = 4, Fields = 2;
// a model over two pooled embedding fields: score = sum(x * x) + x . v
constexpr auto ex = f::input<"emb", Fields, Dm>;
constexpr auto ev = f::param<"v", Fields, Dm>;
constexpr auto escore = f::sum(ex * ex) + f::sum(ex * ev);
using EG = f::grad_program<double, escore>;
} // namespace

TEST_CASE("embedding: the documented hash maps every id into the table") {
    f::embedding_table<float, Dm> t("ids", 1000);
    for (std::int64_t id : {std::int64_t(0), std::int64_t(-1), std::numeric_limits<std::int64_t>::min(),
                            std::numeric_limits<std::int64_t>::max(), std::int64_t(123456789012)}) {
        const std::size_t r = t.row_of(id);
        CHECK(r < 1000);
        CHECK(r == f::detail::splitmix64(static_cast<std::uint64_t>(id)) % 1000);
    }
    CHECK_THROWS_WITH_AS((f::embedding_table<float, Dm>("zero", 0)), doctest::Contains("'zero': vocabulary size"), f::error);
}

TEST_CASE("embedding: sum and mean pooling, empty fields, CSR validation") {
    f::embedding_table<double, Dm> t("tags", 50);
    t.initialize(9, 0.5);
    for (double v : t.values()) CHECK(std::abs(v) <= 0.5);
    const std::vector<std::int64_t> ids = {7, -3, 7, 12, 99};
    const std::vector<std::uint32_t> off = {0, 3, 3, 5};  // 3 examples: 3 ids, none, 2 ids
    std::vector<double> s(3 * Dm), m(3 * Dm);
    t.lookup(ids, off, f::pooling::sum, s.data(), Dm);
    t.lookup(ids, off, f::pooling::mean, m.data(), Dm);
    for (std::size_t k = 0; k < Dm; ++k) {
        const double a = t.row(t.row_of(7))[k] * 2 + t.row(t.row_of(-3))[k];
        CHECK(s[k] == doctest::Approx(a));
        CHECK(m[k] == doctest::Approx(a / 3));
        CHECK(s[Dm + k] == 0.0);
        CHECK(m[Dm + k] == 0.0);
        const double b = t.row(t.row_of(12))[k] + t.row(t.row_of(99))[k];
        CHECK(s[2 * Dm + k] == doctest::Approx(b));
        CHECK(m[2 * Dm + k] == doctest::Approx(b / 2));
    }
    const std::vector<std::uint32_t> bad_end = {0, 3, 4}, bad_order = {0, 4, 3, 5};
    CHECK_THROWS_WITH_AS(t.lookup(ids, bad_end, f::pooling::sum, s.data(), Dm),
                         doctest::Contains("'tags': offsets must start at 0 and end at the number of ids (5)"), f::error);
    CHECK_THROWS_WITH_AS(t.lookup(ids, bad_order, f::pooling::sum, s.data(), Dm),
                         doctest::Contains("offsets decrease at example 1"), f::error);
}

TEST_CASE("embedding: backward + sparse Adam touch only the rows used, and match the dense gradient") {
    // two fields: field 0 single-valent, field 1 multi-valent with mean pooling
    f::embedding_table<double, Dm> t0("f0", 40), t1("f1", 40);
    t0.initialize(1, 0.3), t1.initialize(2, 0.3);
    const std::size_t B = 3;
    const std::vector<std::int64_t> ids0 = {5, 17, 5};
    const std::vector<std::int64_t> ids1 = {1, 2, 3, 2, 8};
    const std::vector<std::uint32_t> off1 = {0, 2, 3, 5};
    std::vector<double> x(B * Fields * Dm), ct(B, 1.0), y(B), dx(B * Fields * Dm), dv(Fields * Dm);
    t0.lookup(ids0, {}, f::pooling::sum, x.data(), Fields * Dm);
    t1.lookup(ids1, off1, f::pooling::mean, x.data() + Dm, Fields * Dm);
    EG::parameters p;
    for (std::size_t i = 0; i < Fields * Dm; ++i) p.get<"v">()[i] = 0.1 * double(i) - 0.3;
    EG::workspace ws;
    EG::io io;
    io.input<"emb">(x.data()).input<"cotangent">(ct.data());
    io.output<0>(y.data()).output<EG::grad<"emb">>(dx.data()).output<EG::grad<"v">>(dv.data());
    EG::run(p, ws, B, io);
    f::sparse_gradient<double, Dm> g0, g1;
    t0.backward(ids0, {}, f::pooling::sum, dx.data(), Fields * Dm, g0);
    t1.backward(ids1, off1, f::pooling::mean, dx.data() + Dm, Fields * Dm, g1);
    // the dense gradient of a row: sum over its uses of d score / d pooled (2 x + v) / count
    auto want0 = [&](std::int64_t id, std::size_t k) {
        double s = 0;
        for (std::size_t b = 0; b < B; ++b)
            if (t0.row_of(ids0[b]) == t0.row_of(id)) s += 2 * x[b * Fields * Dm + k] + p.get<"v">()[k];
        return s;
    };
    REQUIRE(g0.size() == (t0.row_of(5) == t0.row_of(17) ? 1u : 2u));
    for (std::size_t j = 0; j < g0.size(); ++j)
        for (std::size_t k = 0; k < Dm; ++k)
            CHECK(g0.values(j)[k] == doctest::Approx(want0(ids0[j == 0 ? 0 : 1], k)));
    // multi-valent mean: row 2 is used by example 0 (count 2) and example 2 (count 2)
    for (std::size_t j = 0; j < g1.size(); ++j)
        if (g1.rows()[j] == t1.row_of(2) && t1.row_of(2) != t1.row_of(1) && t1.row_of(2) != t1.row_of(3) &&
            t1.row_of(2) != t1.row_of(8))
            for (std::size_t k = 0; k < Dm; ++k) {
                const double d0 = 2 * x[0 * Fields * Dm + Dm + k] + p.get<"v">()[Dm + k];
                const double d2 = 2 * x[2 * Fields * Dm + Dm + k] + p.get<"v">()[Dm + k];
                CHECK(g1.values(j)[k] == doctest::Approx(d0 / 2 + d2 / 2));
            }
    // sparse Adam: only the used rows change, each by lr in the gradient's sign on the first step
    const std::vector<double> before(t1.values().begin(), t1.values().end());
    f::embedding_table<double, Dm>::state<f::adam> st(t1);
    t1.apply(f::adam{.learning_rate = 0.01}, g1, st);
    std::vector<bool> used(40, false);
    for (std::uint32_t r : g1.rows()) used[r] = true;
    for (std::size_t r = 0; r < 40; ++r)
        for (std::size_t k = 0; k < Dm; ++k) {
            const double now = t1.row(r)[k], was = before[r * Dm + k];
            if (!used[r]) CHECK(now == was);
            else CHECK(std::abs(now - was) == doctest::Approx(0.01).epsilon(1e-4));
        }
    g1.clear();
    CHECK(g1.size() == 0);
}

// ---- xtensor at the boundary ----------------------------------------------------------------
namespace {
constexpr std::size_t In = 6;
constexpr auto xx = f::input<"x", In>;
constexpr auto xr = fl::mlp<"m", fl::mlp_config<2>{.output_dims = {5, 2}}, fl::mode::predict>(xx);
constexpr auto xy = xr.out();
using XM = f::program<float, xy>;
constexpr auto x2 = f::input<"x", In>;
constexpr auto x2r = fl::dense<"d", {.units = 3}>(x2);
constexpr auto x2y = x2r.out();
using XD = f::program<float, x2y>;
} // namespace

TEST_CASE("xtensor: inputs and outputs bind with their shapes checked; parameters are adaptors") {
    XM::parameters p;
    fl::initialize<xr>(p, 4);
    p.prepare();
    XM::workspace ws;
    const std::size_t B = 7;
    xt::xtensor<float, 2> x = xt::zeros<float>({B, In});
    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t k = 0; k < In; ++k) x(b, k) = static_cast<float>(test::leaf_value("x", b * In + k));
    auto y = f::make_output<0, XM>(B);
    CHECK(y.shape().size() == 2);
    CHECK(y.shape()[0] == B);
    CHECK(y.shape()[1] == 2);
    XM::io io;
    const std::size_t batch = f::bind_input<"x", XM>(io, x);
    CHECK(batch == B);
    f::bind_output<0, XM>(io, y, batch);
    XM::run(static_cast<const XM::parameters&>(p), ws, batch, io);
    // the same through raw pointers
    std::vector<float> raw(B * 2);
    XM::io rio;
    rio.input<"x">(x.data()).output<0>(raw.data());
    XM::run(static_cast<const XM::parameters&>(p), ws, B, rio);
    for (std::size_t i = 0; i < raw.size(); ++i) CHECK(y.data()[i] == raw[i]);
    // a fixed-shape xtensor binds the same way (its batch is its first extent)
    xt::xtensor_fixed<float, xt::xshape<B, In>> xf = x;
    xt::xtensor_fixed<float, xt::xshape<B, 2>> yf;
    XM::io fio;
    CHECK((f::bind_input<"x", XM>(fio, xf)) == B);
    f::bind_output<0, XM>(fio, yf, B);
    XM::run(static_cast<const XM::parameters&>(p), ws, B, fio);
    for (std::size_t i = 0; i < raw.size(); ++i) CHECK(yf.data()[i] == raw[i]);
    xt::xtensor_fixed<float, xt::xshape<B, In + 2>> xbad;
    CHECK_THROWS_WITH_AS((f::bind_input<"x", XM>(fio, xbad)), doctest::Contains("has (7, 8)"), f::error);
    // a contiguous row-major view binds (rows 2..5)
    auto rows = xt::view(x, xt::range(2, 5), xt::all());
    XM::io vio;
    CHECK((f::bind_input<"x", XM>(vio, rows)) == 3);
    // wrong shapes and non-contiguous views are rejected, naming the tensor and both shapes
    xt::xtensor<float, 2> wrong = xt::zeros<float>({B, In + 1});
    CHECK_THROWS_WITH_AS((f::bind_input<"x", XM>(io, wrong)), doctest::Contains("input 'x' has shape (batch, 6), the xtensor bound to it has (7, 7)"), f::error);
    xt::xtensor<float, 1> flat = xt::zeros<float>({B * In});
    CHECK_THROWS_WITH_AS((f::bind_input<"x", XM>(io, flat)), doctest::Contains("the xtensor bound to it has (42)"), f::error);
    auto cols = xt::view(x, xt::all(), xt::range(0, 6, 2));
    xt::xtensor<float, 2> wide = xt::zeros<float>({B, 2 * In});
    auto strided = xt::view(wide, xt::all(), xt::range(0, 2 * In, 2));
    CHECK_THROWS_WITH_AS((f::bind_input<"x", XM>(io, strided)), doctest::Contains("not contiguous and row-major"), f::error);
    (void)cols;
    xt::xtensor<float, 2> ysmall = xt::zeros<float>({B, std::size_t(1)});
    CHECK_THROWS_WITH_AS((f::bind_output<0, XM>(io, ysmall, B)), doctest::Contains("output 0 has shape (7, 2)"), f::error);
    // parameters: adaptors with the model's shape, writing through to the storage
    auto k0 = f::parameter<"m/dense_0/kernel", XM>(p);
    CHECK(k0.shape()[0] == In);
    CHECK(k0.shape()[1] == 5);
    k0(1, 2) = 0.25f;
    CHECK(p.get<"m/dense_0/kernel">()[1 * 5 + 2] == 0.25f);
    CHECK_FALSE(p.prepared());  // a write through the adaptor marks the parameters changed
    xt::xtensor<float, 2> nk = xt::ones<float>({In, std::size_t(5)});
    f::set_parameter<"m/dense_0/kernel", XM>(p, nk);
    for (float v : p.get<"m/dense_0/kernel">()) CHECK(v == 1.0f);
    xt::xtensor<float, 2> bad = xt::ones<float>({std::size_t(5), In});
    CHECK_THROWS_WITH_AS((f::set_parameter<"m/dense_0/kernel", XM>(p, bad)),
                         doctest::Contains("'m/dense_0/kernel' has shape (6, 5), the value given has (5, 6)"), f::error);
    for (float v : p.get<"m/dense_0/kernel">()) CHECK(v == 1.0f);
}

TEST_CASE("scorer registry: pick a compiled model by name; clones share parameters") {
    XM::parameters pa;
    fl::initialize<xr>(pa, 1);
    XD::parameters pd;
    fl::initialize<x2r>(pd, 2);
    f::scorer_registry<float> models;
    models.add<XM>("mlp", pa);
    models.add<XD>("dense", pd);
    CHECK_THROWS_WITH_AS(models.add<XD>("dense", pd), doctest::Contains("'dense' is already registered"), f::error);
    CHECK_THROWS_WITH_AS(models.get("tower"), doctest::Contains("no model named 'tower' (registered: dense, mlp)"), f::error);
    auto& d = models.get("dense");
    CHECK(d.n_inputs() == 1);
    CHECK(d.input_name(0) == "x");
    CHECK(d.input_size(0) == In);
    CHECK(d.output_size(0) == 3);
    CHECK_THROWS_WITH_AS(d.input_index("y"), doctest::Contains("no input 'y' (inputs: x)"), f::error);
    const std::size_t B = 5;
    std::vector<float> x(B * In);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(test::leaf_value("x", i));
    std::vector<float> got(B * 3), want(B * 3), again(B * 3);
    const float* in[] = {x.data()};
    float* out[] = {got.data()};
    d.score(B, in, out);
    pd.prepare();
    XD::workspace ws;
    XD::io io;
    io.input<"x">(x.data()).output<0>(want.data());
    XD::run(static_cast<const XD::parameters&>(pd), ws, B, io);
    CHECK(got == want);
    auto c = d.clone();
    float* out2[] = {again.data()};
    c->score(B, in, out2);
    CHECK(again == want);
    // a missing binding is an error, not a crash
    float* none[] = {nullptr};
    CHECK_THROWS_AS(d.score(B, in, none), f::error);
}

// ---- the Criteo text format -------------------------------------------------------------------
namespace {
std::string criteo_line(std::string label = "1", std::string i3 = "7", std::string c2 = "68fd1e64", std::string seq = "") {
    std::string s = label;
    for (int i = 1; i <= 13; ++i) s += "\t" + (i == 3 ? i3 : i == 5 ? std::string() : std::to_string(i * 10 - 40));
    for (int i = 1; i <= 26; ++i) s += "\t" + (i == 2 ? c2 : i == 7 ? std::string() : std::string("05db9164"));
    if (!seq.empty()) s += "\t" + seq;
    return s;
}
} // namespace

TEST_CASE("criteo: a line parses, missing values are marked, and formatting inverts parsing") {
    f::criteo_record r;
    f::parse_criteo_line(criteo_line("1", "-3", "68fd1e64", "5,17,-2"), 1, r);
    CHECK(r.label == 1.0f);
    CHECK(r.ints[0] == -30);
    CHECK(r.ints[2] == -3);
    CHECK_FALSE(r.int_present[4]);
    CHECK(r.int_present[3]);
    CHECK(r.cats[1] == 0x68fd1e64);
    CHECK(r.cats[0] == 0x05db9164);
    CHECK(r.cats[6] == f::criteo_missing);
    CHECK(r.sequence == std::vector<std::int64_t>{5, 17, -2});
    f::criteo_record back;
    f::parse_criteo_line(f::format_criteo_line(r, false), 2, back);
    CHECK(back.ints == r.ints);
    CHECK(back.int_present == r.int_present);
    CHECK(back.cats == r.cats);
    CHECK(back.sequence == r.sequence);
    f::parse_criteo_line(criteo_line("0") + "\r", 3, r);  // CRLF files
    CHECK(r.label == 0.0f);
    CHECK(r.sequence.empty());
}

TEST_CASE("criteo: malformed lines are errors naming the line, the column and the problem") {
    f::criteo_record r;
    auto fails = [&](const std::string& line, const char* what) {
        CHECK_THROWS_WITH_AS(f::parse_criteo_line(line, 12, r), doctest::Contains(what), f::error);
    };
    fails(criteo_line("2"), "criteo line 12, column 1: label must be 0 or 1, got '2'");
    fails(criteo_line("1", "7x"), "column 4: integer feature I3 is not a 64-bit integer: '7x'");
    fails(criteo_line("1", "99999999999999999999"), "integer feature I3 is not a 64-bit integer");
    fails(criteo_line("1", "7", "zz"), "column 16: categorical feature C2 is not a hexadecimal hash");
    fails(criteo_line("1", "7", "12345678901234567"), "categorical feature C2 is not a hexadecimal hash of up to 16 digits");
    fails(criteo_line("1", "7", "68fd1e64", "1,,2"), "column 41: sequence item 2 is not an integer id: ''");
    fails("1\t2\t3", "expected 40 tab-separated columns (41 with a sequence), found 3");
    fails(criteo_line("1", "7", "68fd1e64", "1") + "\textra", "too many columns");
    fails("", "found 1");
}

TEST_CASE("criteo: the reader stops at the first bad line, or skips and counts") {
    const std::string text = criteo_line() + "\n\n" + criteo_line("x") + "\n" + criteo_line("0") + "\n";
    {
        std::istringstream in(text);
        f::criteo_reader rd(in);
        f::criteo_record r;
        CHECK(rd.next(r));
        CHECK_THROWS_WITH_AS(rd.next(r), doctest::Contains("criteo line 3, column 1"), f::error);
    }
    std::istringstream in(text);
    f::criteo_reader rd(in, true);
    f::criteo_record r;
    std::size_t n = 0;
    while (rd.next(r)) ++n;
    CHECK(n == 2);
    CHECK(rd.bad_lines() == 1);
    CHECK(rd.first_error().find("line 3") != std::string::npos);
}
