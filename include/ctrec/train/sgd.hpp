#pragma once
// Plain SGD over a program's parameters, and moving parameters between programs
// that share names (a training program and the scoring program of one model).
#include <cstddef>
#include <span>

#include "ctrec/core/error.hpp"

namespace ctrec::train {

// w <- w - lr * g, for one parameter.
template <class T>
void sgd_update(std::span<T> w, std::span<const T> g, T lr) {
    if (w.size() != g.size()) throw error("ctrec: sgd_update: parameter and gradient sizes differ");
    for (std::size_t i = 0; i < w.size(); ++i) w[i] -= lr * g[i];
}

// Copies every parameter of `dst` from the parameter of the same name in `src`.
template <class Src, class Dst>
void copy_parameters(const Src& src, Dst& dst) {
    for (std::size_t i = 0; i < Dst::count; ++i) {
        auto from = src.get(src.index_of(Dst::names[i]));
        auto to = dst.get(i);
        if (from.size() != to.size()) throw error("ctrec: copy_parameters: size mismatch for '" + std::string(Dst::names[i]) + "'");
        std::copy(from.begin(), from.end(), to.begin());
    }
}

} // namespace ctrec::train
