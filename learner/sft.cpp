// Supervised fine-tuning: config, examples, packing, the loss and the trainer loop (sft.h).
#include "learner/sft.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/buffer.h"
#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/backend.h"
#include "learner/checkpoint.h"
#include "learner/datasets.h"
#include "policy/model.h"
#include "policy/model_config.h"
#include "policy/tokenizer.h"

namespace grpo {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace {

// "data" is a JSONL path or a dataset spec object.
SftData parse_data(ConfigNode& node, std::string_view key, bool required) {
  SftData d;
  const nlohmann::json& raw = node.raw();
  if (!raw.contains(std::string(key))) {
    GRPO_CHECK(!required, node.key_path(key) << " is required (a JSONL path or a dataset spec such as "
                                                "{\"name\": \"arithmetic\"})");
    return d;
  }
  if (raw.at(std::string(key)).is_string()) {
    d.path = node.get<std::string>(key, "");
    GRPO_CHECK(!d.path.empty(), node.key_path(key) << " is an empty path");
    GRPO_CHECK(fs::is_regular_file(d.path), node.key_path(key) << ": no such file " << d.path);
    return d;
  }
  ConfigNode& spec = node.child(key);
  parse_dataset_spec(spec);  // checks the keys and ranges now
  d.spec_json = spec.raw().dump();
  return d;
}

Json data_json(const SftData& d) {
  if (!d.path.empty()) return d.path;
  return Json::parse(d.spec_json);
}

std::vector<DatasetRecord> load_records(const SftData& d, const std::string& what) {
  std::vector<DatasetRecord> records;
  if (!d.path.empty()) {
    records = read_dataset_jsonl(d.path);
  } else {
    ConfigNode node = ConfigNode::from_string(d.spec_json, what);
    DatasetSpec spec = parse_dataset_spec(node);
    node.finish();
    spec.completions = true;
    records = generate_dataset(spec);
  }
  for (size_t i = 0; i < records.size(); ++i)
    GRPO_CHECK(!records[i].completion.empty(),
               what << ": record " << i + 1 << " has no \"completion\" (SFT needs {prompt, completion})");
  GRPO_CHECK(!records.empty(), what << ": no examples");
  return records;
}

}  // namespace

SftConfig parse_sft_config(ConfigNode& root) {
  SftConfig c;
  const bool has_model = root.has("model"), has_init = root.has("init");
  GRPO_CHECK(has_model != has_init, root.key_path("model") << ": give exactly one of \"model\" (a model directory) "
                                                              "and \"init\" (an arch preset)");
  if (has_model) {
    c.model_dir = root.require<std::string>("model");
    GRPO_CHECK(fs::is_regular_file(fs::path(c.model_dir) / "config.json"),
               root.key_path("model") << ": " << c.model_dir << " has no config.json");
  } else {
    ConfigNode& init = root.child("init");
    c.init_arch = init.require<std::string>("arch");
    c.init_preset = init.get<std::string>("preset", "tiny");
    c.init_seed = init.get<uint64_t>("seed", 0);
    c.init_tokenizer = init.require<std::string>("tokenizer");
    GRPO_CHECK(fs::is_regular_file(fs::path(c.init_tokenizer) / "tokenizer.json"),
               init.key_path("tokenizer") << ": " << c.init_tokenizer << " has no tokenizer.json");
    try {
      model_preset(c.init_arch, c.init_preset);
    } catch (const Error& e) {
      GRPO_THROW(init.key_path("preset") << ": " << e.message());
    }
  }
  c.data = parse_data(root, "data", true);
  if (root.has("eval")) {
    ConfigNode& ev = root.child("eval");
    c.eval_data = parse_data(ev, "data", true);
    c.eval_every = ev.get<int64_t>("every", 0);
    GRPO_CHECK(c.eval_every >= 0, ev.key_path("every") << " must be >= 0, got " << c.eval_every);
  }
  c.exclude = parse_data(root, "exclude", false);
  ConfigNode& p = root.child("prompt");
  c.prompt.format = p.get_choice("format", "chatml", {"raw", "r1_zero", "chatml", "deepseek_v3"});
  c.prompt.template_text = p.get<std::string>("template", "");
  c.prompt.system = p.get<std::string>("system", "");
  c.prompt.generation_prefix = p.get<std::string>("generation_prefix", "");
  c.max_seq_len = root.get<int64_t>("max_seq_len", c.max_seq_len);
  c.tokens_per_batch = root.get<int64_t>("tokens_per_batch", c.tokens_per_batch);
  c.max_seqs_per_batch = root.get<int64_t>("max_seqs_per_batch", c.max_seqs_per_batch);
  c.epochs = root.get<int64_t>("epochs", c.epochs);
  c.steps = root.get<int64_t>("steps", c.steps);
  GRPO_CHECK(c.max_seq_len >= 2, root.key_path("max_seq_len") << " must be >= 2, got " << c.max_seq_len);
  GRPO_CHECK(c.tokens_per_batch >= c.max_seq_len, root.key_path("tokens_per_batch")
                                                      << " must be >= max_seq_len (" << c.max_seq_len << "), got "
                                                      << c.tokens_per_batch);
  GRPO_CHECK(c.max_seqs_per_batch >= 1,
             root.key_path("max_seqs_per_batch") << " must be >= 1, got " << c.max_seqs_per_batch);
  GRPO_CHECK(c.epochs >= 1, root.key_path("epochs") << " must be >= 1, got " << c.epochs);
  GRPO_CHECK(c.steps >= 0, root.key_path("steps") << " must be >= 0, got " << c.steps);
  c.optimizer = parse_optimizer_config(root.child("optimizer"));
  c.seed = root.get<uint64_t>("seed", c.seed);
  c.run_dir = root.get<std::string>("run_dir", c.run_dir);
  GRPO_CHECK(!c.run_dir.empty(), root.key_path("run_dir") << " is empty");
  c.save_every = root.get<int64_t>("save_every", c.save_every);
  c.keep_last = root.get<int64_t>("keep_last", c.keep_last);
  GRPO_CHECK(c.save_every >= 0, root.key_path("save_every") << " must be >= 0, got " << c.save_every);
  GRPO_CHECK(c.keep_last >= 0, root.key_path("keep_last") << " must be >= 0, got " << c.keep_last);
  c.device = root.get<std::string>("device", c.device);
  c.dtype = root.get_choice("dtype", c.dtype, {"auto", "f32", "bf16"});
  root.finish();
  return c;
}

std::string sft_config_json(const SftConfig& c) {
  Json j;
  if (!c.model_dir.empty())
    j["model"] = c.model_dir;
  else
    j["init"] = {{"arch", c.init_arch}, {"preset", c.init_preset}, {"seed", c.init_seed}, {"tokenizer", c.init_tokenizer}};
  j["data"] = data_json(c.data);
  if (!c.eval_data.path.empty() || !c.eval_data.spec_json.empty())
    j["eval"] = {{"data", data_json(c.eval_data)}, {"every", c.eval_every}};
  if (!c.exclude.path.empty() || !c.exclude.spec_json.empty()) j["exclude"] = data_json(c.exclude);
  j["prompt"] = {{"format", c.prompt.format},
                 {"template", c.prompt.template_text},
                 {"system", c.prompt.system},
                 {"generation_prefix", c.prompt.generation_prefix}};
  j["max_seq_len"] = c.max_seq_len;
  j["tokens_per_batch"] = c.tokens_per_batch;
  j["max_seqs_per_batch"] = c.max_seqs_per_batch;
  j["epochs"] = c.epochs;
  j["steps"] = c.steps;
  j["optimizer"] = Json::parse(optimizer_config_json(c.optimizer));
  j["seed"] = c.seed;
  j["run_dir"] = c.run_dir;
  j["save_every"] = c.save_every;
  j["keep_last"] = c.keep_last;
  j["device"] = c.device;
  j["dtype"] = c.dtype;
  return j.dump(2);
}

SftExample make_sft_example(const Tokenizer& tok, const PromptFormat& format, const std::string& prompt,
                            const std::string& completion, int64_t max_seq_len) {
  SftExample ex;
  std::vector<TokenId> ids = format.encode(tok, prompt);
  ex.prompt_len = int64_t(ids.size());
  tok.encode_append(completion, ids);
  const std::vector<TokenId> stops = format.stop_ids(tok);
  GRPO_CHECK(!stops.empty(), "sft: the tokenizer has no eos token and prompt format " << format.name()
                                                                                      << " no end-of-turn token");
  ids.push_back(stops.front());
  if (int64_t(ids.size()) > max_seq_len) ids.resize(size_t(max_seq_len));
  ex.prompt_len = std::min(ex.prompt_len, int64_t(ids.size()));
  ex.tokens.assign(ids.begin(), ids.end());
  return ex;
}

SftBatch pack_sft_batch(const std::vector<const SftExample*>& examples) {
  SftBatch b;
  b.cu_seqlens.push_back(0);
  for (const SftExample* ex : examples) {
    const int64_t n = int64_t(ex->tokens.size());
    for (int64_t t = 0; t < n; ++t) {
      b.tokens.push_back(ex->tokens[size_t(t)]);
      b.positions.push_back(int32_t(t));
      const bool has_next = t + 1 < n;
      // The last position has no next token: any valid id with zero gradient.
      b.targets.push_back(has_next ? ex->tokens[size_t(t + 1)] : ex->tokens[size_t(t)]);
      const bool loss = has_next && t + 1 >= ex->prompt_len;
      b.dlogprob.push_back(loss ? 1.0f : 0.0f);
      b.loss_tokens += loss;
    }
    b.cu_seqlens.push_back(int32_t(b.tokens.size()));
  }
  const float w = b.loss_tokens > 0 ? -1.0f / float(b.loss_tokens) : 0.0f;
  for (float& d : b.dlogprob) d *= w;
  return b;
}

double sft_batch_loss(Model& model, const SftBatch& batch, bool with_grad) {
  Ops& ops = model.ops();
  const int64_t T = int64_t(batch.tokens.size()), S = int64_t(batch.cu_seqlens.size());
  GRPO_CHECK(T > 0, "sft: empty batch");
  // Host data staged on the model's device (a copy even on the CPU: cheap next to the model).
  Allocator& alloc = ops.allocator();
  Buffer buf(alloc, size_t(4 * T + S) * 4 + size_t(T) * 8);
  size_t off = 0;
  auto stage_i32 = [&](const std::vector<int32_t>& v) {
    Tensor dst = buf.view(DType::i32, {int64_t(v.size())}, off);
    off += v.size() * 4;
    alloc.copy_from_host(dst.data, v.data(), v.size() * sizeof(int32_t));
    return dst;
  };
  PackedBatch pb;
  pb.tokens = stage_i32(batch.tokens);
  pb.targets = stage_i32(batch.targets);
  pb.positions = stage_i32(batch.positions);
  pb.cu_seqlens = stage_i32(batch.cu_seqlens);
  off = (off + 7) / 8 * 8;
  Tensor logprob = buf.view(DType::f32, {T}, off);
  off += size_t(T) * 4;
  Tensor dlogprob = buf.view(DType::f32, {T}, off);
  ForwardOptions fo;
  fo.with_grad = with_grad;
  ForwardOutputs out;
  out.logprob = logprob;
  model.forward(pb, fo, out);
  std::vector<float> lp(static_cast<size_t>(T));
  alloc.copy_to_host(lp.data(), logprob.data, size_t(T) * sizeof(float));
  // loss = sum_t dlogprob[t] * logprob[t]  (dlogprob = -1/n on completion targets).
  double loss = 0;
  for (int64_t t = 0; t < T; ++t) loss += double(batch.dlogprob[size_t(t)]) * double(lp[size_t(t)]);
  if (with_grad) {
    alloc.copy_from_host(dlogprob.data, batch.dlogprob.data(), size_t(T) * sizeof(float));
    model.backward(dlogprob, Tensor(), out.aux_loss != 0.0f ? model.aux_loss_coef() : 0.0f);
  }
  return loss;
}

// ---- the trainer -------------------------------------------------------------------------

struct SftTrainer::Impl {
  std::unique_ptr<Ops> ops;
  std::unique_ptr<Model> model;
  std::unique_ptr<Optimizer> opt;
  std::string tokenizer_dir;
  std::vector<SftExample> train, eval;
  int64_t epoch = 0, index = 0;  // the data cursor: position `index` of epoch `epoch`'s order
  std::vector<int64_t> order;    // epoch `epoch`'s order
  int64_t order_epoch = -1;

  const std::vector<int64_t>& order_of(int64_t e, uint64_t seed) {
    if (order_epoch != e) {
      order = epoch_order(int64_t(train.size()), seed, e);
      order_epoch = e;
    }
    return order;
  }
};

namespace {

// How many examples from position `index` of `order` go into one batch.
int64_t batch_count(const std::vector<SftExample>& ex, const std::vector<int64_t>& order, int64_t index,
                    const SftConfig& c) {
  int64_t tokens = 0, n = 0;
  for (int64_t i = index; i < int64_t(order.size()) && n < c.max_seqs_per_batch; ++i, ++n) {
    const int64_t len = int64_t(ex[size_t(order[size_t(i)])].tokens.size());
    if (tokens + len > c.tokens_per_batch) break;
    tokens += len;
  }
  return n;
}

std::string fmt_duration(double s) {
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%.0fs", s);
  return buf;
}

}  // namespace

SftTrainer::SftTrainer(const SftConfig& config, bool quiet) : config_(config), quiet_(quiet), impl_(new Impl) {
  const SftConfig& c = config_;
  Impl& m = *impl_;
  m.ops = make_ops(c.device);
  ModelLimits limits;
  limits.max_tokens = c.tokens_per_batch;
  limits.max_seqs = c.max_seqs_per_batch;
  limits.training = true;
  limits.dtype = resolve_dtype(c.dtype, *m.ops);
  if (!c.model_dir.empty()) {
    m.model = load_model(c.model_dir, *m.ops, limits);
    m.tokenizer_dir = c.model_dir;
  } else {
    m.model = std::make_unique<Model>(model_preset(c.init_arch, c.init_preset), *m.ops, limits);
    m.model->init_weights(c.init_seed);
    m.tokenizer_dir = c.init_tokenizer;
  }
  const Tokenizer tok = Tokenizer::from_dir(m.tokenizer_dir);
  GRPO_CHECK(tok.vocab_size() <= m.model->config().vocab_size,
             "sft: the tokenizer in " << m.tokenizer_dir << " has " << tok.vocab_size()
                                      << " ids but the model's vocab_size is " << m.model->config().vocab_size);
  const PromptFormat format = PromptFormat::create(c.prompt, tok.special_tokens());
  auto tokenize = [&](const SftData& d, const char* what, std::vector<SftExample>& out) {
    for (const DatasetRecord& r : load_records(d, what))
      out.push_back(make_sft_example(tok, format, r.prompt, r.completion, c.max_seq_len));
  };
  std::set<std::string> excluded;
  if (!c.exclude.path.empty() || !c.exclude.spec_json.empty()) {
    std::vector<DatasetRecord> ex;
    if (!c.exclude.path.empty()) {
      ex = read_dataset_jsonl(c.exclude.path);
    } else {
      ConfigNode node = ConfigNode::from_string(c.exclude.spec_json, "exclude");
      const DatasetSpec spec = parse_dataset_spec(node);
      node.finish();
      ex = generate_dataset(spec);
    }
    for (const DatasetRecord& r : ex) excluded.insert(r.prompt);
  }
  size_t dropped = 0;
  for (const DatasetRecord& r : load_records(c.data, "data")) {
    if (excluded.count(r.prompt)) {
      ++dropped;
      continue;
    }
    m.train.push_back(make_sft_example(tok, format, r.prompt, r.completion, c.max_seq_len));
  }
  GRPO_CHECK(!m.train.empty(), "data: every example's prompt is in \"exclude\"");
  if (!quiet_ && dropped > 0)
    std::fprintf(stderr, "sft: %zu training examples left out: their prompt is in \"exclude\"\n", dropped);
  if (!c.eval_data.path.empty() || !c.eval_data.spec_json.empty()) tokenize(c.eval_data, "eval.data", m.eval);

  // Total steps: `steps`, or the batches of `epochs` passes (packing depends on the order).
  total_steps_ = c.steps;
  if (total_steps_ == 0)
    for (int64_t e = 0; e < c.epochs; ++e) {
      const std::vector<int64_t>& order = m.order_of(e, c.seed);
      for (int64_t i = 0; i < int64_t(order.size()); ++total_steps_) i += batch_count(m.train, order, i, c);
    }
  m.opt = std::make_unique<Optimizer>(*m.model, c.optimizer);
}

SftTrainer::~SftTrainer() = default;

Model& SftTrainer::model() { return *impl_->model; }

void SftTrainer::start() {
  const CheckpointScan scan = find_latest_checkpoint(config_.run_dir);
  GRPO_CHECK(scan.path.empty(), "run_dir " << config_.run_dir << " already has a checkpoint (" << scan.path
                                           << "): resume it with --resume or pick another run_dir");
  fs::create_directories(config_.run_dir);
  std::ofstream(fs::path(config_.run_dir) / "config.json") << sft_config_json(config_) << "\n";
  std::ofstream(fs::path(config_.run_dir) / "metrics.jsonl", std::ios::trunc);
  step_ = 0;
  impl_->epoch = impl_->index = 0;
}

void SftTrainer::resume() {
  Impl& m = *impl_;
  std::string path;
  const TrainerState st = resume_from_run_dir(config_.run_dir, *m.model, *m.opt, &path);
  const nlohmann::json cur = nlohmann::json::parse(st.cursor);
  GRPO_CHECK(cur.is_object() && cur.contains("epoch") && cur.contains("index"),
             path << ": trainer state has no SFT data cursor {epoch, index}");
  step_ = st.step;
  m.epoch = cur["epoch"].get<int64_t>();
  m.index = cur["index"].get<int64_t>();
  const auto seed = st.rng.find("data.seed");
  GRPO_CHECK(seed != st.rng.end() && seed->second == config_.seed,
             path << ": data seed differs from the config's seed " << config_.seed);
  // Metrics after the checkpoint were not kept by it: drop them.
  const fs::path mpath = fs::path(config_.run_dir) / "metrics.jsonl";
  std::vector<std::string> keep;
  std::ifstream in(mpath);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains("step") && j["step"].get<int64_t>() <= step_) keep.push_back(line);
  }
  in.close();
  std::ofstream out(mpath, std::ios::trunc);
  for (const std::string& l : keep) out << l << "\n";
  if (!quiet_) std::fprintf(stderr, "sft: resumed from %s (step %lld)\n", path.c_str(), (long long)step_);
}

double SftTrainer::eval_loss() {
  Impl& m = *impl_;
  GRPO_CHECK(!m.eval.empty(), "sft: no eval data");
  std::vector<int64_t> order(m.eval.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
  double sum = 0;
  int64_t n = 0;
  for (int64_t i = 0; i < int64_t(order.size());) {
    const int64_t k = batch_count(m.eval, order, i, config_);
    std::vector<const SftExample*> ex;
    for (int64_t j = i; j < i + k; ++j) ex.push_back(&m.eval[size_t(j)]);
    const SftBatch b = pack_sft_batch(ex);
    if (b.loss_tokens > 0) sum += sft_batch_loss(*m.model, b, false) * double(b.loss_tokens);
    n += b.loss_tokens;
    i += k;
  }
  return n > 0 ? sum / double(n) : 0.0;
}

SftStepMetrics SftTrainer::train(int64_t stop_after) {
  Impl& m = *impl_;
  const SftConfig& c = config_;
  const int64_t stop = stop_after > 0 ? std::min(total_steps_, step_ + stop_after) : total_steps_;
  std::ofstream metrics(fs::path(c.run_dir) / "metrics.jsonl", std::ios::app);
  GRPO_CHECK(metrics, "sft: cannot write " << (fs::path(c.run_dir) / "metrics.jsonl").string());
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t first = step_;
  int64_t tokens_seen = 0;
  SftStepMetrics s;
  auto save = [&] {
    TrainerState st;
    st.step = step_;
    st.rng = {{"data.seed", c.seed}};
    st.cursor = nlohmann::json{{"epoch", m.epoch}, {"index", m.index}}.dump();
    st.config = sft_config_json(c);
    CheckpointOptions co;
    co.keep_last = c.keep_last;
    co.tokenizer_dir = m.tokenizer_dir;
    save_checkpoint(c.run_dir, *m.model, *m.opt, st, co);
  };
  while (step_ < stop) {
    const std::vector<int64_t>& order = m.order_of(m.epoch, c.seed);
    const int64_t k = batch_count(m.train, order, m.index, c);
    std::vector<const SftExample*> ex;
    for (int64_t j = m.index; j < m.index + k; ++j) ex.push_back(&m.train[size_t(order[size_t(j)])]);
    const SftBatch b = pack_sft_batch(ex);
    s = SftStepMetrics{};
    s.epoch = m.epoch;
    m.index += k;
    if (m.index >= int64_t(order.size())) ++m.epoch, m.index = 0;

    m.model->zero_grad();
    s.loss = sft_batch_loss(*m.model, b, true);
    const OptimizerStepMetrics om = m.opt->step();
    ++step_;
    s.step = step_;
    s.lr = om.lr;
    s.grad_norm = om.grad_norm;
    s.tokens = int64_t(b.tokens.size());
    s.loss_tokens = b.loss_tokens;
    s.seqs = k;
    tokens_seen += s.tokens;
    if (!m.eval.empty() && ((c.eval_every > 0 && step_ % c.eval_every == 0) || step_ == total_steps_)) {
      s.has_eval = true;
      s.eval_loss = eval_loss();
    }
    Json j{{"step", s.step}, {"epoch", s.epoch}, {"loss", s.loss}, {"lr", s.lr}, {"grad_norm", s.grad_norm},
           {"tokens", s.tokens}, {"loss_tokens", s.loss_tokens}, {"seqs", s.seqs}};
    if (s.has_eval) j["eval_loss"] = s.eval_loss;
    metrics << j.dump() << "\n" << std::flush;
    if (!quiet_) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double per_step = secs / double(step_ - first);
      std::string ev = s.has_eval ? "  eval_loss " + std::to_string(s.eval_loss).substr(0, 6) : "";
      std::fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.3g  %.0f tok/s  eta %s%s\n", (long long)step_,
                   (long long)total_steps_, s.loss, s.lr, double(tokens_seen) / std::max(secs, 1e-9),
                   fmt_duration(per_step * double(total_steps_ - step_)).c_str(), ev.c_str());
    }
    if (c.save_every > 0 && step_ % c.save_every == 0 && step_ != stop) save();
  }
  if (step_ > first || find_latest_checkpoint(c.run_dir).path.empty()) save();
  return s;
}

}  // namespace grpo
