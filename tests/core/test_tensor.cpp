// Tensor views, buffers, the activation arena and error messages.
#include <gtest/gtest.h>

#include "core/buffer.h"
#include "core/error.h"
#include "core/tensor.h"

namespace grpo {
namespace {

TEST(Tensor, ShapeNumelViewsAndRows) {
  float data[24];
  for (int i = 0; i < 24; ++i) data[i] = float(i);
  Tensor t(data, DType::f32, {2, 3, 4});
  EXPECT_TRUE(t.defined());
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(t.str(), "f32[2, 3, 4]");
  Tensor v = t.view({6, 4});
  EXPECT_EQ(v.str(), "f32[6, 4]");
  Tensor r = v.rows(2, 5);
  EXPECT_EQ(r.shape[0], 3);
  EXPECT_EQ(r.ptr<float>()[0], 8.0f);
  EXPECT_THROW(t.view({5, 5}), Error);
  EXPECT_THROW(v.rows(4, 7), Error);
  EXPECT_THROW(t.size(3), Error);
  EXPECT_THROW(t.ptr<int32_t>(), Error);
  EXPECT_FALSE(Tensor().defined());
  EXPECT_EQ(Tensor().str(), "undefined");
  EXPECT_THROW(Tensor(data, DType::f32, {1, 2, 3, 4, 5}), Error);
  EXPECT_THROW(Tensor(data, DType::f32, {-1}), Error);
}

TEST(Buffer, OwnsAlignedMemoryAndChecksViews) {
  Buffer b(cpu_allocator(), 1000);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 256, 0u);
  b.zero();
  Tensor t = b.view(DType::f32, {10, 25});
  EXPECT_EQ(t.ptr<float>()[249], 0.0f);
  EXPECT_THROW(b.view(DType::f32, {10, 26}), Error);
  EXPECT_THROW(b.view(DType::f32, {10}, 980), Error);
  Buffer moved = std::move(b);
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_EQ(moved.size(), 1000u);
}

TEST(Arena, BumpAllocatesAlignedTensorsAndFailsLoudlyWhenFull) {
  Arena a(cpu_allocator(), 4096);
  Tensor x = a.alloc(DType::f32, {3, 5});
  Tensor y = a.alloc(DType::i32, {7});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(x.data) % Arena::kAlignment, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(y.data) % Arena::kAlignment, 0u);
  EXPECT_NE(x.data, y.data);
  size_t m = a.mark();
  a.alloc(DType::f32, {256});
  EXPECT_GT(a.used(), m);
  a.release(m);
  EXPECT_EQ(a.used(), m);
  try {
    a.alloc(DType::f32, {2000});
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string msg = e.message();
    EXPECT_NE(msg.find("f32[2000]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("4096"), std::string::npos) << msg;
  }
  EXPECT_GE(a.peak(), m + 1024);
  a.reset();
  EXPECT_EQ(a.used(), 0u);
}

TEST(Error, CarriesLocationAndMessage) {
  try {
    GRPO_CHECK(1 + 1 == 3, "arithmetic is broken: " << 42);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "arithmetic is broken: 42");
    EXPECT_NE(std::string(e.what()).find("test_tensor.cpp:"), std::string::npos);
    EXPECT_GT(e.line(), 0);
  }
}

}  // namespace
}  // namespace grpo
