// config/config_json.h: wrangler.json / wrangler.jsonc read into the toml++ tree that the TOML
// path validates, so both formats go through one validator and cannot drift apart.
//
// toml++ nodes keep their source position in a private member that only its own parser sets,
// so the JSON reader returns each node's line beside the tree instead.
#pragma once

#include "config/config.h"

// Same defines as config.cc: the Debian/CMake package links toml++ as a shared library.
#ifndef TOML_HEADER_ONLY
#define TOML_HEADER_ONLY 0
#define TOML_SHARED_LIB 1
#endif
#include <toml++/toml.h>

#include <string_view>
#include <unordered_map>

namespace durable::config::detail {

struct JsonNodeInfo {
  int line = 0;
  // TOML has no null; a JSON null becomes a placeholder node that the validator calls "null".
  bool null = false;
};

// Every node of a tree read from JSON, the root included.
using JsonNodeInfos = std::unordered_map<const toml::node*, JsonNodeInfo>;

// Fills `root` (which must be empty) and `infos` from JSON with comments and trailing commas.
// Throws ConfigError "<source>:<line>: JSON syntax error at column <c>: ..." for text that is
// not such JSON, and for what TOML cannot hold: a top level that is not an object, a
// duplicate key, an integer beyond 64-bit signed.
void readJsonTree(std::string_view text, std::string_view source, toml::table& root, JsonNodeInfos& infos);

// The one validator, in config.cc. `json` is null for a tree that toml++ parsed (its nodes
// carry their own lines).
Config validateTree(const toml::table& root, std::string_view source, const JsonNodeInfos* json);

}  // namespace durable::config::detail
