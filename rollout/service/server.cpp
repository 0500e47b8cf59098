#include "rollout/service/server.h"
#include "rewards/service/grpc_util.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "proto/rollout.grpc.pb.h"
#include "rewards/service/http_server.h"
#include "rollout/service/convert.h"
#include "rollout/service/handler.h"

namespace grpo::rollout {

namespace {

using SteadyClock = std::chrono::steady_clock;

const char* code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::OK: return "OK";
    case grpc::CANCELLED: return "CANCELLED";
    case grpc::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::ABORTED: return "ABORTED";
    case grpc::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::INTERNAL: return "INTERNAL";
    default: return "UNKNOWN";
  }
}

// Compares without an early exit, so the time taken does not leak how much of a token matched.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

double seconds_since(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

// What every call needs: the handler, metrics, the auth check, the model's routing shape.
struct Shared {
  RolloutHandler& handler;
  RolloutMetrics& metrics;
  std::string expected_authorization;  // "Bearer <token>", or "" for no auth
  const std::atomic<bool>& accepting;
  std::string device;
  int64_t routing_layers = 0, routing_top_k = 0;

  // The refusal of a call before it starts (OK to proceed).
  grpc::Status admit(const grpc::CallbackServerContext* context) const {
    if (!authorized(context)) return {grpc::UNAUTHENTICATED, "missing or wrong bearer token"};
    if (!accepting.load()) return {grpc::UNAVAILABLE, "the rollout worker is shutting down"};
    return grpc::Status::OK;
  }

  bool authorized(const grpc::CallbackServerContext* context) const {
    if (expected_authorization.empty()) return true;
    auto range = context->client_metadata().equal_range("authorization");
    for (auto it = range.first; it != range.second; ++it)
      if (same_secret(std::string_view(it->second.data(), it->second.size()), expected_authorization)) return true;
    return false;
  }
};

// ---- Generate: one response per finished group -------------------------------------------------
//
// Groups arrive on the engine thread, writes complete on gRPC threads; one write is in flight at
// a time and the rest queue. Every decision is taken under the state's mutex, every gRPC call made
// after releasing it. After Finish the reactor may be gone, so the engine's late deliveries (of a
// cancelled call) only touch the shared state, which sees `finished` and drops them.
class GenerateCall final : public grpc::ServerWriteReactor<pb::GenerateResponse> {
 public:
  GenerateCall(const Shared& shared, grpc::CallbackServerContext* context, const pb::GenerateRequest& request)
      : shared_(shared), state_(std::make_shared<State>()) {
    state_->call = this;
    state_->routing_layers = shared.routing_layers;
    state_->routing_top_k = shared.routing_top_k;
    if (grpc::Status refused = shared.admit(context); !refused.ok()) {
      finish_now(refused);
      return;
    }
    std::vector<GeneratePrompt> prompts(request.prompts_size());
    for (int i = 0; i < request.prompts_size(); ++i) {
      const pb::Prompt& p = request.prompts(i);
      prompts[i].id = p.id();
      prompts[i].tokens.assign(p.token_ids().begin(), p.token_ids().end());
      prompts[i].text = p.text();
      prompts[i].sampling = from_proto(p.has_sampling() ? p.sampling() : request.sampling());
    }
    state_->remaining = prompts.size();
    if (prompts.empty()) {
      finish_now(grpc::Status::OK);
      return;
    }
    try {
      std::shared_ptr<State> state = state_;
      generation_ = shared.handler.generate(std::move(prompts), [state](DeliveredGroup g) { deliver(state, std::move(g)); });
    } catch (const Error& e) {
      finish_now(grpc::Status(grpc::INVALID_ARGUMENT, e.message()));
    }
  }

  void OnWriteDone(bool ok) override {
    pb::GenerateResponse* next = nullptr;
    bool finish_ok = false, finish_cancelled = false;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->current.reset();
      if (!ok || state_->cancelled) {
        state_->writing = false;
        finish_cancelled = !state_->finished;
        state_->finished = true;
      } else if (!state_->queue.empty()) {
        state_->current = std::move(state_->queue.front());
        state_->queue.pop_front();
        next = state_->current.get();
      } else {
        state_->writing = false;
        finish_ok = state_->remaining == 0 && !state_->finished;
        if (finish_ok) state_->finished = true;
      }
    }
    if (next) StartWrite(next);
    if (finish_cancelled) {
      if (generation_) shared_.handler.cancel(*generation_);
      record_and_finish(grpc::Status(grpc::CANCELLED, "the client went away"));
    }
    if (finish_ok) record_and_finish(grpc::Status::OK);
  }

  void OnCancel() override {
    bool finish = false;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->cancelled = true;
      finish = !state_->writing && !state_->finished;
      if (finish) state_->finished = true;
    }
    // Cancelled by the client or past its deadline: free the engine of its samples.
    if (generation_) shared_.handler.cancel(*generation_);
    if (finish) record_and_finish(grpc::Status(grpc::CANCELLED, "cancelled"));
  }

  void OnDone() override { delete this; }

 private:
  struct State {
    std::mutex mutex;
    GenerateCall* call = nullptr;  // valid until `finished`
    std::deque<std::unique_ptr<pb::GenerateResponse>> queue;
    std::unique_ptr<pb::GenerateResponse> current;  // being written
    size_t remaining = 0;                           // groups not yet delivered by the engine
    bool writing = false, finished = false, cancelled = false;
    int64_t routing_layers = 0, routing_top_k = 0;
  };

  // On the engine thread.
  static void deliver(const std::shared_ptr<State>& state, DeliveredGroup g) {
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      if (state->finished || state->cancelled) return;
    }
    auto msg = std::make_unique<pb::GenerateResponse>();
    msg->set_id(g.group.id);
    for (size_t i = 0; i < g.group.samples.size(); ++i)
      to_proto(g.group.samples[i], state->routing_layers, state->routing_top_k, g.texts[i], msg->add_samples());
    GenerateCall* call = nullptr;
    pb::GenerateResponse* write = nullptr;
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      if (state->finished || state->cancelled) return;
      --state->remaining;
      if (state->writing) {
        state->queue.push_back(std::move(msg));
        return;
      }
      state->writing = true;
      state->current = std::move(msg);
      write = state->current.get();
      call = state->call;
    }
    call->StartWrite(write);
  }

  void finish_now(const grpc::Status& status) {
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->finished = true;
    }
    record_and_finish(status);
  }

  void record_and_finish(const grpc::Status& status) {
    shared_.metrics.record_request("Generate", code_name(status.error_code()), seconds_since(start_));
    Finish(status);
  }

  const Shared& shared_;
  std::shared_ptr<State> state_;
  std::shared_ptr<RolloutHandler::Generation> generation_;
  SteadyClock::time_point start_ = SteadyClock::now();
};

// ---- UpdateWeights: stage every chunk, apply after commit + clean end of stream ---------------
class UpdateCall final : public grpc::ServerReadReactor<pb::WeightChunk> {
 public:
  UpdateCall(const Shared& shared, grpc::CallbackServerContext* context, pb::UpdateWeightsResponse* response)
      : shared_(shared), context_(context), response_(response), state_(std::make_shared<State>()) {
    state_->call = this;
    if (grpc::Status refused = shared.admit(context); !refused.ok()) {
      try_finish(state_, refused);
      return;
    }
    try {
      staging_ = shared.handler.begin_update();
    } catch (const Error& e) {
      try_finish(state_, grpc::Status(grpc::INTERNAL, e.message()));
      return;
    }
    if (!staging_) {
      try_finish(state_, grpc::Status(grpc::ABORTED, "another weight update is being received or applied; retry after it"));
      return;
    }
    read_next();
  }

  void OnReadDone(bool ok) override {
    bool cancelled = false;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->reading = false;
      if (state_->finished) return;
      cancelled = state_->cancelled || (!ok && context_->IsCancelled());
      if (cancelled) state_->finished = true;
    }
    if (cancelled) {  // cut half-way: the staged tensors are dropped, the old weights serve on
      staging_.reset();
      shared_.metrics.record_weight_update(false);
      record_and_finish(grpc::Status(grpc::CANCELLED, "the update stream was cancelled: nothing applied"));
      return;
    }
    if (ok) {
      ++chunks_;
      try {
        take_chunk();
      } catch (const Error& e) {
        reject("chunk " + std::to_string(chunks_) + ": " + e.message());
        return;
      }
      read_next();
      return;
    }
    // The client closed its side: apply only a committed, complete update.
    if (!committed_) {
      reject("the stream ended without a chunk with commit set (" + std::to_string(chunks_) + " chunks): nothing applied");
      return;
    }
    try {
      staging_->finish();
    } catch (const Error& e) {
      reject(e.message());
      return;
    }
    response_->set_version(staging_->version());
    response_->set_tensors(staging_->tensors());
    response_->set_bytes(staging_->bytes());
    std::shared_ptr<State> state = state_;
    shared_.handler.apply_update(std::move(staging_), [state](const std::string& error) {
      try_finish(state, error.empty() ? grpc::Status::OK : grpc::Status(grpc::INVALID_ARGUMENT, error));
    });
  }

  void OnCancel() override {
    bool finish = false;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      state_->cancelled = true;
      // A pending read completes (not ok) and finishes the call; otherwise the update is
      // waiting to be applied (it still will be: it was committed) and the call ends here.
      finish = !state_->reading && !state_->finished;
      if (finish) state_->finished = true;
    }
    if (finish) record_and_finish(grpc::Status(grpc::CANCELLED, "cancelled"));
  }

  void OnDone() override { delete this; }

 private:
  struct State {
    std::mutex mutex;
    UpdateCall* call = nullptr;  // valid until `finished`
    bool reading = false, finished = false, cancelled = false;
  };

  void read_next() {
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      if (state_->finished) return;
      state_->reading = true;
    }
    StartRead(&chunk_);
  }

  void take_chunk() {
    GRPO_CHECK(!committed_, "a chunk after the commit chunk");
    staging_->chunk(chunk_.version(), chunk_.mode() == pb::UPDATE_MODE_ABORT_IN_FLIGHT);
    GRPO_CHECK(chunk_.mode() == pb::UPDATE_MODE_ABORT_IN_FLIGHT || chunk_.mode() == pb::UPDATE_MODE_FINISH_IN_FLIGHT,
               "unknown mode " << static_cast<int>(chunk_.mode()));
    for (int i = 0; i < chunk_.tensors_size(); ++i) {
      const pb::TensorPiece& t = chunk_.tensors(i);
      try {
        DType dtype;
        if (t.dtype() == pb::WEIGHT_DTYPE_F32) dtype = DType::f32;
        else if (t.dtype() == pb::WEIGHT_DTYPE_BF16) dtype = DType::bf16;
        else GRPO_THROW("tensor \"" << t.name() << "\": dtype " << static_cast<int>(t.dtype())
                                    << " (expected WEIGHT_DTYPE_F32 or WEIGHT_DTYPE_BF16)");
        std::vector<int64_t> shape(t.shape().begin(), t.shape().end());
        staging_->piece(t.name(), shape, dtype, t.offset(), t.data());
      } catch (const Error& e) {
        GRPO_THROW("tensors[" << i << "]: " << e.message());
      }
    }
    if (chunk_.commit()) committed_ = true;
  }

  // A bad update: nothing is applied, the worker keeps serving its weights.
  void reject(const std::string& reason) {
    staging_.reset();
    shared_.metrics.record_weight_update(false);
    try_finish(state_, grpc::Status(grpc::INVALID_ARGUMENT, reason));
  }

  static void try_finish(const std::shared_ptr<State>& state, const grpc::Status& status) {
    UpdateCall* call = nullptr;
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      if (state->finished) return;
      state->finished = true;
      call = state->call;
    }
    call->record_and_finish(status);
  }

  void record_and_finish(const grpc::Status& status) {
    shared_.metrics.record_request("UpdateWeights", code_name(status.error_code()), seconds_since(start_));
    Finish(status);
  }

  const Shared& shared_;
  grpc::CallbackServerContext* context_;
  pb::UpdateWeightsResponse* response_;
  std::shared_ptr<State> state_;
  std::shared_ptr<WeightStaging> staging_;
  pb::WeightChunk chunk_;
  int64_t chunks_ = 0;
  bool committed_ = false;
  SteadyClock::time_point start_ = SteadyClock::now();
};

// The reactor of a unary call that answers at once.
class UnaryReactor final : public grpc::ServerUnaryReactor {
 public:
  void OnDone() override { delete this; }
};

class Service final : public pb::RolloutService::CallbackService {
 public:
  explicit Service(Shared shared) : shared_(std::move(shared)) {}

  grpc::ServerWriteReactor<pb::GenerateResponse>* Generate(grpc::CallbackServerContext* context,
                                                           const pb::GenerateRequest* request) override {
    return new GenerateCall(shared_, context, *request);
  }

  grpc::ServerReadReactor<pb::WeightChunk>* UpdateWeights(grpc::CallbackServerContext* context,
                                                          pb::UpdateWeightsResponse* response) override {
    return new UpdateCall(shared_, context, response);
  }

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context, const pb::GetStatusRequest*,
                                      pb::GetStatusResponse* response) override {
    auto start = SteadyClock::now();
    auto* reactor = new UnaryReactor();
    grpc::Status status = shared_.admit(context);
    if (status.ok()) {
      const EngineStats s = shared_.handler.stats();
      response->set_version(s.version);
      response->set_running(s.running);
      response->set_waiting(s.waiting);
      response->set_kv_blocks_used(s.kv_blocks_used);
      response->set_kv_blocks_total(s.kv_blocks_total);
      response->set_kv_usage(s.kv_blocks_total > 0 ? double(s.kv_blocks_used) / double(s.kv_blocks_total) : 0.0);
      response->set_tokens_per_s(s.tokens_per_s);
      response->set_generated_tokens(s.generated_tokens);
      response->set_prefill_tokens(s.prefill_tokens);
      response->set_preemptions(s.preemptions);
      response->set_kv_blocks_saved_by_sharing(s.kv_blocks_saved_by_sharing);
      response->set_generate_calls_in_flight(shared_.handler.generations_in_flight());
      Engine& engine = shared_.handler.engine();
      const ModelConfig& cfg = engine.model().config();
      response->set_model_type(cfg.model_type);
      response->set_vocab_size(cfg.vocab_size);
      response->set_max_model_len(engine.config().max_model_len > 0 ? engine.config().max_model_len
                                                                     : cfg.max_position_embeddings);
      response->set_has_tokenizer(shared_.handler.tokenizer() != nullptr);
      response->set_device(shared_.device);
    }
    shared_.metrics.record_request("GetStatus", code_name(status.error_code()), seconds_since(start));
    reactor->Finish(status);
    return reactor;
  }

 private:
  Shared shared_;
};

}  // namespace

struct RolloutServer::Impl {
  RolloutServerOptions options;
  RolloutMetrics metrics;
  std::unique_ptr<RolloutHandler> handler;
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<rewards::HttpServer> http;
  std::string address;
  std::atomic<bool> serving{true};  // false: new calls get UNAVAILABLE, /healthz 503
  std::mutex shutdown_mutex;
  bool shut_down = false;
};

RolloutServer::RolloutServer(Engine& engine, const Tokenizer* tokenizer, const RolloutServerOptions& options)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  GRPO_CHECK(options.max_message_bytes > 0 && options.max_message_bytes <= INT32_MAX,
             "--max-message-bytes must be in 1.." << INT32_MAX << ", got " << options.max_message_bytes);
  std::string host;
  int port = 0;
  rewards::split_host_port(options.listen, "--listen", &host, &port);

  impl_->handler = std::make_unique<RolloutHandler>(engine, tokenizer, &impl_->metrics);
  const ModelConfig& cfg = engine.model().config();
  impl_->service = std::make_unique<Service>(Shared{*impl_->handler, impl_->metrics,
                                                    options.auth_token.empty() ? "" : "Bearer " + options.auth_token,
                                                    impl_->serving, options.device_description,
                                                    cfg.num_moe_layers(), cfg.num_experts_per_tok});

  impl_->server = rewards::start_grpc_server(impl_->service.get(), options.listen, host, grpc::InsecureServerCredentials(),
                                                    options.max_message_bytes, impl_->address);

  if (!options.metrics_listen.empty()) {
    Impl* impl = impl_.get();
    impl_->http = std::make_unique<rewards::HttpServer>(options.metrics_listen, [impl](const std::string& path) {
      using rewards::HttpResponse;
      if (path == "/healthz")
        return impl->serving ? HttpResponse{200, "text/plain; charset=utf-8", "ok\n"}
                             : HttpResponse{503, "text/plain; charset=utf-8", "shutting down\n"};
      if (path == "/metrics")
        return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", impl->metrics.render(impl->handler->stats())};
      return HttpResponse{404, "text/plain; charset=utf-8", "not found: try /healthz or /metrics\n"};
    });
  }
}

RolloutServer::~RolloutServer() { shutdown(); }

const std::string& RolloutServer::address() const { return impl_->address; }
std::string RolloutServer::metrics_address() const { return impl_->http ? impl_->http->address() : std::string(); }
RolloutMetrics& RolloutServer::metrics() { return impl_->metrics; }

void RolloutServer::shutdown() {
  std::lock_guard<std::mutex> lock(impl_->shutdown_mutex);
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  impl_->serving = false;
  if (impl_->server) {
    // Generate calls already accepted finish (up to the grace period); new ones are refused;
    // then gRPC cancels what remains, and cancelled calls cancel their samples in the engine
    // (which is still running).
    rewards::graceful_shutdown(*impl_->server, impl_->options.shutdown_grace_s,
                               [this] { return int64_t(impl_->handler->generations_in_flight()); });
  }
  if (impl_->http) impl_->http->stop();
  impl_->handler.reset();  // stops the engine loop
}

}  // namespace grpo::rollout
