// The gates alone, driven by hand as workerd's io-gate-test drives its own: a queue stands
// for the shard's event loop, and each step says what may run and what must wait.
#include "gates/input_gate.h"
#include "gates/output_gate.h"

#include <durable/error.h>
#include <durable/task.h>
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using durable::detail::InputGate;
using durable::detail::OutputGate;

// The shard's loop: what the gate posts runs only when the test turns the loop.
struct Loop {
  std::deque<std::function<void()>> posted;
  std::function<void(std::function<void()>)> poster() {
    return [this](std::function<void()> fn) { posted.push_back(std::move(fn)); };
  }
  void turn() {
    while (!posted.empty()) {
      auto fn = std::move(posted.front());
      posted.pop_front();
      fn();
    }
  }
};

TEST(InputGateTest, AnOpenGateLetsEventsStraightIn) {
  Loop loop;
  InputGate gate(loop.poster());
  std::vector<std::string> ran;
  gate.enter([&] { ran.push_back("a"); });
  gate.enter([&] { ran.push_back("b"); });
  EXPECT_EQ(ran, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(gate.idle());
  EXPECT_TRUE(loop.posted.empty());
}

TEST(InputGateTest, ALockHoldsNewEventsUntilItGoesThenTheyRunInOrderOnAFreshStack) {
  Loop loop;
  InputGate gate(loop.poster());
  std::vector<std::string> ran;
  {
    auto lock = gate.lock(1);
    EXPECT_TRUE(gate.locked());
    gate.enter([&] { ran.push_back("first"); });
    gate.enter([&] { ran.push_back("second"); });
    EXPECT_TRUE(ran.empty());
    EXPECT_EQ(gate.waiting(), 2u);
    loop.turn();
    EXPECT_TRUE(ran.empty()) << "the lock still holds";
  }
  // Released: nothing runs inside the release, only when the loop turns.
  EXPECT_TRUE(ran.empty());
  loop.turn();
  EXPECT_EQ(ran, (std::vector<std::string>{"first", "second"}));
  EXPECT_TRUE(gate.idle());
}

TEST(InputGateTest, TheFlowThatHoldsTheLockKeepsRunningAndOthersWait) {
  Loop loop;
  InputGate gate(loop.poster());
  std::vector<std::string> ran;
  auto lock = gate.lock(7);
  EXPECT_TRUE(gate.admits(7));
  EXPECT_FALSE(gate.admits(8));
  gate.resume(7, [&] { ran.push_back("7 resumes"); });
  gate.resume(8, [&] { ran.push_back("8 resumes"); });
  EXPECT_EQ(ran, (std::vector<std::string>{"7 resumes"}));
  lock.release();
  EXPECT_FALSE(lock.held());
  lock.release();  // twice is harmless
  loop.turn();
  EXPECT_EQ(ran, (std::vector<std::string>{"7 resumes", "8 resumes"}));
}

TEST(InputGateTest, AResumptionOvertakesWaitingNewEventsButNewEventsKeepTheirOrder) {
  Loop loop;
  InputGate gate(loop.poster());
  std::vector<std::string> ran;
  auto holder = gate.lock(1);
  gate.enter([&] { ran.push_back("new 1"); });
  gate.resume(2, [&] { ran.push_back("flow 2"); });
  gate.enter([&] { ran.push_back("new 2"); });
  holder.release();
  // A second lock taken before the loop turns: only its own flow may go.
  auto second = gate.lock(2);
  loop.turn();
  EXPECT_EQ(ran, (std::vector<std::string>{"flow 2"}));
  second.release();
  loop.turn();
  EXPECT_EQ(ran, (std::vector<std::string>{"flow 2", "new 1", "new 2"}));
}

TEST(InputGateTest, AnEventThatLocksTheGateHoldsBackTheEventsQueuedBehindIt) {
  Loop loop;
  InputGate gate(loop.poster());
  std::vector<std::string> ran;
  InputGate::Lock taken;
  auto first = gate.lock(1);
  gate.enter([&] {
    ran.push_back("locker");
    taken = gate.lock(2);  // a transaction starting in the first event let through
  });
  gate.enter([&] { ran.push_back("behind"); });
  first.release();
  loop.turn();
  EXPECT_EQ(ran, (std::vector<std::string>{"locker"}));
  taken.release();
  loop.turn();
  EXPECT_EQ(ran, (std::vector<std::string>{"locker", "behind"}));
}

TEST(InputGateTest, OneFlowMayHoldSeveralLocksAndTheGateOpensWhenTheLastGoes) {
  Loop loop;
  InputGate gate(loop.poster());
  bool ran = false;
  auto a = gate.lock(3);
  auto b = gate.lock(3);
  gate.enter([&] { ran = true; });
  a.release();
  loop.turn();
  EXPECT_FALSE(ran);
  EXPECT_TRUE(gate.locked());
  b.release();
  loop.turn();
  EXPECT_TRUE(ran);
}

TEST(InputGateTest, AMovedLockIsReleasedOnceByItsLastOwner) {
  Loop loop;
  InputGate gate(loop.poster());
  InputGate::Lock outer;
  {
    auto inner = gate.lock(4);
    outer = std::move(inner);
    EXPECT_FALSE(inner.held());
  }
  EXPECT_TRUE(gate.locked()) << "the moved-from lock released what it no longer owned";
  outer = InputGate::Lock();
  EXPECT_FALSE(gate.locked());
}

TEST(InputGateTest, FlowZeroCannotLock) {
  Loop loop;
  InputGate gate(loop.poster());
  EXPECT_THROW((void)gate.lock(0), durable::Error);
  EXPECT_FALSE(gate.locked());
}

TEST(InputGateTest, ABrokenGateAdmitsNoNewEventUntilResetButLetsRunningFlowsFinish) {
  Loop loop;
  InputGate gate(loop.poster());
  std::vector<std::string> ran;
  gate.breakGate();
  EXPECT_TRUE(gate.broken());
  gate.enter([&] { ran.push_back("new"); });
  gate.resume(5, [&] { ran.push_back("flow 5 finishes"); });
  loop.turn();
  EXPECT_EQ(ran, (std::vector<std::string>{"flow 5 finishes"}));
  gate.reset();
  EXPECT_FALSE(gate.broken());
  loop.turn();
  EXPECT_EQ(ran, (std::vector<std::string>{"flow 5 finishes", "new"}));
}

TEST(InputGateTest, ResetVoidsTheLocksOfTheOldInstance) {
  Loop loop;
  InputGate gate(loop.poster());
  bool ran = false;
  auto stale = gate.lock(9);
  gate.enter([&] { ran = true; });
  gate.breakGate();
  gate.reset();
  loop.turn();
  EXPECT_TRUE(ran);
  stale.release();  // the old flow ends later: nothing breaks
  EXPECT_FALSE(gate.locked());
}

TEST(InputGateTest, MayStartIsAskedBeforeANewEventAndMayLockTheGateItself) {
  // The owner constructs the object there; a constructor calling blockConcurrencyWhile
  // holds every event, the one that caused the construction included.
  Loop loop;
  InputGate::Lock constructorLock;
  bool constructed = false;
  InputGate* gatePtr = nullptr;
  InputGate gate(loop.poster(), [&] {
    if (!constructed) {
      constructed = true;
      constructorLock = gatePtr->lock(11);
    }
    return true;
  });
  gatePtr = &gate;
  bool ran = false;
  gate.enter([&] { ran = true; });
  EXPECT_TRUE(constructed);
  EXPECT_FALSE(ran);
  loop.turn();
  EXPECT_FALSE(ran);
  constructorLock.release();
  loop.turn();
  EXPECT_TRUE(ran);
  // The gate is not torn down with the lock member still held.
  constructorLock = InputGate::Lock();
}

durable::Task<void> awaitGate(OutputGate& gate, std::vector<std::string>& log, std::string name) {
  auto wait = gate.wait();
  try {
    co_await wait;
    log.push_back(name + " released");
  } catch (const std::exception& e) {
    log.push_back(name + " failed: " + e.what());
  }
}

TEST(OutputGateTest, AWaitWithNothingHeldIsReadyAtOnce) {
  OutputGate gate;
  std::vector<std::string> log;
  durable::spawn(awaitGate(gate, log, "w"));
  EXPECT_EQ(log, (std::vector<std::string>{"w released"}));
}

TEST(OutputGateTest, AWaitWaitsForTheHoldsTakenBeforeItAndNotForLaterOnes) {
  OutputGate gate;
  std::vector<std::string> log;
  auto commit1 = gate.hold();
  durable::spawn(awaitGate(gate, log, "reply 1"));
  auto commit2 = gate.hold();
  durable::spawn(awaitGate(gate, log, "reply 2"));
  auto commit3 = gate.hold();  // taken after both waits: holds neither
  EXPECT_TRUE(log.empty());
  commit2.release();
  EXPECT_TRUE(log.empty()) << "reply 2 also waits for commit 1";
  commit1.release();
  EXPECT_EQ(log, (std::vector<std::string>{"reply 1 released", "reply 2 released"}));
  EXPECT_EQ(gate.held(), 1u);
  commit3.release();
  EXPECT_EQ(gate.held(), 0u);
}

TEST(OutputGateTest, OutOfOrderReleasesFreeEachWaitAsSoonAsItsOwnHoldsAreGone) {
  OutputGate gate;
  std::vector<std::string> log;
  auto a = gate.hold();
  durable::spawn(awaitGate(gate, log, "after a"));
  auto b = gate.hold();
  durable::spawn(awaitGate(gate, log, "after b"));
  a.release();
  EXPECT_EQ(log, (std::vector<std::string>{"after a released"}));
  b.release();
  EXPECT_EQ(log, (std::vector<std::string>{"after a released", "after b released"}));
}

TEST(OutputGateTest, AFailedHoldBreaksTheGateForEveryWaitNowAndLater) {
  OutputGate gate;
  std::vector<std::string> log;
  auto ok = gate.hold();
  auto bad = gate.hold();
  durable::spawn(awaitGate(gate, log, "early"));
  bad.release(std::make_exception_ptr(durable::Error(durable::ErrorCode::kUnavailable, "disk full")));
  EXPECT_TRUE(gate.broken());
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NE(log[0].find("early failed: "), std::string::npos);
  EXPECT_NE(log[0].find("disk full"), std::string::npos);
  // Broken for good: a wait with nothing held before it fails too, and so does a callback.
  ok.release();
  durable::spawn(awaitGate(gate, log, "late"));
  ASSERT_EQ(log.size(), 2u);
  EXPECT_NE(log[1].find("late failed: "), std::string::npos);
  std::exception_ptr seen;
  gate.whenReleased([&](std::exception_ptr e) { seen = e; });
  EXPECT_TRUE(seen != nullptr);
}

TEST(OutputGateTest, ACallbackMayHoldAndWaitAgainFromInsideTheRelease) {
  OutputGate gate;
  std::vector<std::string> log;
  OutputGate::Hold next;
  auto first = gate.hold();
  gate.whenReleased([&](std::exception_ptr e) {
    log.push_back(e ? "error" : "first out");
    next = gate.hold();
    gate.whenReleased([&](std::exception_ptr) { log.push_back("second out"); });
  });
  first.release();
  EXPECT_EQ(log, (std::vector<std::string>{"first out"}));
  next.release();
  EXPECT_EQ(log, (std::vector<std::string>{"first out", "second out"}));
}

TEST(OutputGateTest, ADroppedHoldCountsAsReleased) {
  OutputGate gate;
  std::vector<std::string> log;
  {
    auto h = gate.hold();
    durable::spawn(awaitGate(gate, log, "w"));
    EXPECT_TRUE(log.empty());
  }
  EXPECT_EQ(log, (std::vector<std::string>{"w released"}));
  EXPECT_FALSE(gate.broken());
}

TEST(OutputGateTest, AMarkAsksOnlyAboutTheHoldsTakenBeforeIt) {
  OutputGate gate;
  const auto empty = gate.mark();
  EXPECT_TRUE(gate.clearFor(empty));
  auto commit1 = gate.hold();
  const auto afterOne = gate.mark();
  auto commit2 = gate.hold();
  const auto afterTwo = gate.mark();
  EXPECT_TRUE(gate.clearFor(empty)) << "no Hold was taken before it";
  EXPECT_FALSE(gate.clearFor(afterOne));
  std::vector<std::string> log;
  gate.whenReleased(afterTwo, [&](std::exception_ptr e) { log.push_back(e ? "two failed" : "two out"); });
  gate.whenReleased(afterOne, [&](std::exception_ptr e) { log.push_back(e ? "one failed" : "one out"); });
  commit1.release();
  EXPECT_TRUE(gate.clearFor(afterOne));
  EXPECT_FALSE(gate.clearFor(afterTwo));
  EXPECT_EQ(log, (std::vector<std::string>{"one out"}));
  // A Hold taken after the mark does not hold it back.
  auto later = gate.hold();
  commit2.release();
  EXPECT_TRUE(gate.clearFor(afterTwo));
  EXPECT_EQ(log, (std::vector<std::string>{"one out", "two out"}));
  EXPECT_FALSE(gate.clearFor(gate.mark()));
}

TEST(OutputGateTest, ABrokenGateIsClearForNothingUntilRepairedAndRepairKeepsHoldsHeld) {
  OutputGate gate;
  const auto before = gate.mark();
  auto bad = gate.hold();
  auto pending = gate.hold();
  std::vector<std::string> log;
  gate.whenReleased(gate.mark(), [&](std::exception_ptr e) { log.push_back(e ? "failed" : "out"); });
  bad.release(std::make_exception_ptr(durable::Error(durable::ErrorCode::kUnavailable, "disk full")));
  EXPECT_EQ(log, (std::vector<std::string>{"failed"}));
  // Output marked before the failure is not sent either: its object is about to be reset.
  EXPECT_FALSE(gate.clearFor(before));
  gate.whenReleased(before, [&](std::exception_ptr e) { log.push_back(e ? "late failed" : "late out"); });
  EXPECT_EQ(log, (std::vector<std::string>{"failed", "late failed"}));
  gate.repair();
  EXPECT_FALSE(gate.broken());
  EXPECT_TRUE(gate.clearFor(before));
  EXPECT_EQ(gate.held(), 1u) << "repair() leaves a Hold still held";
  const auto afterRepair = gate.mark();
  EXPECT_FALSE(gate.clearFor(afterRepair));
  pending.release();
  EXPECT_TRUE(gate.clearFor(afterRepair));
}

}  // namespace
