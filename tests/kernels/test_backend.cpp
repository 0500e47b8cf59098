// Run-time backend choice (kernels/backend.h): names, errors, and "auto" never failing.
#include <gtest/gtest.h>

#include "kernels/backend.h"
#include "tests/test_util.h"

namespace grpo {
namespace {

TEST(Backend, CpuAndAutoAlwaysResolve) {
  EXPECT_EQ(resolve_device("cpu").device, Device::cpu);
  EXPECT_EQ(describe_device(resolve_device("cpu")), "cpu");
  const DeviceChoice a = resolve_device("auto");
  auto ops = make_ops(a);
  EXPECT_EQ(ops->device(), a.device);
  if (!cuda_backend_built()) {
    EXPECT_EQ(a.device, Device::cpu);
  }
}

TEST(Backend, MalformedNamesAreErrorsListingTheForms) {
  for (const char* bad : {"gpu", "", "CPU", "cuda:", "cuda:x", "cuda:-1", "cudax", "cuda:1x", "cuda0"})
    EXPECT_GRPO_ERROR(resolve_device(bad), "is not valid", "auto, cpu, cuda or cuda:N");
}

TEST(Backend, CudaIsUsableOrOneClearLine) {
  try {
    const DeviceChoice d = resolve_device("cuda");
    // A GPU is present and the backend is built: the Ops run there.
    EXPECT_EQ(d.device, Device::cuda);
    EXPECT_EQ(make_ops(d)->device(), Device::cuda);
    EXPECT_NE(describe_device(d).find("cuda:0 "), std::string::npos);
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("device cuda"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line expected: " << msg;
    if (!cuda_backend_built()) {
      EXPECT_NE(msg.find("built without the CUDA backend"), std::string::npos) << msg;
    } else {
      EXPECT_NE(msg.find("no usable GPU"), std::string::npos) << msg;
    }
  }
  EXPECT_GRPO_ERROR(resolve_device("cuda:64"), "cuda:64");
}

TEST(Backend, ExpertWeightGradientPathIsACudaChoice) {
  auto cpu = make_ops("cpu");
  // The CPU has no such choice: nothing changes and nothing is reported.
  EXPECT_FALSE(set_expert_weight_grad(*cpu, "grouped"));
  EXPECT_EQ(expert_weight_grad_path(*cpu), "");
  for (const char* bad : {"", "Grouped", "loop", "per-expert"})
    EXPECT_GRPO_ERROR(set_expert_weight_grad(*cpu, bad), "is not valid", "automatic, grouped or per_expert");
}

}  // namespace
}  // namespace grpo
