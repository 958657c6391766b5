// A class with one listed method, for the compile-fail cases.
#pragma once
#include <durable/durable.h>

class Counter : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<std::int64_t> add(std::int64_t by) { co_return by; }
  durable::Task<void> hidden() { co_return; }
  using Rpc = durable::Rpc<&Counter::add>;
};

class Unlisted : public durable::DurableObject {
 public:
  using DurableObject::DurableObject;
  durable::Task<void> run() { co_return; }
};

inline durable::Task<void> caller(durable::Stub stub);
