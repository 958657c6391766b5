// The `durable` binary: the runtime serving the seed's classes behind the seed's Worker.
#include "seed/app.h"

int main(int argc, char** argv) {
  durable::Server server;
  seed::exportClasses(server);
  server.setWorker(seed::makeApp());
  return server.run(argc, argv);
}
