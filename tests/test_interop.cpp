// Interop with PyTorch: tests/interop/torch_model.py builds a small model (DCN + weight-normalised
// MLP) in PyTorch, writes its weights under ctrec's names with PyTorch's scores as verification
// vectors (tools/export_safetensors.py); ctrec loads the file (which re-runs the vectors) and its
// own scores match PyTorch's within 1e-5. Needs python3 with numpy and torch (run.sh test
// installs python3-torch); set CTREC_SKIP_TORCH=1 to skip where they are missing.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "ctrec/ctrec.hpp"
#include "ctrec/io/safetensors.hpp"

#ifndef CTREC_SOURCE_DIR
#define CTREC_SOURCE_DIR "."
#endif

namespace f = ctrec;
namespace fl = ctrec::layers;

namespace {
constexpr auto x = f::input<"x", 20>;
constexpr fl::result model() {
    fl::result m(x);
    f::val h = fl::dcn(m, "dcn", {.type = fl::dcn_type::vector, .layer_num = 2}, fl::mode::predict, m.value());
    h = fl::mlp(m, "mlp", fl::mlp_config<3>{.output_dims = {16, 8, 1}}, fl::mode::predict, h);
    m.set_out(f::sigmoid(h));
    return m;
}
constexpr auto net = model();
constexpr auto y = net.out();
using Score = f::program<float, y>;

std::vector<double> read_f64(const std::string& path, std::size_t n) {
    std::vector<double> v(n);
    std::ifstream in(path, std::ios::binary);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(double)));
    REQUIRE(in.good());
    return v;
}
} // namespace

TEST_CASE("interop: a PyTorch model's weights, written with ctrec's names, score within 1e-5 of PyTorch") {
    if (const char* s = std::getenv("CTREC_SKIP_TORCH"); s && std::string(s) == "1") {
        MESSAGE("CTREC_SKIP_TORCH=1: skipped");
        return;
    }
    const auto dir = std::filesystem::temp_directory_path() / ("ctrec_interop_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string file = (dir / "torch_model.safetensors").string();
    // Debian's interpreter (python3-torch installs there), unless CTREC_PYTHON says otherwise
    std::string py = std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
    if (const char* e = std::getenv("CTREC_PYTHON")) py = e;
    const std::string cmd = py + " '" + std::string(CTREC_SOURCE_DIR) + "/tests/interop/torch_model.py' '" + file + "'";
    INFO("running: " << cmd);
    REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "the PyTorch side failed (python3 with numpy and torch needed; "
                                                   "run.sh test installs python3-torch)");
    Score::parameters p;
    f::safetensors::load_parameters<Score>(file, p);  // runs the verification vectors (tolerance 1e-5)
    const std::size_t B = 32;
    const std::vector<double> xd = read_f64(file + ".x.f64", B * 20), yd = read_f64(file + ".y.f64", B);
    std::vector<float> xs(xd.begin(), xd.end()), ys(B);
    Score::workspace ws;
    Score::io io;
    io.input<"x">(xs.data()).output<0>(ys.data());
    Score::run(static_cast<const Score::parameters&>(p), ws, B, io);
    double worst = 0;
    for (std::size_t b = 0; b < B; ++b) worst = std::max(worst, std::abs(ys[b] - yd[b]));
    MESSAGE("largest |ctrec - PyTorch| over 32 examples: " << worst);
    CHECK(worst <= 1e-5);
    std::filesystem::remove_all(dir);
}
