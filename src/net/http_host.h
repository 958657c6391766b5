// What the HTTP front needs from the runtime above it, which implements it: the shard threads
// to listen on (each its own io_context) and the Env the front Worker sees. The front only
// hands a shard on to adoptWebSocket.
#pragma once

#include <boost/asio/io_context.hpp>

namespace durable {
class Env;
}

namespace durable::detail {

class SocketShard;

class HttpHost {
 public:
  virtual unsigned shardCount() const = 0;
  virtual SocketShard& shard(unsigned i) = 0;
  virtual boost::asio::io_context& shardContext(unsigned i) = 0;
  virtual Env& env() = 0;

 protected:
  ~HttpHost() = default;
};

}  // namespace durable::detail
