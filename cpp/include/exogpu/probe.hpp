// Memory and compute probes: measured figures for any Device, through the one
// device interface.
//
// Conventions (they appear in every result so that a reader of the JSON need
// not guess):
// - Bytes are counted once: a copy of n bytes moved n bytes, whatever memory
//   traffic it caused (a device-to-device copy reads n and writes n; it still
//   counts n). Both-directions-at-once moves n each way and counts 2n.
// - Times come from device events (Stream::record, Event::elapsed_ms) when the
//   backend's events give a usable clock, from std::chrono::steady_clock
//   otherwise; each result says which.
// - Every figure is the median of `samples` timed repetitions that follow
//   `warmup` untimed ones; min and max are kept beside it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "exogpu/device.hpp"

namespace exogpu::probe {

enum class Timing { device_events, host_clock };

enum class CopyKind {
  h2d_pinned,     // page-locked host memory (Device::allocate_host) to device
  d2h_pinned,     // device to page-locked host memory
  h2d_pageable,   // ordinary host memory to device
  d2h_pageable,   // device to ordinary host memory
  d2d,            // within one device
  peer,           // device to another device (exogpu::copy)
  bidirectional,  // h2d and d2h (page-locked) at once, on two streams
};

[[nodiscard]] std::string_view to_string(Timing timing) noexcept;
[[nodiscard]] std::string_view to_string(CopyKind kind) noexcept;
// Parses the names to_string gives; throws InvalidArgument naming the word.
[[nodiscard]] CopyKind copy_kind_from_string(std::string_view name);
[[nodiscard]] const std::vector<CopyKind>& all_copy_kinds();

// Seconds over the timed samples.
struct SampleStats {
  double median = 0;
  double min = 0;
  double max = 0;
  std::size_t samples = 0;
};
[[nodiscard]] SampleStats summarize(std::vector<double> seconds);

struct CopyMeasurement {
  CopyKind kind = CopyKind::d2d;
  std::size_t bytes = 0;        // size of one copy
  std::size_t bytes_moved = 0;  // bytes counted per timed copy (2 x bytes for bidirectional)
  std::size_t repeats = 0;      // copies per timed sample (small copies are batched)
  SampleStats seconds;          // per copy (sample time / repeats)
  double bandwidth = 0;         // bytes_moved / seconds.median, bytes per second
  double bandwidth_min = 0;     // from the slowest sample
  double bandwidth_max = 0;     // from the fastest sample
  Timing timing = Timing::host_clock;
  std::string source;       // device id the bytes come from ("host" for host memory)
  std::string destination;  // device id the bytes go to ("host" for host memory)
};

// Round trip of a small copy: write n bytes, read them back, wait. Through
// the synchronous copies ("sync": Stream::copy_h2d_sync/copy_d2h_sync, what
// exogpu::write/read use) and through the stream ("stream": two enqueued
// copies and a synchronize).
struct LatencyMeasurement {
  std::string path;
  std::size_t bytes = 0;
  SampleStats seconds;
};

// allocate + free of n bytes: through the device's caching pool once it is
// warm ("pool"), and straight from the backend ("device").
struct AllocationMeasurement {
  std::string path;
  std::size_t bytes = 0;
  SampleStats seconds;
};

struct ProbeProgress {
  std::string phase;  // a copy kind's name, "latency" or "allocation"
  std::size_t bytes = 0;
  std::size_t step = 0;  // steps done, 1-based
  std::size_t total_steps = 0;
};
// Called between measurements (never during one), from the probing thread.
using ProgressCallback = std::function<void(const ProbeProgress&)>;

struct MemoryProbeOptions {
  std::vector<CopyKind> kinds;       // empty: every kind (peer only with a peer device)
  std::vector<std::size_t> sizes;    // empty: min_bytes, x4, ... up to max_bytes
  std::size_t min_bytes = 4096;
  std::size_t max_bytes = std::size_t{1} << 30;
  // The sweep never takes more than this fraction of the free device memory
  // (two buffers of the largest size) or of the free host memory (four).
  double memory_fraction = 0.5;
  int warmup = 1;
  int samples = 5;
  // Small copies are repeated within one timed sample until it moves at
  // least this many bytes, so that timer resolution does not dominate.
  std::size_t bytes_per_sample = std::size_t{32} << 20;
  std::size_t max_repeats = 256;
  bool latency = true;     // small-copy round trips, 4 B .. 4 KiB
  bool allocation = true;  // allocate + free latency
  std::shared_ptr<Device> peer;  // the other device of the peer copies
  ProgressCallback progress;
};

struct MemoryProbeResult {
  std::string device;
  std::string bytes_counted = "once";
  std::size_t max_bytes = 0;  // largest size swept after the memory bounds
  std::vector<CopyMeasurement> copies;
  std::vector<LatencyMeasurement> latency;
  std::vector<AllocationMeasurement> allocation;
};

// Throws InvalidArgument for options that make no sense (no sizes, samples
// < 1, a peer copy without a peer device, the peer being the device itself),
// naming the option.
[[nodiscard]] MemoryProbeResult probe_memory(Device& device, const MemoryProbeOptions& options);

struct ComputeProbeOptions {
  std::size_t elements = std::size_t{1} << 20;  // float32 elements of the FMA buffer
  double target_seconds = 0.25;  // each sample runs about this long (after calibration)
  int warmup = 1;
  int samples = 5;
  // Device-to-device copy size for memory_bandwidth (bounded by free memory).
  std::size_t bandwidth_bytes = std::size_t{256} << 20;
};

struct ComputeProbeResult {
  std::string device;
  bool fma_supported = false;  // false: the backend has no FMA kernel; flops is 0
  double flops = 0;            // float32 FLOP/s of the FMA kernel (median sample)
  double flops_min = 0;
  double flops_max = 0;
  double flop_count = 0;       // FLOPs per sample
  std::uint32_t iterations = 0;
  std::size_t elements = 0;
  SampleStats seconds;
  Timing timing = Timing::host_clock;
  // The rate a layer's weights stream through the device's memory. Derived
  // from a device-to-device copy: a copy of n bytes reads n and writes n, so
  // the memory traffic is 2 x the copy bandwidth (bytes counted once); that is
  // memory_bandwidth. The copy's own figure stays in copy_bandwidth.
  double memory_bandwidth = 0;
  double copy_bandwidth = 0;   // bytes counted once
  std::size_t copy_bytes = 0;
  Timing copy_timing = Timing::host_clock;
};

[[nodiscard]] ComputeProbeResult probe_compute(Device& device,
                                               const ComputeProbeOptions& options);

}  // namespace exogpu::probe
