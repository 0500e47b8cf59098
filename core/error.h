// Errors: one exception type carrying file:line and a message that names what was wrong.
//
//   GRPO_CHECK(cond, "matmul: a is " << a.shape_str() << ", b is " << b.shape_str());
//
// throws grpo::Error when `cond` is false. Library code throws; the service and CLI
// boundaries catch and turn the message into a status or a one-line error and exit code.
// Use GRPO_CHECK for bad inputs a caller can cause and GRPO_ASSERT for broken internal
// invariants (same mechanism, message says "internal error").
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace grpo {

class Error : public std::runtime_error {
 public:
  Error(const std::string& message, const char* file, int line);
  explicit Error(const std::string& message);

  // The message without the file:line suffix, for user-facing output.
  const std::string& message() const { return message_; }
  const char* file() const { return file_; }
  int line() const { return line_; }

 private:
  std::string message_;
  const char* file_ = "";
  int line_ = 0;
};

[[noreturn]] void throw_error(const std::string& message, const char* file, int line);

}  // namespace grpo

#define GRPO_THROW(msg_stream)                                       \
  do {                                                               \
    std::ostringstream grpo_err_os_;                                 \
    grpo_err_os_ << msg_stream;                                      \
    ::grpo::throw_error(grpo_err_os_.str(), __FILE__, __LINE__);     \
  } while (0)

#define GRPO_CHECK(cond, msg_stream) \
  do {                               \
    if (!(cond)) [[unlikely]] {      \
      GRPO_THROW(msg_stream);        \
    }                                \
  } while (0)

#define GRPO_ASSERT(cond)                                                   \
  do {                                                                      \
    if (!(cond)) [[unlikely]] {                                             \
      GRPO_THROW("internal error: invariant `" #cond "` does not hold");   \
    }                                                                       \
  } while (0)
