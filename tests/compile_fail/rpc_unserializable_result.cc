// expect: m's result must be void or a type durable::Value holds
#include "rpc_common.h"
class Pointers : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<int*> leak() { co_return nullptr; }
  using Rpc = durable::Rpc<&Pointers::leak>;
};
inline durable::Task<void> caller(durable::Stub stub) { co_await stub.call<&Pointers::leak>(); }
