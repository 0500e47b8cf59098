// Built-in datasets, generated deterministically from (seed, index), with their reward
// checkers and SFT traces (issue #7).
//
//   arithmetic  "Compute 12 + 7 * 3." -> 33. Integer expressions over + - * and exact division
//               (every division leaves no remainder, so every answer and intermediate is an
//               integer); difficulty levels 1..6 (table below).
//   countdown   TinyZero's task: "Using the numbers [19, 36, 55, 7], create an equation that
//               equals 65. ..." Instances are solvable by construction: a random expression over
//               the numbers (divisions exact) is built and its value becomes the target.
//
// Item i of a dataset depends only on (seed, i, options): Philox stream `i` under key `seed`
// (arithmetic starts at block level * 2^32, so the levels of one index are unrelated),
// so any slice can be generated without the items before it, and an index range [a, b) is a
// split (train = [0, 10000), test = [10000, 10500) under one seed never overlap).
//
// Checkers (registered by register_dataset_checkers, reward 1 or 0, one component named
// after the checker):
//   "arithmetic"  the answer is the text between the last "</answer>" and the last "<answer>"
//                 before it; it must be an integer ([+-]digits, surrounding whitespace ignored) and is
//                 compared exactly (any length, leading zeros ignored). No tag means
//                 "no_answer": like R1-Zero we reward the answer tag only, never a guess at
//                 the last number in the text (which rewards listing numbers).
//                 Reference: the integer as text. Options: none.
//                 Reasons: correct, wrong, no_answer, unparsable.
//   "countdown"   the answer tag holds an equation's left side: numbers, + - * / ( ), unary
//                 minus and whitespace only (no "=", no decimals); every given number used
//                 exactly once (as a multiset); evaluated exactly over rationals (so (3/4)*8 is
//                 6) and compared with the target.
//                 Reference: JSON {"numbers": [n, ...], "target": t}, 1 to 64 numbers >= 0,
//                 no other keys.
//                 Options: {"max_answer_chars": 1000} (longer answers are "unparsable").
//                 Reasons: correct, wrong (valid equation, other value), no_answer, unparsable
//                 (other characters, bad syntax, nesting deeper than 100, a literal beyond
//                 int64, too long), wrong_numbers, division_by_zero, overflow (an
//                 intermediate beyond int64 numerator/denominator), decided in that order
//                 of checks: tag, text, numbers, value.
// Both never throw for model output; a malformed reference is a grpo::Error.
//
// SFT traces are completions "<think>\n...\n</think>\n<answer>...</answer>": arithmetic shows
// one reduction per line in evaluation order (brackets, then * and / left to right, then + and
// -); countdown shows the steps of a solution found by exhaustive search.
//
// JSONL: one object per line,
//   {"id": i, "checker": "arithmetic", "prompt": "Compute 12 + 7 * 3.", "reference": "33",
//    "level": 2, "completion": "<think>..."}
//   {"id": i, "checker": "countdown", "prompt": "Using the numbers ...",
//    "reference": "{\"numbers\":[19,36,55,7],\"target\":65}", "completion": "<think>..."}
// "prompt" is the task text only: rendering it into the model's template (r1_zero, chatml, a
// system message asking for <think>/<answer> tags) is the trainer's job (policy/prompt_format.h).
// "reference" is the checker's reference text (a string). "completion" (the SFT trace) is
// written only when asked for; "level" only for arithmetic.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rewards/checker.h"
#include "rewards/registry.h"

namespace grpo {

class ConfigNode;

// ---- Expression trees, shared by the generators, the traces and the checkers.

struct ExprNode {
  char op = 0;        // '+', '-', '*', '/', 'n' (unary minus, child in left), 0 for a number
  int64_t value = 0;  // the number (op == 0)
  int32_t left = -1, right = -1;
};

struct Expression {
  std::vector<ExprNode> nodes;
  int32_t root = -1;

  int32_t add_number(int64_t value);
  int32_t add_op(char op, int32_t left, int32_t right = -1);
  // With the fewest brackets that keep the tree (a right operand of equal precedence is
  // bracketed: "a - (b + c)", "a / (b * c)"); negative numbers in brackets unless alone.
  std::string str() const;
  // The numbers in the order they were added: left to right for parsed and generated trees.
  std::vector<int64_t> numbers() const;
};

enum class ExprError { none, bad_char, syntax, too_deep, number_too_large };
const char* expr_error_name(ExprError e);

struct ExprParse {
  Expression expr;
  ExprError error = ExprError::none;
};

// Parses numbers (decimal digits), + - * / with the usual precedence (left-associative),
// brackets, unary minus and ASCII whitespace. Never throws; nesting deeper than max_depth is
// too_deep (the parser recurses, so this bounds its stack).
ExprParse parse_expression(std::string_view text, int max_depth = 100);

// ---- arithmetic

struct ArithmeticLevel {
  int num_operands;     // operands in the expression
  int64_t max_operand;  // operands are in [1, max_operand]
  bool brackets;        // random tree shapes (brackets where needed) or a flat chain
};
// level  operands  range     shape
//   1       2      1..20     a op b
//   2       3      1..20     flat chain, precedence matters
//   3       4      1..50     random tree (brackets)
//   4       5      1..100    random tree
//   5       6      1..200    random tree
//   6       8      1..1000   random tree
// Every intermediate value is within +-10^6.
constexpr int kArithmeticMaxLevel = 6;
const ArithmeticLevel& arithmetic_level(int level);  // throws outside 1..kArithmeticMaxLevel

struct ArithmeticItem {
  std::string expression;  // "12 + 7 * 3"
  std::string prompt;      // "Compute 12 + 7 * 3."
  int64_t answer = 0;
  int level = 1;
};

// max_operand > 0 replaces the level's operand range [1, max_operand] (easier or harder
// variants of a level's shape; >= 4 so that exact divisions exist).
ArithmeticItem arithmetic_item(uint64_t seed, uint64_t index, int level, int64_t max_operand = 0);

// The SFT completion of an expression (parsed with parse_expression; must evaluate with exact
// divisions only, else grpo::Error).
std::string arithmetic_trace(std::string_view expression);

// ---- countdown

struct CountdownOptions {
  int min_numbers = 3, max_numbers = 4;  // count drawn uniformly; 2 <= min <= max <= 5
  int64_t max_number = 99;               // numbers in [1, max_number], repeats allowed
  int64_t max_target = 100;              // targets in [1, max_target]
};

struct CountdownItem {
  std::vector<int64_t> numbers;  // in the order shown
  int64_t target = 0;
  std::string prompt;
  std::string solution;          // the expression the target was built from
  std::string reference() const;  // {"numbers":[...],"target":N}
};

// Throws for options out of range.
CountdownItem countdown_item(uint64_t seed, uint64_t index, const CountdownOptions& options = {});

// A solution by exhaustive search over integer intermediates (combine two numbers, repeat),
// first with nonnegative intermediates only, then with any: an expression using each number
// once that equals target, or nullopt. At most 5 numbers.
std::optional<Expression> countdown_solve(const std::vector<int64_t>& numbers, int64_t target);

// The SFT completion: the solver's steps, then the equation. Throws if unsolvable.
std::string countdown_trace(const std::vector<int64_t>& numbers, int64_t target);

// ---- JSONL

struct DatasetSpec {
  std::string name = "arithmetic";  // arithmetic | countdown
  uint64_t seed = 0;
  uint64_t first_index = 0;         // items first_index .. first_index + count - 1
  int64_t count = 1000;
  int min_level = 1, max_level = 3;  // arithmetic: item i has level min + i % (max - min + 1)
  int64_t max_operand = 0;          // arithmetic: operands in [1, max_operand] (0: the level's range)
  CountdownOptions countdown;
  bool completions = false;         // add the SFT traces
};

// Reads {"name", "seed", "first_index", "count", "min_level", "max_level", "max_operand", "min_numbers",
// "max_numbers", "max_number", "max_target", "completions"} strictly (countdown keys only for
// countdown, levels only for arithmetic).
DatasetSpec parse_dataset_spec(ConfigNode& node);

struct DatasetRecord {
  uint64_t id = 0;
  std::string checker;     // "arithmetic" | "countdown" (or any registered checker when read)
  std::string prompt;
  std::string reference;
  std::string completion;  // "" when absent
  int level = 0;           // arithmetic only; 0 when absent
};

std::vector<DatasetRecord> generate_dataset(const DatasetSpec& spec);
// Writes PATH.tmp and renames it over PATH, so a failed write leaves no half file.
void write_dataset_jsonl(const std::string& path, const std::vector<DatasetRecord>& records);
// Strict: unknown keys, missing "prompt" and wrong types are errors naming FILE:LINE; blank
// lines are skipped; an object "reference" is kept as its JSON text.
std::vector<DatasetRecord> read_dataset_jsonl(const std::string& path);

// The order of epoch `epoch` over n items: Fisher-Yates over Philox stream `epoch` under key
// `seed` (SFT batches and `grpo train` prompts).
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch);

// ---- checkers (dataset_checkers.cpp)

std::unique_ptr<rewards::RewardChecker> make_arithmetic_checker();
std::unique_ptr<rewards::RewardChecker> make_countdown_checker(size_t max_answer_chars = 1000);
// Registers "arithmetic" and "countdown".
void register_dataset_checkers(rewards::CheckerRegistry& registry);

}  // namespace grpo
