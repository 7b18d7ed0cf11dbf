#include "alpa/serve/chat_template.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>

namespace alpa::serve {
namespace {

constexpr const char* kSubsetHint =
    "chat templates are evaluated by a subset of Jinja (docs/chat_templates.md); rewrite the "
    "template with the supported constructs";

// ---- values --------------------------------------------------------------------------------

struct Value {
  enum class Kind : uint8_t { kUndefined, kNone, kBool, kInt, kString, kList, kMap };
  Kind kind = Kind::kUndefined;
  bool b = false;
  int64_t i = 0;
  std::string s;
  std::shared_ptr<std::vector<Value>> list;
  std::shared_ptr<std::map<std::string, Value>> map;

  static Value none() { return make(Kind::kNone); }
  static Value boolean(bool v) {
    Value x = make(Kind::kBool);
    x.b = v;
    return x;
  }
  static Value integer(int64_t v) {
    Value x = make(Kind::kInt);
    x.i = v;
    return x;
  }
  static Value string(std::string v) {
    Value x = make(Kind::kString);
    x.s = std::move(v);
    return x;
  }
  static Value new_list() {
    Value x = make(Kind::kList);
    x.list = std::make_shared<std::vector<Value>>();
    return x;
  }
  static Value new_map() {
    Value x = make(Kind::kMap);
    x.map = std::make_shared<std::map<std::string, Value>>();
    return x;
  }
  static Value make(Kind k) {
    Value x;
    x.kind = k;
    return x;
  }
  bool numeric() const { return kind == Kind::kInt || kind == Kind::kBool; }
  int64_t number() const { return kind == Kind::kBool ? int64_t{b} : i; }
};

const char* kind_name(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return "an undefined value";
    case Value::Kind::kNone: return "none";
    case Value::Kind::kBool: return "a boolean";
    case Value::Kind::kInt: return "an integer";
    case Value::Kind::kString: return "a string";
    case Value::Kind::kList: return "a list";
    case Value::Kind::kMap: return "a mapping";
  }
  return "a value";
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return false;
    case Value::Kind::kBool: return v.b;
    case Value::Kind::kInt: return v.i != 0;
    case Value::Kind::kString: return !v.s.empty();
    case Value::Kind::kList: return !v.list->empty();
    case Value::Kind::kMap: return !v.map->empty();
  }
  return false;
}

bool equal(const Value& a, const Value& b) {
  if (a.numeric() && b.numeric()) return a.number() == b.number();
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::kString: return a.s == b.s;
    case Value::Kind::kList:
      return a.list->size() == b.list->size() &&
             std::equal(a.list->begin(), a.list->end(), b.list->begin(), equal);
    case Value::Kind::kMap: return a.map == b.map;
    default: return true;  // undefined, none
  }
}

nlohmann::json to_json(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kBool: return v.b;
    case Value::Kind::kInt: return v.i;
    case Value::Kind::kString: return v.s;
    case Value::Kind::kList: {
      nlohmann::json j = nlohmann::json::array();
      for (const Value& x : *v.list) j.push_back(to_json(x));
      return j;
    }
    case Value::Kind::kMap: {
      nlohmann::json j = nlohmann::json::object();
      for (const auto& [k, x] : *v.map) j[k] = to_json(x);
      return j;
    }
    default: return nullptr;
  }
}

// Python's str() of a printable value; lists and mappings are printed as JSON.
std::string to_text(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return "";
    case Value::Kind::kNone: return "None";
    case Value::Kind::kBool: return v.b ? "True" : "False";
    case Value::Kind::kInt: return std::to_string(v.i);
    case Value::Kind::kString: return v.s;
    default: return to_json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

// ---- tokens ---------------------------------------------------------------------------------

enum class Tok : uint8_t { kName, kString, kInt, kOp };

struct Token {
  Tok kind;
  std::string text;  // name, operator, or the string's value
  int64_t value = 0;
  int line = 1;
};

// A piece of the template: text, {{ expression }}, {% statement %} or {# comment #}.
struct Piece {
  enum class Kind : uint8_t { kText, kOutput, kStatement, kComment } kind = Kind::kText;
  std::string text;
  std::vector<Token> tokens;
  int line = 1;
  bool minus_left = false, plus_left = false, minus_right = false;
  bool block() const { return kind == Kind::kStatement || kind == Kind::kComment; }
};

struct Lexer {
  std::string_view src;
  std::string_view file;
  size_t pos = 0;
  int line = 1;

  Status error(int at_line, const std::string& message) const {
    return parse_error(cat(file, ":", at_line, ": ", message), kSubsetHint);
  }

  Status read_string(Token& t) {
    const char quote = src[pos++];
    while (pos < src.size() && src[pos] != quote) {
      char c = src[pos++];
      if (c == '\n') ++line;
      if (c == '\\' && pos < src.size()) {
        const char e = src[pos++];
        c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        if (e != 'n' && e != 't' && e != 'r' && e != '\\' && e != '\'' && e != '"') {
          t.text += '\\';
        }
      }
      t.text += c;
    }
    if (pos >= src.size()) return error(t.line, "unterminated string literal");
    ++pos;
    return ok_status();
  }

  // Tokens up to the closer of the tag ("}}" or "%}", optionally "-}}" / "-%}").
  Status read_tag(Piece& p, char closer) {
    for (;;) {
      while (pos < src.size() && std::isspace(static_cast<unsigned char>(src[pos]))) {
        if (src[pos++] == '\n') ++line;
      }
      if (pos >= src.size()) return error(p.line, "the tag is not closed");
      const std::string_view rest = src.substr(pos);
      const std::string close = std::string(1, closer) + "}";
      if (rest.substr(0, 2) == close || rest.substr(0, 3) == "-" + close) {
        p.minus_right = rest[0] == '-';
        pos += p.minus_right ? 3 : 2;
        return ok_status();
      }
      Token t{Tok::kOp, "", 0, line};
      const unsigned char c = static_cast<unsigned char>(src[pos]);
      if (std::isalpha(c) || c == '_') {
        while (pos < src.size() &&
               (std::isalnum(static_cast<unsigned char>(src[pos])) || src[pos] == '_'))
          t.text += src[pos++];
        t.kind = Tok::kName;
      } else if (std::isdigit(c)) {
        while (pos < src.size() && std::isdigit(static_cast<unsigned char>(src[pos])))
          t.text += src[pos++];
        if (pos < src.size() && src[pos] == '.')
          return error(line, "floating-point numbers are not supported");
        if (t.text.size() > 18) return error(line, cat("the number ", t.text, " is too large"));
        t.kind = Tok::kInt;
        t.value = std::stoll(t.text);
      } else if (c == '\'' || c == '"') {
        t.kind = Tok::kString;
        ALPA_RETURN_IF_ERROR(read_string(t));
      } else {
        static const char* kOps[] = {"==", "!=", "<=", ">=", "//", "+", "-", "*",
                                     "/",  "%",  "~",  "<",  ">",  "(", ")", "[",
                                     "]",  ".",  ",",  "|",  ":",  "=", "{", "}"};
        for (const char* op : kOps)
          if (rest.substr(0, std::char_traits<char>::length(op)) == op) {
            t.text = op;
            break;
          }
        if (t.text.empty()) return error(line, cat("unexpected character '", src[pos], "'"));
        pos += t.text.size();
      }
      p.tokens.push_back(std::move(t));
    }
  }

  Result<std::vector<Piece>> pieces() {
    std::vector<Piece> out;
    while (pos <= src.size()) {
      size_t at = pos;
      for (;; ++at) {
        at = src.find('{', at);
        if (at == std::string_view::npos || at + 1 >= src.size()) {
          at = std::string_view::npos;
          break;
        }
        if (src[at + 1] == '{' || src[at + 1] == '%' || src[at + 1] == '#') break;
      }
      Piece text;
      text.text = std::string(src.substr(pos, at == std::string_view::npos ? at : at - pos));
      text.line = line;
      line += static_cast<int>(std::count(text.text.begin(), text.text.end(), '\n'));
      out.push_back(std::move(text));
      if (at == std::string_view::npos) break;
      Piece tag;
      tag.line = line;
      const char opener = src[at + 1];
      pos = at + 2;
      tag.minus_left = pos < src.size() && src[pos] == '-';
      tag.plus_left = pos < src.size() && src[pos] == '+';
      if (tag.minus_left || tag.plus_left) ++pos;
      if (opener == '#') {
        const size_t end = src.find("#}", pos);
        if (end == std::string_view::npos) return error(tag.line, "the comment is not closed");
        tag.kind = Piece::Kind::kComment;
        tag.minus_right = end > pos && src[end - 1] == '-';
        line += static_cast<int>(std::count(src.begin() + pos, src.begin() + end, '\n'));
        pos = end + 2;
      } else {
        tag.kind = opener == '{' ? Piece::Kind::kOutput : Piece::Kind::kStatement;
        ALPA_RETURN_IF_ERROR(read_tag(tag, opener == '{' ? '}' : '%'));
      }
      out.push_back(std::move(tag));
    }
    return out;
  }
};

// Whitespace control as Hugging Face renders chat templates: "-" strips all whitespace on that
// side; otherwise block tags drop the newline that follows them (trim_blocks) and the spaces
// that precede them on their line (lstrip_blocks).
void apply_whitespace_control(std::vector<Piece>& pieces) {
  for (size_t k = 0; k < pieces.size(); k += 2) {
    const std::string& t = pieces[k].text;
    size_t begin = 0, end = t.size();
    if (k > 0) {
      const Piece& before = pieces[k - 1];
      if (before.minus_right) {
        while (begin < t.size() && std::isspace(static_cast<unsigned char>(t[begin]))) ++begin;
      } else if (before.block()) {
        if (t.compare(0, 1, "\n") == 0) begin = 1;
        if (t.compare(0, 2, "\r\n") == 0) begin = 2;
      }
    }
    if (k + 1 < pieces.size()) {
      const Piece& after = pieces[k + 1];
      if (after.minus_left) {
        while (end > begin && std::isspace(static_cast<unsigned char>(t[end - 1]))) --end;
      } else if (after.block() && !after.plus_left) {
        const size_t nl = t.rfind('\n');
        const size_t line_start = nl == std::string::npos ? 0 : nl + 1;
        const bool at_line_start = nl != std::string::npos || k == 0;
        if (at_line_start && t.find_first_not_of(" \t", line_start) == std::string::npos)
          end = std::max(begin, line_start);
      }
    }
    pieces[k].text = end > begin ? t.substr(begin, end - begin) : "";
  }
}

// ---- expressions ----------------------------------------------------------------------------

struct Expr {
  enum class Op : uint8_t {
    kLiteral,  // value
    kName,     // name
    kAttr,     // kids[0].name
    kIndex,    // kids[0][kids[1]]
    kSlice,    // kids[0][kids[1]:kids[2]] (null bounds: open)
    kNot,
    kNeg,
    kBinary,  // kids[0] name kids[1]
    kAnd,
    kOr,
    kCond,  // kids[1] if kids[0] else kids[2]
    kList,
    kFilter,  // kids[0] | name
    kTest,    // kids[0] is [not] name
    kMethod,  // kids[0].name(kids[1:])
    kRaise    // raise_exception(kids[0])
  };
  Op op = Op::kLiteral;
  std::string name;
  Value value;
  bool negate = false;
  int line = 1;
  std::vector<std::unique_ptr<Expr>> kids;
};
using ExprPtr = std::unique_ptr<Expr>;

ExprPtr make_expr(Expr::Op op, int line, std::string name = {}) {
  auto e = std::make_unique<Expr>();
  e->op = op;
  e->line = line;
  e->name = std::move(name);
  return e;
}

const std::vector<std::string> kFilters = {"trim",       "upper",  "lower",
                                           "capitalize", "length", "tojson"};
const std::vector<std::string> kTests = {"defined", "undefined", "none", "string", "number"};
const std::vector<std::string> kMethods = {"strip", "lstrip",     "rstrip",  "upper",
                                           "lower", "startswith", "endswith"};

bool listed(const std::vector<std::string>& names, const std::string& n) {
  return std::find(names.begin(), names.end(), n) != names.end();
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// Recursive descent over one tag's tokens, with Jinja's precedence (loosest first):
// conditional, or, and, not, comparison and in, ~, + -, * // %, unary -, then postfix
// (attribute, index, slice, call, filter, test) on a primary.
class ExprParser {
 public:
  ExprParser(const std::vector<Token>& tokens, size_t start, std::string_view file, int line)
      : t_(tokens), at_(start), file_(file), line_(line) {}

  bool done() const { return at_ >= t_.size(); }
  size_t position() const { return at_; }
  Status error(const std::string& message) const {
    const int line = done() ? line_ : t_[at_].line;
    return parse_error(cat(file_, ":", line, ": ", message), kSubsetHint);
  }
  bool is_op(std::string_view op) const {
    return !done() && t_[at_].kind == Tok::kOp && t_[at_].text == op;
  }
  bool is_name(std::string_view n) const {
    return !done() && t_[at_].kind == Tok::kName && t_[at_].text == n;
  }
  bool accept_op(std::string_view op) { return is_op(op) ? (++at_, true) : false; }
  bool accept_name(std::string_view n) { return is_name(n) ? (++at_, true) : false; }
  Status expect_op(std::string_view op) {
    if (accept_op(op)) return ok_status();
    return error(cat("expected '", op, "'", done() ? " before the end of the tag" : ""));
  }
  Result<std::string> name() {
    if (done() || t_[at_].kind != Tok::kName) return error("expected a name");
    return t_[at_++].text;
  }
  int line() const { return done() ? line_ : t_[at_].line; }

  Result<ExprPtr> expression() {
    ALPA_ASSIGN_OR_RETURN(ExprPtr value, logical(false));
    if (!is_name("if")) return value;
    ExprPtr e = make_expr(Expr::Op::kCond, line());
    ++at_;
    ALPA_ASSIGN_OR_RETURN(ExprPtr cond, logical(false));
    ExprPtr otherwise = make_expr(Expr::Op::kLiteral, line());
    if (accept_name("else")) {
      ALPA_ASSIGN_OR_RETURN(otherwise, expression());
    }
    e->kids.push_back(std::move(cond));
    e->kids.push_back(std::move(value));
    e->kids.push_back(std::move(otherwise));
    return e;
  }

 private:
  // or (and_level false) / and (true) chains.
  Result<ExprPtr> logical(bool and_level) {
    ALPA_ASSIGN_OR_RETURN(ExprPtr left, and_level ? negation() : logical(true));
    const char* word = and_level ? "and" : "or";
    while (is_name(word)) {
      ExprPtr e = make_expr(and_level ? Expr::Op::kAnd : Expr::Op::kOr, line());
      ++at_;
      ALPA_ASSIGN_OR_RETURN(ExprPtr right, and_level ? negation() : logical(true));
      e->kids.push_back(std::move(left));
      e->kids.push_back(std::move(right));
      left = std::move(e);
    }
    return left;
  }

  Result<ExprPtr> negation() {
    if (!accept_name("not")) return comparison();
    ExprPtr e = make_expr(Expr::Op::kNot, line());
    ALPA_ASSIGN_OR_RETURN(ExprPtr x, negation());
    e->kids.push_back(std::move(x));
    return e;
  }

  Result<ExprPtr> comparison() {
    ALPA_ASSIGN_OR_RETURN(ExprPtr left, binary(0));
    for (;;) {
      std::string op;
      for (const char* c : {"==", "!=", "<=", ">=", "<", ">"})
        if (is_op(c)) op = c;
      if (is_name("in")) op = "in";
      if (is_name("not") && at_ + 1 < t_.size() && t_[at_ + 1].kind == Tok::kName &&
          t_[at_ + 1].text == "in") {
        op = "not in";
        ++at_;
      }
      if (op.empty()) return left;
      ++at_;
      ExprPtr e = make_expr(Expr::Op::kBinary, line(), op);
      ALPA_ASSIGN_OR_RETURN(ExprPtr right, binary(0));
      e->kids.push_back(std::move(left));
      e->kids.push_back(std::move(right));
      left = std::move(e);
    }
  }

  // Levels: 0 "~", 1 "+ -", 2 "* // %".
  Result<ExprPtr> binary(int level) {
    static const std::vector<std::vector<std::string>> kLevels = {
        {"~"}, {"+", "-"}, {"*", "//", "%"}};
    auto next = [&]() -> Result<ExprPtr> { return level == 2 ? unary() : binary(level + 1); };
    ALPA_ASSIGN_OR_RETURN(ExprPtr left, next());
    for (;;) {
      if (is_op("/")) return error("'/' is not supported (integers only: use //)");
      std::string op;
      for (const std::string& c : kLevels[level])
        if (is_op(c)) op = c;
      if (op.empty()) return left;
      ++at_;
      ExprPtr e = make_expr(Expr::Op::kBinary, line(), op);
      ALPA_ASSIGN_OR_RETURN(ExprPtr right, next());
      e->kids.push_back(std::move(left));
      e->kids.push_back(std::move(right));
      left = std::move(e);
    }
  }

  Result<ExprPtr> unary() {
    if (!accept_op("-")) return postfix();
    ExprPtr e = make_expr(Expr::Op::kNeg, line());
    ALPA_ASSIGN_OR_RETURN(ExprPtr x, unary());
    e->kids.push_back(std::move(x));
    return e;
  }

  Result<ExprPtr> subscript(ExprPtr base) {
    const int ln = line();
    ExprPtr lo, hi;
    if (!is_op(":")) {
      ALPA_ASSIGN_OR_RETURN(lo, expression());
    }
    if (accept_op(":")) {
      if (!is_op("]")) {
        ALPA_ASSIGN_OR_RETURN(hi, expression());
      }
      if (is_op(":")) return error("slices with a step are not supported");
      ALPA_RETURN_IF_ERROR(expect_op("]"));
      ExprPtr e = make_expr(Expr::Op::kSlice, ln);
      e->kids.push_back(std::move(base));
      e->kids.push_back(std::move(lo));
      e->kids.push_back(std::move(hi));
      return e;
    }
    ALPA_RETURN_IF_ERROR(expect_op("]"));
    ExprPtr e = make_expr(Expr::Op::kIndex, ln);
    e->kids.push_back(std::move(base));
    e->kids.push_back(std::move(lo));
    return e;
  }

  Result<std::vector<ExprPtr>> arguments() {
    std::vector<ExprPtr> args;
    while (!accept_op(")")) {
      if (!args.empty()) ALPA_RETURN_IF_ERROR(expect_op(","));
      if (!done() && t_[at_].kind == Tok::kName && at_ + 1 < t_.size() &&
          t_[at_ + 1].kind == Tok::kOp && t_[at_ + 1].text == "=")
        return error("keyword arguments are not supported");
      ALPA_ASSIGN_OR_RETURN(ExprPtr a, expression());
      args.push_back(std::move(a));
    }
    return args;
  }

  Result<ExprPtr> call(ExprPtr callee) {
    const bool is_raise = callee->op == Expr::Op::kName && callee->name == "raise_exception";
    const bool is_method = callee->op == Expr::Op::kAttr && listed(kMethods, callee->name);
    if (!is_raise && !is_method) {
      if (callee->op == Expr::Op::kAttr)
        return error(cat("the method '", callee->name,
                         "' is not supported (supported: ", joined(kMethods), ")"));
      if (callee->op == Expr::Op::kName)
        return error(
            cat("the function '", callee->name, "' is not supported (supported: raise_exception)"));
      return error("only raise_exception and string methods can be called");
    }
    ALPA_ASSIGN_OR_RETURN(std::vector<ExprPtr> args, arguments());
    if (is_raise) {
      if (args.size() != 1) return error("raise_exception takes one argument");
      ExprPtr e = make_expr(Expr::Op::kRaise, callee->line);
      e->kids.push_back(std::move(args[0]));
      return e;
    }
    const bool one = callee->name == "startswith" || callee->name == "endswith";
    if (args.size() != (one ? 1u : 0u))
      return error(
          cat("the method ", callee->name, "() takes ", one ? "one argument" : "no arguments"));
    ExprPtr e = make_expr(Expr::Op::kMethod, callee->line, callee->name);
    e->kids.push_back(std::move(callee->kids[0]));
    for (ExprPtr& a : args) e->kids.push_back(std::move(a));
    return e;
  }

  Result<ExprPtr> filter_or_test(ExprPtr base, bool test) {
    const int ln = line();
    ExprPtr e = make_expr(test ? Expr::Op::kTest : Expr::Op::kFilter, ln);
    if (test) e->negate = accept_name("not");
    if (test && (is_name("none") || is_name("None"))) {
      e->name = "none";
      ++at_;
    } else {
      ALPA_ASSIGN_OR_RETURN(e->name, name());
    }
    const std::vector<std::string>& known = test ? kTests : kFilters;
    if (!listed(known, e->name))
      return error(cat("the ", test ? "test" : "filter", " '", e->name,
                       "' is not supported (supported: ", joined(known), ")"));
    if (is_op("("))
      return error(
          cat("the ", test ? "test" : "filter", " '", e->name, "' takes no arguments here"));
    e->kids.push_back(std::move(base));
    return e;
  }

  Result<ExprPtr> postfix() {
    ALPA_ASSIGN_OR_RETURN(ExprPtr e, primary());
    for (;;) {
      if (accept_op(".")) {
        ExprPtr a = make_expr(Expr::Op::kAttr, line());
        ALPA_ASSIGN_OR_RETURN(a->name, name());
        a->kids.push_back(std::move(e));
        e = std::move(a);
      } else if (accept_op("[")) {
        ALPA_ASSIGN_OR_RETURN(e, subscript(std::move(e)));
      } else if (accept_op("(")) {
        ALPA_ASSIGN_OR_RETURN(e, call(std::move(e)));
      } else if (accept_op("|")) {
        ALPA_ASSIGN_OR_RETURN(e, filter_or_test(std::move(e), false));
      } else if (accept_name("is")) {
        ALPA_ASSIGN_OR_RETURN(e, filter_or_test(std::move(e), true));
      } else {
        return e;
      }
    }
  }

  Result<ExprPtr> primary() {
    if (done()) return error("expected an expression");
    const Token& t = t_[at_];
    ExprPtr e = make_expr(Expr::Op::kLiteral, t.line);
    if (t.kind == Tok::kString) {
      std::string text;
      while (!done() && t_[at_].kind == Tok::kString) text += t_[at_++].text;  // 'a' 'b'
      e->value = Value::string(std::move(text));
      return e;
    }
    ++at_;
    if (t.kind == Tok::kInt) {
      e->value = Value::integer(t.value);
    } else if (t.kind == Tok::kName) {
      if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
        e->value = Value::boolean(t.text[0] == 't' || t.text[0] == 'T');
      } else if (t.text == "none" || t.text == "None") {
        e->value = Value::none();
      } else {
        e->op = Expr::Op::kName;
        e->name = t.text;
      }
    } else if (t.text == "(") {
      ALPA_ASSIGN_OR_RETURN(e, expression());
      if (is_op(",")) return error("tuples are not supported");
      ALPA_RETURN_IF_ERROR(expect_op(")"));
    } else if (t.text == "[") {
      e->op = Expr::Op::kList;
      while (!accept_op("]")) {
        if (!e->kids.empty()) ALPA_RETURN_IF_ERROR(expect_op(","));
        ALPA_ASSIGN_OR_RETURN(ExprPtr x, expression());
        e->kids.push_back(std::move(x));
      }
    } else if (t.text == "{") {
      --at_;
      return error("dictionary literals are not supported");
    } else {
      --at_;
      return error(cat("unexpected '", t.text, "'"));
    }
    return e;
  }

  const std::vector<Token>& t_;
  size_t at_;
  std::string_view file_;
  int line_;
};

}  // namespace

// ---- statements -----------------------------------------------------------------------------

struct ChatTemplate::Node {
  enum class Kind : uint8_t { kText, kOutput, kIf, kFor, kSet } kind = Kind::kText;
  std::string text;                                             // text; the variable of for and set
  ExprPtr expr;                                                 // output, for (the sequence), set
  std::vector<std::pair<ExprPtr, std::vector<Node>>> branches;  // if: condition (null: else)
  std::vector<Node> body;                                       // for; the root's statements
};

namespace {

using Node = ChatTemplate::Node;

class BlockParser {
 public:
  BlockParser(std::vector<Piece> pieces, std::string_view file)
      : pieces_(std::move(pieces)), file_(file) {}

  // Nodes up to a statement named in `ends` (its keyword in *ended, its parser positioned
  // after the keyword in *rest) or, when `ends` is empty, to the end of the template.
  Status body(std::vector<Node>& out, const std::vector<std::string>& ends, int opened_at,
              const std::string& opener, std::string* ended, std::unique_ptr<ExprParser>* rest) {
    while (at_ < pieces_.size()) {
      const Piece& p = pieces_[at_++];
      if (p.kind == Piece::Kind::kComment) continue;
      if (p.kind == Piece::Kind::kText) {
        if (!p.text.empty()) out.push_back(Node{Node::Kind::kText, p.text, nullptr, {}, {}});
        continue;
      }
      auto ep = std::make_unique<ExprParser>(p.tokens, 0, file_, p.line);
      if (p.kind == Piece::Kind::kOutput) {
        Node n;
        n.kind = Node::Kind::kOutput;
        ALPA_ASSIGN_OR_RETURN(n.expr, ep->expression());
        ALPA_RETURN_IF_ERROR(finish(*ep));
        out.push_back(std::move(n));
        continue;
      }
      ALPA_ASSIGN_OR_RETURN(std::string keyword, ep->name());
      if (listed(ends, keyword)) {
        *ended = keyword;
        *rest = std::move(ep);
        return ok_status();
      }
      Node n;
      if (keyword == "if") {
        ALPA_RETURN_IF_ERROR(parse_if(*ep, p.line, n));
      } else if (keyword == "for") {
        ALPA_RETURN_IF_ERROR(parse_for(*ep, p.line, n));
      } else if (keyword == "set") {
        ALPA_RETURN_IF_ERROR(parse_set(*ep, n));
      } else if (keyword == "endif" || keyword == "endfor" || keyword == "elif" ||
                 keyword == "else") {
        return error(p.line, cat("'{% ", keyword, " %}' without a matching opening tag"));
      } else {
        return error(p.line, cat("the tag '{% ", keyword,
                                 " %}' is not supported (supported: if, elif, else, endif, for, "
                                 "endfor, set)"));
      }
      out.push_back(std::move(n));
    }
    if (!ends.empty())
      return error(opened_at,
                   cat("'{% ", opener, " %}' is not closed by '{% ", ends.back(), " %}'"));
    return ok_status();
  }

 private:
  Status error(int line, const std::string& message) const {
    return parse_error(cat(file_, ":", line, ": ", message), kSubsetHint);
  }
  static Status finish(const ExprParser& ep) {
    return ep.done() ? ok_status() : ep.error("unexpected text at the end of the tag");
  }

  Status parse_if(ExprParser& ep, int line, Node& n) {
    n.kind = Node::Kind::kIf;
    ALPA_ASSIGN_OR_RETURN(ExprPtr cond, ep.expression());
    ALPA_RETURN_IF_ERROR(finish(ep));
    for (;;) {
      std::vector<Node> branch;
      std::string ended;
      std::unique_ptr<ExprParser> rest;
      ALPA_RETURN_IF_ERROR(body(branch, {"elif", "else", "endif"}, line, "if", &ended, &rest));
      n.branches.emplace_back(std::move(cond), std::move(branch));
      if (ended == "endif") return finish(*rest);
      if (n.branches.back().first == nullptr)
        return rest->error(cat("'{% ", ended, " %}' after '{% else %}'"));
      if (ended == "else") {
        cond = nullptr;
      } else {
        ALPA_ASSIGN_OR_RETURN(cond, rest->expression());
      }
      ALPA_RETURN_IF_ERROR(finish(*rest));
    }
  }

  Status parse_for(ExprParser& ep, int line, Node& n) {
    n.kind = Node::Kind::kFor;
    ALPA_ASSIGN_OR_RETURN(n.text, ep.name());
    if (ep.is_op(",")) return ep.error("unpacking several loop variables is not supported");
    if (!ep.accept_name("in")) return ep.error("expected 'in' after the loop variable");
    ALPA_ASSIGN_OR_RETURN(n.expr, ep.expression());
    if (ep.is_name("recursive") || ep.is_name("if"))
      return ep.error("loop filters and recursive loops are not supported");
    ALPA_RETURN_IF_ERROR(finish(ep));
    std::string ended;
    std::unique_ptr<ExprParser> rest;
    ALPA_RETURN_IF_ERROR(body(n.body, {"else", "endfor"}, line, "for", &ended, &rest));
    if (ended == "else") return rest->error("'{% else %}' in a for loop is not supported");
    return finish(*rest);
  }

  Status parse_set(ExprParser& ep, Node& n) {
    n.kind = Node::Kind::kSet;
    ALPA_ASSIGN_OR_RETURN(n.text, ep.name());
    if (ep.is_op(".")) return ep.error("assigning to attributes (namespace) is not supported");
    if (!ep.accept_op("="))
      return ep.error("expected '=' ('{% set %}...{% endset %}' blocks are not supported)");
    ALPA_ASSIGN_OR_RETURN(n.expr, ep.expression());
    return finish(ep);
  }

  std::vector<Piece> pieces_;
  size_t at_ = 0;
  std::string_view file_;
};

}  // namespace

namespace {

std::string strip(const std::string& s, bool left, bool right) {
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  if (right)
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string map_chars(std::string s, int (*f)(int)) {
  for (char& c : s) c = static_cast<char>(f(static_cast<unsigned char>(c)));
  return s;
}

int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

class Renderer {
 public:
  explicit Renderer(std::string_view file) : file_(file) {}

  std::vector<std::map<std::string, Value>> scopes;
  std::string out;

  Status exec(const std::vector<Node>& nodes) {
    for (const Node& n : nodes) {
      switch (n.kind) {
        case Node::Kind::kText: out += n.text; break;
        case Node::Kind::kOutput: {
          ALPA_ASSIGN_OR_RETURN(Value v, eval(*n.expr));
          out += to_text(v);
          break;
        }
        case Node::Kind::kSet: {
          ALPA_ASSIGN_OR_RETURN(Value v, eval(*n.expr));
          scopes.back()[n.text] = std::move(v);
          break;
        }
        case Node::Kind::kIf:
          for (const auto& [cond, body] : n.branches) {
            bool take = cond == nullptr;
            if (!take) {
              ALPA_ASSIGN_OR_RETURN(Value c, eval(*cond));
              take = truthy(c);
            }
            if (take) {
              ALPA_RETURN_IF_ERROR(exec(body));
              break;
            }
          }
          break;
        case Node::Kind::kFor: ALPA_RETURN_IF_ERROR(loop(n)); break;
      }
    }
    return ok_status();
  }

 private:
  Status error(int line, const std::string& message) const {
    return invalid_argument(cat("chat template ", file_, ":", line, ": ", message));
  }

  Status loop(const Node& n) {
    ALPA_ASSIGN_OR_RETURN(Value seq, eval(*n.expr));
    std::vector<Value> items;
    if (seq.kind == Value::Kind::kList) {
      items = *seq.list;
    } else if (seq.kind == Value::Kind::kMap) {
      for (const auto& kv : *seq.map) items.push_back(Value::string(kv.first));
    } else if (seq.kind != Value::Kind::kUndefined) {
      return error(n.expr->line, cat("cannot loop over ", kind_name(seq)));
    }
    const auto size = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < size; ++k) {
      Value info = Value::new_map();
      (*info.map)["index0"] = Value::integer(k);
      (*info.map)["index"] = Value::integer(k + 1);
      (*info.map)["revindex0"] = Value::integer(size - 1 - k);
      (*info.map)["revindex"] = Value::integer(size - k);
      (*info.map)["first"] = Value::boolean(k == 0);
      (*info.map)["last"] = Value::boolean(k == size - 1);
      (*info.map)["length"] = Value::integer(size);
      scopes.push_back({{n.text, items[k]}, {"loop", info}});
      Status s = exec(n.body);
      scopes.pop_back();
      ALPA_RETURN_IF_ERROR(s);
    }
    return ok_status();
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes.rbegin(); it != scopes.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value{};
  }

  Result<Value> index(const Expr& e, const Value& base, const Value& key) const {
    if (base.kind == Value::Kind::kUndefined || base.kind == Value::Kind::kNone)
      return error(e.line, cat("cannot index ", kind_name(base)));
    if (base.kind == Value::Kind::kMap) {
      if (key.kind != Value::Kind::kString) return Value{};
      auto it = base.map->find(key.s);
      return it == base.map->end() ? Value{} : it->second;
    }
    if ((base.kind == Value::Kind::kList || base.kind == Value::Kind::kString) && key.numeric()) {
      const auto size =
          static_cast<int64_t>(base.kind == Value::Kind::kList ? base.list->size() : base.s.size());
      int64_t k = key.number();
      if (k < 0) k += size;
      if (k < 0 || k >= size) return Value{};
      if (base.kind == Value::Kind::kList) return (*base.list)[k];
      return Value::string(base.s.substr(k, 1));
    }
    return Value{};
  }

  Result<Value> slice(const Expr& e) {
    ALPA_ASSIGN_OR_RETURN(Value base, eval(*e.kids[0]));
    if (base.kind != Value::Kind::kList && base.kind != Value::Kind::kString)
      return error(e.line, cat("cannot slice ", kind_name(base)));
    const auto size =
        static_cast<int64_t>(base.kind == Value::Kind::kList ? base.list->size() : base.s.size());
    int64_t bounds[2] = {0, size};
    for (int k = 0; k < 2; ++k) {
      if (e.kids[k + 1] == nullptr) continue;
      ALPA_ASSIGN_OR_RETURN(Value b, eval(*e.kids[k + 1]));
      if (b.kind == Value::Kind::kNone) continue;
      if (!b.numeric()) return error(e.line, "slice bounds must be integers");
      int64_t v = b.number();
      if (v < 0) v += size;
      bounds[k] = std::clamp<int64_t>(v, 0, size);
    }
    const int64_t lo = bounds[0], hi = std::max(bounds[0], bounds[1]);
    if (base.kind == Value::Kind::kString) return Value::string(base.s.substr(lo, hi - lo));
    Value out = Value::new_list();
    out.list->assign(base.list->begin() + lo, base.list->begin() + hi);
    return out;
  }

  Result<Value> binary(const Expr& e, const Value& a, const Value& b) const {
    const std::string& op = e.name;
    if (op == "~") return Value::string(to_text(a) + to_text(b));
    if (op == "==" || op == "!=") return Value::boolean(equal(a, b) == (op == "=="));
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.kind == Value::Kind::kString && a.kind == Value::Kind::kString) {
        found = b.s.find(a.s) != std::string::npos;
      } else if (b.kind == Value::Kind::kList) {
        for (const Value& x : *b.list) found = found || equal(a, x);
      } else if (b.kind == Value::Kind::kMap && a.kind == Value::Kind::kString) {
        found = b.map->count(a.s) > 0;
      } else if (b.kind != Value::Kind::kUndefined) {
        return error(e.line, cat("'", op, "' needs a string, list or mapping on the right, not ",
                                 kind_name(b)));
      }
      return Value::boolean(found == (op == "in"));
    }
    if (a.numeric() && b.numeric()) {
      const int64_t x = a.number(), y = b.number();
      if (op == "+") return Value::integer(x + y);
      if (op == "-") return Value::integer(x - y);
      if (op == "*") return Value::integer(x * y);
      if ((op == "//" || op == "%") && y == 0) return error(e.line, "division by zero");
      if (op == "//") return Value::integer(floor_div(x, y));
      if (op == "%") return Value::integer(x - floor_div(x, y) * y);
      if (op == "<") return Value::boolean(x < y);
      if (op == ">") return Value::boolean(x > y);
      if (op == "<=") return Value::boolean(x <= y);
      if (op == ">=") return Value::boolean(x >= y);
    }
    if (a.kind == Value::Kind::kString && b.kind == Value::Kind::kString) {
      if (op == "+") return Value::string(a.s + b.s);
      if (op == "<") return Value::boolean(a.s < b.s);
      if (op == ">") return Value::boolean(a.s > b.s);
      if (op == "<=") return Value::boolean(a.s <= b.s);
      if (op == ">=") return Value::boolean(a.s >= b.s);
    }
    if (op == "+" && a.kind == Value::Kind::kList && b.kind == Value::Kind::kList) {
      Value out = Value::new_list();
      *out.list = *a.list;
      out.list->insert(out.list->end(), b.list->begin(), b.list->end());
      return out;
    }
    return error(e.line, cat("'", op, "' cannot combine ", kind_name(a), " and ", kind_name(b)));
  }

  Result<Value> filter(const Expr& e, const Value& x) const {
    const std::string& f = e.name;
    if (f == "length") {
      if (x.kind == Value::Kind::kString) return Value::integer(static_cast<int64_t>(x.s.size()));
      if (x.kind == Value::Kind::kList) return Value::integer(static_cast<int64_t>(x.list->size()));
      if (x.kind == Value::Kind::kMap) return Value::integer(static_cast<int64_t>(x.map->size()));
      return error(e.line, cat("'length' of ", kind_name(x)));
    }
    if (f == "tojson")
      return Value::string(
          to_json(x).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    const std::string s = to_text(x);
    if (f == "trim") return Value::string(strip(s, true, true));
    if (f == "upper") return Value::string(map_chars(s, ::toupper));
    if (f == "lower") return Value::string(map_chars(s, ::tolower));
    std::string c = map_chars(s, ::tolower);  // capitalize
    if (!c.empty()) c[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(c[0])));
    return Value::string(c);
  }

  Result<Value> method(const Expr& e) {
    ALPA_ASSIGN_OR_RETURN(Value x, eval(*e.kids[0]));
    if (x.kind != Value::Kind::kString)
      return error(e.line, cat(kind_name(x), " has no method ", e.name, "()"));
    const std::string& m = e.name;
    if (m == "strip" || m == "lstrip" || m == "rstrip")
      return Value::string(strip(x.s, m != "rstrip", m != "lstrip"));
    if (m == "upper") return Value::string(map_chars(x.s, ::toupper));
    if (m == "lower") return Value::string(map_chars(x.s, ::tolower));
    ALPA_ASSIGN_OR_RETURN(Value arg, eval(*e.kids[1]));
    if (arg.kind != Value::Kind::kString)
      return error(e.line, cat(m, "() takes a string, not ", kind_name(arg)));
    if (m == "startswith") return Value::boolean(x.s.compare(0, arg.s.size(), arg.s) == 0);
    return Value::boolean(x.s.size() >= arg.s.size() &&
                          x.s.compare(x.s.size() - arg.s.size(), arg.s.size(), arg.s) == 0);
  }

  static bool test(const Expr& e, const Value& x) {
    const std::string& t = e.name;
    bool r = false;
    if (t == "defined") r = x.kind != Value::Kind::kUndefined;
    if (t == "undefined") r = x.kind == Value::Kind::kUndefined;
    if (t == "none") r = x.kind == Value::Kind::kNone;
    if (t == "string") r = x.kind == Value::Kind::kString;
    if (t == "number") r = x.kind == Value::Kind::kInt;
    return r != e.negate;
  }

 public:
  Result<Value> eval(const Expr& e) {
    switch (e.op) {
      case Expr::Op::kLiteral: return e.value;
      case Expr::Op::kName: return lookup(e.name);
      case Expr::Op::kAttr: {
        ALPA_ASSIGN_OR_RETURN(Value base, eval(*e.kids[0]));
        if (base.kind == Value::Kind::kUndefined || base.kind == Value::Kind::kNone)
          return error(e.line, cat(kind_name(base), " has no attribute '", e.name, "'"));
        return index(e, base, Value::string(e.name));
      }
      case Expr::Op::kIndex: {
        ALPA_ASSIGN_OR_RETURN(Value base, eval(*e.kids[0]));
        ALPA_ASSIGN_OR_RETURN(Value key, eval(*e.kids[1]));
        return index(e, base, key);
      }
      case Expr::Op::kSlice: return slice(e);
      case Expr::Op::kNot: {
        ALPA_ASSIGN_OR_RETURN(Value x, eval(*e.kids[0]));
        return Value::boolean(!truthy(x));
      }
      case Expr::Op::kNeg: {
        ALPA_ASSIGN_OR_RETURN(Value x, eval(*e.kids[0]));
        if (!x.numeric()) return error(e.line, cat("cannot negate ", kind_name(x)));
        return Value::integer(-x.number());
      }
      case Expr::Op::kBinary: {
        ALPA_ASSIGN_OR_RETURN(Value a, eval(*e.kids[0]));
        ALPA_ASSIGN_OR_RETURN(Value b, eval(*e.kids[1]));
        return binary(e, a, b);
      }
      case Expr::Op::kAnd:
      case Expr::Op::kOr: {
        ALPA_ASSIGN_OR_RETURN(Value a, eval(*e.kids[0]));
        if (truthy(a) == (e.op == Expr::Op::kOr)) return a;
        return eval(*e.kids[1]);
      }
      case Expr::Op::kCond: {
        ALPA_ASSIGN_OR_RETURN(Value c, eval(*e.kids[0]));
        return eval(*e.kids[truthy(c) ? 1 : 2]);
      }
      case Expr::Op::kList: {
        Value out = Value::new_list();
        for (const ExprPtr& k : e.kids) {
          ALPA_ASSIGN_OR_RETURN(Value x, eval(*k));
          out.list->push_back(std::move(x));
        }
        return out;
      }
      case Expr::Op::kFilter:
      case Expr::Op::kTest: {
        ALPA_ASSIGN_OR_RETURN(Value x, eval(*e.kids[0]));
        if (e.op == Expr::Op::kTest) return Value::boolean(test(e, x));
        return filter(e, x);
      }
      case Expr::Op::kMethod: return method(e);
      case Expr::Op::kRaise: {
        ALPA_ASSIGN_OR_RETURN(Value m, eval(*e.kids[0]));
        return invalid_argument(
            cat("the chat template (", file_, ") rejected the conversation: ", to_text(m)));
      }
    }
    return error(e.line, "unknown expression");
  }

 private:
  std::string_view file_;
};

}  // namespace

Result<std::string> ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                         const std::string& bos_token, const std::string& eos_token,
                                         bool add_generation_prompt) const {
  Value list = Value::new_list();
  for (const ChatMessage& m : messages) {
    Value v = Value::new_map();
    (*v.map)["role"] = Value::string(m.role);
    (*v.map)["content"] = Value::string(m.content);
    list.list->push_back(std::move(v));
  }
  Renderer r(name_);
  r.scopes.push_back({{"messages", list},
                      {"bos_token", Value::string(bos_token)},
                      {"eos_token", Value::string(eos_token)},
                      {"add_generation_prompt", Value::boolean(add_generation_prompt)}});
  r.scopes.emplace_back();  // the template's own variables
  ALPA_RETURN_IF_ERROR(r.exec(root_->body));
  return std::move(r.out);
}

Result<ChatTemplate> ChatTemplate::parse(std::string_view source, std::string_view name) {
  Lexer lexer{source, name};
  ALPA_ASSIGN_OR_RETURN(std::vector<Piece> pieces, lexer.pieces());
  apply_whitespace_control(pieces);
  auto root = std::make_shared<Node>();
  BlockParser parser(std::move(pieces), name);
  std::string ended;
  std::unique_ptr<ExprParser> rest;
  ALPA_RETURN_IF_ERROR(parser.body(root->body, {}, 1, "", &ended, &rest));
  ChatTemplate t;
  t.root_ = std::move(root);
  t.name_ = std::string(name);
  return t;
}

}  // namespace alpa::serve
