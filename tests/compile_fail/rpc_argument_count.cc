// expect: wrong number of arguments for m
#include "rpc_common.h"
inline durable::Task<void> caller(durable::Stub stub) { co_await stub.call<&Counter::add>(1, 2); }
