// libFuzzer target: the strict safetensors reader (ctrec/io/safetensors.hpp) on arbitrary bytes,
// then loading the file into a small program (an MLP 3 -> 4 -> 2, float and double, two option
// sets; the file's verification vectors run the model). Only ctrec::error may come out of the
// library; another exception, a sanitizer report, a hang or a failed FUZZ_CHECK is a finding.
// Built with libFuzzer by tests/fuzz/run_fuzz.sh and with g++ by tests/fuzz/replay.cpp.
//
// Checked on every file the reader accepts: the tensors tile the data section exactly, their
// bytes are the input's, byte size = product(shape) x dtype size; a file of floating tensors
// written again with the library's writer reads back to the same tensors and metadata, and
// writing that gives the same bytes. Loading is all or nothing, and what it loads is what
// file::values reads.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ctrec/core.hpp"
#include "ctrec/io/safetensors.hpp"
#include "ctrec/layers/mlp.hpp"

#define FUZZ_CHECK(c) ((c) ? void(0) : fuzz_fail(#c, __LINE__))

namespace {

namespace st = ctrec::safetensors;

[[noreturn]] void fuzz_fail(const char* what, int line) {
    std::fprintf(stderr, "fuzz_safetensors.cpp:%d: invariant failed: %s\n", line, what);
    std::abort();
}

// The model of tests/test_safetensors.cpp: parameters mlp/dense_{0,1}/{kernel, trainable_kernel_norm, bias}.
constexpr auto x = ctrec::input<"x", 3>;
constexpr ctrec::layers::mlp_config<2> cfg{.output_dims = {4, 2}};
constexpr auto y = ctrec::layers::mlp<"mlp", cfg, ctrec::layers::mode::predict>(x).out();
using F = ctrec::program<float, y>;
using D = ctrec::program<double, y>;

std::uint64_t read_le64(const std::uint8_t* p) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

// Same value, NaNs equal to each other (a NaN's payload may change through double).
bool same_value(double a, double b) { return a == b ? std::signbit(a) == std::signbit(b) : std::isnan(a) && std::isnan(b); }

void check_same_tensors(const st::file& a, const st::file& b) {
    FUZZ_CHECK(a.tensors().size() == b.tensors().size());
    FUZZ_CHECK(a.metadata() == b.metadata());
    for (std::size_t i = 0; i < a.tensors().size(); ++i) {
        const st::tensor_info& s = a.tensors()[i];
        const st::tensor_info& t = b.tensors()[i];
        FUZZ_CHECK(s.name == t.name && s.type == t.type && s.shape == t.shape && s.elements == t.elements);
        for (std::size_t k = 0; k < s.elements; ++k) FUZZ_CHECK(same_value(a.value(s, k), b.value(t, k)));
    }
}

std::vector<std::byte> write_again(const st::file& f) {
    st::writer w;
    for (const st::tensor_info& t : f.tensors()) {
        const std::vector<double> v = f.values<double>(t.name);
        w.add(t.name, std::span<const double>(v), t.shape, t.type);
    }
    for (const auto& [k, v] : f.metadata()) w.metadata(k, v);
    return w.bytes();
}

void check_file(const st::file& f, const std::uint8_t* data, std::size_t size) {
    const std::uint64_t n = read_le64(data);
    FUZZ_CHECK(n <= size - 8);
    const std::uint8_t* buffer = data + 8 + n;
    const std::size_t buffer_size = size - 8 - static_cast<std::size_t>(n);
    std::vector<const st::tensor_info*> order;
    bool writable = true;
    for (const st::tensor_info& t : f.tensors()) {
        FUZZ_CHECK(f.find(t.name) == &t);
        FUZZ_CHECK(st::detail::valid_utf8(t.name));
        std::size_t elements = 1;
        for (std::size_t d : t.shape) FUZZ_CHECK(!__builtin_mul_overflow(elements, d, &elements));
        FUZZ_CHECK(elements == t.elements);
        FUZZ_CHECK(t.begin <= t.end && t.end <= buffer_size);
        FUZZ_CHECK(t.end - t.begin == elements * st::size_of(t.type));
        const std::span<const std::byte> b = f.bytes(t);
        FUZZ_CHECK(b.size() == t.end - t.begin);
        FUZZ_CHECK(b.empty() || std::memcmp(b.data(), buffer + t.begin, b.size()) == 0);
        order.push_back(&t);
        writable = writable && st::is_float(t.type) && !t.name.empty();
    }
    for (const auto& [k, v] : f.metadata()) FUZZ_CHECK(st::detail::valid_utf8(k) && st::detail::valid_utf8(v));
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
    std::size_t at = 0;
    for (const st::tensor_info* t : order) {
        FUZZ_CHECK(t->begin == at);
        at = t->end;
    }
    FUZZ_CHECK(at == buffer_size);

    if (!writable) return;  // the writer stores named floating tensors only
    const std::vector<std::byte> once = write_again(f);
    const st::file g = st::file::from_bytes(once);
    check_same_tensors(f, g);
    FUZZ_CHECK(write_again(g) == once);
}

template <class P>
std::vector<typename P::element_type> snapshot(const typename P::parameters& p) {
    return {p.data(), p.data() + P::parameters::offsets[P::n_params]};
}

// load_parameters changes nothing when it throws; what it loads (the parameters and an optional
// extra tensor, as optimizer state is loaded) is what file::values reads.
template <class P>
void check_load(const st::file& f, const st::load_options& o) {
    using T = typename P::element_type;
    typename P::parameters p;
    for (std::size_t i = 0; i < P::n_params; ++i) {
        auto v = p.get(i);
        for (std::size_t e = 0; e < v.size(); ++e) v[e] = static_cast<T>(0.25 + 0.125 * double(i) - 0.01 * double(e));
    }
    std::vector<T> moment(12, T(0.5));
    const st::named_tensor<T> extra[] = {{"__optimizer__/mlp/dense_0/kernel/m", {3, 4}, std::span<T>(moment), false}};
    const auto before = snapshot<P>(p);
    try {
        st::load_parameters<P>(f, p, o, extra);
    } catch (const ctrec::error&) {
        const auto after = snapshot<P>(p);
        FUZZ_CHECK(std::memcmp(before.data(), after.data(), before.size() * sizeof(T)) == 0);
        FUZZ_CHECK(std::all_of(moment.begin(), moment.end(), [](T v) { return v == T(0.5); }));
        return;
    }
    FUZZ_CHECK(p.prepared());
    auto same_bits = [](const std::vector<T>& a, std::span<const T> b) {
        return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
    };
    for (std::size_t i = 0; i < P::n_params; ++i) {
        const auto got = std::as_const(p).get(i);
        FUZZ_CHECK(same_bits(f.values<T>(P::parameters::names[i]), got));
        if (o.reject_non_finite)
            for (T v : got) FUZZ_CHECK(std::isfinite(v));
    }
    if (f.find(extra[0].name)) FUZZ_CHECK(same_bits(f.values<T>(extra[0].name), moment));
    else FUZZ_CHECK(std::all_of(moment.begin(), moment.end(), [](T v) { return v == T(0.5); }));
}

void check_bytes(const std::uint8_t* data, std::size_t size) {
    std::vector<std::byte> bytes(size);
    if (size) std::memcpy(bytes.data(), data, size);
    std::optional<st::file> f;
    try {
        f.emplace(st::file::from_bytes(std::move(bytes)));
    } catch (const ctrec::error&) {
        return;
    }
    try {  // writing an accepted file again and reading it back must not fail
        check_file(*f, data, size);
    } catch (const ctrec::error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        fuzz_fail("an accepted file does not survive writing and reading again", __LINE__);
    }
    check_load<F>(*f, {});
    check_load<D>(*f, {.allow_extra = true, .reject_non_finite = false, .verify = st::verification::required});
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    check_bytes(data, size);
    // Mutations that insert or delete header bytes leave the length field stale and the file
    // rejected before its JSON is read; the same bytes with the header ending at the last '}'
    // reach the JSON and offset checks.
    if (size < 8) return 0;
    std::size_t end = size;
    while (end > 8 && data[end - 1] != '}') --end;
    if (end == 8 || read_le64(data) == end - 8) return 0;
    std::vector<std::uint8_t> fixed(data, data + size);
    const std::uint64_t n = end - 8;
    std::memcpy(fixed.data(), &n, 8);
    check_bytes(fixed.data(), fixed.size());
    return 0;
}
