// The one shape of an error answer: `{"error": message}` with the status of its code.
#pragma once

#include <durable/error.h>
#include <durable/http.h>

#include <exception>
#include <string_view>

namespace durable::detail {

Response errorResponse(ErrorCode code, std::string_view message);
// What a caught exception answers: a durable::Error with its code's status, anything else 500.
Response errorResponse(const std::exception_ptr& error);
// A refusal by the HTTP layer itself (RFC 9112 framing, the size limits): its status is the
// protocol's (400, 408, 413, 431, 501, 503), not an ErrorCode's.
Response protocolErrorResponse(int status, std::string_view message);

}  // namespace durable::detail
