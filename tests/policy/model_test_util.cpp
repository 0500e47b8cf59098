// The fp64 reference decoder and helpers of the model tests (see model_test_util.h).
// The reference follows the transformers modeling files directly (names, shapes, order of
// operations) with plain loops in double; it shares no code with policy/model*.cpp.
#include "tests/policy/model_test_util.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>
#include <regex>

#include "policy/params.h"

namespace grpo::test {

namespace {

using Vec = std::vector<double>;

struct Mat {  // row-major [rows, cols] view of a weight
  const Vec* v = nullptr;
  int64_t rows = 0, cols = 0;
  double at(int64_t r, int64_t c) const { return (*v)[size_t(r * cols + c)]; }
};

const Vec& get(const RefWeights& w, const std::string& name) {
  auto it = w.find(name);
  if (it == w.end()) throw std::runtime_error("reference: missing weight " + name);
  return it->second;
}

bool has(const RefWeights& w, const std::string& name) { return w.count(name) != 0; }

// y = W x (+ b), W [out, in] as nn.Linear.
Vec linear(const RefWeights& w, const std::string& prefix, const Vec& x, int64_t out) {
  const Vec& W = get(w, prefix + ".weight");
  const int64_t in = int64_t(x.size());
  Vec y(static_cast<size_t>(out), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    double s = 0;
    for (int64_t i = 0; i < in; ++i) s += W[size_t(o * in + i)] * x[size_t(i)];
    y[size_t(o)] = s;
  }
  if (has(w, prefix + ".bias")) {
    const Vec& b = get(w, prefix + ".bias");
    for (int64_t o = 0; o < out; ++o) y[size_t(o)] += b[size_t(o)];
  }
  return y;
}

// RMSNorm over [begin, begin + n) of x, weight w (LlamaRMSNorm: x / sqrt(mean x^2 + eps) * w).
void rmsnorm_inplace(double* x, int64_t n, const Vec& w, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const double r = 1.0 / std::sqrt(ss / double(n) + eps);
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * r * w[size_t(i)];
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

Vec swiglu_mlp(const RefWeights& w, const std::string& gate, const std::string& up, const std::string& down,
               const Vec& x, int64_t F) {
  Vec g = linear(w, gate, x, F), u = linear(w, up, x, F);
  for (int64_t i = 0; i < F; ++i) g[size_t(i)] = silu(g[size_t(i)]) * u[size_t(i)];
  return linear(w, down, g, int64_t(x.size()));
}

// inv_freq of modeling_rope_utils: default 1 / theta^(2i / dim); llama3 rescales bands.
Vec inv_freq(const ModelConfig& cfg) {
  const int64_t dim = int64_t(double(cfg.head_dim) * cfg.rope.partial_rotary_factor);
  Vec inv(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i) inv[size_t(i)] = 1.0 / std::pow(cfg.rope.theta, double(2 * i) / double(dim));
  const RopeScaling& s = cfg.rope.scaling;
  if (s.type == "linear") {
    for (double& f : inv) f /= s.factor;
  } else if (s.type == "llama3") {
    const double orig = double(s.original_max_position_embeddings > 0 ? s.original_max_position_embeddings
                                                                       : cfg.max_position_embeddings);
    const double low_wavelen = orig / s.low_freq_factor, high_wavelen = orig / s.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        f = f / s.factor;
      } else {
        const double smooth = (orig / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
  } else if (s.type != "default") {
    throw std::runtime_error("reference: rope type " + s.type + " not implemented");
  }
  return inv;
}

// rotate_half RoPE on one head of D values at position pos.
void rope(double* x, int64_t pos, const Vec& inv) {
  const int64_t half = int64_t(inv.size());
  for (int64_t i = 0; i < half; ++i) {
    const double a = double(pos) * inv[size_t(i)];
    const double c = std::cos(a), s = std::sin(a);
    const double x1 = x[i], x2 = x[i + half];
    x[i] = x1 * c - x2 * s;
    x[i + half] = x2 * c + x1 * s;
  }
}

std::string expert_prefix(const ModelConfig& cfg, int64_t l, int64_t e) {
  const std::string p = "model.layers." + std::to_string(l) + ".";
  return p + (cfg.model_type == "mixtral" ? "block_sparse_moe.experts." : "mlp.experts.") + std::to_string(e) + ".";
}

}  // namespace

RefWeights ref_weights(const Model& model) {
  RefWeights w;
  const std::vector<float> flat = read_tensor(model.params());
  for (const ParamEntry& e : model.table().entries())
    w[e.name] = Vec(flat.begin() + e.offset, flat.begin() + e.offset + e.numel());
  return w;
}

RefOutput ref_forward(const ModelConfig& cfg, const RefWeights& w, const RefInput& in, const RefOptions& opt) {
  const int64_t T = int64_t(in.tokens.size()), C = cfg.hidden_size, V = cfg.vocab_size;
  const int64_t Hq = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads, D = cfg.head_dim;
  const int64_t E = cfg.num_experts, K = cfg.num_experts_per_tok;
  const double eps = cfg.rms_norm_eps;
  const bool mixtral = cfg.model_type == "mixtral";
  const Vec inv = inv_freq(cfg);
  const Vec& embed = get(w, "model.embed_tokens.weight");

  std::vector<Vec> x(static_cast<size_t>(T), Vec(static_cast<size_t>(C)));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) x[size_t(t)][size_t(c)] = embed[size_t(in.tokens[size_t(t)] * C + c)];
  // sequence of each token
  std::vector<int64_t> seq_start(static_cast<size_t>(T));
  for (size_t s = 0; s + 1 < in.cu_seqlens.size(); ++s)
    for (int32_t t = in.cu_seqlens[s]; t < in.cu_seqlens[s + 1]; ++t) seq_start[size_t(t)] = in.cu_seqlens[s];

  RefOutput out;
  const size_t n_experts = static_cast<size_t>(std::max<int64_t>(E, 0));
  Vec expert_rows(n_experts, 0.0), psum(n_experts, 0.0);
  int64_t moe_index = 0;
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    // ---- attention
    std::vector<Vec> q(static_cast<size_t>(T)), k(static_cast<size_t>(T)), v(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      Vec h = x[size_t(t)];
      rmsnorm_inplace(h.data(), C, get(w, p + "input_layernorm.weight"), eps);
      q[size_t(t)] = linear(w, p + "self_attn.q_proj", h, Hq * D);
      k[size_t(t)] = linear(w, p + "self_attn.k_proj", h, Hkv * D);
      v[size_t(t)] = linear(w, p + "self_attn.v_proj", h, Hkv * D);
      if (cfg.model_type == "qwen3" || cfg.model_type == "qwen3_moe") {  // per-head q/k norm
        for (int64_t hh = 0; hh < Hq; ++hh)
          rmsnorm_inplace(q[size_t(t)].data() + hh * D, D, get(w, p + "self_attn.q_norm.weight"), eps);
        for (int64_t hh = 0; hh < Hkv; ++hh)
          rmsnorm_inplace(k[size_t(t)].data() + hh * D, D, get(w, p + "self_attn.k_norm.weight"), eps);
      } else if (cfg.model_type == "olmoe") {  // norm over the whole projection
        rmsnorm_inplace(q[size_t(t)].data(), Hq * D, get(w, p + "self_attn.q_norm.weight"), eps);
        rmsnorm_inplace(k[size_t(t)].data(), Hkv * D, get(w, p + "self_attn.k_norm.weight"), eps);
      }
      for (int64_t hh = 0; hh < Hq; ++hh) rope(q[size_t(t)].data() + hh * D, in.positions[size_t(t)], inv);
      for (int64_t hh = 0; hh < Hkv; ++hh) rope(k[size_t(t)].data() + hh * D, in.positions[size_t(t)], inv);
    }
    const double scale = 1.0 / std::sqrt(double(D));
    for (int64_t t = 0; t < T; ++t) {
      Vec att(static_cast<size_t>(Hq * D), 0.0);
      for (int64_t hh = 0; hh < Hq; ++hh) {
        const int64_t kh = hh / (Hq / Hkv);
        const int64_t s0 = seq_start[size_t(t)];
        Vec sc;
        double mx = -1e300;
        for (int64_t s = s0; s <= t; ++s) {
          double d = 0;
          for (int64_t i = 0; i < D; ++i) d += q[size_t(t)][size_t(hh * D + i)] * k[size_t(s)][size_t(kh * D + i)];
          sc.push_back(d * scale);
          mx = std::max(mx, d * scale);
        }
        double z = 0;
        for (double& e : sc) z += (e = std::exp(e - mx));
        for (int64_t s = s0; s <= t; ++s)
          for (int64_t i = 0; i < D; ++i)
            att[size_t(hh * D + i)] += sc[size_t(s - s0)] / z * v[size_t(s)][size_t(kh * D + i)];
      }
      const Vec o = linear(w, p + "self_attn.o_proj", att, C);
      for (int64_t c = 0; c < C; ++c) x[size_t(t)][size_t(c)] += o[size_t(c)];
    }
    // ---- FFN
    const bool moe = cfg.is_moe_layer(l);
    std::vector<int32_t> routing;
    for (int64_t t = 0; t < T; ++t) {
      Vec h = x[size_t(t)];
      rmsnorm_inplace(h.data(), C, get(w, p + "post_attention_layernorm.weight"), eps);
      Vec y(static_cast<size_t>(C), 0.0);
      if (!moe) {
        y = swiglu_mlp(w, p + "mlp.gate_proj", p + "mlp.up_proj", p + "mlp.down_proj", h, cfg.intermediate_size);
      } else {
        const Vec logits = linear(w, p + (mixtral ? "block_sparse_moe.gate" : "mlp.gate"), h, E);
        double mx = *std::max_element(logits.begin(), logits.end()), z = 0;
        Vec prob(static_cast<size_t>(E));
        for (int64_t e = 0; e < E; ++e) z += (prob[size_t(e)] = std::exp(logits[size_t(e)] - mx));
        for (double& pe : prob) pe /= z;
        std::vector<int32_t> order(static_cast<size_t>(E));
        for (int64_t e = 0; e < E; ++e) order[size_t(e)] = int32_t(e);
        std::stable_sort(order.begin(), order.end(),
                         [&](int32_t a, int32_t b) { return prob[size_t(a)] > prob[size_t(b)]; });
        if (K < E) {
          const double gap = prob[size_t(order[size_t(K - 1)])] - prob[size_t(order[size_t(K)])];
          out.min_gap = std::min(out.min_gap, gap);
        }
        std::vector<int32_t> sel(order.begin(), order.begin() + K);
        if (opt.replay) {
          const std::vector<int32_t>& r = (*opt.replay)[size_t(moe_index)];
          sel.assign(r.begin() + t * K, r.begin() + (t + 1) * K);
        }
        Vec gw(static_cast<size_t>(K));
        double gsum = 0;
        for (int64_t j = 0; j < K; ++j) gsum += (gw[size_t(j)] = prob[size_t(sel[size_t(j)])]);
        if (cfg.norm_topk_prob)
          for (double& g : gw) g /= gsum;
        for (int64_t j = 0; j < K; ++j) {
          const std::string ep = expert_prefix(cfg, l, sel[size_t(j)]);
          const Vec ye = mixtral ? swiglu_mlp(w, ep + "w1", ep + "w3", ep + "w2", h, cfg.moe_intermediate_size)
                                 : swiglu_mlp(w, ep + "gate_proj", ep + "up_proj", ep + "down_proj", h,
                                              cfg.moe_intermediate_size);
          for (int64_t c = 0; c < C; ++c) y[size_t(c)] += gw[size_t(j)] * ye[size_t(c)];
          expert_rows[size_t(sel[size_t(j)])] += 1;
          routing.push_back(sel[size_t(j)]);
        }
        for (int64_t e = 0; e < E; ++e) psum[size_t(e)] += prob[size_t(e)];
        if (has(w, p + "mlp.shared_expert_gate.weight")) {
          const Vec ys = swiglu_mlp(w, p + "mlp.shared_expert.gate_proj", p + "mlp.shared_expert.up_proj",
                                    p + "mlp.shared_expert.down_proj", h, cfg.shared_expert_intermediate_size);
          const double gl = linear(w, p + "mlp.shared_expert_gate", h, 1)[0];
          const double sg = 1.0 / (1.0 + std::exp(-gl));
          for (int64_t c = 0; c < C; ++c) y[size_t(c)] += sg * ys[size_t(c)];
        }
      }
      for (int64_t c = 0; c < C; ++c) x[size_t(t)][size_t(c)] += y[size_t(c)];
    }
    if (moe) {
      out.routing.push_back(routing);
      ++moe_index;
    }
  }
  // ---- final norm and LM head
  const Vec& lm = cfg.tie_word_embeddings ? embed : get(w, "lm_head.weight");
  out.logprob.assign(size_t(T), 0.0);
  out.entropy.assign(size_t(T), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    Vec h = x[size_t(t)];
    rmsnorm_inplace(h.data(), C, get(w, "model.norm.weight"), eps);
    Vec z(static_cast<size_t>(V));
    double mx = -1e300;
    for (int64_t vv = 0; vv < V; ++vv) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += lm[size_t(vv * C + c)] * h[size_t(c)];
      z[size_t(vv)] = s / opt.temperature;
      mx = std::max(mx, z[size_t(vv)]);
    }
    double sum = 0;
    for (int64_t vv = 0; vv < V; ++vv) sum += std::exp(z[size_t(vv)] - mx);
    const double lse = mx + std::log(sum);
    out.logprob[size_t(t)] = z[size_t(in.targets[size_t(t)])] - lse;
    double ent = 0;
    for (int64_t vv = 0; vv < V; ++vv) {
      const double lp = z[size_t(vv)] - lse;
      ent -= std::exp(lp) * lp;
    }
    out.entropy[size_t(t)] = ent;
  }
  if (opt.aux && moe_index > 0) {
    const double N = double(moe_index) * double(T);
    double acc = 0;
    for (int64_t e = 0; e < E; ++e) acc += (expert_rows[size_t(e)] / N) * (psum[size_t(e)] / N);
    out.aux = acc * double(E);
  }
  return out;
}

RefInput make_batch(const std::vector<int>& lengths, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(vocab - 1));
  RefInput in;
  in.cu_seqlens.push_back(0);
  for (int n : lengths) {
    std::vector<int32_t> seq(static_cast<size_t>(n) + 1);
    for (int32_t& s : seq) s = tok(rng);
    for (int i = 0; i < n; ++i) {
      in.tokens.push_back(seq[size_t(i)]);
      in.targets.push_back(seq[size_t(i) + 1]);
      in.positions.push_back(i);
    }
    in.cu_seqlens.push_back(int32_t(in.tokens.size()));
  }
  return in;
}

HostBatch::HostBatch(const RefInput& in)
    : tokens(in.tokens), targets(in.targets), positions(in.positions), cu_seqlens(in.cu_seqlens) {}

PackedBatch HostBatch::batch() const {
  const int64_t T = int64_t(tokens.size()), S = int64_t(cu_seqlens.size());
  PackedBatch b;
  b.tokens = Tensor(const_cast<int32_t*>(tokens.data()), DType::i32, {T});
  b.targets = Tensor(const_cast<int32_t*>(targets.data()), DType::i32, {T});
  b.positions = Tensor(const_cast<int32_t*>(positions.data()), DType::i32, {T});
  b.cu_seqlens = Tensor(const_cast<int32_t*>(cu_seqlens.data()), DType::i32, {S});
  return b;
}

ModelConfig test_config(const std::string& arch) {
  ModelConfig cfg = model_preset(arch, "tiny");
  if (arch == "llama") {
    cfg.qkv_bias = cfg.o_bias = true;  // attention_bias
    cfg.mlp_bias = true;
  }
  if (arch == "qwen3_moe") cfg.mlp_only_layers = {0};
  cfg.validate();
  return cfg;
}

ModelLimits decoding_limits(int64_t max_tokens, int64_t max_seqs, int64_t max_decode_tokens, int64_t max_decode_seqs) {
  ModelLimits limits;
  limits.max_tokens = max_tokens;
  limits.max_seqs = max_seqs;
  limits.training = false;
  limits.max_decode_tokens = max_decode_tokens;
  limits.max_decode_seqs = max_decode_seqs;
  return limits;
}

void randomize_weights(Model& model, uint64_t seed, double std) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, std);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  float* p = static_cast<float*>(model.params().data);
  for (const ParamEntry& e : model.table().entries()) {
    for (int64_t i = 0; i < e.numel(); ++i) {
      double v;
      if (e.kind == ParamKind::norm)
        v = 1.0 + 0.3 * u(rng);
      else if (e.kind == ParamKind::bias)
        v = 0.2 * u(rng);
      else
        v = normal(rng);
      p[e.offset + i] = float(v);
    }
  }
}

std::vector<float> read_tensor(const Tensor& t) {
  const float* p = t.ptr<float>();
  return std::vector<float>(p, p + t.numel());
}

std::string param_kind(const std::string& name) {
  static const std::regex num(R"(\.(\d+)\.)");
  std::string s = name, out;
  // Replace every ".<digits>." by ".*." (twice covers layers.N.experts.M).
  for (int i = 0; i < 2; ++i) s = std::regex_replace(s, num, ".*.");
  return s;
}

}  // namespace grpo::test
