#include "net/error_response.h"

#include <boost/json.hpp>

namespace durable::detail {

Response errorResponse(ErrorCode code, std::string_view message) {
  return protocolErrorResponse(httpStatus(code), message);
}

Response errorResponse(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    Response r = errorResponse(e.code(), e.what());
    // The object refused more work: a client should wait before it tries again.
    if (e.overloaded()) r.headers().set("retry-after", "1");
    return r;
  } catch (const std::exception& e) {
    return errorResponse(ErrorCode::kInternal, e.what());
  } catch (...) {
    return errorResponse(ErrorCode::kInternal, "unknown error");
  }
}

Response protocolErrorResponse(int status, std::string_view message) {
  return Response::json(boost::json::object{{"error", message}}, {.status = status});
}

}  // namespace durable::detail
