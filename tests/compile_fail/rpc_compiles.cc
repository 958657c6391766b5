// expect: nothing (this one must compile: the cases above fail for their stated reason only)
#include "rpc_common.h"
inline durable::Task<void> caller(durable::Stub stub) {
  std::int64_t n = co_await stub.call<&Counter::add>(5);
  (void)n;
}
