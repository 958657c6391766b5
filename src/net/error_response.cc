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
    return errorResponse(e.code(), e.what());
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
