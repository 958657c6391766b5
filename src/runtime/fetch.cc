// durable/fetch.h: the calling shard's HttpClient (src/net/http_client.h) behind the public call.
#include "runtime/runtime.h"

#include "base/request_tag.h"

#include <durable/error.h>
#include <durable/fetch.h>

namespace durable {

Task<Response> fetch(Request request) {
  detail::Shard* shard = detail::Shard::current();
  if (!shard) {
    throw Error(ErrorCode::kFailedPrecondition,
                "durable::fetch() runs only on the runtime's threads: in a Worker's handler or an object's event");
  }
  // W3C trace context: the trace this request is part of goes on to the services it calls.
  const auto& tag = detail::currentContext().request;
  if (tag.hasTraceparent && !request.headers().has(detail::kTraceparentHeader)) {
    request.headers().set(detail::kTraceparentHeader, detail::traceparentOf(tag));
  }
  co_return co_await shard->httpClient().fetch(std::move(request));
}

}  // namespace durable
