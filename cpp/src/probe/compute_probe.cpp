// The compute probe: sustained float32 FMA throughput (Device::launch_fma)
// and the memory bandwidth a layer's weights stream at.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "exogpu/error.hpp"
#include "exogpu/probe.hpp"
#include "probe/timing.hpp"

namespace exogpu::probe {
namespace {

constexpr std::uint32_t kFirstIterations = 8;
constexpr std::uint32_t kMaxIterations = std::uint32_t{1} << 24;
constexpr int kCalibrationRounds = 6;

void validate(const ComputeProbeOptions& options) {
  if (options.samples < 1) {
    throw InvalidArgument("compute probe: samples must be at least 1, got " +
                          std::to_string(options.samples));
  }
  if (options.warmup < 0) throw InvalidArgument("compute probe: warmup must not be negative");
  if (options.elements == 0) throw InvalidArgument("compute probe: elements must be positive");
  if (!(options.target_seconds > 0) || !std::isfinite(options.target_seconds)) {
    throw InvalidArgument("compute probe: target_seconds must be a positive number");
  }
  if (options.bandwidth_bytes == 0) {
    throw InvalidArgument("compute probe: bandwidth_bytes must be positive");
  }
}

void measure_fma(Device& device, const ComputeProbeOptions& options, ComputeProbeResult& result) {
  auto stream = device.create_stream();
  const bool use_events = detail::events_usable(*stream);
  Buffer buffer = device.allocate(options.elements * sizeof(float));
  stream->fill(buffer, 0, buffer.size(), 0);
  stream->synchronize();

  double flop_count = 0;
  auto run = [&](std::uint32_t iterations) {
    return detail::time_on_stream(
        *stream, [&] { flop_count = device.launch_fma(*stream, buffer, iterations); },
        use_events);
  };

  // Calibrate: grow the iteration count until one launch runs for about the
  // target time, so that launch overhead does not count against the device.
  std::uint32_t iterations = kFirstIterations;
  detail::TimedRun timed = run(iterations);
  if (flop_count <= 0) return;  // no FMA kernel on this backend
  for (int round = 0; round < kCalibrationRounds && iterations < kMaxIterations; ++round) {
    if (timed.seconds >= options.target_seconds * 0.5) break;
    const double scale =
        std::clamp(options.target_seconds / std::max(timed.seconds, 1e-6), 2.0, 64.0);
    iterations = static_cast<std::uint32_t>(
        std::min<double>(kMaxIterations, std::ceil(iterations * scale)));
    timed = run(iterations);
  }

  for (int i = 0; i < options.warmup; ++i) (void)run(iterations);
  std::vector<double> seconds;
  bool all_events = true;
  for (int i = 0; i < options.samples; ++i) {
    timed = run(iterations);
    all_events = all_events && timed.timing == Timing::device_events;
    seconds.push_back(timed.seconds);
  }
  result.fma_supported = true;
  result.iterations = iterations;
  result.elements = options.elements;
  result.flop_count = flop_count;
  result.seconds = summarize(std::move(seconds));
  result.timing = all_events ? Timing::device_events : Timing::host_clock;
  result.flops = flop_count / result.seconds.median;
  result.flops_min = flop_count / result.seconds.max;
  result.flops_max = flop_count / result.seconds.min;
}

void measure_bandwidth(Device& device, const ComputeProbeOptions& options,
                       ComputeProbeResult& result) {
  // Two buffers of the copy size must fit in a quarter of the free memory.
  const std::uint64_t free_bytes = device.memory_info().free;
  std::size_t n = std::min<std::uint64_t>(options.bandwidth_bytes, free_bytes / 8);
  if (device.info().unified_memory) {
    n = std::min<std::uint64_t>(n, detail::available_host_memory() / 8);
  }
  n = std::max<std::size_t>(n & ~std::size_t{4095}, 4096);

  MemoryProbeOptions copy_options;
  copy_options.kinds = {CopyKind::d2d};
  copy_options.sizes = {n};
  copy_options.samples = options.samples;
  copy_options.warmup = std::max(options.warmup, 1);
  copy_options.latency = false;
  copy_options.allocation = false;
  copy_options.memory_fraction = 1.0;
  const MemoryProbeResult copies = probe_memory(device, copy_options);
  const CopyMeasurement& m = copies.copies.front();
  result.copy_bytes = m.bytes;
  result.copy_bandwidth = m.bandwidth;
  result.copy_timing = m.timing;
  // A copy of n bytes reads n and writes n: its memory traffic, and so the
  // rate at which weights can be read, is twice the bytes-counted-once rate.
  result.memory_bandwidth = 2 * m.bandwidth;
}

}  // namespace

ComputeProbeResult probe_compute(Device& device, const ComputeProbeOptions& options) {
  validate(options);
  ComputeProbeResult result;
  result.device = device.id();
  measure_fma(device, options, result);
  measure_bandwidth(device, options, result);
  return result;
}

}  // namespace exogpu::probe
