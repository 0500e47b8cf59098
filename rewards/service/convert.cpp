#include "rewards/service/convert.h"

#include "rewards/format/utf8.h"

namespace grpo::rewards {

void to_proto(const ScoreItem& item, pb::ScoreItem* out) {
  out->set_id(item.request.id);
  out->set_checker(valid_utf8(item.checker));
  out->set_prompt(valid_utf8(item.request.prompt));
  out->set_completion(valid_utf8(item.request.completion));
  out->set_reference(valid_utf8(item.request.reference));
}

ScoreItem from_proto(const pb::ScoreItem& item) {
  ScoreItem out;
  out.checker = item.checker();
  out.request.id = item.id();
  out.request.prompt = item.prompt();
  out.request.completion = item.completion();
  out.request.reference = item.reference();
  return out;
}

void to_proto(const ScoredItem& item, pb::ScoreResult* out) {
  const ScoreResult& r = item.result;
  out->set_id(r.id);
  out->set_reward(r.reward);
  out->set_reason(valid_utf8(r.reason));
  out->set_extracted(valid_utf8(r.extracted));
  for (const RewardComponent& c : r.components) {
    pb::RewardComponent* pc = out->add_components();
    pc->set_name(valid_utf8(c.name));
    pc->set_value(c.value);
    pc->set_weight(c.weight);
    pc->set_reason(valid_utf8(c.reason));
  }
  for (const CaseVerdict& c : r.cases) {
    pb::CaseVerdict* pc = out->add_cases();
    pc->set_passed(c.passed);
    pc->set_verdict(valid_utf8(c.verdict));
    pc->set_detail(valid_utf8(c.detail));
    pc->set_seconds(c.seconds);
  }
  out->set_elapsed_ms(item.elapsed_ms);
}

ScoredItem from_proto(const pb::ScoreResult& result) {
  ScoredItem out;
  ScoreResult& r = out.result;
  r.id = result.id();
  r.reward = result.reward();
  r.reason = result.reason();
  r.extracted = result.extracted();
  for (const pb::RewardComponent& c : result.components())
    r.components.push_back(RewardComponent{c.name(), c.value(), c.weight(), c.reason()});
  for (const pb::CaseVerdict& c : result.cases())
    r.cases.push_back(CaseVerdict{c.passed(), c.verdict(), c.detail(), c.seconds()});
  out.elapsed_ms = result.elapsed_ms();
  return out;
}

}  // namespace grpo::rewards
