// The checkers every grpo program has: "math" (rewards/math), "code" (rewards/code) and
// "format" (rewards/format). The gRPC "remote" checker is registered separately
// (rewards/service/remote_checker.h) because this library builds without gRPC.
#pragma once

#include "rewards/registry.h"

namespace grpo::rewards {

void register_builtin_checkers(CheckerRegistry& registry);

}  // namespace grpo::rewards
