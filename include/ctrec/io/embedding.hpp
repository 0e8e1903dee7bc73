#pragma once
// Embedding tables for sparse features: ids -> rows -> pooled vectors, outside the graph.
//
// A model's graph takes the pooled embeddings as a dense input (one (fields, Dim) or
// (fields * Dim) row per example); the table looks them up before the run and, when training,
// scatters the input gradient the grad / train program returns (d loss / d input) back into the
// rows it used. Only those rows are read, written or updated: a batch costs O(ids * Dim),
// whatever the vocabulary.
//
//   ctrec::embedding_table<float, 16> t("user_id", 100'000);   t.initialize(seed, 0.05);
//   t.lookup(ids, offsets, ctrec::pooling::sum, x + f * 16, stride);          // field f of x
//   t.backward(ids, offsets, ctrec::pooling::sum, dx + f * 16, stride, grad);  // after the run
//   t.apply(rule, grad, state);                                                // sparse update
//
// Ids are hashed into the table, so any 64-bit id (negative, huge, out of the vocabulary) maps
// to a row and none is ever read out of bounds:
//   row(id) = splitmix64(uint64(id)) mod vocab     (splitmix64: core/random.hpp)
// Distinct ids may share a row (the usual hashing trick; at vocab = 100k and 10k distinct ids
// ~5% collide). A field with no id in an example (offsets[b] == offsets[b + 1]) gives zeros.
//
// Multi-valent fields use CSR offsets: example b's ids are ids[offsets[b] .. offsets[b + 1]),
// offsets has batch + 1 entries, non-decreasing, offsets[batch] == ids.size() (checked).
// Single-valent fields pass offsets = {} (one id per example).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ctrec/core/error.hpp"
#include "ctrec/core/random.hpp"
#include "ctrec/core/storage.hpp"

namespace ctrec {

enum class pooling { sum, mean };

// Row of `id` in a table of `vocab` rows (the documented hash).
inline std::size_t embedding_row(std::int64_t id, std::size_t vocab) {
    return static_cast<std::size_t>(detail::splitmix64(static_cast<std::uint64_t>(id)) % vocab);
}

// The rows a batch touched and their accumulated gradients (reused across batches: clear()
// keeps the capacity, so a training loop stops allocating once it has seen its largest batch).
template <class T, std::size_t Dim>
class sparse_gradient {
public:
    std::span<const std::uint32_t> rows() const { return rows_; }
    std::span<const T> values(std::size_t k) const { return {values_.data() + k * Dim, Dim}; }
    std::size_t size() const { return rows_.size(); }
    void clear() {
        for (std::uint32_t r : rows_) slot_of_[r] = ~0u;
        rows_.clear();
        values_.clear();
    }
    // d (a Dim-vector) added to row r's gradient
    void add(std::uint32_t r, const T* d, T scale, std::size_t vocab) {
        if (slot_of_.size() != vocab) slot_of_.assign(vocab, ~0u), rows_.clear(), values_.clear();
        std::uint32_t& s = slot_of_[r];
        if (s == ~0u) {
            s = static_cast<std::uint32_t>(rows_.size());
            rows_.push_back(r);
            values_.resize(values_.size() + Dim, T(0));
        }
        T* v = values_.data() + std::size_t(s) * Dim;
        for (std::size_t k = 0; k < Dim; ++k) v[k] += scale * d[k];
    }

private:
    std::vector<std::uint32_t> rows_;
    std::vector<T> values_;
    std::vector<std::uint32_t> slot_of_;  // row -> index in rows_, ~0u when absent
};

template <class T, std::size_t Dim>
class embedding_table {
    static_assert(Dim > 0, "ctrec: an embedding table needs a positive width");

public:
    static constexpr std::size_t width = Dim;

    embedding_table(std::string name, std::size_t vocab) : name_(std::move(name)), vocab_(vocab) {
        if (vocab == 0 || vocab > 0xFFFFFFFEull)
            throw error("ctrec: embedding table '" + name_ + "': vocabulary size must be in [1, 2^32 - 2], got " +
                        std::to_string(vocab));
        data_ = aligned_buffer<T>(vocab * Dim);
    }

    const std::string& name() const { return name_; }
    std::size_t vocab() const { return vocab_; }
    std::span<T> values() { return {data_.data(), vocab_ * Dim}; }
    std::span<const T> values() const { return {data_.data(), vocab_ * Dim}; }
    std::span<T> row(std::size_t r) { return {data_.data() + r * Dim, Dim}; }
    std::span<const T> row(std::size_t r) const { return {data_.data() + r * Dim, Dim}; }
    std::size_t row_of(std::int64_t id) const { return embedding_row(id, vocab_); }

    // Uniform [-scale, scale) from (seed, the table's name, row, column): the same values
    // whatever the order tables are created in.
    void initialize(std::uint64_t seed, double scale) {
        const std::uint64_t stream = stream_of(name_);
        for (std::size_t r = 0; r < vocab_; ++r)
            for (std::size_t k = 0; k < Dim; ++k)
                data_[r * Dim + k] = static_cast<T>(scale * (2.0 * random_uniform_value<double>(seed, stream, r, k) - 1.0));
    }

    // out + b * stride receives example b's pooled vector (Dim values).
    void lookup(std::span<const std::int64_t> ids, std::span<const std::uint32_t> offsets, pooling pool, T* out,
                std::size_t stride) const {
        const std::size_t batch = check(ids, offsets);
        for (std::size_t b = 0; b < batch; ++b) {
            T* o = out + b * stride;
            std::fill_n(o, Dim, T(0));
            const auto [lo, hi] = range(offsets, b);
            for (std::size_t i = lo; i < hi; ++i) {
                const T* v = data_.data() + row_of(ids[i]) * Dim;
                for (std::size_t k = 0; k < Dim; ++k) o[k] += v[k];
            }
            if (pool == pooling::mean && hi - lo > 1)
                for (std::size_t k = 0; k < Dim; ++k) o[k] /= static_cast<T>(hi - lo);
        }
    }

    // The transpose of lookup: dout + b * stride (d loss / d pooled vector of example b) added to
    // the gradient of every row example b used (divided by the count under mean pooling).
    void backward(std::span<const std::int64_t> ids, std::span<const std::uint32_t> offsets, pooling pool,
                  const T* dout, std::size_t stride, sparse_gradient<T, Dim>& g) const {
        const std::size_t batch = check(ids, offsets);
        for (std::size_t b = 0; b < batch; ++b) {
            const auto [lo, hi] = range(offsets, b);
            const T scale = pool == pooling::mean && hi - lo > 1 ? T(1) / static_cast<T>(hi - lo) : T(1);
            for (std::size_t i = lo; i < hi; ++i)
                g.add(static_cast<std::uint32_t>(row_of(ids[i])), dout + b * stride, scale, vocab_);
        }
    }

    // Optimizer state of rule R for this table (its slots, vocab x Dim each).
    template <class R>
    struct state {
        explicit state(const embedding_table& t, const R& rule = {}) : data(t.vocab_ * Dim * (R::slots.size() ? R::slots.size() : 1)) {
            for (std::size_t s = 0; s < R::slots.size(); ++s)
                std::fill_n(data.data() + s * t.vocab_ * Dim, t.vocab_ * Dim, static_cast<T>(rule.initial(s)));
        }
        aligned_buffer<T> data;
        std::uint64_t steps = 0;
    };

    // One step of rule R (train/optimizers.hpp) on the rows in g only.
    template <class R>
    void apply(const R& rule, const sparse_gradient<T, Dim>& g, state<R>& st) {
        ++st.steps;
        constexpr std::size_t ns = R::slots.size();
        for (std::size_t k = 0; k < g.size(); ++k) {
            const std::size_t r = g.rows()[k];
            T* s[ns ? ns : 1];
            for (std::size_t j = 0; j < ns; ++j) s[j] = st.data.data() + j * vocab_ * Dim + r * Dim;
            rule.update(data_.data() + r * Dim, g.values(k).data(), s, Dim, st.steps);
        }
    }

private:
    static std::uint64_t stream_of(const std::string& n) {
        std::uint64_t h = 1469598103934665603ull;
        for (char c : n) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
        return h;
    }
    static std::pair<std::size_t, std::size_t> range(std::span<const std::uint32_t> offsets, std::size_t b) {
        if (offsets.empty()) return {b, b + 1};
        return {offsets[b], offsets[b + 1]};
    }
    // The batch size; throws (naming the table) when offsets are not a valid CSR over ids.
    std::size_t check(std::span<const std::int64_t> ids, std::span<const std::uint32_t> offsets) const {
        if (offsets.empty()) return ids.size();
        if (offsets.front() != 0 || offsets.back() != ids.size())
            throw error("ctrec: embedding table '" + name_ + "': offsets must start at 0 and end at the number of ids (" +
                        std::to_string(ids.size()) + "), got " + std::to_string(offsets.front()) + " .. " +
                        std::to_string(offsets.back()));
        for (std::size_t b = 0; b + 1 < offsets.size(); ++b)
            if (offsets[b] > offsets[b + 1])
                throw error("ctrec: embedding table '" + name_ + "': offsets decrease at example " + std::to_string(b));
        return offsets.size() - 1;
    }

    std::string name_;
    std::size_t vocab_;
    aligned_buffer<T> data_;
};

} // namespace ctrec
