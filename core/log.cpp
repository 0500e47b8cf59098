#include "core/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace grpo {

namespace {
LogLevel level_from_env() {
  const char* s = std::getenv("GRPO_LOG");
  if (!s) return LogLevel::info;
  if (!std::strcmp(s, "debug")) return LogLevel::debug;
  if (!std::strcmp(s, "warn")) return LogLevel::warn;
  if (!std::strcmp(s, "error")) return LogLevel::error;
  return LogLevel::info;
}
std::atomic<int>& level_ref() {
  static std::atomic<int> level{int(level_from_env())};
  return level;
}
}  // namespace

void set_log_level(LogLevel level) { level_ref() = int(level); }
LogLevel log_level() { return LogLevel(level_ref().load()); }

void log_write(LogLevel level, const std::string& message) {
  static std::mutex mu;
  static const char* names[] = {"debug", "info", "warn", "error"};
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "[grpo %s] %s\n", names[int(level)], message.c_str());
}

}  // namespace grpo
