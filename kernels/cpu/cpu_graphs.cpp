// CpuOps graph capture (kernels/ops.h): the recorded calls, replayed in order.
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"

namespace grpo {

namespace {

class CpuGraph final : public OpsGraph {
 public:
  explicit CpuGraph(std::vector<std::function<void()>> calls) : calls_(std::move(calls)) {}
  void replay() override {
    for (const auto& call : calls_) call();
  }

 private:
  std::vector<std::function<void()>> calls_;
};

}  // namespace

void CpuOps::begin_capture() {
  GRPO_CHECK(!capturing_.load(), "cpu: begin_capture while a capture is open");
  recorded_.clear();
  capture_thread_ = std::this_thread::get_id();
  capturing_.store(true);
  set_cpu_capturing_thread(true);
}

std::unique_ptr<OpsGraph> CpuOps::end_capture() {
  GRPO_CHECK(capturing_.load(), "cpu: end_capture without begin_capture");
  GRPO_CHECK(std::this_thread::get_id() == capture_thread_, "cpu: end_capture from another thread than begin_capture");
  capturing_.store(false);
  set_cpu_capturing_thread(false);
  return std::make_unique<CpuGraph>(std::move(recorded_));
}

void CpuOps::abort_capture() noexcept {
  if (capturing_.load() && std::this_thread::get_id() == capture_thread_) set_cpu_capturing_thread(false);
  capturing_.store(false);
  recorded_.clear();
}

}  // namespace grpo
