#pragma once
// Training checkpoints: a training program's parameters and its optimizer's state in one
// safetensors file (io/safetensors.hpp). The optimizer's slots are the sections
// "__optimizer__/<parameter>/<rule>/<slot>" and "__optimizer__/optimizer/step"; a scoring program
// loads the same file and ignores them (names starting with "__" are sections).
//
//   ctrec::save_checkpoint<Step>("ckpt.safetensors", p, opt);
//   ctrec::load_checkpoint<Step>("ckpt.safetensors", p, opt);   // all or nothing
#include <filesystem>
#include <vector>

#include "ctrec/io/safetensors.hpp"
#include "ctrec/train/optimizers.hpp"

namespace ctrec {

template <class Step, class R>
void save_checkpoint(const std::filesystem::path& path, const typename Step::parameters& p, optimizer<Step, R>& opt,
                     const safetensors::save_options& o = {}) {
    using T = typename Step::element_type;
    std::vector<safetensors::named_tensor<const T>> extra;
    for (auto& s : opt.state())
        extra.push_back({"__optimizer__/" + s.name, {s.values.size()}, std::span<const T>(s.values.data(), s.values.size())});
    safetensors::save_parameters<Step>(path, p, o, extra);
}

// Loads parameters and optimizer state together: on any error (a missing or misshapen slot
// included) neither changes.
template <class Step, class R>
void load_checkpoint(const std::filesystem::path& path, typename Step::parameters& p, optimizer<Step, R>& opt,
                     const safetensors::load_options& o = {}) {
    using T = typename Step::element_type;
    auto state = opt.state();
    std::vector<T> staged_step(1);
    std::vector<safetensors::named_tensor<T>> extra;
    for (auto& s : state) {
        if (s.name == "optimizer/step") extra.push_back({"__optimizer__/" + s.name, {1}, std::span<T>(staged_step)});
        else extra.push_back({"__optimizer__/" + s.name, {s.values.size()}, s.values});
    }
    safetensors::load_parameters<Step>(path, p, o, extra);
    opt.set_steps(static_cast<std::uint64_t>(staged_step[0]));
}

} // namespace ctrec
