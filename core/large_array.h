// LargeArray: a fixed-size array of trivial values for the big, long-lived
// tables of the ingress (the dedupe window, the event log's slots).
//
// Anonymous mmap: zero-filled, and pages cost memory only once touched, with
// no initialising pass over tables of tens of megabytes.
// Owned by one thread at a time; not thread-safe.
#pragma once

#include <cstddef>
#include <type_traits>

namespace shop {

namespace detail {
void* mapLarge(size_t bytes);  // zeroed; throws std::bad_alloc
void unmapLarge(void* p, size_t bytes) noexcept;
}  // namespace detail

template <typename T>
class LargeArray {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>,
                "LargeArray holds trivial values whose all-zero bytes are a valid value");

 public:
  LargeArray() = default;
  explicit LargeArray(size_t n)
      : data_(n ? static_cast<T*>(detail::mapLarge(n * sizeof(T))) : nullptr), size_(n) {}
  ~LargeArray() { detail::unmapLarge(data_, size_ * sizeof(T)); }
  LargeArray(LargeArray&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  LargeArray& operator=(LargeArray&& other) noexcept {
    if (this != &other) {
      detail::unmapLarge(data_, size_ * sizeof(T));
      data_ = other.data_;
      size_ = other.size_;
      other.data_ = nullptr;
      other.size_ = 0;
    }
    return *this;
  }
  LargeArray(const LargeArray&) = delete;
  LargeArray& operator=(const LargeArray&) = delete;

  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  size_t size() const { return size_; }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace shop
