#include "rewards/math/math_answer.h"

#include <sstream>
#include <utility>

namespace grpo::rewards::math {
namespace {

using GiNaC::ex;
using Range = std::pair<size_t, size_t>;

// Brackets around brackets (tuples of tuples, ((x))) deeper than this are not an answer; each
// level rescans its range, so the limit also bounds the structural pass to 32 scans.
constexpr int kMaxStructureDepth = 32;

bool is_op(const Token& t, std::string_view op) { return t.kind == Tok::kOp && t.text == op; }
bool is_opener(const Token& t) {
  return is_op(t, "(") || is_op(t, "[") || is_op(t, "{") || t.kind == Tok::kSetOpen || t.kind == Tok::kMatBegin;
}
bool is_closer(const Token& t) {
  return is_op(t, ")") || is_op(t, "]") || is_op(t, "}") || t.kind == Tok::kSetClose || t.kind == Tok::kMatEnd;
}
bool is_less(const std::string& op) { return op == "<" || op == "<="; }
bool is_greater(const std::string& op) { return op == ">" || op == ">="; }

class AnswerParser {
 public:
  AnswerParser(const std::vector<Token>& tokens, ParseContext& ctx) : toks_(tokens), ctx_(ctx) {}

  Answer parse_list(size_t b, size_t e, int depth) {
    if (depth > kMaxStructureDepth) throw MathError("answer nested too deeply");
    std::vector<Range> parts =
        split(b, e, [](const Token& t) { return is_op(t, ",") || is_op(t, ";") || t.kind == Tok::kSep; });
    if (parts.size() == 1) return parse_item(b, e, depth);
    Answer list;
    list.kind = Kind::kList;
    for (auto [pb, pe] : parts) {
      if (pb == pe) continue;
      Answer item = parse_item(pb, pe, depth + 1);
      if (item.kind == Kind::kList) {
        for (Answer& inner : item.items) list.items.push_back(std::move(inner));
      } else {
        list.items.push_back(std::move(item));
      }
    }
    if (list.items.empty()) throw MathError("empty list");
    if (list.items.size() == 1) return std::move(list.items.front());
    return list;
  }

 private:
  // Index of the closer matching the opener at `i` (brackets of all kinds counted alike), or e.
  size_t match(size_t i, size_t e) const {
    int depth = 0;
    for (size_t k = i; k < e; ++k) {
      if (is_opener(toks_[k])) ++depth;
      if (is_closer(toks_[k]) && --depth == 0) return k;
    }
    return e;
  }

  template <class IsSeparator>
  std::vector<Range> split(size_t b, size_t e, IsSeparator is_separator) const {
    std::vector<Range> parts;
    int depth = 0;
    size_t start = b;
    for (size_t k = b; k < e; ++k) {
      const Token& t = toks_[k];
      if (is_opener(t)) ++depth;
      if (is_closer(t)) --depth;
      if (depth == 0 && is_separator(t)) {
        parts.emplace_back(start, k);
        start = k + 1;
      }
    }
    parts.emplace_back(start, e);
    return parts;
  }

  Answer parse_item(size_t b, size_t e, int depth) {
    if (depth > kMaxStructureDepth) throw MathError("answer nested too deeply");
    if (b >= e) throw MathError("empty answer part");
    ctx_.budget().check();

    std::vector<size_t> relations;
    int level = 0;
    for (size_t k = b; k < e; ++k) {
      if (is_opener(toks_[k])) ++level;
      if (is_closer(toks_[k])) --level;
      if (level == 0 && (toks_[k].kind == Tok::kRel || toks_[k].kind == Tok::kIn)) relations.push_back(k);
    }
    if (!relations.empty()) return parse_relation(b, e, relations, depth);

    std::vector<Range> unions = split(b, e, [](const Token& t) { return t.kind == Tok::kCup; });
    if (unions.size() > 1) {
      Answer u;
      u.kind = Kind::kUnion;
      bool all_sets = true;
      for (auto [pb, pe] : unions) {
        u.items.push_back(parse_item(pb, pe, depth + 1));
        all_sets = all_sets && u.items.back().kind == Kind::kSet;
      }
      return all_sets ? merge_sets(u.items) : u;
    }

    const Token& first = toks_[b];
    const Token& last = toks_[e - 1];
    if (first.kind == Tok::kEmptySet && e - b == 1) return set_of({});
    size_t close = match(b, e);
    if (close == e - 1) {
      if (first.kind == Tok::kSetOpen && last.kind == Tok::kSetClose) return parse_set(b + 1, e - 1, depth);
      if ((is_op(first, "(") || is_op(first, "[")) && (is_op(last, ")") || is_op(last, "]")))
        return parse_bracketed(b, e, depth);
      if (is_op(first, "{") && is_op(last, "}") && !has_top_level_choose(b + 1, e - 1))
        return parse_list(b + 1, e - 1, depth + 1);
      if (first.kind == Tok::kMatBegin && last.kind == Tok::kMatEnd) return parse_matrix(b + 1, e - 1, depth);
    }
    return parse_scalar(b, e);
  }

  bool has_symbol_token(size_t b, size_t e) const {
    for (size_t k = b; k < e; ++k)
      if (toks_[k].kind == Tok::kSym) return true;
    return false;
  }

  bool has_top_level_choose(size_t b, size_t e) const {
    int depth = 0;
    for (size_t k = b; k < e; ++k) {
      if (is_opener(toks_[k])) ++depth;
      if (is_closer(toks_[k])) --depth;
      if (depth == 0 && toks_[k].kind == Tok::kCmd && toks_[k].text == "choose") return true;
    }
    return false;
  }

  // \{1, 2\} \cup \{2, 3\} = \{1, 2, 3\}: elements written identically count once.
  static Answer merge_sets(std::vector<Answer>& sets) {
    std::vector<Answer> items;
    for (Answer& set : sets) {
      for (Answer& item : set.items) {
        bool seen = false;
        for (const Answer& other : items)
          seen = seen || (item.kind == Kind::kScalar && other.kind == Kind::kScalar && item.marker == other.marker &&
                          item.value.is_equal(other.value));
        if (!seen) items.push_back(std::move(item));
      }
    }
    return set_of(std::move(items));
  }

  static Answer set_of(std::vector<Answer> items) {
    Answer s;
    s.kind = Kind::kSet;
    s.items = std::move(items);
    return s;
  }

  Answer parse_set(size_t b, size_t e, int depth) {
    std::vector<Answer> items;
    if (b == e) return set_of({});
    for (auto [pb, pe] :
         split(b, e, [](const Token& t) { return is_op(t, ",") || is_op(t, ";") || t.kind == Tok::kSep; })) {
      Answer item = parse_item(pb, pe, depth + 1);
      if (item.kind == Kind::kList) {
        for (Answer& inner : item.items) items.push_back(std::move(inner));
      } else {
        items.push_back(std::move(item));
      }
    }
    return set_of(std::move(items));
  }

  // (a, b), [a, b), [1, 2, 3], or a grouped value ((5) = 5).
  Answer parse_bracketed(size_t b, size_t e, int depth) {
    const Token& first = toks_[b];
    const Token& last = toks_[e - 1];
    std::vector<Range> parts = split(b + 1, e - 1, [](const Token& t) { return is_op(t, ","); });
    if (parts.size() == 1) {
      if (first.text == "(" && last.text != ")") throw MathError("mismatched brackets");
      if (first.text == "[" && last.text != "]") throw MathError("mismatched brackets");
      return parse_list(b + 1, e - 1, depth + 1);
    }
    Answer tuple;
    tuple.kind = Kind::kTuple;
    tuple.open = first.text[0];
    tuple.close = last.text[0];
    for (auto [pb, pe] : parts) tuple.items.push_back(parse_item(pb, pe, depth + 1));
    return tuple;
  }

  Answer parse_matrix(size_t b, size_t e, int depth) {
    std::vector<Range> rows = split(b, e, [](const Token& t) { return t.kind == Tok::kRowSep; });
    if (!rows.empty() && rows.back().first == rows.back().second) rows.pop_back();  // a trailing "\\"
    Answer m;
    m.kind = Kind::kMatrix;
    m.rows = rows.size();
    for (auto [rb, re] : rows) {
      std::vector<Range> cells = split(rb, re, [](const Token& t) { return is_op(t, "&"); });
      if (m.cols == 0) m.cols = cells.size();
      if (cells.size() != m.cols) throw MathError("matrix rows of different lengths");
      for (auto [cb, ce] : cells) m.items.push_back(parse_item(cb, ce, depth + 1));
    }
    if (m.rows == 0) throw MathError("empty matrix");
    return m;
  }

  // x, x_1, x_{12}, \theta, f(x), f(x, y): a name that "name = value" may drop.
  bool is_bare_variable(size_t b, size_t e) const {
    if (b >= e || toks_[b].kind != Tok::kSym) return false;
    size_t n = e - b;
    if (n == 1) return true;
    if (is_op(toks_[b + 1], "_")) {
      if (n == 3) return toks_[b + 2].kind == Tok::kNum || toks_[b + 2].kind == Tok::kSym;
      return is_op(toks_[b + 2], "{") && match(b + 2, e) == e - 1;
    }
    if (is_op(toks_[b + 1], "(") && is_op(toks_[e - 1], ")") && n >= 4) {
      for (size_t k = b + 2; k < e - 1; ++k) {
        bool want_symbol = (k - b) % 2 == 0;
        if (want_symbol ? toks_[k].kind != Tok::kSym : !is_op(toks_[k], ",")) return false;
      }
      return true;
    }
    return false;
  }

  // (x, y), (a, b, c): the left side of "(x, y) = (1, 2)".
  bool is_variable_tuple(size_t b, size_t e) const {
    if (e - b < 5 || !is_op(toks_[b], "(") || !is_op(toks_[e - 1], ")")) return false;
    for (size_t k = b + 1; k < e - 1; ++k) {
      bool want_symbol = (k - b) % 2 == 1;
      if (want_symbol ? toks_[k].kind != Tok::kSym : !is_op(toks_[k], ",")) return false;
    }
    return true;
  }

  Answer interval(const ex& lo, bool lo_closed, const ex& hi, bool hi_closed) const {
    Answer t;
    t.kind = Kind::kTuple;
    t.open = lo_closed ? '[' : '(';
    t.close = hi_closed ? ']' : ')';
    for (const ex& v : {lo, hi}) {
      Answer end;
      end.value = v;
      t.items.push_back(std::move(end));
    }
    return t;
  }

  Answer parse_relation(size_t b, size_t e, const std::vector<size_t>& at, int depth) {
    std::vector<Range> parts;
    std::vector<std::string> ops;
    size_t start = b;
    for (size_t k : at) {
      parts.emplace_back(start, k);
      ops.push_back(toks_[k].kind == Tok::kIn ? "in" : toks_[k].text);
      start = k + 1;
    }
    parts.emplace_back(start, e);
    for (auto [pb, pe] : parts)
      if (pb == pe) throw MathError("relation with an empty side");

    bool all_equal = true;
    for (const std::string& op : ops) all_equal = all_equal && (op == "=" || op == "in");
    if (all_equal &&
        (is_bare_variable(parts[0].first, parts[0].second) || is_variable_tuple(parts[0].first, parts[0].second)))
      return parse_item(parts.back().first, parts.back().second, depth + 1);
    if (ops.size() == 1 && ops[0] == "=" && is_bare_variable(parts[1].first, parts[1].second))
      return parse_item(parts[0].first, parts[0].second, depth + 1);  // 5 = x
    if (all_equal && !has_symbol_token(b, e))
      return parse_item(parts.back().first, parts.back().second, depth + 1);  // 10/2 = 5
    for (const std::string& op : ops)
      if (op == "in") throw MathError("\\in after something that is not a variable");

    ex inf = ctx_.infinity();
    auto value = [&](Range r) { return parse_expression(toks_, r.first, r.second, ctx_); };
    if (ops.size() == 1 && (is_less(ops[0]) || is_greater(ops[0]))) {
      const std::string& op = ops[0];
      bool closed = op.size() == 2;
      bool left = is_bare_variable(parts[0].first, parts[0].second);
      bool right = is_bare_variable(parts[1].first, parts[1].second);
      if (left && right) {
        // y > x: a relation between two variables, not an interval
      } else if (left) {  // x < a, x >= a
        ex a = value(parts[1]);
        return is_less(op) ? interval(-inf, false, a, closed) : interval(a, closed, inf, false);
      } else if (right) {  // a < x, a >= x
        ex a = value(parts[0]);
        return is_less(op) ? interval(a, closed, inf, false) : interval(-inf, false, a, closed);
      }
    }
    if (ops.size() == 2 && is_bare_variable(parts[1].first, parts[1].second)) {  // a < x <= b, b > x > a
      bool up = is_less(ops[0]) && is_less(ops[1]);
      bool down = is_greater(ops[0]) && is_greater(ops[1]);
      if (up) return interval(value(parts[0]), ops[0].size() == 2, value(parts[2]), ops[1].size() == 2);
      if (down) return interval(value(parts[2]), ops[1].size() == 2, value(parts[0]), ops[0].size() == 2);
    }
    if (ops.size() != 1) throw MathError("chained relation");
    Answer r;
    r.kind = Kind::kRelation;
    r.op = ops[0];
    r.lhs = value(parts[0]);
    r.rhs = value(parts[1]);
    return r;
  }

  Answer parse_scalar(size_t b, size_t e) {
    Answer a;
    // A trailing mark belongs to the whole value (30^\circ), except after a function, where it
    // is part of the argument (\sin 30^\circ) and the expression parser reads it.
    bool has_function = false;
    for (size_t k = b; k < e; ++k) has_function = has_function || toks_[k].kind == Tok::kFunc;
    if (!has_function && toks_[e - 1].kind == Tok::kPercent) {
      a.marker = Marker::kPercent;
      --e;
    } else if (!has_function && toks_[e - 1].kind == Tok::kDegree) {
      a.marker = Marker::kDegree;
      --e;
    }
    if (b >= e) throw MathError("a mark without a number");
    ex v = parse_expression(toks_, b, e, ctx_);
    std::vector<GiNaC::symbol> used;
    for (const GiNaC::symbol& s : ctx_.signs())
      if (v.has(s)) used.push_back(s);
    if (used.empty()) {
      a.value = v;
      return a;
    }
    Answer list;  // 2 \pm \sqrt3 -> the list of every sign choice
    list.kind = Kind::kList;
    for (size_t mask = 0; mask < (size_t{1} << used.size()); ++mask) {
      GiNaC::exmap signs;
      for (size_t k = 0; k < used.size(); ++k) signs[used[k]] = (mask >> k & 1) ? -1 : 1;
      Answer choice = a;
      choice.value = checked_subs(v, signs);
      bool seen = false;
      for (const Answer& other : list.items) seen = seen || other.value.is_equal(choice.value);
      if (!seen) list.items.push_back(std::move(choice));
    }
    if (list.items.size() == 1) return std::move(list.items.front());
    return list;
  }

  const std::vector<Token>& toks_;
  ParseContext& ctx_;
};

}  // namespace

Answer parse_answer(const std::vector<Token>& tokens, ParseContext& ctx) {
  if (tokens.empty()) throw MathError("empty answer");
  return AnswerParser(tokens, ctx).parse_list(0, tokens.size(), 0);
}

std::string Answer::debug_string() const {
  std::ostringstream os;
  auto list = [&](const char* open, const char* close) {
    os << open;
    for (size_t k = 0; k < items.size(); ++k) os << (k ? ", " : "") << items[k].debug_string();
    os << close;
  };
  switch (kind) {
    case Kind::kScalar:
      os << value;
      if (marker == Marker::kPercent) os << "%";
      if (marker == Marker::kDegree) os << "deg";
      break;
    case Kind::kList:
      list("list{", "}");
      break;
    case Kind::kSet:
      list("set{", "}");
      break;
    case Kind::kTuple:
      os << "tuple";
      list(std::string(1, open).c_str(), std::string(1, close).c_str());
      break;
    case Kind::kUnion:
      list("union{", "}");
      break;
    case Kind::kMatrix:
      os << "matrix" << rows << "x" << cols;
      list("[", "]");
      break;
    case Kind::kRelation:
      os << lhs << " " << op << " " << rhs;
      break;
  }
  return os.str();
}

}  // namespace grpo::rewards::math
