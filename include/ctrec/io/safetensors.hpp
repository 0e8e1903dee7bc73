#pragma once
// Weight files in the safetensors format: a program's whole parameter bundle by the layers'
// variable names, optional extra tensors (optimizer state) and verification vectors.
//
//   using Score = ctrec::program<float, y>;
//   Score::parameters p;
//   ctrec::safetensors::load_parameters<Score>("model.safetensors", p);     // checked, all or nothing
//   ctrec::safetensors::save_parameters<Score>("model.safetensors", p);     // temporary + rename
//
//   safetensors::writer w;                                  // the general form of a save
//   safetensors::add_parameters<Score>(w, p);
//   safetensors::add_verification<Score>(w, p, 8, {{"x", xs}});   // runs Score on xs, stores both
//   w.add("__optimizer__/mlp/dense_0/kernel/m", m, {3, 4});
//   w.metadata("step", "1200").save("model.safetensors");
//
// Format (https://github.com/huggingface/safetensors): an unsigned 64-bit little-endian header
// length N, N bytes of UTF-8 JSON {"<name>": {"dtype": "F32", "shape": [3, 4], "data_offsets":
// [begin, end]}, ..., "__metadata__": {"<key>": "<string>"}}, then the data buffer; offsets are
// bytes into the buffer, row-major, little-endian. Reading follows the reference implementation's
// rules and is strict: header length at most 100,000,000 bytes and within the file, JSON that is
// well formed (own parser: duplicate keys are errors, not "last one wins"; strings valid UTF-8),
// known dtypes, entries with exactly dtype, shape and data_offsets, begin <= end <= buffer size,
// end - begin = dtype size x elements, and tensors that tile the buffer exactly (no overlap, no
// hole, no trailing byte: the format forbids holes so that a file has one reading). Every error
// is a ctrec::error naming the file (or "<memory>"), the tensor and what was expected.
//
// Loading into a program (load_parameters<P>): every parameter of P must be in the file with its
// static shape (P::tab's dims, compared axis by axis) and a floating dtype; F32, F64, F16 and BF16
// convert to P's element type (F16/BF16 exactly, F64 -> float rounds to nearest); any other dtype
// is rejected by name. Non-finite values (also an F64 overflowing float) are rejected unless
// load_options::reject_non_finite is false. A tensor of the file that is not a parameter is an
// error unless load_options::allow_extra, except names starting with "__": those are sections
// (verification vectors "__verify__/...", optimizer state "__optimizer__/<param>/<slot>" by
// convention, anything a tool adds), read by their own functions. Everything is parsed and converted into a staging
// copy first and, when the file carries verification vectors, checked by running P on them; only
// then are the values copied into the parameters (which are left prepared). On any error the
// parameters are untouched.
//
// Verification vectors (add_verification / verify): tensors "__verify__/input/<input name>" (one
// per input of P, shape [batch, dims...], or dims for an unbatched shared_input) and
// "__verify__/output/<k>" (output k of P, same rule; any subset of the outputs, at least one),
// with the metadata "verify_batch" (decimal), optionally "verify_tolerance" (t: |got - want| <=
// t (1 + |want|) elementwise, default 1e-5) and "verify_seed" (io.seed, default 0). A mismatch
// names the output, the example and element, got and want.
//
// Saving (writer::save): the whole file is written to a temporary in the target's directory
// (".<name>.tmp.XXXXXX", mode 0644 or the replaced file's), fsync'ed and renamed over the target,
// then the directory is fsync'ed: a reader sees the old file or the new one, never a part, and a
// failed save removes its temporary. Values are stored as the program's type (F32/F64) unless a
// dtype is given; F16/BF16 round to nearest even, and a finite value beyond their range is an
// error rather than an infinity. Tensors are written in the order added, the header padded with
// spaces to a multiple of 8 bytes (as the reference writer does).
//
// Needs a little-endian host and POSIX (open, fsync, rename, mkstemp).
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctrec/core/dims.hpp"
#include "ctrec/core/error.hpp"
#include "ctrec/io/half.hpp"

namespace ctrec::safetensors {

static_assert(std::endian::native == std::endian::little, "ctrec: safetensors I/O assumes a little-endian host");

enum class dtype : std::uint8_t { BOOL, U8, I8, F8_E5M2, F8_E4M3, U16, I16, F16, BF16, U32, I32, F32, U64, I64, F64 };

namespace detail {
struct dtype_row {
    std::string_view name;
    std::size_t bytes;
};
inline constexpr dtype_row dtype_rows[] = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1},
                                           {"U16", 2},  {"I16", 2}, {"F16", 2},  {"BF16", 2},    {"U32", 4},
                                           {"I32", 4},  {"F32", 4}, {"U64", 8},  {"I64", 8},     {"F64", 8}};
} // namespace detail

constexpr std::string_view name_of(dtype t) { return detail::dtype_rows[static_cast<int>(t)].name; }
constexpr std::size_t size_of(dtype t) { return detail::dtype_rows[static_cast<int>(t)].bytes; }
// The dtypes ctrec converts to and from its element types.
constexpr bool is_float(dtype t) { return t == dtype::F16 || t == dtype::BF16 || t == dtype::F32 || t == dtype::F64; }
inline std::optional<dtype> parse_dtype(std::string_view s) {
    for (std::size_t i = 0; i < std::size(detail::dtype_rows); ++i)
        if (detail::dtype_rows[i].name == s) return static_cast<dtype>(i);
    return std::nullopt;
}
template <class T>
inline constexpr dtype dtype_of = std::is_same_v<T, double> ? dtype::F64 : dtype::F32;

using shape_t = std::vector<std::size_t>;

inline std::string shape_string(std::span<const std::size_t> s) {
    std::string r = "[";
    for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}
inline shape_t shape_of(const dims& d) { return shape_t(d.d, d.d + d.rank); }

struct tensor_info {
    std::string name;
    dtype type = dtype::F32;
    shape_t shape;
    std::size_t begin = 0, end = 0;  // bytes into the data buffer
    std::size_t elements = 1;
};

// A named tensor beside the parameters (optimizer state, ...): U = T to load into (required:
// a missing one is an error, else the span is left as it is), U = const T to save.
template <class U>
struct named_tensor {
    std::string name;
    shape_t shape;
    std::span<U> values;
    bool required = true;
};
// One input's values for add_verification (batch-major, as bound to io).
template <class T>
struct named_values {
    std::string name;
    std::span<const T> values;
};

namespace detail {

inline constexpr std::uint64_t max_header = 100'000'000;  // the reference implementation's limit

inline std::string quote(std::string_view s) { return "'" + std::string(s) + "'"; }

inline std::string printable(char c) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
    char b[8];
    std::snprintf(b, sizeof b, "0x%02x", u);
    return b;
}

inline std::string number(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.9g", v);
    return b;
}

// Length of the valid UTF-8 sequence at s[i] (1-4), or 0 when it is not one (overlong forms,
// surrogates and code points above U+10FFFF are invalid).
inline std::size_t utf8_length(std::string_view s, std::size_t i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) return 1;
    std::size_t len;
    std::uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (i + len > s.size()) return 0;
    for (std::size_t k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}
inline bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = utf8_length(s, i);
        if (!n) return false;
        i += n;
    }
    return true;
}

inline void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | cp >> 6);
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | cp >> 12);
        out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | cp >> 18);
        out += static_cast<char>(0x80 | (cp >> 12 & 0x3F));
        out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// A JSON string literal (UTF-8 kept as is, the rest escaped).
inline std::string json_string(std::string_view s) {
    std::string r = "\"";
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            r += '\\';
            r += c;
        } else if (u < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", u);
            r += b;
        } else {
            r += c;
        }
    }
    return r + "\"";
}

struct header {
    std::vector<tensor_info> tensors;
    std::map<std::string, std::string, std::less<>> metadata;
    std::map<std::string, std::size_t, std::less<>> index;  // name -> position in tensors
};

// A strict parser for the one JSON shape a header has (no general JSON values: the schema is
// checked while parsing, so errors say which tensor and key is wrong).
class header_parser {
public:
    header_parser(std::string_view s, const std::string& ctx) : s_(s), ctx_(ctx) {}

    header parse() {
        header h;
        bool has_meta = false;
        skip_ws();
        if (at_end() || s_[i_] != '{')
            malformed("the header must be a JSON object, found " + found());
        ++i_;
        members([&](std::string key) {
            if (key == "__metadata__") {
                if (has_meta) invalid("duplicate key \"__metadata__\"");
                has_meta = true;
                metadata(h);
            } else {
                if (h.index.count(key)) invalid("duplicate tensor name " + quote(key));
                h.index.emplace(key, h.tensors.size());
                h.tensors.push_back(tensor(std::move(key)));
            }
        });
        skip_ws();
        if (!at_end()) malformed("unexpected " + found() + " after the header object");
        return h;
    }

private:
    std::string_view s_;
    std::size_t i_ = 0;
    const std::string& ctx_;

    [[noreturn]] void malformed(const std::string& what) const {
        throw error(ctx_ + "malformed JSON header at byte " + std::to_string(i_) + " of " + std::to_string(s_.size()) +
                    ": " + what);
    }
    [[noreturn]] void invalid(const std::string& what) const { throw error(ctx_ + what); }

    bool at_end() const { return i_ >= s_.size(); }
    void skip_ws() {
        while (!at_end() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }
    std::string found() const { return at_end() ? std::string("the end of the header") : printable(s_[i_]); }
    bool literal(std::string_view w) const { return s_.substr(i_, w.size()) == w; }
    // What kind of JSON value starts here, for schema errors; malformed if none does.
    std::string kind() {
        skip_ws();
        if (at_end()) malformed("expected a value, found the end of the header");
        switch (s_[i_]) {
        case '"': return "a string";
        case '{': return "an object";
        case '[': return "an array";
        case '-':
        case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
            return "a number";
        default:
            if (literal("true") || literal("false")) return "a boolean";
            if (literal("null")) return "null";
            malformed("expected a value, found " + found());
        }
    }

    // "{" already consumed: key/value members until "}".
    template <class F>
    void members(F&& on_member) {
        skip_ws();
        if (!at_end() && s_[i_] == '}') {
            ++i_;
            return;
        }
        for (;;) {
            skip_ws();
            if (at_end() || s_[i_] != '"') malformed("expected a key (a string), found " + found());
            std::string key = string();
            skip_ws();
            if (at_end() || s_[i_] != ':') malformed("expected ':' after the key " + quote(key) + ", found " + found());
            ++i_;
            const std::string k = key;
            on_member(std::move(key));
            skip_ws();
            if (!at_end() && s_[i_] == ',') {
                ++i_;
                continue;
            }
            if (!at_end() && s_[i_] == '}') {
                ++i_;
                return;
            }
            malformed("expected ',' or '}' after the value of " + quote(k) + ", found " + found());
        }
    }

    unsigned hex4() {
        unsigned v = 0;
        for (int k = 0; k < 4; ++k, ++i_) {
            if (at_end()) malformed("unterminated \\u escape");
            const char c = s_[i_];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
            else malformed("invalid hex digit " + printable(c) + " in a \\u escape");
        }
        return v;
    }

    std::string string() {
        ++i_;  // the opening quote
        std::string out;
        for (;;) {
            if (at_end()) malformed("unterminated string");
            const char c = s_[i_];
            const auto u = static_cast<unsigned char>(c);
            if (c == '"') {
                ++i_;
                return out;
            }
            if (u < 0x20) malformed("unescaped control character " + printable(c) + " in a string");
            if (c == '\\') {
                ++i_;
                if (at_end()) malformed("unterminated string");
                const char e = s_[i_++];
                switch (e) {
                case '"': case '\\': case '/': out += e; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    std::uint32_t cp = hex4();
                    if (cp >= 0xDC00 && cp <= 0xDFFF) malformed("unpaired UTF-16 low surrogate in a \\u escape");
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (!literal("\\u")) malformed("UTF-16 high surrogate not followed by a low one");
                        i_ += 2;
                        const std::uint32_t lo = hex4();
                        if (lo < 0xDC00 || lo > 0xDFFF) malformed("UTF-16 high surrogate not followed by a low one");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: --i_; malformed("invalid escape \\" + std::string(1, e));
                }
                continue;
            }
            const std::size_t n = utf8_length(s_, i_);
            if (!n) malformed("invalid UTF-8 in a string");
            out.append(s_.substr(i_, n));
            i_ += n;
        }
    }

    // A JSON number that must be a non-negative integer (what: for the error).
    std::uint64_t integer(const std::string& what) {
        skip_ws();
        const std::size_t start = i_;
        auto digit = [&] { return !at_end() && s_[i_] >= '0' && s_[i_] <= '9'; };
        if (!at_end() && s_[i_] == '-') ++i_;
        if (!digit()) {
            if (i_ != start) malformed("expected a digit after '-'");
            invalid(what + " must be a non-negative integer, found " + kind());
        }
        if (s_[i_] == '0') ++i_;
        else
            while (digit()) ++i_;
        bool integral = s_[start] != '-';
        if (!at_end() && s_[i_] == '.') {
            ++i_;
            if (!digit()) malformed("expected a digit after '.'");
            while (digit()) ++i_;
            integral = false;
        }
        if (!at_end() && (s_[i_] == 'e' || s_[i_] == 'E')) {
            ++i_;
            if (!at_end() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
            if (!digit()) malformed("expected a digit in the exponent");
            while (digit()) ++i_;
            integral = false;
        }
        const std::string_view tok = s_.substr(start, i_ - start);
        if (!integral) invalid(what + " must be a non-negative integer, got " + std::string(tok));
        std::uint64_t v = 0;
        for (char c : tok) {
            const auto d = static_cast<std::uint64_t>(c - '0');
            if (v > (UINT64_MAX - d) / 10) invalid(what + " " + std::string(tok) + " does not fit in 64 bits");
            v = v * 10 + d;
        }
        return v;
    }

    shape_t integers(const std::string& what) {
        if (kind() != "an array") invalid(what + " must be an array of non-negative integers, found " + kind());
        ++i_;
        shape_t r;
        skip_ws();
        if (!at_end() && s_[i_] == ']') {
            ++i_;
            return r;
        }
        for (;;) {
            r.push_back(static_cast<std::size_t>(integer(what)));
            skip_ws();
            if (!at_end() && s_[i_] == ',') {
                ++i_;
                continue;
            }
            if (!at_end() && s_[i_] == ']') {
                ++i_;
                return r;
            }
            malformed("expected ',' or ']' in " + what + ", found " + found());
        }
    }

    tensor_info tensor(std::string name) {
        const std::string t = "tensor " + quote(name);
        if (kind() != "an object")
            invalid(t + ": the entry must be an object {dtype, shape, data_offsets}, found " + kind());
        ++i_;
        tensor_info r;
        bool has_dtype = false, has_shape = false, has_offsets = false;
        members([&](std::string key) {
            auto once = [&](bool& seen) {
                if (seen) invalid(t + ": duplicate key \"" + key + "\"");
                seen = true;
            };
            if (key == "dtype") {
                once(has_dtype);
                if (kind() != "a string") invalid(t + ": dtype must be a string, found " + kind());
                const std::string d = string();
                const auto dt = parse_dtype(d);
                if (!dt) invalid(t + ": unknown dtype \"" + d + "\"");
                r.type = *dt;
            } else if (key == "shape") {
                once(has_shape);
                r.shape = integers(t + ": shape");
            } else if (key == "data_offsets") {
                once(has_offsets);
                const shape_t o = integers(t + ": data_offsets");
                if (o.size() != 2)
                    invalid(t + ": data_offsets must be [begin, end], got " + std::to_string(o.size()) + " integers");
                r.begin = o[0], r.end = o[1];
            } else {
                invalid(t + ": unknown key \"" + key + "\" (an entry has dtype, shape and data_offsets)");
            }
        });
        if (!has_dtype) invalid(t + ": the entry has no \"dtype\"");
        if (!has_shape) invalid(t + ": the entry has no \"shape\"");
        if (!has_offsets) invalid(t + ": the entry has no \"data_offsets\"");
        r.name = std::move(name);
        return r;
    }

    void metadata(header& h) {
        if (kind() != "an object") invalid("\"__metadata__\" must be an object of strings, found " + kind());
        ++i_;
        members([&](std::string key) {
            if (kind() != "a string") invalid("metadata " + quote(key) + " must be a string, found " + kind());
            std::string v = string();
            if (h.metadata.count(key)) invalid("duplicate metadata key " + quote(key));
            h.metadata.emplace(std::move(key), std::move(v));
        });
    }
};

inline std::uint64_t read_le64(const std::byte* p) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

inline bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Strict decimal parsing of metadata values.
inline std::optional<std::uint64_t> parse_uint(std::string_view s) {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return v;
}
inline std::optional<double> parse_double(const std::string& s) {
    if (s.empty() || std::isspace(static_cast<unsigned char>(s[0]))) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size() || errno == ERANGE || !std::isfinite(v)) return std::nullopt;
    return v;
}

inline std::string errno_text() { return std::strerror(errno); }

} // namespace detail

// ---- reading ----------------------------------------------------------------------------------

// A whole safetensors file in memory, parsed and validated.
class file {
public:
    static file read(const std::filesystem::path& path) {
        const std::string ctx = "ctrec: safetensors '" + path.string() + "': ";
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw error(ctx + "cannot open: " + detail::errno_text());
        struct closer {
            int fd;
            ~closer() { ::close(fd); }
        } guard{fd};
        struct stat st {};
        if (::fstat(fd, &st) != 0) throw error(ctx + "cannot stat: " + detail::errno_text());
        if (!S_ISREG(st.st_mode)) throw error(ctx + "not a regular file");
        std::vector<std::byte> bytes(static_cast<std::size_t>(st.st_size));
        std::size_t got = 0;
        while (got < bytes.size()) {
            const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw error(ctx + "cannot read: " + detail::errno_text());
            if (n == 0) throw error(ctx + "the file shrank while being read");
            got += static_cast<std::size_t>(n);
        }
        return from_bytes(std::move(bytes), "'" + path.string() + "'");
    }

    // source: how errors name the bytes.
    static file from_bytes(std::vector<std::byte> bytes, std::string source = "<memory>") {
        file f;
        f.ctx_ = "ctrec: safetensors " + source + ": ";
        f.bytes_ = std::move(bytes);
        const std::size_t size = f.bytes_.size();
        if (size < 8)
            f.fail("the file is " + std::to_string(size) + " bytes long, too short for the 8-byte header length (truncated?)");
        const std::uint64_t n = detail::read_le64(f.bytes_.data());
        if (n > detail::max_header)
            f.fail("header length " + std::to_string(n) + " is above the limit of " + std::to_string(detail::max_header) +
                   " bytes (not a safetensors file?)");
        if (n > size - 8)
            f.fail("header length " + std::to_string(n) + " exceeds the " + std::to_string(size - 8) +
                   " bytes that follow it (truncated file?)");
        const std::string_view text(reinterpret_cast<const char*>(f.bytes_.data() + 8), static_cast<std::size_t>(n));
        detail::header h = detail::header_parser(text, f.ctx_).parse();
        f.tensors_ = std::move(h.tensors);
        f.metadata_ = std::move(h.metadata);
        f.index_ = std::move(h.index);
        f.data_ = 8 + static_cast<std::size_t>(n);
        f.validate_offsets(size - f.data_);
        return f;
    }

    const std::string& context() const { return ctx_; }
    const std::vector<tensor_info>& tensors() const { return tensors_; }  // in header order
    const std::map<std::string, std::string, std::less<>>& metadata() const { return metadata_; }
    const tensor_info* find(std::string_view name) const {
        const auto it = index_.find(name);
        return it == index_.end() ? nullptr : &tensors_[it->second];
    }
    std::span<const std::byte> bytes(const tensor_info& t) const { return {bytes_.data() + data_ + t.begin, t.end - t.begin}; }

    // Throws unless t has exactly this shape (want: what the shape is, for the message).
    void check_shape(const tensor_info& t, std::span<const std::size_t> shape, std::string_view want) const {
        if (!std::equal(t.shape.begin(), t.shape.end(), shape.begin(), shape.end()))
            fail("tensor " + detail::quote(t.name) + " has shape " + shape_string(t.shape) + ", " + std::string(want) + " " +
                 shape_string(shape));
    }
    void check_float(const tensor_info& t) const {
        if (!is_float(t.type))
            fail("tensor " + detail::quote(t.name) + " has dtype " + std::string(name_of(t.type)) +
                 "; ctrec loads F32, F64, F16 or BF16");
    }

    // Element k of a floating tensor, exactly (every F16/BF16/F32 value is a double).
    double value(const tensor_info& t, std::size_t k) const {
        const std::byte* p = bytes_.data() + data_ + t.begin + k * size_of(t.type);
        switch (t.type) {
        case dtype::F32: return load<float>(p);
        case dtype::F64: return load<double>(p);
        case dtype::F16: return half::f16_to_double(load<std::uint16_t>(p));
        case dtype::BF16: return half::bf16_to_double(load<std::uint16_t>(p));
        default: check_float(t); return 0;
        }
    }

    // Converts a floating tensor into out (out.size() == t.elements).
    template <class T>
    void convert(const tensor_info& t, std::span<T> out, bool reject_non_finite) const {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
        check_float(t);
        if (out.size() != t.elements)
            fail("tensor " + detail::quote(t.name) + " holds " + std::to_string(t.elements) + " values, the destination " +
                 std::to_string(out.size()));
        const std::byte* p = bytes_.data() + data_ + t.begin;
        if (t.type == dtype_of<T>) {
            // an empty tensor's destination may be null, and memcpy(nullptr, p, 0) is undefined
            if (!out.empty()) std::memcpy(out.data(), p, t.end - t.begin);
        } else {
            switch (t.type) {
            case dtype::F32:
                for (std::size_t k = 0; k < out.size(); ++k) out[k] = static_cast<T>(load<float>(p + 4 * k));
                break;
            case dtype::F64:
                for (std::size_t k = 0; k < out.size(); ++k) out[k] = static_cast<T>(load<double>(p + 8 * k));
                break;
            case dtype::F16:
                for (std::size_t k = 0; k < out.size(); ++k)
                    out[k] = static_cast<T>(half::f16_to_double(load<std::uint16_t>(p + 2 * k)));
                break;
            default:  // BF16
                for (std::size_t k = 0; k < out.size(); ++k) out[k] = static_cast<T>(half::bf16_to_float(load<std::uint16_t>(p + 2 * k)));
                break;
            }
        }
        if (!reject_non_finite) return;
        for (std::size_t k = 0; k < out.size(); ++k) {
            if (std::isfinite(out[k])) continue;
            const double v = value(t, k);
            if (std::isfinite(v))
                fail("tensor " + detail::quote(t.name) + " holds " + detail::number(v) + " (" + std::string(name_of(t.type)) +
                     ") at index " + std::to_string(k) + ", beyond the range of " +
                     (std::is_same_v<T, float> ? "float" : "double") + " (load_options::reject_non_finite)");
            fail("tensor " + detail::quote(t.name) + " holds a non-finite value (" + detail::number(v) + ") at index " +
                 std::to_string(k) + " (load_options::reject_non_finite)");
        }
    }
    // A tensor's values by name, converted to T (throws when absent).
    template <class T>
    std::vector<T> values(std::string_view name, bool reject_non_finite = false) const {
        const tensor_info* t = find(name);
        if (!t) fail("the file has no tensor " + detail::quote(name));
        std::vector<T> v(t->elements);
        convert(*t, std::span<T>(v), reject_non_finite);
        return v;
    }

    [[noreturn]] void fail(const std::string& what) const { throw error(ctx_ + what); }

private:
    std::string ctx_;
    std::vector<std::byte> bytes_;
    std::size_t data_ = 0;  // where the data buffer starts
    std::vector<tensor_info> tensors_;
    std::map<std::string, std::string, std::less<>> metadata_;
    std::map<std::string, std::size_t, std::less<>> index_;

    template <class U>
    static U load(const std::byte* p) {
        U v;
        std::memcpy(&v, p, sizeof v);
        return v;
    }

    void validate_offsets(std::size_t buffer) {
        for (tensor_info& t : tensors_) {
            const std::string name = "tensor " + detail::quote(t.name);
            const std::string off = "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "]";
            std::size_t n = 1;
            for (std::size_t d : t.shape) {
                if (d && n > SIZE_MAX / d) fail(name + ": shape " + shape_string(t.shape) + " has too many elements");
                n *= d;
            }
            const std::size_t w = size_of(t.type);
            if (n > SIZE_MAX / w) fail(name + ": shape " + shape_string(t.shape) + " has too many elements");
            t.elements = n;
            if (t.begin > t.end) fail(name + ": " + off + " begin after end");
            if (t.end > buffer)
                fail(name + ": " + off + " end beyond the data buffer's " + std::to_string(buffer) + " bytes (truncated file?)");
            if (t.end - t.begin != n * w)
                fail(name + ": " + off + " span " + std::to_string(t.end - t.begin) + " bytes, dtype " +
                     std::string(name_of(t.type)) + " and shape " + shape_string(t.shape) + " need " + std::to_string(n * w));
        }
        std::vector<const tensor_info*> order;
        for (const tensor_info& t : tensors_) order.push_back(&t);
        std::sort(order.begin(), order.end(), [](const tensor_info* a, const tensor_info* b) {
            return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
        });
        std::size_t at = 0;
        const tensor_info* prev = nullptr;
        for (const tensor_info* t : order) {
            if (t->begin < at)
                fail("tensors " + detail::quote(prev->name) + " [" + std::to_string(prev->begin) + ", " + std::to_string(prev->end) +
                     ") and " + detail::quote(t->name) + " [" + std::to_string(t->begin) + ", " + std::to_string(t->end) +
                     ") overlap in the data buffer");
            if (t->begin > at)
                fail("bytes [" + std::to_string(at) + ", " + std::to_string(t->begin) +
                     ") of the data buffer belong to no tensor (the format allows no holes)");
            at = t->end;
            prev = t;
        }
        if (at != buffer)
            fail("the data buffer has " + std::to_string(buffer) + " bytes but its tensors end at byte " + std::to_string(at) +
                 " (trailing bytes)");
    }
};

// ---- writing ----------------------------------------------------------------------------------

// Rounds values as storing them in d and reading them back would.
template <class T>
void round_through(dtype d, std::span<T> v) {
    for (T& x : v) {
        if (d == dtype::F16) x = static_cast<T>(half::f16_to_double(half::f16_from_double(x)));
        else if (d == dtype::BF16) x = static_cast<T>(half::bf16_to_double(half::bf16_from_double(x)));
        else if (d == dtype::F32) x = static_cast<T>(static_cast<float>(x));
    }
}

namespace detail {
// Writes the chunks to a temporary beside target, fsyncs it and renames it over target.
inline void write_atomically(const std::filesystem::path& target, std::span<const std::span<const std::byte>> chunks) {
    const std::string ctx = "ctrec: safetensors: cannot save '" + target.string() + "': ";
    const std::filesystem::path dir = target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path();
    std::string tmp = (dir / ("." + target.filename().string() + ".tmp.XXXXXX")).string();
    mode_t mode = 0644;
    struct stat st {};
    if (::stat(target.c_str(), &st) == 0 && S_ISREG(st.st_mode)) mode = st.st_mode & 07777;
    const int fd = ::mkstemp(tmp.data());
    if (fd < 0) throw error(ctx + "cannot create a temporary file in '" + dir.string() + "': " + errno_text());
    bool open = true;
    auto fail = [&](const std::string& what) {
        const std::string msg = ctx + what + ": " + errno_text();
        if (open) ::close(fd);
        ::unlink(tmp.c_str());
        throw error(msg);
    };
    if (::fchmod(fd, mode) != 0) fail("fchmod");
    for (std::span<const std::byte> c : chunks) {
        std::size_t done = 0;
        while (done < c.size()) {
            const ssize_t n = ::write(fd, c.data() + done, c.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) fail("writing '" + tmp + "'");
            done += static_cast<std::size_t>(n);
        }
    }
    if (::fsync(fd) != 0) fail("fsync");
    open = false;
    if (::close(fd) != 0) fail("closing '" + tmp + "'");
    if (::rename(tmp.c_str(), target.c_str()) != 0) fail("renaming the temporary '" + tmp + "' over it");
    // the rename itself reaches the disk with the directory (best effort: not every file system allows it)
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}
} // namespace detail

// Collects tensors (encoded when added: the values need not outlive the writer) and metadata.
class writer {
public:
    writer& add(std::string name, std::span<const float> values, shape_t shape, dtype stored = dtype::F32) {
        return add_impl(std::move(name), values, std::move(shape), stored);
    }
    writer& add(std::string name, std::span<const double> values, shape_t shape, dtype stored = dtype::F64) {
        return add_impl(std::move(name), values, std::move(shape), stored);
    }
    writer& metadata(std::string key, std::string value) {
        if (!detail::valid_utf8(key) || !detail::valid_utf8(value))
            throw error("ctrec: safetensors writer: metadata " + detail::quote(key) + " is not valid UTF-8");
        meta_[std::move(key)] = std::move(value);
        return *this;
    }
    bool has(std::string_view name) const { return index_.count(std::string(name)) != 0; }
    std::size_t size() const { return entries_.size(); }

    // The whole file.
    std::vector<std::byte> bytes() const {
        const std::string h = header();
        std::byte length[8];
        std::vector<std::byte> r;
        for (std::span<const std::byte> c : chunks(h, length)) r.insert(r.end(), c.begin(), c.end());
        return r;
    }
    // Atomically (see the header comment): on an error the target is as it was.
    void save(const std::filesystem::path& target) const {
        const std::string h = header();
        std::byte length[8];
        detail::write_atomically(target, chunks(h, length));
    }

private:
    struct entry {
        std::string name;
        dtype type;
        shape_t shape;
        std::vector<std::byte> data;
    };
    std::vector<entry> entries_;
    std::map<std::string, std::size_t> index_;
    std::map<std::string, std::string> meta_;

    template <class T>
    writer& add_impl(std::string name, std::span<const T> values, shape_t shape, dtype stored) {
        const std::string ctx = "ctrec: safetensors writer: tensor " + detail::quote(name) + ": ";
        if (name.empty() || name == "__metadata__") throw error(ctx + "reserved or empty name");
        if (!detail::valid_utf8(name)) throw error(ctx + "the name is not valid UTF-8");
        if (index_.count(name)) throw error(ctx + "added twice");
        if (!is_float(stored)) throw error(ctx + "ctrec writes F32, F64, F16 or BF16, not " + std::string(name_of(stored)));
        std::size_t n = 1;
        for (std::size_t d : shape) n *= d;
        if (n != values.size())
            throw error(ctx + "shape " + shape_string(shape) + " holds " + std::to_string(n) + " values, got " +
                        std::to_string(values.size()));
        entry e{name, stored, std::move(shape), std::vector<std::byte>(n * size_of(stored))};
        std::byte* p = e.data.data();
        for (std::size_t k = 0; k < n; ++k) {
            const double v = values[k];
            if (stored == dtype::F64) {
                std::memcpy(p + 8 * k, &v, 8);
            } else if (stored == dtype::F32) {
                const float f = static_cast<float>(v);
                if (std::isinf(f) && std::isfinite(v)) range_error(ctx, v, k, stored);
                std::memcpy(p + 4 * k, &f, 4);
            } else {
                const std::uint16_t h = stored == dtype::F16 ? half::f16_from_double(v) : half::bf16_from_double(v);
                if (std::isfinite(v) && (h & 0x7FFF) == (stored == dtype::F16 ? 0x7C00 : 0x7F80)) range_error(ctx, v, k, stored);
                std::memcpy(p + 2 * k, &h, 2);
            }
        }
        index_.emplace(name, entries_.size());
        entries_.push_back(std::move(e));
        return *this;
    }
    [[noreturn]] static void range_error(const std::string& ctx, double v, std::size_t k, dtype d) {
        throw error(ctx + "value " + detail::number(v) + " at index " + std::to_string(k) + " does not fit in " +
                    std::string(name_of(d)));
    }

    std::string header() const {
        std::string h = "{";
        if (!meta_.empty()) {
            h += "\"__metadata__\":{";
            bool first = true;
            for (const auto& [k, v] : meta_) {
                h += (first ? "" : ",") + detail::json_string(k) + ":" + detail::json_string(v);
                first = false;
            }
            h += "}";
        }
        std::size_t at = 0;
        for (const entry& e : entries_) {
            if (h.size() > 1) h += ",";
            h += detail::json_string(e.name) + ":{\"dtype\":\"" + std::string(name_of(e.type)) + "\",\"shape\":[";
            for (std::size_t i = 0; i < e.shape.size(); ++i) h += (i ? "," : "") + std::to_string(e.shape[i]);
            h += "],\"data_offsets\":[" + std::to_string(at) + "," + std::to_string(at + e.data.size()) + "]}";
            at += e.data.size();
        }
        h += "}";
        h.append((8 - h.size() % 8) % 8, ' ');
        return h;
    }
    // The file as spans into h, length (filled here) and the entries.
    std::vector<std::span<const std::byte>> chunks(const std::string& h, std::byte (&length)[8]) const {
        const std::uint64_t n = h.size();
        std::memcpy(length, &n, 8);
        std::vector<std::span<const std::byte>> c{{length, 8}, {reinterpret_cast<const std::byte*>(h.data()), h.size()}};
        for (const entry& e : entries_) c.emplace_back(e.data.data(), e.data.size());
        return c;
    }
};

// ---- programs ---------------------------------------------------------------------------------

// The static shape of parameter i of program P.
template <class P>
constexpr dims parameter_shape(std::size_t i) {
    return P::tab.nodes[P::param_ids[i]].shape;
}

enum class verification { if_present, required, skip };

struct load_options {
    bool allow_extra = false;        // ignore tensors that are no parameter of the program
    bool reject_non_finite = true;   // NaN / infinity (after conversion) in a parameter is an error
    verification verify = verification::if_present;
    std::optional<double> tolerance{};  // overrides the file's verify_tolerance
};

struct verify_options {
    std::optional<double> tolerance{};  // overrides the file's verify_tolerance (default 1e-5)
    bool required = false;            // a file without vectors is an error (else verify returns false)
};

inline constexpr std::string_view verify_prefix = "__verify__/";
inline constexpr std::string_view verify_input_prefix = "__verify__/input/";
inline constexpr std::string_view verify_output_prefix = "__verify__/output/";

namespace detail {
template <class P>
shape_t leaf_shape(std::size_t node, std::size_t batch) {
    const auto& r = P::tab.nodes[node];
    shape_t s;
    if (r.batched) s.push_back(batch);
    for (std::size_t i = 0; i < r.shape.rank; ++i) s.push_back(r.shape.d[i]);
    return s;
}
} // namespace detail

// Runs P with parameters p on the file's verification vectors; throws on a mismatch or a
// malformed set of vectors, returns false when the file has none (and o.required is false).
// p: P's parameters (prepared, when const).
template <class P, class Params>
bool verify(const file& f, Params& p, const verify_options& o = {}) {
    using T = typename P::element_type;
    using detail::quote;
    bool any = false;
    for (const tensor_info& t : f.tensors()) {
        if (!detail::starts_with(t.name, verify_prefix)) continue;
        any = true;
        const std::string_view n = t.name;
        if (detail::starts_with(n, verify_input_prefix)) {
            const std::string_view in = n.substr(verify_input_prefix.size());
            std::size_t k = 0;
            while (k < P::n_inputs && P::tab.name_of(P::input_ids[k]) != in) ++k;
            if (k == P::n_inputs) {
                std::string names;
                for (std::size_t j = 0; j < P::n_inputs; ++j) names += (j ? ", " : "") + quote(P::tab.name_of(P::input_ids[j]));
                f.fail("verification tensor " + quote(n) + " names no input of the model (its inputs: " + names + ")");
            }
        } else if (detail::starts_with(n, verify_output_prefix)) {
            const std::string_view index = n.substr(verify_output_prefix.size());
            const auto r = detail::parse_uint(index);
            // canonical decimal only: outputs are looked up as "<prefix>" + to_string(k), so
            // "__verify__/output/00" would pass here and then never be compared
            if (!r || *r >= P::n_outputs || std::to_string(*r) != index)
                f.fail("verification tensor " + quote(n) + " names no output of the model (it has outputs 0 to " +
                       std::to_string(P::n_outputs - 1) + ")");
        } else {
            f.fail("unknown verification tensor " + quote(n) + " (expected " + std::string(verify_input_prefix) +
                   "<input name> or " + std::string(verify_output_prefix) + "<output index>)");
        }
    }
    if (!any) {
        if (o.required) f.fail("the file carries no verification vectors (" + std::string(verify_prefix) + "...)");
        return false;
    }
    const auto& meta = f.metadata();
    const auto mb = meta.find("verify_batch");
    if (mb == meta.end()) f.fail("verification vectors need the metadata \"verify_batch\" (the number of examples)");
    const auto batch = detail::parse_uint(mb->second);
    if (!batch || *batch == 0) f.fail("metadata \"verify_batch\" must be a positive decimal integer, got \"" + mb->second + "\"");
    double tol = 1e-5;
    if (o.tolerance) {
        tol = *o.tolerance;
    } else if (const auto mt = meta.find("verify_tolerance"); mt != meta.end()) {
        const auto v = detail::parse_double(mt->second);
        if (!v || *v < 0) f.fail("metadata \"verify_tolerance\" must be a non-negative number, got \"" + mt->second + "\"");
        tol = *v;
    }
    std::uint64_t seed = 0;
    if (const auto ms = meta.find("verify_seed"); ms != meta.end()) {
        const auto v = detail::parse_uint(ms->second);
        if (!v) f.fail("metadata \"verify_seed\" must be a decimal integer, got \"" + ms->second + "\"");
        seed = *v;
    }
    const std::size_t B = static_cast<std::size_t>(*batch);

    typename P::io io;
    io.seed = seed;
    std::vector<std::vector<T>> in(P::n_inputs), got(P::n_outputs), want(P::n_outputs);
    for (std::size_t k = 0; k < P::n_inputs; ++k) {
        const std::string_view name = P::tab.name_of(P::input_ids[k]);
        const std::string tn = std::string(verify_input_prefix) + std::string(name);
        const tensor_info* t = f.find(tn);
        if (!t) f.fail("verification input for the model's input " + quote(name) + " is missing (tensor " + quote(tn) + ")");
        f.check_shape(*t, detail::leaf_shape<P>(P::input_ids[k], B), "the model's input (verify_batch " + std::to_string(B) + ") needs");
        in[k].resize(t->elements);
        f.convert(*t, std::span<T>(in[k]), false);
        io.in[k] = in[k].data();
    }
    bool any_output = false;
    for (std::size_t r = 0; r < P::n_outputs; ++r) {
        const shape_t s = detail::leaf_shape<P>(P::tab.roots[r], B);
        std::size_t n = 1;
        for (std::size_t d : s) n *= d;
        got[r].assign(n, T(0));
        io.out[r] = got[r].data();
        const tensor_info* t = f.find(std::string(verify_output_prefix) + std::to_string(r));
        if (!t) continue;
        f.check_shape(*t, s, "the model's output (verify_batch " + std::to_string(B) + ") has");
        want[r].resize(n);
        f.convert(*t, std::span<T>(want[r]), false);
        any_output = true;
    }
    if (!any_output) f.fail("the verification vectors hold no expected output (" + std::string(verify_output_prefix) + "<k>)");
    typename P::workspace ws;
    P::run(p, ws, B, io);

    for (std::size_t r = 0; r < P::n_outputs; ++r) {
        if (want[r].empty()) continue;
        std::size_t bad = 0, first = 0;
        double worst = 0;
        for (std::size_t e = 0; e < want[r].size(); ++e) {
            const double g = got[r][e], w = want[r][e];
            const bool same = std::fabs(g - w) <= tol * (1 + std::fabs(w)) || (std::isnan(g) && std::isnan(w)) || g == w;
            if (same) continue;
            if (!bad++) first = e;
            const double d = std::fabs(g - w);
            worst = std::isnan(d) || d > worst ? d : worst;
        }
        if (!bad) continue;
        const auto& root = P::tab.nodes[P::tab.roots[r]];
        const std::size_t per = root.shape.size();
        std::string where = root.batched ? "example " + std::to_string(first / per) + ", element " + std::to_string(first % per)
                                         : "element " + std::to_string(first);
        f.fail("verification failed: output " + std::to_string(r) + ", " + where + ": got " + detail::number(got[r][first]) +
               ", want " + detail::number(want[r][first]) + " (tolerance " + detail::number(tol) + " x (1 + |want|)); " +
               std::to_string(bad) + " of " + std::to_string(want[r].size()) + " values differ, the largest by " +
               detail::number(worst) +
               ". The weights do not reproduce the outputs stored with them: a wrong name mapping, a transposed "
               "kernel or another model version?");
    }
    return true;
}

// Loads every parameter of P from f (and the extra tensors into their spans), all or nothing;
// see the header comment for the checks. p is left prepared.
template <class P>
void load_parameters(const file& f, typename P::parameters& p, const load_options& o = {},
                     std::span<const named_tensor<typename P::element_type>> extras = {}) {
    using T = typename P::element_type;
    using params = typename P::parameters;
    using detail::quote;
    std::vector<char> used(f.tensors().size(), 0);
    auto mark = [&](const tensor_info* t) { used[static_cast<std::size_t>(t - f.tensors().data())] = 1; };
    auto unexpected = [&](std::size_t& count) {
        std::vector<const tensor_info*> r;
        for (std::size_t i = 0; i < f.tensors().size(); ++i) {
            const tensor_info& t = f.tensors()[i];
            if (used[i] || detail::starts_with(t.name, "__")) continue;
            if (params::position(t.name) < params::count) continue;
            bool extra = false;
            for (const auto& x : extras) extra = extra || x.name == t.name;
            if (!extra) r.push_back(&t);
        }
        count = r.size();
        return r;
    };

    // names, dtypes and shapes first: cheap, and the errors that matter most
    std::vector<const tensor_info*> src(params::count);
    for (std::size_t i = 0; i < params::count; ++i) {
        const std::string_view name = params::names[i];
        const tensor_info* t = f.find(name);
        if (!t) {
            std::size_t n = 0;
            const auto others = unexpected(n);
            std::string hint;
            for (std::size_t k = 0; k < others.size() && k < 3; ++k) hint += (k ? ", " : "") + quote(others[k]->name);
            if (n) hint = "; the file has " + std::to_string(n) + " tensor(s) the model lacks: " + hint + (n > 3 ? ", ..." : "");
            f.fail("tensor " + quote(name) + " is missing: the model's parameter of shape " +
                   shape_string(shape_of(parameter_shape<P>(i))) + " is not in the file" + hint);
        }
        f.check_float(*t);
        f.check_shape(*t, shape_of(parameter_shape<P>(i)), "the model's parameter has");
        src[i] = t;
        mark(t);
    }
    std::vector<const tensor_info*> extra_src(extras.size(), nullptr);
    for (std::size_t k = 0; k < extras.size(); ++k) {
        const named_tensor<T>& x = extras[k];
        const tensor_info* t = f.find(x.name);
        if (!t) {
            if (x.required) f.fail("tensor " + quote(x.name) + " is missing (requested beside the parameters)");
            continue;
        }
        f.check_float(*t);
        f.check_shape(*t, x.shape, "the requested shape is");
        std::size_t n = 1;
        for (std::size_t d : x.shape) n *= d;
        if (n != x.values.size())
            f.fail("tensor " + quote(x.name) + ": the destination holds " + std::to_string(x.values.size()) +
                   " values, its shape " + shape_string(x.shape) + " " + std::to_string(n));
        extra_src[k] = t;
        mark(t);
    }
    if (!o.allow_extra) {
        std::size_t n = 0;
        const auto others = unexpected(n);
        if (n)
            f.fail("tensor " + quote(others[0]->name) + " is not a parameter of the model" +
                   (n > 1 ? " (nor are " + std::to_string(n - 1) + " more)" : std::string()) +
                   "; load_options::allow_extra ignores such tensors");
    }

    // convert into a staging copy, verify, then commit
    params staged;
    for (std::size_t i = 0; i < params::count; ++i) f.convert(*src[i], staged.get(i), o.reject_non_finite);
    std::vector<std::vector<T>> staged_extra(extras.size());
    for (std::size_t k = 0; k < extras.size(); ++k) {
        if (!extra_src[k]) continue;
        staged_extra[k].resize(extras[k].values.size());
        f.convert(*extra_src[k], std::span<T>(staged_extra[k]), o.reject_non_finite);
    }
    if (o.verify != verification::skip) verify<P>(f, staged, {o.tolerance, o.verify == verification::required});

    for (std::size_t i = 0; i < params::count; ++i) {
        const auto from = std::as_const(staged).get(i);
        std::copy(from.begin(), from.end(), p.get(i).begin());
    }
    for (std::size_t k = 0; k < extras.size(); ++k)
        if (extra_src[k]) std::copy(staged_extra[k].begin(), staged_extra[k].end(), extras[k].values.begin());
    p.prepare();
}

template <class P>
void load_parameters(const std::filesystem::path& path, typename P::parameters& p, const load_options& o = {},
                     std::span<const named_tensor<typename P::element_type>> extras = {}) {
    load_parameters<P>(file::read(path), p, o, extras);
}

// Adds every parameter of P under its name with its static shape.
template <class P>
void add_parameters(writer& w, const typename P::parameters& p, dtype stored = dtype_of<typename P::element_type>) {
    for (std::size_t i = 0; i < P::parameters::count; ++i)
        w.add(std::string(P::parameters::names[i]), p.get(i), shape_of(parameter_shape<P>(i)), stored);
}

// Runs P with p on the inputs (every input of P, batch-major) and adds inputs, every output and
// the metadata as verification vectors. The outputs are those of p as given: when the weights
// are stored as F16/BF16, run on values passed through round_through or choose a tolerance that
// covers the rounding. p: P's parameters (prepared, when const).
template <class P, class Params>
void add_verification(writer& w, Params& p, std::size_t batch,
                      const std::vector<named_values<typename P::element_type>>& inputs, double tolerance = 1e-5,
                      std::uint64_t seed = 0) {
    using T = typename P::element_type;
    using detail::quote;
    const std::string ctx = "ctrec: safetensors add_verification: ";
    if (batch == 0) throw error(ctx + "the batch must not be empty");
    for (const auto& x : inputs) {
        std::size_t k = 0;
        while (k < P::n_inputs && P::tab.name_of(P::input_ids[k]) != x.name) ++k;
        if (k == P::n_inputs) throw error(ctx + "the model has no input " + quote(x.name));
    }
    typename P::io io;
    io.seed = seed;
    for (std::size_t k = 0; k < P::n_inputs; ++k) {
        const std::string_view name = P::tab.name_of(P::input_ids[k]);
        const auto it = std::find_if(inputs.begin(), inputs.end(), [&](const auto& x) { return x.name == name; });
        if (it == inputs.end()) throw error(ctx + "no values for the model's input " + quote(name));
        const shape_t s = detail::leaf_shape<P>(P::input_ids[k], batch);
        w.add(std::string(verify_input_prefix) + std::string(name), it->values, s, dtype_of<T>);  // checks the size
        io.in[k] = it->values.data();
    }
    std::vector<std::vector<T>> out(P::n_outputs);
    std::vector<shape_t> shapes(P::n_outputs);
    for (std::size_t r = 0; r < P::n_outputs; ++r) {
        shapes[r] = detail::leaf_shape<P>(P::tab.roots[r], batch);
        std::size_t n = 1;
        for (std::size_t d : shapes[r]) n *= d;
        out[r].assign(n, T(0));
        io.out[r] = out[r].data();
    }
    typename P::workspace ws;
    P::run(p, ws, batch, io);
    for (std::size_t r = 0; r < P::n_outputs; ++r)
        w.add(std::string(verify_output_prefix) + std::to_string(r), std::span<const T>(out[r]), shapes[r], dtype_of<T>);
    w.metadata("verify_batch", std::to_string(batch));
    w.metadata("verify_tolerance", detail::number(tolerance));
    if (seed) w.metadata("verify_seed", std::to_string(seed));
}

struct save_options {
    std::optional<dtype> stored{};                 // default: P's element type (F32 / F64)
    std::map<std::string, std::string> metadata{};
};

// Saves every parameter of P (and the extra tensors, e.g. optimizer state) atomically.
template <class P>
void save_parameters(const std::filesystem::path& path, const typename P::parameters& p, const save_options& o = {},
                     std::span<const named_tensor<const typename P::element_type>> extras = {}) {
    writer w;
    add_parameters<P>(w, p, o.stored.value_or(dtype_of<typename P::element_type>));
    for (const auto& x : extras) w.add(x.name, x.values, x.shape, o.stored.value_or(dtype_of<typename P::element_type>));
    for (const auto& [k, v] : o.metadata) w.metadata(k, v);
    w.save(path);
}

} // namespace ctrec::safetensors
