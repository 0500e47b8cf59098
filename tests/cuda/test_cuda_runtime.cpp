// GPU tests (ctest label "gpu"): skipped cleanly where no GPU is present.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/error.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_runtime.h"

namespace grpo {
namespace {

#define GRPO_REQUIRE_GPU()                                                                        \
  do {                                                                                            \
    if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda_unavailable_reason();        \
  } while (0)

// Where a GPU is present, the test runs itself again in a child that sees none
// (CUDA_VISIBLE_DEVICES empty), so the no-GPU path is checked on GPU machines too.
TEST(CudaRuntime, NoGpuIsAClearErrorNotACrash) {
  if (cuda_device_count() > 0) {
    // This binary's path (in the shell popen starts, /proc/self/exe would be the shell).
    char self[4096];
    const ssize_t len = ::readlink("/proc/self/exe", self, sizeof self - 1);
    ASSERT_GT(len, 0);
    self[len] = '\0';
    const std::string cmd = std::string("CUDA_VISIBLE_DEVICES= '") + self +
                            "' --gtest_filter=CudaRuntime.NoGpuIsAClearErrorNotACrash 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    const int status = ::pclose(p);
    EXPECT_EQ(status, 0) << out;
    EXPECT_NE(out.find("[  PASSED  ] 1 test"), std::string::npos) << out;
    EXPECT_EQ(out.find("SKIPPED"), std::string::npos) << "the child still saw a GPU:\n" << out;
    return;
  }
  EXPECT_FALSE(cuda_unavailable_reason().empty());
  EXPECT_THROW(cuda_require_device(), Error);
  // The backend a command would build says so in one line.
  try {
    make_cuda_ops(0);
    ADD_FAILURE() << "make_cuda_ops succeeded without a GPU";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_FALSE(msg.empty());
  }
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
