// JSON text written into a caller's buffer, for encoders on hot paths (a stored value's
// encoding): stringify() returns a new string, which the caller then copies.
#pragma once

#include <durable/json.h>

#include <string>

namespace durable::detail {

// Appends stringify(v) to `out`. Reserve `out` first when the size is known roughly (the last
// encoding of the same key): the text is then written without growing it.
void appendJson(const Json& v, std::string& out);

}  // namespace durable::detail
