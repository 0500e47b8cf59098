#include "learner/grpo_step.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <span>

#include "core/buffer.h"
#include "core/error.h"
#include "learner/optimizer.h"
#include "policy/model.h"

namespace grpo {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// One packed micro-batch on the host. Position t of sequence i predicts targets[t]; it counts
// in the loss (mask 1) when that target is a completion token.
struct Micro {
  std::vector<int64_t> seqs;  // completion indices
  std::vector<int32_t> tokens, targets, positions, cu;
  std::vector<int64_t> cu64;
  std::vector<uint8_t> mask, truncated;
  std::vector<float> rollout_lp;  // [T], 0 at prompt positions (only when tis_cap > 0)
  std::vector<int32_t> replay;    // [L, T, K] or empty
  std::vector<float> old_lp, ref_lp;
  int64_t T() const { return int64_t(tokens.size()); }
};

struct MiniBatch {
  std::vector<size_t> micros;
  AggregationTotals totals;
};

// Host -> device staging for one call; the buffers live as long as this object.
class Staging {
 public:
  explicit Staging(Allocator& a) : alloc_(a) {}
  template <class T>
  Tensor put(const std::vector<T>& v, DType dtype, std::initializer_list<int64_t> shape) {
    bufs_.emplace_back(alloc_, std::max<size_t>(v.size() * sizeof(T), 1));
    Tensor t = bufs_.back().view(dtype, shape);
    if (!v.empty()) alloc_.copy_from_host(t.data, v.data(), v.size() * sizeof(T));
    return t;
  }
  Tensor make(DType dtype, std::initializer_list<int64_t> shape, size_t bytes) {
    bufs_.emplace_back(alloc_, std::max<size_t>(bytes, 1));
    return bufs_.back().view(dtype, shape);
  }
  void get(std::vector<float>& dst, const Tensor& t) {
    dst.resize(size_t(t.numel()));
    alloc_.copy_to_host(dst.data(), t.data, t.nbytes());
  }

 private:
  Allocator& alloc_;
  std::vector<Buffer> bufs_;
};

PackedBatch device_batch(Staging& st, const Micro& m) {
  const int64_t T = m.T(), S = int64_t(m.seqs.size());
  return PackedBatch{st.put(m.tokens, DType::i32, {T}), st.put(m.targets, DType::i32, {T}),
                     st.put(m.positions, DType::i32, {T}), st.put(m.cu, DType::i32, {S + 1})};
}

// A no-grad forward returning the log-probs [T].
std::vector<float> score(Model& model, const Micro& m, float temperature) {
  const ModelConfig& cfg = model.config();
  Staging st(model.ops().allocator());
  const int64_t T = m.T();
  ForwardOptions fo;
  fo.temperature = temperature;
  fo.aux_loss = false;
  if (!m.replay.empty()) fo.replay_routing = st.put(m.replay, DType::i32, {cfg.num_moe_layers(), T, cfg.num_experts_per_tok});
  ForwardOutputs out;
  out.logprob = st.make(DType::f32, {T}, size_t(T) * 4);
  model.forward(device_batch(st, m), fo, out);
  std::vector<float> lp;
  st.get(lp, out.logprob);
  return lp;
}

}  // namespace

void check_grpo_step_options(const GrpoStepOptions& o) {
  check_objective_options(o.objective, "grpo_step.objective.");
  GRPO_CHECK(o.mu >= 1, "grpo_step.mu is " << o.mu << ", expected >= 1");
  GRPO_CHECK(o.num_mini_batches >= 1, "grpo_step.num_mini_batches is " << o.num_mini_batches << ", expected >= 1");
  GRPO_CHECK(o.micro_batch_tokens >= 1, "grpo_step.micro_batch_tokens is " << o.micro_batch_tokens << ", expected >= 1");
  GRPO_CHECK(std::isfinite(o.temperature) && o.temperature > 0,
             "grpo_step.temperature is " << o.temperature << ", expected a finite number > 0");
  GRPO_CHECK(std::isfinite(o.aux_loss_coef) && o.aux_loss_coef >= 0,
             "grpo_step.aux_loss_coef is " << o.aux_loss_coef << ", expected a finite number >= 0");
}

GrpoStep::GrpoStep(Model& policy, Optimizer& optimizer, const GrpoStepOptions& options, Model* reference)
    : policy_(policy), optimizer_(optimizer), options_(options), reference_(reference) {
  check_grpo_step_options(options_);
  GRPO_CHECK(policy_.limits().training, "grpo_step: the policy model was built without ModelLimits::training");
  GRPO_CHECK(&optimizer_.model() == &policy_, "grpo_step: the optimizer belongs to another model");
  if (options_.objective.beta > 0) {
    GRPO_CHECK(reference_ != nullptr, "grpo_step: objective.beta > 0 needs a reference model");
    GRPO_CHECK(reference_ != &policy_, "grpo_step: the reference model must be a separate, frozen copy");
    GRPO_CHECK(reference_->config().vocab_size == policy_.config().vocab_size,
               "grpo_step: reference vocab_size " << reference_->config().vocab_size << " differs from the policy's "
                                                  << policy_.config().vocab_size);
  } else {
    reference_ = nullptr;  // beta = 0: no reference pass at all
  }
}

GrpoStepMetrics GrpoStep::run(const std::vector<GrpoCompletion>& batch) {
  const ObjectiveOptions& obj = options_.objective;
  const ModelConfig& cfg = policy_.config();
  const int64_t V = cfg.vocab_size;
  const int64_t L = cfg.is_moe() ? cfg.num_moe_layers() : 0, K = cfg.num_experts_per_tok;
  const int64_t budget = std::min(options_.micro_batch_tokens, policy_.limits().max_tokens);
  const int64_t max_seqs = policy_.limits().max_seqs;
  const bool tis = obj.tis_cap > 0;

  // ---- validate everything before touching the model -------------------------------------
  std::vector<size_t> packed;  // completions with at least one token
  size_t with_routing = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const GrpoCompletion& c = batch[i];
    const std::string at = "grpo_step: completion " + std::to_string(i);
    GRPO_CHECK(!c.prompt.empty(), at << ": prompt is empty");
    for (int32_t id : c.prompt) GRPO_CHECK(id >= 0 && id < V, at << ": prompt token " << id << " outside [0, " << V << ")");
    for (int32_t id : c.tokens) GRPO_CHECK(id >= 0 && id < V, at << ": token " << id << " outside [0, " << V << ")");
    GRPO_CHECK(std::isfinite(c.reward), at << ": reward is " << c.reward);
    GRPO_CHECK(c.rollout_logprob.empty() || c.rollout_logprob.size() == c.tokens.size(),
               at << ": rollout_logprob has " << c.rollout_logprob.size() << " entries, expected " << c.tokens.size()
                  << " (one per token) or none");
    if (c.tokens.empty()) continue;
    GRPO_CHECK(!tis || c.rollout_logprob.size() == c.tokens.size(),
               at << ": rollout_logprob is empty but objective.tis_cap > 0 needs it");
    const int64_t n = int64_t(c.prompt.size() + c.tokens.size()) - 1;
    GRPO_CHECK(n <= budget, at << ": " << n << " packed tokens exceed the micro-batch budget " << budget
                               << " (micro_batch_tokens, model max_tokens)");
    if (options_.replay_routing && !c.routing.empty()) {
      GRPO_CHECK(L > 0, at << ": routing given but " << cfg.model_type << " has no MoE layers");
      GRPO_CHECK(int64_t(c.routing.size()) == n * L * K,
                 at << ": routing has " << c.routing.size() << " entries, expected (prompt + tokens - 1) * layers * K = "
                    << n << " * " << L << " * " << K);
      for (int32_t e : c.routing)
        GRPO_CHECK(e >= 0 && e < cfg.num_experts, at << ": routing expert " << e << " outside [0, " << cfg.num_experts << ")");
      ++with_routing;
    }
    packed.push_back(i);
  }
  const bool replay = with_routing > 0;
  GRPO_CHECK(!replay || with_routing == packed.size(),
             "grpo_step: " << with_routing << " of " << packed.size() << " completions carry routing; all or none must");
  const int64_t M = options_.num_mini_batches;
  GRPO_CHECK(packed.empty() || M <= int64_t(packed.size()),
             "grpo_step.num_mini_batches is " << M << " but the batch has only " << packed.size() << " completions to train on");

  GrpoStepMetrics met;
  met.sequences = int64_t(packed.size());

  // ---- plan: mini-batches of near-equal counts, micro-batches by token budget ---------------
  std::vector<Micro> micros;
  std::vector<MiniBatch> minis;
  auto counted = [&](const GrpoCompletion& c) { return !(obj.overlong_filter && c.truncated); };
  for (int64_t b = 0; b < M && !packed.empty(); ++b) {
    MiniBatch mb;
    const size_t lo = size_t(b) * packed.size() / size_t(M), hi = size_t(b + 1) * packed.size() / size_t(M);
    for (size_t j = lo; j < hi; ++j) {
      const GrpoCompletion& c = batch[packed[j]];
      const int64_t n = int64_t(c.prompt.size() + c.tokens.size()) - 1;
      if (mb.micros.empty() || micros.back().T() + n > budget || int64_t(micros.back().seqs.size()) >= max_seqs) {
        mb.micros.push_back(micros.size());
        micros.emplace_back();
        micros.back().cu = {0};
        micros.back().cu64 = {0};
      }
      Micro& m = micros.back();
      m.seqs.push_back(int64_t(packed[j]));
      const int64_t P = int64_t(c.prompt.size());
      for (int64_t t = 0; t < n; ++t) {
        m.tokens.push_back(t < P ? c.prompt[size_t(t)] : c.tokens[size_t(t - P)]);
        m.targets.push_back(t + 1 < P ? c.prompt[size_t(t + 1)] : c.tokens[size_t(t + 1 - P)]);
        m.positions.push_back(int32_t(t));
        m.mask.push_back(t + 1 >= P ? 1 : 0);
        if (tis) m.rollout_lp.push_back(t + 1 >= P ? c.rollout_logprob[size_t(t + 1 - P)] : 0.0f);
      }
      m.cu.push_back(int32_t(m.T()));
      m.cu64.push_back(m.T());
      m.truncated.push_back(c.truncated ? 1 : 0);
      if (counted(c)) {
        mb.totals.seqs += 1;
        mb.totals.tokens += int64_t(c.tokens.size());
      }
    }
    minis.push_back(std::move(mb));
  }
  // Routing records [n, L, K] per sequence -> the replay tensor [L, T, K] of the micro-batch.
  for (Micro& m : micros) {
    met.tokens += m.T();
    met.micro_batches += 1;
    if (!replay) continue;
    const int64_t T = m.T();
    m.replay.assign(size_t(L * T * K), 0);
    for (size_t s = 0; s < m.seqs.size(); ++s) {
      const std::vector<int32_t>& r = batch[size_t(m.seqs[s])].routing;
      for (int64_t t = m.cu64[s]; t < m.cu64[s + 1]; ++t)
        for (int64_t l = 0; l < L; ++l)
          for (int64_t k = 0; k < K; ++k)
            m.replay[size_t((l * T + t) * K + k)] = r[size_t(((t - m.cu64[s]) * L + l) * K + k)];
    }
  }
  for (const MiniBatch& mb : minis) met.loss_tokens += mb.totals.tokens;

  // ---- old and reference log-probs (no grad, pre-update weights) ---------------------------
  auto t0 = Clock::now();
  for (Micro& m : micros) m.old_lp = score(policy_, m, options_.temperature);
  met.old_logprob_s = seconds_since(t0);
  if (reference_) {
    t0 = Clock::now();
    for (Micro& m : micros) m.ref_lp = score(*reference_, m, options_.temperature);
    met.reference_s = seconds_since(t0);
  }

  // ---- advantages over the whole batch ------------------------------------------------------
  const size_t N = batch.size();
  std::vector<int64_t> group(N), length(N);
  std::vector<double> reward(N), kl_sum;
  for (size_t i = 0; i < N; ++i) {
    group[i] = batch[i].group;
    reward[i] = batch[i].reward;
    length[i] = int64_t(batch[i].tokens.size());
  }
  if (reference_ && obj.kl_placement == KlPlacement::reward) {
    kl_sum.assign(N, 0.0);
    for (const Micro& m : micros)
      for (size_t s = 0; s < m.seqs.size(); ++s)
        for (int64_t t = m.cu64[s]; t < m.cu64[s + 1]; ++t)
          if (m.mask[size_t(t)])
            kl_sum[size_t(m.seqs[s])] += kl_value(obj.kl_estimator, m.old_lp[size_t(t)], m.ref_lp[size_t(t)], obj.max_log_ratio);
  }
  met.advantages = compute_advantages(obj, group, reward, length, kl_sum);
  if (micros.empty()) return met;

  // ---- mu passes of mini-batch updates ------------------------------------------------------
  const bool want_entropy = obj.entropy_coef != 0;
  // Without an entropy bonus the entropy is still measured (a metric), not differentiated.
  const bool measure_entropy = !want_entropy && options_.measure_entropy;
  double ent_measured = 0, ent_tokens = 0;
  const bool aux = options_.aux_loss_coef > 0;
  double clip_low_tok = 0, clip_high_tok = 0, ratio_tok = 0, approx_kl_tok = 0, tok = 0;
  for (int64_t pass = 0; pass < options_.mu; ++pass) {
    for (const MiniBatch& mb : minis) {
      t0 = Clock::now();
      policy_.zero_grad();
      double loss = 0, pl = 0, kl = 0, ent = 0;
      for (size_t mi : mb.micros) {
        const Micro& m = micros[mi];
        const int64_t T = m.T();
        Staging st(policy_.ops().allocator());
        ForwardOptions fo;
        fo.with_grad = true;
        fo.entropy = want_entropy || measure_entropy;
        fo.temperature = options_.temperature;
        fo.aux_loss = aux;
        if (replay) fo.replay_routing = st.put(m.replay, DType::i32, {L, T, K});
        ForwardOutputs out;
        out.logprob = st.make(DType::f32, {T}, size_t(T) * 4);
        if (fo.entropy) out.entropy = st.make(DType::f32, {T}, size_t(T) * 4);
        policy_.forward(device_batch(st, m), fo, out);
        std::vector<float> lp, entropy;
        st.get(lp, out.logprob);
        if (fo.entropy) st.get(entropy, out.entropy);
        if (measure_entropy)
          for (int64_t t = 0; t < T; ++t)
            if (m.mask[size_t(t)]) ent_measured += entropy[size_t(t)], ent_tokens += 1;

        std::vector<double> adv(m.seqs.size());
        for (size_t s = 0; s < m.seqs.size(); ++s) adv[s] = met.advantages.advantage[size_t(m.seqs[s])];
        ObjectiveInputs in;
        in.cu_seqlens = m.cu64;
        in.mask = m.mask;
        in.truncated = m.truncated;
        in.advantage = adv;
        in.logprob = lp;
        in.old_logprob = m.old_lp;
        if (tis) in.rollout_logprob = m.rollout_lp;
        if (reference_) in.ref_logprob = m.ref_lp;
        if (want_entropy) in.entropy = entropy;
        const ObjectiveResult r = grpo_objective(obj, in, mb.totals);
        loss += r.loss;
        pl += r.metrics.policy_loss;
        kl += r.metrics.kl;
        ent += r.metrics.entropy;
        const double n = double(r.metrics.num_tokens);
        clip_low_tok += r.metrics.clip_frac_low * n;
        clip_high_tok += r.metrics.clip_frac_high * n;
        ratio_tok += r.metrics.ratio_mean * n;
        approx_kl_tok += r.metrics.approx_kl * n;
        tok += n;

        Tensor dlp = st.put(r.dlogprob, DType::f32, {T});
        Tensor dent = want_entropy ? st.put(r.dentropy, DType::f32, {T}) : Tensor();
        policy_.backward(dlp, dent, aux ? float(options_.aux_loss_coef / double(mb.micros.size())) : 0.0f);
      }
      met.forward_backward_s += seconds_since(t0);

      t0 = Clock::now();
      const OptimizerStepMetrics s = optimizer_.step();
      met.optimizer_s += seconds_since(t0);
      met.optimizer_steps += 1;
      met.skipped_steps += s.skipped ? 1 : 0;
      met.clipped_steps += s.clipped ? 1 : 0;
      met.grad_norm += s.grad_norm;
      met.lr = s.lr;
      met.loss += loss;
      met.policy_loss += pl;
      met.kl += kl;
      met.entropy += ent;
    }
  }
  const double steps = double(met.optimizer_steps);
  met.loss /= steps;
  met.policy_loss /= steps;
  met.kl /= steps;
  met.entropy /= steps;
  if (measure_entropy) met.entropy = ent_tokens > 0 ? ent_measured / ent_tokens : 0.0;
  met.grad_norm /= steps;
  if (tok > 0) {
    met.clip_frac_low = clip_low_tok / tok;
    met.clip_frac_high = clip_high_tok / tok;
    met.ratio_mean = ratio_tok / tok;
    met.approx_kl = approx_kl_tok / tok;
  }
  return met;
}

}  // namespace grpo
