#include "gates/input_gate.h"

#include <durable/error.h>

#include <algorithm>

namespace durable::detail {

InputGate::Lock& InputGate::Lock::operator=(Lock&& other) noexcept {
  if (this != &other) {
    release();
    gate_ = std::exchange(other.gate_, nullptr);
    flow_ = other.flow_;
  }
  return *this;
}

void InputGate::Lock::release() {
  if (auto* gate = std::exchange(gate_, nullptr)) gate->unlock(flow_);
}

InputGate::InputGate(std::function<void(std::function<void()>)> post, std::function<bool()> mayStart)
    : post_(std::move(post)), mayStart_(std::move(mayStart)) {}

InputGate::~InputGate() = default;

InputGate::Lock InputGate::lock(Flow flow) {
  if (flow == 0) throw Error(ErrorCode::kInternal, "InputGate::lock: flow 0 is no flow");
  owners_.push_back(flow);
  return Lock(this, flow);
}

bool InputGate::admits(Flow flow) const {
  return owners_.empty() || std::find(owners_.begin(), owners_.end(), flow) != owners_.end();
}

void InputGate::unlock(Flow flow) {
  auto it = std::find(owners_.begin(), owners_.end(), flow);
  if (it != owners_.end()) owners_.erase(it);
  if (owners_.empty() && !waiting_.empty()) schedule();
}

bool InputGate::admitsNewEvent() {
  if (broken_ || !owners_.empty() || !waiting_.empty()) return false;
  if (mayStart_ && !mayStart_()) return false;
  return owners_.empty();
}

void InputGate::enqueue(std::function<void()> start) { waiting_.push_back({std::move(start), 0}); }

std::vector<std::function<void()>> InputGate::takeNewEvents() {
  std::vector<std::function<void()>> taken;
  std::erase_if(waiting_, [&](Waiting& w) {
    if (w.flow != 0) return false;
    taken.push_back(std::move(w.fn));
    return true;
  });
  return taken;
}

void InputGate::reset() {
  owners_.clear();
  broken_ = false;
  if (!waiting_.empty()) schedule();
}

void InputGate::schedule() {
  if (drainPosted_) return;
  drainPosted_ = true;
  post_([this] {
    drainPosted_ = false;
    drain();
  });
}

void InputGate::drain() {
  std::size_t i = 0;
  // New events keep their order: once one cannot go, none after it goes in this pass, while
  // resumptions behind it still may.
  bool newEventsHeld = false;
  while (i < waiting_.size()) {
    const Flow flow = waiting_[i].flow;
    const bool go = flow == 0 ? !newEventsHeld && owners_.empty() && !broken_ && (!mayStart_ || mayStart_()) &&
                                    owners_.empty()
                              : admits(flow);
    if (!go) {
      if (flow == 0) newEventsHeld = true;
      ++i;
      continue;
    }
    auto fn = std::move(waiting_[i].fn);
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
    fn();
    // fn may have locked or opened the gate: look again from the front.
    i = 0;
    newEventsHeld = false;
  }
}

}  // namespace durable::detail
