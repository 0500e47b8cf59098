// `grpo bench tokenizer`: encoding throughput on a large mixed-language text, one thread and
// batched across threads, next to raw PCRE2 running the file's pre-tokenizer regexes over the
// same text (and memcpy) in the same run.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench.h"
#include "core/error.h"
#include "core/rng.h"
#include "policy/tokenizer.h"

namespace grpo {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

// Deterministic text: English prose (common and made-up words), Chinese, Japanese, Korean,
// Python code, LaTeX math, numbers and emoji, in documents of about 4 KiB. The same seed
// gives the same bytes on every machine (Philox).
std::vector<std::string> make_corpus(size_t total_bytes) {
  static const char* kWords[] = {
      "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
      "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were",
      "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would",
      "who", "so", "no", "reasoning", "model", "answer", "therefore", "equation", "probability", "function",
      "training", "reward", "policy", "gradient", "however", "because", "between", "different", "important",
      "It's", "don't", "we'll", "they've", "Consider", "Suppose", "Finally", "Thus"};
  static const char* kSyllables[] = {"ka", "lo", "mi", "zen", "tor", "qua", "ri", "ble", "tion", "ex", "pre",
                                     "ing", "ous", "str", "ph", "ae", "ni", "dr", "un", "ver"};
  static const char* kCode[] = {
      "def {a}(x, y):\n    return x * {n} + y\n\n", "for i in range({n}):\n    {a}[i] = {a}[i - 1] + i\n",
      "if {a} is None:\n    raise ValueError(\"{a} missing\")\n", "    result = {{\"{a}\": {n}, \"ok\": True}}\n",
      "class {a}:\n    def __init__(self):\n        self.n = {n}\n"};
  static const char* kMath[] = {"$\\frac{{{n}}}{{{m}}} + \\sqrt{{{n}}} = x^2$", "\\sum_{{k=1}}^{{{n}}} k^2",
                                "$\\int_0^{{{n}}} e^{{-t}}\\,dt$", "\\boxed{{{n}}}", "$a_{{{m}}} \\le {n}$"};
  static const char* kEmoji[] = {"\xF0\x9F\x98\x80", "\xF0\x9F\x8E\x89", "\xE2\x9C\x85",
                                 "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB", "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD"};
  uint64_t offset = 0;
  uint32_t words[4];
  int have = 0;
  auto next = [&]() -> uint32_t {
    if (have == 0) {
      const PhiloxCounter c = philox_block(20240604, 0, offset++);
      std::copy(c.begin(), c.end(), words);
      have = 4;
    }
    return words[--have];
  };
  auto pick = [&](uint32_t n) { return next() % n; };
  auto fill = [&](std::string pattern) {
    std::string out;
    const std::string ident = std::string(kSyllables[pick(20)]) + "_" + kSyllables[pick(20)];
    for (size_t i = 0; i < pattern.size(); ++i) {
      if (pattern.compare(i, 3, "{a}") == 0) {
        out += ident;
        i += 2;
      } else if (pattern.compare(i, 3, "{n}") == 0) {
        out += std::to_string(pick(100000));
        i += 2;
      } else if (pattern.compare(i, 3, "{m}") == 0) {
        out += std::to_string(pick(50));
        i += 2;
      } else if (pattern.compare(i, 2, "{{") == 0 || pattern.compare(i, 2, "}}") == 0) {
        out += pattern[i];
        i += 1;
      } else {
        out += pattern[i];
      }
    }
    return out;
  };
  std::vector<std::string> docs;
  size_t total = 0;
  while (total < total_bytes) {
    std::string doc;
    while (doc.size() < 4096) {
      const uint32_t kind = pick(100);
      if (kind < 45) {  // English sentence
        for (uint32_t w = 0, n = 6 + pick(14); w < n; ++w) {
          if (w) doc += ' ';
          if (pick(10) == 0) {
            for (uint32_t s = 0, ns = 2 + pick(3); s < ns; ++s) doc += kSyllables[pick(20)];
          } else {
            doc += kWords[pick(sizeof(kWords) / sizeof(kWords[0]))];
          }
        }
        doc += pick(4) == 0 ? ".\n" : ". ";
      } else if (kind < 60) {  // Chinese: common CJK ideographs, with fullwidth punctuation
        for (uint32_t c = 0, n = 8 + pick(30); c < n; ++c) append_utf8(doc, 0x4E00 + pick(pick(4) == 0 ? 20000 : 1500));
        doc += "\xE3\x80\x82";
      } else if (kind < 67) {  // Japanese: hiragana, katakana and kanji
        for (uint32_t c = 0, n = 8 + pick(24); c < n; ++c) {
          const uint32_t r = pick(3);
          append_utf8(doc, r == 0 ? 0x3041 + pick(83) : r == 1 ? 0x30A1 + pick(89) : 0x4E00 + pick(2000));
        }
        doc += "\xE3\x80\x82";
      } else if (kind < 74) {  // Korean: Hangul syllables in words
        for (uint32_t w = 0, n = 3 + pick(8); w < n; ++w) {
          if (w) doc += ' ';
          for (uint32_t c = 0, nc = 1 + pick(4); c < nc; ++c) append_utf8(doc, 0xAC00 + pick(11172 / 8));
        }
        doc += ". ";
      } else if (kind < 86) {
        doc += fill(kCode[pick(5)]);
      } else if (kind < 94) {
        doc += fill(kMath[pick(5)]) + " ";
      } else if (kind < 97) {
        doc += std::to_string(pick(1000000)) + "." + std::to_string(pick(1000)) + " ";
      } else {
        doc += kEmoji[pick(5)];
        doc += ' ';
      }
    }
    total += doc.size();
    docs.push_back(std::move(doc));
  }
  return docs;
}

// Runs `body` (one pass over the corpus) until `min_seconds` have passed; seconds per pass.
template <class F>
double time_passes(double min_seconds, F&& body) {
  const Clock::time_point t0 = Clock::now();
  int passes = 0;
  do {
    body();
    ++passes;
  } while (seconds_since(t0) < min_seconds);
  return seconds_since(t0) / passes;
}

// The peer: PCRE2 JIT finding every match of `pattern` in every document, nothing else.
double pcre2_split_seconds(const std::string& pattern, const std::vector<std::string>& docs, double min_seconds,
                           size_t* n_matches) {
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                                   &err, &off, nullptr);
  GRPO_CHECK(code, "bench tokenizer: the pre-tokenizer regex does not compile with PCRE2");
  const bool jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  size_t matches = 0;
  const double s = time_passes(min_seconds, [&] {
    matches = 0;
    for (const std::string& d : docs) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(d.data());
      for (PCRE2_SIZE start = 0; start < d.size();) {
        const int rc = jit ? pcre2_jit_match(code, subject, d.size(), start, 0, md, nullptr)
                           : pcre2_match(code, subject, d.size(), start, PCRE2_NO_UTF_CHECK, md, nullptr);
        if (rc < 0) break;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        start = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
        ++matches;
      }
    }
  });
  pcre2_match_data_free(md);
  pcre2_code_free(code);
  *n_matches = matches;
  return s;
}

}  // namespace

std::string run_bench_tokenizer(const BenchTokenizerOptions& options) {
  GRPO_CHECK(!options.tokenizer.empty(), "bench tokenizer: --tokenizer is required");
  const double mb = options.quick ? 0.5 : options.megabytes;
  GRPO_CHECK(mb > 0, "bench tokenizer: --mb must be positive");
  const double min_seconds = options.quick ? 0.05 : options.min_seconds;
  const int threads = options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency()));

  const std::vector<std::string> docs = make_corpus(size_t(mb * 1e6));
  size_t bytes = 0;
  for (const std::string& d : docs) bytes += d.size();
  const double megabytes = double(bytes) / 1e6;
  if (!options.save_text.empty()) {
    // One document per line would change the text; documents are written back to back.
    std::ofstream f(options.save_text, std::ios::binary);
    for (const std::string& d : docs) f << d;
    GRPO_CHECK(f.good(), "--save-text " << options.save_text << ": cannot write");
  }

  // Cold: a fresh tokenizer, so every word goes through BPE once before the cache holds it.
  Clock::time_point t0 = Clock::now();
  Tokenizer tok = Tokenizer::from_dir(options.tokenizer);
  const double load_seconds = seconds_since(t0);
  size_t n_tokens = 0;
  t0 = Clock::now();
  for (const std::string& d : docs) n_tokens += tok.encode(d).size();
  const double cold_seconds = seconds_since(t0);

  std::vector<std::vector<TokenId>> single(docs.size());
  const double single_seconds = time_passes(min_seconds, [&] {
    for (size_t i = 0; i < docs.size(); ++i) single[i] = tok.encode(docs[i]);
  });
  std::vector<std::vector<TokenId>> batched;
  const double batched_seconds = time_passes(min_seconds, [&] { batched = tok.encode_batch(docs, threads); });
  GRPO_CHECK(batched == single, "bench tokenizer: batched encoding differs from single-thread encoding");

  // The peer runs every Split regex of the file over the whole text (the tokenizer runs the
  // later ones over the pieces of the earlier ones: about the same bytes).
  nlohmann::json peer = nlohmann::json::object();
  double ratio = 0;
  const std::vector<std::string> patterns = tok.split_patterns();
  if (!patterns.empty()) {
    double seconds = 0;
    size_t matches = 0;
    for (const std::string& p : patterns) {
      size_t m = 0;
      seconds += pcre2_split_seconds(p, docs, min_seconds, &m);
      matches += m;
    }
    peer["pcre2_split_mb_s"] = megabytes / seconds;
    peer["pcre2_split_patterns"] = patterns;
    peer["pcre2_split_matches"] = matches;
    ratio = seconds / single_seconds;
  }
  std::string sink(bytes, '\0');
  const double memcpy_seconds = time_passes(min_seconds, [&] {
    size_t at = 0;
    for (const std::string& d : docs) {
      std::memcpy(sink.data() + at, d.data(), d.size());
      at += d.size();
    }
    asm volatile("" : : "r"(sink.data()) : "memory");
  });
  peer["memcpy_mb_s"] = megabytes / memcpy_seconds;

  nlohmann::json out = {
      {"benchmark", "tokenizer"},
      {"tokenizer", options.tokenizer},
      {"text", {{"bytes", bytes}, {"documents", docs.size()}, {"mix", "English, Chinese, Japanese, Korean, code, LaTeX, numbers, emoji"}}},
      {"tokens", n_tokens},
      {"bytes_per_token", double(bytes) / double(std::max<size_t>(1, n_tokens))},
      {"load_seconds", load_seconds},
      {"single_thread_cold", {{"mb_s", megabytes / cold_seconds}, {"tokens_per_s", double(n_tokens) / cold_seconds}}},
      {"single_thread", {{"mb_s", megabytes / single_seconds}, {"tokens_per_s", double(n_tokens) / single_seconds}}},
      {"batched",
       {{"threads", threads},
        {"mb_s", megabytes / batched_seconds},
        {"tokens_per_s", double(n_tokens) / batched_seconds},
        {"speedup_vs_single", single_seconds / batched_seconds}}},
      {"peer", peer},
      {"ratio_single_vs_pcre2_split", ratio},
  };
  return out.dump(2);
}

}  // namespace grpo
