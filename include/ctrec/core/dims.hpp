#pragma once
// dims: a per-example shape as a constexpr value (rank <= 8, row-major).
// Shape algebra is written as constexpr functions over dims, not as recursive
// templates, to keep compile time low. The batch axis is never part of dims:
// it is implicit and runtime (see expr.hpp, "batched").
#include <array>
#include <cstddef>
#include <utility>

namespace ctrec {

inline constexpr std::size_t max_rank = 8;

struct dims {
    std::size_t rank = 0;
    std::size_t d[max_rank] = {};

    constexpr std::size_t size() const {
        std::size_t s = 1;
        for (std::size_t i = 0; i < rank; ++i) s *= d[i];
        return s;
    }
    constexpr std::size_t operator[](std::size_t i) const { return d[i]; }
    constexpr bool operator==(const dims&) const = default;
    // Row-major stride of axis i.
    constexpr std::size_t stride(std::size_t i) const {
        std::size_t s = 1;
        for (std::size_t j = i + 1; j < rank; ++j) s *= d[j];
        return s;
    }
    constexpr std::size_t last() const { return rank ? d[rank - 1] : 1; }
};

template <std::size_t... D>
constexpr dims make_dims() {
    static_assert(sizeof...(D) <= max_rank, "ctrec: rank above 8 is not supported");
    dims r;
    r.rank = sizeof...(D);
    std::size_t i = 0;
    ((r.d[i++] = D), ...);
    return r;
}

// shape<3, 4>: a type that spells a shape, so that compiler diagnostics read
// "shape<3, 4>" instead of the raw dims aggregate.
template <std::size_t... D>
struct shape {};

namespace detail {
template <dims S, std::size_t... I>
auto shape_of_impl(std::index_sequence<I...>) -> shape<S.d[I]...>;
}
template <dims S>
using shape_of = decltype(detail::shape_of_impl<S>(std::make_index_sequence<S.rank>{}));

// ---- broadcasting (NumPy rules: align on the right, 1 stretches) ----
constexpr bool can_broadcast(dims a, dims b) {
    std::size_t r = a.rank > b.rank ? a.rank : b.rank;
    for (std::size_t i = 0; i < r; ++i) {
        std::size_t x = i < a.rank ? a.d[a.rank - 1 - i] : 1;
        std::size_t y = i < b.rank ? b.d[b.rank - 1 - i] : 1;
        if (x != y && x != 1 && y != 1) return false;
    }
    return true;
}
constexpr dims broadcast(dims a, dims b) {
    dims o;
    o.rank = a.rank > b.rank ? a.rank : b.rank;
    for (std::size_t i = 0; i < o.rank; ++i) {
        std::size_t x = i < a.rank ? a.d[a.rank - 1 - i] : 1;
        std::size_t y = i < b.rank ? b.d[b.rank - 1 - i] : 1;
        o.d[o.rank - 1 - i] = x == 1 ? y : x;
    }
    return o;
}

// For an operand of shape `op` broadcast into `out`: the operand's stride for
// each axis of `out` (0 where the operand is broadcast along that axis).
constexpr std::array<std::size_t, max_rank> bcast_strides(dims op, dims out) {
    std::array<std::size_t, max_rank> s{};
    for (std::size_t i = 0; i < out.rank; ++i) {
        std::size_t oi = out.rank - 1 - i;
        if (i < op.rank) {
            std::size_t ai = op.rank - 1 - i;
            s[oi] = op.d[ai] == 1 && out.d[oi] != 1 ? 0 : op.stride(ai);
        }
    }
    return s;
}

// Maps a flat index of `out` to the flat index of the broadcast operand `op`.
// All divisors are compile-time constants, so this compiles to multiplies.
template <dims op, dims out>
constexpr std::size_t bcast_index(std::size_t i) {
    if constexpr (op == out) {
        return i;
    } else if constexpr (op.size() == 1) {
        return 0;
    } else {
        constexpr auto s = bcast_strides(op, out);
        std::size_t r = 0;
        [&]<std::size_t... A>(std::index_sequence<A...>) {
            ((r += s[A] ? ((i / out.stride(A)) % out.d[A]) * s[A] : 0), ...);
        }(std::make_index_sequence<out.rank>{});
        return r;
    }
}

// Length of the longest suffix of `out` over which the operand is read either
// contiguously (as a flat run) or as one constant value. Fused loops take SIMD
// steps inside such runs only.
constexpr std::size_t bcast_run(dims op, dims out) {
    if (op == out || op.size() == 1) return out.size();
    auto s = bcast_strides(op, out);
    std::size_t run = 1;
    bool bcast_mode = false;
    for (std::size_t k = 0; k < out.rank; ++k) {
        std::size_t i = out.rank - 1 - k;
        bool b = s[i] == 0;
        if (k == 0) bcast_mode = b;
        else if (b != bcast_mode) break;
        // contiguous mode also needs the operand stride to match the flat position
        if (!b && s[i] != out.stride(i)) break;
        run *= out.d[i];
    }
    return run;
}

// True when, inside such a run, the operand is one constant value.
constexpr bool bcast_constant(dims op, dims out) {
    if (op.size() == 1) return true;
    if (op == out || out.rank == 0) return false;
    return bcast_strides(op, out)[out.rank - 1] == 0;
}

// ---- reductions, transposes, slices ----
// `mask` has bit i set for each reduced axis.
constexpr dims reduce_dims(dims a, unsigned mask, bool keep = false) {
    dims o;
    for (std::size_t i = 0; i < a.rank; ++i) {
        if (mask >> i & 1u) {
            if (keep) o.d[o.rank++] = 1;
        } else {
            o.d[o.rank++] = a.d[i];
        }
    }
    return o;
}
constexpr dims keepdims(dims a, unsigned mask) { return reduce_dims(a, mask, true); }

constexpr bool is_permutation(dims perm, std::size_t rank) {
    if (perm.rank != rank) return false;
    for (std::size_t i = 0; i < rank; ++i) {
        bool found = false;
        for (std::size_t j = 0; j < rank; ++j) found |= perm.d[j] == i;
        if (!found) return false;
    }
    return true;
}
constexpr dims permute(dims a, dims perm) {
    dims o;
    o.rank = a.rank;
    for (std::size_t i = 0; i < a.rank; ++i) o.d[i] = a.d[perm.d[i]];
    return o;
}
constexpr dims inverse_permutation(dims perm) {
    dims o;
    o.rank = perm.rank;
    for (std::size_t i = 0; i < perm.rank; ++i) o.d[perm.d[i]] = i;
    return o;
}
constexpr dims with_axis(dims a, std::size_t axis, std::size_t n) {
    a.d[axis] = n;
    return a;
}
constexpr dims insert_axis(dims a, std::size_t axis, std::size_t n) {
    dims o;
    o.rank = a.rank + 1;
    for (std::size_t i = 0, j = 0; i < o.rank; ++i) o.d[i] = i == axis ? n : a.d[j++];
    return o;
}
constexpr dims concat_dims(dims a, dims b) {  // [a..., b...]
    dims o = a;
    for (std::size_t i = 0; i < b.rank; ++i) o.d[o.rank++] = b.d[i];
    return o;
}
constexpr dims drop_front(dims a, std::size_t n) {
    dims o;
    for (std::size_t i = n; i < a.rank; ++i) o.d[o.rank++] = a.d[i];
    return o;
}
constexpr unsigned all_axes(std::size_t rank) { return rank ? (1u << rank) - 1u : 0u; }

} // namespace ctrec
