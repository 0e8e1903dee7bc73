#pragma once
// Partitioned variables (spec layers-core-and-cross.md 2.5). In Monolith a `partitioner`
// shards Dense's kernel (and its kernel norm) across parameter servers; partitioning never
// changes the mathematics, so a ctrec model has no partitioner argument. What remains is
// the storage: a checkpoint holds "<leaf>/part_0 ... part_{n-1}", split along one axis.
//   variable_axis_size_partitioner(...)  the shard count TF would choose
//   shard_sizes(extent, n)               rows per shard: the first extent % n get one more
//   concat_shards(shards, shape, axis, out)  reassembles the full variable (the importer's
//                                        job), checking every size first: on a bad shard
//                                        it throws ctrec::error and leaves `out` untouched.
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "ctrec/core/dims.hpp"
#include "ctrec/core/error.hpp"

namespace ctrec::layers {

// TF's variable_axis_size_partitioner: slices of the axis per shard so that a shard stays
// within max_shard_bytes (4-byte elements), at most max_shards shards.
constexpr std::size_t variable_axis_size_partitioner(std::size_t max_shard_bytes, const dims& shape, std::size_t axis,
                                                     std::size_t max_shards) {
    const std::size_t extent = shape.d[axis];
    const std::size_t bytes_per_slice = shape.size() / extent * 4;
    std::size_t per_shard = max_shard_bytes / bytes_per_slice;
    if (per_shard < 1) per_shard = 1;
    const std::size_t n = (extent + per_shard - 1) / per_shard;
    return n < max_shards ? n : max_shards;
}

inline std::vector<std::size_t> shard_sizes(std::size_t extent, std::size_t n) {
    if (n == 0 || n > extent) throw error("ctrec: a variable of extent " + std::to_string(extent) + " cannot have " +
                                          std::to_string(n) + " shards");
    std::vector<std::size_t> s(n, extent / n);
    for (std::size_t i = 0; i < extent % n; ++i) ++s[i];
    return s;
}

// Concatenates shards (in part_0, part_1, ... order) along `axis` into `out` (row-major, the
// full shape). Validates all sizes before writing anything.
template <class T>
void concat_shards(std::span<const std::span<const T>> shards, const dims& shape, std::size_t axis, std::span<T> out,
                   std::string_view name = "variable") {
    const std::string who = "ctrec: shards of '" + std::string(name) + "'";
    if (axis >= shape.rank) throw error(who + ": axis " + std::to_string(axis) + " out of range");
    if (out.size() != shape.size()) throw error(who + ": destination holds " + std::to_string(out.size()) + " values, expected " + std::to_string(shape.size()));
    const std::size_t inner = shape.stride(axis), outer = shape.size() / (shape.d[axis] * inner);
    std::size_t rows = 0;
    for (std::size_t i = 0; i < shards.size(); ++i) {
        const std::size_t slab = outer * inner;
        if (slab == 0 || shards[i].size() % slab != 0 || shards[i].empty())
            throw error(who + ": part_" + std::to_string(i) + " holds " + std::to_string(shards[i].size()) +
                        " values, not a whole number of slices of " + std::to_string(slab));
        rows += shards[i].size() / slab;
    }
    if (rows != shape.d[axis])
        throw error(who + ": the parts add up to " + std::to_string(rows) + " slices along axis " + std::to_string(axis) +
                    ", expected " + std::to_string(shape.d[axis]));
    std::size_t at = 0;
    for (const auto& part : shards) {
        const std::size_t r = part.size() / (outer * inner);
        for (std::size_t o = 0; o < outer; ++o)
            for (std::size_t x = 0; x < r; ++x)
                for (std::size_t v = 0; v < inner; ++v)
                    out[(o * shape.d[axis] + at + x) * inner + v] = part[(o * r + x) * inner + v];
        at += r;
    }
}

} // namespace ctrec::layers
