// Added tokens (special tokens such as <|im_end|> and extra vocabulary) found in text before
// pre-tokenization: leftmost-longest matching over a byte trie, with HF's single_word,
// lstrip and rstrip rules.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "policy/tokenizer.h"

namespace grpo {

struct AddedToken {
  std::string content;
  TokenId id = -1;
  bool special = false;
  bool normalized = false;  // matched in the normalized text (else in the raw text)
  bool lstrip = false;      // also takes the whitespace on its left
  bool rstrip = false;      // also takes the whitespace on its right
  bool single_word = false; // only where no word character touches it
};

class AddedTokenMatcher {
 public:
  struct Segment {
    uint32_t begin, end;
    TokenId id;  // -1: plain text between tokens
  };

  // Matches each token's content (already normalized for normalized tokens).
  void build(const std::vector<AddedToken>& tokens);
  bool empty() const { return tokens_.empty(); }
  // Cuts `text` into plain segments and token segments (appended to `out`, in order, no
  // empty plain segments).
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  struct Node {
    uint32_t first_edge = 0;
    uint32_t n_edges = 0;
    int32_t token = -1;  // index into tokens_ of the pattern ending here
  };
  struct Edge {
    unsigned char byte;
    uint32_t child;
  };
  // Length of the longest pattern starting at text[pos] (0 if none); its index in *token.
  size_t longest_at(std::string_view text, size_t pos, int32_t* token) const;

  std::vector<Node> nodes_;
  std::vector<Edge> edges_;
  bool starts_[256] = {};
  std::vector<AddedToken> tokens_;
};

}  // namespace grpo
