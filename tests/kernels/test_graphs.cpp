// Graph capture on the CPU backend (Ops::begin_capture): recorded calls do not run, a replay
// runs them in order on whatever data the tensors hold then, their checks fail at the replay,
// other threads' calls are not recorded, and misuse is a clear error.
#include <gtest/gtest.h>

#include <thread>

#include "core/buffer.h"
#include "kernels/ops.h"
#include "tests/test_util.h"

namespace grpo::test {
namespace {

TEST(CpuGraphs, RecordedCallsRunOnlyAtReplayOnTheDataOfThatTime) {
  auto ops = make_cpu_ops();
  ASSERT_TRUE(ops->supports_graphs());
  HostF a({2, 3}), b({3, 2}), out({2, 2}), sum({2, 2});
  for (int i = 0; i < 6; ++i) {
    a[i] = float(i + 1);
    b[i] = float(2 * i - 3);
  }
  for (int i = 0; i < 4; ++i) out[i] = sum[i] = -1.0f;
  ops->begin_capture();
  EXPECT_TRUE(ops->capturing());
  ops->matmul(out, a, b, Tensor{}, false, false);
  ops->add(sum, out, out);
  ops->scale(sum, 0.5f);
  std::unique_ptr<OpsGraph> g = ops->end_capture();
  EXPECT_FALSE(ops->capturing());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], -1.0f) << "a recorded call ran at capture";

  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 6; ++i) a[i] = float((i + 1) * (round + 1));
    g->replay();
    ASSERT_TRUE(g->valid());
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 2; ++c) {
        double want = 0;
        for (int k = 0; k < 3; ++k) want += double(a[r * 3 + k]) * double(b[k * 2 + c]);
        EXPECT_FLOAT_EQ(out[r * 2 + c], float(want)) << "round " << round;
        EXPECT_FLOAT_EQ(sum[r * 2 + c], float(want)) << "round " << round;  // (x + x) * 0.5
      }
  }
}

TEST(CpuGraphs, ChecksOfTheDataFailAtTheReplay) {
  auto ops = make_cpu_ops();
  HostF table({4, 2}), out({2, 2});
  HostI ids({2});
  for (int i = 0; i < 8; ++i) table[i] = float(i);
  ids[0] = 1;
  ids[1] = 3;
  ops->begin_capture();
  ops->embedding(out, ids, table);
  auto g = ops->end_capture();
  g->replay();
  EXPECT_EQ(out[2], 6.0f);
  ids[1] = 4;
  EXPECT_GRPO_ERROR(g->replay(), "embedding", "ids[1] = 4", "outside [0, 4)");
  ids[1] = 0;
  g->replay();
  EXPECT_EQ(out[2], 0.0f);
}

TEST(CpuGraphs, OtherThreadsRunTheirCallsWhileOneCaptures) {
  auto ops = make_cpu_ops();
  HostF x({3}), y({3});
  for (int i = 0; i < 3; ++i) x[i] = y[i] = 1.0f;
  ops->begin_capture();
  ops->scale(x, 2.0f);
  std::thread other([&] { ops->scale(y, 3.0f); });
  other.join();
  auto g = ops->end_capture();
  EXPECT_EQ(y[0], 3.0f);  // ran at once, not recorded
  EXPECT_EQ(x[0], 1.0f);
  g->replay();
  EXPECT_EQ(x[0], 2.0f);
  EXPECT_EQ(y[0], 3.0f);
}

// What the allocator does happens at once, not at each replay: like the CUDA allocator while
// its stream records, the CPU allocator refuses it on the capturing thread (other threads go on).
TEST(CpuGraphs, AllocatorCallsWhileCapturingAreErrors) {
  auto ops = make_cpu_ops();
  Allocator& a = ops->allocator();
  float host[4] = {1, 2, 3, 4};
  Buffer buf(a, sizeof(host));
  ops->begin_capture();
  EXPECT_GRPO_ERROR(a.copy_from_host(buf.data(), host, sizeof(host)), "copy from the host", "captures a graph");
  EXPECT_GRPO_ERROR(a.copy_to_host(host, buf.data(), sizeof(host)), "copy to the host");
  EXPECT_GRPO_ERROR(buf.zero(), "memset");
  EXPECT_GRPO_ERROR(Buffer(a, 64), "allocation");
  std::thread other([&] { Buffer fine(a, 64); fine.zero(); });
  other.join();
  ops->abort_capture();
  a.copy_from_host(buf.data(), host, sizeof(host));  // allowed again
  ops->begin_capture();
  auto g = ops->end_capture();
  Buffer after(a, 64);
}

TEST(CpuGraphs, MisuseIsAClearErrorAndAbortDropsTheRecording) {
  auto ops = make_cpu_ops();
  EXPECT_GRPO_ERROR(ops->end_capture(), "end_capture without begin_capture");
  HostF x({2});
  x[0] = x[1] = 1.0f;
  ops->begin_capture();
  EXPECT_GRPO_ERROR(ops->begin_capture(), "begin_capture while a capture is open");
  ops->scale(x, 5.0f);
  ops->abort_capture();
  EXPECT_FALSE(ops->capturing());
  ops->scale(x, 2.0f);  // runs again
  EXPECT_EQ(x[0], 2.0f);
  ops->begin_capture();
  auto g = ops->end_capture();  // an empty graph: the aborted call is gone
  g->replay();
  EXPECT_EQ(x[0], 2.0f);
}

}  // namespace
}  // namespace grpo::test
