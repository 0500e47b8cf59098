// Tensor: a non-owning, contiguous, row-major view of up to 4 dimensions.
//
// A Tensor is (data pointer, dtype, device, shape). It never owns memory: Buffer and Arena
// (core/buffer.h) own it. There are no strides: every Tensor is contiguous row-major, so
// ops can treat it as flat memory; a "view" is a reshape of the same elements or a range
// of rows along dimension 0 (both stay contiguous). A default-constructed Tensor is
// "undefined" (ndim == 0) and is how optional tensor arguments are passed as absent.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"

namespace grpo {

enum class Device : uint8_t { cpu, cuda };
const char* device_name(Device d);

inline constexpr int kMaxDims = 4;

template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};

  Tensor() = default;
  Tensor(void* data, DType dtype, std::initializer_list<int64_t> shape, Device device = Device::cpu);
  Tensor(void* data, DType dtype, const int64_t* shape, int ndim, Device device = Device::cpu);

  bool defined() const { return ndim > 0; }
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  // size(-1) is the last dimension.
  int64_t size(int dim) const;
  // "f32[3, 4]" (and "cuda:" prefix on the device), "undefined" when not defined.
  std::string str() const;

  // Typed pointer; throws if the dtype does not match T (bf16/f16 use uint16_t, fp8 uint8_t).
  template <class T>
  T* ptr() const {
    GRPO_CHECK(dtype_of<T>() == dtype, "tensor " << str() << " accessed as " << dtype_name(dtype_of<T>()));
    return static_cast<T*>(data);
  }

  // Same elements, new shape; the element count must agree.
  Tensor view(std::initializer_list<int64_t> new_shape) const;
  // Rows [begin, end) of dimension 0.
  Tensor rows(int64_t begin, int64_t end) const;
};

template <> constexpr DType dtype_of<uint16_t>() { return DType::bf16; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::fp8_e4m3; }

// Shape helpers for op argument checks; messages name the op and every shape.
bool same_shape(const Tensor& a, const Tensor& b);

}  // namespace grpo
