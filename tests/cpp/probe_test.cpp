// The memory and compute probes on every device the registry finds (aliases
// included): consistent units, sane values, typed errors for bad options.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "exogpu/error.hpp"
#include "exogpu/probe.hpp"
#include "exogpu/registry.hpp"
#include "test_support.hpp"

namespace exogpu::probe {
namespace {

bool finite_positive(double x) { return std::isfinite(x) && x > 0; }

void expect_stats_ordered(const SampleStats& s, std::size_t samples) {
  EXPECT_EQ(s.samples, samples);
  EXPECT_TRUE(finite_positive(s.min));
  EXPECT_LE(s.min, s.median);
  EXPECT_LE(s.median, s.max);
  EXPECT_TRUE(std::isfinite(s.max));
}

class ProbeOnDevice : public ::testing::TestWithParam<std::string> {
 protected:
  Device& device() { return *Registry::instance().device(GetParam()); }
};

TEST_P(ProbeOnDevice, SweepHasConsistentUnits) {
  MemoryProbeOptions options;
  options.max_bytes = 256 << 10;
  options.samples = 3;
  options.bytes_per_sample = 1 << 20;
  std::vector<ProbeProgress> steps;
  options.progress = [&](const ProbeProgress& p) { steps.push_back(p); };
  const MemoryProbeResult r = probe_memory(device(), options);

  EXPECT_EQ(r.device, GetParam());
  EXPECT_EQ(r.bytes_counted, "once");
  EXPECT_EQ(r.max_bytes, std::size_t{256} << 10);
  // 4 KiB, 16 KiB, 64 KiB, 256 KiB for each kind but peer (no peer given).
  ASSERT_EQ(r.copies.size(), 4 * (all_copy_kinds().size() - 1));
  for (const CopyMeasurement& c : r.copies) {
    SCOPED_TRACE(std::string(to_string(c.kind)) + " " + std::to_string(c.bytes));
    EXPECT_NE(c.kind, CopyKind::peer);
    EXPECT_EQ(c.bytes_moved, c.kind == CopyKind::bidirectional ? 2 * c.bytes : c.bytes);
    EXPECT_GE(c.repeats, 1u);
    expect_stats_ordered(c.seconds, 3);
    EXPECT_TRUE(finite_positive(c.bandwidth));
    // bandwidth x time = bytes, for the median and both extremes.
    EXPECT_NEAR(c.bandwidth * c.seconds.median / static_cast<double>(c.bytes_moved), 1.0, 1e-9);
    EXPECT_NEAR(c.bandwidth_min * c.seconds.max / static_cast<double>(c.bytes_moved), 1.0, 1e-9);
    EXPECT_LE(c.bandwidth_min, c.bandwidth);
    EXPECT_LE(c.bandwidth, c.bandwidth_max);
  }
  ASSERT_EQ(r.latency.size(), 12u);  // 4 B .. 4 KiB by 4, sync then stream
  for (std::size_t i = 0; i < r.latency.size(); ++i) {
    EXPECT_EQ(r.latency[i].path, i < 6 ? "sync" : "stream");
    EXPECT_EQ(r.latency[i].bytes, std::size_t{4} << (2 * (i % 6)));
    expect_stats_ordered(r.latency[i].seconds, 12);
  }
  ASSERT_FALSE(r.allocation.empty());
  for (const AllocationMeasurement& a : r.allocation) {
    EXPECT_TRUE(a.path == "pool" || a.path == "device");
    expect_stats_ordered(a.seconds, 12);
  }

  // One report before the first measurement, then one per step, in order.
  ASSERT_EQ(steps.size(), steps.back().total_steps + 1);
  for (std::size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i].step, i);
}

TEST_P(ProbeOnDevice, ExplicitSizesAboveFreeMemoryAreDropped) {
  MemoryProbeOptions options;
  options.kinds = {CopyKind::d2d, CopyKind::d2d};  // duplicates collapse
  options.sizes = {8192, 4096, std::size_t{1} << 62};
  options.samples = 1;
  options.latency = false;
  options.allocation = false;
  const MemoryProbeResult r = probe_memory(device(), options);
  ASSERT_EQ(r.copies.size(), 2u);
  EXPECT_EQ(r.copies[0].bytes, 4096u);
  EXPECT_EQ(r.copies[1].bytes, 8192u);
  EXPECT_EQ(r.max_bytes, 8192u);
}

TEST_P(ProbeOnDevice, BadOptionsAreRejectedByName) {
  auto rejects = [&](MemoryProbeOptions options, const std::string& word) {
    try {
      (void)probe_memory(device(), options);
      ADD_FAILURE() << "accepted bad option " << word;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
    }
  };
  MemoryProbeOptions o;
  o.samples = 0;
  rejects(o, "samples");
  o = {};
  o.warmup = -1;
  rejects(o, "warmup");
  o = {};
  o.memory_fraction = 1.5;
  rejects(o, "memory_fraction");
  o = {};
  o.min_bytes = 1 << 20;
  o.max_bytes = 4096;
  rejects(o, "min_bytes");
  o = {};
  o.sizes = {0};
  rejects(o, "sizes");
  o = {};
  o.kinds = {CopyKind::peer};
  rejects(o, "peer");
  o = {};
  o.peer = Registry::instance().device(GetParam());
  rejects(o, "itself");
}

TEST_P(ProbeOnDevice, ComputeProbeCountsFlopsAndBandwidth) {
  ComputeProbeOptions options;
  options.elements = 1 << 16;
  options.target_seconds = 0.02;
  options.samples = 3;
  options.bandwidth_bytes = 4 << 20;
  const ComputeProbeResult r = probe_compute(device(), options);
  EXPECT_EQ(r.device, GetParam());
  if (r.fma_supported) {
    EXPECT_GE(r.iterations, 8u);
    // Every element gets at least one FMA (2 FLOPs) per round; kernels may
    // unroll more per round, so the count is only bounded below.
    EXPECT_GE(r.flop_count, 2.0 * options.elements * r.iterations);
    expect_stats_ordered(r.seconds, 3);
    EXPECT_NEAR(r.flops * r.seconds.median / r.flop_count, 1.0, 1e-9);
    EXPECT_LE(r.flops_min, r.flops);
    EXPECT_LE(r.flops, r.flops_max);
  } else {
    EXPECT_EQ(r.flops, 0.0);
  }
  EXPECT_TRUE(finite_positive(r.copy_bandwidth));
  EXPECT_EQ(r.copy_bytes, std::size_t{4} << 20);
  EXPECT_DOUBLE_EQ(r.memory_bandwidth, 2 * r.copy_bandwidth);

  options.samples = 0;
  EXPECT_THROW((void)probe_compute(device(), options), InvalidArgument);
}

TEST_P(ProbeOnDevice, FmaKernelCountIsLinearInIterations) {
  Buffer buffer = device().allocate(std::size_t{1} << 16);
  auto stream = device().create_stream();
  const double once = device().launch_fma(*stream, buffer, 4);
  const double twice = device().launch_fma(*stream, buffer, 8);
  stream->synchronize();
  EXPECT_DOUBLE_EQ(twice, 2 * once);
  if (once > 0) {
    EXPECT_GE(once, 2.0 * static_cast<double>(buffer.size() / sizeof(float)) * 4);
  }
}

INSTANTIATE_TEST_SUITE_P(AllDevices, ProbeOnDevice, ::testing::ValuesIn(test::all_device_ids()),
                         [](const auto& info) { return test::param_name(info.param); });

TEST(ProbeCpu, FmaKernelRunsOnEveryCore) {
  const ComputeProbeResult r = probe_compute(*Registry::instance().device("cpu:0"), {});
  ASSERT_TRUE(r.fma_supported);
  EXPECT_TRUE(finite_positive(r.flops));
}

TEST(ProbeNames, RoundTripAndUnknown) {
  for (const CopyKind kind : all_copy_kinds()) {
    EXPECT_EQ(copy_kind_from_string(to_string(kind)), kind);
  }
  try {
    (void)copy_kind_from_string("sideways");
    FAIL() << "unknown kind accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("sideways"), std::string::npos);
  }
}

TEST(ProbeStats, MedianMinMax) {
  const SampleStats odd = summarize({3.0, 1.0, 2.0});
  EXPECT_EQ(odd.median, 2.0);
  EXPECT_EQ(odd.min, 1.0);
  EXPECT_EQ(odd.max, 3.0);
  EXPECT_EQ(summarize({4.0, 1.0, 2.0, 3.0}).median, 2.5);
  EXPECT_EQ(summarize({}).samples, 0u);
}

}  // namespace
}  // namespace exogpu::probe
