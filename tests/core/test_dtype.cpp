// bf16 / f16 / fp8 e4m3 conversions: exhaustive round trips, ties to even, NaN, inf,
// subnormals and overflow, checked against an independent fp64 rounding reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "core/dtype.h"
#include "core/error.h"

namespace grpo {
namespace {

// Independent reference: the representable value nearest to x (ties to even mantissa) for
// a format with `man_bits` mantissa bits, minimum normal exponent `emin`, and largest
// finite value `max_finite`; values beyond rounding range return +-inf.
double round_to_format(double x, int man_bits, int emin, double max_finite, bool* overflow) {
  *overflow = false;
  if (x == 0) return x;
  double a = std::fabs(x);
  int e = std::max(int(std::floor(std::log2(a))), emin);
  double ulp = std::ldexp(1.0, e - man_bits);
  double q = a / ulp;
  double fl = std::floor(q);
  double r = q - fl;
  double n = (r > 0.5 || (r == 0.5 && std::fmod(fl, 2.0) == 1.0)) ? fl + 1 : fl;
  double v = n * ulp;
  if (v > max_finite) {
    *overflow = true;
    return std::copysign(INFINITY, x);
  }
  return std::copysign(v, x);
}

float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(DType, Bf16ExhaustiveRoundTrip) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = bf16_to_f32(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_bf16(f), h) << "bf16 code " << h;
  }
}

TEST(DType, F16ExhaustiveRoundTrip) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), h) << "f16 code " << h;
  }
}

TEST(DType, Fp8ExhaustiveRoundTrip) {
  for (uint32_t b = 0; b < 0x100; ++b) {
    float f = fp8_e4m3_to_f32(uint8_t(b));
    if (std::isnan(f)) {
      EXPECT_TRUE((b & 0x7f) == 0x7f);
      continue;
    }
    ASSERT_EQ(f32_to_fp8_e4m3(f), b) << "fp8 code " << b;
  }
  EXPECT_EQ(fp8_e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), 0.001953125f);  // smallest subnormal 2^-9
}

// Random floats over the whole range compared with the fp64 rounding reference.
TEST(DType, RandomValuesRoundToNearestEven) {
  std::mt19937 rng(42);
  for (int i = 0; i < 200000; ++i) {
    float x = bits_to_f32(rng());
    if (std::isnan(x) || std::isinf(x)) continue;
    bool of = false;
    double rb = round_to_format(x, 7, -126, 3.3895313892515355e38, &of);
    float gb = bf16_to_f32(f32_to_bf16(x));
    ASSERT_EQ(double(gb), rb) << "bf16 of " << x;
    double rh = round_to_format(x, 10, -14, 65504.0, &of);
    float gh = f16_to_f32(f32_to_f16(x));
    ASSERT_EQ(double(gh), rh) << "f16 of " << x;
    double r8 = round_to_format(x, 3, -6, 448.0, &of);
    float g8 = fp8_e4m3_to_f32(f32_to_fp8_e4m3(x));
    if (of) {
      ASSERT_TRUE(std::isnan(g8)) << "fp8 of " << x << " should overflow to NaN";
    } else {
      ASSERT_EQ(double(g8), r8) << "fp8 of " << x;
    }
  }
}

TEST(DType, TiesGoToEven) {
  // bf16 around 1: ulp 2^-7. 1 + 2^-8 is a tie between 1 (even) and 1 + 2^-7 (odd).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.0f + std::ldexp(1.0f, -6));
  // f16 around 1: ulp 2^-10.
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.0f + std::ldexp(1.0f, -11))), 1.0f);
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11))), 1.0f + std::ldexp(1.0f, -9));
  // f16 subnormal tie: 2^-25 is half the smallest subnormal -> 0 (even); 3*2^-25 -> 2*2^-24.
  EXPECT_EQ(f16_to_f32(f32_to_f16(std::ldexp(1.0f, -25))), 0.0f);
  EXPECT_EQ(f16_to_f32(f32_to_f16(3 * std::ldexp(1.0f, -25))), std::ldexp(1.0f, -23));
  // fp8: 464 is the tie between 448 (even) and 480 (not representable) -> 448; above -> NaN.
  EXPECT_EQ(fp8_e4m3_to_f32(f32_to_fp8_e4m3(464.0f)), 448.0f);
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(f32_to_fp8_e4m3(465.0f))));
}

TEST(DType, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(f32_to_bf16(inf), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-inf), 0xff80);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(nan))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(-nan))));
  // A signalling-looking NaN whose payload sits only in the low bits must stay NaN.
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(bits_to_f32(0x7f800001u)))));
  EXPECT_EQ(f32_to_f16(inf), 0x7c00);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // rounds to inf
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(bits_to_f32(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(f32_to_fp8_e4m3(inf))));
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_f32(f32_to_fp8_e4m3(nan))));
  EXPECT_EQ(f32_to_fp8_e4m3(-0.0f), 0x80);
  // f32 subnormals flush to (signed) zero in every narrow format except bf16, which keeps them.
  float tiny = bits_to_f32(0x00000001u);
  EXPECT_EQ(f32_to_f16(tiny), 0x0000);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x00010000u)), 0x0001);
  // Smallest f16 subnormal and largest subnormal survive.
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x03ff), 1023 * std::ldexp(1.0f, -24));
}

TEST(DType, NamesAndSizes) {
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::fp8_e4m3), 1u);
  EXPECT_EQ(dtype_size(DType::i64), 8u);
  EXPECT_EQ(dtype_from_name("bf16"), DType::bf16);
  try {
    dtype_from_name("bfloat17");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bfloat17"), std::string::npos);
  }
}

}  // namespace
}  // namespace grpo
