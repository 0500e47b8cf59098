#include "rewards/builtin.h"

#include "rewards/code/code_checker.h"
#include "rewards/format/format_checker.h"
#include "rewards/math/math_checker.h"

namespace grpo::rewards {

void register_builtin_checkers(CheckerRegistry& registry) {
  register_math_checkers(registry);
  register_code_checkers(registry);
  register_format_checker(registry);
}

}  // namespace grpo::rewards
