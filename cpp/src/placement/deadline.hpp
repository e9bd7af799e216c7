// The time budget of one solve, and the caller's interrupt hook.
//
// Every loop of the search whose length grows with the problem calls
// check(work) with the number of elementary steps it just did; the clock is
// read once per kWorkPerPoll steps (about a millisecond of search), so the
// checks cost nothing measurable and the deadline is seen within a
// millisecond or two. Past the deadline check() throws TimeUp, which the search
// catches where it can fall back to what it already has. About every 20 ms
// check() also calls the interrupt hook, which may throw (the Python binding
// throws the pending KeyboardInterrupt there): that exception is not caught
// by the search and leaves solve() as it is.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace exogpu::placement::detail {

struct TimeUp {};

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  Deadline(Clock::time_point at, const std::function<void()>* interrupt)
      : at_(at), interrupt_(interrupt), last_poll_(Clock::now()) {}

  // The same hook, an earlier (never a later) deadline.
  [[nodiscard]] Deadline sooner(Clock::time_point at) const {
    return Deadline(at < at_ ? at : at_, interrupt_);
  }
  [[nodiscard]] Clock::time_point at() const noexcept { return at_; }

  void check(std::uint64_t work = 1) const {
    if (work < left_) {
      left_ -= work;
      return;
    }
    left_ = kWorkPerPoll;
    poll();
  }
  // Reads the clock now: throws TimeUp past the deadline, runs the hook.
  void poll() const {
    const auto now = Clock::now();
    if (interrupt_ != nullptr && *interrupt_ && now - last_poll_ > kInterruptEvery) {
      last_poll_ = now;
      (*interrupt_)();
    }
    if (now > at_) throw TimeUp{};
  }
  [[nodiscard]] bool passed() const {
    poll_hook_only();
    return Clock::now() > at_;
  }

 private:
  static constexpr std::uint64_t kWorkPerPoll = 1U << 20;
  static constexpr auto kInterruptEvery = std::chrono::milliseconds(20);

  void poll_hook_only() const {
    const auto now = Clock::now();
    if (interrupt_ != nullptr && *interrupt_ && now - last_poll_ > kInterruptEvery) {
      last_poll_ = now;
      (*interrupt_)();
    }
  }

  Clock::time_point at_;
  const std::function<void()>* interrupt_;
  // Single-threaded: one Deadline belongs to one solve() call.
  mutable Clock::time_point last_poll_;
  mutable std::uint64_t left_ = kWorkPerPoll;
};

}  // namespace exogpu::placement::detail
