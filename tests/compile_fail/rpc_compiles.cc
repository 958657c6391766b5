// expect: nothing (this one must compile: the cases above fail for their stated reason only)
#include "rpc_common.h"
class Both : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<std::string> name(const std::string& prefix) const noexcept { co_return prefix + "!"; }
  using Rpc = durable::Rpc<&Both::name>;
};
inline durable::Task<void> caller(durable::Stub stub) {
  std::int64_t n = co_await stub.call<&Counter::add>(5);
  std::string s = co_await stub.call<&Both::name>("x");
  (void)n;
  (void)s;
}
