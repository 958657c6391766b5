#include "net/error_response.h"

#include <boost/json.hpp>

namespace durable::detail {

Response errorResponse(ErrorCode code, std::string_view message) {
  return Response::json(boost::json::object{{"error", message}}, {.status = httpStatus(code)});
}

}  // namespace durable::detail
