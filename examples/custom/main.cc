#include "guestbook.h"

int main(int argc, char** argv) {
  durable::Server server;
  server.exportClass<Guestbook>("Guestbook");
  server.setWorker(makeGuestbookApp());
  return server.run(argc, argv);
}
