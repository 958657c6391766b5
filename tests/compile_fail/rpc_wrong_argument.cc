// expect: an argument does not convert to the type m takes
#include "rpc_common.h"
inline durable::Task<void> caller(durable::Stub stub) { co_await stub.call<&Counter::add>("five"); }
