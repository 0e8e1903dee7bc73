#pragma once
// What the Thrust backend's device code needs besides the plan: the host/device marker, scalar
// maths and the elementwise ops callable from a CUDA kernel, the random leaves of core/random.hpp
// in device-callable form, and device memory with clear errors. Plain C++ when not compiled by
// nvcc: THRUST_DEVICE_SYSTEM_OMP / _CPP run the same code on the CPU.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>

#include <thrust/device_free.h>
#include <thrust/device_malloc.h>
#include <thrust/device_ptr.h>
#include <thrust/system_error.h>

#include "ctrec/core/error.hpp"
#include "ctrec/core/graph.hpp"
#include "ctrec/core/random.hpp"

#if defined(__CUDACC__)
#define CTREC_HOST_DEVICE __host__ __device__
#else
#define CTREC_HOST_DEVICE
#endif
// Host code keeps some large functions out of line (compile time); device code inlines them.
#if defined(__CUDA_ARCH__)
#define CTREC_HOST_NOINLINE
#else
#define CTREC_HOST_NOINLINE [[gnu::noinline]]
#endif

// True when Thrust's device system is CUDA: device memory is not host memory, so parameters,
// inputs and outputs are copied (see executor.hpp, "CUDA only").
#if !defined(CTREC_THRUST_CUDA)
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#define CTREC_THRUST_CUDA 1
#else
#define CTREC_THRUST_CUDA 0
#endif
#endif
#if CTREC_THRUST_CUDA
#include <cuda_runtime.h>
#endif

namespace ctrec::gpu {

// Scalar maths for host and device (CUDA's device library under __CUDA_ARCH__, <cmath> otherwise).
template <class T>
struct dmath {
#if defined(__CUDA_ARCH__)
    // CUDA's device library: the float functions by their C names, so no overload is ambiguous
    static constexpr bool f32 = sizeof(T) == 4;
    static __device__ T exp(T x) { if constexpr (f32) return ::expf(x); else return ::exp(x); }
    static __device__ T log(T x) { if constexpr (f32) return ::logf(x); else return ::log(x); }
    static __device__ T log1p(T x) { if constexpr (f32) return ::log1pf(x); else return ::log1p(x); }
    static __device__ T sqrt(T x) { if constexpr (f32) return ::sqrtf(x); else return ::sqrt(x); }
    static __device__ T tanh(T x) { if constexpr (f32) return ::tanhf(x); else return ::tanh(x); }
    static __device__ T erf(T x) { if constexpr (f32) return ::erff(x); else return ::erf(x); }
    static __device__ T cos(T x) { if constexpr (f32) return ::cosf(x); else return ::cos(x); }
#else
    static T exp(T x) { return std::exp(x); }
    static T log(T x) { return std::log(x); }
    static T log1p(T x) { return std::log1p(x); }
    static T sqrt(T x) { return std::sqrt(x); }
    static T tanh(T x) { return std::tanh(x); }
    static T erf(T x) { return std::erf(x); }
    static T cos(T x) { return std::cos(x); }
#endif
};

// The elementwise ops (graph.hpp), the CPU backend's apply<Op> for scalars: relu and maximum
// keep TF's tie rules (max(a, b) = a >= b ? a : b).
template <opcode Op, class T>
CTREC_HOST_DEVICE inline T apply(T a, T b, T c) {
    using M = dmath<T>;
    if constexpr (Op == opcode::add) return a + b;
    else if constexpr (Op == opcode::sub) return a - b;
    else if constexpr (Op == opcode::mul) return a * b;
    else if constexpr (Op == opcode::div) return a / b;
    else if constexpr (Op == opcode::neg) return -a;
    else if constexpr (Op == opcode::exp) return M::exp(a);
    else if constexpr (Op == opcode::log) return M::log(a);
    else if constexpr (Op == opcode::log1p) return M::log1p(a);
    else if constexpr (Op == opcode::sqrt) return M::sqrt(a);
    else if constexpr (Op == opcode::rsqrt) return T(1) / M::sqrt(a);
    else if constexpr (Op == opcode::tanh) return M::tanh(a);
    else if constexpr (Op == opcode::sigmoid) return T(1) / (T(1) + M::exp(-a));
    else if constexpr (Op == opcode::relu) return a >= T(0) || a != a ? a : T(0);  // NaN propagates
    else if constexpr (Op == opcode::maximum) return a >= b || a != a ? a : b;
    else if constexpr (Op == opcode::greater) return a > b ? T(1) : T(0);
    else if constexpr (Op == opcode::greater_equal) return a >= b ? T(1) : T(0);
    else if constexpr (Op == opcode::where) return a != T(0) ? b : c;
    else if constexpr (Op == opcode::minimum) return a <= b || a != a ? a : b;
    else if constexpr (Op == opcode::abs) return a < T(0) ? -a : a;
    else if constexpr (Op == opcode::erf) return M::erf(a);
    else if constexpr (Op == opcode::batch_broadcast) return a;
    else static_assert(Op == opcode::add, "ctrec internal: not an elementwise op");
    (void)b, (void)c;
}

// core/random.hpp's random_value, for host and device: the same bits (splitmix64 is constexpr)
// and the same transforms in double, rounded to T once. random_value uses std::nextafter, not
// callable on a device: nextafter(1, 0) is written out (1 - 2^-24 in float, 1 - 2^-53 in double).
CTREC_HOST_DEVICE inline std::uint64_t splitmix(std::uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
CTREC_HOST_DEVICE inline std::uint64_t random_bits(std::uint64_t seed, std::uint64_t stream, std::uint64_t e, std::uint64_t i) {
    return splitmix(splitmix(splitmix(seed ^ stream) + e) + i);
}
CTREC_HOST_DEVICE inline double open_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t e, std::uint64_t i) {
    return (static_cast<double>(random_bits(seed, stream, e, i) >> 40) + 0.5) * 0x1p-24;
}
template <class T>
CTREC_HOST_DEVICE T random_value(random_kind k, std::uint64_t seed, std::uint64_t stream, std::uint64_t e, std::uint64_t i) {
    using M = dmath<double>;
    switch (k) {
    case random_kind::uniform: {
        const std::uint64_t h = random_bits(seed, stream, e, i);
        if constexpr (sizeof(T) <= 4) return static_cast<T>(static_cast<double>(h >> 40) * 0x1p-24);
        else return static_cast<T>(static_cast<double>(h >> 11) * 0x1p-53);
    }
    case random_kind::open_uniform: {
        const T u = static_cast<T>(open_uniform(seed, stream, e, i));
        const T below_one = sizeof(T) <= 4 ? T(1.0 - 0x1p-24) : T(1.0 - 0x1p-53);
        return u < T(1) ? u : below_one;
    }
    case random_kind::normal: {
        const double u1 = open_uniform(seed, stream, e, 2 * i), u2 = open_uniform(seed, stream, e, 2 * i + 1);
        return static_cast<T>(M::sqrt(-2.0 * M::log(u1)) * M::cos(6.283185307179586 * u2));
    }
    case random_kind::gumbel:
        return static_cast<T>(-M::log(-M::log(open_uniform(seed, stream, e, i))));
    case random_kind::logistic: {
        const double u = open_uniform(seed, stream, e, i);
        return static_cast<T>(M::log(u) - M::log1p(-u));
    }
    }
    return T(0);
}

// Device memory that grows on demand and reports failures as ctrec::error. Its destructor never
// throws (at process exit the CUDA runtime may already be gone).
class device_bytes {
public:
    device_bytes() = default;
    device_bytes(const device_bytes&) = delete;
    device_bytes& operator=(const device_bytes&) = delete;
    ~device_bytes() { release(); }
    // At least n bytes; the old contents are not kept.
    char* reserve(std::size_t n, const char* what) {
        if (n <= size_) return p_.get();
        release();
        try {
            p_ = thrust::device_malloc<char>(n);
        } catch (const std::bad_alloc&) {
            throw error(std::string("ctrec thrust backend: out of device memory: ") + what + " needs " +
                        std::to_string(n) + " bytes");
        } catch (const thrust::system_error& e) {
            throw error(std::string("ctrec thrust backend: out of device memory: ") + what + " needs " +
                        std::to_string(n) + " bytes (" + e.what() + ")");
        }
        size_ = n;
        return p_.get();
    }
    char* get() const { return p_.get(); }
    std::size_t size() const { return size_; }

private:
    void release() noexcept {
        if (size_ == 0) return;
        try {
            thrust::device_free(p_);
        } catch (...) {
        }
        p_ = thrust::device_ptr<char>();
        size_ = 0;
    }
    thrust::device_ptr<char> p_{};
    std::size_t size_ = 0;
};

} // namespace ctrec::gpu
