// How an exception an object's code threw crosses to its caller.
#pragma once

#include <exception>

namespace durable::detail {

// The exception as the caller sees it: a durable::Error with its code, message and flags and
// remote() set; anything else as Error(kInternal) with its what() (or a sentence for a throw
// of a non-exception). Called on the object's thread, so the caller never touches the
// object's exception object.
std::exception_ptr asRemote(const std::exception_ptr& thrown);

}  // namespace durable::detail
