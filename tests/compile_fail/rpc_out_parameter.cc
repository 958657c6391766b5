// expect: m takes a parameter by non-const reference
#include "rpc_common.h"
class Out : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<void> fill(std::string& out) { out = "x"; co_return; }
  using Rpc = durable::Rpc<&Out::fill>;
};
inline durable::Task<void> caller(durable::Stub stub) {
  std::string s;
  co_await stub.call<&Out::fill>(s);
}
