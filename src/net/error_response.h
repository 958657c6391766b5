// The one shape of an error answer: `{"error": message}` with the status of its code.
#pragma once

#include <durable/error.h>
#include <durable/http.h>

#include <string_view>

namespace durable::detail {

Response errorResponse(ErrorCode code, std::string_view message);

}  // namespace durable::detail
