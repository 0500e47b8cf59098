#include "rewards/plugin.h"

#include <dlfcn.h>

#include <filesystem>
#include <memory>
#include <system_error>

#include "core/error.h"

namespace grpo::rewards {

namespace {

constexpr const char* kSymbol = "grpo_register_reward_checkers";

std::string dl_error() {
  const char* e = dlerror();
  return e ? std::string(e) : std::string("unknown reason");
}

}  // namespace

std::vector<std::string> load_reward_plugin(const std::string& path, CheckerRegistry& registry) {
  namespace fs = std::filesystem;
  std::error_code ec;
  GRPO_CHECK(!path.empty(), "--plugin: empty path");
  GRPO_CHECK(fs::exists(path, ec), "reward plug-in " << path << ": no such file");
  GRPO_CHECK(fs::is_regular_file(path, ec), "reward plug-in " << path << ": not a regular file");
  // dlopen searches the library path for names without a slash; a user means this file.
  std::string absolute = fs::absolute(path, ec).string();
  if (ec) absolute = path;

  dlerror();
  void* handle = dlopen(absolute.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    std::string reason = dl_error();
    std::string hint;
    if (reason.find("undefined symbol") != std::string::npos)
      hint = " (a plug-in must be built against this grpo's headers and loaded by a program that exports grpo's "
             "symbols, like the `grpo` command)";
    GRPO_THROW("reward plug-in " << path << ": cannot load: " << reason << hint);
  }
  // From here on the library stays loaded even on error: dlclose after running its code could
  // leave dangling pointers to its functions in whatever it touched.
  dlerror();
  void* symbol = dlsym(handle, kSymbol);
  if (!symbol)
    GRPO_THROW("reward plug-in " << path << ": does not export " << kSymbol
                                 << " (declare it extern \"C\"; see rewards/registry.h)");
  auto register_fn = reinterpret_cast<grpo_register_reward_checkers_fn>(symbol);

  auto staging = std::make_shared<CheckerRegistry>();
  int rc = 0;
  try {
    rc = register_fn(staging.get());
  } catch (const Error& e) {
    GRPO_THROW("reward plug-in " << path << ": " << kSymbol << " failed: " << e.message());
  } catch (const std::exception& e) {
    GRPO_THROW("reward plug-in " << path << ": " << kSymbol << " failed: " << e.what());
  } catch (...) {
    GRPO_THROW("reward plug-in " << path << ": " << kSymbol << " threw an unknown exception");
  }
  GRPO_CHECK(rc == 0, "reward plug-in " << path << ": " << kSymbol << " returned " << rc << " (0 means success)");

  std::vector<std::string> names = staging->names();
  GRPO_CHECK(!names.empty(), "reward plug-in " << path << ": " << kSymbol << " registered no checker");
  for (const std::string& name : names)
    GRPO_CHECK(!registry.has(name), "reward plug-in " << path << ": checker \"" << name
                                                      << "\" is already registered (built in or by another plug-in)");
  for (const std::string& name : names)
    registry.add(name, staging->description(name),
                 [staging, name](ConfigNode& options) { return staging->create(name, options); });
  return names;
}

}  // namespace grpo::rewards
