// `grpo reward score|serve|list`: the reward checkers offline, as a gRPC service, and what is
// available. Checkers come from the built-ins, --plugin libraries and a --config file
// (rewards/combine.h documents the config).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/serve_util.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "learner/datasets.h"
#include "rewards/builtin.h"
#include "rewards/combine.h"
#include "rewards/plugin.h"
#include "rewards/registry.h"
#ifdef GRPO_WITH_SERVICES
#include "rewards/service/remote_checker.h"
#include "rewards/service/server.h"
#endif

namespace grpo::cli {

namespace {

// Ordered: output lines keep the documented field order.
using Json = nlohmann::ordered_json;
using rewards::CheckerRegistry;
using rewards::RewardSet;

// ---- checkers: built-ins, plug-ins, config ----------------------------------------------------

struct CheckerArgs {
  std::vector<std::string> plugins;
  std::string config;
};

void add_checker_options(CLI::App* command, CheckerArgs& args) {
  command->add_option("--plugin", args.plugins, "Load reward checkers from this shared library (repeatable)");
  command->add_option("--config", args.config, "Reward config (JSON): checker options, tasks, default checker");
}

struct Rewards {
  CheckerRegistry registry;
  std::unique_ptr<RewardSet> set;
};

std::unique_ptr<Rewards> load_rewards(const CheckerArgs& args) {
  auto out = std::make_unique<Rewards>();
  rewards::register_builtin_checkers(out->registry);
  register_dataset_checkers(out->registry);  // "arithmetic" and "countdown" (learner/datasets.h)
#ifdef GRPO_WITH_SERVICES
  rewards::register_remote_checker(out->registry);
#endif
  for (const std::string& plugin : args.plugins) {
    std::vector<std::string> names = rewards::load_reward_plugin(plugin, out->registry);
    std::string list;
    for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
    GRPO_LOG(info, "reward plug-in " << plugin << ": " << list);
  }
  if (args.config.empty()) {
    out->set = std::make_unique<RewardSet>(out->registry, nullptr);
    return out;
  }
  ConfigNode config = ConfigNode::from_file(args.config);
  try {
    out->set = std::make_unique<RewardSet>(out->registry, &config);
  } catch (const Error& e) {
    if (e.message().starts_with(args.config + ":")) throw;
    GRPO_THROW(args.config << ": " << e.message());
  }
  return out;
}

// ---- grpo reward score -----------------------------------------------------------------------

struct ScoreArgs {
  CheckerArgs checkers;
  std::string input;
  std::string output;
  std::string checker;
  int threads = 0;
};

// One input line, parsed; `error` set when the line is malformed.
struct Job {
  size_t line = 0;
  Json id;  // as given (null when absent)
  std::string checker;
  rewards::ScoreRequest request;
  std::string error;
  Json result;  // the output line
};

const std::vector<std::string> kLineKeys = {"id", "checker", "task", "prompt", "completion", "response", "reference"};

// The reference in the checker's text form: a string as is; {"answer": x} as x (math); any
// other object (a code test spec) as its JSON text; a number as its JSON text.
std::string reference_text(const Json& reference) {
  if (reference.is_null()) return "";
  if (reference.is_string()) return reference.get<std::string>();
  if (reference.is_number()) return reference.dump();
  GRPO_CHECK(reference.is_object(), "\"reference\" must be a string or an object, got " << reference.type_name());
  if (reference.contains("answer")) {
    GRPO_CHECK(!reference.contains("tests") && !reference.contains("cases") && !reference.contains("test_code"),
               "\"reference\" has both \"answer\" (math) and tests (code); give one");
    const Json& answer = reference["answer"];
    GRPO_CHECK(answer.is_string() || answer.is_number(), "\"reference.answer\" must be a string or a number, got "
                                                              << answer.type_name());
    return answer.is_string() ? answer.get<std::string>() : answer.dump();
  }
  return reference.dump();
}

void parse_job(const std::string& text, const std::string& default_checker, Job& job) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::parse_error& e) {
    GRPO_THROW("not valid JSON: " << e.what());
  }
  GRPO_CHECK(j.is_object(), "expected a JSON object, got " << j.type_name());
  if (j.contains("id")) job.id = j["id"];
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (std::find(kLineKeys.begin(), kLineKeys.end(), it.key()) != kLineKeys.end()) continue;
    std::string hint = closest_match(it.key(), kLineKeys);
    GRPO_THROW("unknown key \"" << it.key() << "\"" << (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
  }
  auto text_field = [&](const char* key) {
    const Json& v = j[key];
    GRPO_CHECK(v.is_string(), "\"" << key << "\" must be a string, got " << v.type_name());
    return v.get<std::string>();
  };
  GRPO_CHECK(!(j.contains("checker") && j.contains("task")), "give \"checker\" or \"task\", not both");
  GRPO_CHECK(!(j.contains("completion") && j.contains("response")), "give \"completion\" or \"response\", not both");
  if (j.contains("checker")) job.checker = text_field("checker");
  else if (j.contains("task")) job.checker = text_field("task");
  else job.checker = default_checker;
  if (j.contains("completion")) job.request.completion = text_field("completion");
  else if (j.contains("response")) job.request.completion = text_field("response");
  else GRPO_THROW("missing \"completion\" (or \"response\")");
  if (j.contains("prompt")) job.request.prompt = text_field("prompt");
  if (j.contains("reference")) job.request.reference = reference_text(j["reference"]);
}

Json result_json(const Job& job, const rewards::ScoreResult& r, double elapsed_ms) {
  Json components = Json::object();
  for (const rewards::RewardComponent& c : r.components)
    components[c.name] = Json{{"value", c.value}, {"weight", c.weight}, {"reason", c.reason}};
  Json out = {{"id", job.id},         {"reward", r.reward},         {"reason", r.reason},
                     {"extracted", r.extracted}, {"components", components}, {"elapsed_ms", elapsed_ms}};
  if (!r.cases.empty()) {
    Json cases = Json::array();
    for (const rewards::CaseVerdict& c : r.cases)
      cases.push_back({{"passed", c.passed}, {"verdict", c.verdict}, {"detail", c.detail}, {"seconds", c.seconds}});
    out["cases"] = cases;
  }
  return out;
}

void score_job(RewardSet& set, Job& job) {
  if (job.error.empty()) {
    try {
      auto start = std::chrono::steady_clock::now();
      std::shared_ptr<rewards::RewardChecker> checker = set.get(job.checker);
      rewards::ScoreResult r = checker->score(job.request);
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      job.result = result_json(job, r, ms);
      return;
    } catch (const Error& e) {
      job.error = e.message();
    } catch (const std::exception& e) {
      job.error = e.what();
    }
  }
  job.result = Json{{"id", job.id}, {"line", job.line}, {"error", "line " + std::to_string(job.line) + ": " + job.error}};
}

int run_score(const ScoreArgs& args) {
  std::unique_ptr<Rewards> rewards = load_rewards(args.checkers);
  std::ifstream file;
  std::istream* in = &std::cin;
  if (args.input != "-") {
    file.open(args.input, std::ios::binary);
    GRPO_CHECK(file.good(), "--input " << args.input << ": cannot open file");
    in = &file;
  }
  std::ofstream out_file;
  std::ostream* out = &std::cout;
  if (!args.output.empty()) {
    out_file.open(args.output, std::ios::binary | std::ios::trunc);
    GRPO_CHECK(out_file.good(), "--output " << args.output << ": cannot open for writing");
    out = &out_file;
  }
  int threads = args.threads > 0 ? args.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  constexpr size_t kChunk = 256;  // lines scored concurrently, then written in order
  size_t line_number = 0, scored = 0, failed = 0;
  std::string first_error;
  std::string text;
  bool more = true;
  while (more) {
    std::vector<Job> jobs;
    while (jobs.size() < kChunk && (more = static_cast<bool>(std::getline(*in, text)))) {
      ++line_number;
      if (!text.empty() && text.back() == '\r') text.pop_back();
      if (text.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines carry nothing
      Job& job = jobs.emplace_back();
      job.line = line_number;
      job.request.id = line_number;
      try {
        parse_job(text, args.checker, job);
      } catch (const Error& e) {
        job.error = e.message();
      }
    }
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next.fetch_add(1)) < jobs.size();) score_job(*rewards->set, jobs[i]);
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < std::min<int>(threads, static_cast<int>(jobs.size())); ++t) pool.emplace_back(work);
    work();
    for (std::thread& t : pool) t.join();
    for (const Job& job : jobs) {
      *out << job.result.dump(-1, ' ', false, Json::error_handler_t::replace) << "\n";
      ++scored;
      if (!job.error.empty()) {
        if (failed++ == 0) first_error = "line " + std::to_string(job.line) + ": " + job.error;
      }
    }
    out->flush();
  }
  GRPO_CHECK(out->good(), (args.output.empty() ? std::string("stdout") : args.output) << ": write failed");
  GRPO_CHECK(failed == 0, args.input << ": " << failed << " of " << scored << " lines could not be scored (first: "
                                     << first_error << ")");
  return 0;
}

// ---- grpo reward list ------------------------------------------------------------------------

int run_list(const CheckerArgs& args) {
  std::unique_ptr<Rewards> rewards = load_rewards(args);
  Json list = Json::array();
  for (const RewardSet::Entry& e : rewards->set->list())
    list.push_back({{"name", e.name}, {"kind", e.kind}, {"description", e.description}});
  Json out = {{"default", rewards->set->default_checker()}, {"checkers", list}};
  std::cout << out.dump(2) << std::endl;
  return 0;
}

// ---- grpo reward serve -----------------------------------------------------------------------

#ifdef GRPO_WITH_SERVICES
struct ServeArgs {
  CheckerArgs checkers;
  rewards::RewardServerOptions server;
  std::string auth_token_file;
};


int run_serve(ServeArgs& args) {
  install_stop_handlers();
  if (!args.auth_token_file.empty()) args.server.auth_token = read_token_file(args.auth_token_file);
  std::unique_ptr<Rewards> rewards = load_rewards(args.checkers);
  rewards::RewardServer server(*rewards->set, args.server);
  // The first line of stdout is the contract with a parent process that launched us.
  std::printf("listening on %s\n", server.address().c_str());
  std::fflush(stdout);
  GRPO_LOG(info, "reward service on " << server.address() << " (" << server.handler().threads() << " scoring threads"
                                      << (args.server.auth_token.empty() ? ", no auth" : ", bearer token")
                                      << (args.server.tls_cert_file.empty() ? ", plaintext" : ", TLS") << ")");
  if (!server.metrics_address().empty())
    GRPO_LOG(info, "metrics on http://" << server.metrics_address() << "/metrics, health on /healthz");

  int received = wait_for_stop_signal();
  GRPO_LOG(info, "reward service: " << (received == SIGINT ? "SIGINT" : "SIGTERM")
                                    << ", finishing in-flight calls (again to stop at once)");
  server.shutdown();
  GRPO_LOG(info, "reward service stopped");
  return 0;
}
#endif

}  // namespace

void add_reward_commands(CLI::App& app, Runner& run) {
  CLI::App* reward = app.add_subcommand("reward", "Reward checkers: score offline, serve over gRPC, list");
  reward->require_subcommand(1);

  auto score_args = std::make_shared<ScoreArgs>();
  CLI::App* score = reward->add_subcommand("score", "Score a JSONL file of completions, one JSON line out per line in");
  score->add_option("--input", score_args->input,
                    "JSONL: {\"id\", \"checker\" or \"task\", \"prompt\", \"completion\" or \"response\", \"reference\"} "
                    "per line ('-' = stdin)")
      ->required();
  score->add_option("--output", score_args->output, "Write the results here instead of stdout");
  score->add_option("--checker", score_args->checker, "Checker or task for lines that name none");
  score->add_option("--threads", score_args->threads, "Lines scored at once (0: one per core)")->check(CLI::NonNegativeNumber);
  add_checker_options(score, score_args->checkers);
  score->callback([&run, score_args] { run = [score_args] { return run_score(*score_args); }; });

  auto list_args = std::make_shared<CheckerArgs>();
  CLI::App* list = reward->add_subcommand("list", "List the checkers and tasks available (JSON)");
  add_checker_options(list, *list_args);
  list->callback([&run, list_args] { run = [list_args] { return run_list(*list_args); }; });

#ifdef GRPO_WITH_SERVICES
  auto serve_args = std::make_shared<ServeArgs>();
  rewards::RewardServerOptions& o = serve_args->server;
  CLI::App* serve = reward->add_subcommand("serve", "Serve proto/reward.proto over gRPC; prints 'listening on HOST:PORT' first");
  serve->add_option("--listen", o.listen, "gRPC address HOST:PORT (port 0: pick a free port)")->capture_default_str();
  add_checker_options(serve, serve_args->checkers);
  serve->add_option("--auth-token-file", serve_args->auth_token_file, "Require 'authorization: Bearer <token in this file>'");
  serve->add_option("--max-message-bytes", o.max_message_bytes, "Cap on each request and response, bytes")
      ->check(CLI::Range(int64_t{1}, int64_t{INT32_MAX}))
      ->capture_default_str();
  serve->add_option("--metrics-listen", o.metrics_listen, "HTTP address HOST:PORT for /healthz and /metrics (off if unset)");
  serve->add_option("--threads", o.handler.threads, "Scoring threads (0: one per core)")->check(CLI::NonNegativeNumber);
  serve->add_option("--max-concurrency", o.handler.max_concurrency,
                    "Score calls worked on at once; more get RESOURCE_EXHAUSTED (retry later)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  serve->add_option("--tls-cert", o.tls_cert_file, "Serve TLS with this PEM certificate chain (with --tls-key)");
  serve->add_option("--tls-key", o.tls_key_file, "PEM private key of --tls-cert");
  serve->add_option("--shutdown-grace", o.shutdown_grace_s, "On SIGINT/SIGTERM, seconds in-flight calls get to finish")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  serve->callback([&run, serve_args] { run = [serve_args] { return run_serve(*serve_args); }; });
#endif
}

}  // namespace grpo::cli
