#pragma once
// Optimizers over a training program's parameter bundle: SGD, Momentum, Adagrad, Adam, FTRL.
//
//   using Step = ctrec::train_program<float, loss, r>;
//   ctrec::optimizer<Step, ctrec::adam> opt({.learning_rate = 1e-3});
//   Step::run(p, ws, batch, io);   // gradients into g (g.bind(io))
//   opt.apply(p, g);               // every trainable parameter, then opt.steps() == 1
//   // an embedding table: only the rows the batch used
//   opt.apply(p, g, {"emb/table"});  opt.apply_rows(p, g, "emb/table", rows, width);
//
// Each rule's update is TF / Keras's (formulas beside each rule), elementwise, in double, with
// the state (the rule's slots) kept per trainable parameter in T. state() lists the slots as named
// tensors ("<parameter>/<rule>/<slot>", plus "optimizer/step") for weight files, and
// load_state() restores them, checked, all-or-nothing.
//
// l1 / l2 in SGD, Momentum, Adagrad and Adam add l1 sign(w) + l2 w to the gradient (the
// gradient of the penalty l1 |w| + l2 w^2 / 2): a regulariser applied by the optimizer, so a
// row an embedding batch does not touch is not decayed. FTRL's l1 / l2 are its own (closed form).
#include <array>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ctrec/core/error.hpp"
#include "ctrec/core/storage.hpp"

namespace ctrec {

namespace detail {
inline double penalised(double g, double w, double l1, double l2) {
    return g + l2 * w + (l1 != 0.0 ? l1 * ((w > 0) - (w < 0)) : 0.0);
}
} // namespace detail

// w -= lr g
struct sgd {
    double learning_rate = 0.01, l1 = 0.0, l2 = 0.0;
    static constexpr std::string_view name = "sgd";
    static constexpr std::array<std::string_view, 0> slots{};
    double initial(std::size_t) const { return 0.0; }
    template <class T>
    void update(T* w, const T* g, T* const*, std::size_t n, std::uint64_t) const {
        for (std::size_t i = 0; i < n; ++i) w[i] = static_cast<T>(w[i] - learning_rate * detail::penalised(g[i], w[i], l1, l2));
    }
};

// Keras SGD with momentum: v = m v - lr g; w += v (Nesterov: w += m v - lr g).
struct momentum {
    double learning_rate = 0.01, momentum = 0.9, l1 = 0.0, l2 = 0.0;
    bool nesterov = false;
    static constexpr std::string_view name = "momentum";
    static constexpr std::array<std::string_view, 1> slots{"velocity"};
    double initial(std::size_t) const { return 0.0; }
    template <class T>
    void update(T* w, const T* g, T* const* s, std::size_t n, std::uint64_t) const {
        T* v = s[0];
        for (std::size_t i = 0; i < n; ++i) {
            const double gi = detail::penalised(g[i], w[i], l1, l2);
            const double vi = momentum * v[i] - learning_rate * gi;
            v[i] = static_cast<T>(vi);
            w[i] = static_cast<T>(w[i] + (nesterov ? momentum * vi - learning_rate * gi : vi));
        }
    }
};

// TF / Keras Adagrad: a += g^2 (a starts at initial_accumulator_value); w -= lr g / (sqrt(a) + eps).
struct adagrad {
    double learning_rate = 0.001, initial_accumulator_value = 0.1, epsilon = 1e-7, l1 = 0.0, l2 = 0.0;
    static constexpr std::string_view name = "adagrad";
    static constexpr std::array<std::string_view, 1> slots{"accumulator"};
    double initial(std::size_t) const { return initial_accumulator_value; }
    template <class T>
    void update(T* w, const T* g, T* const* s, std::size_t n, std::uint64_t) const {
        T* a = s[0];
        for (std::size_t i = 0; i < n; ++i) {
            const double gi = detail::penalised(g[i], w[i], l1, l2);
            const double ai = a[i] + gi * gi;
            a[i] = static_cast<T>(ai);
            w[i] = static_cast<T>(w[i] - learning_rate * gi / (std::sqrt(ai) + epsilon));
        }
    }
};

// Keras Adam (step t from 1): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps).
struct adam {
    double learning_rate = 0.001, beta_1 = 0.9, beta_2 = 0.999, epsilon = 1e-7, l1 = 0.0, l2 = 0.0;
    static constexpr std::string_view name = "adam";
    static constexpr std::array<std::string_view, 2> slots{"m", "v"};
    double initial(std::size_t) const { return 0.0; }
    template <class T>
    void update(T* w, const T* g, T* const* s, std::size_t n, std::uint64_t t) const {
        T* m = s[0];
        T* v = s[1];
        const double td = static_cast<double>(t);
        const double lr_t = learning_rate * std::sqrt(1.0 - std::pow(beta_2, td)) / (1.0 - std::pow(beta_1, td));
        for (std::size_t i = 0; i < n; ++i) {
            const double gi = detail::penalised(g[i], w[i], l1, l2);
            const double mi = beta_1 * m[i] + (1.0 - beta_1) * gi;
            const double vi = beta_2 * v[i] + (1.0 - beta_2) * gi * gi;
            m[i] = static_cast<T>(mi), v[i] = static_cast<T>(vi);
            w[i] = static_cast<T>(w[i] - lr_t * mi / (std::sqrt(vi) + epsilon));
        }
    }
};

// TF's FTRL-Proximal (learning_rate_power -0.5; McMahan et al. 2013), per coordinate:
//   n' = n + g^2;  z += g - (sqrt(n') - sqrt(n)) / lr * w;
//   w = |z| <= l1 ? 0 : (sign(z) l1 - z) / ((beta + sqrt(n')) / lr + 2 l2)
// n starts at initial_accumulator_value, z at 0. Coordinates whose |z| stays below l1 are exactly
// zero: the sparse models FTRL is used for.
struct ftrl {
    double learning_rate = 0.001, initial_accumulator_value = 0.1, l1 = 0.0, l2 = 0.0, beta = 0.0;
    static constexpr std::string_view name = "ftrl";
    static constexpr std::array<std::string_view, 2> slots{"accumulator", "linear"};
    double initial(std::size_t slot) const { return slot == 0 ? initial_accumulator_value : 0.0; }
    template <class T>
    void update(T* w, const T* g, T* const* s, std::size_t n, std::uint64_t) const {
        T* acc = s[0];
        T* z = s[1];
        for (std::size_t i = 0; i < n; ++i) {
            const double gi = g[i], ni = acc[i], nn = ni + gi * gi;
            const double zi = z[i] + gi - (std::sqrt(nn) - std::sqrt(ni)) / learning_rate * w[i];
            acc[i] = static_cast<T>(nn), z[i] = static_cast<T>(zi);
            const double q = (beta + std::sqrt(nn)) / learning_rate + 2.0 * l2;
            w[i] = static_cast<T>(std::abs(zi) <= l1 ? 0.0 : (((zi > 0) - (zi < 0)) * l1 - zi) / q);
        }
    }
};

// A named tensor of optimizer state (for weight files).
template <class T>
struct state_tensor {
    std::string name;
    std::span<T> values;
};

// The state of rule R for every trainable parameter of training program Step.
template <class Step, class R>
class optimizer {
public:
    using T = std::remove_cvref_t<decltype(*std::declval<typename Step::parameters&>().data())>;
    static constexpr std::size_t n = Step::n_trainable;
    static constexpr std::size_t n_slots = R::slots.size();

    explicit optimizer(R rule = {}) : rule_(rule) {
        std::size_t total = 0;
        for (std::size_t i = 0; i < n; ++i) total += size_of(i) * n_slots;
        state_ = aligned_buffer<T>(total ? total : 1);
        reset();
    }

    const R& rule() const { return rule_; }
    R& rule() { return rule_; }  // e.g. a learning-rate schedule
    std::uint64_t steps() const { return t_; }
    void set_steps(std::uint64_t t) { t_ = t; }

    // The slots back to their initial values, the step count to 0.
    void reset() {
        T* at = state_.data();
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t s = 0; s < n_slots; ++s, at += size_of(i)) std::fill_n(at, size_of(i), static_cast<T>(rule_.initial(s)));
        t_ = 0;
    }

    // One step on every trainable parameter from the gradients of the last run, except those
    // named in `except` (embedding tables updated row by row with apply_rows).
    void apply(typename Step::parameters& p, typename Step::gradients& g,
               std::initializer_list<std::string_view> except = {}) {
        for (std::string_view e : except) index_of(e);  // a misspelt name is an error, not a no-op
        ++t_;
        for (std::size_t i = 0; i < n; ++i) {
            bool skip = false;
            for (std::string_view e : except) skip = skip || Step::trainable[i] == e;
            if (skip) continue;
            auto w = p.get(Step::param_slot(Step::tab.wrt[i]));
            auto gi = g.get(i);
            T* s[n_slots ? n_slots : 1];
            slots_of(i, s);
            rule_.update(w.data(), gi.data(), s, w.size(), t_);
        }
    }

    // This step's update of trainable parameter `name`, a (rows, width) table, on the given rows
    // only (an embedding table: the rows the batch looked up); other rows, their gradients and
    // their state are neither read nor written. Call it after apply(p, g, {name, ...}) of the same
    // step. Rows are checked against the table; a repeated row is updated once.
    void apply_rows(typename Step::parameters& p, typename Step::gradients& g, std::string_view name,
                    std::span<const std::uint32_t> rows, std::size_t width) {
        const std::size_t i = index_of(name);
        if (t_ == 0) throw error("ctrec: optimizer: apply_rows before apply(): the step has not started");
        auto w = p.get(Step::param_slot(Step::tab.wrt[i]));
        auto gi = g.get(i);
        if (width == 0 || w.size() % width != 0)
            throw error("ctrec: optimizer: parameter '" + std::string(name) + "' of " + std::to_string(w.size()) +
                        " values is not a table of rows of width " + std::to_string(width));
        const std::size_t n_rows = w.size() / width;
        for (std::uint32_t r : rows)
            if (r >= n_rows)
                throw error("ctrec: optimizer: row " + std::to_string(r) + " of parameter '" + std::string(name) +
                            "' is out of range (it has " + std::to_string(n_rows) + " rows)");
        T* s[n_slots ? n_slots : 1];
        slots_of(i, s);
        std::vector<bool> done(n_rows, false);
        for (std::uint32_t r : rows) {
            if (done[r]) continue;
            done[r] = true;
            T* sr[n_slots ? n_slots : 1];
            for (std::size_t k = 0; k < n_slots; ++k) sr[k] = s[k] + r * width;
            rule_.update(w.data() + r * width, gi.data() + r * width, sr, width, t_);
        }
    }

    // The slots as named tensors, "<parameter>/<rule>/<slot>", and "optimizer/step" (a copy of the
    // step count, as T: exact below 2^24 steps in float).
    std::vector<state_tensor<T>> state() {
        std::vector<state_tensor<T>> v;
        for (std::size_t i = 0; i < n; ++i) {
            T* s[n_slots ? n_slots : 1];
            slots_of(i, s);
            for (std::size_t k = 0; k < n_slots; ++k)
                v.push_back({std::string(Step::trainable[i]) + "/" + std::string(R::name) + "/" + std::string(R::slots[k]),
                             std::span<T>(s[k], size_of(i))});
        }
        step_value_ = static_cast<T>(t_);
        v.push_back({"optimizer/step", std::span<T>(&step_value_, 1)});
        return v;
    }
    // Restores the state from named tensors (as state() names them): every slot must be present
    // with its size, or nothing changes and the error names the tensor.
    template <class Lookup>  // Lookup(name) -> std::span<const T> (empty when absent)
    void load_state(Lookup&& lookup) {
        std::vector<std::span<const T>> src;
        for (auto& t : state()) {
            std::span<const T> s = lookup(t.name);
            if (s.size() != t.values.size())
                throw error("ctrec: optimizer state '" + t.name + "': expected " + std::to_string(t.values.size()) +
                            " values, got " + (s.empty() ? std::string("none") : std::to_string(s.size())));
            src.push_back(s);
        }
        auto dst = state();
        for (std::size_t k = 0; k + 1 < dst.size(); ++k) std::copy(src[k].begin(), src[k].end(), dst[k].values.begin());
        t_ = static_cast<std::uint64_t>(src.back()[0]);
    }

private:
    static std::size_t size_of(std::size_t i) { return Step::tab.nodes[Step::tab.wrt[i]].shape.size(); }
    void slots_of(std::size_t i, T** s) {
        T* at = state_.data();
        for (std::size_t j = 0; j < i; ++j) at += size_of(j) * n_slots;
        for (std::size_t k = 0; k < n_slots; ++k) s[k] = at + k * size_of(i);
    }
    static std::size_t index_of(std::string_view name) {
        for (std::size_t i = 0; i < n; ++i)
            if (Step::trainable[i] == name) return i;
        throw error("ctrec: optimizer: '" + std::string(name) + "' is not a trainable parameter of this program");
    }

    R rule_;
    aligned_buffer<T> state_{1};
    std::uint64_t t_ = 0;
    T step_value_ = 0;
};

} // namespace ctrec
