// Minimal leveled logging to stderr. The level comes from GRPO_LOG (debug, info, warn,
// error; default info) or set_log_level().
#pragma once

#include <sstream>
#include <string>

namespace grpo {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_write(LogLevel level, const std::string& message);

}  // namespace grpo

#define GRPO_LOG(level, msg_stream)                                                \
  do {                                                                             \
    if (::grpo::LogLevel::level >= ::grpo::log_level()) {                          \
      std::ostringstream grpo_log_os_;                                             \
      grpo_log_os_ << msg_stream;                                                  \
      ::grpo::log_write(::grpo::LogLevel::level, grpo_log_os_.str());              \
    }                                                                              \
  } while (0)
