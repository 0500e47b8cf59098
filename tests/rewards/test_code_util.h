// Helpers shared by the code checker tests: a checker with small limits and completions.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "core/config.h"
#include "rewards/code/code_checker.h"

namespace grpo::rewards::test {

// Small limits so the attack tests stay fast: 2 s per case, 256 MB, 32 processes, 256 KiB of
// output. `extra` is more JSON members ("\"reward\": \"fraction\"").
inline std::unique_ptr<CodeChecker> make_code_checker(const std::string& extra = "") {
  std::string json = R"({"timeout_s": 2, "memory_mb": 256, "max_processes": 32, "max_output_kb": 256,
                         "max_parallel": 2)" +
                     (extra.empty() ? "" : ", " + extra) + "}";
  ConfigNode options = ConfigNode::from_string(json, "test options");
  auto checker = std::make_unique<CodeChecker>(options);
  options.finish();
  return checker;
}

// Fails the test unless the sandbox works here; GRPO_TEST_ALLOW_NO_SANDBOX=1 turns that into a
// skip for machines whose kernel refuses user namespaces.
#define GRPO_REQUIRE_SANDBOX(checker)                                                                \
  do {                                                                                               \
    if (!(checker).sandbox_available()) {                                                            \
      if (std::getenv("GRPO_TEST_ALLOW_NO_SANDBOX")) GTEST_SKIP() << (checker).unavailable_reason(); \
      FAIL() << "sandbox unavailable: " << (checker).unavailable_reason();                           \
    }                                                                                                \
  } while (0)

inline std::string python_block(const std::string& code) {
  return "Here is my solution.\n\n```python\n" + code + "\n```\n";
}

inline ScoreRequest request(const std::string& code, const std::string& reference) {
  ScoreRequest r;
  r.completion = python_block(code);
  r.reference = reference;
  return r;
}

}  // namespace grpo::rewards::test
