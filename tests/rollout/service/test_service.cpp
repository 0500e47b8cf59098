// The rollout service in process on a loopback port: Generate agrees with the in-process
// engine, groups stream as they complete, weight updates change what is served (and a cut
// update does not), every bad request is INVALID_ARGUMENT and changes nothing, auth, deadlines,
// GetStatus, /healthz and /metrics.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <thread>

#include "core/dtype.h"
#include "proto/rollout.grpc.pb.h"
#include "rollout/service/server.h"
#include "service_test_util.h"
#include "tests/policy/model_test_util.h"
#include "tests/rewards/service/test_helpers.h"

namespace grpo::rollout {
namespace {

namespace pb = ::grpo::rollout::v1;
using test::LocalEngine;

PromptRequest token_prompt(uint64_t id, std::vector<int32_t> tokens, SamplingOptions s) {
  PromptRequest p;
  p.id = id;
  p.tokens = std::move(tokens);
  p.sampling = std::move(s);
  return p;
}

SamplingOptions sampling(int64_t n, uint64_t seed, int64_t max_new_tokens) {
  SamplingOptions s;
  s.n = n;
  s.seed = seed;
  s.max_new_tokens = max_new_tokens;
  return s;
}

// A small batch whose answers show whether the weights changed.
std::vector<PromptRequest> probe_prompts() {
  return {token_prompt(1, {10, 20, 30, 40}, sampling(2, 5, 10)), token_prompt(2, {7, 8, 9}, sampling(1, 6, 10))};
}

std::vector<float> host_params(const Model& model) {
  const float* p = model.params().ptr<float>();
  return std::vector<float>(p, p + model.params().numel());
}

// A raw stub, for requests the client would never send.
std::unique_ptr<pb::RolloutService::Stub> raw_stub(const std::string& address) {
  return pb::RolloutService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

// Sends `chunks` on one UpdateWeights stream, then closes it; the call's status.
grpc::Status send_chunks(pb::RolloutService::Stub& stub, const std::vector<pb::WeightChunk>& chunks) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  pb::UpdateWeightsResponse response;
  auto writer = stub.UpdateWeights(&context, &response);
  for (const pb::WeightChunk& c : chunks)
    if (!writer->Write(c)) break;
  writer->WritesDone();
  return writer->Finish();
}

// One piece of a parameter of `model`: elements [begin, end) as f32.
pb::TensorPiece piece_of(const Model& model, const std::string& name, int64_t begin, int64_t end) {
  const ParamEntry& e = model.table().at(name);
  const float* p = model.param(name).ptr<float>();
  pb::TensorPiece t;
  t.set_name(name);
  for (int64_t d : e.shape) t.add_shape(d);
  t.set_dtype(pb::WEIGHT_DTYPE_F32);
  t.set_offset(uint64_t(begin) * 4);
  t.set_data(reinterpret_cast<const char*>(p + begin), size_t(end - begin) * 4);
  return t;
}

pb::WeightChunk chunk(int64_t version, std::vector<pb::TensorPiece> pieces, bool commit) {
  pb::WeightChunk c;
  c.set_version(version);
  for (pb::TensorPiece& t : pieces) *c.add_tensors() = std::move(t);
  c.set_commit(commit);
  return c;
}

std::string client_error_code(const std::function<void()>& call) {
  try {
    call();
  } catch (const RolloutClientError& e) {
    return e.code();
  }
  return "OK";
}

// The worker's status once the engine is idle: its counters are published at the end of each
// step, a moment after the groups of that step were delivered.
WorkerStatus idle_status(const RolloutClient& client) {
  WorkerStatus s;
  for (int i = 0; i < 1000; ++i) {
    s = client.status();
    if (s.running == 0 && s.waiting == 0 && s.generate_calls_in_flight == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return s;
}

class RolloutServiceTest : public ::testing::Test {
 protected:
  void start(RolloutServerOptions options = {}) {
    dir_ = test::tiny_model_dir("served", 11);
    served_ = test::load_engine(dir_);
    initial_params_ = host_params(*served_->model);
    options.listen = "127.0.0.1:0";
    server_ = std::make_unique<RolloutServer>(*served_->engine, served_->tokenizer.get(), options);
  }

  RolloutClient& client() {
    if (!client_) {
      RolloutClientOptions o;
      o.address = server_->address();
      o.token = token_;
      o.deadline_s = 60;
      client_ = std::make_unique<RolloutClient>(o);
    }
    return *client_;
  }

  // The probe batch answered by the server and by a fresh engine over `dir` agree.
  void expect_serves(const std::string& dir) {
    std::unique_ptr<LocalEngine> reference = test::load_engine(dir);
    std::vector<GroupResult> want = test::reference_groups(*reference, probe_prompts());
    std::vector<RemoteGroup> got = client().generate(probe_prompts());
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) test::expect_same_group(want[i], got[i], *reference->tokenizer);
  }

  void TearDown() override {
    client_.reset();
    if (server_) server_->shutdown();
  }

  std::string dir_, token_;
  std::unique_ptr<LocalEngine> served_;
  std::vector<float> initial_params_;
  std::unique_ptr<RolloutServer> server_;
  std::unique_ptr<RolloutClient> client_;
};

TEST_F(RolloutServiceTest, GenerateEqualsTheInProcessEngine) {
  start();
  std::unique_ptr<LocalEngine> reference = test::load_engine(dir_);

  // A stop token and a stop string taken from what the model generates without them, so the
  // stops are sure to trigger.
  PromptRequest free_run = token_prompt(9, {100, 101, 102}, sampling(1, 3, 24));
  std::vector<GroupResult> free = test::reference_groups(*reference, {free_run});
  const std::vector<int32_t>& free_tokens = free[0].samples[0].tokens;
  ASSERT_EQ(free_tokens.size(), 24u);
  std::string stop_string;
  for (size_t i = 2; i < free_tokens.size() && stop_string.empty(); ++i)
    if (free_tokens[i] >= 'a' && free_tokens[i] <= 'z') stop_string = std::string(1, char(free_tokens[i]));

  std::vector<PromptRequest> prompts;
  prompts.push_back(token_prompt(1, {1, 2, 3, 4, 5}, sampling(3, 1, 12)));
  PromptRequest text;
  text.id = 2;
  text.text = "The answer is";
  text.sampling = sampling(2, 2, 9);
  text.sampling.top_k = 5;
  text.sampling.top_p = 0.9f;
  text.sampling.min_p = 0.05f;
  text.sampling.temperature = 0.7f;
  text.sampling.return_routing = true;
  prompts.push_back(text);
  PromptRequest greedy = token_prompt(3, {50, 60, 70}, sampling(1, 0, 8));
  greedy.sampling.temperature = 0;
  prompts.push_back(greedy);
  PromptRequest stop_token = free_run;
  stop_token.id = 4;
  stop_token.sampling.stop_token_ids = {free_tokens[5]};
  prompts.push_back(stop_token);
  PromptRequest stop_text = free_run;
  stop_text.id = 5;
  if (!stop_string.empty()) stop_text.sampling.stop_strings = {stop_string};
  prompts.push_back(stop_text);

  std::vector<GroupResult> want = test::reference_groups(*reference, prompts);
  std::vector<RemoteGroup> got = client().generate(prompts);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) test::expect_same_group(want[i], got[i], *reference->tokenizer);

  // The sampling options crossed the wire: the stops did stop, routing came back.
  EXPECT_EQ(got[3].result.samples[0].finish, FinishReason::stop);
  EXPECT_LE(got[3].result.samples[0].tokens.size(), 6u);
  if (!stop_string.empty()) {
    EXPECT_EQ(got[4].result.samples[0].finish, FinishReason::stop) << "stop string \"" << stop_string << "\"";
  }
  const int64_t moe_layers = served_->model->config().num_moe_layers();
  const Sample& routed = got[1].result.samples[0];
  EXPECT_EQ(int64_t(routed.routing.size()),
            (int64_t(reference->tokenizer->encode(text.text).size()) + int64_t(routed.tokens.size()) - 1) * moe_layers * 2);
  EXPECT_TRUE(got[0].result.samples[0].routing.empty());
  // Different seeds in one group gave different samples (the engine's streams are per sample).
  EXPECT_NE(got[0].result.samples[0].tokens, got[0].result.samples[1].tokens);
}

TEST_F(RolloutServiceTest, StreamsEachGroupWhenItCompletes) {
  start();
  // A finishes after one token, B would take 1000. When A arrives, an update that aborts
  // in-flight samples is sent: B comes back aborted, so it was still running when A arrived.
  std::vector<PromptRequest> prompts = {token_prompt(1, {5, 6, 7}, sampling(1, 1, 1000)),
                                        token_prompt(2, {5, 6, 7}, sampling(2, 2, 1))};
  std::vector<uint64_t> order;
  std::vector<RemoteGroup> groups;
  WeightUpdateResult update;
  client().generate(prompts, [&](RemoteGroup g) {
    order.push_back(g.result.id);
    if (g.result.id == 2) update = client().update_weights(std::vector<NamedTensor>{}, 1, UpdateMode::abort_in_flight);
    groups.push_back(std::move(g));
  });
  ASSERT_EQ(order, (std::vector<uint64_t>{2, 1}));
  EXPECT_EQ(update.version, 1);
  for (const Sample& s : groups[0].result.samples) {
    EXPECT_EQ(s.finish, FinishReason::length);
    EXPECT_EQ(s.tokens.size(), 1u);
  }
  const Sample& b = groups[1].result.samples[0];
  EXPECT_EQ(b.finish, FinishReason::abort);
  EXPECT_LT(b.tokens.size(), 1000u);
  EXPECT_EQ(b.version, 0);
  EXPECT_EQ(client().status().version, 1);
}

TEST_F(RolloutServiceTest, UpdateWeightsChangesOutputsAndVersion) {
  start();
  expect_serves(dir_);
  EXPECT_EQ(client().status().version, 0);

  const std::string new_dir = test::tiny_model_dir("update", 12);
  std::unique_ptr<LocalEngine> fresh = test::load_engine(new_dir);
  WeightUpdateResult r = client().update_weights(*fresh->model, 3, UpdateMode::finish_in_flight);
  EXPECT_EQ(r.version, 3);
  EXPECT_EQ(r.tensors, int64_t(fresh->model->table().entries().size()));
  EXPECT_EQ(r.bytes, fresh->model->table().numel() * 4);
  EXPECT_EQ(client().status().version, 3);
  EXPECT_EQ(host_params(*served_->model), host_params(*fresh->model));

  std::vector<RemoteGroup> got = client().generate(probe_prompts());
  for (const RemoteGroup& g : got)
    for (const Sample& s : g.result.samples) EXPECT_EQ(s.version, 3);
  // The reference engine reports version 0; compare the tokens, then the rest field by field.
  std::unique_ptr<LocalEngine> reference = test::load_engine(new_dir);
  std::vector<GroupResult> want = test::reference_groups(*reference, probe_prompts());
  for (GroupResult& g : want)
    for (Sample& s : g.samples) s.version = 3;
  for (size_t i = 0; i < want.size(); ++i) test::expect_same_group(want[i], got[i], *reference->tokenizer);
  std::unique_ptr<LocalEngine> old = test::load_engine(dir_);
  EXPECT_NE(test::reference_groups(*old, probe_prompts())[0].samples[0].tokens, got[0].result.samples[0].tokens);

  // bf16 on the wire: the weights served are the bf16 roundings.
  client().update_weights(*fresh->model, 4, UpdateMode::finish_in_flight, DType::bf16);
  std::vector<float> rounded = host_params(*fresh->model);
  for (float& v : rounded) v = bf16_to_f32(f32_to_bf16(v));
  EXPECT_EQ(host_params(*served_->model), rounded);
  EXPECT_EQ(client().status().version, 4);
}

TEST_F(RolloutServiceTest, FinishInFlightUpdateLetsRunningSamplesEndOnTheOldWeights) {
  start();
  std::unique_ptr<LocalEngine> old = test::load_engine(dir_);
  std::vector<PromptRequest> prompts = {token_prompt(1, {5, 6, 7}, sampling(2, 1, 200)),
                                        token_prompt(2, {5, 6, 7}, sampling(1, 2, 1))};
  std::vector<GroupResult> want = test::reference_groups(*old, prompts);
  const std::string new_dir = test::tiny_model_dir("update", 12);
  std::unique_ptr<LocalEngine> fresh = test::load_engine(new_dir);

  std::thread updater;
  std::string update_error;
  std::vector<RemoteGroup> got(2);
  client().generate(prompts, [&](RemoteGroup g) {
    if (g.result.id == 2)  // group 1 is still running: update now, on another thread (it waits)
      updater = std::thread([&] {
        try {
          client().update_weights(*fresh->model, 1, UpdateMode::finish_in_flight);
        } catch (const std::exception& e) {
          update_error = e.what();
        }
      });
    got[g.result.id - 1] = std::move(g);
  });
  updater.join();
  EXPECT_EQ(update_error, "");
  test::expect_same_group(want[0], got[0], *old->tokenizer);  // whole, on version 0
  EXPECT_EQ(client().status().version, 1);
  EXPECT_EQ(client().generate(probe_prompts())[0].result.samples[0].version, 1);
}

TEST_F(RolloutServiceTest, BadRequestsAreInvalidArgumentAndChangeNothing) {
  start();
  std::vector<RemoteGroup> baseline = client().generate(probe_prompts());
  client().update_weights(std::vector<NamedTensor>{}, 2, UpdateMode::finish_in_flight);  // serving version 2

  struct Case {
    const char* what;
    PromptRequest prompt;
    const char* message;
  };
  auto with = [](std::function<void(PromptRequest&)> edit) {
    PromptRequest p = token_prompt(7, {1, 2, 3}, sampling(2, 1, 4));
    edit(p);
    return p;
  };
  const Case cases[] = {
      {"token id past the vocabulary", with([](PromptRequest& p) { p.tokens = {1, 272}; }), "272"},
      {"negative token id", with([](PromptRequest& p) { p.tokens = {-1}; }), "-1"},
      {"prompt longer than the context", with([](PromptRequest& p) { p.tokens.assign(1024, 5); }), "1024"},
      {"n = 0", with([](PromptRequest& p) { p.sampling.n = 0; }), "n"},
      {"top_p = 0", with([](PromptRequest& p) { p.sampling.top_p = 0; }), "top_p"},
      {"top_p > 1", with([](PromptRequest& p) { p.sampling.top_p = 1.5f; }), "top_p"},
      {"empty prompt", with([](PromptRequest& p) { p.tokens.clear(); }), "empty prompt"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    // The bad prompt second: the message names it, and the good first one is not run either.
    std::vector<PromptRequest> batch = {token_prompt(6, {1, 2}, sampling(1, 1, 4)), c.prompt};
    try {
      client().generate(batch, [&](RemoteGroup g) { ADD_FAILURE() << "group " << g.result.id << " delivered"; });
      ADD_FAILURE() << "accepted";
    } catch (const RolloutClientError& e) {
      EXPECT_EQ(e.code(), "INVALID_ARGUMENT") << e.what();
      EXPECT_NE(e.message().find("prompts[1] (id 7)"), std::string::npos) << e.message();
      EXPECT_NE(e.message().find(c.message), std::string::npos) << e.message();
    }
  }
  {
    // Duplicate ids and both text and tokens get past the client's checks only on the raw stub.
    auto stub = raw_stub(server_->address());
    for (int kind = 0; kind < 2; ++kind) {
      pb::GenerateRequest request;
      for (int i = 0; i < 2; ++i) {
        pb::Prompt* p = request.add_prompts();
        p->set_id(kind == 0 ? 5 : uint64_t(i));
        p->add_token_ids(3);
        if (kind == 1 && i == 1) p->set_text("x");
      }
      grpc::ClientContext context;
      auto reader = stub->Generate(&context, request);
      pb::GenerateResponse response;
      EXPECT_FALSE(reader->Read(&response));
      grpc::Status status = reader->Finish();
      EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT);
      EXPECT_NE(status.error_message().find(kind == 0 ? "used by an earlier prompt" : "not both"), std::string::npos)
          << status.error_message();
    }
  }

  // Weight updates: every malformed stream is refused whole.
  std::unique_ptr<LocalEngine> other = test::load_engine(test::tiny_model_dir("update", 12));
  const Model& m = *other->model;
  const std::string norm = "model.norm.weight";  // [64]
  auto stub = raw_stub(server_->address());
  struct UpdateCase {
    const char* what;
    std::vector<pb::WeightChunk> chunks;
    const char* message;
  };
  auto bad_piece = [&](std::function<void(pb::TensorPiece&)> edit) {
    pb::TensorPiece t = piece_of(m, norm, 0, 64);
    edit(t);
    return std::vector<pb::WeightChunk>{chunk(3, {t}, true)};
  };
  std::vector<pb::WeightChunk> mismatched = {chunk(3, {piece_of(m, norm, 0, 32)}, false), chunk(4, {piece_of(m, norm, 32, 64)}, true)};
  const UpdateCase updates[] = {
      {"older version", {chunk(1, {piece_of(m, norm, 0, 64)}, true)}, "older than the version serving (2)"},
      {"unknown tensor", bad_piece([](pb::TensorPiece& t) { t.set_name("model.nope.weight"); }), "no such tensor"},
      {"wrong shape", bad_piece([](pb::TensorPiece& t) { t.set_shape(0, 65); }), "shape [65]"},
      {"extra dimension", bad_piece([](pb::TensorPiece& t) { t.add_shape(1); }), "shape [64, 1]"},
      {"dtype unset", bad_piece([](pb::TensorPiece& t) { t.set_dtype(pb::WEIGHT_DTYPE_UNSPECIFIED); }), "dtype"},
      {"gap", bad_piece([](pb::TensorPiece& t) { t.set_offset(8); }), "in order"},
      {"partial element", bad_piece([](pb::TensorPiece& t) { t.mutable_data()->pop_back(); }), "whole number"},
      {"past the end", bad_piece([](pb::TensorPiece& t) { t.mutable_data()->append(4, '\0'); }), "past the tensor"},
      {"incomplete at commit", {chunk(3, {piece_of(m, norm, 0, 32)}, true)}, "128 of its 256 bytes"},
      {"no commit", {chunk(3, {piece_of(m, norm, 0, 64)}, false)}, "without a chunk with commit"},
      {"chunk after commit", {chunk(3, {piece_of(m, norm, 0, 64)}, true), chunk(3, {}, false)}, "after the commit"},
      {"version changes mid-stream", mismatched, "started with 3"},
  };
  for (const UpdateCase& c : updates) {
    SCOPED_TRACE(c.what);
    grpc::Status status = send_chunks(*stub, c.chunks);
    EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << status.error_message();
    EXPECT_NE(status.error_message().find(c.message), std::string::npos) << status.error_message();
  }

  // Still serving, same weights, same version, same answers.
  EXPECT_EQ(host_params(*served_->model), initial_params_);
  EXPECT_EQ(client().status().version, 2);
  std::vector<RemoteGroup> after = client().generate(probe_prompts());
  for (size_t i = 0; i < after.size(); ++i) {
    for (size_t s = 0; s < after[i].result.samples.size(); ++s) {
      EXPECT_EQ(after[i].result.samples[s].tokens, baseline[i].result.samples[s].tokens);
      test::expect_close_logprobs(after[i].result.samples[s].logprobs, baseline[i].result.samples[s].logprobs);
    }
  }
  // And a good update still goes through (the failed ones freed the update slot).
  EXPECT_EQ(send_chunks(*stub, {chunk(3, {piece_of(m, norm, 0, 40)}, false), chunk(3, {piece_of(m, norm, 40, 64)}, true)})
                .error_code(),
            grpc::OK);
  EXPECT_EQ(client().status().version, 3);
  EXPECT_EQ(grpo::test::read_tensor(served_->model->param(norm)), grpo::test::read_tensor(m.param(norm)));
}

TEST_F(RolloutServiceTest, HalfSentUpdateLeavesTheOldWeightsServing) {
  start();
  std::unique_ptr<LocalEngine> other = test::load_engine(test::tiny_model_dir("update", 12));
  const Model& m = *other->model;
  auto stub = raw_stub(server_->address());
  {
    // Most of the model, then the client gives up mid-tensor.
    grpc::ClientContext context;
    pb::UpdateWeightsResponse response;
    auto writer = stub->UpdateWeights(&context, &response);
    const std::vector<ParamEntry>& entries = m.table().entries();
    for (size_t i = 0; i + 1 < entries.size(); ++i)
      ASSERT_TRUE(writer->Write(chunk(5, {piece_of(m, entries[i].name, 0, entries[i].numel())}, false)));
    ASSERT_TRUE(writer->Write(chunk(5, {piece_of(m, entries.back().name, 0, entries.back().numel() / 2)}, false)));
    context.TryCancel();
    EXPECT_EQ(writer->Finish().error_code(), grpc::CANCELLED);
  }
  EXPECT_EQ(client().status().version, 0);
  expect_serves(dir_);
  EXPECT_EQ(host_params(*served_->model), initial_params_);

  // The worker takes the next update (the cut one's slot is freed once the server saw the cut).
  std::string code = "ABORTED";
  for (int attempt = 0; attempt < 100 && code == "ABORTED"; ++attempt) {
    code = client_error_code([&] { client().update_weights(m, 5, UpdateMode::finish_in_flight); });
    if (code == "ABORTED") std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(code, "OK");
  EXPECT_EQ(host_params(*served_->model), host_params(m));
}

TEST_F(RolloutServiceTest, BearerTokenIsRequired) {
  RolloutServerOptions options;
  options.auth_token = "s3cret";
  start(options);
  for (const char* token : {"", "wrong", "s3cre", "s3cret!"}) {
    SCOPED_TRACE(std::string("token \"") + token + "\"");
    RolloutClientOptions o;
    o.address = server_->address();
    o.token = token;
    RolloutClient c(o);
    EXPECT_EQ(client_error_code([&] { c.generate(probe_prompts()); }), "UNAUTHENTICATED");
    EXPECT_EQ(client_error_code([&] { c.status(); }), "UNAUTHENTICATED");
    EXPECT_EQ(client_error_code([&] { c.update_weights(std::vector<NamedTensor>{}, 9, UpdateMode::abort_in_flight); }),
              "UNAUTHENTICATED");
  }
  token_ = "s3cret";
  EXPECT_EQ(client().status().version, 0);
  EXPECT_EQ(client().generate(probe_prompts()).size(), 2u);
}

TEST_F(RolloutServiceTest, CancelledAndExpiredCallsCancelTheirSamples) {
  start();
  // Cancelled by the client as soon as the short group arrived.
  GenerateCancel cancel;
  std::vector<PromptRequest> prompts = {token_prompt(1, {5, 6}, sampling(4, 1, 1000)), token_prompt(2, {5, 6}, sampling(1, 2, 1))};
  EXPECT_EQ(client_error_code([&] { client().generate(prompts, [&](RemoteGroup) { cancel.cancel(); }, &cancel); }),
            "CANCELLED");
  // Past its deadline (far shorter than 8 x 1000 tokens take).
  RolloutClientOptions o;
  o.address = server_->address();
  o.deadline_s = 0.2;
  RolloutClient hasty(o);
  EXPECT_EQ(client_error_code([&] { hasty.generate({token_prompt(3, {5, 6}, sampling(8, 3, 1000))}); }),
            "DEADLINE_EXCEEDED");
  // The engine lets go of all 12 samples (aborted), long before they could have finished.
  WorkerStatus s = idle_status(client());
  EXPECT_EQ(s.running + s.waiting, 0);
  EXPECT_EQ(s.generate_calls_in_flight, 0);
  EXPECT_LT(s.generated_tokens, 12 * 1000);
  EXPECT_NE(server_->metrics().render(served_->engine->stats()).find("grpo_rollout_samples_total{finish=\"abort\"} 12"),
            std::string::npos);
}

TEST_F(RolloutServiceTest, GetStatusDescribesTheWorker) {
  start();
  WorkerStatus before = client().status();
  EXPECT_EQ(before.version, 0);
  EXPECT_EQ(before.running, 0);
  EXPECT_EQ(before.waiting, 0);
  EXPECT_GT(before.kv_blocks_total, 0);
  EXPECT_EQ(before.kv_blocks_used, 0);
  EXPECT_EQ(before.generated_tokens, 0);
  EXPECT_EQ(before.model_type, "qwen3_moe");
  EXPECT_EQ(before.vocab_size, 272);
  EXPECT_EQ(before.max_model_len, 1024);
  EXPECT_TRUE(before.has_tokenizer);
  EXPECT_EQ(before.device, "cpu");
  client().generate(probe_prompts());
  WorkerStatus after = idle_status(client());
  EXPECT_EQ(after.generated_tokens, 3 * 10);  // 3 samples of 10 tokens (no stops given)
  EXPECT_GE(after.prefill_tokens, 7);
}

TEST_F(RolloutServiceTest, HealthzAndMetricsOverHttp) {
  RolloutServerOptions options;
  options.metrics_listen = "127.0.0.1:0";
  start(options);
  client().generate(probe_prompts());
  idle_status(client());
  using rewards::testing_helpers::http_get;
  auto health = http_get(server_->metrics_address(), "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  auto metrics = http_get(server_->metrics_address(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  for (const char* line : {"grpo_rollout_requests_total{rpc=\"Generate\",code=\"OK\"} 1\n",
                           "grpo_rollout_requests_total{rpc=\"GetStatus\",code=\"OK\"} ",
                           "grpo_rollout_groups_total 2\n", "grpo_rollout_samples_total{finish=\"length\"} 3\n",
                           "grpo_rollout_generated_tokens_total 30\n", "grpo_rollout_policy_version 0\n",
                           "grpo_rollout_running_sequences 0\n", "grpo_rollout_generate_calls_in_flight 0\n",
                           // The CPU backend decodes op by op (graphs are for CUDA).
                           "grpo_rollout_decode_graph_replays_total 0\n", "grpo_rollout_decode_steps_op_by_op_total ",
                           "grpo_rollout_decode_graph_failures_total 0\n"})
    EXPECT_NE(metrics.body.find(line), std::string::npos) << line << "in:\n" << metrics.body;
  EXPECT_EQ(http_get(server_->metrics_address(), "/nope").status, 404);
}

TEST_F(RolloutServiceTest, ShutdownRefusesNewCalls) {
  start();
  const std::string address = server_->address();
  server_->shutdown();
  RolloutClientOptions o;
  o.address = address;
  o.deadline_s = 5;
  EXPECT_EQ(client_error_code([&] { RolloutClient(o).status(); }), "UNAVAILABLE");
}

}  // namespace
}  // namespace grpo::rollout
