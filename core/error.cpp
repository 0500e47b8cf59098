#include "core/error.h"

#include <cstring>

namespace grpo {

namespace {
const char* base_name(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}
std::string with_location(const std::string& message, const char* file, int line) {
  return message + " [" + base_name(file) + ":" + std::to_string(line) + "]";
}
}  // namespace

Error::Error(const std::string& message, const char* file, int line)
    : std::runtime_error(with_location(message, file, line)),
      message_(message),
      file_(file),
      line_(line) {}

Error::Error(const std::string& message) : std::runtime_error(message), message_(message) {}

void throw_error(const std::string& message, const char* file, int line) {
  throw Error(message, file, line);
}

}  // namespace grpo
