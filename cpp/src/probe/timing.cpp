#include "probe/timing.hpp"

#include <cmath>
#include <exception>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#if defined(_WIN32)
#include <windows.h>
#else
#include <unistd.h>
#endif

namespace exogpu::probe::detail {
namespace {

double seconds_between(std::chrono::steady_clock::time_point a,
                       std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Events only count when they give a positive span no longer than the host
// clock's bracket around the same work (plus slack for clock granularity).
bool plausible(double event_seconds, double host_seconds) {
  return std::isfinite(event_seconds) && event_seconds > 0 &&
         event_seconds <= host_seconds * 1.05 + 1e-4;
}

}  // namespace

bool events_usable(Stream& stream) {
  try {
    auto start = stream.record();
    auto end = stream.record();
    end->synchronize();
    start->synchronize();
    const double ms = start->elapsed_ms(*end);
    return std::isfinite(ms) && ms >= 0;
  } catch (const std::exception&) {
    // No timestamps on this backend's events: the host clock it is.
    return false;
  }
}

TimedRun time_on_stream(Stream& stream, const std::function<void()>& enqueue, bool use_events) {
  stream.synchronize();
  if (!use_events) {
    const auto t0 = std::chrono::steady_clock::now();
    enqueue();
    stream.synchronize();
    return {seconds_between(t0, std::chrono::steady_clock::now()), Timing::host_clock};
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto start = stream.record();
  enqueue();
  auto end = stream.record();
  end->synchronize();
  const double host = seconds_between(t0, std::chrono::steady_clock::now());
  stream.synchronize();  // surfaces an error a queued copy raised
  double event_seconds = std::numeric_limits<double>::quiet_NaN();
  try {
    event_seconds = start->elapsed_ms(*end) / 1e3;
  } catch (const std::exception&) {
    // Fall through to the host clock.
  }
  if (plausible(event_seconds, host)) return {event_seconds, Timing::device_events};
  return {host, Timing::host_clock};
}

double time_on_host(const std::function<void()>& run) {
  const auto t0 = std::chrono::steady_clock::now();
  run();
  return seconds_between(t0, std::chrono::steady_clock::now());
}

std::uint64_t available_host_memory() {
#if defined(_WIN32)
  MEMORYSTATUSEX status{};
  status.dwLength = sizeof(status);
  if (GlobalMemoryStatusEx(&status)) return status.ullAvailPhys;
  return std::uint64_t{1} << 32;
#else
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    if (line.rfind("MemAvailable:", 0) == 0) {
      std::istringstream fields(line.substr(13));
      std::uint64_t kib = 0;
      if (fields >> kib) return kib * 1024;
    }
  }
  const long pages = sysconf(_SC_AVPHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) {
    return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size);
  }
  return std::uint64_t{1} << 32;
#endif
}

}  // namespace exogpu::probe::detail
