#include "base/log.h"
#include "base/remote_error.h"

#include <durable/error.h>

namespace durable {

int httpStatus(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kFailedPrecondition:
      return 400;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kPayloadTooLarge:
      return 413;
    case ErrorCode::kResourceExhausted:
      return 429;
    case ErrorCode::kInternal:
      return 500;
    case ErrorCode::kUnavailable:
      return 503;
  }
  // A code from a newer build read by an older one is still an error on our side.
  return 500;
}

}  // namespace durable

namespace durable::detail {

std::exception_ptr asRemote(const std::exception_ptr& thrown) {
  try {
    std::rethrow_exception(thrown);
  } catch (const Error& e) {
    Error::Flags flags = e.flags();
    flags.remote = true;
    return std::make_exception_ptr(Error(e.code(), e.what(), flags));
  } catch (const std::exception& e) {
    return std::make_exception_ptr(Error(ErrorCode::kInternal, e.what(), {.remote = true}));
  } catch (...) {
    return std::make_exception_ptr(Error(ErrorCode::kInternal, describeException(thrown), {.remote = true}));
  }
}

}  // namespace durable::detail
