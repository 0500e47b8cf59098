// The code checker's reference: a JSON test spec, parsed strictly (the format is documented
// in rewards/code/code_checker.h), turned into one sandbox program per case, and the
// whitespace-tolerant stdout comparison of io-style cases.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::rewards {

enum class TestStyle { assert_style, io_style };

struct TestCase {
  std::string test;             // assert style: the test code appended to the program
  std::string input;            // io style: stdin
  std::string expected_output;  // io style: expected stdout
};

struct TestSpec {
  TestStyle style = TestStyle::assert_style;
  std::vector<TestCase> cases;
  std::string setup;        // assert style: code run before each case's test
  std::string entry_point;  // assert style: function under test ("" = none)
  std::optional<double> timeout_s;
  std::optional<int64_t> memory_mb;
};

// Throws grpo::Error naming the offending key for anything malformed.
TestSpec parse_test_spec(std::string_view json_text);

// The program run for case `index`: the candidate code, then the case's test (assert style),
// or the candidate code unchanged (io style).
std::string build_case_program(const TestSpec& spec, size_t index, const std::string& code);

// Whitespace-tolerant comparison of a program's stdout with the expected output. On a
// mismatch, `why` (when given) gets a short description of the first difference.
bool outputs_match(std::string_view expected, std::string_view got, std::string* why = nullptr);

}  // namespace grpo::rewards
