// Element types and their conversions.
//
// Storage types: f32, bf16, f16, fp8 e4m3 (the "fn" variant: no infinities, one NaN code
// per sign, max finite 448), i32, i64. All float -> narrow conversions round to nearest,
// ties to even. NaN stays NaN (quiet). Overflow: bf16/f16 round to +-inf as IEEE does;
// fp8 e4m3 has no inf, so anything that rounds past 448 (and inf itself) becomes NaN,
// the non-saturating behaviour of PyTorch's float8_e4m3fn cast.
//
// The conversion functions are constexpr and usable from CUDA device code (GRPO_HD).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#if defined(__CUDACC__)
#define GRPO_HD __host__ __device__
#else
#define GRPO_HD
#endif

namespace grpo {

enum class DType : uint8_t { f32, bf16, f16, fp8_e4m3, i32, i64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "f32", "bf16", "f16", "fp8_e4m3", "i32", "i64"
// Parses the names above; throws grpo::Error naming `s` and the accepted names.
DType dtype_from_name(std::string_view s);
bool dtype_is_float(DType t);

namespace detail {
GRPO_HD constexpr uint32_t f32_bits(float f) { return __builtin_bit_cast(uint32_t, f); }
GRPO_HD constexpr float f32_from_bits(uint32_t u) { return __builtin_bit_cast(float, u); }
// m >> s rounded to nearest, ties to even. s in [1, 31].
GRPO_HD constexpr uint32_t shift_rne(uint32_t m, uint32_t s) {
  uint32_t q = m >> s;
  uint32_t rem = m & ((1u << s) - 1u);
  uint32_t half = 1u << (s - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return q;
}
}  // namespace detail

// ---- bf16: 1 sign, 8 exponent, 7 mantissa bits (the upper half of an f32) ----
GRPO_HD constexpr uint16_t f32_to_bf16(float f) {
  uint32_t u = detail::f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
GRPO_HD constexpr float bf16_to_f32(uint16_t h) { return detail::f32_from_bits(uint32_t(h) << 16); }

// ---- f16 (IEEE binary16): 1 sign, 5 exponent, 10 mantissa bits ----
GRPO_HD constexpr uint16_t f32_to_f16(float f) {
  uint32_t x = detail::f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((x >> 13) & 0x3ffu));  // NaN
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (x >= 0x38800000u) {  // normal half (>= 2^-14)
    uint32_t v = x - (112u << 23);
    v = (v + 0x0fffu + ((v >> 13) & 1u)) >> 13;
    return static_cast<uint16_t>(sign | v);
  }
  const uint32_t e = x >> 23;  // subnormal half or zero; unit 2^-24
  if (e < 102u) return static_cast<uint16_t>(sign);
  const uint32_t m = (x & 0x7fffffu) | 0x800000u;
  return static_cast<uint16_t>(sign | detail::shift_rne(m, 126u - e));
}
GRPO_HD constexpr float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    // subnormal: man * 2^-24, exact in f32
    float v = float(man) * 5.9604644775390625e-08f;
    return detail::f32_from_bits(detail::f32_bits(v) | sign);
  }
  if (exp == 31) return detail::f32_from_bits(sign | 0x7f800000u | (man << 13));
  return detail::f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

// ---- fp8 e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; S.1111.111 is NaN ----
GRPO_HD constexpr uint8_t f32_to_fp8_e4m3(float f) {
  uint32_t x = detail::f32_bits(f);
  const uint32_t sign = (x >> 24) & 0x80u;
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return static_cast<uint8_t>(sign | 0x7fu);  // inf and NaN -> NaN
  if (x >= 0x3c800000u) {  // normal (>= 2^-6)
    uint32_t v = x - (120u << 23);
    v = (v + 0x7ffffu + ((v >> 20) & 1u)) >> 20;
    if (v > 0x7eu) return static_cast<uint8_t>(sign | 0x7fu);  // past 448: NaN
    return static_cast<uint8_t>(sign | v);
  }
  const uint32_t e = x >> 23;  // subnormal or zero; unit 2^-9
  if (e < 117u) return static_cast<uint8_t>(sign);
  const uint32_t m = (x & 0x7fffffu) | 0x800000u;
  return static_cast<uint8_t>(sign | detail::shift_rne(m, 141u - e));
}
GRPO_HD constexpr float fp8_e4m3_to_f32(uint8_t b) {
  const uint32_t sign = uint32_t(b & 0x80u) << 24;
  const uint32_t exp = (b >> 3) & 0xfu;
  const uint32_t man = b & 0x7u;
  if (exp == 0xfu && man == 0x7u) return detail::f32_from_bits(sign | 0x7fc00000u);
  if (exp == 0) {
    float v = float(man) * 0.001953125f;  // man * 2^-9
    return detail::f32_from_bits(detail::f32_bits(v) | sign);
  }
  return detail::f32_from_bits(sign | ((exp + 120u) << 23) | (man << 20));
}

}  // namespace grpo
