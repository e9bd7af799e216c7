// Bindings of the memory and compute probes (exogpu/probe.hpp). The probes
// run with the GIL released; the progress callback takes it back only between
// measurements, and a pending KeyboardInterrupt stops the sweep there.
#include <nanobind/nanobind.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <optional>

#include "bindings.hpp"
#include "exogpu/probe.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace exogpu::bindings {
namespace {

using probe::AllocationMeasurement;
using probe::ComputeProbeResult;
using probe::CopyMeasurement;
using probe::LatencyMeasurement;
using probe::MemoryProbeResult;
using probe::SampleStats;

using PyProgress = std::function<void(std::string, std::size_t, std::size_t, std::size_t)>;

probe::ProgressCallback progress_with_gil(std::optional<PyProgress> callback) {
  if (!callback) return {};
  return [fn = std::move(*callback)](const probe::ProbeProgress& p) {
    nb::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
    fn(p.phase, p.bytes, p.step, p.total_steps);
  };
}

MemoryProbeResult run_memory_probe(const std::shared_ptr<Device>& device,
                                   std::optional<std::vector<std::string>> kinds,
                                   std::optional<std::vector<std::size_t>> sizes,
                                   std::size_t min_bytes, std::size_t max_bytes,
                                   double memory_fraction, int warmup, int samples,
                                   std::size_t bytes_per_sample, std::size_t max_repeats,
                                   bool latency, bool allocation,
                                   std::shared_ptr<Device> peer,
                                   std::optional<PyProgress> progress) {
  probe::MemoryProbeOptions options;
  if (kinds) {
    for (const auto& name : *kinds) options.kinds.push_back(probe::copy_kind_from_string(name));
  }
  if (sizes) options.sizes = *sizes;
  options.min_bytes = min_bytes;
  options.max_bytes = max_bytes;
  options.memory_fraction = memory_fraction;
  options.warmup = warmup;
  options.samples = samples;
  options.bytes_per_sample = bytes_per_sample;
  options.max_repeats = max_repeats;
  options.latency = latency;
  options.allocation = allocation;
  options.peer = std::move(peer);
  options.progress = progress_with_gil(std::move(progress));
  nb::gil_scoped_release release;
  return probe::probe_memory(*device, options);
}

ComputeProbeResult run_compute_probe(const std::shared_ptr<Device>& device, std::size_t elements,
                                     double target_seconds, int warmup, int samples,
                                     std::size_t bandwidth_bytes) {
  probe::ComputeProbeOptions options;
  options.elements = elements;
  options.target_seconds = target_seconds;
  options.warmup = warmup;
  options.samples = samples;
  options.bandwidth_bytes = bandwidth_bytes;
  nb::gil_scoped_release release;
  return probe::probe_compute(*device, options);
}

std::string timing_name(probe::Timing timing) { return std::string(probe::to_string(timing)); }

}  // namespace

void bind_memory_probe(nb::module_& m) {
  nb::class_<SampleStats>(m, "SampleStats", "Seconds over the timed samples.")
      .def_ro("median", &SampleStats::median)
      .def_ro("min", &SampleStats::min)
      .def_ro("max", &SampleStats::max)
      .def_ro("samples", &SampleStats::samples);

  nb::class_<CopyMeasurement>(m, "CopyMeasurement")
      .def_prop_ro("kind", [](const CopyMeasurement& c) { return std::string(to_string(c.kind)); })
      .def_ro("bytes", &CopyMeasurement::bytes)
      .def_ro("bytes_moved", &CopyMeasurement::bytes_moved)
      .def_ro("repeats", &CopyMeasurement::repeats)
      .def_ro("seconds", &CopyMeasurement::seconds)
      .def_ro("bandwidth", &CopyMeasurement::bandwidth)
      .def_ro("bandwidth_min", &CopyMeasurement::bandwidth_min)
      .def_ro("bandwidth_max", &CopyMeasurement::bandwidth_max)
      .def_prop_ro("timing", [](const CopyMeasurement& c) { return timing_name(c.timing); })
      .def_ro("source", &CopyMeasurement::source)
      .def_ro("destination", &CopyMeasurement::destination);

  nb::class_<LatencyMeasurement>(m, "LatencyMeasurement")
      .def_ro("path", &LatencyMeasurement::path)
      .def_ro("bytes", &LatencyMeasurement::bytes)
      .def_ro("seconds", &LatencyMeasurement::seconds);

  nb::class_<AllocationMeasurement>(m, "AllocationMeasurement")
      .def_ro("path", &AllocationMeasurement::path)
      .def_ro("bytes", &AllocationMeasurement::bytes)
      .def_ro("seconds", &AllocationMeasurement::seconds);

  nb::class_<MemoryProbeResult>(m, "MemoryProbeResult")
      .def_ro("device", &MemoryProbeResult::device)
      .def_ro("bytes_counted", &MemoryProbeResult::bytes_counted)
      .def_ro("max_bytes", &MemoryProbeResult::max_bytes)
      .def_ro("copies", &MemoryProbeResult::copies)
      .def_ro("latency", &MemoryProbeResult::latency)
      .def_ro("allocation", &MemoryProbeResult::allocation);

  nb::class_<ComputeProbeResult>(m, "ComputeProbeResult")
      .def_ro("device", &ComputeProbeResult::device)
      .def_ro("fma_supported", &ComputeProbeResult::fma_supported)
      .def_ro("flops", &ComputeProbeResult::flops)
      .def_ro("flops_min", &ComputeProbeResult::flops_min)
      .def_ro("flops_max", &ComputeProbeResult::flops_max)
      .def_ro("flop_count", &ComputeProbeResult::flop_count)
      .def_ro("iterations", &ComputeProbeResult::iterations)
      .def_ro("elements", &ComputeProbeResult::elements)
      .def_ro("seconds", &ComputeProbeResult::seconds)
      .def_prop_ro("timing", [](const ComputeProbeResult& c) { return timing_name(c.timing); })
      .def_ro("memory_bandwidth", &ComputeProbeResult::memory_bandwidth)
      .def_ro("copy_bandwidth", &ComputeProbeResult::copy_bandwidth)
      .def_ro("copy_bytes", &ComputeProbeResult::copy_bytes)
      .def_prop_ro("copy_timing",
                   [](const ComputeProbeResult& c) { return timing_name(c.copy_timing); });

  m.def("copy_kinds", [] {
    std::vector<std::string> names;
    for (const auto kind : probe::all_copy_kinds()) names.emplace_back(probe::to_string(kind));
    return names;
  }, "Names of the copy kinds the memory probe measures.");

  m.def("probe_memory", &run_memory_probe, "device"_a, nb::kw_only(), "kinds"_a = nb::none(),
        "sizes"_a = nb::none(), "min_bytes"_a = 4096, "max_bytes"_a = std::size_t{1} << 30,
        "memory_fraction"_a = 0.5, "warmup"_a = 1, "samples"_a = 5,
        "bytes_per_sample"_a = std::size_t{32} << 20, "max_repeats"_a = 256,
        "latency"_a = true, "allocation"_a = true, "peer"_a = nb::none(),
        "progress"_a = nb::none(),
        "Measures copy bandwidth over a sweep of sizes, small-copy round trips and "
        "allocation latency of `device`. Bytes are counted once. `progress(phase, bytes, "
        "step, total)` is called between measurements.");

  m.def("probe_compute", &run_compute_probe, "device"_a, nb::kw_only(),
        "elements"_a = std::size_t{1} << 20, "target_seconds"_a = 0.25, "warmup"_a = 1,
        "samples"_a = 5, "bandwidth_bytes"_a = std::size_t{256} << 20,
        "Measures float32 FMA throughput and memory bandwidth (2 x the device-to-device "
        "copy rate, bytes counted once) of `device`.");
}

}  // namespace exogpu::bindings
