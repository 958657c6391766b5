// durable/fetch.h: HTTP requests to other services, from a Worker or an object, as fetch()
// makes them in JavaScript.
//
//   auto r = co_await durable::fetch("https://api.example.com/v1/items", {.method = "POST", .body = json});
//   if (r.ok()) items = r.json();
//
// HTTP/1.1 over TCP, or TLS for https: URLs, with the server's certificate checked against the
// system's trusted roots (OpenSSL's default store; SSL_CERT_FILE or SSL_CERT_DIR replace it) and
// its name. Connections are kept alive and reused per shard. Redirects are followed, up to 20,
// as the Fetch standard does (RequestInit::redirect: "follow", "manual" or "error"); any status
// is a response, not an error.
//
// Awaiting a fetch is waiting on something outside the object: other events may enter the
// object meanwhile (its input gate is not held), as in JavaScript.
//
// Errors are durable::Error: kInvalidArgument for a URL that is not http: or https:;
// kUnavailable when the name does not resolve, the connection is refused or breaks, the TLS
// certificate fails verification, no answer comes within [durable] fetch_timeout_ms, or a
// redirect is refused; kPayloadTooLarge for a response past [durable] max_fetch_response_bytes.
// Only on the runtime's threads (a Worker's handler, an object's event): elsewhere it throws
// Error(kFailedPrecondition).
#pragma once

#include <durable/http.h>
#include <durable/task.h>

#include <string>

namespace durable {

Task<Response> fetch(Request request);
inline Task<Response> fetch(std::string url, RequestInit init = {}) { return fetch(Request(std::move(url), init)); }

}  // namespace durable
