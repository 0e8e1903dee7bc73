#pragma once
// Choosing among compiled models at run time: a small type-erased scorer interface, one virtual
// call per batch (never per layer), and a registry that finds a scorer by name.
//
//   ctrec::scorer_registry<float> models;
//   models.add<ModelA>("ctr_v1", params_a);        // copies and prepares the parameters
//   models.add<ModelB>("ctr_v2", params_b);
//   auto& m = models.get("ctr_v2");                // throws, listing the names, if unknown
//   const float* in[] = {x};  float* out[] = {y};
//   m.score(batch, in, out);                        // inputs in m.input_name(i) order
//
// A scorer owns its parameters (const after setup) and one workspace: score() is not reentrant.
// For concurrent requests make one scorer per thread with clone(), which shares the
// parameters (read-only) and gets a workspace of its own.
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ctrec/core/error.hpp"

namespace ctrec {

template <class T>
class scorer {
public:
    virtual ~scorer() = default;
    virtual std::size_t n_inputs() const = 0;
    virtual std::string_view input_name(std::size_t i) const = 0;
    virtual std::size_t input_size(std::size_t i) const = 0;    // values per example
    virtual bool input_batched(std::size_t i) const = 0;         // false: one value for the call
    virtual std::size_t n_outputs() const = 0;
    virtual std::size_t output_size(std::size_t r) const = 0;   // values per example
    // Scores `batch` examples: in[i] for input i (batch-major), out[r] for output r.
    virtual void score(std::size_t batch, const T* const* in, T* const* out) = 0;
    // A scorer sharing these parameters with a workspace of its own (for another thread).
    virtual std::unique_ptr<scorer> clone() const = 0;
    // The input's position by name (throws, naming the inputs, if there is none).
    std::size_t input_index(std::string_view name) const {
        for (std::size_t i = 0; i < n_inputs(); ++i)
            if (input_name(i) == name) return i;
        std::string names;
        for (std::size_t i = 0; i < n_inputs(); ++i) names += (i ? ", " : "") + std::string(input_name(i));
        throw error("ctrec: the model has no input '" + std::string(name) + "' (inputs: " + names + ")");
    }
};

// Program P behind the scorer interface.
template <class P>
class compiled_scorer final : public scorer<typename P::element_type> {
    using T = typename P::element_type;

public:
    explicit compiled_scorer(const typename P::parameters& p) : params_(prepared_copy(p)) {}
    explicit compiled_scorer(std::shared_ptr<const typename P::parameters> p) : params_(std::move(p)) {
        if (!params_->prepared())
            throw error("ctrec: compiled_scorer: the shared parameters are not prepared (call prepare() first)");
    }
    std::size_t n_inputs() const override { return P::n_inputs; }
    std::string_view input_name(std::size_t i) const override { return P::tab.name_of(P::input_ids.at(i)); }
    std::size_t input_size(std::size_t i) const override { return P::tab.nodes[P::input_ids.at(i)].shape.size(); }
    bool input_batched(std::size_t i) const override { return P::tab.nodes[P::input_ids.at(i)].batched; }
    std::size_t n_outputs() const override { return P::n_outputs; }
    std::size_t output_size(std::size_t r) const override {
        if (r >= P::n_outputs) throw error("ctrec: output " + std::to_string(r) + " out of range");
        return P::tab.nodes[P::tab.roots[r]].shape.size();
    }
    void score(std::size_t batch, const T* const* in, T* const* out) override {
        typename P::io io;
        for (std::size_t i = 0; i < P::n_inputs; ++i) io.in[i] = in[i];
        for (std::size_t r = 0; r < P::n_outputs; ++r) io.out[r] = out[r];
        P::run(*params_, ws_, batch, io);  // checks every binding
    }
    std::unique_ptr<scorer<T>> clone() const override { return std::make_unique<compiled_scorer>(params_); }

private:
    static std::shared_ptr<const typename P::parameters> prepared_copy(const typename P::parameters& p) {
        auto c = std::make_shared<typename P::parameters>(p);
        c->prepare();
        return c;
    }
    std::shared_ptr<const typename P::parameters> params_;
    typename P::workspace ws_;
};

// Scorers by name.
template <class T>
class scorer_registry {
public:
    template <class P>
    scorer<T>& add(std::string name, const typename P::parameters& p) {
        static_assert(std::is_same_v<typename P::element_type, T>, "ctrec: scorer_registry: element type differs");
        if (models_.count(name)) throw error("ctrec: scorer_registry: a model named '" + name + "' is already registered");
        auto s = std::make_unique<compiled_scorer<P>>(p);
        auto& r = *s;
        models_.emplace(std::move(name), std::move(s));
        return r;
    }
    scorer<T>& get(std::string_view name) const {
        auto it = models_.find(std::string(name));
        if (it == models_.end()) {
            std::string names;
            for (auto& [n, m] : models_) names += (names.empty() ? "" : ", ") + n;
            throw error("ctrec: scorer_registry: no model named '" + std::string(name) + "' (registered: " + names + ")");
        }
        return *it->second;
    }
    std::vector<std::string> names() const {
        std::vector<std::string> v;
        for (auto& [n, m] : models_) v.push_back(n);
        return v;
    }

private:
    std::map<std::string, std::unique_ptr<scorer<T>>> models_;
};

} // namespace ctrec
