#include "rollout/service/weights.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "core/buffer.h"
#include "core/error.h"

namespace grpo::rollout {

namespace {

std::string shape_str(std::span<const int64_t> shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

}  // namespace

WeightStaging::WeightStaging(const Model& model, int64_t serving_version)
    : model_(model), serving_version_(serving_version) {}

void WeightStaging::chunk(int64_t version, bool abort_in_flight) {
  if (!started_) {
    GRPO_CHECK(version >= serving_version_,
               "version " << version << " is older than the version serving (" << serving_version_ << ")");
    started_ = true;
    version_ = version;
    abort_ = abort_in_flight;
    return;
  }
  GRPO_CHECK(version == version_, "chunk has version " << version << " but the stream started with " << version_);
  GRPO_CHECK(abort_in_flight == abort_, "chunk has a different mode than the first chunk of the stream");
}

void WeightStaging::piece(const std::string& name, std::span<const int64_t> shape, DType dtype, uint64_t offset,
                          std::string_view data) {
  GRPO_CHECK(started_, "internal error: piece before chunk");
  GRPO_CHECK(model_.table().has(name), "tensor \"" << name << "\": the model has no such tensor");
  const ParamEntry& entry = model_.table().at(name);
  GRPO_CHECK(std::equal(shape.begin(), shape.end(), entry.shape.begin(), entry.shape.end()),
             "tensor \"" << name << "\": shape " << shape_str(shape) << " but the model's is " << shape_str(entry.shape));
  GRPO_CHECK(dtype == DType::f32 || dtype == DType::bf16,
             "tensor \"" << name << "\": dtype " << dtype_name(dtype) << " (expected f32 or bf16)");
  const uint64_t elem = dtype_size(dtype);
  const uint64_t total = uint64_t(entry.numel()) * elem;

  auto [it, fresh] = staged_.try_emplace(name);
  Staged& s = it->second;
  if (fresh) {
    s.shape = entry.shape;
    s.dtype = dtype;
    s.values.resize(size_t(entry.numel()));
  }
  GRPO_CHECK(s.dtype == dtype, "tensor \"" << name << "\": dtype " << dtype_name(dtype) << " but earlier pieces were "
                                           << dtype_name(s.dtype));
  GRPO_CHECK(offset == s.received, "tensor \"" << name << "\": piece at byte " << offset << " but " << s.received
                                               << " bytes were received (pieces must come in order, without gaps)");
  GRPO_CHECK(data.size() % elem == 0, "tensor \"" << name << "\": piece of " << data.size() << " bytes is not a whole number of "
                                                  << dtype_name(dtype) << " elements");
  GRPO_CHECK(offset + data.size() <= total, "tensor \"" << name << "\": piece ends at byte " << offset + data.size()
                                                        << " past the tensor's " << total << " bytes");
  float* dst = s.values.data() + offset / elem;
  const size_t count = data.size() / elem;
  if (dtype == DType::f32) {
    std::memcpy(dst, data.data(), data.size());  // little-endian host
  } else {
    for (size_t i = 0; i < count; ++i) {
      uint16_t h;
      std::memcpy(&h, data.data() + 2 * i, 2);
      dst[i] = bf16_to_f32(h);
    }
  }
  s.received += data.size();
  bytes_ += int64_t(data.size());
}

void WeightStaging::finish() const {
  for (const auto& [name, s] : staged_) {
    uint64_t total = uint64_t(s.values.size()) * dtype_size(s.dtype);
    GRPO_CHECK(s.received == total, "tensor \"" << name << "\": " << s.received << " of its " << total
                                                << " bytes were sent (the update is incomplete)");
  }
}

void WeightStaging::apply(Model& model) const {
  finish();
  Allocator& device = model.ops().allocator();
  for (const auto& [name, s] : staged_) {
    Tensor p = model.param(name);
    GRPO_CHECK(p.dtype == DType::f32 && size_t(p.numel()) == s.values.size(),
               "internal error: parameter " << name << " is " << p.str());
    device.copy_from_host(p.data, s.values.data(), s.values.size() * sizeof(float));
  }
  model.sync_compute_params();
}

}  // namespace grpo::rollout
