// Between the service's plain C++ types (rewards/service/batch.h) and proto/reward.proto.
// Includes the generated header: include this only from .cpp files of the service.
#pragma once

#include <string>
#include <string_view>

#include "proto/reward.pb.h"
#include "rewards/format/utf8.h"
#include "rewards/service/batch.h"

namespace grpo::rewards {

namespace pb = ::grpo::reward::v1;

// Strings are made valid UTF-8 on the way out (valid_utf8, rewards/format/utf8.h): proto3
// strings must be UTF-8, model output need not be.
void to_proto(const ScoreItem& item, pb::ScoreItem* out);
ScoreItem from_proto(const pb::ScoreItem& item);
void to_proto(const ScoredItem& item, pb::ScoreResult* out);
ScoredItem from_proto(const pb::ScoreResult& result);

}  // namespace grpo::rewards
