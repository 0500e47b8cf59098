#include "rewards/code/code_checker.h"

#include <signal.h>

#include <algorithm>
#include <cctype>
#include <future>
#include <optional>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "rewards/code/code_extract.h"
#include "rewards/code/sandbox.h"
#include "rewards/code/test_spec.h"

namespace grpo::rewards {

struct CodeCheckerOptions {
  CodeExtractOptions extract;
  bool fraction = false;
  double max_timeout_s = 60;
  int64_t max_memory_mb = 4096;
};

namespace {

constexpr size_t kMaxExtracted = 16 << 10;
constexpr size_t kMaxDetail = 300;

std::string tail(std::string_view s, size_t max_chars = kMaxDetail) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.remove_suffix(1);
  if (s.size() <= max_chars) return std::string(s);
  return "..." + std::string(s.substr(s.size() - max_chars));
}

std::string_view last_line(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.remove_suffix(1);
  size_t nl = s.rfind('\n');
  return nl == std::string_view::npos ? s : s.substr(nl + 1);
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
}

CaseVerdict classify(const TestSpec& spec, size_t index, const SandboxResult& r, int64_t output_kb) {
  CaseVerdict v;
  v.seconds = r.seconds;
  auto set = [&](const char* verdict, std::string detail) {
    v.passed = std::string_view(verdict) == "pass";
    v.verdict = verdict;
    v.detail = detail.size() > kMaxDetail + 40 ? detail.substr(0, kMaxDetail + 40) + "..." : std::move(detail);
    return v;
  };
  switch (r.status) {
    case SandboxStatus::sandbox_error:
      return set("sandbox_error", r.error);
    case SandboxStatus::timeout:
      return set("timeout", r.cpu_limit ? "killed at the CPU-time limit" : "killed at the wall-clock limit");
    case SandboxStatus::output_limit:
      return set("output_limit", "stdout or stderr over " + std::to_string(output_kb) + " KiB; killed");
    case SandboxStatus::exited:
      break;
  }
  const int code = r.exit_code;
  if (code == 128 + SIGXFSZ) return set("output_limit", "file size limit");
  if (code != 0) {
    std::string_view last = last_line(r.stderr_data);
    if (starts_with(last, "MemoryError") || last.find("Cannot allocate memory") != std::string_view::npos ||
        last.find("std::bad_alloc") != std::string_view::npos)
      return set("memory", tail(r.stderr_data));
    if (spec.style == TestStyle::assert_style && starts_with(last, "AssertionError"))
      return set("wrong_answer", tail(r.stderr_data));
    std::string detail = tail(r.stderr_data);
    return set("runtime_error", detail.empty() ? "exit code " + std::to_string(code) : detail);
  }
  if (spec.style == TestStyle::assert_style) return set("pass", "");
  std::string why;
  if (outputs_match(spec.cases[index].expected_output, r.stdout_data, &why)) return set("pass", "");
  return set("wrong_answer", why);
}

std::string reason_of(const std::vector<CaseVerdict>& cases) {
  for (const CaseVerdict& c : cases)
    if (!c.passed) return c.verdict == "wrong_answer" ? "wrong" : c.verdict;
  return "correct";
}

}  // namespace

CodeChecker::CodeChecker(ConfigNode& options) : options_(std::make_unique<CodeCheckerOptions>()) {
  CodeCheckerOptions& o = *options_;
  std::string language = options.get_choice("language", "python", {"python"});
  o.extract.tags = code_fence_tags(language);
  o.extract.bare_fence = options.get<bool>("bare_fence", true);
  o.fraction = options.get_choice("reward", "all_pass", {"all_pass", "fraction"}) == "fraction";

  SandboxConfig sc;
  sc.python = options.get<std::string>("python", sc.python);
  sc.bwrap = options.get<std::string>("bwrap", sc.bwrap);
  SandboxLimits& l = sc.limits;
  l.timeout_s = options.get<double>("timeout_s", l.timeout_s);
  l.memory_mb = options.get<int64_t>("memory_mb", l.memory_mb);
  o.max_timeout_s = options.get<double>("max_timeout_s", o.max_timeout_s);
  o.max_memory_mb = options.get<int64_t>("max_memory_mb", o.max_memory_mb);
  l.max_processes = options.get<int64_t>("max_processes", l.max_processes);
  l.max_output_kb = options.get<int64_t>("max_output_kb", l.max_output_kb);
  l.max_file_mb = options.get<int64_t>("max_file_mb", l.max_file_mb);
  l.tmp_mb = options.get<int64_t>("tmp_mb", l.tmp_mb);
  l.max_open_files = options.get<int64_t>("max_open_files", l.max_open_files);
  int64_t max_parallel = options.get<int64_t>("max_parallel", 2);
  int64_t uid_base = options.get<int64_t>("uid_base", sc.uid_base);
  GRPO_CHECK(max_parallel >= 1 && max_parallel <= 256, options.key_path("max_parallel")
                                                           << ": must be in [1, 256], got " << max_parallel);
  GRPO_CHECK(uid_base >= 65536 && uid_base < (int64_t(1) << 32),
             options.key_path("uid_base") << ": must be a uid in [65536, 2^32), got " << uid_base);
  GRPO_CHECK(o.max_timeout_s >= l.timeout_s, options.key_path("max_timeout_s")
                                                 << ": must be at least timeout_s (" << l.timeout_s << "), got "
                                                 << o.max_timeout_s);
  GRPO_CHECK(o.max_memory_mb >= l.memory_mb, options.key_path("max_memory_mb")
                                                 << ": must be at least memory_mb (" << l.memory_mb << "), got "
                                                 << o.max_memory_mb);
  sc.max_parallel = size_t(max_parallel);
  sc.uid_base = uint32_t(uid_base);
  sandbox_ = std::make_unique<Sandbox>(std::move(sc));
}

CodeChecker::~CodeChecker() = default;

bool CodeChecker::sandbox_available() const { return sandbox_->available(); }
std::string CodeChecker::unavailable_reason() const { return sandbox_->unavailable_reason(); }

ScoreResult CodeChecker::score(const ScoreRequest& request) {
  ScoreResult result;
  result.id = request.id;
  auto done = [&](double value, const std::string& reason) {
    result.reward = value;
    result.reason = reason;
    result.components = {RewardComponent{"code", value, 1.0, reason}};
    return result;
  };

  TestSpec spec = parse_test_spec(request.reference);  // a malformed spec is the caller's error
  std::optional<std::string> code = extract_code_block(request.completion, options_->extract);
  if (!code || is_blank(*code)) return done(0, "no_code");
  result.extracted = code->size() > kMaxExtracted ? code->substr(0, kMaxExtracted) : *code;

  if (!sandbox_->available()) {
    for (size_t i = 0; i < spec.cases.size(); ++i)
      result.cases.push_back(CaseVerdict{false, "sandbox_error", sandbox_->unavailable_reason(), 0});
    return done(0, "sandbox_unavailable");
  }

  const SandboxLimits& limits = sandbox_->config().limits;
  double timeout_s = spec.timeout_s ? std::min(*spec.timeout_s, options_->max_timeout_s) : limits.timeout_s;
  int64_t memory_mb = spec.memory_mb ? std::min(*spec.memory_mb, options_->max_memory_mb) : limits.memory_mb;

  std::vector<std::future<SandboxResult>> pending;
  for (size_t i = 0; i < spec.cases.size(); ++i) {
    SandboxJob job;
    job.program = build_case_program(spec, i, *code);
    job.stdin_data = spec.cases[i].input;
    job.timeout_s = timeout_s;
    job.memory_mb = memory_mb;
    auto promise = std::make_shared<std::promise<SandboxResult>>();
    pending.push_back(promise->get_future());
    sandbox_->run_async(std::move(job), [promise](SandboxResult r) { promise->set_value(std::move(r)); });
  }
  size_t passed = 0;
  for (size_t i = 0; i < pending.size(); ++i) {
    result.cases.push_back(classify(spec, i, pending[i].get(), limits.max_output_kb));
    passed += result.cases.back().passed ? 1 : 0;
  }
  double value =
      options_->fraction ? double(passed) / double(result.cases.size()) : (passed == result.cases.size() ? 1.0 : 0.0);
  return done(value, reason_of(result.cases));
}

void register_code_checkers(CheckerRegistry& registry) {
  registry.add(
      "code",
      "runs the completion's last Python code block against assert or stdin/stdout tests in a "
      "bubblewrap sandbox (rewards/code/code_checker.h)",
      [](ConfigNode& options) -> std::unique_ptr<RewardChecker> { return std::make_unique<CodeChecker>(options); });
}

}  // namespace grpo::rewards
