#include "policy/tokenizer_added.h"

#include <unicode/uchar.h>

#include <algorithm>
#include <map>
#include <memory>

#include "policy/tokenizer_utf8.h"

namespace grpo {

namespace {

bool is_whitespace(uint32_t cp) { return u_isUWhiteSpace(static_cast<UChar32>(cp)); }

// A word character for single_word: alphabetic or numeric (Rust's char::is_alphanumeric)
// or '_'.
bool is_word_char(uint32_t cp) {
  if (cp == '_') return true;
  const auto c = static_cast<UChar32>(cp);
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC)) return true;
  const int8_t type = u_charType(c);
  return type == U_DECIMAL_DIGIT_NUMBER || type == U_LETTER_NUMBER || type == U_OTHER_NUMBER;
}

// The code point that ends at text[end) (text valid UTF-8, end > 0).
uint32_t last_code_point(std::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return utf8::next(text, start);
}

}  // namespace

void AddedTokenMatcher::build(const std::vector<AddedToken>& tokens) {
  tokens_ = tokens;
  // Build with maps, then flatten into sorted edge lists.
  struct Building {
    std::map<unsigned char, std::unique_ptr<Building>> children;
    int32_t token = -1;
  };
  Building root;
  for (size_t k = 0; k < tokens.size(); ++k) {
    const std::string& pattern = tokens[k].content;
    if (pattern.empty()) continue;
    Building* node = &root;
    for (char c : pattern) {
      auto& child = node->children[static_cast<unsigned char>(c)];
      if (!child) child = std::make_unique<Building>();
      node = child.get();
    }
    if (node->token < 0) node->token = static_cast<int32_t>(k);  // the first of equal patterns wins
    starts_[static_cast<unsigned char>(pattern[0])] = true;
  }
  nodes_.clear();
  edges_.clear();
  // Breadth-first: each node's edges are contiguous.
  std::vector<const Building*> order{&root};
  nodes_.push_back({});
  for (size_t i = 0; i < order.size(); ++i) {
    const Building* b = order[i];
    nodes_[i].token = b->token;
    nodes_[i].first_edge = static_cast<uint32_t>(edges_.size());
    nodes_[i].n_edges = static_cast<uint32_t>(b->children.size());
    for (const auto& [byte, child] : b->children) {
      edges_.push_back({byte, static_cast<uint32_t>(order.size())});
      order.push_back(child.get());
      nodes_.push_back({});
    }
  }
}

size_t AddedTokenMatcher::longest_at(std::string_view text, size_t pos, int32_t* token) const {
  uint32_t node = 0;
  size_t best = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const Node& n = nodes_[node];
    const auto c = static_cast<unsigned char>(text[i]);
    const Edge* begin = edges_.data() + n.first_edge;
    const Edge* end = begin + n.n_edges;
    const Edge* e = std::lower_bound(begin, end, c, [](const Edge& edge, unsigned char v) { return edge.byte < v; });
    if (e == end || e->byte != c) break;
    node = e->child;
    if (nodes_[node].token >= 0) {
      best = i + 1 - pos;
      *token = nodes_[node].token;
    }
  }
  return best;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  size_t emitted = 0;  // text before this is already in `out`
  size_t pos = 0;
  const size_t n = text.size();
  while (pos < n) {
    if (!starts_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    int32_t k = -1;
    const size_t len = longest_at(text, pos, &k);
    if (len == 0) {
      ++pos;
      continue;
    }
    const AddedToken& tok = tokens_[size_t(k)];
    size_t start = pos, stop = pos + len;
    pos = stop;  // matching goes on after this match even when the rules below discard it
    if (tok.single_word) {
      const bool word_before = start > 0 && is_word_char(last_code_point(text, start));
      size_t i = stop;
      const bool word_after = stop < n && is_word_char(utf8::next(text, i));
      if (word_before || word_after) continue;
    }
    if (tok.lstrip) {
      size_t s = start;
      while (s > emitted) {
        size_t prev = s - 1;
        while (prev > 0 && (static_cast<unsigned char>(text[prev]) & 0xC0) == 0x80) --prev;
        size_t i = prev;
        if (!is_whitespace(utf8::next(text, i))) break;
        s = prev;
      }
      start = s;
    }
    if (tok.rstrip) {
      while (stop < n) {
        size_t i = stop;
        if (!is_whitespace(utf8::next(text, i))) break;
        stop = i;
      }
      pos = stop;
    }
    if (start > emitted) out.push_back({static_cast<uint32_t>(emitted), static_cast<uint32_t>(start), -1});
    out.push_back({static_cast<uint32_t>(start), static_cast<uint32_t>(stop), tok.id});
    emitted = stop;
  }
  if (n > emitted) out.push_back({static_cast<uint32_t>(emitted), static_cast<uint32_t>(n), -1});
}

}  // namespace grpo
