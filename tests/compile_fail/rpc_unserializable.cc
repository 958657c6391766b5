// expect: every parameter of m must be a type durable::Value holds
#include "rpc_common.h"
class Pointers : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<std::int64_t> takesPointer(int* p) { co_return *p; }
  using Rpc = durable::Rpc<&Pointers::takesPointer>;
};
inline durable::Task<void> caller(durable::Stub stub) {
  int x = 1;
  co_await stub.call<&Pointers::takesPointer>(&x);
}
