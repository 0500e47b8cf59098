// The "code" reward checker: extracts the model's last Python code block, runs it against a
// test spec inside a bubblewrap sandbox (rewards/code/sandbox.h) and scores the verdicts.
//
// ---- extraction (rewards/code/code_extract.h) -------------------------------------------
// The last *closed* fenced block (``` or longer, up to 3 spaces of indent) whose info string
// names the configured language (python: "python", "py", "python3", any case) is the answer.
// When there is none, the last closed block with an empty info string ("bare" fence) is used
// (option "bare_fence": false turns this fallback off). Blocks tagged with another language and
// an unclosed block (a completion cut off mid-block) are ignored. No block, or an empty one:
// reward 0, reason "no_code".
//
// ---- reference: a JSON test spec (rewards/code/test_spec.h) ------------------------------
//   assert style (HumanEval / MBPP):
//     {"style": "assert",                       // optional: inferred from "tests"/"test_code"
//      "tests": ["assert f(1) == 2", ...],      // each string is one independent case
//      "test_code": "def check(candidate): ...",// or: one case holding the whole test program
//      "setup": "import math",                  // optional, runs before each case's test
//      "entry_point": "f"}                      // optional function under test
//     Each case runs `<code>\n<setup>\n<test>` as one program; with "entry_point" the name
//     must be defined (NameError otherwise) and, when the test defines `check`, the program
//     ends with `check(<entry_point>)` (HumanEval convention). Exit 0 is a pass; an
//     AssertionError is "wrong_answer"; any other failure "runtime_error" (or "memory" for a
//     MemoryError).
//   io style (competitive programming):
//     {"style": "io",                           // optional: inferred from "cases"
//      "cases": [{"input": "1 2\n", "output": "3\n"}, ...]}
//     The program reads `input` (optional, default empty) on stdin; exit 0 and matching stdout
//     is a pass, exit 0 and other output "wrong_answer". The comparison is whitespace
//     tolerant: \r\n counts as \n, trailing blank lines are ignored, then the output must have
//     the same number of lines as expected and each line the same tokens (split on any run of
//     spaces/tabs; so leading, trailing and repeated spaces never matter, line breaks do).
//   Both styles accept "timeout_s" (wall clock per case) and "memory_mb" (address space) to
//   override the checker's defaults, clamped to "max_timeout_s" / "max_memory_mb".
//   Unknown keys, a wrong type, no cases or mixing styles is a malformed spec: score() throws
//   grpo::Error (the caller's mistake, never the model's).
//
// ---- verdicts and reward ------------------------------------------------------------------
// Per case (ScoreResult.cases, in spec order): "pass", "wrong_answer", "runtime_error",
// "timeout" (wall clock or CPU limit), "memory" (MemoryError / allocation failure),
// "output_limit" (stdout or stderr over the cap, or the file-size limit), "sandbox_error"
// (the sandbox itself failed to start this case).
// reward = 1 if every case passes else 0 (option reward "all_pass"), or the fraction of cases
// passed ("fraction"). ScoreResult.reason: "correct" when all cases pass, "no_code",
// "sandbox_unavailable", or else the first failing case's verdict ("wrong" for wrong_answer,
// otherwise the verdict itself: "runtime_error", "timeout", "memory", "output_limit",
// "sandbox_error"). One component named "code" carries the reward. `extracted` is the code
// block (capped at 16 KiB).
//
// ---- options (strict; all optional) --------------------------------------------------------
//   language        "python"            the only language so far (Python 3)
//   python          "/usr/bin/python3"  interpreter inside the sandbox; must live under /usr
//                                        (the only host directory bound into the sandbox)
//   bwrap           "/usr/bin/bwrap"    bubblewrap binary (>= 0.8)
//   reward          "all_pass"          or "fraction"
//   bare_fence      true                accept a ``` block without a language tag
//   timeout_s       5                   wall-clock limit per case (seconds)
//   memory_mb       512                 address-space limit per process (RLIMIT_AS)
//   max_timeout_s   60                  cap on a spec's "timeout_s"
//   max_memory_mb   4096                cap on a spec's "memory_mb"
//   max_processes   32                  processes/threads per sandbox (RLIMIT_NPROC)
//   max_output_kb   1024                cap on each of stdout and stderr; over it: killed
//   max_file_mb     16                  largest file the program may write (RLIMIT_FSIZE)
//   tmp_mb          64                  size of the sandbox's writable tmpfs (/tmp)
//   max_open_files  64                  RLIMIT_NOFILE
//   max_parallel    2                   sandboxes running at once (per checker)
//   uid_base        1000000000          when running as root: first host uid of the range
//                                        the sandboxes run as (one uid per running sandbox)
//
// If bubblewrap cannot build a sandbox on this machine (checked once at creation by running
// `print('sandbox-ok')` in a full sandbox), creation logs why and the checker never runs code:
// every score() returns reward 0 with reason "sandbox_unavailable" and bwrap's message in each
// case's detail. There is no unsandboxed fallback.
#pragma once

#include <memory>
#include <string>

#include "rewards/checker.h"
#include "rewards/registry.h"

namespace grpo {
class ConfigNode;
}

namespace grpo::rewards {

class Sandbox;
struct CodeCheckerOptions;

class CodeChecker : public RewardChecker {
 public:
  // Reads the options above from `options` (strict keys are checked by the registry).
  explicit CodeChecker(ConfigNode& options);
  ~CodeChecker() override;

  std::string name() const override { return "code"; }
  ScoreResult score(const ScoreRequest& request) override;

  // False when the sandbox self-test failed; `unavailable_reason()` says why.
  bool sandbox_available() const;
  std::string unavailable_reason() const;

 private:
  std::unique_ptr<CodeCheckerOptions> options_;
  std::unique_ptr<Sandbox> sandbox_;
};

// Registers the checker "code".
void register_code_checkers(CheckerRegistry& registry);

}  // namespace grpo::rewards
