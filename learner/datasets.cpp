// Generators, traces and JSONL files of the built-in datasets (datasets.h). The checkers are in
// dataset_checkers.cpp.
#include "learner/datasets.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"

namespace grpo {
namespace {

constexpr char kOps[] = {'+', '-', '*', '/'};

int precedence(char op) { return op == '+' || op == '-' ? 1 : op == '*' || op == '/' ? 2 : 3; }
bool is_binary(char op) { return op == '+' || op == '-' || op == '*' || op == '/'; }

// Uniform integers from Philox stream `index` under key `seed`.
class Draw {
 public:
  // `offset` (in Philox blocks) separates uses of one index, e.g. the levels of an item.
  Draw(uint64_t seed, uint64_t index, uint64_t offset = 0) : stream_(seed, index, offset) {}
  // In [lo, hi], hi - lo < 2^32, by multiply-shift (bias below range / 2^32, harmless here).
  int64_t uniform(int64_t lo, int64_t hi) {
    const uint64_t range = uint64_t(hi - lo) + 1;
    return lo + int64_t((uint64_t(stream_.next_u32()) * range) >> 32);
  }

 private:
  PhiloxStream stream_;
};

std::string number_text(int64_t v, bool bracket_negative) {
  std::string s = std::to_string(v);
  return v < 0 && bracket_negative ? "(" + s + ")" : s;
}

// `bracket` asks a negative number or a unary minus to wrap itself (it is someone's operand).
void print(const Expression& e, int32_t i, bool bracket, std::string& out) {
  const ExprNode& n = e.nodes[i];
  if (n.op == 0) {
    out += number_text(n.value, bracket);
  } else if (n.op == 'n') {
    const bool inner = is_binary(e.nodes[n.left].op);
    out += bracket ? "(-" : "-";
    out += inner ? "(" : "";
    print(e, n.left, !inner, out);
    out += inner ? ")" : "";
    out += bracket ? ")" : "";
  } else {
    const ExprNode& l = e.nodes[n.left];
    const ExprNode& r = e.nodes[n.right];
    const bool bl = is_binary(l.op) && precedence(l.op) < precedence(n.op);
    const bool br = is_binary(r.op) && precedence(r.op) <= precedence(n.op);
    out += bl ? "(" : "";
    print(e, n.left, !bl, out);
    out += bl ? ") " : " ";
    out += n.op;
    out += br ? " (" : " ";
    print(e, n.right, !br, out);
    out += br ? ")" : "";
  }
}

// Recursive descent over text already checked for allowed characters. Each rule returns a
// node index, or -1 with error_ set.
class Parser {
 public:
  Parser(std::string_view text, int max_depth, Expression& e) : s_(text), max_depth_(max_depth), e_(e) {}

  ExprError run() {
    int32_t root = sum();
    skip_space();
    if (error_ == ExprError::none && pos_ != s_.size()) error_ = ExprError::syntax;
    e_.root = root;
    return error_;
  }

 private:
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  char peek() {
    skip_space();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }
  int32_t fail(ExprError e) {
    if (error_ == ExprError::none) error_ = e;
    return -1;
  }
  // Left-associative chains are loops, so only brackets and unary minus recurse.
  int32_t sum() {
    int32_t left = product();
    for (char c = peek(); left >= 0 && (c == '+' || c == '-'); c = peek()) {
      ++pos_;
      int32_t right = product();
      if (right < 0) return -1;
      left = e_.add_op(c, left, right);
    }
    return left;
  }
  int32_t product() {
    int32_t left = unary();
    for (char c = peek(); left >= 0 && (c == '*' || c == '/'); c = peek()) {
      ++pos_;
      int32_t right = unary();
      if (right < 0) return -1;
      left = e_.add_op(c, left, right);
    }
    return left;
  }
  int32_t unary() {
    const char c = peek();
    if (c != '-' && c != '(') return number();
    if (++depth_ > max_depth_) return fail(ExprError::too_deep);
    ++pos_;
    int32_t node = -1;
    if (c == '-') {
      int32_t operand = unary();
      if (operand >= 0) node = e_.add_op('n', operand);
    } else {
      node = sum();
      if (node >= 0 && peek() != ')') return fail(ExprError::syntax);
      ++pos_;
    }
    --depth_;
    return node;
  }
  int32_t number() {
    if (peek() < '0' || peek() > '9') return fail(ExprError::syntax);
    int64_t v = 0;
    for (; pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; ++pos_) {
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s_[pos_] - '0', &v))
        return fail(ExprError::number_too_large);
    }
    return e_.add_number(v);
  }

  std::string_view s_;
  size_t pos_ = 0;
  int depth_ = 0, max_depth_;
  ExprError error_ = ExprError::none;
  Expression& e_;
};

// Exact integer value of a node, throwing for a division with a remainder, by zero, or past int64.
int64_t apply_exact(char op, int64_t l, int64_t r, std::string_view context) {
  int64_t v = 0;
  bool overflow = false;
  switch (op) {
    case '+': overflow = __builtin_add_overflow(l, r, &v); break;
    case '-': overflow = __builtin_sub_overflow(l, r, &v); break;
    case '*': overflow = __builtin_mul_overflow(l, r, &v); break;
    case '/':
      GRPO_CHECK(r != 0 && l % r == 0 && !(l == INT64_MIN && r == -1),
                 context << ": " << l << " / " << r << " is not an exact integer division");
      v = l / r;
      break;
    case 'n': overflow = __builtin_sub_overflow(int64_t(0), l, &v); break;
    default: GRPO_ASSERT(false);
  }
  GRPO_CHECK(!overflow, context << ": " << l << " " << op << " " << r << " overflows int64");
  return v;
}

int64_t value_of(const Expression& e, int32_t i, std::string_view context) {
  const ExprNode& n = e.nodes[i];
  if (n.op == 0) return n.value;
  int64_t l = value_of(e, n.left, context);
  return apply_exact(n.op, l, n.op == 'n' ? 0 : value_of(e, n.right, context), context);
}

// ---- arithmetic generation

constexpr int64_t kMaxIntermediate = 1000000;

const ArithmeticLevel kLevels[kArithmeticMaxLevel] = {
    {2, 20, false}, {3, 20, false}, {4, 50, true}, {5, 100, true}, {6, 200, true}, {8, 1000, true},
};

// A random binary tree with n numbers from `leaf` (left to right) and random operators.
template <class Leaf>
int32_t random_tree(Expression& e, Draw& d, int n, Leaf& leaf) {
  if (n == 1) return e.add_number(leaf());
  const int k = int(d.uniform(1, n - 1));
  const char op = kOps[d.uniform(0, 3)];
  const int32_t l = random_tree(e, d, k, leaf);
  const int32_t r = random_tree(e, d, n - k, leaf);
  return e.add_op(op, l, r);
}

// "a op b op c ..." parsed with precedence (left-associative), so it prints without brackets.
int32_t random_chain(Expression& e, Draw& d, int n, int64_t max) {
  int32_t sum = -1, term = e.add_number(d.uniform(1, max));
  char pending = 0;
  for (int i = 1; i < n; ++i) {
    const char op = kOps[d.uniform(0, 3)];
    const int32_t next = e.add_number(d.uniform(1, max));
    if (precedence(op) == 2) {
      term = e.add_op(op, term, next);
      continue;
    }
    sum = sum < 0 ? term : e.add_op(pending, sum, term);
    pending = op;
    term = next;
  }
  return sum < 0 ? term : e.add_op(pending, sum, term);
}

// Makes l / r exact by choosing one operand when it is a number: the dividend as |r| * q
// (q >= 2), else the divisor among l's divisors in [2, max] other than |l|. False when
// neither works and r does not divide l.
bool make_exact_division(Expression& e, const ExprNode& node, int64_t& l, int64_t& r, Draw& d, int64_t max) {
  if (e.nodes[node.left].op == 0 && r != 0 && std::abs(r) * 2 <= max) {
    l = std::abs(r) * d.uniform(2, max / std::abs(r));
    e.nodes[node.left].value = l;
    return true;
  }
  if (e.nodes[node.right].op == 0 && l != 0) {
    std::vector<int64_t> divisors;
    for (int64_t k = 2; k <= max && k < std::abs(l); ++k)
      if (l % k == 0) divisors.push_back(k);
    if (!divisors.empty()) {
      r = divisors[d.uniform(0, int64_t(divisors.size()) - 1)];
      e.nodes[node.right].value = r;
      return true;
    }
  }
  return r != 0 && l % r == 0;
}

// Evaluates bottom-up while making every division exact and every value small: a division
// that cannot be made exact becomes '*'; a too-large product becomes '+' or '-'; a too-large
// sum or difference swaps to the other (|l -+ r| <= max(|l|, |r|) when l +- r is too large).
// In the flat chains of levels 1-2 only '/' -> '*' and '+' <-> '-' can happen (products stay
// below 20^3), and those keep the precedence structure, so the chain still needs no brackets.
int64_t settle(Expression& e, int32_t i, Draw& d, int64_t max) {
  const ExprNode node = e.nodes[i];
  if (node.op == 0) return node.value;
  int64_t l = settle(e, node.left, d, max);
  int64_t r = settle(e, node.right, d, max);
  char op = node.op;
  if (op == '/' && !make_exact_division(e, node, l, r, d, max)) op = '*';
  if (op == '*' && std::abs(l) * std::abs(r) > kMaxIntermediate) op = d.uniform(0, 1) ? '+' : '-';
  int64_t v = op == '+' ? l + r : op == '-' ? l - r : op == '*' ? l * r : l / r;
  if (std::abs(v) > kMaxIntermediate) {
    op = op == '+' ? '-' : '+';
    v = op == '+' ? l + r : l - r;
  }
  e.nodes[i].op = op;
  return v;
}

// The first node, in evaluation order, whose operands are all numbers.
int32_t next_reducible(const Expression& e, int32_t i) {
  const ExprNode& n = e.nodes[i];
  if (n.op == 0) return -1;
  if (int32_t l = next_reducible(e, n.left); l >= 0) return l;
  if (n.op != 'n')
    if (int32_t r = next_reducible(e, n.right); r >= 0) return r;
  return i;
}

// ---- countdown

void check_countdown_options(const CountdownOptions& o) {
  GRPO_CHECK(o.min_numbers >= 2 && o.min_numbers <= 5,
             "countdown: min_numbers must be in [2, 5], got " << o.min_numbers);
  GRPO_CHECK(o.max_numbers >= o.min_numbers && o.max_numbers <= 5,
             "countdown: max_numbers must be in [min_numbers, 5] = [" << o.min_numbers << ", 5], got "
                                                                      << o.max_numbers);
  GRPO_CHECK(o.max_number >= 1 && o.max_number <= 1000000,
             "countdown: max_number must be in [1, 1000000], got " << o.max_number);
  GRPO_CHECK(o.max_target >= 1 && o.max_target <= 1000000000,
             "countdown: max_target must be in [1, 1000000000], got " << o.max_target);
}

// Value of a random countdown tree: '/' only when exact (else redrawn among + - *); nullopt
// when a value leaves +-10^12 (the attempt is dropped).
std::optional<int64_t> settle_countdown(Expression& e, int32_t i, Draw& d) {
  constexpr int64_t kLimit = 1000000000000;
  const ExprNode node = e.nodes[i];
  if (node.op == 0) return node.value;
  std::optional<int64_t> l = settle_countdown(e, node.left, d), r = settle_countdown(e, node.right, d);
  if (!l || !r) return std::nullopt;
  char op = node.op;
  if (op == '/' && !(*r != 0 && *l % *r == 0)) op = kOps[d.uniform(0, 2)];
  int64_t v = 0;
  if (op == '*') {
    if (__builtin_mul_overflow(*l, *r, &v)) return std::nullopt;
  } else {
    v = op == '+' ? *l + *r : op == '-' ? *l - *r : *l / *r;
  }
  if (std::abs(v) > kLimit) return std::nullopt;
  e.nodes[i].op = op;
  return v;
}

struct Partial {
  int64_t value;
  int32_t node;
};

// Depth-first: combine two values, recurse. Without `negative`, intermediates stay >= 0 (the
// game's own rule, and the traces read better); bigger - smaller is tried before the reverse.
bool solve(Expression& e, std::vector<Partial>& items, int64_t target, bool negative) {
  if (items.size() == 1) return items[0].value == target;
  const size_t mark = e.nodes.size();
  for (size_t i = 0; i < items.size(); ++i) {
    for (size_t j = i + 1; j < items.size(); ++j) {
      const Partial p = items[i], q = items[j];
      const Partial a = p.value < q.value ? q : p, b = p.value < q.value ? p : q;  // a >= b
      std::vector<Partial> rest;
      for (size_t k = 0; k < items.size(); ++k)
        if (k != i && k != j) rest.push_back(items[k]);
      // (op, left, right): both orders for the non-commutative ones, bigger first.
      const std::tuple<char, Partial, Partial> moves[] = {{'+', p, q}, {'*', p, q}, {'-', a, b},
                                                          {'/', a, b}, {'-', b, a}, {'/', b, a}};
      for (const auto& [op, x, y] : moves) {
        int64_t v = 0;
        bool ok = true;
        if (op == '+') ok = !__builtin_add_overflow(x.value, y.value, &v);
        if (op == '-') ok = !__builtin_sub_overflow(x.value, y.value, &v);
        if (op == '*') ok = !__builtin_mul_overflow(x.value, y.value, &v);
        if (op == '/') {
          ok = y.value != 0 && x.value % y.value == 0 && !(x.value == INT64_MIN && y.value == -1);
          if (ok) v = x.value / y.value;
        }
        if (!ok || (v < 0 && !negative)) continue;
        // The new value goes first, so the next step tends to build on it: "1 + 2 + 3".
        rest.insert(rest.begin(), Partial{v, e.add_op(op, x.node, y.node)});
        if (solve(e, rest, target, negative)) {
          items = rest;
          return true;
        }
        rest.erase(rest.begin());
        e.nodes.resize(mark);
      }
    }
  }
  return false;
}

// One line per operator node in evaluation order: "55 + 36 = 91".
int64_t write_steps(const Expression& e, int32_t i, std::ostringstream& os) {
  const ExprNode& n = e.nodes[i];
  if (n.op == 0) return n.value;
  int64_t l = write_steps(e, n.left, os);
  if (n.op == 'n') return apply_exact('n', l, 0, "countdown trace");
  int64_t r = write_steps(e, n.right, os);
  int64_t v = apply_exact(n.op, l, r, "countdown trace");
  os << number_text(l, true) << ' ' << n.op << ' ' << number_text(r, true) << " = " << v << '\n';
  return v;
}

std::string join_numbers(const std::vector<int64_t>& numbers) {
  std::string s;
  for (size_t i = 0; i < numbers.size(); ++i) s += (i ? ", " : "") + std::to_string(numbers[i]);
  return s;
}

}  // namespace

// ---- Expression

int32_t Expression::add_number(int64_t value) {
  nodes.push_back(ExprNode{0, value, -1, -1});
  return int32_t(nodes.size() - 1);
}

int32_t Expression::add_op(char op, int32_t left, int32_t right) {
  nodes.push_back(ExprNode{op, 0, left, right});
  return int32_t(nodes.size() - 1);
}

std::string Expression::str() const {
  std::string out;
  if (root >= 0) print(*this, root, false, out);
  return out;
}

std::vector<int64_t> Expression::numbers() const {
  // Parsed and generated trees add their numbers left to right; a loop, not a walk, so a
  // hostile 50,000-term chain costs no stack.
  std::vector<int64_t> out;
  for (const ExprNode& n : nodes)
    if (n.op == 0) out.push_back(n.value);
  return out;
}

const char* expr_error_name(ExprError e) {
  switch (e) {
    case ExprError::none: return "none";
    case ExprError::bad_char: return "bad_char";
    case ExprError::syntax: return "syntax";
    case ExprError::too_deep: return "too_deep";
    case ExprError::number_too_large: return "number_too_large";
  }
  return "?";
}

ExprParse parse_expression(std::string_view text, int max_depth) {
  ExprParse out;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '*' || c == '/' || c == '(' || c == ')' || c == ' ' ||
          c == '\t' || c == '\n' || c == '\r')) {
      out.error = ExprError::bad_char;
      return out;
    }
  }
  out.error = Parser(text, max_depth, out.expr).run();
  if (out.error != ExprError::none) out.expr = Expression{};
  return out;
}

// ---- arithmetic

const ArithmeticLevel& arithmetic_level(int level) {
  GRPO_CHECK(level >= 1 && level <= kArithmeticMaxLevel,
             "arithmetic: level must be in [1, " << kArithmeticMaxLevel << "], got " << level);
  return kLevels[level - 1];
}

ArithmeticItem arithmetic_item(uint64_t seed, uint64_t index, int level, int64_t max_operand) {
  ArithmeticLevel spec = arithmetic_level(level);
  GRPO_CHECK(max_operand >= 0 && (max_operand == 0 || max_operand >= 4),
             "arithmetic: max_operand must be 0 (the level's) or >= 4, got " << max_operand);
  if (max_operand > 0) spec.max_operand = max_operand;
  Draw d(seed, index, uint64_t(level) << 32);  // the levels of one index draw independently
  Expression e;
  auto leaf = [&] { return d.uniform(1, spec.max_operand); };
  e.root = spec.brackets ? random_tree(e, d, spec.num_operands, leaf)
                         : random_chain(e, d, spec.num_operands, spec.max_operand);
  ArithmeticItem item;
  item.answer = settle(e, e.root, d, spec.max_operand);
  item.expression = e.str();
  item.prompt = "Compute " + item.expression + ".";
  item.level = level;
  return item;
}

std::string arithmetic_trace(std::string_view expression) {
  ExprParse parsed = parse_expression(expression);
  GRPO_CHECK(parsed.error == ExprError::none,
             "arithmetic trace: cannot read \"" << expression << "\" (" << expr_error_name(parsed.error) << ")");
  Expression e = std::move(parsed.expr);
  std::ostringstream os;
  os << "<think>\n" << e.str() << '\n';
  while (e.nodes[e.root].op != 0) {
    const int32_t i = next_reducible(e, e.root);
    const ExprNode n = e.nodes[i];
    const int64_t l = e.nodes[n.left].value;
    const int64_t r = n.op == 'n' ? 0 : e.nodes[n.right].value;
    const int64_t v = apply_exact(n.op, l, r, "arithmetic trace");
    e.nodes[i] = ExprNode{0, v, -1, -1};
    if (n.op == 'n') continue;  // "-5" needs no line of its own
    os << number_text(l, true) << ' ' << n.op << ' ' << number_text(r, true) << " = " << v;
    if (i != e.root) os << ", so " << e.str();
    os << '\n';
  }
  os << "</think>\n<answer>" << e.nodes[e.root].value << "</answer>";
  return os.str();
}

// ---- countdown

std::string CountdownItem::reference() const {
  return nlohmann::json{{"numbers", numbers}, {"target", target}}.dump();
}

CountdownItem countdown_item(uint64_t seed, uint64_t index, const CountdownOptions& options) {
  check_countdown_options(options);
  Draw d(seed, index);
  // Most attempts land in [1, max_target] for the defaults (about one in four); the bound only
  // stops options under which that almost never happens.
  for (int attempt = 0; attempt < 100000; ++attempt) {
    CountdownItem item;
    const int n = int(d.uniform(options.min_numbers, options.max_numbers));
    for (int k = 0; k < n; ++k) item.numbers.push_back(d.uniform(1, options.max_number));
    std::vector<int64_t> order = item.numbers;  // the expression uses them in a random order
    for (int k = n - 1; k > 0; --k) std::swap(order[k], order[d.uniform(0, k)]);
    Expression e;
    size_t next = 0;
    auto leaf = [&] { return order[next++]; };
    e.root = random_tree(e, d, n, leaf);
    std::optional<int64_t> target = settle_countdown(e, e.root, d);
    if (!target || *target < 1 || *target > options.max_target) continue;
    item.target = *target;
    item.solution = e.str();
    item.prompt = "Using the numbers [" + join_numbers(item.numbers) + "], create an equation that equals " +
                  std::to_string(item.target) +
                  ". You can use basic arithmetic operations (+, -, *, /) and each number must be used exactly once.";
    return item;
  }
  GRPO_THROW("countdown: no target in [1, " << options.max_target << "] after 100000 attempts (seed " << seed
                                             << ", index " << index << "); raise max_target");
}

std::optional<Expression> countdown_solve(const std::vector<int64_t>& numbers, int64_t target) {
  GRPO_CHECK(!numbers.empty() && numbers.size() <= 5,
             "countdown solver: needs 1 to 5 numbers, got " << numbers.size());
  Expression e;
  std::vector<Partial> items;
  for (int64_t v : numbers) items.push_back({v, e.add_number(v)});
  // Nonnegative intermediates first; the generator's own solution may need a negative one.
  if (!solve(e, items, target, false) && !solve(e, items, target, true)) return std::nullopt;
  e.root = items[0].node;
  return e;
}

std::string countdown_trace(const std::vector<int64_t>& numbers, int64_t target) {
  std::optional<Expression> solution = countdown_solve(numbers, target);
  GRPO_CHECK(solution.has_value(), "countdown trace: " << target << " cannot be made from " << join_numbers(numbers));
  std::ostringstream os;
  os << "<think>\nNumbers " << join_numbers(numbers) << "; target " << target << ".\n";
  write_steps(*solution, solution->root, os);
  os << "</think>\n<answer>" << solution->str() << "</answer>";
  return os.str();
}

// ---- JSONL

DatasetSpec parse_dataset_spec(ConfigNode& node) {
  DatasetSpec s;
  s.name = node.get_choice("name", s.name, {"arithmetic", "countdown"});
  s.seed = node.get<uint64_t>("seed", s.seed);
  s.first_index = node.get<uint64_t>("first_index", s.first_index);
  s.count = node.get<int64_t>("count", s.count);
  GRPO_CHECK(s.count >= 0, node.key_path("count") << " must be >= 0, got " << s.count);
  if (s.name == "arithmetic") {
    s.min_level = node.get<int>("min_level", s.min_level);
    s.max_level = node.get<int>("max_level", s.max_level);
    GRPO_CHECK(s.min_level >= 1 && s.min_level <= kArithmeticMaxLevel,
               node.key_path("min_level") << " must be in [1, " << kArithmeticMaxLevel << "], got " << s.min_level);
    GRPO_CHECK(s.max_level >= s.min_level && s.max_level <= kArithmeticMaxLevel,
               node.key_path("max_level") << " must be in [min_level, " << kArithmeticMaxLevel << "], got "
                                          << s.max_level);
    s.max_operand = node.get<int64_t>("max_operand", s.max_operand);
    GRPO_CHECK(s.max_operand == 0 || (s.max_operand >= 4 && s.max_operand <= 1000),
               node.key_path("max_operand") << " must be 0 (the level's range) or in [4, 1000], got " << s.max_operand);
  } else {
    CountdownOptions& c = s.countdown;
    c.min_numbers = node.get<int>("min_numbers", c.min_numbers);
    c.max_numbers = node.get<int>("max_numbers", c.max_numbers);
    c.max_number = node.get<int64_t>("max_number", c.max_number);
    c.max_target = node.get<int64_t>("max_target", c.max_target);
    check_countdown_options(c);
  }
  s.completions = node.get<bool>("completions", s.completions);
  return s;
}

std::vector<DatasetRecord> generate_dataset(const DatasetSpec& spec) {
  GRPO_CHECK(spec.name == "arithmetic" || spec.name == "countdown",
             "dataset: unknown name \"" << spec.name << "\" (known: arithmetic, countdown)");
  GRPO_CHECK(spec.count >= 0, "dataset: count must be >= 0, got " << spec.count);
  std::vector<DatasetRecord> out;
  for (uint64_t i = spec.first_index; i < spec.first_index + uint64_t(spec.count); ++i) {
    DatasetRecord r;
    r.id = i;
    r.checker = spec.name;
    if (spec.name == "arithmetic") {
      arithmetic_level(spec.min_level);
      GRPO_CHECK(spec.max_level >= spec.min_level, "dataset: max_level " << spec.max_level << " < min_level "
                                                                          << spec.min_level);
      const int level = spec.min_level + int(i % uint64_t(spec.max_level - spec.min_level + 1));
      ArithmeticItem item = arithmetic_item(spec.seed, i, level, spec.max_operand);
      r.prompt = item.prompt;
      r.reference = std::to_string(item.answer);
      r.level = level;
      if (spec.completions) r.completion = arithmetic_trace(item.expression);
    } else {
      CountdownItem item = countdown_item(spec.seed, i, spec.countdown);
      r.prompt = item.prompt;
      r.reference = item.reference();
      if (spec.completions) r.completion = countdown_trace(item.numbers, item.target);
    }
    out.push_back(std::move(r));
  }
  return out;
}

void write_dataset_jsonl(const std::string& path, const std::vector<DatasetRecord>& records) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    GRPO_CHECK(out.is_open(), "dataset: cannot write " << tmp);
    for (const DatasetRecord& r : records) {
      nlohmann::ordered_json j{{"id", r.id}, {"checker", r.checker}, {"prompt", r.prompt}, {"reference", r.reference}};
      if (r.level > 0) j["level"] = r.level;
      if (!r.completion.empty()) j["completion"] = r.completion;
      out << j.dump() << '\n';
    }
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      GRPO_THROW("dataset: writing " << tmp << " failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    GRPO_THROW("dataset: cannot rename " << tmp << " to " << path << ": " << ec.message());
  }
}

std::vector<DatasetRecord> read_dataset_jsonl(const std::string& path) {
  using Json = nlohmann::json;
  static const std::vector<std::string> kKeys = {"id", "checker", "prompt", "reference", "completion", "level"};
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.is_open(), "dataset: cannot open " << path);
  std::vector<DatasetRecord> out;
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string at = path + ":" + std::to_string(lineno);
    Json j;
    try {
      j = Json::parse(line);
    } catch (const Json::parse_error& e) {
      GRPO_THROW(at << ": not valid JSON: " << e.what());
    }
    GRPO_CHECK(j.is_object(), at << ": expected a JSON object, got " << j.type_name());
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (std::find(kKeys.begin(), kKeys.end(), it.key()) != kKeys.end()) continue;
      std::string hint = closest_match(it.key(), kKeys);
      GRPO_THROW(at << ": unknown key \"" << it.key() << "\""
                    << (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
    }
    auto text = [&](const char* key) {
      GRPO_CHECK(j[key].is_string(), at << ": \"" << key << "\" must be a string, got " << j[key].type_name());
      return j[key].get<std::string>();
    };
    DatasetRecord r;
    GRPO_CHECK(j.contains("prompt"), at << ": missing \"prompt\"");
    r.prompt = text("prompt");
    if (j.contains("checker")) r.checker = text("checker");
    if (j.contains("completion")) r.completion = text("completion");
    if (j.contains("reference")) {
      const Json& ref = j["reference"];
      GRPO_CHECK(ref.is_string() || ref.is_number_integer() || ref.is_object(),
                 at << ": \"reference\" must be a string, an integer or an object, got " << ref.type_name());
      r.reference = ref.is_string() ? ref.get<std::string>() : ref.dump();
    }
    if (j.contains("id")) {
      GRPO_CHECK(j["id"].is_number_unsigned(), at << ": \"id\" must be a non-negative integer, got " << j["id"].dump());
      r.id = j["id"].get<uint64_t>();
    } else {
      r.id = uint64_t(out.size());
    }
    if (j.contains("level")) {
      const Json& level = j["level"];
      GRPO_CHECK(level.is_number_integer() && level.get<int64_t>() >= 1 && level.get<int64_t>() <= kArithmeticMaxLevel,
                 at << ": \"level\" must be an integer in [1, " << kArithmeticMaxLevel << "], got " << level.dump());
      r.level = level.get<int>();
    }
    out.push_back(std::move(r));
  }
  GRPO_CHECK(!in.bad(), "dataset: reading " << path << " failed");
  return out;
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[size_t(i)] = i;
  PhiloxStream rng(seed, uint64_t(epoch));
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[rng.next_u32() % uint64_t(i + 1)]);
  return order;
}

}  // namespace grpo
