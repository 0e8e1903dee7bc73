#pragma once
// checked_backend<Inner>: the optional checked mode. Runs the program on Inner (the CPU backend
// by default) and then checks that every input, parameter and output is finite. When one is not,
// it throws ctrec::error naming where the first non-finite value came from:
//   - a non-finite input or parameter: its name, example and element;
//   - otherwise the program is re-run by the reference interpreter node by node, and the first
//     node whose value is not finite (all its operands are, by the order) is reported with its
//     operation, the layer it belongs to (the scope of the nearest parameter it reads, e.g.
//     "tower/dense_1"), the tensors it reads, the example, the element and the value.
// It costs one pass over the inputs, parameters and outputs per call (and the interpreter only
// on failure); it allocates on failure only. Use it while developing a model or debugging a
// data pipeline, not on the hot path:
//   using Checked = ctrec::program<float, y>::with_backend<ctrec::checked_backend<>>;
// Policy (docs/ARCHITECTURE.md "Non-finite values"): the unchecked backends never test values;
// a NaN or Inf propagates to the outputs that depend on it and to no other example.
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "ctrec/core/error.hpp"
#include "ctrec/core/program.hpp"
#include "reference/executor.hpp"

namespace ctrec {

struct cpu_backend;

namespace checked_detail {

inline std::string number(double v) {
    if (std::isnan(v)) return "nan";
    return v > 0 ? "inf" : "-inf";
}

// The first non-finite value of n values in rows of `size` (per example), or false.
template <class T>
bool first_bad(const T* v, std::size_t n, std::size_t size, std::size_t& example, std::size_t& element, double& value) {
    for (std::size_t k = 0; k < n; ++k)
        if (!std::isfinite(v[k])) {
            example = size ? k / size : 0;
            element = size ? k % size : k;
            value = static_cast<double>(v[k]);
            return true;
        }
    return false;
}

// A node as the user would recognise it: a leaf by its name, anything else by its operation.
template <class Table>
std::string label(const Table& tab, std::uint32_t i) {
    const node& r = tab.nodes[i];
    if (is_leaf(r.op) && r.name_len) return "'" + std::string(tab.name_of(i)) + "'";
    return std::string(opcode_name(r.op));
}

// The layer of node i: the scope (the name up to its last '/') of the first parameter found
// breadth-first among the nodes it reads.
template <class Table>
std::string layer_of(const Table& tab, std::uint32_t i) {
    constexpr std::size_t N = Table::size;
    std::uint32_t queue[N ? N : 1];
    bool seen[N ? N : 1] = {};
    std::size_t head = 0, tail = 0;
    queue[tail++] = i;
    seen[i] = true;
    while (head < tail) {
        const std::uint32_t k = queue[head++];
        if (tab.nodes[k].op == opcode::param) {
            const std::string_view n = tab.name_of(k);
            const std::size_t slash = n.rfind('/');
            return std::string(slash == std::string_view::npos ? n : n.substr(0, slash));
        }
        for (std::uint32_t j = 0; j < tab.nodes[k].nops; ++j) {
            const std::uint32_t o = tab.operand(k, j);
            if (!seen[o]) seen[o] = true, queue[tail++] = o;
        }
    }
    return "";
}

template <class P, class T>
[[noreturn]] void report(const T* params, std::size_t batch, const T* const* in, std::uint64_t seed, std::size_t root,
                         std::size_t root_example, std::size_t root_element, double root_value) {
    const auto& tab = P::tab;
    std::string where;
    bool found = false;
    auto hook = [&](std::size_t i, const reference_detail::value<T>& v) {
        if (is_leaf(tab.nodes[i].op)) return false;
        std::size_t e = 0, k = 0;
        double x = 0;
        if (!first_bad(v.v.data(), v.v.size(), v.batched ? v.size : 0, e, k, x)) return false;
        const node& r = tab.nodes[i];
        std::string reads;
        for (std::uint32_t j = 0; j < r.nops; ++j) reads += (j ? ", " : "") + label(tab, tab.operand(i, j));
        const std::string layer = layer_of(tab, static_cast<std::uint32_t>(i));
        where = "first produced by " + std::string(opcode_name(r.op)) + "(" + reads + ")" +
                (layer.empty() ? std::string(" (no layer parameter reaches it)") : " in layer '" + layer + "'") +
                (v.batched ? ", example " + std::to_string(e) : std::string(", shared by the batch")) + ", element " +
                std::to_string(k) + " (node " + std::to_string(i) + "; its inputs are finite)";
        found = true;
        return true;
    };
    reference_detail::interpret<T, std::remove_cvref_t<decltype(tab)>, P>(tab, params, batch, in, nullptr, seed, hook);
    if (!found) where = "not reproduced by the reference interpreter (a kernel of the backend differs)";
    throw error("ctrec: checked mode: output " + std::to_string(root) + ", example " + std::to_string(root_example) +
                ", element " + std::to_string(root_element) + " is " + number(root_value) + ": " + where);
}

} // namespace checked_detail

template <class Inner = cpu_backend>
struct checked_backend {
    template <class P, class T>
    static void prepare(const T* params, T* derived) {
        Inner::template prepare<P>(params, derived);
    }
    template <class P, class T>
    static void run(const T* params, const T* derived, T* ws, std::size_t batch, const T* const* in, T* const* out,
                    std::uint64_t seed) {
        using checked_detail::first_bad;
        using checked_detail::number;
        const auto& tab = P::tab;
        std::size_t e = 0, k = 0;
        double x = 0;
        for (std::size_t i = 0; i < P::n_inputs; ++i) {
            const node& r = tab.nodes[P::input_ids[i]];
            const std::size_t size = r.shape.size();
            if (first_bad(in[i], size * (r.batched ? batch : 1), r.batched ? size : 0, e, k, x))
                throw error("ctrec: checked mode: input '" + std::string(tab.name_of(P::input_ids[i])) + "'" +
                            (r.batched ? ", example " + std::to_string(e) : std::string()) + ", element " +
                            std::to_string(k) + " is " + number(x));
        }
        for (std::size_t i = 0; i < P::n_params; ++i) {
            const T* p = params + P::parameters::offsets[i];
            if (first_bad(p, P::parameters::sizes[i], 0, e, k, x))
                throw error("ctrec: checked mode: parameter '" + std::string(P::parameters::names[i]) + "', element " +
                            std::to_string(k) + " is " + number(x));
        }
        Inner::template run<P>(params, derived, ws, batch, in, out, seed);
        for (std::size_t r = 0; r < P::n_outputs; ++r) {
            const node& n = tab.nodes[tab.roots[r]];
            const std::size_t size = n.shape.size();
            if (first_bad(out[r], size * (n.batched ? batch : 1), n.batched ? size : 0, e, k, x))
                checked_detail::report<P>(params, batch, in, seed, r, e, k, x);
        }
    }
};

} // namespace ctrec
