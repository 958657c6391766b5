// durable/error.h: the one error type the runtime throws.
//
// Every error the runtime raises is a durable::Error with a code. The code decides the HTTP
// status when the error reaches the server's edge (a Worker handler that does not catch it);
// the message is for people and becomes the `{"error": message}` body.
#pragma once

#include <stdexcept>
#include <string>

namespace durable {

enum class ErrorCode {
  kInvalidArgument,    // 400: the caller sent something malformed (a bad ID, a bad key)
  kNotFound,           // 404
  kPayloadTooLarge,    // 413
  kResourceExhausted,  // 429
  kInternal,           // 500: our bug or the object's
  kUnavailable,        // 503: storage failed; the object was reset and may be retried
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }
  int httpStatus() const noexcept;

 private:
  ErrorCode code_;
};

}  // namespace durable
