#include "rollout/service/client.h"
#include "rewards/service/grpc_util.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "core/buffer.h"
#include "proto/rollout.grpc.pb.h"
#include "rollout/service/convert.h"

namespace grpo::rollout {

namespace {

// Proto-encoding overhead allowed per message beyond the tensor bytes (names, shapes, tags).
constexpr int64_t kChunkSlack = 64 << 10;

}  // namespace

void GenerateCancel::cancel() {
  std::lock_guard<std::mutex> lock(mutex_);
  cancelled_ = true;
  if (context_) static_cast<grpc::ClientContext*>(context_)->TryCancel();
}

struct RolloutClient::Impl {
  RolloutClientOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::RolloutService::Stub> stub;

  void prepare(grpc::ClientContext& context) const {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::duration_cast<std::chrono::system_clock::duration>(
                             std::chrono::duration<double>(options.deadline_s)));
    if (!options.token.empty()) context.AddMetadata("authorization", "Bearer " + options.token);
  }

  RolloutClientError error(const char* rpc, const std::string& code, const std::string& message) const {
    return RolloutClientError(code, "rollout worker " + options.address + ": " + rpc + " failed: " + code + ": " + message);
  }
  [[noreturn]] void fail(const char* rpc, const grpc::Status& status) const {
    throw error(rpc, rewards::grpc_code_name(status.error_code()), status.error_message());
  }

  // Sends the pieces of every tensor (`read(i)` gives tensor i's bytes), packed into chunks of
  // about weight_chunk_bytes; the last chunk carries commit.
  WeightUpdateResult stream_update(size_t count, const std::function<const NamedTensor&(size_t, std::string_view*)>& read,
                                   int64_t version, UpdateMode mode) const {
    grpc::ClientContext context;
    prepare(context);
    pb::UpdateWeightsResponse response;
    std::unique_ptr<grpc::ClientWriter<pb::WeightChunk>> writer = stub->UpdateWeights(&context, &response);
    const int64_t budget = std::max<int64_t>(1, std::min(options.weight_chunk_bytes, options.max_message_bytes - kChunkSlack));
    pb::WeightChunk chunk;
    int64_t chunk_bytes = 0;
    bool broken = false;
    auto start_chunk = [&] {
      chunk.Clear();
      chunk.set_version(version);
      chunk.set_mode(mode == UpdateMode::abort_in_flight ? pb::UPDATE_MODE_ABORT_IN_FLIGHT : pb::UPDATE_MODE_FINISH_IN_FLIGHT);
      chunk_bytes = 0;
    };
    auto send = [&](bool commit) {
      chunk.set_commit(commit);
      if (!broken && !writer->Write(chunk)) broken = true;  // the server ended the call: Finish says why
      start_chunk();
    };
    start_chunk();
    for (size_t i = 0; i < count && !broken; ++i) {
      std::string_view bytes;
      const NamedTensor& t = read(i, &bytes);
      const int64_t elem = int64_t(dtype_size(t.dtype));
      uint64_t offset = 0;
      do {
        // Each piece ends on an element boundary; a tensor may span chunks.
        int64_t room = budget - chunk_bytes - int64_t(t.name.size()) - 16 * int64_t(t.shape.size()) - 32;
        if (room < elem && chunk_bytes > 0) {
          send(false);
          continue;
        }
        uint64_t take = std::min<uint64_t>(bytes.size() - offset, uint64_t(std::max<int64_t>(room / elem, 1) * elem));
        pb::TensorPiece* piece = chunk.add_tensors();
        piece->set_name(t.name);
        for (int64_t d : t.shape) piece->add_shape(d);
        piece->set_dtype(t.dtype == DType::bf16 ? pb::WEIGHT_DTYPE_BF16 : pb::WEIGHT_DTYPE_F32);
        piece->set_offset(offset);
        piece->set_data(bytes.data() + offset, take);
        offset += take;
        chunk_bytes += int64_t(take + t.name.size()) + 16 * int64_t(t.shape.size()) + 32;
        if (chunk_bytes >= budget) send(false);
      } while (offset < bytes.size() && !broken);
    }
    if (!broken) send(true);
    if (!broken) writer->WritesDone();
    grpc::Status status = writer->Finish();
    if (!status.ok()) fail("UpdateWeights", status);
    return WeightUpdateResult{response.version(), response.tensors(), response.bytes()};
  }
};

RolloutClient::RolloutClient(const RolloutClientOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  GRPO_CHECK(!options.address.empty(), "rollout client: an \"address\" (host:port) is needed");
  GRPO_CHECK(options.deadline_s > 0, "rollout client: \"deadline_s\" must be positive");
  GRPO_CHECK(options.max_message_bytes > kChunkSlack && options.max_message_bytes <= INT32_MAX,
             "rollout client: \"max_message_bytes\" must be in " << kChunkSlack + 1 << ".." << INT32_MAX);
  GRPO_CHECK(options.weight_chunk_bytes >= 4, "rollout client: \"weight_chunk_bytes\" must be at least 4");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  impl_->channel = grpc::CreateCustomChannel(options.address, grpc::InsecureChannelCredentials(), args);
  impl_->stub = pb::RolloutService::NewStub(impl_->channel);
}

RolloutClient::~RolloutClient() = default;

const std::string& RolloutClient::address() const { return impl_->options.address; }

void RolloutClient::generate(const std::vector<PromptRequest>& prompts, const std::function<void(RemoteGroup)>& on_group,
                             GenerateCancel* cancel) const {
  pb::GenerateRequest request;
  std::unordered_map<uint64_t, bool> answered;  // id -> group received
  for (const PromptRequest& p : prompts) {
    GRPO_CHECK(answered.emplace(p.id, false).second, "rollout client: prompt id " << p.id << " is used twice");
    pb::Prompt* out = request.add_prompts();
    out->set_id(p.id);
    out->mutable_token_ids()->Add(p.tokens.begin(), p.tokens.end());
    if (p.tokens.empty()) out->set_text(p.text);
    to_proto(p.sampling, out->mutable_sampling());
  }
  grpc::ClientContext context;
  impl_->prepare(context);
  if (cancel) {
    std::lock_guard<std::mutex> lock(cancel->mutex_);
    cancel->context_ = &context;
    if (cancel->cancelled_) context.TryCancel();
  }
  struct Detach {  // the cancel handle must not outlive the context
    GenerateCancel* cancel;
    ~Detach() {
      if (!cancel) return;
      std::lock_guard<std::mutex> lock(cancel->mutex_);
      cancel->context_ = nullptr;
    }
  } detach{cancel};

  std::unique_ptr<grpc::ClientReader<pb::GenerateResponse>> reader = impl_->stub->Generate(&context, request);
  pb::GenerateResponse response;
  size_t received = 0;
  try {
    while (reader->Read(&response)) {
      auto it = answered.find(response.id());
      if (it == answered.end() || it->second)
        throw impl_->error("Generate", "INTERNAL", "answered id " + std::to_string(response.id()) +
                                                       (it == answered.end() ? ", which was not asked" : " twice"));
      it->second = true;
      ++received;
      RemoteGroup g;
      g.result.id = response.id();
      g.worker = impl_->options.address;
      for (const pb::Sample& s : response.samples()) {
        g.result.samples.push_back(from_proto(s));
        g.texts.push_back(s.text());
      }
      on_group(std::move(g));
    }
  } catch (...) {
    context.TryCancel();
    while (reader->Read(&response)) {
    }
    reader->Finish();
    throw;
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) impl_->fail("Generate", status);
  if (received != prompts.size())
    throw impl_->error("Generate", "INTERNAL", "answered " + std::to_string(received) + " of " +
                                                   std::to_string(prompts.size()) + " prompts");
}

std::vector<RemoteGroup> RolloutClient::generate(const std::vector<PromptRequest>& prompts) const {
  std::unordered_map<uint64_t, size_t> index;
  for (size_t i = 0; i < prompts.size(); ++i) index[prompts[i].id] = i;
  std::vector<RemoteGroup> out(prompts.size());
  generate(prompts, [&](RemoteGroup g) { out[index.at(g.result.id)] = std::move(g); });
  return out;
}

WeightUpdateResult RolloutClient::update_weights(const Model& model, int64_t version, UpdateMode mode, DType dtype) const {
  GRPO_CHECK(dtype == DType::f32 || dtype == DType::bf16,
             "rollout client: update_weights dtype " << dtype_name(dtype) << " (expected f32 or bf16)");
  const std::vector<ParamEntry>& entries = model.table().entries();
  Allocator& device = model.ops().allocator();
  std::vector<float> host;
  std::vector<uint16_t> half;
  NamedTensor current;
  // One tensor at a time is read from the device (and rounded to bf16): host memory stays at
  // the largest tensor.
  auto read = [&](size_t i, std::string_view* bytes) -> const NamedTensor& {
    const ParamEntry& e = entries[i];
    Tensor p = model.param(e.name);
    host.resize(size_t(p.numel()));
    device.copy_to_host(host.data(), p.data, host.size() * sizeof(float));
    current = NamedTensor{e.name, e.shape, dtype, nullptr};
    if (dtype == DType::bf16) {
      half.resize(host.size());
      for (size_t k = 0; k < host.size(); ++k) half[k] = f32_to_bf16(host[k]);
      *bytes = std::string_view(reinterpret_cast<const char*>(half.data()), half.size() * 2);
    } else {
      *bytes = std::string_view(reinterpret_cast<const char*>(host.data()), host.size() * 4);
    }
    return current;
  };
  return impl_->stream_update(entries.size(), read, version, mode);
}

WeightUpdateResult RolloutClient::update_weights(const std::vector<NamedTensor>& tensors, int64_t version,
                                                 UpdateMode mode) const {
  for (const NamedTensor& t : tensors) {
    GRPO_CHECK(t.dtype == DType::f32 || t.dtype == DType::bf16,
               "rollout client: tensor \"" << t.name << "\": dtype " << dtype_name(t.dtype) << " (expected f32 or bf16)");
    GRPO_CHECK(t.data || t.shape.empty(), "rollout client: tensor \"" << t.name << "\" has no data");
  }
  auto read = [&](size_t i, std::string_view* bytes) -> const NamedTensor& {
    const NamedTensor& t = tensors[i];
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    *bytes = std::string_view(static_cast<const char*>(t.data), size_t(numel) * dtype_size(t.dtype));
    return t;
  };
  return impl_->stream_update(tensors.size(), read, version, mode);
}

WorkerStatus RolloutClient::status() const {
  pb::GetStatusRequest request;
  pb::GetStatusResponse r;
  grpc::ClientContext context;
  impl_->prepare(context);
  grpc::Status status = impl_->stub->GetStatus(&context, request, &r);
  if (!status.ok()) impl_->fail("GetStatus", status);
  WorkerStatus s;
  s.version = r.version();
  s.running = r.running();
  s.waiting = r.waiting();
  s.kv_blocks_used = r.kv_blocks_used();
  s.kv_blocks_total = r.kv_blocks_total();
  s.kv_usage = r.kv_usage();
  s.tokens_per_s = r.tokens_per_s();
  s.generated_tokens = r.generated_tokens();
  s.prefill_tokens = r.prefill_tokens();
  s.preemptions = r.preemptions();
  s.kv_blocks_saved_by_sharing = r.kv_blocks_saved_by_sharing();
  s.generate_calls_in_flight = r.generate_calls_in_flight();
  s.model_type = r.model_type();
  s.vocab_size = r.vocab_size();
  s.max_model_len = r.max_model_len();
  s.has_tokenizer = r.has_tokenizer();
  s.device = r.device();
  return s;
}

}  // namespace grpo::rollout
