#pragma once
// Owning, 64-byte aligned storage. Allocated once at setup; scoring never allocates.
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace ctrec {

template <class T>
class aligned_buffer {
public:
    aligned_buffer() = default;
    explicit aligned_buffer(std::size_t n) : n_(n) {
        if (n) {
            p_ = static_cast<T*>(std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64));
            if (!p_) throw std::bad_alloc();
            std::memset(static_cast<void*>(p_), 0, n * sizeof(T));
        }
    }
    aligned_buffer(const aligned_buffer& o) : aligned_buffer(o.n_) {
        if (n_) std::memcpy(static_cast<void*>(p_), o.p_, n_ * sizeof(T));
    }
    aligned_buffer(aligned_buffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
    aligned_buffer& operator=(aligned_buffer o) noexcept {
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
        return *this;
    }
    ~aligned_buffer() { std::free(p_); }
    T* data() { return p_; }
    const T* data() const { return p_; }
    std::size_t size() const { return n_; }
    T& operator[](std::size_t i) { return p_[i]; }
    const T& operator[](std::size_t i) const { return p_[i]; }

private:
    T* p_ = nullptr;
    std::size_t n_ = 0;
};

} // namespace ctrec
