#include "config/config_json.h"

#include <boost/json/basic_parser_impl.hpp>

#include <algorithm>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace durable::config {
namespace detail {
namespace {

namespace json = boost::json;

// Boost.JSON's parse events, turned into a toml++ tree as they arrive. The parser reports no
// positions, so the text is fed one line at a time and every node gets the line that was
// being fed when its first event came. That line is exact: a string cannot hold a raw line
// break, and a number is complete at the byte after it, which is on the same line (its
// newline at worst) and so in the same write.
class TreeBuilder {
 public:
  static constexpr std::size_t max_object_size = std::numeric_limits<std::size_t>::max();
  static constexpr std::size_t max_array_size = std::numeric_limits<std::size_t>::max();
  static constexpr std::size_t max_key_size = std::numeric_limits<std::size_t>::max();
  static constexpr std::size_t max_string_size = std::numeric_limits<std::size_t>::max();

  TreeBuilder(toml::table& root, JsonNodeInfos& infos) : root_(root), infos_(infos) {}

  int line = 1;  // set by the feeding loop before each write

  // What made a handler stop the parse; empty when the parser itself found the error. A string,
  // since Boost.JSON's handler interface passes nothing out but an error_code.
  std::string error;
  int errorLine = 0;

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

  bool on_object_begin(json::error_code& ec) {
    if (stack_.empty()) {
      infos_[&root_] = {line, false};
      stack_.push_back(&root_);
      return true;
    }
    return push(place(toml::table{}, line, ec));
  }
  bool on_array_begin(json::error_code& ec) {
    if (stack_.empty()) return fail(line, "the top level must be an object, not an array", ec);
    return push(place(toml::array{}, line, ec));
  }
  bool on_object_end(std::size_t, json::error_code&) { return pop(); }
  bool on_array_end(std::size_t, json::error_code&) { return pop(); }

  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    if (keyLine_ == 0) keyLine_ = line;
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t n, json::error_code& ec) {
    return on_key_part(s, n, ec);
  }

  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    begin();
    text_.append(s.data(), s.size());
    return true;
  }
  bool on_string(json::string_view s, std::size_t n, json::error_code& ec) {
    on_string_part(s, n, ec);
    std::string text = std::move(text_);
    text_.clear();
    return scalar(std::move(text), ec);
  }

  bool on_number_part(json::string_view, json::error_code&) {
    begin();
    return true;
  }
  bool on_int64(std::int64_t v, json::string_view, json::error_code& ec) {
    begin();
    return scalar(v, ec);
  }
  bool on_uint64(std::uint64_t v, json::string_view, json::error_code& ec) {
    begin();
    return fail(valueLine_, "integer " + std::to_string(v) + " is out of range (at most 64-bit signed)", ec);
  }
  bool on_double(double v, json::string_view, json::error_code& ec) {
    begin();
    return scalar(v, ec);
  }
  bool on_bool(bool v, json::error_code& ec) {
    begin();
    return scalar(v, ec);
  }
  bool on_null(json::error_code& ec) {
    begin();
    null_ = true;
    // A date, because nothing read from JSON is one; JsonNodeInfo::null says what it stands for.
    return scalar(toml::date{}, ec);
  }

 private:
  void begin() {
    if (valueLine_ == 0) valueLine_ = line;
  }

  bool fail(int at, std::string message, json::error_code& ec) {
    error = std::move(message);
    errorLine = at;
    // Any error stops the parser; `error` carries the real message.
    ec = json::error::syntax;
    return false;
  }

  // Inserts `value` under the pending key of the innermost object, or at the end of the
  // innermost array; null (with `error` set) for a duplicate key or a scalar at the top level.
  template <typename T>
  toml::node* place(T&& value, int at, json::error_code& ec) {
    const bool isNull = std::exchange(null_, false);
    if (stack_.empty()) {
      fail(at, "the top level must be an object", ec);
      return nullptr;
    }
    toml::node* placed = nullptr;
    if (toml::table* table = stack_.back()->as_table()) {
      auto [it, fresh] = table->insert(key_, std::forward<T>(value));
      if (!fresh) {
        fail(keyLine_, "duplicate key \"" + key_ + "\" (first on line " + std::to_string(infos_[&it->second].line) + ")",
             ec);
        return nullptr;
      }
      placed = &it->second;
      key_.clear();
      keyLine_ = 0;
    } else {
      toml::array& array = *stack_.back()->as_array();
      array.push_back(std::forward<T>(value));
      placed = &array.back();
    }
    infos_[placed] = {at, isNull};
    return placed;
  }

  template <typename T>
  bool scalar(T&& value, json::error_code& ec) {
    const int at = std::exchange(valueLine_, 0);
    return place(std::forward<T>(value), at, ec) != nullptr;
  }

  bool push(toml::node* container) {
    if (container == nullptr) return false;
    stack_.push_back(container);
    return true;
  }

  bool pop() {
    stack_.pop_back();
    return true;
  }

  toml::table& root_;
  JsonNodeInfos& infos_;
  std::vector<toml::node*> stack_;  // open objects and arrays, innermost last
  std::string key_;                 // the key awaiting its value
  int keyLine_ = 0;
  std::string text_;                // the string being read
  int valueLine_ = 0;               // line of the scalar being read; 0 between scalars
  bool null_ = false;
};

// Characters, not bytes, so the column matches what an editor shows for UTF-8 text.
int columnOf(std::string_view lineText) {
  int column = 1;
  for (const char c : lineText) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++column;
  }
  return column;
}

}  // namespace

void readJsonTree(std::string_view text, std::string_view source, toml::table& root, JsonNodeInfos& infos) {
  json::parse_options options;
  // What wrangler accepts in wrangler.json and wrangler.jsonc alike.
  options.allow_comments = true;
  options.allow_trailing_commas = true;
  json::basic_parser<TreeBuilder> parser(options, root, infos);
  // Editors on Windows may start UTF-8 with a byte order mark; toml++ skips it too.
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);

  auto fail = [&](int line, const std::string& message) -> void {
    throw ConfigError(std::string(source) + ":" + std::to_string(line) + ": " + message);
  };
  auto syntaxError = [&](int line, std::string_view lineText, const json::error_code& ec) -> void {
    if (!parser.handler().error.empty()) fail(parser.handler().errorLine, parser.handler().error);
    fail(line, "JSON syntax error at column " + std::to_string(columnOf(lineText)) + ": " + ec.message());
  };

  int line = 1;
  std::size_t lineStart = 0;
  json::error_code ec;
  while (lineStart < text.size()) {
    const std::size_t newline = text.find('\n', lineStart);
    const std::size_t end = newline == std::string_view::npos ? text.size() : newline + 1;
    parser.handler().line = line;
    const std::size_t used = parser.write_some(true, text.data() + lineStart, end - lineStart, ec);
    if (ec) syntaxError(line, text.substr(lineStart, used), ec);
    // The parser stops short, without an error, where its one document ends.
    if (used < end - lineStart) {
      fail(line, "JSON syntax error at column " + std::to_string(columnOf(text.substr(lineStart, used))) +
                     ": more text after the top-level object");
    }
    lineStart = end;
    ++line;
  }
  parser.write_some(false, nullptr, 0, ec);
  if (ec) {
    // An unfinished document: point just past its last visible character, not at the
    // empty line after a final newline.
    const std::size_t last = text.find_last_not_of(" \t\r\n");
    const std::string_view upToEnd = text.substr(0, last == std::string_view::npos ? 0 : last + 1);
    const std::size_t lastNewline = upToEnd.rfind('\n');
    const int endLine = 1 + static_cast<int>(std::count(upToEnd.begin(), upToEnd.end(), '\n'));
    syntaxError(endLine, upToEnd.substr(lastNewline == std::string_view::npos ? 0 : lastNewline + 1), ec);
  }
}

}  // namespace detail

Config parseJsonConfig(std::string_view jsonText, std::string_view sourceName) {
  toml::table root;
  detail::JsonNodeInfos infos;
  detail::readJsonTree(jsonText, sourceName, root, infos);
  return detail::validateTree(root, sourceName, &infos);
}

}  // namespace durable::config
