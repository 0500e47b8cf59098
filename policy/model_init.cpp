// Hugging Face initialisation (PreTrainedModel._init_weights of these architectures):
// nn.Linear and nn.Embedding weights ~ normal(0, initializer_range), biases zero, the
// padding_idx row of the embedding zero, RMSNorm weights one.
// Draws: Philox4x32-10 keyed by the seed, one stream per table entry (so a tensor's values do
// not depend on which other tensors exist), Box-Muller on pairs of 24-bit uniforms.
#include <cmath>
#include <numbers>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "policy/model_impl.h"

namespace grpo {

namespace {

void fill_normal(float* dst, int64_t n, double std, uint64_t seed, uint64_t stream) {
  PhiloxStream rng(seed, stream);
  for (int64_t i = 0; i < n; i += 2) {
    const double u1 = 1.0 - double(rng.uniform());  // (0, 1]
    const double u2 = double(rng.uniform());
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double a = 2.0 * std::numbers::pi * u2;
    dst[i] = float(std * r * std::cos(a));
    if (i + 1 < n) dst[i + 1] = float(std * r * std::sin(a));
  }
}

}  // namespace

void Model::init_weights(uint64_t seed) {
  Impl& m = *impl_;
  std::vector<float> host(size_t(m.table.size()), 0.0f);
  const std::vector<ParamEntry>& entries = m.table.entries();
  for (size_t i = 0; i < entries.size(); ++i) {
    const ParamEntry& e = entries[i];
    float* dst = host.data() + e.offset;
    switch (e.kind) {
      case ParamKind::norm:
        for (int64_t j = 0; j < e.numel(); ++j) dst[j] = 1.0f;
        break;
      case ParamKind::bias:
        break;  // zeros
      default:
        fill_normal(dst, e.numel(), m.cfg.initializer_range, seed, uint64_t(i));
        break;
    }
  }
  if (m.cfg.pad_token_id) {
    const ParamEntry& embed = m.table.at("model.embed_tokens.weight");
    const int64_t C = m.cfg.hidden_size;
    std::fill_n(host.data() + embed.offset + *m.cfg.pad_token_id * C, C, 0.0f);
  }
  m.ops.allocator().copy_from_host(m.params.data, host.data(), host.size() * sizeof(float));
  sync_compute_params();
}

}  // namespace grpo
