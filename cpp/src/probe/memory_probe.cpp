// The memory probe: copy bandwidth over a sweep of sizes for every kind of
// copy, small-copy round trips, and allocation latency.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "exogpu/error.hpp"
#include "exogpu/pool.hpp"
#include "exogpu/probe.hpp"
#include "probe/timing.hpp"

namespace exogpu::probe {
namespace {

constexpr std::size_t kLatencyMaxBytes = 4096;
constexpr std::size_t kAllocationSizes[] = {std::size_t{4} << 10, std::size_t{1} << 20,
                                            std::size_t{16} << 20};

bool contains(const std::vector<CopyKind>& kinds, CopyKind kind) {
  return std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
}

bool any_of_kinds(const std::vector<CopyKind>& kinds, std::initializer_list<CopyKind> wanted) {
  return std::any_of(wanted.begin(), wanted.end(),
                     [&](CopyKind kind) { return contains(kinds, kind); });
}

void validate(const Device& device, const MemoryProbeOptions& options) {
  if (options.samples < 1) {
    throw InvalidArgument("memory probe: samples must be at least 1, got " +
                          std::to_string(options.samples));
  }
  if (options.warmup < 0) {
    throw InvalidArgument("memory probe: warmup must not be negative, got " +
                          std::to_string(options.warmup));
  }
  if (!(options.memory_fraction > 0 && options.memory_fraction <= 1)) {
    throw InvalidArgument("memory probe: memory_fraction must be in (0, 1], got " +
                          std::to_string(options.memory_fraction));
  }
  if (options.max_repeats < 1) throw InvalidArgument("memory probe: max_repeats must be at least 1");
  if (options.sizes.empty()) {
    if (options.min_bytes == 0) throw InvalidArgument("memory probe: min_bytes must be positive");
    if (options.min_bytes > options.max_bytes) {
      throw InvalidArgument("memory probe: min_bytes (" + std::to_string(options.min_bytes) +
                            ") exceeds max_bytes (" + std::to_string(options.max_bytes) + ")");
    }
  }
  for (const std::size_t size : options.sizes) {
    if (size == 0) throw InvalidArgument("memory probe: sizes must be positive");
  }
  if (options.peer.get() == &device) {
    throw InvalidArgument("memory probe: the peer of " + device.id() +
                          " must be another device, not itself");
  }
  if (!options.peer && contains(options.kinds, CopyKind::peer)) {
    throw InvalidArgument("memory probe: a peer copy of " + device.id() +
                          " needs a peer device");
  }
}

std::vector<CopyKind> chosen_kinds(const MemoryProbeOptions& options) {
  if (!options.kinds.empty()) {
    std::vector<CopyKind> kinds;
    for (const CopyKind kind : options.kinds) {
      if (!contains(kinds, kind)) kinds.push_back(kind);
    }
    return kinds;
  }
  std::vector<CopyKind> kinds;
  for (const CopyKind kind : all_copy_kinds()) {
    if (kind != CopyKind::peer || options.peer) kinds.push_back(kind);
  }
  return kinds;
}

// The largest size the sweep may use: the requested maximum, bounded by a
// fraction of the free device memory (and host memory, and the peer's).
std::size_t memory_bound(Device& device, const MemoryProbeOptions& options,
                         const std::vector<CopyKind>& kinds) {
  const bool two_device_buffers = any_of_kinds(kinds, {CopyKind::d2d, CopyKind::bidirectional});
  const bool pinned = any_of_kinds(
      kinds, {CopyKind::h2d_pinned, CopyKind::d2h_pinned, CopyKind::bidirectional});
  const bool pageable = any_of_kinds(kinds, {CopyKind::h2d_pageable, CopyKind::d2h_pageable});
  const double device_buffers = two_device_buffers ? 2.0 : 1.0;
  double host_buffers = (pinned ? 2.0 : 0.0) + (pageable ? 2.0 : 0.0);
  if (device.info().unified_memory) host_buffers += device_buffers;

  double bound = static_cast<double>(device.memory_info().free) * options.memory_fraction /
                 device_buffers;
  if (host_buffers > 0) {
    bound = std::min(bound, static_cast<double>(detail::available_host_memory()) *
                                options.memory_fraction / host_buffers);
  }
  if (options.peer && contains(kinds, CopyKind::peer)) {
    bound = std::min(bound, static_cast<double>(options.peer->memory_info().free) *
                                options.memory_fraction);
  }
  return static_cast<std::size_t>(std::max(bound, 0.0));
}

std::vector<std::size_t> sweep_sizes(const MemoryProbeOptions& options, std::size_t bound) {
  std::vector<std::size_t> sizes;
  if (!options.sizes.empty()) {
    for (const std::size_t size : options.sizes) {
      if (size <= bound) sizes.push_back(size);
    }
    std::sort(sizes.begin(), sizes.end());
    sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
    return sizes;
  }
  const std::size_t top = std::min(options.max_bytes, bound);
  for (std::size_t size = options.min_bytes; size <= top; size *= 4) {
    sizes.push_back(size);
    if (size > top / 4) break;
  }
  return sizes;
}

// Host and device memory for the whole sweep, allocated once at the largest
// size and touched so that first-touch page faults are not timed.
struct SweepBuffers {
  Buffer a;
  Buffer b;
  Buffer peer;
  std::unique_ptr<HostBuffer> pinned_in;
  std::unique_ptr<HostBuffer> pinned_out;
  std::vector<std::byte> pageable_in;
  std::vector<std::byte> pageable_out;

  SweepBuffers(Device& device, const MemoryProbeOptions& options,
               const std::vector<CopyKind>& kinds, std::size_t n) {
    Stream& stream = device.default_stream();
    a = device.allocate(n);
    stream.fill(a, 0, n, 0x5a);
    if (any_of_kinds(kinds, {CopyKind::d2d, CopyKind::bidirectional})) {
      b = device.allocate(n);
      stream.fill(b, 0, n, 0xa5);
    }
    if (any_of_kinds(kinds,
                     {CopyKind::h2d_pinned, CopyKind::d2h_pinned, CopyKind::bidirectional})) {
      pinned_in = device.allocate_host(n);
      pinned_out = device.allocate_host(n);
      std::memset(pinned_in->data(), 0x3c, n);
      std::memset(pinned_out->data(), 0, n);
    }
    if (any_of_kinds(kinds, {CopyKind::h2d_pageable, CopyKind::d2h_pageable})) {
      pageable_in.assign(n, std::byte{0x3c});
      pageable_out.assign(n, std::byte{0});
    }
    if (options.peer && contains(kinds, CopyKind::peer)) {
      peer = options.peer->allocate(n);
      options.peer->default_stream().fill(peer, 0, n, 0);
      options.peer->default_stream().synchronize();
    }
    stream.synchronize();
  }
};

class CopySweep {
 public:
  CopySweep(Device& device, const MemoryProbeOptions& options, SweepBuffers& buffers)
      : device_(device),
        options_(options),
        buffers_(buffers),
        stream_(device.create_stream()),
        second_stream_(device.create_stream()),
        use_events_(detail::events_usable(*stream_)) {}

  CopyMeasurement measure(CopyKind kind, std::size_t n) {
    CopyMeasurement m;
    m.kind = kind;
    m.bytes = n;
    m.bytes_moved = kind == CopyKind::bidirectional ? 2 * n : n;
    const std::size_t per_sample = std::max<std::size_t>(options_.bytes_per_sample, 1);
    m.repeats = std::clamp<std::size_t>((per_sample + n - 1) / n, 1, options_.max_repeats);
    m.source = kind == CopyKind::h2d_pinned || kind == CopyKind::h2d_pageable ? "host"
                                                                               : device_.id();
    m.destination = kind == CopyKind::d2h_pinned || kind == CopyKind::d2h_pageable ? "host"
                    : kind == CopyKind::peer ? options_.peer->id()
                                             : device_.id();
    if (kind == CopyKind::bidirectional) {
      m.source = "host+" + device_.id();
      m.destination = device_.id() + "+host";
    }

    for (int i = 0; i < options_.warmup; ++i) (void)run(kind, n, m.repeats);
    std::vector<double> seconds;
    bool all_events = true;
    for (int i = 0; i < options_.samples; ++i) {
      const detail::TimedRun timed = run(kind, n, m.repeats);
      all_events = all_events && timed.timing == Timing::device_events;
      seconds.push_back(timed.seconds / static_cast<double>(m.repeats));
    }
    m.timing = all_events ? Timing::device_events : Timing::host_clock;
    m.seconds = summarize(std::move(seconds));
    const auto moved = static_cast<double>(m.bytes_moved);
    m.bandwidth = moved / m.seconds.median;
    m.bandwidth_min = moved / m.seconds.max;
    m.bandwidth_max = moved / m.seconds.min;
    return m;
  }

  std::vector<LatencyMeasurement> round_trips() {
    Buffer small = device_.allocate(kLatencyMaxBytes);
    auto out = device_.allocate_host(kLatencyMaxBytes);
    auto back = device_.allocate_host(kLatencyMaxBytes);
    std::memset(out->data(), 0x42, kLatencyMaxBytes);
    const int samples = std::max(options_.samples * 4, 11);
    std::vector<LatencyMeasurement> results;
    for (const bool sync : {true, false}) {
      for (std::size_t n = 4; n <= kLatencyMaxBytes; n *= 4) {
        auto once = [&] {
          if (sync) {
            stream_->copy_h2d_sync(small, 0, out->data(), n);
            stream_->copy_d2h_sync(back->data(), small, 0, n);
          } else {
            stream_->copy_h2d(small, 0, out->data(), n);
            stream_->copy_d2h(back->data(), small, 0, n);
            stream_->synchronize();
          }
        };
        for (int i = 0; i < std::max(options_.warmup, 1); ++i) once();
        std::vector<double> seconds;
        for (int i = 0; i < samples; ++i) seconds.push_back(detail::time_on_host(once));
        results.push_back({sync ? "sync" : "stream", n, summarize(std::move(seconds))});
      }
    }
    return results;
  }

 private:
  detail::TimedRun run(CopyKind kind, std::size_t n, std::size_t repeats) {
    SweepBuffers& buf = buffers_;
    Stream& s = *stream_;
    switch (kind) {
      case CopyKind::h2d_pinned:
        return on_stream([&] {
          for (std::size_t r = 0; r < repeats; ++r) s.copy_h2d(buf.a, 0, buf.pinned_in->data(), n);
        });
      case CopyKind::d2h_pinned:
        return on_stream([&] {
          for (std::size_t r = 0; r < repeats; ++r) s.copy_d2h(buf.pinned_out->data(), buf.a, 0, n);
        });
      case CopyKind::h2d_pageable:
        return on_stream([&] {
          for (std::size_t r = 0; r < repeats; ++r) s.copy_h2d(buf.a, 0, buf.pageable_in.data(), n);
        });
      case CopyKind::d2h_pageable:
        return on_stream([&] {
          for (std::size_t r = 0; r < repeats; ++r) {
            s.copy_d2h(buf.pageable_out.data(), buf.a, 0, n);
          }
        });
      case CopyKind::d2d:
        return on_stream([&] {
          for (std::size_t r = 0; r < repeats; ++r) s.copy_d2d(buf.b, 0, buf.a, 0, n);
        });
      case CopyKind::bidirectional:
        return on_stream([&] {
          // The second stream starts with the first and the first ends after
          // the second, so the two events on the first span both directions.
          Stream& other = *second_stream_;
          other.wait(s.record());
          for (std::size_t r = 0; r < repeats; ++r) {
            s.copy_h2d(buf.a, 0, buf.pinned_in->data(), n);
            other.copy_d2h(buf.pinned_out->data(), buf.b, 0, n);
          }
          s.wait(other.record());
        });
      case CopyKind::peer:
        // exogpu::copy returns when the copy is done: host clock.
        return {detail::time_on_host([&] {
                  for (std::size_t r = 0; r < repeats; ++r) copy(buf.peer, 0, buf.a, 0, n);
                }),
                Timing::host_clock};
    }
    throw InvalidArgument("memory probe: unknown copy kind");
  }

  detail::TimedRun on_stream(const std::function<void()>& enqueue) {
    return detail::time_on_stream(*stream_, enqueue, use_events_);
  }

  Device& device_;
  const MemoryProbeOptions& options_;
  SweepBuffers& buffers_;
  std::shared_ptr<Stream> stream_;
  std::shared_ptr<Stream> second_stream_;
  bool use_events_;
};

std::vector<AllocationMeasurement> allocation_latency(Device& device,
                                                      const MemoryProbeOptions& options,
                                                      std::size_t bound) {
  const int samples = std::max(options.samples * 4, 11);
  std::vector<AllocationMeasurement> results;
  for (const char* path : {"pool", "device"}) {
    const bool pooled = std::string_view(path) == "pool";
    for (const std::size_t n : kAllocationSizes) {
      if (n > std::max(bound, kAllocationSizes[0])) continue;
      auto once = [&] {
        Buffer buffer = pooled ? device.allocate_pooled(n) : device.allocate(n);
        buffer.reset();
      };
      // Warm-up leaves a block of this size class cached in the pool, so the
      // pooled figure is the cache-hit path a steady workload sees.
      for (int i = 0; i < std::max(options.warmup, 1); ++i) once();
      std::vector<double> seconds;
      for (int i = 0; i < samples; ++i) seconds.push_back(detail::time_on_host(once));
      results.push_back({path, n, summarize(std::move(seconds))});
    }
  }
  return results;
}

}  // namespace

MemoryProbeResult probe_memory(Device& device, const MemoryProbeOptions& options) {
  validate(device, options);
  const std::vector<CopyKind> kinds = chosen_kinds(options);
  const std::size_t bound = memory_bound(device, options, kinds);
  const std::vector<std::size_t> sizes = sweep_sizes(options, bound);
  if (sizes.empty() && !kinds.empty()) {
    throw OutOfMemory("memory probe: " + device.id() + " has room for copies of at most " +
                      std::to_string(bound) + " bytes, below the smallest size requested");
  }

  MemoryProbeResult result;
  result.device = device.id();
  result.max_bytes = sizes.empty() ? 0 : sizes.back();

  ProbeProgress progress;
  progress.total_steps = kinds.size() * sizes.size() + (options.latency ? 1 : 0) +
                         (options.allocation ? 1 : 0);
  auto report = [&](std::string phase, std::size_t bytes) {
    progress.phase = std::move(phase);
    progress.bytes = bytes;
    if (options.progress) options.progress(progress);
  };
  report("start", 0);

  {
    SweepBuffers buffers(device, options, kinds, std::max(result.max_bytes, kLatencyMaxBytes));
    CopySweep sweep(device, options, buffers);
    for (const CopyKind kind : kinds) {
      for (const std::size_t n : sizes) {
        result.copies.push_back(sweep.measure(kind, n));
        ++progress.step;
        report(std::string(to_string(kind)), n);
      }
    }
    if (options.latency) {
      result.latency = sweep.round_trips();
      ++progress.step;
      report("latency", kLatencyMaxBytes);
    }
  }
  if (options.allocation) {
    result.allocation = allocation_latency(device, options, result.max_bytes);
    ++progress.step;
    report("allocation", 0);
  }
  return result;
}

}  // namespace exogpu::probe
