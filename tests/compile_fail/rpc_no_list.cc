// expect: C must list its callable methods
#include "rpc_common.h"
inline durable::Task<void> caller(durable::Stub stub) { co_await stub.call<&Unlisted::run>(); }
