// The command-line tools beside `serve`: durable objects, storage, alarm, backup and restore.
// Each asks a running server's admin listener (--admin HOST:PORT), or opens a stopped server's
// state directory itself, taking its lock, and asks the same admin API in-process.
#pragma once

#include "cli/state.h"

#include <string>
#include <vector>

namespace durable::cli {

// True for the commands runTool() serves.
bool isTool(const std::string& command);

// Runs `args` (args[0] is the command); the exit code: 0, 1 when the server or the state
// refused or failed (its message on stderr), 2 for a bad command line.
int runTool(const std::vector<std::string>& args, const Factories& classes, const std::string& defaultConfig);

// The usage of the tools, for `durable --help`: their synopsis, and what WHERE means.
extern const char* const kToolsUsage;
extern const char* const kToolsWhere;

}  // namespace durable::cli
