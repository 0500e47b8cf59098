// Safetensors: the Hugging Face tensor file format, read memory-mapped and written atomically.
//
// File layout: 8-byte little-endian header length N, then N bytes of JSON
//   {"__metadata__": {"k": "v", ...}, "name": {"dtype": "BF16", "shape": [..],
//    "data_offsets": [begin, end]}, ...}
// then the data section; offsets are relative to the data section's start.
// Sharded checkpoints: model.safetensors.index.json {"metadata": {"total_size": ...},
// "weight_map": {"name": "model-00001-of-00002.safetensors", ...}}.
//
// Every malformed input is rejected with grpo::Error naming the file (and the tensor when
// there is one), never a crash or an out-of-bounds read: header length past the file or
// absurd, JSON that does not parse or is not an object, unknown dtype, shape/dtype that
// disagree with the byte count, offsets outside the data section, overlapping or
// (after sorting) gapped tensor ranges, duplicate names, an index naming a missing file or
// a tensor the shard lacks.
// NOTES: accepted as the safetensors library accepts them: unknown extra fields in a tensor
// entry, "__metadata__": null, whitespace around the header JSON. Not checked: the index's
// metadata.total_size. A file truncated by another process while mapped faults on access
// (SIGBUS); the mapping is private and read-only, nothing here writes it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace grpo {

// The dtype's name in safetensors headers: "F32", "BF16", "F16", "F8_E4M3", "I32", "I64".
const char* safetensors_dtype_name(DType t);

struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::f32;    // F32, BF16, F16, F8_E4M3, I32, I64 on disk
  std::vector<int64_t> shape;  // [] is a scalar (one element)
  uint64_t offset = 0;         // byte offset within the data section
  uint64_t nbytes = 0;
  int64_t numel() const;
};

// One memory-mapped .safetensors file. Move-only; unmaps on destruction.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::string& path() const;
  // In file order: by data offset (header order among empty tensors at one offset).
  const std::vector<SafetensorsTensorInfo>& tensors() const;
  const SafetensorsTensorInfo* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const;
  // Pointer to the tensor's bytes inside the mapping (valid while this object lives).
  const void* data(const SafetensorsTensorInfo& info) const;

 private:
  SafetensorsFile();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A model directory: either one model.safetensors, or shards listed by
// model.safetensors.index.json (which wins when both exist).
class SafetensorsCheckpoint {
 public:
  static SafetensorsCheckpoint open(const std::string& dir);
  SafetensorsCheckpoint(SafetensorsCheckpoint&&) noexcept;
  SafetensorsCheckpoint& operator=(SafetensorsCheckpoint&&) noexcept;
  ~SafetensorsCheckpoint();

  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const;
  const SafetensorsTensorInfo& info(const std::string& name) const;  // throws naming it if absent
  const std::string& file_of(const std::string& name) const;
  // Copies tensor `name` into dst as f32 (converting from BF16/F16/F32); its shape must equal
  // `shape` (error names the file, tensor, and both shapes).
  void read_f32(const std::string& name, const std::vector<int64_t>& shape, float* dst) const;

 private:
  SafetensorsCheckpoint();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A tensor to write: `data` holds numel values of `src_dtype` (f32 for model parameters);
// they are stored as `dtype` (f32, bf16 or f16; converted with round-to-nearest-even).
// Also accepted: any dtype stored as itself (bytes copied), f32 -> fp8_e4m3, and
// bf16/f16/fp8_e4m3 -> f32. `data` may be null only when numel is 0.
struct SafetensorsWriteTensor {
  std::string name;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  DType src_dtype = DType::f32;
  DType dtype = DType::f32;
};

// Writes one file (to PATH.tmp, fsync, rename), tensors in the given order, 8-byte aligned.
// The header is padded with spaces so the data section starts at a multiple of 8; tensors are
// packed back to back after it (the format allows no gaps), so a tensor's own alignment is
// only its offset's. __metadata__ is {"format": "pt"} overlaid with `metadata`.
void write_safetensors(const std::string& path, const std::vector<SafetensorsWriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes a checkpoint into `dir`: one model.safetensors when everything fits in
// max_shard_bytes (0: no limit), else model-0000i-of-0000N.safetensors shards plus
// model.safetensors.index.json. Returns the files written.
// Shards are filled in order up to max_shard_bytes of tensor data (headers not counted); a
// tensor larger than the limit gets a shard of its own. Returned paths are dir + "/" + name,
// the index last. Files of an earlier checkpoint in `dir` that would be read instead of, or
// left beside, the new one are removed after the new files are in place: a stale
// model.safetensors.index.json (when writing one file), a stale model.safetensors (when
// sharding) and model-NNNNN-of-NNNNN.safetensors shards not written now. Overwriting a
// sharded checkpoint in place is not crash-consistent (shards are renamed one by one).
std::vector<std::string> write_safetensors_checkpoint(const std::string& dir,
                                                      const std::vector<SafetensorsWriteTensor>& tensors,
                                                      uint64_t max_shard_bytes = 0);

}  // namespace grpo
