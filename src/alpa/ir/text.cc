#include "alpa/ir/text.h"

#include "alpa/support/text.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "alpa/ir/verifier.h"
#include "alpa/support/files.h"

namespace alpa {
namespace {

// ---- printing -----------------------------------------------------------------------------

std::string format_double(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

// Renders each field of an attribute struct as (key, text).
struct FieldRenderer {
  std::vector<std::pair<const char*, std::string>> fields;
  void operator()(const char* key, const int64_t& v) {
    fields.emplace_back(key, std::to_string(v));
  }
  void operator()(const char* key, const double& v) { fields.emplace_back(key, format_double(v)); }
  void operator()(const char* key, const std::vector<int64_t>& v) {
    fields.emplace_back(key, shape_to_string(v));
  }
  void operator()(const char* key, const std::vector<double>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) s += ',';
      s += format_double(v[i]);
    }
    fields.emplace_back(key, s + "]");
  }
  template <NamedEnum E>
  void operator()(const char* key, const E& v) {
    fields.emplace_back(key, std::string(EnumNames<E>::kNames[static_cast<size_t>(v)]));
  }
};

// "k=v, ..." for the fields of `value` that differ from their defaults.
template <typename A>
std::string print_struct(const A& value) {
  A copy = value, defaults{};
  FieldRenderer mine, base;
  copy.fields(mine);
  defaults.fields(base);
  std::string out;
  for (size_t i = 0; i < mine.fields.size(); ++i) {
    if (mine.fields[i].second == base.fields[i].second) continue;
    out += cat(out.empty() ? "" : ", ", mine.fields[i].first, "=", mine.fields[i].second);
  }
  return out;
}

}  // namespace

std::string print_attrs(const Attrs& attrs) {
  std::string body = std::visit([](const auto& a) { return print_struct(a); }, attrs);
  return body.empty() ? "" : "{" + body + "}";
}

namespace {

// "  %id = op(%a, %b)" (the attributes and type follow).
void print_node_head(std::ostream& os, const Graph& g, ValueId id) {
  const Node& n = g.node(id);
  os << "  " << value_ref(g, id) << " = " << op_name(n.op) << "(";
  for (size_t i = 0; i < n.operands.size(); ++i)
    os << (i ? ", " : "") << value_ref(g, n.operands[i]);
  os << ")";
}

void print_outputs(std::ostream& os, const Graph& g) {
  for (const GraphOutput& o : g.outputs()) {
    os << "  output " << o.name << " = " << value_ref(g, o.value);
    if (o.alias != kNoValue) os << " alias " << value_ref(g, o.alias);
    os << "\n";
  }
  os << "}\n";
}

}  // namespace

std::string print_graph(const Graph& g) {
  std::ostringstream os;
  os << "graph " << (g.name().empty() ? "main" : g.name()) << " {\n";
  for (ValueId id = 0; id < g.size(); ++id) {
    print_node_head(os, g, id);
    const std::string attrs = print_attrs(g.node(id).attrs);
    if (!attrs.empty()) os << " " << attrs;
    os << " : " << g.type(id).to_string() << "\n";
  }
  print_outputs(os, g);
  return os.str();
}

namespace {

// ---- printing with the batch declared ------------------------------------------------------

// The numbers of one attribute field, flattened (enums hold none).
struct RawField {
  bool integer = false, list = false, enumerated = false;
  std::vector<double> nums;
};

struct RawRenderer {
  std::vector<RawField> fields;
  void operator()(const char*, const int64_t& v) {
    fields.push_back({true, false, false, {static_cast<double>(v)}});
  }
  void operator()(const char*, const double& v) { fields.push_back({false, false, false, {v}}); }
  void operator()(const char*, const std::vector<int64_t>& v) {
    fields.push_back({true, true, false, std::vector<double>(v.begin(), v.end())});
  }
  void operator()(const char*, const std::vector<double>& v) {
    fields.push_back({false, true, false, v});
  }
  template <NamedEnum E>
  void operator()(const char*, const E&) {
    fields.push_back({false, false, true, {}});
  }
};

// `a` (at batch `b`) and `c` (at batch `d`) as one text in `batch`; nullopt if they do not
// scale with it: a multiple or fraction of the batch, or (floats) a number over it.
std::optional<std::string> scaled(double a, int64_t b, double c, int64_t d, bool integer) {
  if (a == c) return integer ? std::to_string(static_cast<int64_t>(a)) : format_double(a);
  if (integer) {
    const int64_t x = static_cast<int64_t>(a), y = static_cast<int64_t>(c);
    if (x % b == 0 && x / b * d == y) return x == b ? std::string("batch") : cat("batch*", x / b);
    if (x > 0 && b % x == 0 && y * (b / x) == d) return cat("batch/", b / x);
    return std::nullopt;
  }
  const double over = a * static_cast<double>(b);  // a mean's 1/rows: over/batch
  if (over / static_cast<double>(b) == a &&
      std::fabs(over - c * static_cast<double>(d)) <= 1e-9 * std::fabs(over))
    return cat(format_double(over), "/batch");
  const double per = a / static_cast<double>(b);
  if (per * static_cast<double>(b) == a &&
      std::fabs(per - c / static_cast<double>(d)) <= 1e-9 * std::fabs(per))
    return cat("batch*", format_double(per));
  return std::nullopt;
}

Status not_scaling(const Graph& g, ValueId id, const std::string& what) {
  return invalid_argument(
      cat(value_ref(g, id), "'s ", what,
          " does not scale with the batch, so the batch cannot be "
          "declared"),
      "a declared batch may appear in extents and numbers only as batch*k, batch/k or k/batch");
}

template <typename A>
Result<std::string> print_struct_with_batch(const A& a, int64_t b, const A& other, int64_t d,
                                            const Graph& g, ValueId id) {
  A ca = a, co = other, defaults{};
  FieldRenderer ta, to, td;
  RawRenderer ra, ro;
  ca.fields(ta), co.fields(to), defaults.fields(td), ca.fields(ra), co.fields(ro);
  std::string out;
  for (size_t i = 0; i < ta.fields.size(); ++i) {
    std::string text = ta.fields[i].second;
    if (text != to.fields[i].second) {
      const RawField &x = ra.fields[i], &y = ro.fields[i];
      if (x.enumerated || x.nums.size() != y.nums.size())
        return not_scaling(g, id, cat("attribute ", ta.fields[i].first));
      std::string list;
      for (size_t j = 0; j < x.nums.size(); ++j) {
        std::optional<std::string> e = scaled(x.nums[j], b, y.nums[j], d, x.integer);
        if (!e) return not_scaling(g, id, cat("attribute ", ta.fields[i].first));
        list += cat(j ? "," : "", *e);
      }
      text = x.list ? "[" + list + "]" : list;
    } else if (text == td.fields[i].second) {
      continue;
    }
    out += cat(out.empty() ? "" : ", ", ta.fields[i].first, "=", text);
  }
  return out;
}

Result<std::string> type_with_batch(const Graph& g, ValueId id, int64_t b, const TensorType& other,
                                    int64_t d) {
  const TensorType& t = g.type(id);
  if (t.dtype != other.dtype || t.rank() != other.rank()) return not_scaling(g, id, "type");
  std::string out = cat(dtype_name(t.dtype), "[");
  for (int i = 0; i < t.rank(); ++i) {
    std::optional<std::string> e =
        scaled(static_cast<double>(t.shape[i]), b, static_cast<double>(other.shape[i]), d, true);
    if (!e) return not_scaling(g, id, cat("dim ", i));
    out += cat(i ? "," : "", *e);
  }
  return out + "]";
}

}  // namespace

Result<std::string> print_graph_with_batch(const Graph& g, int64_t batch, const Graph& other,
                                           int64_t other_batch) {
  if (batch < 1 || other_batch < 1 || batch == other_batch)
    return invalid_argument("print_graph_with_batch needs two different batches >= 1");
  if (g.size() != other.size() || g.outputs() != other.outputs())
    return invalid_argument(
        "the graph's structure depends on the batch, so the batch cannot be "
        "declared");
  std::ostringstream os;
  os << "graph " << (g.name().empty() ? "main" : g.name()) << "(batch=" << batch << ") {\n";
  for (ValueId id = 0; id < g.size(); ++id) {
    const Node &n = g.node(id), &m = other.node(id);
    if (n.op != m.op || n.operands != m.operands || n.name != m.name)
      return not_scaling(g, id, "op or operands");
    print_node_head(os, g, id);
    ALPA_ASSIGN_OR_RETURN(std::string attrs, std::visit(
                                                 [&](const auto& a) {
                                                   using A = std::decay_t<decltype(a)>;
                                                   return print_struct_with_batch(
                                                       a, batch, std::get<A>(m.attrs), other_batch,
                                                       g, id);
                                                 },
                                                 n.attrs));
    if (!attrs.empty()) os << " {" << attrs << "}";
    ALPA_ASSIGN_OR_RETURN(std::string type, type_with_batch(g, id, batch, m.type, other_batch));
    os << " : " << type << "\n";
  }
  print_outputs(os, g);
  return os.str();
}

namespace {

// ---- lexing -------------------------------------------------------------------------------

enum class Tok { kEnd, kIdent, kValueRef, kNumber, kPunct };

struct Token {
  Tok kind = Tok::kEnd;
  std::string text;
  int line = 0;
  int col = 0;
};

// An attribute value, parsed generically and then read by field name.
struct AttrValue {
  Token token;                  // number / identifier, or '[' for lists
  std::vector<AttrValue> list;  // elements when a list
  bool is_list = false;
};

using AttrMap = std::map<std::string, std::pair<Token, AttrValue>>;
Status parse_int_text(const std::string& text, int64_t* x);
Status parse_double_text(const std::string& text, double* x);
using ErrorAt = std::function<Status(const Token&, std::string, std::string)>;

Status read_attrs(OpKind op, const AttrMap& given, Attrs* out, const ErrorAt& error_at);

class Parser {
 public:
  Parser(std::string_view text, std::string_view source, std::optional<int64_t> batch)
      : text_(text), source_(source), batch_override_(batch) {
    advance();
  }

  Result<Graph> parse();
  std::optional<int64_t> declared_batch() const { return declared_batch_; }

 private:
  // Lexer.
  void advance();
  void skip_space();
  char peek_char(size_t off = 0) const {
    return pos_ + off < text_.size() ? text_[pos_ + off] : '\0';
  }
  void bump() {
    if (text_[pos_] == '\n')
      ++line_, col_ = 1;
    else
      ++col_;
    ++pos_;
  }

  Status error(std::string message, std::string hint = {}) const {
    return error_at(tok_, std::move(message), std::move(hint));
  }
  std::string describe(const Token& t) const {
    if (t.kind == Tok::kEnd) return "end of input";
    if (t.text.size() <= 60) return "'" + t.text + "'";
    size_t cut = 60;  // a bounded excerpt, cut at a UTF-8 character boundary
    while (cut > 0 && (static_cast<unsigned char>(t.text[cut]) & 0xC0) == 0x80) --cut;
    return "'" + t.text.substr(0, cut) + "...' (" + std::to_string(t.text.size()) + " bytes)";
  }
  bool is_punct(const char* p) const { return tok_.kind == Tok::kPunct && tok_.text == p; }
  bool is_ident(const char* w) const { return tok_.kind == Tok::kIdent && tok_.text == w; }
  Status expect_punct(const char* p, const char* context) {
    if (!is_punct(p)) return error(cat("expected '", p, "' ", context, ", found ", describe(tok_)));
    advance();
    return ok_status();
  }

  // Grammar.
  Status parse_statement(Graph& g);
  Status parse_node(Graph& g);
  Status parse_output(Graph& g);
  Result<ValueId> parse_value_use(const Graph& g);
  Result<TensorType> parse_type();
  Result<int64_t> parse_int(const char* what);
  Status parse_batch_declaration();
  // A number, or a product/quotient of numbers and `batch` (`batch*16`, `1/batch/128`).
  struct Expr {
    double value = 0;
    bool single_number = true;  // one number and nothing else: the caller reads its text
    std::string text;
  };
  Result<Expr> parse_expr(const char* what);
  Result<int64_t> parse_extent();

 public:
  Status error_at(const Token& t, std::string message, std::string hint = {}) const {
    return parse_error(cat(source_, ":", t.line, ":", t.col, ": ", message), std::move(hint));
  }

 private:
  Result<AttrValue> parse_attr_value(int depth = 0);

  std::string_view text_;
  std::string_view source_;
  size_t pos_ = 0;
  int line_ = 1;
  int col_ = 1;
  Token tok_;
  std::unordered_map<std::string, ValueId> refs_;  // "%label" -> id
  std::optional<int64_t> batch_override_;          // the batch asked for (a declared batch only)
  std::optional<int64_t> declared_batch_;          // the header's batch=N
  int64_t batch_ = 0;                              // the value `batch` has while parsing
};

void Parser::skip_space() {
  for (;;) {
    const char c = peek_char();
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      bump();
    } else if (c == '#' || (c == '/' && peek_char(1) == '/')) {
      while (pos_ < text_.size() && text_[pos_] != '\n') bump();
    } else {
      return;
    }
  }
}

void Parser::advance() {
  skip_space();
  tok_ = Token{};
  tok_.line = line_;
  tok_.col = col_;
  if (pos_ >= text_.size()) return;
  const char c = peek_char();
  auto ident_char = [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.';
  };
  if (c == '%') {
    bump();
    tok_.kind = Tok::kValueRef;
    tok_.text.push_back('%');
    while (ident_char(peek_char())) tok_.text += peek_char(), bump();
  } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
    tok_.kind = Tok::kIdent;
    while (ident_char(peek_char())) tok_.text += peek_char(), bump();
  } else if (std::isdigit(static_cast<unsigned char>(c)) ||
             ((c == '-' || c == '+') &&
              (std::isdigit(static_cast<unsigned char>(peek_char(1))) || peek_char(1) == '.' ||
               peek_char(1) == 'i' || peek_char(1) == 'n'))) {
    tok_.kind = Tok::kNumber;
    tok_.text += c;
    bump();
    while (std::isalnum(static_cast<unsigned char>(peek_char())) || peek_char() == '.' ||
           ((peek_char() == '-' || peek_char() == '+') &&
            (tok_.text.back() == 'e' || tok_.text.back() == 'E')))
      tok_.text += peek_char(), bump();
  } else {
    tok_.kind = Tok::kPunct;
    tok_.text = std::string(1, c);
    bump();
  }
}

Result<int64_t> Parser::parse_int(const char* what) {
  if (tok_.kind != Tok::kNumber) return error(cat("expected ", what, ", found ", describe(tok_)));
  int64_t v = 0;
  const char* b = tok_.text.data();
  const char* e = b + tok_.text.size();
  if (*b == '+') ++b;
  auto res = std::from_chars(b, e, v);
  if (res.ec != std::errc() || res.ptr != e)
    return error(cat("expected ", what, " (an integer), found ", describe(tok_)));
  advance();
  return v;
}

Result<Parser::Expr> Parser::parse_expr(const char* what) {
  Expr e;
  for (bool first = true;; first = false) {
    char op = '*';
    if (!first) {
      op = tok_.text[0];
      e.text += op;
      advance();
    }
    double v = 0;
    if (is_ident("batch")) {
      if (!declared_batch_)
        return error("'batch' is used but the graph declares no batch",
                     "declare it in the header: graph NAME(batch=8) { (docs/ir.md)");
      v = static_cast<double>(batch_);
      e.single_number = false;
    } else if (tok_.kind != Tok::kNumber) {
      return error(cat("expected ", what, ", found ", describe(tok_)));
    } else if (!parse_double_text(tok_.text, &v).ok()) {
      // Alone, a number the caller reads (and names in its message); in an expression, wrong.
      const Token bad = tok_;
      advance();
      if (first && !is_punct("*") && !is_punct("/")) return Expr{0, true, bad.text};
      return error_at(bad, cat("expected ", what, ", found ", describe(bad)));
    }
    e.text += tok_.text;
    if (op == '/' && v == 0) return error(cat("division by zero in ", e.text));
    e.value = first ? v : op == '*' ? e.value * v : e.value / v;
    advance();
    if (!is_punct("*") && !is_punct("/")) return e;
    e.single_number = false;
  }
}

Result<int64_t> Parser::parse_extent() {
  const Token at = tok_;
  ALPA_ASSIGN_OR_RETURN(Expr e, parse_expr("a dimension extent"));
  if (e.single_number) {  // a plain extent keeps its exact integer reading
    int64_t d = 0;
    if (!parse_int_text(e.text, &d).ok())
      return error_at(at, cat("expected a dimension extent (an integer), found ", describe(at)));
    return d;
  }
  const double r = std::round(e.value);
  if (r != e.value || r < 0 || r > 1e15)
    return error_at(at,
                    cat("extent ", e.text, " is ", format_double(e.value), " at batch=", batch_,
                        ", not a whole number"),
                    "choose a batch (or micro-batch count) the file's extents divide evenly");
  return static_cast<int64_t>(r);
}

Status Parser::parse_batch_declaration() {
  advance();  // '('
  if (!is_ident("batch"))
    return error(cat("expected 'batch=N' in the graph's header, found ", describe(tok_)),
                 "the header declares the batch: graph NAME(batch=8) {");
  advance();
  ALPA_RETURN_IF_ERROR(expect_punct("=", "after 'batch'"));
  const Token at = tok_;
  ALPA_ASSIGN_OR_RETURN(int64_t b, parse_int("the batch (an integer)"));
  if (b < 1 || b > (int64_t{1} << 40)) return error_at(at, cat("batch ", b, " is not >= 1"));
  ALPA_RETURN_IF_ERROR(expect_punct(")", "to close the header"));
  declared_batch_ = b;
  batch_ = batch_override_ ? *batch_override_ : b;
  return ok_status();
}

Result<TensorType> Parser::parse_type() {
  if (tok_.kind != Tok::kIdent)
    return error(cat("expected a type like f32[2,3], found ", describe(tok_)));
  std::optional<DType> dt = parse_dtype(tok_.text);
  if (!dt)
    return error(cat("unknown dtype '", tok_.text, "'"), "dtypes: f32, f16, bf16, i32, pred");
  advance();
  TensorType t{*dt, {}};
  ALPA_RETURN_IF_ERROR(expect_punct("[", "after the dtype"));
  if (!is_punct("]")) {
    for (;;) {
      const Token at = tok_;
      ALPA_ASSIGN_OR_RETURN(int64_t d, parse_extent());
      if (d < 0) return error_at(at, cat("negative extent ", d));
      if (d > (int64_t{1} << 40)) return error_at(at, cat("extent ", d, " is too large"));
      t.shape.push_back(d);
      if (is_punct(",")) {
        advance();
        continue;
      }
      break;
    }
  }
  ALPA_RETURN_IF_ERROR(expect_punct("]", "to close the shape"));
  if (!shape_within_limits(t.shape))
    return error(cat("the type ", t.to_string(), " has more than ", kMaxTensorRank,
                     " dims or more than 2^48 elements"),
                 "no tensor is that large; check the extents");
  return t;
}

Result<ValueId> Parser::parse_value_use(const Graph& g) {
  if (tok_.kind != Tok::kValueRef)
    return error(cat("expected a value like %x, found ", describe(tok_)));
  auto it = refs_.find(tok_.text);
  if (it == refs_.end())
    return error(cat("use of undefined value ", tok_.text),
                 "values must be defined on an earlier line than their first use");
  (void)g;
  advance();
  return it->second;
}

// Attribute lists nest a level or two (a convolution's padding); deeper is not an attribute.
constexpr int kMaxAttrNesting = 8;

Result<AttrValue> Parser::parse_attr_value(int depth) {
  AttrValue v;
  v.token = tok_;
  if (is_punct("[")) {
    if (depth == kMaxAttrNesting)
      return error(cat("attribute lists nested more than ", kMaxAttrNesting, " levels deep"),
                   "an attribute is a number, a name, or a list of them (at most a list of lists)");
    v.is_list = true;
    advance();
    if (!is_punct("]")) {
      for (;;) {
        ALPA_ASSIGN_OR_RETURN(AttrValue e, parse_attr_value(depth + 1));
        v.list.push_back(std::move(e));
        if (is_punct(",")) {
          advance();
          continue;
        }
        break;
      }
    }
    ALPA_RETURN_IF_ERROR(expect_punct("]", "to close the list"));
    return v;
  }
  if (tok_.kind != Tok::kNumber && tok_.kind != Tok::kIdent)
    return error(cat("expected an attribute value, found ", describe(tok_)));
  if (tok_.kind == Tok::kIdent && !is_ident("batch")) {  // an enum's name
    advance();
    return v;
  }
  ALPA_ASSIGN_OR_RETURN(Expr e, parse_expr("a number"));
  if (!e.single_number) {  // read as the number it evaluates to
    v.token.kind = Tok::kNumber;
    const double r = std::round(e.value);
    v.token.text = r == e.value && std::fabs(r) < 9e15 ? std::to_string(static_cast<int64_t>(r))
                                                       : format_double(e.value);
  }
  return v;
}

Status parse_int_text(const std::string& text, int64_t* x) {
  const char* b = text.data();
  const char* e = b + text.size();
  if (b != e && *b == '+') ++b;
  auto res = std::from_chars(b, e, *x);
  return res.ec == std::errc() && res.ptr == e ? ok_status() : invalid_argument("not an integer");
}

Status parse_double_text(const std::string& text, double* x) {
  std::string t = text;
  if (!t.empty() && t[0] == '+') t.erase(0, 1);
  auto res = std::from_chars(t.data(), t.data() + t.size(), *x);
  return res.ec == std::errc() && res.ptr == t.data() + t.size() ? ok_status()
                                                                 : invalid_argument("not a number");
}

// Fills the fields of an attribute struct from the parsed key/value map.
struct AttrReadVisitor {
  OpKind op;
  const AttrMap* given;
  const ErrorAt* error_at;
  std::vector<std::string_view> known;
  Status status;

  const AttrValue* find(const char* key) {
    known.push_back(key);
    if (!status.ok()) return nullptr;
    auto it = given->find(key);
    return it == given->end() ? nullptr : &it->second.second;
  }
  Status expect(const AttrValue& v, const char* key, const char* what) {
    return (*error_at)(v.token,
                       cat("attribute '", key, "' of ", op_name(op), " expects ", what, ", found '",
                           v.token.text, "'"),
                       "");
  }
  Status read_int(const AttrValue& v, const char* key, int64_t* x) {
    if (v.is_list || v.token.kind != Tok::kNumber || !parse_int_text(v.token.text, x).ok())
      return expect(v, key, "an integer");
    return ok_status();
  }
  Status read_double(const AttrValue& v, const char* key, double* x) {
    if (v.is_list || !parse_double_text(v.token.text, x).ok()) return expect(v, key, "a number");
    return ok_status();
  }
  void operator()(const char* key, int64_t& x) {
    if (const AttrValue* v = find(key)) status = read_int(*v, key, &x);
  }
  void operator()(const char* key, double& x) {
    if (const AttrValue* v = find(key)) status = read_double(*v, key, &x);
  }
  void operator()(const char* key, std::vector<int64_t>& x) {
    const AttrValue* v = find(key);
    if (!v) return;
    if (!v->is_list) {
      status = expect(*v, key, "a list like [0,1]");
      return;
    }
    x.clear();
    for (const AttrValue& e : v->list) {
      int64_t i = 0;
      status = read_int(e, key, &i);
      if (!status.ok()) return;
      x.push_back(i);
    }
  }
  void operator()(const char* key, std::vector<double>& x) {
    const AttrValue* v = find(key);
    if (!v) return;
    x.clear();
    if (!v->is_list) {  // a single number is a one-element list
      double d = 0;
      status = read_double(*v, key, &d);
      x.push_back(d);
      return;
    }
    for (const AttrValue& e : v->list) {
      double d = 0;
      status = read_double(e, key, &d);
      if (!status.ok()) return;
      x.push_back(d);
    }
  }
  template <NamedEnum E>
  void operator()(const char* key, E& x) {
    const AttrValue* v = find(key);
    if (!v) return;
    const auto& names = EnumNames<E>::kNames;
    for (size_t i = 0; i < names.size(); ++i) {
      if (!v->is_list && v->token.text == names[i]) {
        x = static_cast<E>(i);
        return;
      }
    }
    std::string options;
    for (size_t i = 0; i < names.size(); ++i) options += cat(i ? ", " : "", names[i]);
    status = (*error_at)(
        v->token, cat("attribute '", key, "' of ", op_name(op), " cannot be '", v->token.text, "'"),
        cat("one of: ", options));
  }
};

Status read_attrs(OpKind op, const AttrMap& given, Attrs* out, const ErrorAt& error_at) {
  *out = default_attrs(op);
  AttrReadVisitor vis{op, &given, &error_at, {}, {}};
  std::visit([&](auto& a) { a.fields(vis); }, *out);
  ALPA_RETURN_IF_ERROR(vis.status);
  for (const auto& [key, value] : given) {
    if (std::find(vis.known.begin(), vis.known.end(), key) != vis.known.end()) continue;
    std::string hint;
    const std::string near = closest_match(key, vis.known);
    if (!near.empty()) {
      hint = cat("did you mean '", near, "'?");
    } else if (vis.known.empty()) {
      hint = cat(op_name(op), " has no attributes");
    } else {
      hint = cat("attributes of ", op_name(op), ":");
      for (std::string_view k : vis.known) hint += cat(" ", k);
    }
    return error_at(value.first, cat("unknown attribute '", key, "' for ", op_name(op)), hint);
  }
  return ok_status();
}

Status Parser::parse_node(Graph& g) {
  const Token def = tok_;
  const std::string label = tok_.text;
  if (label.size() < 2) return error("expected a value name after '%'");
  if (refs_.count(label)) return error(cat("value ", label, " is defined twice"));
  advance();
  ALPA_RETURN_IF_ERROR(expect_punct("=", cat("after ", label).c_str()));
  if (tok_.kind != Tok::kIdent) return error(cat("expected an op name, found ", describe(tok_)));
  const Token op_tok = tok_;
  std::optional<OpKind> op = parse_op_name(tok_.text);
  if (!op) {
    std::vector<std::string_view> names;
    for (int i = 0; i < kNumOps; ++i) names.push_back(op_name(static_cast<OpKind>(i)));
    const std::string near = closest_match(tok_.text, names);
    return error(cat("unknown op '", tok_.text, "'"), near.empty()
                                                          ? "see docs/ir.md for the list of ops"
                                                          : cat("did you mean '", near, "'?"));
  }
  advance();
  Node n;
  n.op = *op;
  ALPA_RETURN_IF_ERROR(expect_punct("(", cat("after op name ", op_name(*op)).c_str()));
  if (!is_punct(")")) {
    for (;;) {
      ALPA_ASSIGN_OR_RETURN(ValueId v, parse_value_use(g));
      n.operands.push_back(v);
      if (is_punct(",")) {
        advance();
        continue;
      }
      break;
    }
  }
  ALPA_RETURN_IF_ERROR(expect_punct(")", "to close the operand list"));
  AttrMap given;
  if (is_punct("{")) {
    advance();
    if (!is_punct("}")) {
      for (;;) {
        if (tok_.kind != Tok::kIdent)
          return error(cat("expected an attribute name, found ", describe(tok_)));
        const Token key = tok_;
        advance();
        ALPA_RETURN_IF_ERROR(expect_punct("=", cat("after attribute ", key.text).c_str()));
        ALPA_ASSIGN_OR_RETURN(AttrValue value, parse_attr_value());
        if (given.count(key.text)) return error_at(key, cat("attribute '", key.text, "' repeated"));
        given.emplace(key.text, std::make_pair(key, std::move(value)));
        if (is_punct(",")) {
          advance();
          continue;
        }
        break;
      }
    }
    ALPA_RETURN_IF_ERROR(expect_punct("}", "to close the attributes"));
  }
  ALPA_RETURN_IF_ERROR(read_attrs(
      *op, given, &n.attrs,
      [this](const Token& t, std::string m, std::string h) { return error_at(t, m, h); }));
  ALPA_RETURN_IF_ERROR(expect_punct(":", "before the result type"));
  ALPA_ASSIGN_OR_RETURN(n.type, parse_type());

  std::vector<TensorType> types;
  for (ValueId v : n.operands) types.push_back(g.type(v));
  Result<TensorType> t = infer_result_type(n.op, n.attrs, types, &n.type);
  if (!t.ok()) return error_at(op_tok, t.status().message(), t.status().hint());

  const std::string bare = label.substr(1);
  const bool numeric = std::all_of(
      bare.begin(), bare.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  if (!numeric) {
    if (!is_valid_node_name(bare))
      return error_at(def, cat("invalid value name ", label),
                      "names start with a letter or '_'; unnamed values use digits only");
    n.name = bare;
  }
  refs_[label] = g.add_node(std::move(n));
  return ok_status();
}

Status Parser::parse_output(Graph& g) {
  advance();  // 'output'
  if (tok_.kind != Tok::kIdent)
    return error(cat("expected an output name, found ", describe(tok_)));
  const Token name = tok_;
  advance();
  if (g.find_output(name.text))
    return error_at(name, cat("output '", name.text, "' declared twice"));
  ALPA_RETURN_IF_ERROR(expect_punct("=", "after the output name"));
  ALPA_ASSIGN_OR_RETURN(ValueId v, parse_value_use(g));
  GraphOutput o{name.text, v, kNoValue};
  if (is_ident("alias")) {
    advance();
    const Token at = tok_;
    ALPA_ASSIGN_OR_RETURN(o.alias, parse_value_use(g));
    if (g.node(o.alias).op != OpKind::kParameter)
      return error_at(
          at, cat("output '", name.text, "' aliases ", at.text, ", which is not a parameter"));
    if (g.type(o.alias) != g.type(v))
      return error_at(at, cat("output '", name.text, "' of type ", g.type(v).to_string(),
                              " cannot alias ", at.text, " of type ", g.type(o.alias).to_string()));
  }
  g.add_output(std::move(o));
  return ok_status();
}

Status Parser::parse_statement(Graph& g) {
  if (tok_.kind == Tok::kValueRef) return parse_node(g);
  if (is_ident("output")) return parse_output(g);
  return error(
      cat("expected '%name = op(...)', 'output name = %value' or '}', found ", describe(tok_)));
}

Result<Graph> Parser::parse() {
  if (!is_ident("graph"))
    return error(cat("expected 'graph NAME {' at the start, found ", describe(tok_)),
                 "a text IR file starts with: graph my_model {");
  advance();
  if (tok_.kind != Tok::kIdent) return error(cat("expected a graph name, found ", describe(tok_)));
  Graph g(tok_.text);
  advance();
  if (is_punct("(")) ALPA_RETURN_IF_ERROR(parse_batch_declaration());
  if (batch_override_ && !declared_batch_)
    return error_at(
        Token{Tok::kIdent, g.name(), 1, 1},
        cat("a batch of ", *batch_override_, " was asked for, but the graph declares no batch"),
        "declare the batch dimension in the header, graph NAME(batch=8) {, and write it "
        "as `batch` in the shapes (docs/ir.md)");
  ALPA_RETURN_IF_ERROR(expect_punct("{", "after the graph name"));
  while (!is_punct("}")) {
    if (tok_.kind == Tok::kEnd) return error("unexpected end of input: missing '}'");
    ALPA_RETURN_IF_ERROR(parse_statement(g));
  }
  advance();
  if (tok_.kind != Tok::kEnd) return error(cat("unexpected ", describe(tok_), " after the graph"));
  Status s = verify(g);
  if (!s.ok()) return parse_error(cat(source_, ": ", s.message()), s.hint());
  return g;
}

}  // namespace

Result<Graph> parse_graph(std::string_view text, std::string_view source_name) {
  ALPA_ASSIGN_OR_RETURN(ParsedGraph p, parse_graph_at(text, source_name, std::nullopt));
  return std::move(p.graph);
}

Result<ParsedGraph> parse_graph_at(std::string_view text, std::string_view source_name,
                                   std::optional<int64_t> batch) {
  if (batch && *batch < 1) return invalid_argument(cat("batch must be >= 1, got ", *batch));
  Parser p(text, source_name, batch);
  ALPA_ASSIGN_OR_RETURN(Graph g, p.parse());
  return ParsedGraph{std::move(g), p.declared_batch()};
}

Result<Graph> load_graph_file(const std::string& path) {
  Result<std::string> text = read_file(path);
  if (!text.ok()) return text.status().with_context("model file");
  return parse_graph(*text, path);
}

Status save_graph_file(const Graph& graph, const std::string& path) {
  return write_file(path, print_graph(graph));
}

}  // namespace alpa
