// durable/error.h: the one error type the runtime throws.
//
// Every error the runtime raises is a durable::Error with a code, in the spirit of abseil's
// StatusCode: the code says what kind of failure it is, the message says which. httpStatus()
// is the one place a code becomes an HTTP status, used wherever an error turns into a
// response; the message is for people and becomes the `{"error": message}` body.
#pragma once

#include <stdexcept>
#include <string>

namespace durable {

enum class ErrorCode {
  kInvalidArgument,    // 400: the caller sent something malformed (a bad ID, a bad key, a bad config)
  kFailedPrecondition, // 400: the request is well formed but the system is not in a state to run it
  kNotFound,           // 404
  kPayloadTooLarge,    // 413
  kResourceExhausted,  // 429
  kInternal,           // 500: our bug or the object's
  kUnavailable,        // 503: something the call needs is not there now: storage failed (the object
                       // was reset; retry) or stopped (until restart), a file or port at start-up
};

// The HTTP status of an error with this code.
int httpStatus(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }
  int httpStatus() const noexcept { return durable::httpStatus(code_); }

 private:
  ErrorCode code_;
};

}  // namespace durable
