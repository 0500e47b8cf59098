// Checkpoint IO: Hugging Face directories (config.json + safetensors, single file or sharded)
// to and from the flat parameter buffer, by HF tensor name.
#include <algorithm>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "policy/model_impl.h"
#include "policy/safetensors.h"

namespace grpo {

namespace {

// Tensors a checkpoint may hold that the model does not use: rotary inverse-frequency
// buffers (older transformers saved them) and lm_head.weight when tied.
bool ignorable(const std::string& name, const ModelConfig& cfg) {
  const std::string inv = "rotary_emb.inv_freq";
  if (name.size() >= inv.size() && name.compare(name.size() - inv.size(), inv.size(), inv) == 0) return true;
  return cfg.tie_word_embeddings && name == "lm_head.weight";
}

}  // namespace

void Model::load(const std::string& dir) {
  Impl& m = *impl_;
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(dir);
  for (const std::string& name : ckpt.names())
    GRPO_CHECK(m.table.has(name) || ignorable(name, m.cfg),
               dir << ": unexpected tensor \"" << name << "\" in " << ckpt.file_of(name) << " (not a parameter of this "
                   << m.cfg.model_type << " config)");
  for (const ParamEntry& e : m.table.entries())
    GRPO_CHECK(ckpt.has(e.name), dir << ": tensor \"" << e.name << "\" is missing from the checkpoint");
  const bool host = m.ops.device() == Device::cpu;
  std::vector<float> staging;
  for (const ParamEntry& e : m.table.entries()) {
    float* dst = static_cast<float*>(m.params.data) + e.offset;
    if (host) {
      ckpt.read_f32(e.name, e.shape, dst);
    } else {
      staging.resize(size_t(e.numel()));
      ckpt.read_f32(e.name, e.shape, staging.data());
      m.ops.allocator().copy_from_host(dst, staging.data(), staging.size() * sizeof(float));
    }
  }
  sync_compute_params();
}

void Model::save(const std::string& dir, DType dtype, uint64_t max_shard_bytes) const {
  const Impl& m = *impl_;
  GRPO_CHECK(dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16,
             "model save: dtype " << dtype_name(dtype) << " is not supported (f32, bf16, f16)");
  std::filesystem::create_directories(dir);
  ModelConfig cfg = m.cfg;
  cfg.torch_dtype = dtype == DType::f32 ? "float32" : (dtype == DType::bf16 ? "bfloat16" : "float16");
  const float* base = static_cast<const float*>(m.params.data);
  std::vector<float> host_copy;
  if (m.ops.device() != Device::cpu) {
    host_copy.resize(size_t(m.table.size()));
    m.ops.allocator().copy_to_host(host_copy.data(), m.params.data, host_copy.size() * sizeof(float));
    base = host_copy.data();
  }
  std::vector<SafetensorsWriteTensor> tensors;
  tensors.reserve(m.table.entries().size());
  for (const ParamEntry& e : m.table.entries()) {
    SafetensorsWriteTensor t;
    t.name = e.name;
    t.shape = e.shape;
    t.data = base + e.offset;
    t.src_dtype = DType::f32;
    t.dtype = dtype;
    tensors.push_back(std::move(t));
  }
  // transformers expects names sorted within a file only by convention; keep table order.
  write_safetensors_checkpoint(dir, tensors, max_shard_bytes);
  save_model_config(cfg, dir);
}

}  // namespace grpo
