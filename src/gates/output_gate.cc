#include "gates/output_gate.h"

namespace durable::detail {

OutputGate::Hold& OutputGate::Hold::operator=(Hold&& other) noexcept {
  if (this != &other) {
    release();
    gate_ = std::exchange(other.gate_, nullptr);
    ticket_ = other.ticket_;
  }
  return *this;
}

void OutputGate::Hold::release(std::exception_ptr error) {
  if (auto* gate = std::exchange(gate_, nullptr)) gate->release(ticket_, std::move(error));
}

OutputGate::~OutputGate() = default;

OutputGate::Hold OutputGate::hold() {
  const std::uint64_t ticket = next_++;
  held_.insert(ticket);
  return Hold(this, ticket);
}

void OutputGate::whenReleased(std::uint64_t mark, std::function<void(std::exception_ptr)> done) {
  if (error_) {
    done(error_);
    return;
  }
  if (releasedBefore(mark)) {
    done(nullptr);
    return;
  }
  waiters_.emplace(mark, std::move(done));
}

void OutputGate::release(std::uint64_t ticket, std::exception_ptr error) {
  held_.erase(ticket);
  if (error && !error_) error_ = std::move(error);
  // Waiters run after the gate's state is final, and each one is off the list before it
  // runs: a callback may take a new Hold or wait again.
  while (!waiters_.empty()) {
    auto it = waiters_.begin();
    if (!error_ && !releasedBefore(it->first)) break;
    auto done = std::move(it->second);
    waiters_.erase(it);
    done(error_);
  }
}

}  // namespace durable::detail
