// Between the engine's plain C++ types (rollout/engine.h) and proto/rollout.proto, for the
// server and the client. Includes the generated header: include this only from .cpp files.
#pragma once

#include <string>

#include "proto/rollout.pb.h"
#include "rollout/engine.h"

namespace grpo::rollout {

namespace pb = ::grpo::rollout::v1;

// Unset optional fields take SamplingOptions' defaults; no range checks here (the engine's
// validate() does them, so the messages are the same in process and over the wire).
SamplingOptions from_proto(const pb::SamplingParams& p);
void to_proto(const SamplingOptions& s, pb::SamplingParams* out);

pb::FinishReason to_proto(FinishReason r);
// FINISH_REASON_UNSPECIFIED (an older or foreign server) reads as abort: the sample is not
// known to be whole.
FinishReason from_proto(pb::FinishReason r);

// `routing_shape` is [tokens, num_moe_layers, experts_per_token] (0 layers: none); `text` the
// decoded completion or "".
void to_proto(const Sample& s, int64_t routing_layers, int64_t routing_top_k, const std::string& text,
              pb::Sample* out);
Sample from_proto(const pb::Sample& s);

}  // namespace grpo::rollout
