// Staging of a streamed weight update (UpdateWeights) before it is applied: pieces of named
// tensors are checked against the model's parameter table as they arrive (name, shape, dtype,
// in-order byte ranges) and converted to f32 in host memory; nothing touches the model until
// apply(), which the engine loop runs between two steps. No gRPC types here.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "policy/model.h"

namespace grpo::rollout {

class WeightStaging {
 public:
  // `model` gives the parameter table (names, shapes); `serving_version` the version an update
  // may not go below.
  WeightStaging(const Model& model, int64_t serving_version);

  // The header of every chunk: the first sets version and mode, later ones must repeat them.
  // Throws grpo::Error with the reason.
  void chunk(int64_t version, bool abort_in_flight);
  // One piece of a tensor: bytes [offset, offset + data.size()) of its little-endian data in
  // `dtype` (f32 or bf16). Pieces of a tensor come in order, without gaps or overlaps; each
  // repeats the tensor's shape and dtype. Throws grpo::Error naming the tensor.
  void piece(const std::string& name, std::span<const int64_t> shape, DType dtype, uint64_t offset,
             std::string_view data);
  // The stream is complete: every tensor named must have all its bytes. Throws otherwise.
  void finish() const;
  // Writes every staged tensor into the model's parameters (device copies). Call after finish().
  void apply(Model& model) const;

  int64_t version() const { return version_; }
  bool abort_in_flight() const { return abort_; }
  int64_t tensors() const { return static_cast<int64_t>(staged_.size()); }
  int64_t bytes() const { return bytes_; }  // as sent

 private:
  struct Staged {
    std::vector<int64_t> shape;
    DType dtype = DType::f32;
    uint64_t received = 0;  // bytes, as sent
    std::vector<float> values;
  };
  const Model& model_;
  int64_t serving_version_;
  bool started_ = false;
  int64_t version_ = 0;
  bool abort_ = false;
  int64_t bytes_ = 0;
  std::map<std::string, Staged> staged_;
};

}  // namespace grpo::rollout
