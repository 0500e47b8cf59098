// Owning memory: Allocator (one per device), Buffer (one allocation), Arena (activations).
//
// The CPU allocator is always present; the CUDA allocator lives in kernels/cuda and is
// reached through cuda_allocator() in kernels/cuda/cuda_runtime.h when CUDA is built.
// Arena hands out Tensors from one Buffer by bumping an offset: it is sized once for the
// largest batch, and a request past its capacity is a loud error naming both sizes,
// never a silent reallocation (llm.c's activation struct, generalised).
#pragma once

#include <cstddef>
#include <initializer_list>

#include "core/tensor.h"

namespace grpo {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual Device device() const = 0;
  // Returns memory aligned to at least 256 bytes; throws grpo::Error when out of memory.
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p, size_t bytes) noexcept = 0;
  virtual void memset_zero(void* p, size_t bytes) = 0;
  // Copies between this allocator's memory and host memory.
  virtual void copy_to_host(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* host_src, size_t bytes) = 0;
};

Allocator& cpu_allocator();

// Graph capture on the CPU backend (kernels/cpu) marks the capturing thread: while it is
// marked, the CPU allocator's allocate, memset_zero and copies throw on that thread, as the
// CUDA allocator's do while its stream records (what they did would happen once, at the
// capture, instead of at each replay).
void set_cpu_capturing_thread(bool capturing);

class Buffer {
 public:
  Buffer() = default;
  Buffer(Allocator& alloc, size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return bytes_; }
  Device device() const { return alloc_ ? alloc_->device() : Device::cpu; }
  Allocator* allocator() const { return alloc_; }
  void zero();
  // A tensor over bytes [byte_offset, byte_offset + nbytes) of this buffer (bounds checked).
  Tensor view(DType dtype, std::initializer_list<int64_t> shape, size_t byte_offset = 0) const;

 private:
  Allocator* alloc_ = nullptr;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

class Arena {
 public:
  static constexpr size_t kAlignment = 256;

  Arena(Allocator& alloc, size_t capacity_bytes);

  // A fresh tensor; its contents are unspecified (not zeroed).
  Tensor alloc(DType dtype, std::initializer_list<int64_t> shape);
  Tensor alloc(DType dtype, const int64_t* shape, int ndim);
  // mark()/release(mark) free everything allocated after the mark, in stack order.
  size_t mark() const { return used_; }
  void release(size_t mark);
  void reset() { used_ = 0; }

  size_t used() const { return used_; }
  size_t peak() const { return peak_; }
  size_t capacity() const { return buffer_.size(); }
  Device device() const { return buffer_.device(); }

 private:
  Buffer buffer_;
  size_t used_ = 0;
  size_t peak_ = 0;
};

}  // namespace grpo
