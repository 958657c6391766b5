// The seed's Worker (src/index.ts): its routes in front of its classes. This is the app
// `make run` serves.
#pragma once

#include <durable/durable.h>

namespace seed {

durable::Worker makeApp();
// Registers every class of the seed under its exported name.
void exportClasses(durable::Server& server);

}  // namespace seed
