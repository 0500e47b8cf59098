#include "rollout/service/convert.h"

namespace grpo::rollout {

SamplingOptions from_proto(const pb::SamplingParams& p) {
  SamplingOptions s;
  if (p.has_temperature()) s.temperature = p.temperature();
  s.top_k = p.top_k();
  if (p.has_top_p()) s.top_p = p.top_p();
  s.min_p = p.min_p();
  if (p.has_max_new_tokens()) s.max_new_tokens = p.max_new_tokens();
  s.stop_strings.assign(p.stop_strings().begin(), p.stop_strings().end());
  s.stop_token_ids.assign(p.stop_token_ids().begin(), p.stop_token_ids().end());
  if (p.has_n()) s.n = p.n();
  s.seed = p.seed();
  s.return_routing = p.return_routing();
  return s;
}

void to_proto(const SamplingOptions& s, pb::SamplingParams* out) {
  // Every field explicit: the server's defaults may not be this build's.
  out->set_temperature(s.temperature);
  out->set_top_k(s.top_k);
  out->set_top_p(s.top_p);
  out->set_min_p(s.min_p);
  out->set_max_new_tokens(s.max_new_tokens);
  for (const std::string& stop : s.stop_strings) out->add_stop_strings(stop);
  for (int32_t id : s.stop_token_ids) out->add_stop_token_ids(id);
  out->set_n(s.n);
  out->set_seed(s.seed);
  out->set_return_routing(s.return_routing);
}

pb::FinishReason to_proto(FinishReason r) {
  switch (r) {
    case FinishReason::stop: return pb::FINISH_REASON_STOP;
    case FinishReason::length: return pb::FINISH_REASON_LENGTH;
    case FinishReason::abort: return pb::FINISH_REASON_ABORT;
  }
  return pb::FINISH_REASON_UNSPECIFIED;
}

FinishReason from_proto(pb::FinishReason r) {
  switch (r) {
    case pb::FINISH_REASON_STOP: return FinishReason::stop;
    case pb::FINISH_REASON_LENGTH: return FinishReason::length;
    default: return FinishReason::abort;
  }
}

void to_proto(const Sample& s, int64_t routing_layers, int64_t routing_top_k, const std::string& text,
              pb::Sample* out) {
  out->mutable_token_ids()->Add(s.tokens.begin(), s.tokens.end());
  out->mutable_logprobs()->Add(s.logprobs.begin(), s.logprobs.end());
  out->set_finish_reason(to_proto(s.finish));
  out->set_version(s.version);
  if (!s.routing.empty() && routing_layers > 0 && routing_top_k > 0) {
    out->mutable_routing()->Add(s.routing.begin(), s.routing.end());
    out->add_routing_shape(static_cast<int64_t>(s.routing.size()) / (routing_layers * routing_top_k));
    out->add_routing_shape(routing_layers);
    out->add_routing_shape(routing_top_k);
  }
  out->set_text(text);
}

Sample from_proto(const pb::Sample& s) {
  Sample out;
  out.tokens.assign(s.token_ids().begin(), s.token_ids().end());
  out.logprobs.assign(s.logprobs().begin(), s.logprobs().end());
  out.finish = from_proto(s.finish_reason());
  out.version = s.version();
  out.routing.assign(s.routing().begin(), s.routing().end());
  return out;
}

}  // namespace grpo::rollout
