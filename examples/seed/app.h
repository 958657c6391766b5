// The seed's Worker (src/index.ts): its routes in front of its classes. This is the app
// `make run` serves.
#pragma once

#include <durable/durable.h>

namespace seed {

durable::Worker makeApp();
// Adds the seed's middleware and routes to `app` (what makeApp() returns, on a Worker of
// one's own that has more routes). The API_RATE_* variables are read now.
void addRoutes(durable::Worker& app);
// Registers every class of the seed under its exported name.
void exportClasses(durable::Server& server);

}  // namespace seed
