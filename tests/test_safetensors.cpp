// Weight files (include/ctrec/io/safetensors.hpp, half.hpp, tools/export_safetensors.py):
// round trips, dtype conversion against hand-computed values, one case per malformed file (the
// error's content and the previously loaded parameters unchanged), atomic saves, extra tensors
// (optimizer state), verification vectors, and a file written by the Python exporter.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include "ctrec/ctrec.hpp"
#include "ctrec/io/safetensors.hpp"
#include "support.hpp"

namespace st = ctrec::safetensors;
namespace fs = std::filesystem;
using st::dtype;

namespace {

constexpr auto x = ctrec::input<"x", 3>;
constexpr ctrec::layers::mlp_config<2> cfg{.output_dims = {4, 2}};
constexpr auto net = ctrec::layers::mlp<"mlp", cfg, ctrec::layers::mode::predict>(x);
constexpr auto y = net.out();
using F = ctrec::program<float, y>;
using D = ctrec::program<double, y>;

// the parameters, in program order: kernel, trainable_kernel_norm, bias of dense_0 then dense_1
const char* const K0 = "mlp/dense_0/kernel";
const char* const G0 = "mlp/dense_0/trainable_kernel_norm";
const char* const B0 = "mlp/dense_0/bias";
const char* const B1 = "mlp/dense_1/bias";

template <class P>
void fill(typename P::parameters& p, double salt) {
    for (std::size_t i = 0; i < P::n_params; ++i) {
        auto v = p.get(i);
        for (std::size_t e = 0; e < v.size(); ++e)
            v[e] = static_cast<typename P::element_type>(test::leaf_value(P::parameters::names[i], e) + salt);
    }
}

template <class P>
std::vector<double> snapshot(const typename P::parameters& p) {
    std::vector<double> r;
    for (std::size_t i = 0; i < P::n_params; ++i)
        for (auto v : p.get(i)) r.push_back(static_cast<double>(v));
    return r;
}

std::vector<std::byte> to_bytes(std::string_view s) {
    std::vector<std::byte> r(s.size());
    if (!s.empty()) std::memcpy(r.data(), s.data(), s.size());  // an empty vector's data() may be null (UBSan)
    return r;
}

// A file from a header text and a data buffer (header length = the text's length).
std::vector<std::byte> make_file(std::string_view json, const std::vector<std::byte>& data) {
    std::vector<std::byte> r(8);
    const std::uint64_t n = json.size();
    std::memcpy(r.data(), &n, 8);
    const auto h = to_bytes(json);
    r.insert(r.end(), h.begin(), h.end());
    r.insert(r.end(), data.begin(), data.end());
    return r;
}
std::string header_of(const std::vector<std::byte>& f) {
    std::uint64_t n;
    std::memcpy(&n, f.data(), 8);
    return std::string(reinterpret_cast<const char*>(f.data() + 8), n);
}
std::vector<std::byte> data_of(const std::vector<std::byte>& f) {
    std::uint64_t n;
    std::memcpy(&n, f.data(), 8);
    return {f.begin() + 8 + static_cast<std::ptrdiff_t>(n), f.end()};
}
// The file with one occurrence of `from` in its header replaced (the header length adjusted).
std::vector<std::byte> edit(const std::vector<std::byte>& f, const std::string& from, const std::string& to) {
    std::string h = header_of(f);
    const auto at = h.find(from);
    REQUIRE_MESSAGE(at != std::string::npos, "the header has no " << from);
    h.replace(at, from.size(), to);
    return make_file(h, data_of(f));
}

std::vector<std::byte> model_file(const F::parameters& p) {
    st::writer w;
    st::add_parameters<F>(w, p);
    return w.bytes();
}

// A float program loaded with known values (salt 0.25), the reference for "unchanged" checks.
struct loaded {
    F::parameters p;
    std::vector<double> before;
    loaded() {
        F::parameters src;
        fill<F>(src, 0.25);
        st::load_parameters<F>(st::file::from_bytes(model_file(src)), p);
        before = snapshot<F>(p);
    }
};

// Loading `bytes` into a loaded program throws a ctrec::error containing every piece, and the
// parameters keep their values.
void expect_rejected(const std::vector<std::byte>& bytes, std::initializer_list<std::string_view> pieces,
                     const st::load_options& o = {}) {
    loaded m;
    std::string msg;
    try {
        st::load_parameters<F>(st::file::from_bytes(bytes), m.p, o);
    } catch (const ctrec::error& e) {
        msg = e.what();
    }
    CAPTURE(msg);
    CHECK_MESSAGE(!msg.empty(), "the load did not throw");
    for (std::string_view s : pieces) CHECK_MESSAGE(msg.find(s) != std::string::npos, "missing: " << s);
    CHECK(snapshot<F>(m.p) == m.before);
}

// A good file of the loaded model with other values (salt 0.5).
std::vector<std::byte> good_file() {
    F::parameters q;
    fill<F>(q, 0.5);
    return model_file(q);
}

template <class U>
std::vector<std::byte> raw(std::initializer_list<U> v) {
    std::vector<std::byte> r(v.size() * sizeof(U));
    std::memcpy(r.data(), std::data(v), r.size());
    return r;
}

struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string t = (fs::temp_directory_path() / "ctrec_st_XXXXXX").string();
        REQUIRE(::mkdtemp(t.data()) != nullptr);
        path = t;
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::size_t entries() const { return static_cast<std::size_t>(std::distance(fs::directory_iterator(path), fs::directory_iterator())); }
};

std::string read_text(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

} // namespace

// ---------------------------------------------------------------- round trips and conversion

TEST_CASE("save -> load round trip is bit-exact (float program, F32)") {
    temp_dir d;
    F::parameters p;
    fill<F>(p, 0.0);
    p.get(0)[1] = std::numeric_limits<float>::denorm_min();
    p.get(0)[2] = -0.0f;
    p.get(0)[3] = std::numeric_limits<float>::max();
    st::save_parameters<F>(d.path / "m.safetensors", p, {.metadata = {{"step", "12"}}});
    CHECK(d.entries() == 1);  // no temporary left

    F::parameters q;
    st::load_parameters<F>(d.path / "m.safetensors", q);
    CHECK(q.prepared());
    for (std::size_t i = 0; i < F::n_params; ++i)
        CHECK(std::memcmp(p.get(i).data(), std::as_const(q).get(i).data(), p.get(i).size_bytes()) == 0);
    const auto f = st::file::read(d.path / "m.safetensors");
    CHECK(f.metadata().at("step") == "12");
    CHECK(f.tensors().size() == F::n_params);
    CHECK(f.find(K0)->type == dtype::F32);
    CHECK(f.find(K0)->shape == st::shape_t{3, 4});
    CHECK(header_of(model_file(p)).size() % 8 == 0);
    // the same bytes as the writer's in-memory form
    st::writer w;
    st::add_parameters<F>(w, p);
    w.metadata("step", "12");
    const auto mem = w.bytes();
    CHECK(read_text(d.path / "m.safetensors") == std::string(reinterpret_cast<const char*>(mem.data()), mem.size()));
    // scoring with the loaded weights equals scoring with the saved ones
    std::vector<float> xs(6 * 3), a(6 * 2), b(6 * 2);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(test::leaf_value("x", i));
    F::workspace ws;
    F::io io;
    io.input<"x">(xs.data()).output<0>(a.data());
    F::run(p, ws, 6, io);
    io.output<0>(b.data());
    F::run(static_cast<const F::parameters&>(q), ws, 6, io);
    CHECK(a == b);
}

TEST_CASE("save -> load round trip is bit-exact (double program, F64), and across element types") {
    temp_dir d;
    D::parameters p;
    fill<D>(p, 1.0 / 3.0);
    st::save_parameters<D>(d.path / "d.safetensors", p);
    D::parameters q;
    st::load_parameters<D>(d.path / "d.safetensors", q);
    CHECK(snapshot<D>(p) == snapshot<D>(q));
    CHECK(st::file::read(d.path / "d.safetensors").find(K0)->type == dtype::F64);

    // F64 into float rounds to nearest; F32 into double is exact
    F::parameters fp;
    st::load_parameters<F>(d.path / "d.safetensors", fp);
    for (std::size_t i = 0; i < F::n_params; ++i)
        for (std::size_t e = 0; e < fp.get(i).size(); ++e) CHECK(fp.get(i)[e] == static_cast<float>(p.get(i)[e]));
    st::save_parameters<F>(d.path / "f.safetensors", fp);
    D::parameters dq;
    st::load_parameters<D>(d.path / "f.safetensors", dq);
    for (std::size_t i = 0; i < F::n_params; ++i)
        for (std::size_t e = 0; e < fp.get(i).size(); ++e) CHECK(dq.get(i)[e] == static_cast<double>(fp.get(i)[e]));
}

TEST_CASE("F16 and BF16 encoding: round to nearest even, subnormals, overflow, NaN") {
    namespace h = ctrec::half;
    CHECK(h::f16_from_double(1.0) == 0x3C00);
    CHECK(h::f16_from_double(-2.0) == 0xC000);
    CHECK(h::f16_from_double(1.0 / 3.0) == 0x3555);
    CHECK(h::f16_from_double(65504.0) == 0x7BFF);
    CHECK(h::f16_from_double(65519.99) == 0x7BFF);
    CHECK(h::f16_from_double(65520.0) == 0x7C00);  // the tie rounds up to the even "2^16": infinity
    CHECK(h::f16_from_double(std::ldexp(1.0, -24)) == 0x0001);
    CHECK(h::f16_from_double(std::ldexp(1.0, -25)) == 0x0000);        // tie to even: 0
    CHECK(h::f16_from_double(std::ldexp(3.0, -25)) == 0x0002);        // 1.5 quanta: tie to even 2
    CHECK(h::f16_from_double(std::ldexp(1.0, -25) * 1.0001) == 0x0001);
    CHECK(h::f16_from_double(std::ldexp(1023.5, -24)) == 0x0400);     // largest subnormal rounds up to 2^-14
    CHECK(h::f16_from_double(1.0 + std::ldexp(1.0, -11)) == 0x3C00);  // tie to even
    CHECK(h::f16_from_double(1.0 + std::ldexp(3.0, -11)) == 0x3C02);
    CHECK(h::f16_from_double(-0.0) == 0x8000);
    CHECK(h::f16_from_double(-std::numeric_limits<double>::infinity()) == 0xFC00);
    CHECK(h::f16_from_double(std::nan("")) == 0x7E00);
    CHECK(h::bf16_from_double(1.0) == 0x3F80);
    CHECK(h::bf16_from_double(1.0 + std::ldexp(1.0, -8)) == 0x3F80);  // tie to even
    CHECK(h::bf16_from_double(1.0 + std::ldexp(3.0, -8)) == 0x3F82);
    CHECK(h::bf16_from_double(3.14159265) == 0x4049);
    CHECK(h::bf16_from_double(std::ldexp(1.0, -133)) == 0x0001);
    CHECK(h::bf16_from_double(3.4e38) == 0x7F80);  // above the largest finite 0x7F7F after rounding
    CHECK(h::bf16_from_double(-std::nan("")) == 0xFFC0);
    CHECK(h::f16_to_double(0x3555) == 0.333251953125);
    CHECK(h::f16_to_double(0x03FF) == 1023.0 * std::ldexp(1.0, -24));
    CHECK(h::bf16_to_float(0x7F7F) == 3.38953139e38f);
    std::size_t changed = 0;  // every finite F16 survives the round trip, through double and float
    for (std::uint32_t b = 0; b < 0x10000; ++b) {
        if ((b & 0x7C00) == 0x7C00) continue;
        const auto v = static_cast<std::uint16_t>(b);
        changed += h::f16_from_double(h::f16_to_double(v)) != b || h::f16_from_double(h::f16_to_float(v)) != b;
    }
    CHECK(changed == 0);
    changed = 0;  // and every finite BF16
    for (std::uint32_t b = 0; b < 0x10000; ++b) {
        if ((b & 0x7F80) == 0x7F80) continue;
        changed += h::bf16_from_double(h::bf16_to_double(static_cast<std::uint16_t>(b))) != b;
    }
    CHECK(changed == 0);
}

TEST_CASE("F16, BF16 and F64 tensors convert on load to hand-computed values") {
    // dense_0/kernel (3, 4) as F16, dense_0/bias (4) as BF16, dense_0/trainable_kernel_norm (4) as F64;
    // the others F32
    const std::vector<std::uint16_t> k16 = {0x3C00, 0xC000, 0x3555, 0x0001, 0x03FF, 0x0400,
                                            0x7BFF, 0x8000, 0x3800, 0x8001, 0xBBFF, 0x0200};
    const double k_want[] = {1.0, -2.0, 0.333251953125, 5.9604644775390625e-08, 6.097555160522461e-05,
                             6.103515625e-05, 65504.0, -0.0, 0.5, -5.9604644775390625e-08, -0.99951171875,
                             3.0517578125e-05};
    const std::vector<std::uint16_t> b16 = {0x3F80, 0x4049, 0xC2F7, 0x0001};
    const double b_want[] = {1.0, 3.140625, -123.5, 9.183549615799121e-41};
    const std::vector<double> g64 = {0.1, -1e-3, 2.5, 1.0 / 3.0};
    std::vector<std::byte> data;
    auto put = [&](const void* p, std::size_t n) {
        const auto* b = static_cast<const std::byte*>(p);
        data.insert(data.end(), b, b + n);
    };
    put(k16.data(), 24);
    put(b16.data(), 8);
    put(g64.data(), 32);
    const std::vector<float> rest(8 + 2 + 2, 0.75f);
    put(rest.data(), rest.size() * 4);
    const std::string json = std::string("{\"") + K0 + R"(":{"dtype":"F16","shape":[3,4],"data_offsets":[0,24]},")" + B0 +
                             R"(":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},")" + G0 +
                             R"(":{"dtype":"F64","shape":[4],"data_offsets":[32,64]},)" +
                             R"("mlp/dense_1/kernel":{"dtype":"F32","shape":[4,2],"data_offsets":[64,96]},)" +
                             R"("mlp/dense_1/trainable_kernel_norm":{"dtype":"F32","shape":[2],"data_offsets":[96,104]},)" +
                             R"("mlp/dense_1/bias":{"dtype":"F32","shape":[2],"data_offsets":[104,112]}})";
    const auto bytes = make_file(json, data);

    F::parameters fp;
    st::load_parameters<F>(st::file::from_bytes(bytes), fp);
    D::parameters dp;
    st::load_parameters<D>(st::file::from_bytes(bytes), dp);
    const auto fk = fp.get<"mlp/dense_0/kernel">();
    const auto dk = dp.get<"mlp/dense_0/kernel">();
    for (std::size_t e = 0; e < 12; ++e) {
        CHECK(fk[e] == static_cast<float>(k_want[e]));
        CHECK(dk[e] == k_want[e]);
        CHECK(std::signbit(dk[e]) == std::signbit(k_want[e]));
    }
    for (std::size_t e = 0; e < 4; ++e) {
        CHECK(fp.get<"mlp/dense_0/bias">()[e] == static_cast<float>(b_want[e]));
        CHECK(dp.get<"mlp/dense_0/bias">()[e] == b_want[e]);
        CHECK(fp.get<"mlp/dense_0/trainable_kernel_norm">()[e] == static_cast<float>(g64[e]));
        CHECK(dp.get<"mlp/dense_0/trainable_kernel_norm">()[e] == g64[e]);
    }
    CHECK(fp.get<"mlp/dense_1/bias">()[1] == 0.75f);

    // infinities load when non-finite values are allowed
    const std::vector<std::uint16_t> inf16 = {0x7C00, 0xFC00, 0x3C00, 0x3C00, 0x3C00, 0x3C00,
                                              0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00, 0x3C00};
    auto with_inf = bytes;
    std::memcpy(with_inf.data() + 8 + json.size(), inf16.data(), 24);
    st::load_parameters<F>(st::file::from_bytes(with_inf), fp, {.reject_non_finite = false});
    CHECK(fp.get<"mlp/dense_0/kernel">()[0] == std::numeric_limits<float>::infinity());
    CHECK(fp.get<"mlp/dense_0/kernel">()[1] == -std::numeric_limits<float>::infinity());
    expect_rejected(with_inf, {"tensor 'mlp/dense_0/kernel' holds a non-finite value (inf) at index 0", "reject_non_finite"});
}

TEST_CASE("F16 / BF16 storage on save: values round once, out-of-range values are errors") {
    temp_dir d;
    F::parameters p;
    fill<F>(p, 0.0);
    st::save_parameters<F>(d.path / "h.safetensors", p, {.stored = dtype::F16});
    st::save_parameters<F>(d.path / "b.safetensors", p, {.stored = dtype::BF16});
    F::parameters h, b;
    st::load_parameters<F>(d.path / "h.safetensors", h);
    st::load_parameters<F>(d.path / "b.safetensors", b);
    CHECK(st::file::read(d.path / "h.safetensors").find(B1)->type == dtype::F16);
    for (std::size_t i = 0; i < F::n_params; ++i)
        for (std::size_t e = 0; e < p.get(i).size(); ++e) {
            const float v = p.get(i)[e];
            CHECK(h.get(i)[e] == static_cast<float>(ctrec::half::f16_to_double(ctrec::half::f16_from_double(v))));
            CHECK(b.get(i)[e] == ctrec::half::bf16_to_float(ctrec::half::bf16_from_double(v)));
        }
    std::vector<float> r(p.get(0).begin(), p.get(0).end());
    st::round_through(dtype::F16, std::span<float>(r));
    CHECK(r[0] == h.get(0)[0]);

    p.get(0)[5] = 70000.0f;
    std::string msg;
    try {
        st::save_parameters<F>(d.path / "h.safetensors", p, {.stored = dtype::F16});
    } catch (const ctrec::error& e) {
        msg = e.what();
    }
    CHECK(msg.find("tensor 'mlp/dense_0/kernel': value 70000 at index 5 does not fit in F16") != std::string::npos);
    F::parameters again;
    st::load_parameters<F>(d.path / "h.safetensors", again);  // the earlier file is intact
    CHECK(snapshot<F>(again) == snapshot<F>(h));
}

// ---------------------------------------------------------------- malformed files, one case each

TEST_CASE("reject: missing tensor") {
    st::writer w;
    F::parameters q;
    fill<F>(q, 0.5);
    for (std::size_t i = 0; i + 1 < F::n_params; ++i)
        w.add(std::string(F::parameters::names[i]), std::as_const(q).get(i), st::shape_of(st::parameter_shape<F>(i)));
    expect_rejected(w.bytes(), {"tensor 'mlp/dense_1/bias' is missing", "shape [2]"});
    // renamed: the hint names what the file has instead
    expect_rejected(edit(good_file(), "\"mlp/dense_1/bias\"", "\"mlp/dense_1/biases\""),
                    {"tensor 'mlp/dense_1/bias' is missing", "the file has 1 tensor(s) the model lacks: 'mlp/dense_1/biases'"});
}

TEST_CASE("reject: unexpected tensor (allowed by allow_extra)") {
    st::writer w;
    F::parameters q;
    fill<F>(q, 0.5);
    st::add_parameters<F>(w, q);
    const std::vector<float> extra = {1, 2};
    w.add("tower/unused", std::span<const float>(extra), {2});
    const auto bytes = w.bytes();
    expect_rejected(bytes, {"tensor 'tower/unused' is not a parameter of the model", "allow_extra"});
    loaded m;
    st::load_parameters<F>(st::file::from_bytes(bytes), m.p, {.allow_extra = true});
    CHECK(snapshot<F>(m.p) == snapshot<F>(q));
}

TEST_CASE("reject: wrong dtype") {
    const auto g = good_file();
    const std::string k = std::string("\"") + K0 + "\":{\"dtype\":\"F32\"";
    expect_rejected(edit(g, k, std::string("\"") + K0 + "\":{\"dtype\":\"I32\""),
                    {"tensor 'mlp/dense_0/kernel' has dtype I32; ctrec loads F32, F64, F16 or BF16"});
    expect_rejected(edit(g, k, std::string("\"") + K0 + "\":{\"dtype\":\"F128\""),
                    {"tensor 'mlp/dense_0/kernel': unknown dtype \"F128\""});
    // a known dtype of another size: the offsets no longer match it
    expect_rejected(edit(g, k, std::string("\"") + K0 + "\":{\"dtype\":\"F8_E4M3\""),
                    {"tensor 'mlp/dense_0/kernel': data_offsets [0, 48] span 48 bytes, dtype F8_E4M3 and shape [3, 4] need 12"});
}

TEST_CASE("reject: wrong shape") {
    const auto g = good_file();
    expect_rejected(edit(g, "\"shape\":[3,4]", "\"shape\":[4,3]"),
                    {"tensor 'mlp/dense_0/kernel' has shape [4, 3], the model's parameter has [3, 4]"});
    expect_rejected(edit(g, "\"shape\":[3,4]", "\"shape\":[12]"),
                    {"tensor 'mlp/dense_0/kernel' has shape [12], the model's parameter has [3, 4]"});
    expect_rejected(edit(g, "\"shape\":[3,4]", "\"shape\":[3,4,1]"), {"has shape [3, 4, 1]"});
}

TEST_CASE("reject: truncated file") {
    const auto g = good_file();
    expect_rejected({g.begin(), g.end() - 4}, {"tensor 'mlp/dense_1/bias'", "end beyond the data buffer", "truncated file?"});
    expect_rejected({g.begin(), g.begin() + 20}, {"header length", "exceeds the 12 bytes that follow it (truncated file?)"});
    expect_rejected({g.begin(), g.begin() + 5}, {"the file is 5 bytes long, too short for the 8-byte header length"});
    expect_rejected({}, {"the file is 0 bytes long"});
}

TEST_CASE("reject: header length out of range") {
    auto g = good_file();
    const std::uint64_t huge = 200'000'000;
    std::memcpy(g.data(), &huge, 8);
    expect_rejected(g, {"header length 200000000 is above the limit of 100000000 bytes"});
    const std::uint64_t all = ~std::uint64_t{0};
    std::memcpy(g.data(), &all, 8);
    expect_rejected(g, {"header length 18446744073709551615"});
    // a header length that cuts the JSON's closing brace (and the padding after it)
    auto s = good_file();
    const std::string h = header_of(s);
    std::uint64_t n = h.find_last_of('}');
    std::memcpy(s.data(), &n, 8);
    expect_rejected(s, {"malformed JSON header"});
}

TEST_CASE("reject: data offsets out of range") {
    const auto g = good_file();
    expect_rejected(edit(g, "\"data_offsets\":[0,48]", "\"data_offsets\":[48,0]"),
                    {"tensor 'mlp/dense_0/kernel': data_offsets [48, 0] begin after end"});
    expect_rejected(edit(g, "\"data_offsets\":[0,48]", "\"data_offsets\":[0,4800]"),
                    {"tensor 'mlp/dense_0/kernel': data_offsets [0, 4800] end beyond the data buffer's 128 bytes"});
    expect_rejected(edit(g, "\"data_offsets\":[0,48]", "\"data_offsets\":[0,44]"),
                    {"data_offsets [0, 44] span 44 bytes, dtype F32 and shape [3, 4] need 48"});
    expect_rejected(edit(g, "\"data_offsets\":[0,48]", "\"data_offsets\":[0,48,64]"),
                    {"tensor 'mlp/dense_0/kernel': data_offsets must be [begin, end], got 3 integers"});
    expect_rejected(edit(g, "\"data_offsets\":[0,48]", "\"data_offsets\":[0,18446744073709551616]"),
                    {"data_offsets 18446744073709551616 does not fit in 64 bits"});
    expect_rejected(edit(g, "\"shape\":[3,4]", "\"shape\":[4294967296,4294967296]"), {"has too many elements"});
}

TEST_CASE("reject: overlapping tensors, holes and trailing bytes") {
    const auto data = raw<float>({1, 2, 3, 4, 5, 6});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
                              R"("c":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})",
                              data),
                    {"tensors 'a' [0, 16) and 'b' [8, 16) overlap in the data buffer"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})", data),
                    {"bytes [8, 16) of the data buffer belong to no tensor"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data),
                    {"the data buffer has 24 bytes but its tensors end at byte 8 (trailing bytes)"});
    // dense_0's bias pointed at the bytes of its trainable_kernel_norm (both of shape [4])
    const auto g = good_file();
    const std::string h = header_of(g);
    auto offsets_of = [&](const char* name) {
        const std::string key = std::string("\"") + name + "\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[";
        const auto at = h.find(key) + key.size();
        return std::pair{key, h.substr(at, h.find(']', at) - at)};
    };
    const auto [b0_key, b0_offsets] = offsets_of(B0);
    const auto g0_offsets = offsets_of(G0).second;
    expect_rejected(edit(g, b0_key + b0_offsets, b0_key + g0_offsets), {"overlap in the data buffer", B0, G0});
}

TEST_CASE("reject: malformed JSON") {
    const auto d = raw<float>({1, 2});
    const std::string e = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    expect_rejected(make_file("{" + e, d), {"malformed JSON header at byte", "expected ',' or '}' after the value of 'a', found the end of the header"});
    expect_rejected(make_file("{" + e + ",}", d), {"malformed JSON header", "expected a key (a string), found '}'"});
    expect_rejected(make_file("[" + e + "]", d), {"malformed JSON header at byte 0", "the header must be a JSON object, found '['"});
    expect_rejected(make_file("{" + e + "}x", d), {"unexpected 'x' after the header object"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})" "\x01", d), {"unexpected 0x01 after the header object"});
    expect_rejected(make_file(R"({"a\q":1})", d), {"invalid escape \\q"});
    expect_rejected(make_file(R"({"a)", d), {"unterminated string"});
    expect_rejected(make_file("{\"a\xff\":1}", d), {"invalid UTF-8 in a string"});
    expect_rejected(make_file("{\"a\xc0\xaf\":1}", d), {"invalid UTF-8"});                 // overlong '/'
    expect_rejected(make_file(R"({"\ud800x":1})", d), {"UTF-16 high surrogate not followed by a low one"});
    expect_rejected(make_file("{\"a\tb\":1}", d), {"unescaped control character 0x09"});
    expect_rejected(make_file(R"({"a" {"dtype":"F32"}})", d), {"expected ':' after the key 'a', found '{'"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2,],"data_offsets":[0,8]}})", d),
                    {"malformed JSON header", "expected a value, found ']'"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2 2],"data_offsets":[0,8]}})", d),
                    {"expected ',' or ']' in tensor 'a': shape, found '2'"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}})", d), {"expected ',' or ']'"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[-],"data_offsets":[0,8]}})", d), {"expected a digit after '-'"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[1.],"data_offsets":[0,8]}})", d), {"expected a digit after '.'"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":tru})", d), {"expected a value, found 't'"});
    expect_rejected(make_file("", d), {"malformed JSON header at byte 0 of 0", "found the end of the header"});
    // well-formed JSON that is not a safetensors header
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", d),
                    {"tensor 'a': shape must be an array of non-negative integers, found a string"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d),
                    {"tensor 'a': shape must be a non-negative integer, got -2"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", d), {"got 2.0"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}})", d), {"got 2e0"});
    expect_rejected(make_file(R"({"a":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", d), {"tensor 'a': dtype must be a string, found a number"});
    expect_rejected(make_file(R"({"a":[1]})", d), {"tensor 'a': the entry must be an object {dtype, shape, data_offsets}, found an array"});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2]}})", d), {"tensor 'a': the entry has no \"data_offsets\""});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", d),
                    {"tensor 'a': unknown key \"extra\""});
    expect_rejected(make_file(R"({"a":{"dtype":"F32","shape":[2],"shape":[2],"data_offsets":[0,8]}})", d),
                    {"tensor 'a': duplicate key \"shape\""});
    expect_rejected(make_file(R"({"__metadata__":{"k":1},)" + e + "}", d), {"metadata 'k' must be a string, found a number"});
    expect_rejected(make_file(R"({"__metadata__":[],)" + e + "}", d), {"\"__metadata__\" must be an object of strings, found an array"});
    // escapes decode: "\u0061" is "a", so this is a duplicate
    expect_rejected(make_file("{" + e + R"(,"\u0061":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})", d),
                    {"duplicate tensor name 'a'"});
}

TEST_CASE("reject: duplicate names") {
    const auto g = good_file();
    expect_rejected(edit(g, std::string("\"") + B1 + "\"", std::string("\"") + B0 + "\""), {"duplicate tensor name 'mlp/dense_0/bias'"});
    const auto d = raw<float>({1, 2});
    const std::string e = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    expect_rejected(make_file(R"({"__metadata__":{"k":"1","k":"2"},)" + e + "}", d), {"duplicate metadata key 'k'"});
    expect_rejected(make_file(R"({"__metadata__":{},"__metadata__":{},)" + e + "}", d), {"duplicate key \"__metadata__\""});
}

TEST_CASE("reject: non-finite values (optional)") {
    F::parameters q;
    fill<F>(q, 0.5);
    q.get(2)[3] = std::numeric_limits<float>::quiet_NaN();
    const auto nan_file = model_file(q);
    expect_rejected(nan_file, {"tensor 'mlp/dense_0/bias' holds a non-finite value (nan) at index 3", "reject_non_finite"});
    loaded m;
    st::load_parameters<F>(st::file::from_bytes(nan_file), m.p, {.reject_non_finite = false});
    CHECK(std::isnan(m.p.get(2)[3]));
    // an F64 value beyond float's range
    D::parameters dq;
    fill<D>(dq, 0.5);
    dq.get(5)[1] = 1e300;
    st::writer w;
    st::add_parameters<D>(w, dq);
    expect_rejected(w.bytes(), {"tensor 'mlp/dense_1/bias' holds 1e+300 (F64) at index 1, beyond the range of float"});
}

// ---------------------------------------------------------------- atomic saves

TEST_CASE("a failed save leaves the target as it was and no temporary behind") {
    temp_dir d;
    const fs::path target = d.path / "m.safetensors";
    F::parameters old_p, new_p;
    fill<F>(old_p, 0.0);
    fill<F>(new_p, 1.0);
    st::save_parameters<F>(target, old_p);
    const std::string before = read_text(target);
    REQUIRE(d.entries() == 1);

    SUBCASE("the disk fills up mid-write (RLIMIT_FSIZE)") {
        rlimit old{};
        REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
        rlimit small = old;
        small.rlim_cur = 100;  // bytes: the header alone is longer
        const auto handler = std::signal(SIGXFSZ, SIG_IGN);
        REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
        std::string msg;
        try {
            st::save_parameters<F>(target, new_p);
        } catch (const ctrec::error& e) {
            msg = e.what();
        }
        ::setrlimit(RLIMIT_FSIZE, &old);
        std::signal(SIGXFSZ, handler);
        CHECK(msg.find("cannot save '" + target.string() + "': writing") != std::string::npos);
        CHECK(msg.find(std::strerror(EFBIG)) != std::string::npos);
    }
    SUBCASE("the target directory cannot be written: a missing directory") {
        std::string msg;
        try {
            st::save_parameters<F>(d.path / "no" / "m.safetensors", new_p);
        } catch (const ctrec::error& e) {
            msg = e.what();
        }
        CHECK(msg.find("cannot create a temporary file in '" + (d.path / "no").string() + "'") != std::string::npos);
    }
    SUBCASE("the rename fails (the target is a directory)") {
        fs::create_directory(d.path / "dir");
        fs::create_directory(d.path / "dir" / "inside");
        std::string msg;
        try {
            st::save_parameters<F>(d.path / "dir", new_p);
        } catch (const ctrec::error& e) {
            msg = e.what();
        }
        CHECK(msg.find("renaming the temporary") != std::string::npos);
        CHECK(fs::is_directory(d.path / "dir" / "inside"));
        fs::remove_all(d.path / "dir");
    }
    CHECK(read_text(target) == before);
    CHECK(d.entries() == 1);
    // a successful save replaces the file
    st::save_parameters<F>(target, new_p);
    CHECK(read_text(target) != before);
    CHECK(d.entries() == 1);
    F::parameters back;
    st::load_parameters<F>(target, back);
    CHECK(snapshot<F>(back) == snapshot<F>(new_p));
}

TEST_CASE("writer errors") {
    st::writer w;
    const std::vector<float> v = {1, 2, 3};
    CHECK_THROWS_WITH_AS(w.add("a", std::span<const float>(v), {2, 2}), doctest::Contains("tensor 'a': shape [2, 2] holds 4 values, got 3"),
                         ctrec::error);
    w.add("a", std::span<const float>(v), {3});
    CHECK_THROWS_WITH_AS(w.add("a", std::span<const float>(v), {3}), doctest::Contains("tensor 'a': added twice"), ctrec::error);
    CHECK_THROWS_WITH_AS(w.add("__metadata__", std::span<const float>(v), {3}), doctest::Contains("reserved"), ctrec::error);
    CHECK_THROWS_WITH_AS(w.add("b", std::span<const float>(v), {3}, dtype::I32), doctest::Contains("not I32"), ctrec::error);
    CHECK_THROWS_WITH_AS(w.add("c\xff", std::span<const float>(v), {3}), doctest::Contains("not valid UTF-8"), ctrec::error);
    // names with quotes and control characters are escaped and read back
    w.add("q\"\\\n/\xc3\xa9", std::span<const float>(v), {3});
    const auto f = st::file::from_bytes(w.bytes());
    REQUIRE(f.find("q\"\\\n/\xc3\xa9") != nullptr);
    CHECK(f.values<float>("q\"\\\n/\xc3\xa9") == v);
    CHECK_THROWS_WITH_AS(f.values<float>("zz"), doctest::Contains("the file has no tensor 'zz'"), ctrec::error);
    CHECK_THROWS_WITH_AS(st::file::read("/nonexistent/x.safetensors"),
                         doctest::Contains("safetensors '/nonexistent/x.safetensors': cannot open"), ctrec::error);
}

// ---------------------------------------------------------------- extra tensors (optimizer state)

TEST_CASE("extra named tensors (optimizer state) are saved and loaded beside the parameters") {
    temp_dir d;
    F::parameters p;
    fill<F>(p, 0.5);
    std::vector<float> m0(12), v0(12), step = {7};
    for (std::size_t e = 0; e < 12; ++e) m0[e] = 0.01f * e, v0[e] = 0.5f + e;
    const std::vector<st::named_tensor<const float>> out = {
        {"__optimizer__/mlp/dense_0/kernel/m", {3, 4}, m0},
        {"__optimizer__/mlp/dense_0/kernel/v", {3, 4}, v0},
        {"__optimizer__/step", {}, step}};
    st::save_parameters<F>(d.path / "s.safetensors", p, {}, out);

    // a scoring load ignores the "__" sections
    loaded plain;
    st::load_parameters<F>(d.path / "s.safetensors", plain.p);
    CHECK(snapshot<F>(plain.p) == snapshot<F>(p));

    std::vector<float> m(12, -1), v(12, -1), s(1, -1), w(4, -1);
    F::parameters q;
    st::load_parameters<F>(d.path / "s.safetensors", q, {},
                           std::vector<st::named_tensor<float>>{{"__optimizer__/mlp/dense_0/kernel/m", {3, 4}, m},
                                                                {"__optimizer__/mlp/dense_0/kernel/v", {3, 4}, v},
                                                                {"__optimizer__/step", {}, s},
                                                                {"__optimizer__/absent", {4}, w, false}});
    CHECK(m == m0);
    CHECK(v == v0);
    CHECK(s == step);
    CHECK(w == std::vector<float>(4, -1));  // optional and absent: untouched

    // a required one absent, or of another shape: nothing changes, neither the parameters nor the spans
    loaded target;
    std::vector<float> m2(12, -1), v2(12, -1);
    std::string msg;
    try {
        st::load_parameters<F>(d.path / "s.safetensors", target.p, {},
                               std::vector<st::named_tensor<float>>{{"__optimizer__/mlp/dense_0/kernel/m", {3, 4}, m2},
                                                                    {"__optimizer__/mlp/dense_1/kernel/m", {4, 2}, v2}});
    } catch (const ctrec::error& e) {
        msg = e.what();
    }
    CHECK(msg.find("tensor '__optimizer__/mlp/dense_1/kernel/m' is missing (requested beside the parameters)") != std::string::npos);
    CHECK(m2 == std::vector<float>(12, -1));
    CHECK(snapshot<F>(target.p) == target.before);
    msg.clear();
    try {
        st::load_parameters<F>(d.path / "s.safetensors", target.p, {},
                               std::vector<st::named_tensor<float>>{{"__optimizer__/mlp/dense_0/kernel/m", {12}, m2}});
    } catch (const ctrec::error& e) {
        msg = e.what();
    }
    CHECK(msg.find("tensor '__optimizer__/mlp/dense_0/kernel/m' has shape [3, 4], the requested shape is [12]") != std::string::npos);
    CHECK(m2 == std::vector<float>(12, -1));
    CHECK(snapshot<F>(target.p) == target.before);
}

// ---------------------------------------------------------------- verification vectors

namespace {
constexpr std::size_t VB = 5;
std::vector<float> verify_inputs() {
    std::vector<float> xs(VB * 3);
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>(test::leaf_value("vx", i) * 2);
    return xs;
}
// A file with the parameters of p and verification vectors computed from them; `swap` writes
// the values of dense_0's bias and trainable_kernel_norm (both of shape [4]) under each other's names.
std::vector<std::byte> verified_file(F::parameters& p, bool swap) {
    const auto xs = verify_inputs();
    st::writer w;
    for (std::size_t i = 0; i < F::n_params; ++i) {
        std::string name(F::parameters::names[i]);
        if (swap && name == B0) name = G0;
        else if (swap && name == G0) name = B0;
        w.add(name, std::as_const(p).get(i), st::shape_of(st::parameter_shape<F>(i)));
    }
    st::add_verification<F>(w, p, VB, {{"x", xs}});
    return w.bytes();
}
} // namespace

TEST_CASE("verification vectors: a correct file loads, a swapped name mapping is caught") {
    F::parameters p;
    fill<F>(p, 0.5);
    const auto good = verified_file(p, false);
    const auto f = st::file::from_bytes(good);
    CHECK(f.metadata().at("verify_batch") == "5");
    CHECK(f.metadata().at("verify_tolerance") == "1e-05");
    CHECK(f.find("__verify__/input/x")->shape == st::shape_t{VB, 3});
    CHECK(f.find("__verify__/output/0")->shape == st::shape_t{VB, 2});
    loaded m;
    st::load_parameters<F>(f, m.p);
    CHECK(snapshot<F>(m.p) == snapshot<F>(p));
    CHECK(st::verify<F>(f, m.p));
    D::parameters dp;  // the double program reproduces the float outputs within the tolerance
    st::load_parameters<D>(f, dp);

    expect_rejected(verified_file(p, true),
                    {"verification failed: output 0, example ", "got ", "want ", "values differ",
                     "a wrong name mapping"});
    // skipped on request
    loaded s;
    st::load_parameters<F>(st::file::from_bytes(verified_file(p, true)), s.p, {.verify = st::verification::skip});
    CHECK(s.p.get<"mlp/dense_0/bias">()[0] == p.get<"mlp/dense_0/trainable_kernel_norm">()[0]);
}

TEST_CASE("verification vectors: tolerance, required, malformed sets") {
    F::parameters p;
    fill<F>(p, 0.5);
    auto bytes = verified_file(p, false);
    // a small change of one output value: caught at the file's 1e-5, accepted with a looser tolerance
    const auto f0 = st::file::from_bytes(bytes);
    const st::tensor_info* out = f0.find("__verify__/output/0");
    const std::size_t at = 8 + header_of(bytes).size() + out->begin + 4 * 7;  // example 3, element 1
    float v;
    std::memcpy(&v, bytes.data() + at, 4);
    v += 1e-3f;
    std::memcpy(bytes.data() + at, &v, 4);
    expect_rejected(bytes, {"verification failed: output 0, example 3, element 1", "1 of 10 values differ"});
    loaded m;
    st::load_parameters<F>(st::file::from_bytes(bytes), m.p, {.tolerance = 1e-2});
    CHECK(snapshot<F>(m.p) == snapshot<F>(p));
    expect_rejected(edit(bytes, "\"verify_tolerance\":\"1e-05\"", "\"verify_tolerance\":\"1e-9\""), {"output 0, example 3"});
    loaded loose;
    st::load_parameters<F>(st::file::from_bytes(edit(bytes, "\"verify_tolerance\":\"1e-05\"", "\"verify_tolerance\":\"0.1\"")), loose.p);
    CHECK(snapshot<F>(loose.p) == snapshot<F>(p));

    // required, but the file has none
    expect_rejected(good_file(), {"the file carries no verification vectors"}, {.verify = st::verification::required});
    // metadata and names
    const auto good = verified_file(p, false);
    expect_rejected(edit(good, "\"verify_batch\":\"5\"", "\"verify_batchx\":\"5\""), {"need the metadata \"verify_batch\""});
    expect_rejected(edit(good, "\"verify_batch\":\"5\"", "\"verify_batch\":\"5x\""), {"\"verify_batch\" must be a positive decimal integer, got \"5x\""});
    expect_rejected(edit(good, "\"verify_batch\":\"5\"", "\"verify_batch\":\"4\""),
                    {"tensor '__verify__/input/x' has shape [5, 3], the model's input (verify_batch 4) needs [4, 3]"});
    expect_rejected(edit(good, "\"verify_tolerance\":\"1e-05\"", "\"verify_tolerance\":\"-1\""),
                    {"\"verify_tolerance\" must be a non-negative number"});
    expect_rejected(edit(good, "\"__verify__/input/x\"", "\"__verify__/input/z\""),
                    {"verification tensor '__verify__/input/z' names no input of the model (its inputs: 'x')"});
    expect_rejected(edit(good, "\"__verify__/output/0\"", "\"__verify__/output/1\""),
                    {"verification tensor '__verify__/output/1' names no output of the model (it has outputs 0 to 0)"});
    expect_rejected(edit(good, "\"__verify__/output/0\"", "\"__verify__/outputs/0\""), {"unknown verification tensor '__verify__/outputs/0'"});
}

// ---------------------------------------------------------------- the Python exporter

namespace {
// A python3 that imports numpy (CTREC_PYTHON, python3, /usr/bin/python3), or "".
const std::string& numpy_python() {
    static const std::string found = [] {
        std::vector<std::string> c;
        if (const char* e = std::getenv("CTREC_PYTHON")) c.push_back(e);
        c.push_back("python3");
        c.push_back("/usr/bin/python3");
        for (const auto& p : c)
            if (std::system((p + " -c 'import numpy' >/dev/null 2>&1").c_str()) == 0) return p;
        return std::string();
    }();
    return found;
}
fs::path exporter() {
    std::vector<fs::path> c;
    if (const char* e = std::getenv("CTREC_SOURCE_DIR")) c.push_back(fs::path(e) / "tools" / "export_safetensors.py");
    c.push_back(fs::path(__FILE__).parent_path().parent_path() / "tools" / "export_safetensors.py");
    for (fs::path d = fs::current_path(); !d.empty(); d = d.parent_path()) {
        c.push_back(d / "tools" / "export_safetensors.py");
        if (d == d.parent_path()) break;
    }
    for (const auto& p : c)
        if (fs::exists(p)) return fs::absolute(p);
    return {};
}

// The exporter test's parameter values, also computed by the script below.
double export_value(std::string_view name, std::size_t i) {
    return static_cast<double>(static_cast<long>((i * 7 + name.size() * 3) % 17) - 8) / 10.0;
}

const char* const export_script = R"PY(
import os, subprocess, sys
import numpy as np
tool, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.dirname(tool))
import export_safetensors as ex

shapes = {"mlp/dense_0/kernel": (3, 4), "mlp/dense_0/trainable_kernel_norm": (4,), "mlp/dense_0/bias": (4,),
          "mlp/dense_1/kernel": (4, 2), "mlp/dense_1/trainable_kernel_norm": (2,), "mlp/dense_1/bias": (2,)}
def vals(name, shape):
    n = int(np.prod(shape))
    return (((np.arange(n) * 7 + len(name) * 3) % 17 - 8) / 10.0).reshape(shape)
arrays = {k: vals(k, s).astype(np.float32) for k, s in shapes.items()}
arrays["mlp/dense_0/kernel"] = vals("mlp/dense_0/kernel", (3, 4)).astype(np.float16)
arrays["mlp/dense_1/bias"] = vals("mlp/dense_1/bias", (2,))  # float64

def dense(x, k, g, b, relu):
    k = k.astype(np.float64)
    w = k / np.sqrt(np.maximum((k * k).sum(axis=0), 1e-6)) * g
    z = x @ w + b
    return np.maximum(z, 0) if relu else z
x = ((np.arange(15) % 11 - 5) / 4.0).reshape(5, 3).astype(np.float32)
a = {k: v.astype(np.float64) for k, v in arrays.items()}
h = dense(x.astype(np.float64), a["mlp/dense_0/kernel"], a["mlp/dense_0/trainable_kernel_norm"], a["mlp/dense_0/bias"], True)
y = dense(h, a["mlp/dense_1/kernel"], a["mlp/dense_1/trainable_kernel_norm"], a["mlp/dense_1/bias"], False)

ex.export(os.path.join(out, "api.safetensors"), arrays, metadata={"producer": "api"},
          verify_inputs={"x": x}, verify_outputs={0: y}, tolerance=1e-5)
np.savez(os.path.join(out, "w.npz"), **arrays)
np.savez(os.path.join(out, "v.npz"), **{"input/x": x, "output/0": y})
run = lambda *a: subprocess.run([sys.executable, tool, *a], check=True)
run(os.path.join(out, "w.npz"), os.path.join(out, "cli.safetensors"), "--verify", os.path.join(out, "v.npz"),
    "--metadata", "producer=cli", "--tolerance", "1e-5")
run(os.path.join(out, "w.npz"), os.path.join(out, "bf16.safetensors"), "--dtype", "bf16")
# a PyTorch-style layout: the kernel stored transposed under another name, fixed by the CLI
torch_like = dict(arrays)
torch_like["fc0.weight"] = torch_like.pop("mlp/dense_0/kernel").T.copy()
np.savez(os.path.join(out, "t.npz"), **torch_like)
run(os.path.join(out, "t.npz"), os.path.join(out, "renamed.safetensors"), "--rename", "fc0.weight=mlp/dense_0/kernel",
    "--transpose", "mlp/dense_0/kernel", "--verify", os.path.join(out, "v.npz"))
ints = dict(arrays)
ints["mlp/dense_1/bias"] = np.array([1, 2], dtype=np.int32)
ex.export(os.path.join(out, "int.safetensors"), ints)
)PY";
} // namespace

TEST_CASE("a file written by tools/export_safetensors.py loads" * doctest::skip(numpy_python().empty())) {
    const fs::path tool = exporter();
    REQUIRE_MESSAGE(!tool.empty(), "tools/export_safetensors.py not found (set CTREC_SOURCE_DIR)");
    temp_dir d;
    {
        std::ofstream(d.path / "make.py") << export_script;
    }
    const std::string cmd = numpy_python() + " '" + (d.path / "make.py").string() + "' '" + tool.string() + "' '" + d.path.string() + "'";
    REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);

    auto expect_values = [](const F::parameters& p, bool bf16) {
        for (std::size_t i = 0; i < F::n_params; ++i) {
            const std::string_view n = F::parameters::names[i];
            for (std::size_t e = 0; e < p.get(i).size(); ++e) {
                double want = export_value(n, e);
                if (n == K0) want = ctrec::half::f16_to_double(ctrec::half::f16_from_double(want));
                else if (n != B1) want = static_cast<float>(want);
                if (bf16) want = ctrec::half::bf16_to_float(ctrec::half::bf16_from_double(static_cast<float>(want)));
                CHECK_MESSAGE(p.get(i)[e] == static_cast<float>(want), n << "[" << e << "]");
            }
        }
    };
    for (const char* name : {"api.safetensors", "cli.safetensors", "renamed.safetensors"}) {
        CAPTURE(name);
        const auto f = st::file::read(d.path / name);
        CHECK(f.find(K0)->type == dtype::F16);
        CHECK(f.find(B1)->type == dtype::F64);
        loaded m;
        // the numpy forward pass in the file agrees with ctrec's within 1e-5
        st::load_parameters<F>(f, m.p, {.verify = st::verification::required});
        expect_values(m.p, false);
    }
    CHECK(st::file::read(d.path / "api.safetensors").metadata().at("producer") == "api");
    CHECK(st::file::read(d.path / "cli.safetensors").metadata().at("producer") == "cli");
    loaded b;
    const auto bf = st::file::read(d.path / "bf16.safetensors");
    CHECK(bf.find(G0)->type == dtype::BF16);
    st::load_parameters<F>(bf, b.p);
    expect_values(b.p, true);
    std::ifstream in(d.path / "int.safetensors", std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    expect_rejected(to_bytes(bytes), {"tensor 'mlp/dense_1/bias' has dtype I32"});
}

// ---------------------------------------------------------------- found by tests/fuzz

TEST_CASE("an empty tensor reads as no values, also in the destination's own dtype (no memcpy to null)") {
    // fuzz regression tests/fuzz/regressions/safetensors/empty_f64_tensor_memcpy_to_null: the same-dtype
    // path passed an empty vector's data() (null) to memcpy, undefined behaviour under UBSan
    const auto f = st::file::from_bytes(make_file(
        R"({"d":{"dtype":"F64","shape":[0,3],"data_offsets":[0,0]},"s":{"dtype":"F32","shape":[2,0],"data_offsets":[0,0]}})", {}));
    CHECK(f.values<double>("d").empty());
    CHECK(f.values<float>("s").empty());
    CHECK(f.values<float>("d").empty());
    CHECK(f.values<double>("s").empty());
    f.convert(*f.find("d"), std::span<double>(), true);
    f.convert(*f.find("s"), std::span<float>(), true);
}

TEST_CASE("verification vectors: an output index must be canonical decimal (\"00\" is not output 0)") {
    // "__verify__/output/00" passed the name check, was never compared, and its values were ignored
    F::parameters p;
    fill<F>(p, 0.5);
    st::writer w;
    st::add_parameters<F>(w, p);
    const auto xs = verify_inputs();
    st::add_verification<F>(w, p, VB, {{"x", xs}});
    const std::vector<float> wrong(VB * 2, 1e6f);
    w.add("__verify__/output/00", std::span<const float>(wrong), {VB, 2});
    expect_rejected(w.bytes(), {"verification tensor '__verify__/output/00' names no output of the model"});
    expect_rejected(edit(verified_file(p, false), "\"__verify__/output/0\"", "\"__verify__/output/00\""),
                    {"verification tensor '__verify__/output/00' names no output of the model"});
}
