// Reward checker plug-ins: shared libraries that add checkers to a CheckerRegistry.
//
// A plug-in exports (see rewards/registry.h and examples/custom_reward/)
//   extern "C" int grpo_register_reward_checkers(grpo::rewards::CheckerRegistry* registry);
// which calls registry->add(...) for each checker and returns 0. It is compiled against the
// same grpo.cpp headers, compiler and C++ standard library as the program that loads it, and
// leaves grpo's own symbols (CheckerRegistry::add, ConfigNode, grpo::Error) undefined: the
// `grpo` executable exports them (it is linked with -rdynamic), so a plug-in needs only the
// headers to build.
#pragma once

#include <string>
#include <vector>

#include "rewards/registry.h"

namespace grpo::rewards {

// Loads `path` with dlopen(RTLD_NOW | RTLD_LOCAL), calls its registration function on a
// staging registry and then adds every checker it registered to `registry`; returns their
// names. All or nothing: on any error no checker is added. Throws grpo::Error naming the file
// for: a missing file, a library that does not load (dlerror's reason), a missing
// grpo_register_reward_checkers symbol, a non-zero return or an exception from it, a plug-in
// that registers nothing, and a checker name that is already registered.
// A loaded library is never unloaded: its checkers may live as long as the process.
std::vector<std::string> load_reward_plugin(const std::string& path, CheckerRegistry& registry);

}  // namespace grpo::rewards
