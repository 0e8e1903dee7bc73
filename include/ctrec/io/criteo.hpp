#pragma once
// The Criteo click-log text format, strictly parsed: one example per line, tab-separated,
//   label \t I1 .. I13 \t C1 .. C26 [\t S]
// label 0 or 1; I integer features (decimal, may be negative, may be empty = missing); C
// categorical features as hexadecimal hashes of up to 16 digits (Criteo's are 8; empty =
// missing); S (ctrec's extension, optional) a behaviour sequence: comma-separated decimal item
// ids, most recent last, at most criteo_max_sequence of them (empty = no history).
//
// A malformed line is an error naming the line number, the column and what was expected; the
// reader can instead skip and count such lines. Nothing is read past the line's end.
#include <array>
#include <charconv>
#include <cstdint>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

#include "ctrec/core/error.hpp"

namespace ctrec {

inline constexpr std::size_t criteo_ints = 13, criteo_cats = 26, criteo_max_sequence = 1024;
// The id of a missing categorical value (it hashes to a row like any other id).
inline constexpr std::int64_t criteo_missing = -1;

struct criteo_record {
    float label = 0;
    std::array<std::int64_t, criteo_ints> ints{};
    std::array<bool, criteo_ints> int_present{};
    std::array<std::int64_t, criteo_cats> cats{};  // criteo_missing when empty
    std::vector<std::int64_t> sequence;             // empty when the column is absent or empty
};

namespace detail {
[[noreturn]] inline void criteo_fail(std::size_t line, std::size_t column, const std::string& what) {
    throw error("ctrec: criteo line " + std::to_string(line) + ", column " + std::to_string(column) + ": " + what);
}
inline std::string criteo_show(std::string_view s) {
    std::string r;
    for (char c : s.substr(0, 40)) r += (c >= 32 && c < 127) ? c : '?';
    return "'" + r + (s.size() > 40 ? "...'" : "'");
}
} // namespace detail

// Parses one line (without its newline; a trailing '\r' is accepted) into r.
inline void parse_criteo_line(std::string_view line, std::size_t line_no, criteo_record& r) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::string_view f[41];
    std::size_t n = 0, at = 0;
    while (true) {
        const std::size_t tab = line.find('\t', at);
        if (n == 41) detail::criteo_fail(line_no, 42, "too many columns (expected 40, or 41 with a sequence)");
        f[n++] = line.substr(at, tab == std::string_view::npos ? std::string_view::npos : tab - at);
        if (tab == std::string_view::npos) break;
        at = tab + 1;
    }
    if (n < 40)
        detail::criteo_fail(line_no, n, "expected 40 tab-separated columns (41 with a sequence), found " + std::to_string(n));
    if (f[0] == "0") r.label = 0;
    else if (f[0] == "1") r.label = 1;
    else detail::criteo_fail(line_no, 1, "label must be 0 or 1, got " + detail::criteo_show(f[0]));
    for (std::size_t i = 0; i < criteo_ints; ++i) {
        const std::string_view s = f[1 + i];
        r.int_present[i] = !s.empty();
        r.ints[i] = 0;
        if (s.empty()) continue;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), r.ints[i]);
        if (ec != std::errc() || p != s.data() + s.size())
            detail::criteo_fail(line_no, 2 + i, "integer feature I" + std::to_string(i + 1) + " is not a 64-bit integer: " +
                                                    detail::criteo_show(s));
    }
    for (std::size_t i = 0; i < criteo_cats; ++i) {
        const std::string_view s = f[1 + criteo_ints + i];
        if (s.empty()) {
            r.cats[i] = criteo_missing;
            continue;
        }
        std::uint64_t v = 0;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
        if (s.size() > 16 || ec != std::errc() || p != s.data() + s.size())
            detail::criteo_fail(line_no, 2 + criteo_ints + i, "categorical feature C" + std::to_string(i + 1) +
                                                                  " is not a hexadecimal hash of up to 16 digits: " +
                                                                  detail::criteo_show(s));
        r.cats[i] = static_cast<std::int64_t>(v);
    }
    r.sequence.clear();
    if (n == 41 && !f[40].empty()) {
        std::string_view s = f[40];
        std::size_t k = 0;
        while (true) {
            const std::size_t comma = s.find(',');
            const std::string_view item = s.substr(0, comma);
            std::int64_t id = 0;
            auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), id);
            if (item.empty() || ec != std::errc() || p != item.data() + item.size())
                detail::criteo_fail(line_no, 41, "sequence item " + std::to_string(k + 1) + " is not an integer id: " +
                                                     detail::criteo_show(item));
            if (r.sequence.size() == criteo_max_sequence)
                detail::criteo_fail(line_no, 41, "sequence longer than " + std::to_string(criteo_max_sequence) + " items");
            r.sequence.push_back(id);
            ++k;
            if (comma == std::string_view::npos) break;
            s.remove_prefix(comma + 1);
        }
    }
}

// Reads records line by line. skip_bad = false: the first malformed line throws; true: it is
// skipped and counted (bad_lines(), first_error() keeps the first message).
class criteo_reader {
public:
    explicit criteo_reader(std::istream& in, bool skip_bad = false) : in_(in), skip_(skip_bad) {}
    // The next record; false at the end of the input. Empty lines are skipped.
    bool next(criteo_record& r) {
        while (std::getline(in_, line_)) {
            ++line_no_;
            if (line_.empty() || line_ == "\r") continue;
            try {
                parse_criteo_line(line_, line_no_, r);
                return true;
            } catch (const error& e) {
                if (!skip_) throw;
                if (bad_ == 0) first_error_ = e.what();
                ++bad_;
            }
        }
        return false;
    }
    std::size_t bad_lines() const { return bad_; }
    const std::string& first_error() const { return first_error_; }
    std::size_t line_number() const { return line_no_; }

private:
    std::istream& in_;
    bool skip_;
    std::string line_, first_error_;
    std::size_t line_no_ = 0, bad_ = 0;
};

// Writes r as one line (the inverse of parse_criteo_line; the sequence column when non-empty
// or when with_sequence is set).
inline std::string format_criteo_line(const criteo_record& r, bool with_sequence) {
    std::string s = r.label > 0.5f ? "1" : "0";
    char buf[32];
    for (std::size_t i = 0; i < criteo_ints; ++i) {
        s += '\t';
        if (r.int_present[i]) s += std::to_string(r.ints[i]);
    }
    for (std::size_t i = 0; i < criteo_cats; ++i) {
        s += '\t';
        if (r.cats[i] == criteo_missing) continue;
        auto [p, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<std::uint64_t>(r.cats[i]), 16);
        (void)ec;
        const std::size_t len = static_cast<std::size_t>(p - buf);
        if (len < 8) s.append(8 - len, '0');
        s.append(buf, len);
    }
    if (with_sequence || !r.sequence.empty()) {
        s += '\t';
        for (std::size_t k = 0; k < r.sequence.size(); ++k) {
            if (k) s += ',';
            s += std::to_string(r.sequence[k]);
        }
    }
    return s;
}

} // namespace ctrec
