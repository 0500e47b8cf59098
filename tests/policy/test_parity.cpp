// Parity with Hugging Face transformers: tests/parity/fixtures/<arch>/ holds a tiny random model
// built and saved by transformers (config.json, model.safetensors) and what transformers computed
// for it in fp32 (expected.safetensors: logits, next-token log-probs, the LM and load-balancing
// losses, and the gradient of the loss for every saved tensor). tests/parity/make_fixtures.py
// writes them; its docstring defines every recorded tensor and lists the semantics matched here.
//
// Each architecture is loaded with the grpo model (config parser, ParamTable, safetensors reader,
// Model on the CPU ops) and compared:
//   Config      config.json as transformers wrote it (rope_parameters) or as the Hub writes it
//               (rope_theta + rope_scaling), head_dim null or explicit, MoE layer placement.
//   Checkpoint  the ParamTable's names and shapes are exactly the tensors save_pretrained wrote
//               (legacy per-expert names; no lm_head when tied).
//   Training    one packed forward (the three sequences back to back, cu_seqlens) with grad:
//               per-token log-probs, entropy, the LM loss, the aux loss, the routing; then
//               backward of loss = -mean(logprob) + coef * aux and every parameter gradient.
//               Repeated with activation recomputation.
//   Decode      prefill of whole sequences (last-position logits), and prefill of prefixes
//               followed by decode_step of a batch of sequences of different lengths: the logits
//               at every decoded position.
//
// Tolerances. Both sides compute in fp32 from the same fp32 weights; the only difference is the
// order of floating-point operations (transformers' eager matmuls, softmax and index_add versus
// grpo's blocked kernels, fused LM head and expert permutation). A length-K fp32 sum carries a
// relative error of order sqrt(K) * 2^-24 ~ 1e-6 of the sum of |terms| for K <= 128 here, and the
// two or three residual layers compound a few such terms. Measured on the CPU backend (the
// [parity] lines this test prints): logits rel L2 <= 5e-7, log-probs max abs <= 1.2e-6, losses
// rel <= 1.2e-7, gradients rel L2 <= 2.5e-6 per tensor. The bounds leave 10-40x headroom for
// other kernels and compilers, and stay below the smallest semantic error we tried on these
// fixtures in transformers itself: qwen3 rms_norm_eps 1e-6 -> 1e-7 moves the logits by 2.7e-5
// relative and the log-probs by 8.6e-5; dropping llama3 RoPE scaling 4e-3 and 2e-2; flipping
// norm_topk_prob 8e-2 and 0.2; leaving out the aux-loss gradient changes router gradients by
// 1.5e-2 to 0.3 relative.
//   logits (prefill/decode)   relative L2 <= 1e-5 over all compared [positions, V]
//   log-probs, entropy        max abs <= 1e-5 nats (values ~5)
//   LM loss, aux loss, total  relative <= 1e-5
//   gradients                 per tensor ||g - g_ref|| <= 1e-4 * max(||g_ref||, 1e-2 * G), G the
//                             largest gradient norm of the model: relative L2 <= 1e-4, except
//                             that a tensor whose true gradient nearly cancels (a k_proj bias sees
//                             only RoPE's position dependence: ||g|| ~ 1e-3 G) is held to the
//                             error budget of the model's scale rather than to amplified
//                             cancellation noise.
// Routing must match exactly: make_fixtures.py refuses draws whose top-k choice is within 1e-3 of a
// tie in router probability (routing_margin), far beyond fp32 reordering noise (~1e-7).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "kernels/ops.h"
#include "policy/kv_cache.h"
#include "policy/model.h"
#include "policy/model_config.h"
#include "policy/params.h"
#include "policy/safetensors.h"

namespace grpo {
namespace {

const std::vector<std::string>& parity_archs() {
  static const std::vector<std::string> a = {"qwen3_moe", "qwen2_moe", "mixtral", "olmoe", "qwen2", "qwen3", "llama"};
  return a;
}

std::string fixture_dir(const std::string& arch) {
  return std::string(GRPO_SOURCE_DIR) + "/tests/parity/fixtures/" + arch;
}

constexpr double kLogitsRelL2 = 1e-5;
constexpr double kLogprobAbs = 1e-5;
constexpr double kLossRel = 1e-5;
constexpr double kGradRel = 1e-4;
constexpr double kGradFloor = 1e-2;  // fraction of the model's largest gradient norm

// ---- expected.safetensors -----------------------------------------------------------------

struct Expected {
  SafetensorsFile file;

  explicit Expected(const std::string& dir) : file(SafetensorsFile::open(dir + "/expected.safetensors")) {}

  const SafetensorsTensorInfo& info(const std::string& name) const {
    const SafetensorsTensorInfo* i = file.find(name);
    GRPO_CHECK(i != nullptr, file.path() << ": no tensor " << name);
    return *i;
  }
  bool has(const std::string& name) const { return file.find(name) != nullptr; }
  std::vector<float> f32(const std::string& name) const {
    const SafetensorsTensorInfo& i = info(name);
    GRPO_CHECK(i.dtype == DType::f32, file.path() << ": " << name << " is not F32");
    std::vector<float> v(size_t(i.numel()));
    std::memcpy(v.data(), file.data(i), v.size() * sizeof(float));
    return v;
  }
  std::vector<int64_t> i64(const std::string& name) const {
    const SafetensorsTensorInfo& i = info(name);
    GRPO_CHECK(i.dtype == DType::i64, file.path() << ": " << name << " is not I64");
    std::vector<int64_t> v(size_t(i.numel()));
    std::memcpy(v.data(), file.data(i), v.size() * sizeof(int64_t));
    return v;
  }
  float scalar(const std::string& name) const { return f32(name).at(0); }
  std::string meta(const std::string& key) const {
    auto it = file.metadata().find(key);
    GRPO_CHECK(it != file.metadata().end(), file.path() << ": no metadata " << key);
    return it->second;
  }
};

std::vector<int64_t> parse_int_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(std::stoll(item));
  return out;
}

// ---- error metrics ------------------------------------------------------------------------

struct Diff {
  double max_abs = 0, rel_l2 = 0, err_l2 = 0, ref_l2 = 0;
};

Diff diff(const std::vector<float>& got, const std::vector<float>& ref) {
  Diff d;
  EXPECT_EQ(got.size(), ref.size());
  double e2 = 0, r2 = 0;
  for (size_t i = 0; i < std::min(got.size(), ref.size()); ++i) {
    const double e = double(got[i]) - double(ref[i]);
    d.max_abs = std::max(d.max_abs, std::fabs(e));
    e2 += e * e;
    r2 += double(ref[i]) * double(ref[i]);
  }
  d.err_l2 = std::sqrt(e2);
  d.ref_l2 = std::sqrt(r2);
  d.rel_l2 = d.ref_l2 > 0 ? d.err_l2 / d.ref_l2 : d.err_l2;
  return d;
}

double rel(double got, double ref) { return std::fabs(got - ref) / std::max(std::fabs(ref), 1e-30); }

void report(const std::string& arch, const std::string& what, const std::string& numbers) {
  std::printf("[parity] %-9s %-22s %s\n", arch.c_str(), what.c_str(), numbers.c_str());
}

std::string fmt(const char* f, double a, double b = 0) {
  char buf[160];
  std::snprintf(buf, sizeof buf, f, a, b);
  return buf;
}

// ---- device helpers -----------------------------------------------------------------------

std::vector<float> to_host(Ops& ops, Tensor t) {
  std::vector<float> v(size_t(t.numel()));
  ops.allocator().copy_to_host(v.data(), t.data, v.size() * sizeof(float));
  return v;
}

std::vector<int32_t> to_host_i32(Ops& ops, Tensor t) {
  std::vector<int32_t> v(size_t(t.numel()));
  ops.allocator().copy_to_host(v.data(), t.data, v.size() * sizeof(int32_t));
  return v;
}

struct DeviceI32 {
  Buffer buf;
  Tensor t;
  DeviceI32(Ops& ops, const std::vector<int32_t>& v)
      : buf(ops.allocator(), std::max<size_t>(v.size(), 1) * sizeof(int32_t)) {
    ops.allocator().copy_from_host(buf.data(), v.data(), v.size() * sizeof(int32_t));
    t = buf.view(DType::i32, {int64_t(v.size())});
  }
};

struct DeviceF32 {
  Buffer buf;
  Tensor t;
  DeviceF32(Ops& ops, std::initializer_list<int64_t> shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    buf = Buffer(ops.allocator(), size_t(std::max<int64_t>(n, 1)) * sizeof(float));
    buf.zero();
    t = buf.view(DType::f32, shape);
  }
  DeviceF32(Ops& ops, const std::vector<float>& v) : DeviceF32(ops, {int64_t(v.size())}) {
    ops.allocator().copy_from_host(buf.data(), v.data(), v.size() * sizeof(float));
  }
};

// Reference log-softmax statistics of one row of transformers' logits, in double.
struct RowStats {
  double lse = 0, entropy = 0;
};
RowStats row_stats(const float* logits, int64_t V) {
  double m = -INFINITY;
  for (int64_t v = 0; v < V; ++v) m = std::max(m, double(logits[v]));
  double s = 0;
  for (int64_t v = 0; v < V; ++v) s += std::exp(double(logits[v]) - m);
  RowStats r;
  r.lse = m + std::log(s);
  for (int64_t v = 0; v < V; ++v) {
    const double lp = double(logits[v]) - r.lse;
    r.entropy -= std::exp(lp) * lp;
  }
  return r;
}

// ---- the fixture as a packed batch ---------------------------------------------------------

struct Fixture {
  std::string arch, dir;
  Expected exp;
  ModelConfig cfg;
  std::vector<int64_t> ids, cu, targets;  // targets: -100 at each sequence's last position
  std::vector<float> mask, logits, logprobs;
  int64_t T = 0, S = 0, V = 0, n_pred = 0;

  explicit Fixture(const std::string& a) : arch(a), dir(fixture_dir(a)), exp(dir) {
    cfg = load_model_config(dir);
    ids = exp.i64("input_ids");
    cu = exp.i64("cu_seqlens");
    targets = exp.i64("targets");
    mask = exp.f32("loss_mask");
    logits = exp.f32("logits");
    logprobs = exp.f32("logprobs");
    T = int64_t(ids.size());
    S = int64_t(cu.size()) - 1;
    V = cfg.vocab_size;
    n_pred = T - S;
    GRPO_CHECK(int64_t(logits.size()) == T * V, dir << ": logits are not [T, V]");
  }
  int64_t seq_len(int64_t s) const { return cu[size_t(s) + 1] - cu[size_t(s)]; }
};

ModelLimits parity_limits(bool recompute) {
  ModelLimits l;
  l.max_tokens = 64;
  l.max_seqs = 8;
  l.training = true;
  l.recompute = recompute;
  l.max_decode_tokens = 32;
  l.max_decode_seqs = 4;
  return l;
}

class Parity : public ::testing::TestWithParam<std::string> {};

// ---- config.json and the checkpoint layout ---------------------------------------------------

TEST_P(Parity, Config) {
  const std::string arch = GetParam();
  Fixture fx(arch);
  const ModelConfig& c = fx.cfg;
  EXPECT_EQ(c.model_type, arch);
  EXPECT_EQ(c.vocab_size, 128);
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_key_value_heads, 2);
  // head_dim: explicit and != hidden/heads for the qwen3 family, null for mixtral.
  const int64_t want_head_dim = arch == "qwen3" ? 12 : arch == "qwen3_moe" ? 16 : 8;
  EXPECT_EQ(c.head_dim, want_head_dim);
  EXPECT_EQ(c.rope.head_dim, want_head_dim);
  // The MoE layers transformers built (recorded by make_fixtures.py).
  const std::vector<int64_t> moe_layers = parse_int_list(fx.exp.meta("moe_layers"));
  std::vector<int64_t> ours;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    if (c.is_moe() && c.is_moe_layer(l)) ours.push_back(l);
  EXPECT_EQ(ours, moe_layers);
  EXPECT_EQ(c.num_moe_layers(), int64_t(moe_layers.size()));
  if (!moe_layers.empty()) {
    EXPECT_EQ(c.num_experts, 4);
    EXPECT_EQ(c.num_experts_per_tok, 2);
    EXPECT_TRUE(c.output_router_logits);
    EXPECT_FLOAT_EQ(float(c.router_aux_loss_coef), fx.exp.scalar("aux_coef"));
  }
  if (arch == "qwen3_moe" || arch == "mixtral") {
    EXPECT_TRUE(c.norm_topk_prob) << "renormalised top-k";
  }
  if (arch == "qwen2_moe" || arch == "olmoe") {
    EXPECT_FALSE(c.norm_topk_prob);
  }
  if (arch == "qwen2_moe") {
    EXPECT_EQ(c.shared_expert_intermediate_size, 24);
    EXPECT_EQ(c.moe_intermediate_size, 16);
    EXPECT_EQ(c.intermediate_size, 48);
  }
  EXPECT_EQ(c.tie_word_embeddings, arch == "qwen3" || arch == "llama");
  const double want_theta = arch == "llama" ? 500000.0 : arch == "olmoe" ? 10000.0 : 1e6;
  EXPECT_DOUBLE_EQ(c.rope.theta, want_theta);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, arch == "mixtral" || arch == "olmoe" || arch == "llama" ? 1e-5 : 1e-6);
  EXPECT_FALSE(c.pad_token_id.has_value());
}

TEST_P(Parity, Checkpoint) {
  const std::string arch = GetParam();
  Fixture fx(arch);
  const ParamTable table(fx.cfg);
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open(fx.dir);
  std::set<std::string> table_names;
  int64_t numel = 0;
  for (const ParamEntry& e : table.entries()) {
    table_names.insert(e.name);
    numel += e.numel();
    ASSERT_TRUE(ckpt.has(e.name)) << arch << ": the checkpoint has no " << e.name;
    EXPECT_EQ(ckpt.info(e.name).shape, e.shape) << arch << ": " << e.name;
    EXPECT_TRUE(fx.exp.has("grad." + e.name)) << arch << ": the fixture has no gradient of " << e.name;
  }
  for (const std::string& n : ckpt.names()) EXPECT_TRUE(table_names.count(n)) << arch << ": unexpected tensor " << n;
  EXPECT_EQ(table.has("lm_head.weight"), !fx.cfg.tie_word_embeddings);
  EXPECT_EQ(count_model_params(fx.cfg).total, numel);
}

// ---- training forward and backward ---------------------------------------------------------

void check_training(const std::string& arch, bool recompute) {
  Fixture fx(arch);
  const std::string tag = recompute ? " (recompute)" : "";
  auto ops = make_cpu_ops();
  std::unique_ptr<Model> model = load_model(fx.dir, *ops, parity_limits(recompute));
  const ModelConfig& cfg = model->config();
  const int64_t T = fx.T, V = fx.V;

  // The packed batch; the last position of each sequence has no next token: target 0 there
  // (zero gradient), and its log-prob is checked against transformers' logits row instead.
  std::vector<int32_t> tok(static_cast<size_t>(T)), tgt(static_cast<size_t>(T)), pos(static_cast<size_t>(T)), cu(fx.cu.begin(), fx.cu.end());
  for (int64_t s = 0; s < fx.S; ++s)
    for (int64_t t = fx.cu[size_t(s)]; t < fx.cu[size_t(s) + 1]; ++t) {
      tok[size_t(t)] = int32_t(fx.ids[size_t(t)]);
      tgt[size_t(t)] = fx.targets[size_t(t)] < 0 ? 0 : int32_t(fx.targets[size_t(t)]);
      pos[size_t(t)] = int32_t(t - fx.cu[size_t(s)]);
    }
  DeviceI32 d_tok(*ops, tok), d_tgt(*ops, tgt), d_pos(*ops, pos), d_cu(*ops, cu);
  PackedBatch batch{d_tok.t, d_tgt.t, d_pos.t, d_cu.t};

  const int64_t n_moe = cfg.is_moe() ? cfg.num_moe_layers() : 0;
  const int64_t K = cfg.num_experts_per_tok;
  DeviceF32 d_lp(*ops, {T}), d_ent(*ops, {T});
  Buffer routing_buf;
  ForwardOutputs out;
  out.logprob = d_lp.t;
  out.entropy = d_ent.t;
  if (n_moe > 0) {
    routing_buf = Buffer(ops->allocator(), size_t(n_moe * T * K) * sizeof(int32_t));
    out.routing = routing_buf.view(DType::i32, {n_moe, T, K});
  }
  ForwardOptions opt;
  opt.with_grad = true;
  opt.entropy = true;
  model->forward(batch, opt, out);

  // Log-probs: the recorded target log-probs, and at the last positions log_softmax(logits)[0].
  const std::vector<float> lp = to_host(*ops, d_lp.t), ent = to_host(*ops, d_ent.t);
  std::vector<float> ref_lp(static_cast<size_t>(T)), ref_ent(static_cast<size_t>(T));
  double lp_sum = 0;
  for (int64_t t = 0; t < T; ++t) {
    const RowStats rs = row_stats(&fx.logits[size_t(t * V)], V);
    ref_ent[size_t(t)] = float(rs.entropy);
    ref_lp[size_t(t)] = fx.mask[size_t(t)] > 0 ? fx.logprobs[size_t(t)] : float(double(fx.logits[size_t(t * V)]) - rs.lse);
    if (fx.mask[size_t(t)] > 0) lp_sum += lp[size_t(t)];
  }
  const Diff dlp = diff(lp, ref_lp), dent = diff(ent, ref_ent);
  report(arch, "logprob" + tag, fmt("max_abs=%.3g rel_l2=%.3g", dlp.max_abs, dlp.rel_l2));
  report(arch, "entropy" + tag, fmt("max_abs=%.3g rel_l2=%.3g", dent.max_abs, dent.rel_l2));
  EXPECT_LE(dlp.max_abs, kLogprobAbs) << arch << tag << ": per-token log-probs";
  EXPECT_LE(dent.max_abs, kLogprobAbs) << arch << tag << ": entropy";

  const double loss_lm = -lp_sum / double(fx.n_pred);
  const double ref_lm = fx.exp.scalar("loss_lm"), ref_aux = fx.exp.scalar("aux_loss"),
               ref_loss = fx.exp.scalar("loss"), coef = fx.exp.scalar("aux_coef");
  const double loss = loss_lm + coef * double(out.aux_loss);
  report(arch, "loss" + tag,
         fmt("lm rel=%.3g", rel(loss_lm, ref_lm)) + fmt(" aux rel=%.3g", n_moe ? rel(out.aux_loss, ref_aux) : 0.0) +
             fmt(" total rel=%.3g (abs %.3g)", rel(loss, ref_loss), std::fabs(loss - ref_loss)));
  EXPECT_LE(rel(loss_lm, ref_lm), kLossRel) << arch << tag << ": LM loss " << loss_lm << " vs " << ref_lm;
  if (n_moe > 0) {
    EXPECT_LE(rel(out.aux_loss, ref_aux), kLossRel) << arch << tag << ": aux loss " << out.aux_loss << " vs " << ref_aux;
  } else {
    EXPECT_EQ(out.aux_loss, 0.0f);
  }
  EXPECT_LE(rel(loss, ref_loss), kLossRel) << arch << tag << ": total loss";
  EXPECT_FLOAT_EQ(model->aux_loss_coef(), float(coef)) << arch << ": aux_loss_coef() vs router_aux_loss_coef";

  // Routing: the same set of experts for every token of every MoE layer.
  if (n_moe > 0) {
    const std::vector<int32_t> routing = to_host_i32(*ops, out.routing);
    const std::vector<int64_t> moe_layers = parse_int_list(fx.exp.meta("moe_layers"));
    ASSERT_EQ(int64_t(moe_layers.size()), n_moe);
    int64_t mismatches = 0;
    for (int64_t m = 0; m < n_moe; ++m) {
      const std::vector<int64_t> ref = fx.exp.i64("routing." + std::to_string(moe_layers[size_t(m)]));
      for (int64_t t = 0; t < T; ++t) {
        std::set<int64_t> a, b;
        for (int64_t k = 0; k < K; ++k) {
          a.insert(routing[size_t((m * T + t) * K + k)]);
          b.insert(ref[size_t(t * K + k)]);
        }
        if (a != b) ++mismatches;
      }
    }
    EXPECT_EQ(mismatches, 0) << arch << tag << ": tokens routed to other experts than transformers chose";
  }

  // Backward of loss = -sum(mask * logprob) / n_pred + coef * aux.
  std::vector<float> dlogprob(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) dlogprob[size_t(t)] = -fx.mask[size_t(t)] / float(fx.n_pred);
  DeviceF32 d_dlp(*ops, dlogprob);
  model->zero_grad();
  model->backward(d_dlp.t, Tensor(), n_moe > 0 ? model->aux_loss_coef() : 0.0f);

  double g_max = 0;  // the largest reference gradient norm of the model
  for (const ParamEntry& e : model->table().entries()) {
    double n2 = 0;
    for (float g : fx.exp.f32("grad." + e.name)) n2 += double(g) * double(g);
    g_max = std::max(g_max, std::sqrt(n2));
  }
  double worst_rel = 0, worst_scaled = 0;
  std::string worst_name;
  for (const ParamEntry& e : model->table().entries()) {
    const std::vector<float> ref = fx.exp.f32("grad." + e.name);
    const std::vector<float> got = to_host(*ops, model->grad(e.name));
    const Diff d = diff(got, ref);
    const double scaled = d.err_l2 / std::max(d.ref_l2, kGradFloor * g_max);
    if (d.rel_l2 > worst_rel) {
      worst_rel = d.rel_l2;
      worst_name = e.name;
    }
    worst_scaled = std::max(worst_scaled, scaled);
    EXPECT_LE(scaled, kGradRel) << arch << tag << ": gradient of " << e.name << " rel_l2 " << d.rel_l2 << " max_abs "
                                << d.max_abs << " |ref| " << d.ref_l2;
  }
  report(arch, "grads" + tag,
         fmt("worst rel_l2=%.3g", worst_rel) + " (" + worst_name + ")" + fmt(" worst scaled=%.3g", worst_scaled));
}

TEST_P(Parity, Training) { check_training(GetParam(), false); }
TEST_P(Parity, TrainingRecompute) { check_training(GetParam(), true); }

// ---- decoding: prefill and decode_step logits ------------------------------------------------

TEST_P(Parity, Decode) {
  const std::string arch = GetParam();
  Fixture fx(arch);
  auto ops = make_cpu_ops();
  ModelLimits limits = parity_limits(false);
  limits.training = false;
  std::unique_ptr<Model> model = load_model(fx.dir, *ops, limits);
  const int64_t V = fx.V, S = fx.S;
  KvCacheConfig kc;
  kc.block_size = 4;  // sequences span several blocks
  kc.num_blocks = 32;
  KvCache cache(*ops, model->config(), kc);

  std::vector<float> got_rows, ref_rows;  // every compared logits row, appended
  auto take = [&](const std::vector<float>& logits, int64_t b, int64_t fixture_row) {
    got_rows.insert(got_rows.end(), logits.begin() + b * V, logits.begin() + (b + 1) * V);
    ref_rows.insert(ref_rows.end(), fx.logits.begin() + fixture_row * V, fx.logits.begin() + (fixture_row + 1) * V);
  };

  // 1. Whole sequences in one prefill: each sequence's last-position logits.
  {
    std::vector<int64_t> seq_ids, num;
    std::vector<int32_t> tok;
    for (int64_t s = 0; s < S; ++s) {
      seq_ids.push_back(cache.add_sequence());
      num.push_back(fx.seq_len(s));
      for (int64_t t = fx.cu[size_t(s)]; t < fx.cu[size_t(s) + 1]; ++t) tok.push_back(int32_t(fx.ids[size_t(t)]));
    }
    DeviceI32 d_tok(*ops, tok);
    DeviceF32 d_logits(*ops, {S, V});
    model->prefill(cache, seq_ids, d_tok.t, num, d_logits.t);
    const std::vector<float> logits = to_host(*ops, d_logits.t);
    for (int64_t s = 0; s < S; ++s) take(logits, s, fx.cu[size_t(s) + 1] - 1);
    for (int64_t id : seq_ids) cache.remove_sequence(id);
  }
  const Diff dprefill = diff(got_rows, ref_rows);
  report(arch, "logits prefill", fmt("max_abs=%.3g rel_l2=%.3g", dprefill.max_abs, dprefill.rel_l2));
  EXPECT_LE(dprefill.rel_l2, kLogitsRelL2) << arch << ": prefill last-position logits";

  // 2. Prefill prefixes of different lengths, then decode the rest one token per step for the
  //    sequences still running: logits at every position from the prefix's last on.
  got_rows.clear();
  ref_rows.clear();
  {
    std::vector<int64_t> seq_ids, num, done(static_cast<size_t>(S));
    int64_t expected_rows = 0;
    std::vector<int32_t> tok;
    for (int64_t s = 0; s < S; ++s) {
      seq_ids.push_back(cache.add_sequence());
      const int64_t n = std::min<int64_t>(1 + s * 2, fx.seq_len(s));  // prefixes of 1, 3, 5 tokens
      num.push_back(n);
      done[size_t(s)] = n;
      expected_rows += fx.seq_len(s) - n + 1;
      for (int64_t t = 0; t < n; ++t) tok.push_back(int32_t(fx.ids[size_t(fx.cu[size_t(s)] + t)]));
    }
    DeviceI32 d_tok(*ops, tok);
    DeviceF32 d_logits(*ops, {S, V});
    model->prefill(cache, seq_ids, d_tok.t, num, d_logits.t);
    std::vector<float> logits = to_host(*ops, d_logits.t);
    for (int64_t s = 0; s < S; ++s) take(logits, s, fx.cu[size_t(s)] + done[size_t(s)] - 1);
    for (;;) {
      std::vector<int64_t> active, rows;
      std::vector<int32_t> step;
      for (int64_t s = 0; s < S; ++s)
        if (done[size_t(s)] < fx.seq_len(s)) {
          active.push_back(seq_ids[size_t(s)]);
          rows.push_back(fx.cu[size_t(s)] + done[size_t(s)]);
          step.push_back(int32_t(fx.ids[size_t(rows.back())]));
          ++done[size_t(s)];
        }
      if (active.empty()) break;
      const int64_t B = int64_t(active.size());
      DeviceI32 d_step(*ops, step);
      DeviceF32 d_step_logits(*ops, {B, V});
      model->decode_step(cache, active, d_step.t, d_step_logits.t);
      logits = to_host(*ops, d_step_logits.t);
      for (int64_t b = 0; b < B; ++b) take(logits, b, rows[size_t(b)]);
    }
    for (int64_t s = 0; s < S; ++s) EXPECT_EQ(cache.length(seq_ids[size_t(s)]), fx.seq_len(s));
    EXPECT_EQ(int64_t(got_rows.size()) / V, expected_rows);  // every position from each prefix's last on
  }
  const Diff ddecode = diff(got_rows, ref_rows);
  report(arch, "logits decode", fmt("max_abs=%.3g rel_l2=%.3g", ddecode.max_abs, ddecode.rel_l2));
  EXPECT_LE(ddecode.rel_l2, kLogitsRelL2) << arch << ": prefill + decode_step logits";
}

INSTANTIATE_TEST_SUITE_P(Parity, Parity, ::testing::ValuesIn(parity_archs()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// Every fixture directory is covered, and nothing covered is missing.
TEST(ParityFixtures, EveryArchitecture) {
  const std::string root = std::string(GRPO_SOURCE_DIR) + "/tests/parity/fixtures";
  std::set<std::string> dirs;
  for (const auto& e : std::filesystem::directory_iterator(root))
    if (e.is_directory()) dirs.insert(e.path().filename().string());
  const std::set<std::string> want(parity_archs().begin(), parity_archs().end());
  EXPECT_EQ(dirs, want);
  for (const std::string& a : want) {
    for (const char* f : {"config.json", "model.safetensors", "expected.safetensors"})
      EXPECT_TRUE(std::filesystem::exists(root + "/" + a + "/" + f)) << a << "/" << f;
  }
  // Every supported model_type has a fixture.
  const std::set<std::string> types(supported_model_types().begin(), supported_model_types().end());
  EXPECT_EQ(types, want);
}

}  // namespace
}  // namespace grpo
