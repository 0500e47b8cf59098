// JSON pieces shared by the benchmarks' reports.
#pragma once

#include <nlohmann/json.hpp>

#include "policy/model_config.h"

namespace grpo {

// The shape of a model config (type, sizes, experts) as the benchmarks report it.
nlohmann::ordered_json model_config_json(const ModelConfig& cfg);

}  // namespace grpo
