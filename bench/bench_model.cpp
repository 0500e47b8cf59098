// `grpo bench model`: training (forward + backward) tokens/s on a packed batch, prefill and
// decode tokens/s at several batch sizes, for a preset of one architecture (or a config.json),
// on the CPU or a GPU (--device). Each rate is set next to a ceiling measured in the same run:
//   * cpu:  OpenBLAS sgemm at the model's widest linear shape;
//   * cuda: Ops::matmul at 8192^3 in f32 (no TF32) and in bf16 (the card's tensor-core rate),
//           and Ops::copy of a 1 GiB buffer (bytes read + written);
// The model runs in --dtype (auto: bf16 on CUDA, f32 on the CPU; Model's ModelLimits::dtype).
// Decoding runs as the model does by default (CUDA graphs on CUDA: the warm-up run captures
// them); on CUDA the same decode steps are then timed op by op too (graph_speedup).

// both: Ops::copy bandwidth for the decode bytes ratio.
//
// Model FLOPs per token (forward), the usual 2 * matmul parameters + attention count:
//   F_fwd(c) = 2 * P_mm + 4 * L * Hq * D * c
// P_mm: the matmul weights one token uses (q/k/v/o, dense MLP or K of E experts + router +
// shared expert, the LM head; embeddings lookups, norms and biases excluded), c: the number of
// positions a token attends to on average ((n + 1) / 2 for a causal sequence of n tokens;
// the context length when decoding). Training counts 3 * F_fwd (backward = 2x forward).
// Prefill computes logits for each sequence's last token only, so its LM-head share
// 2 * P_lm (P_lm = V * C) is counted once per prompt of n tokens: 2 * P_lm / n per token.
//
// Decode bytes per step (batch B, elements of the model's dtype): every weight once, except the embedding table (B rows;
// read whole as the LM head when tied) and the routed experts (the expected share hit by B
// tokens each choosing K of E: 1 - (1 - K/E)^B), plus K and V of each sequence's context
// (2 * L * Hkv * D * context * B). Activations and KV writes are left out (small next to these).
//
// Timing: one warm-up call, then at least `repeats` timed calls and min_seconds in all; the
// median is reported (seconds_best: the fastest). Device work is finished before each clock
// read: a 4-byte copy_to_host waits for the stream (the CUDA allocator is stream-ordered).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <vector>

#include "bench/bench.h"
#include "bench/bench_json.h"
#include "core/buffer.h"
#include "core/dtype.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/ops.h"
#include "policy/kv_cache.h"
#include "policy/model.h"
#include "policy/params.h"

namespace grpo {

namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

struct Timing {
  double median = 0, best = 0;
  int runs = 0;
};

// fn once to warm up, then timed until min_seconds have passed and at least min_reps runs;
// sync() after each call so queued device work is inside the measurement.
Timing time_runs(const std::function<void()>& fn, const std::function<void()>& sync, double min_seconds,
                 int min_reps) {
  fn();
  sync();
  std::vector<double> s;
  double total = 0;
  while (total < min_seconds || int(s.size()) < min_reps) {
    const auto t0 = Clock::now();
    fn();
    sync();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    total += s.back();
  }
  std::sort(s.begin(), s.end());
  const size_t n = s.size();
  return Timing{n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]), s[0], int(n)};
}

// x rounded to `decimals` decimal places (printed without binary noise).
double round_dec(double x, int decimals) {
  const double f = std::pow(10.0, decimals);
  return std::round(x * f) / f;
}

// `--preset gpu`: a Qwen3-MoE-like model for one 80 GB GPU in f32 with gradients and AdamW
// state (~2.0 B parameters for the MoE architectures, ~32 GB of state + activations of 8192
// tokens): hidden 1024, 16 layers, 16 query / 4 KV heads (head_dim 128 where the architecture
// sets it, as Qwen3; else hidden / heads), Qwen's 151936-token vocabulary, untied LM head;
// MoE: 64 experts of width 512, top-8 (qwen2_moe adds a 2048-wide shared expert); dense: an
// MLP of 4096.
ModelConfig gpu_preset(const std::string& arch) {
  ModelConfig c = model_preset(arch, "small");
  c.vocab_size = 151936;
  c.hidden_size = 1024;
  c.num_hidden_layers = 16;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 4;
  c.head_dim = c.qk_norm == QkNorm::per_head ? 128 : c.hidden_size / c.num_attention_heads;
  c.intermediate_size = 4096;
  c.max_position_embeddings = 32768;
  c.tie_word_embeddings = false;
  if (c.is_moe()) {
    c.num_experts = 64;
    c.num_experts_per_tok = 8;
    c.moe_intermediate_size = 512;
    if (c.shared_expert_intermediate_size > 0) c.shared_expert_intermediate_size = 2048;
    if (c.arch == ModelArch::mixtral || c.arch == ModelArch::olmoe) c.intermediate_size = c.moe_intermediate_size;
  }
  c.rope.head_dim = c.head_dim;
  c.rope.max_position_embeddings = c.max_position_embeddings;
  c.validate();
  return c;
}

ModelConfig bench_config(const BenchModelOptions& o) {
  if (!o.config.empty()) return load_model_config(o.config);
  GRPO_CHECK(!o.arch.empty(), "bench model: give --arch (with --preset) or --config");
  if (o.preset == "gpu") return gpu_preset(o.arch);
  GRPO_CHECK(o.preset == "tiny" || o.preset == "small",
             "bench model: preset \"" << o.preset << "\" is unknown (presets: tiny, small, gpu)");
  return model_preset(o.arch, o.preset);
}

// Matmul weights one token touches (see the file comment).
double matmul_params_per_token(const ModelConfig& cfg) {
  const ParamTable table(cfg);
  double p = 0;
  for (const ParamEntry& e : table.entries()) {
    switch (e.kind) {
      case ParamKind::linear:
      case ParamKind::router:
      case ParamKind::lm_head: p += double(e.numel()); break;
      case ParamKind::expert: p += double(e.numel()) * double(cfg.num_experts_per_tok) / double(cfg.num_experts); break;
      default: break;
    }
  }
  if (cfg.tie_word_embeddings) p += double(cfg.vocab_size) * double(cfg.hidden_size);  // LM head = embeddings
  return p;
}

// lm_head_fraction: the share of tokens whose logits are computed (1, or 1 / n in prefill).
double forward_flops_per_token(const ModelConfig& cfg, double context, double lm_head_fraction = 1.0) {
  const double lm = double(cfg.vocab_size) * double(cfg.hidden_size);
  return 2.0 * (matmul_params_per_token(cfg) - lm + lm * lm_head_fraction) +
         4.0 * double(cfg.num_hidden_layers) * double(cfg.num_attention_heads) * double(cfg.head_dim) * context;
}

// Bytes one decode step of B sequences reads (see the file comment).
double decode_bytes_per_step(const ModelConfig& cfg, double B, double context, double elt) {
  const ParamTable table(cfg);
  const double hit =
      cfg.is_moe() ? 1.0 - std::pow(1.0 - double(cfg.num_experts_per_tok) / double(cfg.num_experts), B) : 1.0;
  double w = 0;
  for (const ParamEntry& e : table.entries()) {
    switch (e.kind) {
      case ParamKind::embedding:
        w += cfg.tie_word_embeddings ? double(e.numel()) : B * double(cfg.hidden_size);
        break;
      case ParamKind::expert: w += double(e.numel()) * hit; break;
      default: w += double(e.numel()); break;
    }
  }
  const double kv = 2.0 * double(cfg.num_hidden_layers) * double(cfg.kv_dim()) * context * B;
  return elt * (w + kv);
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, int32_t(vocab - 1));
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t& x : v) x = d(rng);
  return v;
}

// A value in [-1, 1) from (seed, index): a cheap, parallel stand-in for random weights.
inline float hash_uniform(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(double(z >> 40) * (2.0 / double(1ull << 24)) - 1.0);
}

// Weights for timing: uniform with the HF init's standard deviation (initializer_range),
// norms 1, biases 0. Generated in parallel on the host (Model::init_weights draws its normals
// on one thread: minutes for a few billion parameters); speed does not depend on the draws
// beyond routing, which stays spread over the experts.
void fill_bench_weights(Model& model) {
  const ModelConfig& cfg = model.config();
  const ParamTable& table = model.table();
  std::vector<float> host(size_t(table.size()), 0.0f);
  const float a = float(cfg.initializer_range * std::sqrt(3.0));
  const std::vector<ParamEntry>& entries = table.entries();
  for (size_t k = 0; k < entries.size(); ++k) {
    const ParamEntry& e = entries[k];
    float* dst = host.data() + e.offset;
    const int64_t n = e.numel();
    if (e.kind == ParamKind::bias) continue;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) dst[i] = e.kind == ParamKind::norm ? 1.0f : a * hash_uniform(k + 1, uint64_t(i));
  }
  model.ops().allocator().copy_from_host(model.params().data, host.data(), host.size() * sizeof(float));
  model.sync_compute_params();
}

// A device tensor of host values.
struct DevTensor {
  Buffer buf;
  Tensor t;
};
template <class T>
DevTensor upload(Ops& ops, const std::vector<T>& host, DType dtype, std::initializer_list<int64_t> shape) {
  DevTensor d;
  d.buf = Buffer(ops.allocator(), std::max<size_t>(host.size(), 1) * sizeof(T));
  ops.allocator().copy_from_host(d.buf.data(), host.data(), host.size() * sizeof(T));
  d.t = d.buf.view(dtype, shape);
  return d;
}
DevTensor dev_empty(Ops& ops, DType dtype, std::initializer_list<int64_t> shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  DevTensor d;
  d.buf = Buffer(ops.allocator(), size_t(std::max<int64_t>(n, 1)) * dtype_size(dtype));
  d.t = d.buf.view(dtype, shape);
  return d;
}

// OpenBLAS sgemm GFLOP/s at [m, k] x [k, n] (the model's widest linear layer shape).
double sgemm_gflops(int64_t m, int64_t n, int64_t k, double min_seconds, int reps) {
  std::vector<float> a(size_t(m * k), 0.5f), b(size_t(k * n), 0.25f), c(size_t(m * n));
  const Timing t = time_runs(
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(k), 1.0f, a.data(), int(k), b.data(),
                    int(k), 0.0f, c.data(), int(n));
      },
      [] {}, min_seconds, reps);
  return 2.0 * double(m) * double(n) * double(k) / t.median * 1e-9;
}

// Ops::matmul GFLOP/s at [n, n] x [n, n]^T in `dtype` (out of the same dtype). The inputs
// hold a non-zero pattern: all-zero operands draw less power and would overstate the rate.
double ops_gemm_gflops(Ops& ops, DType dtype, int64_t n, double min_seconds, int reps,
                       const std::function<void()>& sync) {
  const size_t count = size_t(n * n);
  DevTensor a, b;
  if (dtype == DType::bf16) {
    std::vector<uint16_t> h(count);
    for (size_t i = 0; i < count; ++i) h[i] = f32_to_bf16(hash_uniform(1, i));
    a = upload(ops, h, dtype, {n, n});
    for (size_t i = 0; i < count; ++i) h[i] = f32_to_bf16(hash_uniform(2, i));
    b = upload(ops, h, dtype, {n, n});
  } else {
    std::vector<float> h(count);
    for (size_t i = 0; i < count; ++i) h[i] = hash_uniform(1, i);
    a = upload(ops, h, dtype, {n, n});
    for (size_t i = 0; i < count; ++i) h[i] = hash_uniform(2, i);
    b = upload(ops, h, dtype, {n, n});
  }
  const DevTensor c = dev_empty(ops, dtype, {n, n});
  const Timing t = time_runs([&] { ops.matmul(c.t, a.t, b.t, Tensor{}, false, true); }, sync, min_seconds, reps);
  return 2.0 * double(n) * double(n) * double(n) / t.median * 1e-9;
}

// Ops::copy GB/s over a buffer of `bytes`, counting bytes read + written.
double ops_copy_gbps(Ops& ops, int64_t bytes, double min_seconds, int reps, const std::function<void()>& sync) {
  const int64_t n = bytes / 4;
  const DevTensor src = dev_empty(ops, DType::f32, {n}), dst = dev_empty(ops, DType::f32, {n});
  ops.zero(src.t);
  const Timing t = time_runs([&] { ops.copy(dst.t, src.t); }, sync, min_seconds, reps);
  return 2.0 * double(n) * 4.0 / t.median * 1e-9;
}

struct Ceilings {
  double f32_gflops = 0;   // sgemm (cpu) / Ops::matmul f32 (cuda)
  double bf16_gflops = 0;  // Ops::matmul bf16 (cuda only)
  double copy_gbps = 0;    // Ops::copy, read + write
};

Json rate(double tokens, const Timing& t, double flops_per_token, const Ceilings& c) {
  const double gf = tokens * flops_per_token / t.median * 1e-9;
  Json j;
  j["tokens_per_s"] = round_dec(tokens / t.median, 1);
  j["seconds"] = round_dec(t.median, 7);
  j["seconds_best"] = round_dec(t.best, 7);
  j["runs"] = t.runs;
  j["flops_per_token"] = round_dec(flops_per_token, 0);
  j["gflops"] = round_dec(gf, 2);
  j["ratio_to_sgemm"] = round_dec(gf / c.f32_gflops, 4);
  if (c.bf16_gflops > 0) j["ratio_to_bf16_gemm"] = round_dec(gf / c.bf16_gflops, 4);
  return j;
}


// The f32 expert weight gradients of bf16 inputs (CUDA, MoE, bf16 models), one MoE layer's
// three grouped_matmul_backward calls (dw only: gate and up [I, H], down [H, I]) over R rows
// spread unevenly over E experts, timed with each of the backend's paths.
Json bench_expert_weight_grad(Ops& ops, const ModelConfig& cfg, int64_t R, double min_s, int reps,
                              const std::function<void()>& sync, const Ceilings& ceil) {
  const int64_t E = cfg.num_experts, H = cfg.hidden_size, I = cfg.moe_intermediate_size;
  std::vector<int32_t> offsets(size_t(E + 1), 0);
  {  // expert shares uniform in [0.5, 1.5), normalised to R rows
    std::vector<double> share(static_cast<size_t>(E));
    double total = 0;
    for (int64_t e = 0; e < E; ++e) total += share[size_t(e)] = 1.0 + 0.5 * hash_uniform(31, uint64_t(e));
    double acc = 0;
    for (int64_t e = 0; e < E; ++e) {
      acc += share[size_t(e)];
      offsets[size_t(e + 1)] = int32_t(std::llround(acc / total * double(R)));
    }
    offsets[size_t(E)] = int32_t(R);
  }
  auto bf16_values = [](int64_t n, uint64_t seed) {
    std::vector<uint16_t> h(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) h[size_t(i)] = f32_to_bf16(hash_uniform(seed, uint64_t(i)));
    return h;
  };
  const DevTensor off = upload(ops, offsets, DType::i32, {E + 1});
  const DevTensor x = upload(ops, bf16_values(R * H, 41), DType::bf16, {R, H});
  const DevTensor h = upload(ops, bf16_values(R * I, 42), DType::bf16, {R, I});
  const DevTensor dgate = upload(ops, bf16_values(R * I, 43), DType::bf16, {R, I});
  const DevTensor dup = upload(ops, bf16_values(R * I, 44), DType::bf16, {R, I});
  const DevTensor dy = upload(ops, bf16_values(R * H, 45), DType::bf16, {R, H});
  const DevTensor wg = dev_empty(ops, DType::f32, {E, I, H}), wu = dev_empty(ops, DType::f32, {E, I, H});
  const DevTensor wd = dev_empty(ops, DType::f32, {E, H, I});
  for (const DevTensor* w : {&wg, &wu, &wd}) ops.zero(w->t);
  // The bf16 weights the calls take for their shapes (dx is not asked for, so never read).
  const DevTensor w_in = dev_empty(ops, DType::bf16, {E, I, H}), w_out = dev_empty(ops, DType::bf16, {E, H, I});
  const double flops = 3.0 * 2.0 * double(R) * double(I) * double(H);
  Json j;
  j["rows"] = R;
  j["experts"] = E;
  j["shapes"] = "dw only: gate and up [E, I, H] from x [R, H] and dgate/dup [R, I]; down [E, H, I] from h [R, I] "
                "and dy [R, H]; I = " + std::to_string(I) + ", H = " + std::to_string(H);
  double seconds[2] = {0, 0};
  const char* modes[2] = {"grouped", "per_expert"};
  for (int m = 0; m < 2; ++m) {
    set_expert_weight_grad(ops, modes[m]);
    const Timing t = time_runs(
        [&] {
          ops.grouped_matmul_backward(Tensor{}, wd.t, dy.t, h.t, w_out.t, off.t);
          ops.grouped_matmul_backward(Tensor{}, wg.t, dgate.t, x.t, w_in.t, off.t);
          ops.grouped_matmul_backward(Tensor{}, wu.t, dup.t, x.t, w_in.t, off.t);
        },
        sync, min_s, reps);
    seconds[m] = t.median;
    Json jm;
    jm["path"] = expert_weight_grad_path(ops);
    jm["seconds"] = round_dec(t.median, 7);
    jm["tflops"] = round_dec(flops / t.median * 1e-12, 2);
    jm["ratio_to_bf16_gemm"] = round_dec(flops / t.median * 1e-9 / ceil.bf16_gflops, 4);
    j[modes[m]] = jm;
  }
  set_expert_weight_grad(ops, "automatic");
  j["grouped_over_per_expert"] = round_dec(seconds[1] / seconds[0], 3);  // > 1: grouped is faster
  return j;
}

}  // namespace

std::string run_bench_model(const BenchModelOptions& o) {
  if (o.threads > 0) {
    omp_set_num_threads(o.threads);
    openblas_set_num_threads(o.threads);
  }
  const ModelConfig cfg = bench_config(o);
  if (!o.save_config.empty()) save_model_config(cfg, o.save_config);
  const bool gpu_sized = o.config.empty() && o.preset == "gpu";
  auto pick = [&](int64_t given, int64_t quick, int64_t gpu, int64_t other) {
    return o.quick ? quick : given > 0 ? given : gpu_sized ? gpu : other;
  };
  const double min_s = o.quick ? 0.05 : o.min_seconds;
  const int reps = o.quick ? 3 : std::max(o.repeats, 1);
  const int64_t seq_len = pick(o.seq_len, 64, 1024, 512);
  const int64_t train_tokens = pick(o.train_tokens, 256, 8192, 2048);
  const int64_t prompt = pick(o.prompt_len, 16, 256, 128);
  const int64_t steps = pick(o.decode_steps, 4, 32, 16);
  const std::vector<int64_t> batches =
      o.quick ? std::vector<int64_t>{1, 8} : o.batches.empty() ? std::vector<int64_t>{1, 8, 64} : o.batches;
  GRPO_CHECK(seq_len >= 2 && train_tokens >= seq_len && prompt >= 1 && steps >= 1 && !batches.empty(),
             "bench model: bad sizes (seq_len " << seq_len << ", train_tokens " << train_tokens << ", prompt "
                                                << prompt << ", decode_steps " << steps << ")");
  const int64_t max_batch = *std::max_element(batches.begin(), batches.end());
  const int64_t S = train_tokens / seq_len, T = S * seq_len;

  ModelLimits limits;
  limits.max_tokens = T;
  limits.max_seqs = S;
  limits.training = true;
  limits.max_decode_tokens = max_batch * prompt;
  limits.max_decode_seqs = max_batch;
  KvCacheConfig kc;
  kc.block_size = 16;
  kc.num_blocks = max_batch * ((prompt + steps + kc.block_size - 1) / kc.block_size + 1);
  // The dtype; a dry run builds no Ops, so "auto" follows the device's name there.
  std::unique_ptr<Ops> ops_ptr;
  DeviceChoice dc;
  if (o.dry_run) {
    GRPO_CHECK(o.dtype == "auto" || o.dtype == "f32" || o.dtype == "bf16",
               "dtype \"" << o.dtype << "\" is not valid: use auto, f32 or bf16");
    const bool named_cuda = o.device.rfind("cuda", 0) == 0;
    limits.dtype = o.dtype == "bf16" || (o.dtype == "auto" && named_cuda) ? DType::bf16 : DType::f32;
  } else {
    dc = resolve_device(o.device);
    ops_ptr = make_ops(dc);
    limits.dtype = resolve_dtype(o.dtype, *ops_ptr);
  }
  kc.dtype = limits.dtype;

  const ModelParamCounts counts = count_model_params(cfg);
  const double state_bytes = double(ParamTable(cfg).size()) * 4.0;  // one flat f32 buffer
  Json doc;
  doc["bench"] = "model";
  doc["arch"] = cfg.model_type;
  doc["preset"] = o.config.empty() ? o.preset : "config:" + o.config;
  doc["config"] = model_config_json(cfg);
  doc["params"] = {{"total", counts.total}, {"active_per_token", counts.active_per_token}};
  doc["dtype"] = dtype_name(limits.dtype);
  Json mem;
  mem["params"] = round_dec(state_bytes / kGiB, 3);
  if (limits.dtype != DType::f32)
    mem["compute_copy"] = round_dec(state_bytes / 4.0 * double(dtype_size(limits.dtype)) / kGiB, 3);
  mem["grads"] = round_dec(state_bytes / kGiB, 3);
  mem["adamw_state_not_allocated"] = round_dec(2 * state_bytes / kGiB, 3);
  mem["training_arena"] = round_dec(double(Model::training_arena_bytes(cfg, limits)) / kGiB, 3);
  mem["kv_cache"] = round_dec(double(KvCache::bytes_needed(cfg, kc)) / kGiB, 3);
  if (o.dry_run) {
    doc["memory_gib"] = mem;
    doc["batch"] = {{"train_tokens", T}, {"sequence_length", seq_len}, {"prompt_tokens", prompt},
                    {"decode_steps", steps}, {"batches", batches}};
    return doc.dump(2);
  }

  const bool cuda = dc.device == Device::cuda;
  Ops& ops = *ops_ptr;
  doc["device"] = describe_device(dc);
  doc["threads"] = omp_get_max_threads();
  // Waits for the device: a stream-ordered copy to the host returns after all queued work.
  Buffer probe(ops.allocator(), 256);
  probe.zero();
  const std::function<void()> sync = [&] {
    float x;
    ops.allocator().copy_to_host(&x, probe.data(), sizeof(float));
  };

  // ---- ceilings (measured before the model is built, their buffers freed after)
  Ceilings ceil;
  Json jc;
  if (cuda) {
    const int64_t n = o.quick ? 2048 : 8192;
    ceil.f32_gflops = ops_gemm_gflops(ops, DType::f32, n, min_s, reps, sync);
    ceil.bf16_gflops = ops_gemm_gflops(ops, DType::bf16, n, min_s, reps, sync);
    ceil.copy_gbps = ops_copy_gbps(ops, o.quick ? (64ll << 20) : (1ll << 30), min_s, reps, sync);
    jc["gemm_f32_tflops"] = round_dec(ceil.f32_gflops * 1e-3, 2);
    jc["gemm_bf16_tflops"] = round_dec(ceil.bf16_gflops * 1e-3, 2);
    jc["gemm_shape"] = Json::array({n, n, n});
    jc["gemm_note"] = "Ops::matmul, out = a @ b^T, f32 without TF32 and bf16 (cuBLAS)";
  } else {
    ceil.f32_gflops = sgemm_gflops(std::min<int64_t>(T, 2048), std::max(cfg.intermediate_size, 4 * cfg.hidden_size),
                                   cfg.hidden_size, min_s, reps);
    ceil.copy_gbps = ops_copy_gbps(ops, o.quick ? (16ll << 20) : (256ll << 20), min_s, reps, sync);
    jc["sgemm_note"] = "OpenBLAS sgemm at the widest linear layer shape";
  }
  jc["copy_gbytes_per_s"] = round_dec(ceil.copy_gbps, 1);
  jc["copy_note"] = "Ops::copy of a large f32 buffer, bytes read + written";
  doc["ceilings"] = jc;
  doc["sgemm_gflops"] = round_dec(ceil.f32_gflops, 2);
  doc["flops_formula"] =
      "forward per token = 2 * matmul_params_per_token + 4 * layers * heads * head_dim * context "
      "(context: (n + 1) / 2 for causal sequences of n tokens, the cached length when decoding); "
      "training = 3x forward; prefill counts the LM head (2 * vocab * hidden) once per prompt";
  doc["decode_bytes_formula"] =
      "per step, elements of the model's dtype: every weight once except the embedding (B rows; whole when tied) and routed experts "
      "(share hit by B tokens: 1 - (1 - K/E)^B), plus K and V of every sequence's context";
  doc["matmul_params_per_token"] = int64_t(matmul_params_per_token(cfg));
  doc["timing"] = "median of >= " + std::to_string(reps) + " runs after one warm-up, device synchronised";

  Model model(cfg, ops, limits);
  fill_bench_weights(model);
  KvCache cache(ops, cfg, kc);
  mem["decode_arena"] = round_dec(double(model.decode_arena_bytes()) / kGiB, 3);
  doc["memory_gib"] = mem;

  // ---- training: forward + backward over a packed batch of S sequences
  {
    const std::vector<int32_t> tok = random_tokens(T + 1, cfg.vocab_size, 7);
    std::vector<int32_t> tokens(tok.begin(), tok.end() - 1), targets(tok.begin() + 1, tok.end());
    std::vector<int32_t> pos(static_cast<size_t>(T)), cu(static_cast<size_t>(S + 1));
    for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = int32_t(t % seq_len);
    for (int64_t s = 0; s <= S; ++s) cu[size_t(s)] = int32_t(s * seq_len);
    const DevTensor dtok = upload(ops, tokens, DType::i32, {T}), dtgt = upload(ops, targets, DType::i32, {T}),
                    dpos = upload(ops, pos, DType::i32, {T}), dcu = upload(ops, cu, DType::i32, {S + 1});
    const DevTensor lp = dev_empty(ops, DType::f32, {T});
    const DevTensor dlp = upload(ops, std::vector<float>(size_t(T), -1.0f / float(T)), DType::f32, {T});
    const PackedBatch b{dtok.t, dtgt.t, dpos.t, dcu.t};
    ForwardOptions opt;
    opt.with_grad = true;
    auto step = [&] {
      ForwardOutputs out;
      out.logprob = lp.t;
      model.forward(b, opt, out);
      model.backward(dlp.t, Tensor{}, 0.0f);
    };
    const Timing t = time_runs(step, sync, min_s, reps);
    Json j = rate(double(T), t, 3.0 * forward_flops_per_token(cfg, double(seq_len + 1) / 2.0), ceil);
    j["batch_tokens"] = T;
    j["sequence_length"] = seq_len;
    // bf16 MoE on CUDA: the expert weight gradients' path (the default: one GEMM per expert),
    // and the same step with the grouped path for them.
    const bool mixed_moe = cuda && cfg.num_moe_layers() > 0 && limits.dtype == DType::bf16;
    if (mixed_moe) {
      j["expert_weight_grad"] = expert_weight_grad_path(ops);
      set_expert_weight_grad(ops, "grouped");
      const Timing tg = time_runs(step, sync, min_s, reps);
      j["grouped_weight_grad"] = {{"path", expert_weight_grad_path(ops)},
                                  {"tokens_per_s", round_dec(double(T) / tg.median, 1)},
                                  {"ratio_to_default", round_dec(t.median / tg.median, 3)}};
      set_expert_weight_grad(ops, "automatic");
    }
    doc["train"] = j;
    if (mixed_moe) {
      const int64_t R = T * cfg.num_experts_per_tok;
      Json jw = Json::array();
      for (int64_t rows : {R / 8, R}) jw.push_back(bench_expert_weight_grad(ops, cfg, rows, min_s, reps, sync, ceil));
      doc["expert_weight_grad"] = jw;
    }
  }

  // ---- prefill and decode at each batch size
  const DevTensor prompts = upload(ops, random_tokens(max_batch * prompt, cfg.vocab_size, 11), DType::i32,
                                   {max_batch * prompt});
  const DevTensor logits = dev_empty(ops, DType::f32, {max_batch, cfg.vocab_size});
  const DevTensor step_tokens = upload(ops, random_tokens(max_batch, cfg.vocab_size, 13), DType::i32, {max_batch});
  Json prefill = Json::array(), decode = Json::array();
  for (int64_t B : batches) {
    std::vector<int64_t> ids(static_cast<size_t>(B)), n(static_cast<size_t>(B), prompt);
    const Tensor tprompt = prompts.t.rows(0, B * prompt);
    const Tensor tlogits = logits.t.rows(0, B);
    const Timing tp = time_runs(
        [&] {
          for (int64_t& id : ids) id = cache.add_sequence();
          model.prefill(cache, ids, tprompt, n, tlogits);
          for (int64_t id : ids) cache.remove_sequence(id);
        },
        sync, min_s, reps);
    const double prefill_flops = forward_flops_per_token(cfg, double(prompt + 1) / 2.0, 1.0 / double(prompt));
    Json jp = rate(double(B * prompt), tp, prefill_flops, ceil);
    jp["batch"] = B;
    jp["prompt_tokens"] = prompt;
    prefill.push_back(jp);

    for (int64_t& id : ids) id = cache.add_sequence();
    model.prefill(cache, ids, tprompt, n, tlogits);
    const Tensor tstep = step_tokens.t.rows(0, B);
    auto time_decode = [&](DecodeGraphs mode) {
      model.set_decode_graphs(mode);
      return time_runs(
          [&] {
            for (int64_t i = 0; i < steps; ++i) model.decode_step(cache, ids, tstep, tlogits);
            for (int64_t id : ids) cache.truncate(id, prompt);
          },
          sync, min_s, reps);
    };
    // The model's default (graphs on CUDA: the warm-up run captures them), then on CUDA the
    // same steps op by op, for the graphs' share.
    const DecodeGraphStats before = model.decode_graph_stats();
    const Timing td = time_decode(limits.decode_graphs);
    const DecodeGraphStats after = model.decode_graph_stats();
    std::optional<Timing> eager;
    if (cuda) eager = time_decode(DecodeGraphs::off);
    model.set_decode_graphs(limits.decode_graphs);
    for (int64_t id : ids) cache.remove_sequence(id);
    const double context = double(prompt) + double(steps + 1) / 2.0;
    Json jd = rate(double(B * steps), td, forward_flops_per_token(cfg, context), ceil);
    jd["graph_replays"] = after.replays - before.replays;
    jd["graphs_captured"] = after.graphs - before.graphs;
    if (after.failed > before.failed) jd["graph_captures_failed"] = after.failed - before.failed;
    if (eager) {
      jd["op_by_op_tokens_per_s"] = round_dec(double(B * steps) / eager->median, 1);
      jd["graph_speedup"] = round_dec(eager->median / td.median, 3);
    }
    const double bytes = decode_bytes_per_step(cfg, double(B), context, double(dtype_size(limits.dtype)));
    const double gbps = bytes * double(steps) / td.median * 1e-9;
    jd["batch"] = B;
    jd["context"] = Json::array({prompt + 1, prompt + steps});
    jd["bytes_per_step"] = round_dec(bytes, 0);
    jd["gbytes_per_s"] = round_dec(gbps, 2);
    jd["ratio_to_copy_bandwidth"] = round_dec(gbps / ceil.copy_gbps, 4);
    decode.push_back(jd);
  }
  doc["prefill"] = prefill;
  doc["decode"] = decode;
  return doc.dump(2);
}

}  // namespace grpo
