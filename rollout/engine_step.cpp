// The scheduler: one Engine::step() (see rollout/engine.h for the order of its phases and
// rollout/README.md for the design).
//
// NOTES: block accounting. Blocks are taken by Model::prefill / decode_step (KvCache::reserve
// inside them; the engine never reserves ahead, since the model's block tables hold exactly
// the blocks covering each sequence). So that those calls never run out, the engine keeps
// back (1) for every prefilling sequence, the blocks it will still take up to its first
// decode token (promised_blocks) and (2) for the decoding ones, the blocks of this step's
// token (decode_blocks_needed). Admission only spends what is left; before the prefill,
// preemption restores (1) + (2) <= free. Both counts are upper bounds: they only shrink as
// other sequences copy their shared blocks or leave.
#include <algorithm>
#include <unordered_map>

#include "core/error.h"
#include "rollout/engine_impl.h"

namespace grpo::rollout {

namespace {

int64_t prompt_len(const Seq& s) { return int64_t(s.group->req.prompt.size()); }

// The cached length a sequence prefills to: the prompt when nothing is generated yet (the
// last prompt token's logits give the first token), else everything but the last generated
// token, which the next decode step feeds.
int64_t prefill_target(const Seq& s) {
  return s.tokens.empty() ? prompt_len(s) : prompt_len(s) + int64_t(s.tokens.size()) - 1;
}

// The positions a sequence fills before its first decode token is drawn: its prefill and,
// for a sample, the decode token after it (a shared prompt never decodes).
int64_t blocks_horizon(const Seq& s) { return s.is_prompt() ? prompt_len(s) : prefill_target(s) + 1; }

bool wants_routing(const Seq& s) { return s.group->req.sampling.return_routing; }

}  // namespace

int64_t Engine::Impl::context_token(const Seq& s, int64_t pos) const {
  const std::vector<int32_t>& p = s.group->req.prompt;
  return pos < int64_t(p.size()) ? p[size_t(pos)] : s.tokens[size_t(pos) - p.size()];
}

void Engine::Impl::remove_active(Seq* s) {
  auto it = std::find(active.begin(), active.end(), s);
  if (it != active.end()) active.erase(it);
}

SamplingParams Engine::Impl::sampling_params(const Seq& s) const {
  const SamplingOptions& o = s.group->req.sampling;
  SamplingParams p;
  p.temperature = o.temperature;
  p.top_k = o.top_k;
  p.top_p = o.top_p;
  p.min_p = o.min_p;
  p.seed = o.seed;
  p.stream = uint64_t(s.sample);
  p.offset = uint64_t(s.tokens.size());  // index of the token being drawn
  return p;
}

// ---- retiring ----------------------------------------------------------------------------

void Engine::Impl::release_prompt(Group& g) {
  Seq* p = g.prompt.get();
  if (!p) return;
  if (p->kv >= 0) cache->remove_sequence(p->kv);
  remove_active(p);
  if (p->state == Seq::State::waiting) std::erase(waiting, p);
  g.prompt.reset();
}

void Engine::Impl::finish(Seq* s, FinishReason r) {
  s->finish = r;
  if (s->kv >= 0) cache->remove_sequence(s->kv);
  s->kv = -1;
  remove_active(s);
  if (s->state == Seq::State::waiting) std::erase(waiting, s);
  s->state = Seq::State::done;
  Group& g = *s->group;
  if (--g.unfinished == 0) release_prompt(g);
}

void Engine::Impl::abort_group(Group& g) {
  for (auto& s : g.samples)
    if (s->state != Seq::State::done) finish(s.get(), FinishReason::abort);
  release_prompt(g);
}

// Appends a sampled token and ends the sample if it stops or reaches a length limit.
void Engine::Impl::append(Seq* s, int32_t token, float logprob) {
  s->tokens.push_back(token);
  s->logprobs.push_back(logprob);
  s->sampled_step = steps_run;
  ++loop_stats.generated_tokens;
  if (s->group->req.on_token) s->group->req.on_token(s->sample, token);
  const SamplingOptions& o = s->group->req.sampling;
  if (std::find(o.stop_token_ids.begin(), o.stop_token_ids.end(), token) != o.stop_token_ids.end())
    return finish(s, FinishReason::stop);
  if (s->text_stream && tokenizer->is_valid(token)) {
    // Only the new text and the stop string's length before it can hold a new match.
    const size_t before = s->text.size();
    s->text += s->text_stream->push(token);
    for (const std::string& stop : o.stop_strings) {
      const size_t from = before >= stop.size() ? before - stop.size() + 1 : 0;
      if (s->text.find(stop, from) != std::string::npos) return finish(s, FinishReason::stop);
    }
  }
  if (int64_t(s->tokens.size()) >= o.max_new_tokens || prompt_len(*s) + int64_t(s->tokens.size()) >= max_len)
    finish(s, FinishReason::length);
}

void Engine::Impl::sample_rows(Tensor logits, const std::vector<SamplingParams>& params, std::vector<int32_t>& tokens,
                               std::vector<float>& logprobs) {
  const int64_t R = int64_t(params.size());
  const size_t bytes = size_t(2 * R) * sizeof(int32_t);
  if (sampled_buf.size() < bytes) sampled_buf = Buffer(ops.allocator(), std::max(bytes, 2 * sampled_buf.size()));
  const Tensor tok = sampled_buf.view(DType::i32, {R});
  const Tensor lp = sampled_buf.view(DType::f32, {R}, size_t(R) * sizeof(int32_t));
  ops.sample(tok, lp, logits, params);
  tokens.resize(size_t(R));
  logprobs.resize(size_t(R));
  ops.allocator().copy_to_host(tokens.data(), tok.data, size_t(R) * sizeof(int32_t));
  ops.allocator().copy_to_host(logprobs.data(), lp.data, size_t(R) * sizeof(float));
}

// Copies the experts the model recorded for a call (i32 [num_moe, T, K]) into each fed
// sequence's per-position routing ([pos, num_moe, K]); the shared prompt records for its group.
void Engine::Impl::record_routing(const std::vector<Fed>& fed, int64_t T) {
  std::vector<int32_t> host(size_t(num_moe * T * top_k));
  ops.allocator().copy_to_host(host.data(), routing_buf.data(), host.size() * sizeof(int32_t));
  const int64_t row = num_moe * top_k;
  int64_t t = 0;
  for (const Fed& f : fed) {
    std::vector<int32_t>& dst = f.seq->is_prompt() ? f.seq->group->prompt_routing : f.seq->routing;
    if (!wants_routing(*f.seq)) {
      t += f.n;
      continue;
    }
    if (int64_t(dst.size()) < (f.pos + f.n) * row) dst.resize(size_t((f.pos + f.n) * row));
    for (int64_t j = 0; j < f.n; ++j, ++t)
      for (int64_t l = 0; l < num_moe; ++l)
        std::copy_n(host.begin() + (l * T + t) * top_k, top_k, dst.begin() + (f.pos + j) * row + l * top_k);
  }
}

Tensor Engine::Impl::routing_for(const std::vector<Fed>& fed, int64_t T) {
  if (num_moe == 0) return Tensor{};
  const bool any = std::any_of(fed.begin(), fed.end(), [](const Fed& f) { return wants_routing(*f.seq); });
  if (!any) return Tensor{};
  const size_t bytes = size_t(num_moe * T * top_k) * sizeof(int32_t);
  if (routing_buf.size() < bytes) routing_buf = Buffer(ops.allocator(), std::max(bytes, 2 * routing_buf.size()));
  return routing_buf.view(DType::i32, {num_moe, T, top_k});
}

Tensor Engine::Impl::upload_tokens(const std::vector<int32_t>& host) {
  const size_t bytes = host.size() * sizeof(int32_t);
  if (tokens_buf.size() < bytes) tokens_buf = Buffer(ops.allocator(), std::max(bytes, 2 * tokens_buf.size()));
  ops.allocator().copy_from_host(tokens_buf.data(), host.data(), bytes);
  return tokens_buf.view(DType::i32, {int64_t(host.size())});
}

Tensor Engine::Impl::logits_rows(Buffer& buf, int64_t rows) {
  const size_t bytes = size_t(rows * vocab) * sizeof(float);
  if (buf.size() < bytes) buf = Buffer(ops.allocator(), std::max(bytes, 2 * buf.size()));
  return buf.view(DType::f32, {rows, vocab});
}

// ---- incoming work, cancels, weight updates ----------------------------------------------

bool Engine::Impl::take_incoming() {
  std::vector<std::unique_ptr<Group>> in;
  {
    std::lock_guard<std::mutex> lock(mu);
    in.swap(incoming);
  }
  for (auto& g : in) {
    if (cfg.prefix_sharing) {
      g->prompt = std::make_unique<Seq>();
      g->prompt->group = g.get();
      g->prompt->state = Seq::State::waiting;
      waiting.push_back(g->prompt.get());
    }
    for (auto& s : g->samples) {
      if (!cfg.prefix_sharing) {
        s->state = Seq::State::waiting;
        waiting.push_back(s.get());
      }
    }
    groups.push_back(std::move(g));
  }
  return !in.empty();
}

bool Engine::Impl::process_cancels() {
  std::vector<std::pair<uint64_t, uint64_t>> todo;
  {
    std::lock_guard<std::mutex> lock(mu);
    todo.swap(cancels);
  }
  bool did = false;
  for (const auto& [id, before] : todo)
    for (auto& g : groups)
      if (g->req.id == id && g->submitted < before && g->unfinished > 0) {
        abort_group(*g);
        did = true;
      }
  return did;
}

bool Engine::Impl::any_started_unfinished() const {
  return std::any_of(groups.begin(), groups.end(), [](const auto& g) { return g->started() && g->unfinished > 0; });
}

// Applies the queued updates whose condition holds, in order: an aborting update aborts the
// samples of started groups first; a draining one waits until no started group is unfinished
// (admit() pauses new groups meanwhile). Started groups all run the current version, so no
// sample ever mixes versions, and no KV computed with the old weights survives the update.
bool Engine::Impl::process_updates() {
  bool did = false;
  for (;;) {
    WeightUpdate u;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (updates.empty() || (!updates.front().abort_in_flight && any_started_unfinished())) break;
      u = std::move(updates.front());
      updates.pop_front();
    }
    if (u.abort_in_flight)
      for (auto& g : groups)
        if (g->started() && g->unfinished > 0) abort_group(*g);
    std::string error;
    bool ok = false;
    try {
      u.apply(model);
      ok = true;
    } catch (const Error& e) {
      error = e.message();
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!ok && error.empty()) error = "the weight update failed";
    if (ok) {
      std::lock_guard<std::mutex> lock(mu);
      version = u.version;
      loop_stats.version = u.version;
    }
    if (u.applied) u.applied(error);
    did = true;
  }
  return did;
}

// ---- admission and preemption ------------------------------------------------------------

// Blocks the decoding sequences take in this step's decode_step: a new block for each whose
// blocks are full, and a copy for each that writes into a shared block (when every
// reference to a shared block decodes, the last one writes in place).
int64_t Engine::Impl::decode_blocks_needed() const {
  std::unordered_map<int32_t, int64_t> writers;  // shared block -> decoders writing into it
  int64_t need = 0;
  const int64_t bs = cache->block_size();
  for (const Seq* s : active) {
    if (s->state != Seq::State::decode) continue;
    const std::vector<int32_t>& blocks = cache->blocks(s->kv);
    const size_t i = size_t(cache->length(s->kv) / bs);
    if (i >= blocks.size())
      ++need;
    else if (cache->block_refcount(blocks[i]) > 1)
      ++writers[blocks[i]];
  }
  for (const auto& [block, n] : writers) need += cache->block_refcount(block) > n ? n : n - 1;
  return need;
}

int64_t Engine::Impl::promised_blocks() const {
  int64_t n = 0;
  for (const Seq* s : active)
    if (s->state == Seq::State::prefill) n += cache->blocks_needed(s->kv, blocks_horizon(*s) - cache->length(s->kv));
  return n;
}

int64_t Engine::Impl::spare_blocks() const {
  return cache->free_blocks() - promised_blocks() - decode_blocks_needed();
}

void Engine::Impl::preempt(Seq* s) {
  cache->remove_sequence(s->kv);
  s->kv = -1;
  remove_active(s);
  ++loop_stats.preemptions;
  if (s->is_prompt() && s->state == Seq::State::parked) {
    // A prefilled shared prompt is dropped: its waiting samples recompute their prompt.
    s->group->prompt.reset();
    return;
  }
  s->state = Seq::State::waiting;
  waiting.push_front(s);
}

// Admits s when the blocks it needs until its first decode token fit in `budget`: a shared
// prompt or a sample without a shared prompt gets a new cache sequence, a sample whose group
// still has its prefilled prompt forks it (the last sample waiting for it takes it over).
bool Engine::Impl::try_admit(Seq* s, int64_t budget) {
  Group& g = *s->group;
  const int64_t P = int64_t(g.req.prompt.size());
  int64_t kv;
  bool fork = false, handover = false;
  if (!s->is_prompt() && g.prompt && g.prompt->state == Seq::State::parked) {
    handover = std::none_of(g.samples.begin(), g.samples.end(), [&](const auto& o) {
      return o.get() != s && o->state == Seq::State::waiting;
    });
    fork = !handover;
    kv = handover ? g.prompt->kv : cache->fork_sequence(g.prompt->kv);
  } else {
    kv = cache->add_sequence();
  }
  if (cache->blocks_needed(kv, blocks_horizon(*s) - cache->length(kv)) > budget) {
    if (!handover) cache->remove_sequence(kv);
    return false;
  }
  if (fork || handover) {
    if (wants_routing(*s)) s->routing = g.prompt_routing;
    // A fork allocates none of the prompt's full blocks (its partial last block is copied).
    if (fork) loop_stats.kv_blocks_saved_by_sharing += P / cache->block_size();
  }
  if (handover) {
    g.prompt->kv = -1;
    release_prompt(g);
  }
  s->kv = kv;
  s->admitted = ++admissions;
  s->state = cache->length(kv) < prefill_target(*s) ? Seq::State::prefill : Seq::State::decode;
  if (!g.started()) g.version = loop_stats.version;
  active.push_back(s);
  return true;
}

int64_t Engine::Impl::running() const {
  return std::count_if(active.begin(), active.end(), [](const Seq* s) { return s->state != Seq::State::parked; });
}

// Admits from the front of the queue while batch slots and KV blocks allow (first come, first
// served: a sequence that does not fit stops admission). While a draining weight update
// waits, groups that have not started are skipped.
bool Engine::Impl::admit() {
  bool paused;
  {
    std::lock_guard<std::mutex> lock(mu);
    paused = !updates.empty();
  }
  bool did = false;
  int64_t slots = cfg.max_batch - running();
  for (auto it = waiting.begin(); it != waiting.end() && slots > 0;) {
    Seq* s = *it;
    if (paused && !s->group->started()) {
      ++it;
      continue;
    }
    if (try_admit(s, spare_blocks())) {
      it = waiting.erase(it);
      --slots;
      did = true;
      continue;
    }
    // Nothing running will free blocks: drop the most recent prefilled shared prompt and retry.
    if (running() == 0 && !active.empty()) {
      preempt(active.back());  // every active sequence is a parked prompt here
      it = waiting.begin();
      did = true;
      continue;
    }
    break;
  }
  return did;
}

// Frees blocks until those kept back fit: first drops the prefilled shared prompts (newest
// first; they compute nothing, and their waiting samples can recompute the prompt), then
// preempts the most recently admitted sequences.
bool Engine::Impl::make_room() {
  bool did = false;
  while (spare_blocks() < 0) {
    auto parked =
        std::find_if(active.rbegin(), active.rend(), [](const Seq* s) { return s->state == Seq::State::parked; });
    GRPO_ASSERT(!active.empty());
    preempt(parked != active.rend() ? *parked : active.back());
    did = true;
  }
  return did;
}

// ---- prefill and decode ------------------------------------------------------------------

// Prefills up to max_prefill_tokens context tokens over the admitted sequences, oldest first.
// A sequence reaching its target samples its first token (a shared prompt: one for each of
// its samples, each with its own stream), or decodes from the next step (a recomputation).
bool Engine::Impl::prefill() {
  std::vector<Fed> fed;
  int64_t budget = cfg.max_prefill_tokens;
  for (Seq* s : active) {
    if (s->state != Seq::State::prefill || budget == 0) continue;
    const int64_t pos = cache->length(s->kv), n = std::min(prefill_target(*s) - pos, budget);
    GRPO_ASSERT(n > 0);
    fed.push_back({s, pos, n});
    budget -= n;
  }
  if (fed.empty()) return false;
  std::vector<int32_t> host;
  std::vector<int64_t> ids, nums;
  for (const Fed& f : fed) {
    for (int64_t p = f.pos; p < f.pos + f.n; ++p) host.push_back(int32_t(context_token(*f.seq, p)));
    ids.push_back(f.seq->kv);
    nums.push_back(f.n);
  }
  const int64_t T = int64_t(host.size()), B = int64_t(fed.size());
  const Tensor logits = logits_rows(logits_buf, B);
  const Tensor routing = routing_for(fed, T);
  model.prefill(*cache, ids, upload_tokens(host), nums, logits, routing);
  if (routing.defined()) record_routing(fed, T);
  loop_stats.prefill_tokens += T;

  std::vector<std::pair<Seq*, int64_t>> draws;  // (sample, logits row)
  for (int64_t b = 0; b < B; ++b) {
    Seq* s = fed[size_t(b)].seq;
    if (cache->length(s->kv) < prefill_target(*s)) continue;
    if (s->is_prompt()) {
      s->state = Seq::State::parked;
      for (auto& o : s->group->samples)
        if (o->state == Seq::State::pending) draws.push_back({o.get(), b});
    } else {
      s->state = Seq::State::decode;
      if (s->tokens.empty()) draws.push_back({s, b});
    }
  }
  if (draws.empty()) return true;
  const int64_t R = int64_t(draws.size());
  const Tensor rows = logits_rows(gather_buf, R);
  std::vector<SamplingParams> params;
  for (int64_t r = 0; r < R; ++r) {
    ops.copy(rows.rows(r, r + 1), logits.rows(draws[size_t(r)].second, draws[size_t(r)].second + 1));
    params.push_back(sampling_params(*draws[size_t(r)].first));
  }
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  sample_rows(rows, params, tokens, logprobs);
  // Samples of a shared prompt queue at the front, in sample order, once they have a token.
  std::vector<Seq*> queued;
  for (int64_t r = 0; r < R; ++r) {
    Seq* s = draws[size_t(r)].first;
    const bool from_prompt = s->state == Seq::State::pending;
    append(s, tokens[size_t(r)], logprobs[size_t(r)]);
    if (from_prompt && s->state != Seq::State::done) {
      s->state = Seq::State::waiting;
      queued.push_back(s);
    }
  }
  waiting.insert(waiting.begin(), queued.begin(), queued.end());
  return true;
}

// One token for every decoding sequence (except those that drew their first token from this
// step's prefill), in one decode_step.
bool Engine::Impl::decode() {
  std::vector<Fed> fed;
  std::vector<int32_t> host;
  std::vector<int64_t> ids;
  for (Seq* s : active) {
    if (s->state != Seq::State::decode || s->sampled_step == steps_run) continue;
    const int64_t pos = prompt_len(*s) + int64_t(s->tokens.size()) - 1;
    GRPO_ASSERT(cache->length(s->kv) == pos);
    fed.push_back({s, pos, 1});
    host.push_back(s->tokens.back());
    ids.push_back(s->kv);
  }
  if (fed.empty()) return false;
  const int64_t B = int64_t(fed.size());
  const Tensor logits = logits_rows(logits_buf, B);
  const Tensor routing = routing_for(fed, B);
  model.decode_step(*cache, ids, upload_tokens(host), logits, routing);
  if (routing.defined()) record_routing(fed, B);
  std::vector<SamplingParams> params;
  for (const Fed& f : fed) params.push_back(sampling_params(*f.seq));
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  sample_rows(logits, params, tokens, logprobs);
  for (int64_t b = 0; b < B; ++b) append(fed[size_t(b)].seq, tokens[size_t(b)], logprobs[size_t(b)]);
  return true;
}

// ---- delivery and the step ---------------------------------------------------------------

bool Engine::Impl::deliver() {
  std::vector<std::pair<std::function<void(GroupResult)>, GroupResult>> out;
  for (auto it = groups.begin(); it != groups.end();) {
    Group& g = **it;
    if (g.unfinished > 0) {
      ++it;
      continue;
    }
    release_prompt(g);
    GroupResult r;
    r.id = g.req.id;
    const int64_t P = int64_t(g.req.prompt.size()), row = num_moe * top_k;
    for (auto& s : g.samples) {
      Sample o;
      o.tokens = std::move(s->tokens);
      o.logprobs = std::move(s->logprobs);
      o.finish = s->finish;
      o.version = g.started() ? g.version : loop_stats.version;
      if (g.req.sampling.return_routing && row > 0 && !o.tokens.empty()) {
        // Every token fed: the prompt and all generated tokens but the last.
        const int64_t rows = std::min(int64_t(s->routing.size()) / row, P + int64_t(o.tokens.size()) - 1);
        o.routing.assign(s->routing.begin(), s->routing.begin() + rows * row);
      }
      r.samples.push_back(std::move(o));
    }
    out.push_back({std::move(g.done), std::move(r)});
    it = groups.erase(it);
  }
  for (auto& [done, r] : out)
    if (done) done(std::move(r));
  return !out.empty();
}

void Engine::Impl::update_stats() {
  const auto now = std::chrono::steady_clock::now();
  rate.push_back({now, loop_stats.generated_tokens});
  while (rate.size() > 2 && now - rate[1].first > std::chrono::seconds(10)) rate.pop_front();
  const double dt = std::chrono::duration<double>(now - rate.front().first).count();
  loop_stats.tokens_per_s = dt > 0 ? double(loop_stats.generated_tokens - rate.front().second) / dt : 0.0;
  loop_stats.running = running();
  loop_stats.waiting = 0;
  for (const auto& g : groups)
    for (const auto& s : g->samples)
      if (s->state == Seq::State::pending || s->state == Seq::State::waiting) ++loop_stats.waiting;
  loop_stats.kv_blocks_total = cache->num_blocks();
  loop_stats.kv_blocks_used = cache->num_blocks() - cache->free_blocks();
  const DecodeGraphStats graphs = model.decode_graph_stats();
  loop_stats.decode_graph_replays = graphs.replays;
  loop_stats.decode_steps_op_by_op = graphs.eager_steps;
  loop_stats.decode_graph_failures = graphs.failed;
  std::lock_guard<std::mutex> lock(mu);
  int64_t incoming_samples = 0;
  for (const auto& g : incoming) incoming_samples += int64_t(g->samples.size());
  stats = loop_stats;
  stats.waiting += incoming_samples;
}

bool Engine::Impl::step() {
  ++steps_run;
  bool did = take_incoming();
  did |= process_cancels();
  did |= process_updates();
  did |= admit();
  did |= make_room();
  did |= prefill();
  did |= decode();
  did |= deliver();
  if (did) ++loop_stats.steps;
  update_stats();
  // Every state with work left admits, runs or applies something (see admit()); a step that
  // does nothing then would spin run_until_idle() forever.
  bool pending_updates;
  {
    std::lock_guard<std::mutex> lock(mu);
    pending_updates = !updates.empty();
  }
  GRPO_ASSERT(did || (groups.empty() && !pending_updates));
  return did;
}

}  // namespace grpo::rollout
