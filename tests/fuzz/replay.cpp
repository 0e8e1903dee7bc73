// Runs a fuzz target's LLVMFuzzerTestOneInput over every file under the directories (or the
// files) named on the command line, without libFuzzer: the seed corpus and the regression inputs
// are a unit test of the ordinary build. Link with one tests/fuzz/fuzz_*.cpp.
//   replay_criteo tests/fuzz/corpus/criteo tests/fuzz/regressions/criteo
// A finding aborts (the target's checks, a sanitizer, an exception other than ctrec::error). A
// path that does not exist, or no input at all, is an error: a moved corpus cannot pass empty.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace fs = std::filesystem;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    std::size_t total = 0;
    for (int a = 1; a < argc; ++a) {
        const fs::path root = argv[a];
        std::vector<fs::path> inputs;
        if (fs::is_regular_file(root)) {
            inputs.push_back(root);
        } else if (fs::is_directory(root)) {
            for (const auto& e : fs::recursive_directory_iterator(root))
                if (e.is_regular_file() && e.path().filename().string().front() != '.') inputs.push_back(e.path());
        }
        if (!fs::exists(root)) {
            std::fprintf(stderr, "replay: %s does not exist\n", argv[a]);
            return 1;
        }
        std::sort(inputs.begin(), inputs.end());
        for (const fs::path& p : inputs) {
            // exactly the input's size on the heap, so that ASan sees a read past its end
            const std::size_t size = static_cast<std::size_t>(fs::file_size(p));
            const std::unique_ptr<char[]> data(new char[std::max<std::size_t>(size, 1)]);
            std::ifstream in(p, std::ios::binary);
            if (!in.read(data.get(), static_cast<std::streamsize>(size))) {
                std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
                return 1;
            }
            LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(data.get()), size);
            ++total;
        }
        std::printf("replay: %zu inputs from %s\n", inputs.size(), argv[a]);
    }
    std::printf("replay: ran %zu inputs\n", total);
    return total ? 0 : 1;
}
