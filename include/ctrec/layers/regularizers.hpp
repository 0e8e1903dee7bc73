#pragma once
// Weight penalties with TF 2.4 Keras semantics (spec layers-core-and-cross.md 1.4).
// A regularizer never changes a layer's output; it adds a scalar to the training loss:
//   L1:   l1 * sum |w|        gradient l1 * sign(w), with sign(0) = 0 (TF's abs gradient)
//   L2:   l2 * sum w^2        gradient 2 * l2 * w (no 1/2 in the penalty)
//   L1L2: both; a zero coefficient skips its term entirely, as TF's `if self.l1:` does
//         (this only matters for non-finite weights, where 0 * inf would give NaN).
// Defaults differ by spelling, exactly as in Keras: the L1L2 *class* defaults to
// l1 = l2 = 0, the "l1_l2" *string* to l1 = l2 = 0.01 (see from_name).
//
// Values are accumulated in double and returned as double. TF keeps the coefficients
// as float32 (K.cast_to_floatx) and sums in float32; the difference is below float32
// resolution of the result. TF 2.4 validates nothing; ctrec rejects NaN/inf coefficients
// (later Keras does too) but, like TF, accepts negative ones.
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "ctrec/core/dims.hpp"
#include "ctrec/core/error.hpp"

namespace ctrec::reg {

namespace detail {
inline void check_coef(double c, std::string_view who, std::string_view coef) {
    if (!std::isfinite(c)) {
        char b[32];
        std::snprintf(b, sizeof b, "%.17g", c);
        throw error("ctrec::reg::" + std::string(who) + ": " + std::string(coef) + " must be finite, got " + b);
    }
}
template <class T>
void check_sizes(std::span<const T> w, std::span<T> g, std::string_view who) {
    if (w.size() != g.size())
        throw error("ctrec::reg::" + std::string(who) + ": gradient has " + std::to_string(g.size()) +
                    " elements but the weights have " + std::to_string(w.size()));
}
// TF's sign: 0 at 0, NaN stays NaN.
template <class T> T sign(T x) { return x > T(0) ? T(1) : x < T(0) ? T(-1) : x == T(0) ? T(0) : x; }

template <class T> double sum_abs(std::span<const T> w) {
    double s = 0;
    for (T v : w) s += std::abs(static_cast<double>(v));
    return s;
}
template <class T> double sum_sq(std::span<const T> w) {
    double s = 0;
    for (T v : w) s += static_cast<double>(v) * static_cast<double>(v);
    return s;
}
} // namespace detail

struct L1 {
    static constexpr std::string_view name = "L1";
    double l1 = 0.01;
    template <class T>
    double value(std::span<const T> w) const {
        detail::check_coef(l1, name, "l1");
        return l1 * detail::sum_abs(w);
    }
    template <class T>
    void add_gradient(std::span<const T> w, std::span<T> g) const {
        detail::check_coef(l1, name, "l1");
        detail::check_sizes(w, g, name);
        for (std::size_t i = 0; i < w.size(); ++i) g[i] += static_cast<T>(l1) * detail::sign(w[i]);
    }
};

struct L2 {
    static constexpr std::string_view name = "L2";
    double l2 = 0.01;
    template <class T>
    double value(std::span<const T> w) const {
        detail::check_coef(l2, name, "l2");
        return l2 * detail::sum_sq(w);
    }
    template <class T>
    void add_gradient(std::span<const T> w, std::span<T> g) const {
        detail::check_coef(l2, name, "l2");
        detail::check_sizes(w, g, name);
        for (std::size_t i = 0; i < w.size(); ++i) g[i] += static_cast<T>(2 * l2) * w[i];
    }
};

struct L1L2 {
    static constexpr std::string_view name = "L1L2";
    double l1 = 0.0;  // the class defaults; the string "l1_l2" gives 0.01 / 0.01
    double l2 = 0.0;
    template <class T>
    double value(std::span<const T> w) const {
        detail::check_coef(l1, name, "l1");
        detail::check_coef(l2, name, "l2");
        double s = 0;
        if (l1 != 0) s += L1{l1}.value(w);
        if (l2 != 0) s += L2{l2}.value(w);
        return s;
    }
    template <class T>
    void add_gradient(std::span<const T> w, std::span<T> g) const {
        detail::check_coef(l1, name, "l1");
        detail::check_coef(l2, name, "l2");
        detail::check_sizes(w, g, name);
        if (l1 != 0) L1{l1}.add_gradient(w, g);
        if (l2 != 0) L2{l2}.add_gradient(w, g);
    }
};

using any = std::variant<L1, L2, L1L2>;

// Keras regularizers.get for the spec's names (case-sensitive):
//   "l1", "L1" -> L1(0.01);  "l2", "L2" -> L2(0.01);
//   "l1_l2" -> L1L2(0.01, 0.01) (Keras' l1_l2() function);  "L1L2" -> L1L2(0, 0) (the class).
// Keras' None (no penalty) is the caller's business: simply add no term.
inline any from_name(std::string_view s) {
    if (s == "l1" || s == "L1") return L1{};
    if (s == "l2" || s == "L2") return L2{};
    if (s == "l1_l2") return L1L2{0.01, 0.01};
    if (s == "L1L2") return L1L2{};
    throw error("ctrec::reg: unknown regularizer name '" + std::string(s) + "' (expected l1, l2, l1_l2, L1, L2 or L1L2)");
}

inline std::string_view name_of(const any& r) {
    return std::visit([](const auto& x) { return std::remove_cvref_t<decltype(x)>::name; }, r);
}
template <class T>
double value(const any& r, std::span<const T> w) {
    return std::visit([&](const auto& x) { return x.value(w); }, r);
}
template <class T>
void add_gradient(const any& r, std::span<const T> w, std::span<T> g) {
    std::visit([&](const auto& x) { x.add_gradient(w, g); }, r);
}

// One penalised variable: its name (for messages), its regularizer, its weights, and
// optionally where to accumulate d penalty / d w (left empty: value only).
template <class T>
struct term {
    std::string_view name;
    any reg;
    std::span<const T> w;
    std::span<T> grad = {};
};

// The model's whole penalty: the sum over all terms (Keras collects them from layer
// `losses` and REGULARIZATION_LOSSES; ctrec gives one scalar). Gradients are added
// into each term's `grad` where one is given.
template <class T>
double total(std::span<const term<T>> terms) {
    double s = 0;
    for (const term<T>& t : terms) {
        try {
            s += value(t.reg, t.w);
            if (!t.grad.empty()) add_gradient(t.reg, t.w, t.grad);
        } catch (const error& e) {
            throw error("ctrec::reg::total: term '" + std::string(t.name) + "': " + e.what());
        }
    }
    return s;
}
template <class T>
double total(std::initializer_list<term<T>> terms) {
    return total(std::span<const term<T>>(terms.begin(), terms.size()));
}

} // namespace ctrec::reg
