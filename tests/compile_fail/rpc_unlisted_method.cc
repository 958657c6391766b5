// expect: m is not in C's durable::Rpc<...> list of callable methods
#include "rpc_common.h"
inline durable::Task<void> caller(durable::Stub stub) { co_await stub.call<&Counter::hidden>(); }
