// `grpo rollout serve`: a rollout worker. Loads a Hugging Face model folder, runs the
// generation engine (rollout/engine.h) on its own loop thread and serves proto/rollout.proto
// over gRPC (rollout/service/server.h). Prints `listening on HOST:PORT` as the first line of
// stdout, so a parent process can start workers on port 0; logs go to stderr.
//   grpo rollout serve --model ckpt --listen 127.0.0.1:0 --kv-memory 2G --metrics-listen 127.0.0.1:9101
// --dtype (auto: bf16 on CUDA, f32 on the CPU) is the storage of the weights the engine reads
// and of its KV cache; pushed weights arrive as f32 or bf16 either way (rollout/service/weights.h).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/serve_util.h"
#include "core/error.h"
#include "core/log.h"
#ifdef GRPO_WITH_ROLLOUT_SERVICE
#include "kernels/backend.h"
#include "policy/model.h"
#include "policy/model_config.h"
#include "policy/tokenizer.h"
#include "rollout/engine.h"
#include "rollout/service/server.h"
#endif

namespace grpo::cli {

namespace {

struct ServeArgs {
  std::string model, listen = "127.0.0.1:50051", device = "auto", dtype = "auto", auth_token_file, metrics_listen;
  int64_t max_batch = 64;
  int64_t kv_memory = int64_t(256) << 20;
  int64_t max_message_bytes = 64 << 20;
  double shutdown_grace_s = 30;
  bool eager = false;
};

#ifdef GRPO_WITH_ROLLOUT_SERVICE

int run_serve(const ServeArgs& a) {
  namespace fs = std::filesystem;
  install_stop_handlers();

  GRPO_CHECK(fs::is_directory(a.model), "--model " << a.model << ": no such directory");
  rollout::RolloutServerOptions options;
  options.listen = a.listen;
  options.max_message_bytes = a.max_message_bytes;
  options.metrics_listen = a.metrics_listen;
  options.shutdown_grace_s = a.shutdown_grace_s;
  if (!a.auth_token_file.empty()) options.auth_token = read_token_file(a.auth_token_file);

  // Without tokenizer.json the worker serves token-id prompts only (no text, no stop strings).
  std::unique_ptr<Tokenizer> tokenizer;
  if (fs::exists(fs::path(a.model) / "tokenizer.json"))
    tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_dir(a.model));

  rollout::EngineConfig ec;
  ec.max_batch = a.max_batch;
  ec.kv_memory_bytes = a.kv_memory;
  DeviceChoice device = resolve_device(a.device);
  options.device_description = describe_device(device);
  std::unique_ptr<Ops> ops = make_ops(device);
  ModelLimits limits = rollout::engine_model_limits(ec);
  limits.dtype = resolve_dtype(a.dtype, *ops);
  if (a.eager) limits.decode_graphs = DecodeGraphs::off;
  std::unique_ptr<Model> model = load_model(a.model, *ops, limits);
  rollout::Engine engine(*model, ec, tokenizer.get());
  rollout::RolloutServer server(engine, tokenizer.get(), options);

  // The first line of stdout is the contract with a parent process that launched us.
  std::printf("listening on %s\n", server.address().c_str());
  std::fflush(stdout);
  const rollout::EngineStats stats = engine.stats();
  GRPO_LOG(info, "rollout worker on " << server.address() << ": " << a.model << " (" << model->config().model_type
                                      << ", " << dtype_name(model->dtype()) << ") on " << options.device_description
                                      << ", max batch " << a.max_batch << ", " << stats.kv_blocks_total << " KV blocks"
                                      << (tokenizer ? "" : ", no tokenizer (token-id prompts only)")
                                      << (options.auth_token.empty() ? ", no auth" : ", bearer token"));
  if (!server.metrics_address().empty())
    GRPO_LOG(info, "metrics on http://" << server.metrics_address() << "/metrics, health on /healthz");

  int received = wait_for_stop_signal();
  GRPO_LOG(info, "rollout worker: " << (received == SIGINT ? "SIGINT" : "SIGTERM")
                                    << ", finishing in-flight calls (again to stop at once)");
  server.shutdown();
  GRPO_LOG(info, "rollout worker stopped");
  return 0;
}
#endif

}  // namespace

void add_rollout_commands(CLI::App& app, Runner& run) {
  CLI::App* rollout = app.add_subcommand("rollout", "Rollout workers: serve the generation engine over gRPC");
  rollout->require_subcommand(1);

  auto args = std::make_shared<ServeArgs>();
  CLI::App* serve = rollout->add_subcommand("serve", "Serve proto/rollout.proto; prints 'listening on HOST:PORT' first");
  serve->add_option("--model", args->model, "Hugging Face model folder (config.json, weights; tokenizer.json for text)")
      ->required();
  serve->add_option("--listen", args->listen, "gRPC address HOST:PORT (port 0: pick a free port)")->capture_default_str();
  serve->add_option("--max-batch", args->max_batch, "Sequences decoded together per engine step")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  serve->add_option("--kv-memory", args->kv_memory, "KV cache memory, e.g. 512M or 2G (default 256M)")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::PositiveNumber);
  serve->add_option("--device", args->device, "Backend: auto, cpu, cuda or cuda:N")->capture_default_str();
  serve->add_option("--dtype", args->dtype, "Model storage: auto (bf16 on CUDA, f32 on the CPU), f32 or bf16")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}))
      ->capture_default_str();
  serve->add_flag("--eager", args->eager, "Decode op by op: no CUDA graphs for the decode step (the default captures them on CUDA)");
  serve->add_option("--auth-token-file", args->auth_token_file, "Require 'authorization: Bearer <token in this file>'");
  serve->add_option("--max-message-bytes", args->max_message_bytes, "Cap on each request, response and weight chunk, bytes")
      ->check(CLI::Range(int64_t{1}, int64_t{INT32_MAX}))
      ->capture_default_str();
  serve->add_option("--metrics-listen", args->metrics_listen, "HTTP address HOST:PORT for /healthz and /metrics (off if unset)");
  serve->add_option("--shutdown-grace", args->shutdown_grace_s, "On SIGINT/SIGTERM, seconds in-flight calls get to finish")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  serve->callback([&run, args] {
#ifdef GRPO_WITH_ROLLOUT_SERVICE
    run = [args] { return run_serve(*args); };
#else
    run = [] () -> int {
      GRPO_THROW("grpo rollout serve: this build has no gRPC services (configure with -DGRPO_SERVICES=ON and gRPC installed)");
    };
#endif
  });
}

}  // namespace grpo::cli
