// libFuzzer target: the Criteo text parser (ctrec/io/criteo.hpp), the whole input as one line
// and as a stream through criteo_reader in both modes (stop at the first bad line, skip and
// count). Only ctrec::error may come out of the library; another exception, a sanitizer report,
// a hang or a failed FUZZ_CHECK is a finding. Built with libFuzzer by tests/fuzz/run_fuzz.sh and
// with g++ by tests/fuzz/replay.cpp (the corpus and the regressions as a unit test).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "ctrec/io/criteo.hpp"

#define FUZZ_CHECK(c) ((c) ? void(0) : fuzz_fail(#c, __LINE__))

namespace {

[[noreturn]] void fuzz_fail(const char* what, int line) {
    std::fprintf(stderr, "fuzz_criteo.cpp:%d: invariant failed: %s\n", line, what);
    std::abort();
}

bool same(const ctrec::criteo_record& a, const ctrec::criteo_record& b) {
    return a.label == b.label && a.ints == b.ints && a.int_present == b.int_present && a.cats == b.cats &&
           a.sequence == b.sequence;
}

// What every parsed record satisfies; formatting it and parsing the text gives it back.
void check_record(const ctrec::criteo_record& r) {
    FUZZ_CHECK(r.label == 0 || r.label == 1);
    FUZZ_CHECK(r.sequence.size() <= ctrec::criteo_max_sequence);
    for (std::size_t i = 0; i < ctrec::criteo_ints; ++i) FUZZ_CHECK(r.int_present[i] || r.ints[i] == 0);
    ctrec::criteo_record back;
    try {
        ctrec::parse_criteo_line(ctrec::format_criteo_line(r, false), 1, back);
    } catch (const ctrec::error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        fuzz_fail("a formatted record does not parse", __LINE__);
    }
    FUZZ_CHECK(same(r, back));
}

struct line_result {
    std::size_t line_no;
    bool ok;
    ctrec::criteo_record record;
    std::string message;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);

    {  // the whole input as one line (newlines and all)
        ctrec::criteo_record r;
        try {
            ctrec::parse_criteo_line(text, 1, r);
            check_record(r);
        } catch (const ctrec::error&) {
        }
    }

    // The lines as std::getline cuts them, each parsed into a fresh record: what the reader must
    // reproduce (it reuses one record, so a field it forgets to reset shows here).
    std::vector<line_result> lines;
    std::size_t n_lines = 0;
    for (std::size_t at = 0; at < text.size();) {
        const std::size_t nl = text.find('\n', at);
        const std::string_view s =
            std::string_view(text).substr(at, nl == std::string::npos ? std::string::npos : nl - at);
        at = nl == std::string::npos ? text.size() : nl + 1;
        ++n_lines;
        if (s.empty() || s == "\r") continue;
        line_result l{n_lines, true, {}, {}};
        try {
            ctrec::parse_criteo_line(s, n_lines, l.record);
            check_record(l.record);
        } catch (const ctrec::error& e) {
            l.ok = false;
            l.message = e.what();
        }
        lines.push_back(std::move(l));
    }

    {  // skip and count: every good line in order, the bad ones counted, the first message kept
        std::istringstream in(text);
        ctrec::criteo_reader rd(in, true);
        ctrec::criteo_record r;
        std::size_t k = 0, bad = 0;
        const line_result* first_bad = nullptr;
        for (const line_result& l : lines) {
            if (!l.ok) {
                ++bad;
                if (!first_bad) first_bad = &l;
                continue;
            }
            FUZZ_CHECK(rd.next(r));
            FUZZ_CHECK(rd.line_number() == l.line_no);
            FUZZ_CHECK(same(r, l.record));
            ++k;
        }
        FUZZ_CHECK(!rd.next(r));
        FUZZ_CHECK(rd.bad_lines() == bad);
        FUZZ_CHECK(rd.line_number() == n_lines);
        FUZZ_CHECK(first_bad ? rd.first_error() == first_bad->message : rd.first_error().empty());
        (void)k;
    }

    {  // strict: the good lines up to the first bad one, which throws its own message
        std::istringstream in(text);
        ctrec::criteo_reader rd(in);
        ctrec::criteo_record r;
        bool stopped = false;
        for (const line_result& l : lines) {
            if (l.ok) {
                FUZZ_CHECK(rd.next(r));
                FUZZ_CHECK(same(r, l.record));
                continue;
            }
            try {
                rd.next(r);
                FUZZ_CHECK(!"a bad line did not throw in strict mode");
            } catch (const ctrec::error& e) {
                FUZZ_CHECK(e.what() == l.message);
                FUZZ_CHECK(rd.line_number() == l.line_no);
            }
            stopped = true;
            break;
        }
        if (!stopped) FUZZ_CHECK(!rd.next(r));
    }
    return 0;
}
