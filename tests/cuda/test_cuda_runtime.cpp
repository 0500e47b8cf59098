// GPU tests (ctest label "gpu"): skipped cleanly where no GPU is present.
#include <gtest/gtest.h>

#include <vector>

#include "core/buffer.h"
#include "kernels/cuda/cuda_runtime.h"

namespace grpo {
namespace {

#define GRPO_REQUIRE_GPU()                                                                        \
  do {                                                                                            \
    if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda_unavailable_reason();        \
  } while (0)

TEST(CudaRuntime, NoGpuIsAClearErrorNotACrash) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present: " << cuda_device_description();
  EXPECT_FALSE(cuda_unavailable_reason().empty());
  EXPECT_THROW(cuda_require_device(), Error);
}

TEST(CudaRuntime, BufferRoundTripAndArena) {
  GRPO_REQUIRE_GPU();
  std::vector<float> host(1000);
  for (size_t i = 0; i < host.size(); ++i) host[i] = float(i) * 0.5f - 7.0f;
  Buffer b(cuda_allocator(), host.size() * sizeof(float));
  EXPECT_EQ(b.device(), Device::cuda);
  cuda_allocator().copy_from_host(b.data(), host.data(), b.size());
  std::vector<float> back(host.size(), -1.0f);
  cuda_allocator().copy_to_host(back.data(), b.data(), b.size());
  EXPECT_EQ(back, host);
  b.zero();
  cuda_allocator().copy_to_host(back.data(), b.data(), b.size());
  for (float x : back) EXPECT_EQ(x, 0.0f);

  Arena arena(cuda_allocator(), 4096);
  Tensor t = arena.alloc(DType::f32, {10, 10});
  EXPECT_EQ(t.device, Device::cuda);
  EXPECT_THROW(arena.alloc(DType::f32, {100, 100}), Error);
}

}  // namespace
}  // namespace grpo
