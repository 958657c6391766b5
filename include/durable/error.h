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
  // Cloudflare's flags on the error a call to an object fails with (error.remote,
  // error.retryable, error.overloaded in JavaScript).
  struct Flags {
    // The object's own code threw it (in fetch, an RPC method or its constructor), and the
    // call carried it to the caller; false when the runtime raised it on the way.
    bool remote = false;
    // The object was reset (a commit failed, it was aborted) before it could answer: the call
    // may be made again if doing it twice is harmless.
    bool retryable = false;
    // The object refuses more work now (too many calls wait for it): retrying at once makes
    // it worse. An uncaught one answers 503 with Retry-After.
    bool overloaded = false;
    bool operator==(const Flags&) const = default;
  };

  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Error(ErrorCode code, const std::string& message, Flags flags)
      : std::runtime_error(message), code_(code), flags_(flags) {}
  ErrorCode code() const noexcept { return code_; }
  int httpStatus() const noexcept { return durable::httpStatus(code_); }
  bool remote() const noexcept { return flags_.remote; }
  bool retryable() const noexcept { return flags_.retryable; }
  bool overloaded() const noexcept { return flags_.overloaded; }
  const Flags& flags() const noexcept { return flags_; }

 private:
  ErrorCode code_;
  Flags flags_;
};

}  // namespace durable
