#include "rewards/math/math_lexer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

namespace grpo::rewards::math {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

template <size_t N>
bool one_of(std::string_view s, const std::string_view (&set)[N]) {
  return std::find(std::begin(set), std::end(set), s) != std::end(set);
}

// Function names, longest first so that a plain word is split at the longest prefix.
constexpr std::string_view kFunctions[] = {"arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "sin", "cos",
                                           "tan",    "cot",    "sec",    "csc",  "log",  "exp",  "ln"};

constexpr std::string_view kGreek[] = {"alpha", "beta",   "gamma", "delta",    "epsilon", "varepsilon",
                                       "zeta",  "eta",    "theta", "vartheta", "kappa",   "lambda",
                                       "mu",    "nu",     "xi",    "rho",      "sigma",   "tau",
                                       "phi",   "varphi", "chi",   "psi",      "omega",   "iota"};
constexpr std::string_view kGreekUpper[] = {"Gamma", "Delta", "Theta", "Lambda", "Xi",
                                            "Sigma", "Phi",   "Psi",   "Omega",  "Pi"};

// Words dropped as units when they stand alone in an answer ("5 cm", "12 dollars").
constexpr std::string_view kUnitWords[] = {
    "cm",          "mm",        "km",         "kg",      "mg",     "ml",         "mph",         "kph",
    "inch",        "inches",    "ft",         "feet",    "foot",   "yard",       "yards",       "mile",
    "miles",       "meter",     "meters",     "metre",   "metres", "centimeter", "centimeters", "millimeter",
    "millimeters", "kilometer", "kilometers", "gram",    "grams",  "kilogram",   "kilograms",   "pound",
    "pounds",      "lb",        "lbs",        "ounce",   "ounces", "oz",         "liter",       "liters",
    "litre",       "litres",    "gallon",     "gallons", "dollar", "dollars",    "cent",        "cents",
    "hour",        "hours",     "hr",         "hrs",     "minute", "minutes",    "mins",        "second",
    "seconds",     "secs",      "day",        "days",    "week",   "weeks",      "month",       "months",
    "year",        "years",     "unit",       "units",   "sq",     "square",     "cubic",       "people",
    "students",    "euros"};

// Commands that change only the look: dropped (a following '.' of \left. / \right. too).
constexpr std::string_view kSizing[] = {"left", "right", "big",    "Big",   "bigg",  "Bigg",     "bigl",
                                        "bigr", "Bigl",  "Bigr",   "biggl", "biggr", "Biggl",    "Biggr",
                                        "bigm", "Bigm",  "middle", "biggm", "Biggm", "mathstrut"};
constexpr std::string_view kIgnored[] = {"displaystyle", "textstyle", "scriptstyle", "limits", "nolimits", "mathbf",
                                         "mathit",       "mathsf",    "boldsymbol",  "bm",     "mathbb",   "mathcal",
                                         "mathnormal",   "rm",        "bf",          "it",     "vec",      "hat",
                                         "bar",          "tilde",     "mathscr",     "pmb",    "boxed",    "fbox"};
constexpr std::string_view kTextLike[] = {"text",   "textrm", "textbf", "textit", "textnormal", "textsf",
                                          "texttt", "textup", "mathrm", "mbox",   "hbox",       "operatorname"};
constexpr std::string_view kMatrixEnvs[] = {"pmatrix", "bmatrix", "Bmatrix", "matrix", "smallmatrix", "array"};

struct UnicodeReplacement {
  std::string_view utf8;
  std::string_view ascii;
};
constexpr UnicodeReplacement kUnicode[] = {
    {"\u2212", "-"},        {"\u2013", "-"},       {"\u00d7", "\\times "}, {"\u00f7", "\\div "},
    {"\u00b7", "\\cdot "},  {"\u22c5", "\\cdot "}, {"\u03c0", "\\pi "},    {"\u221e", "\\infty "},
    {"\u221a", "\\sqrt "},  {"\u2264", "\\le "},   {"\u2265", "\\ge "},    {"\u2260", "\\ne "},
    {"\u00b0", "^\\circ "}, {"\u00b1", "\\pm "},   {"\u222a", "\\cup "},   {"\u2205", "\\emptyset "},
    {"\u00a0", " "},        {"\u2009", " "},       {"\u202f", " "},        {"\u00b2", "^2"},
    {"\u00b3", "^3"},
};

// Replaces the Unicode math characters models like to print by their LaTeX spelling, and
// drops the negative thin space \! (MATH writes thousands as 2,\!500).
std::string fold_unicode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '\\') {  // \\ stays whole
      out += s.substr(i, 2);
      i += 2;
      continue;
    }
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '!') {
      i += 2;
      continue;
    }
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      out += s[i++];
      continue;
    }
    bool replaced = false;
    for (const auto& r : kUnicode) {
      if (s.substr(i, r.utf8.size()) == r.utf8) {
        out += r.ascii;
        i += r.utf8.size();
        replaced = true;
        break;
      }
    }
    if (!replaced) out += s[i++];  // kept; an error if it is not inside \text{}
  }
  return out;
}

// Index just past the '}' matching the '{' at `open`, honouring backslash escapes; npos if none.
size_t match_brace(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
      continue;
    }
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i + 1;
  }
  return std::string_view::npos;
}

bool three_digits_at(std::string_view s, size_t p) {
  if (p + 3 > s.size()) return false;
  for (size_t k = p; k < p + 3; ++k)
    if (!is_digit(s[k])) return false;
  return p + 3 == s.size() || !is_digit(s[p + 3]);
}

// Length of a thin gap between digit groups ("1 000", "1\,000", "1~000"), 0 if none.
size_t digit_gap(std::string_view s, size_t p) {
  if (p < s.size() && (s[p] == ' ' || s[p] == '~')) return 1;
  if (p + 1 < s.size() && s[p] == '\\' && (s[p + 1] == ',' || s[p + 1] == ' ' || s[p + 1] == ';' || s[p + 1] == ':'))
    return 2;
  return 0;
}

class Lexer {
 public:
  Lexer(std::string_view s, size_t max_tokens) : s_(s), max_tokens_(max_tokens), thousands_(commas_are_thousands(s)) {}

  std::vector<Token> run() {
    while (i_ < s_.size()) step();
    return std::move(out_);
  }

 private:
  void emit(Tok kind, std::string text = {}, int64_t exp10 = 0) {
    if (out_.size() >= max_tokens_) throw MathError("answer has too many tokens");
    out_.push_back(Token{kind, std::move(text), exp10, pending_space_});
    pending_space_ = false;
  }

  void append(std::vector<Token> tokens) {
    for (Token& t : tokens) {
      if (out_.size() >= max_tokens_) throw MathError("answer has too many tokens");
      out_.push_back(std::move(t));
    }
  }

  void skip_spaces() {
    while (i_ < s_.size() && is_space(s_[i_])) ++i_;
  }

  bool starts_with_at(size_t p, std::string_view what) const { return s_.substr(p, what.size()) == what; }

  void step() {
    char c = s_[i_];
    if (is_space(c) || c == '~') {
      pending_space_ = true;
      ++i_;
      return;
    }
    if (is_digit(c) || (c == '.' && i_ + 1 < s_.size() && is_digit(s_[i_ + 1]))) return lex_number();
    if (is_alpha(c)) return lex_word();
    if (c == '\\') return lex_command();
    if (static_cast<unsigned char>(c) >= 0x80) throw MathError("unexpected non-ASCII character in answer");
    ++i_;
    switch (c) {
      case '$':
        return;
      case '.':
        if (trim(s_.substr(i_)).empty()) return;  // a sentence's final period
        return emit(Tok::kOp, ".");
      case '%':
        return emit(Tok::kPercent);
      case '^':
        return lex_caret();
      case '=':
        return emit(Tok::kRel, "=");
      case '<':
      case '>':
        if (i_ < s_.size() && s_[i_] == '=') {
          ++i_;
          return emit(Tok::kRel, std::string(1, c) + "=");
        }
        return emit(Tok::kRel, std::string(1, c));
      case '!':
        if (i_ < s_.size() && s_[i_] == '=') {
          ++i_;
          return emit(Tok::kRel, "!=");
        }
        return emit(Tok::kOp, "!");
      case '(':
      case '[':
        ++depth_;
        return emit(Tok::kOp, std::string(1, c));
      case ')':
      case ']':
        --depth_;
        return emit(Tok::kOp, std::string(1, c));
      default:
        return emit(Tok::kOp, std::string(1, c));
    }
  }

  void lex_caret() {
    size_t j = i_;
    while (j < s_.size() && is_space(s_[j])) ++j;
    auto circ_at = [&](size_t p) {
      return starts_with_at(p, "\\circ") && (p + 5 >= s_.size() || !is_alpha(s_[p + 5]));
    };
    if (circ_at(j)) {
      i_ = j + 5;
      return emit(Tok::kDegree);
    }
    if (j < s_.size() && s_[j] == '{') {
      size_t k = j + 1;
      while (k < s_.size() && is_space(s_[k])) ++k;
      if (circ_at(k)) {
        k += 5;
        while (k < s_.size() && is_space(s_[k])) ++k;
        if (k < s_.size() && s_[k] == '}') {
          i_ = k + 1;
          return emit(Tok::kDegree);
        }
      }
    }
    emit(Tok::kOp, "^");
  }

  void lex_number() {
    std::string digits;
    while (i_ < s_.size() && is_digit(s_[i_])) digits += s_[i_++];
    if (!digits.empty() && digits.size() <= 3) {
      for (;;) {
        if (depth_ <= 0 && thousands_ && i_ < s_.size() && s_[i_] == ',' && three_digits_at(s_, i_ + 1)) {
          digits.append(s_.substr(i_ + 1, 3));
          i_ += 4;
          continue;
        }
        if (starts_with_at(i_, "{,}") && three_digits_at(s_, i_ + 3)) {
          digits.append(s_.substr(i_ + 3, 3));
          i_ += 6;
          continue;
        }
        size_t gap = digit_gap(s_, i_);
        if (gap && three_digits_at(s_, i_ + gap)) {
          digits.append(s_.substr(i_ + gap, 3));
          i_ += gap + 3;
          continue;
        }
        break;
      }
    }
    std::string text = digits.empty() ? "0" : digits;
    if (i_ < s_.size() && s_[i_] == '.') {
      if (i_ + 1 < s_.size() && is_digit(s_[i_ + 1])) {
        text += '.';
        ++i_;
        while (i_ < s_.size() && is_digit(s_[i_])) text += s_[i_++];
      } else if (starts_with_at(i_ + 1, "\\overline")) {
        text += '.';  // 0.\overline{3}
        ++i_;
      } else if (i_ + 1 == s_.size() || is_space(s_[i_ + 1])) {
        ++i_;  // "5." at the end of a sentence
      }
    }
    int64_t exp10 = 0;
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      size_t j = i_ + 1;
      bool negative = false;
      if (j < s_.size() && (s_[j] == '+' || s_[j] == '-')) negative = s_[j++] == '-';
      if (j < s_.size() && is_digit(s_[j])) {
        std::string e;
        while (j < s_.size() && is_digit(s_[j])) e += s_[j++];
        if (e.size() > 9) throw MathError("exponent of scientific notation too large");
        exp10 = std::stoll(e) * (negative ? -1 : 1);
        i_ = j;
      }
    }
    emit(Tok::kNum, std::move(text), exp10);
  }

  void lex_word() {
    size_t start = i_;
    while (i_ < s_.size() && is_alpha(s_[i_])) ++i_;
    std::string_view w = s_.substr(start, i_ - start);
    if (w.size() == 1) return emit(Tok::kSym, std::string(w));
    std::string lw = lower(w);
    if (lw == "or" || lw == "and") return emit(Tok::kSep, lw);
    if (one_of(w, kFunctions)) return emit(Tok::kFunc, std::string(w));
    if (lw == "pi") return emit(Tok::kPi);
    if (lw == "infinity" || lw == "infty" || lw == "inf") return emit(Tok::kInfty);
    if (lw == "percent") return emit(Tok::kPercent);
    if (lw == "degrees" || lw == "degree" || lw == "deg") return emit(Tok::kDegree);
    if (lw == "sqrt") return emit(Tok::kCmd, "sqrt");
    if (one_of(std::string_view(lw), kUnitWords)) {
      skip_unit_exponent();
      pending_space_ = true;
      return;
    }
    for (std::string_view f : kFunctions) {
      if (w.size() > f.size() && w.substr(0, f.size()) == f) {
        emit(Tok::kFunc, std::string(f));
        w.remove_prefix(f.size());
        break;
      }
    }
    for (char c : w) emit(Tok::kSym, std::string(1, c));
  }

  void lex_command() {
    if (i_ + 1 >= s_.size()) throw MathError("answer ends with a backslash");
    char n = s_[i_ + 1];
    if (!is_alpha(n)) {
      i_ += 2;
      switch (n) {
        case '{':
          ++depth_;
          return emit(Tok::kSetOpen);
        case '}':
          --depth_;
          return emit(Tok::kSetClose);
        case ',':
        case ';':
        case ':':
        case '!':
        case ' ':
          pending_space_ = true;
          return;
        case '%':
          return emit(Tok::kPercent);
        case '\\':
          return emit(Tok::kRowSep);
        case '$':
        case '(':
        case ')':
        case '[':
        case ']':
          return;  // \$ (currency) and math-mode delimiters
        case '|':
          return emit(Tok::kOp, "|");
        default:
          return emit(Tok::kCmd, std::string(1, n));
      }
    }
    size_t start = ++i_;
    while (i_ < s_.size() && is_alpha(s_[i_])) ++i_;
    std::string name(s_.substr(start, i_ - start));
    if (one_of(std::string_view(name), kSizing)) {
      skip_spaces();
      if (i_ < s_.size() && s_[i_] == '.') ++i_;
      return;
    }
    if (name == "quad" || name == "qquad") {
      pending_space_ = true;
      return;
    }
    if (one_of(std::string_view(name), kIgnored)) return;
    if (one_of(std::string_view(name), kTextLike)) return lex_text(name);
    if (name == "frac" || name == "dfrac" || name == "tfrac" || name == "cfrac") return emit(Tok::kCmd, "frac");
    if (name == "binom" || name == "dbinom" || name == "tbinom") return emit(Tok::kCmd, "binom");
    if (name == "sqrt" || name == "choose" || name == "overline") return emit(Tok::kCmd, name);
    if (one_of(std::string_view(name), kFunctions)) return emit(Tok::kFunc, name);
    if (name == "pi") return emit(Tok::kPi);
    if (name == "infty" || name == "infin") return emit(Tok::kInfty);
    if (name == "cdot" || name == "times" || name == "ast") return emit(Tok::kOp, "*");
    if (name == "div") return emit(Tok::kOp, "/");
    if (name == "pm") return emit(Tok::kPm);
    if (name == "mp") return emit(Tok::kMp);
    if (name == "le" || name == "leq" || name == "leqslant") return emit(Tok::kRel, "<=");
    if (name == "ge" || name == "geq" || name == "geqslant") return emit(Tok::kRel, ">=");
    if (name == "ne" || name == "neq") return emit(Tok::kRel, "!=");
    if (name == "lt") return emit(Tok::kRel, "<");
    if (name == "gt") return emit(Tok::kRel, ">");
    if (name == "approx" || name == "equiv" || name == "doteq") return emit(Tok::kRel, "=");
    if (name == "in") return emit(Tok::kIn);
    if (name == "cup") return emit(Tok::kCup);
    if (name == "circ" || name == "degree") return emit(Tok::kDegree);
    if (name == "emptyset" || name == "varnothing") return emit(Tok::kEmptySet);
    if (name == "lor" || name == "vee" || name == "land" || name == "wedge") return emit(Tok::kSep, name);
    if (name == "lvert" || name == "rvert" || name == "vert" || name == "mid") return emit(Tok::kOp, "|");
    if (name == "lbrace") return emit(Tok::kSetOpen);
    if (name == "rbrace") return emit(Tok::kSetClose);
    if (name == "langle") return emit(Tok::kOp, "(");
    if (name == "rangle") return emit(Tok::kOp, ")");
    if (name == "prime") return emit(Tok::kOp, "'");
    if (name == "begin" || name == "end") return lex_environment(name == "begin");
    if (one_of(std::string_view(name), kGreek) || one_of(std::string_view(name), kGreekUpper))
      return emit(Tok::kSym, "\\" + name);
    emit(Tok::kCmd, name);  // \dots, \lim, ...: not part of an answer we can grade
  }

  void lex_environment(bool begin) {
    skip_spaces();
    if (i_ >= s_.size() || s_[i_] != '{') throw MathError("\\begin/\\end without an environment name");
    size_t end = match_brace(s_, i_);
    if (end == std::string_view::npos) throw MathError("unbalanced braces after \\begin/\\end");
    std::string env(s_.substr(i_ + 1, end - i_ - 2));
    i_ = end;
    if (!env.empty() && env.back() == '*') env.pop_back();
    if (!one_of(std::string_view(env), kMatrixEnvs)) throw MathError("unsupported environment " + env);
    if (begin && env == "array") {  // \begin{array}{cc}: skip the column spec
      skip_spaces();
      if (i_ < s_.size() && s_[i_] == '{') {
        size_t spec_end = match_brace(s_, i_);
        if (spec_end == std::string_view::npos) throw MathError("unbalanced array column spec");
        i_ = spec_end;
      }
    }
    emit(begin ? Tok::kMatBegin : Tok::kMatEnd, env);
  }

  // \text{...} and friends: a separator, a mark, one letter, plain math, or a unit (dropped).
  void lex_text(const std::string& name) {
    skip_spaces();
    std::string_view content;
    if (i_ < s_.size() && s_[i_] == '{') {
      size_t end = match_brace(s_, i_);
      if (end == std::string_view::npos) throw MathError("unbalanced braces in \\" + name);
      content = s_.substr(i_ + 1, end - i_ - 2);
      i_ = end;
    } else if (i_ < s_.size()) {
      content = s_.substr(i_++, 1);
    }
    std::string_view t = trim(content);
    std::string lt = lower(t);
    if (t.empty()) {
      pending_space_ = true;
      return;
    }
    if (lt == "or" || lt == "and" || lt == "," || lt == "or," || lt == ", or") return emit(Tok::kSep, lt);
    if (name == "operatorname") {
      if (one_of(t, kFunctions)) return emit(Tok::kFunc, std::string(t));
      return emit(Tok::kCmd, std::string(t));
    }
    if (lt == "degrees" || lt == "degree" || lt == "\\circ" || lt == "deg") return emit(Tok::kDegree);
    if (lt == "percent" || lt == "\\%" || lt == "%") return emit(Tok::kPercent);
    if (t.size() == 1 && (t == "e" || t == "i")) return emit(Tok::kSym, std::string(t));
    bool has_letters = std::any_of(t.begin(), t.end(), [](char c) { return is_alpha(c); });
    bool non_ascii = std::any_of(t.begin(), t.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
    if (!has_letters && !non_ascii && t.find('\\') == std::string_view::npos) {
      bool space = pending_space_;
      std::vector<Token> inner = Lexer(t, max_tokens_ - out_.size()).run();
      if (!inner.empty()) inner.front().space_before = space;
      pending_space_ = false;
      return append(std::move(inner));
    }
    skip_unit_exponent();
    pending_space_ = true;  // a unit or a word: dropped
  }

  // The power of a dropped unit (\text{cm}^2, m^{3}) goes with it.
  void skip_unit_exponent() {
    size_t j = i_;
    while (j < s_.size() && is_space(s_[j])) ++j;
    if (j >= s_.size() || s_[j] != '^') return;
    ++j;
    while (j < s_.size() && is_space(s_[j])) ++j;
    if (j < s_.size() && s_[j] == '{') {
      size_t end = match_brace(s_, j);
      if (end != std::string_view::npos) i_ = end;
    } else if (j < s_.size() && is_digit(s_[j])) {
      i_ = j + 1;
    }
  }

  std::string_view s_;
  size_t max_tokens_;
  bool thousands_;
  size_t i_ = 0;
  int depth_ = 0;
  bool pending_space_ = false;
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> lex_math(std::string_view answer, size_t max_tokens) {
  std::string folded = fold_unicode(answer);
  return Lexer(folded, max_tokens).run();
}

bool commas_are_thousands(std::string_view s) {
  int depth = 0;
  bool any = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\\' && i + 1 < s.size()) {
      if (s[i + 1] == '{') ++depth;
      if (s[i + 1] == '}') --depth;
      if (!is_alpha(s[i + 1])) ++i;
      continue;
    }
    if (c == '(' || c == '[') ++depth;
    if (c == ')' || c == ']') --depth;
    if (c != ',' || depth > 0) continue;
    if (i > 0 && s[i - 1] == '{' && i + 1 < s.size() && s[i + 1] == '}') continue;  // 1{,}000
    any = true;
    size_t j = i;
    while (j > 0 && is_digit(s[j - 1])) --j;
    size_t group = i - j;
    char before = j > 0 ? s[j - 1] : ' ';
    if (group == 0) return false;
    if (before == ',') {
      if (group != 3) return false;
    } else if (group > 3 || before == '.') {
      return false;
    }
    if (!three_digits_at(s, i + 1)) return false;
  }
  return any;
}

std::string canonical_text(std::string_view answer) {
  std::string s = fold_unicode(answer);
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (is_space(c) || c == '$' || c == '~') continue;
    if (c != '\\' || i + 1 >= s.size()) {
      out += c;
      continue;
    }
    char n = s[i + 1];
    if (!is_alpha(n)) {
      if (n == ',' || n == ';' || n == ':' || n == '!' || n == ' ' || n == '(' || n == ')' || n == '[' || n == ']') {
        ++i;
        continue;
      }
      out += c;
      out += n;
      ++i;
      continue;
    }
    size_t start = i + 1, end = start;
    while (end < s.size() && is_alpha(s[end])) ++end;
    std::string name = s.substr(start, end - start);
    i = end - 1;
    if (one_of(std::string_view(name), kSizing) || name == "displaystyle" || name == "textstyle") continue;
    size_t next = end;
    while (next < s.size() && is_space(s[next])) ++next;
    if (one_of(std::string_view(name), kTextLike) && name != "operatorname" && next < s.size() && s[next] == '{') {
      size_t close = match_brace(s, next);
      if (close != std::string::npos) {
        out += canonical_text(std::string_view(s).substr(next + 1, close - next - 2));
        i = close - 1;
        continue;
      }
    }
    if (name == "dfrac" || name == "tfrac" || name == "cfrac") name = "frac";
    out += '\\';
    out += name;
    if (next < s.size() && is_alpha(s[next])) out += ' ';
  }
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

std::string token_debug_string(const std::vector<Token>& tokens) {
  static constexpr std::array<const char*, 21> kNames = {"num", "sym", "func", "cmd",   "op",   "rel",  "in",
                                                         "{",   "}",   "sep",  "%",     "deg",  "pm",   "mp",
                                                         "cup", "pi",  "inf",  "empty", "mat<", "mat>", "row"};
  std::string out;
  for (const Token& t : tokens) {
    if (!out.empty()) out += ' ';
    out += kNames[static_cast<size_t>(t.kind)];
    if (!t.text.empty()) {
      out += ':';
      out += t.text;
    }
    if (t.exp10) {
      out += 'e';
      out += std::to_string(t.exp10);
    }
  }
  return out;
}

}  // namespace grpo::rewards::math
