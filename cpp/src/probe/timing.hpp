// Timing shared by the probes: device events where the backend's events give
// a usable clock, the host's monotonic clock otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "exogpu/device.hpp"
#include "exogpu/probe.hpp"

namespace exogpu::probe::detail {

struct TimedRun {
  double seconds = 0;
  Timing timing = Timing::host_clock;
};

// True when two events recorded on `stream` report a finite, non-negative
// elapsed time (a backend without timestamps throws or gives nonsense).
[[nodiscard]] bool events_usable(Stream& stream);

// Waits for `stream` to drain, then times `enqueue` (which enqueues work on
// `stream`, or on streams that `stream` waits for) until the work completes.
// With `use_events`, the time is the span between two events recorded around
// the work; the host clock bracketing the same run is the fallback when the
// event span is not a plausible positive number.
[[nodiscard]] TimedRun time_on_stream(Stream& stream, const std::function<void()>& enqueue,
                                      bool use_events);

// Times a synchronous call with the host's monotonic clock.
[[nodiscard]] double time_on_host(const std::function<void()>& run);

// Bytes of host memory free for new allocations (MemAvailable on Linux).
[[nodiscard]] std::uint64_t available_host_memory();

}  // namespace exogpu::probe::detail
