// The Metal backend on the simulated Metal: what the conformance suite does
// not see (storage modes, memory figures, GPU faults, the FMA kernel's
// results, object lifetimes, the loader's explanations). Each test builds
// its own registry with only the Metal backend, pointed at the simulation.
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "exogpu/device.hpp"
#include "exogpu/error.hpp"
#include "exogpu/pool.hpp"
#include "exogpu/registry.hpp"
#include "sim_metal.h"
#include "test_support.hpp"

namespace exogpu::test {
namespace {

std::unique_ptr<Registry> metal_registry(const char* library = EXOGPU_SIM_METAL) {
  ::setenv("EXOGPU_METAL_LIBRARY", library, 1);
  auto registry = std::make_unique<Registry>(BackendSelection::parse("metal"));
  ::setenv("EXOGPU_METAL_LIBRARY", EXOGPU_SIM_METAL, 1);
  return registry;
}

const BackendStatus& metal_status(const Registry& registry) {
  for (const auto& status : registry.backends()) {
    if (status.name == "metal") return status;
  }
  throw std::logic_error("no metal backend status");
}

TEST(MetalBackend, FindsTheUnifiedAndTheDiscreteDevice) {
  auto registry = metal_registry();
  const BackendStatus& status = metal_status(*registry);
  ASSERT_TRUE(status.available) << status.reason;
  EXPECT_EQ(status.device_count, 2);
  EXPECT_NE(status.note.find("simulated Metal device only"), std::string::npos) << status.note;
  EXPECT_NE(status.note.find("not yet run on Apple hardware"), std::string::npos) << status.note;
  EXPECT_NE(status.runtime_version.find("libsim_metal"), std::string::npos)
      << status.runtime_version;
  auto unified = registry->device("metal:0");
  auto discrete = registry->device("metal:1");
  EXPECT_EQ(unified->info().kind, DeviceKind::integrated);
  EXPECT_TRUE(unified->info().unified_memory);
  EXPECT_EQ(unified->info().memory_total, std::uint64_t{6} << 30);
  EXPECT_EQ(discrete->info().kind, DeviceKind::discrete);
  EXPECT_FALSE(discrete->info().unified_memory);
  EXPECT_EQ(discrete->info().memory_total, std::uint64_t{4} << 30);
}

TEST(MetalBackend, SharedStorageIsTheHostsAndPrivateStorageIsNot) {
  auto registry = metal_registry();
  const auto data = random_bytes(4096, 11);
  Buffer shared = registry->device("metal:0")->allocate(4096);
  ASSERT_NE(shared.host_ptr(), nullptr);
  write(shared, 0, data.data(), data.size());
  // Zero-copy: the device's bytes are the host pointer's.
  EXPECT_EQ(std::memcmp(shared.host_ptr(), data.data(), data.size()), 0);
  static_cast<std::uint8_t*>(shared.host_ptr())[5] = 0x5a;
  std::uint8_t byte = 0;
  read(&byte, shared, 5, 1);
  EXPECT_EQ(byte, 0x5a);

  Buffer priv = registry->device("metal:1")->allocate(4096);
  EXPECT_EQ(priv.host_ptr(), nullptr);
  write(priv, 0, data.data(), data.size());
  std::vector<std::uint8_t> out(4096);
  read(out.data(), priv, 0, out.size());
  EXPECT_EQ(out, data);
}

TEST(MetalBackend, FreeMemoryFollowsAllocations) {
  auto registry = metal_registry();
  auto discrete = registry->device("metal:1");
  const MemoryInfo before = discrete->memory_info();
  EXPECT_EQ(before.source, MemorySource::driver);
  EXPECT_EQ(before.total, discrete->info().memory_total);
  Buffer buffer = discrete->allocate(std::size_t{64} << 20);
  const MemoryInfo during = discrete->memory_info();
  EXPECT_EQ(before.free - during.free, std::uint64_t{64} << 20);
  buffer.reset();
  EXPECT_EQ(discrete->memory_info().free, before.free);

  // Unified memory is the host's RAM: never more free than the host has.
  const MemoryInfo unified = registry->device("metal:0")->memory_info();
  EXPECT_LE(unified.free, unified.total);
  EXPECT_TRUE(unified.source == MemorySource::driver || unified.source == MemorySource::os);
}

TEST(MetalBackend, TooLargeAnAllocationIsOutOfMemoryNamingTheDevice) {
  auto registry = metal_registry();
  try {
    Buffer b = registry->device("metal:1")->allocate(std::size_t{5} << 30);
    FAIL() << "expected OutOfMemory";
  } catch (const OutOfMemory& e) {
    EXPECT_NE(std::string(e.what()).find("metal:1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("newBufferWithLength returned nil"), std::string::npos)
        << e.what();
  }
}

using SimFault = void (*)(unsigned, const char*);

SimFault sim_fault_hook() {
  void* sim = dlopen(EXOGPU_SIM_METAL, RTLD_NOW | RTLD_NOLOAD);
  return sim == nullptr ? nullptr : reinterpret_cast<SimFault>(dlsym(sim, "MTLSimFailNextCommandBuffer"));
}

TEST(MetalBackend, AFailedCommandBufferIsADeviceErrorWithMetalsText) {
  auto registry = metal_registry();
  SimFault fail_next = sim_fault_hook();
  ASSERT_NE(fail_next, nullptr);
  auto device = registry->device("metal:1");
  Buffer buffer = device->allocate(4096);
  auto stream = device->create_stream();
  fail_next(1, "Caused GPU Address Fault Error (0000000b:kIOGPUCommandBufferCallbackErrorPageFault)");
  stream->fill(buffer, 0, 4096, 0x33);
  try {
    stream->synchronize();
    FAIL() << "expected DeviceError";
  } catch (const DeviceError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("metal:1"), std::string::npos) << what;
    EXPECT_NE(what.find("kIOGPUCommandBufferCallbackErrorPageFault"), std::string::npos) << what;
  }
  // The error is reported once; the stream goes on working.
  stream->fill(buffer, 0, 4096, 0x44);
  stream->synchronize();
  std::vector<std::uint8_t> out(4096);
  read(out.data(), buffer, 0, out.size());
  EXPECT_EQ(out, std::vector<std::uint8_t>(4096, 0x44));
}

TEST(MetalBackend, AFailedEventIsADeviceErrorToo) {
  auto registry = metal_registry();
  SimFault fail_next = sim_fault_hook();
  ASSERT_NE(fail_next, nullptr);
  auto stream = registry->device("metal:0")->create_stream();
  fail_next(0, "simulated fault in the signalling buffer");
  auto event = stream->record();
  EXPECT_THROW(event->synchronize(), DeviceError);
  EXPECT_THROW(stream->synchronize(), DeviceError);
}

// The kernel as fma_kernel.metal states it, computed here on the host.
float fma_reference(float x, std::uint32_t iterations) {
  float a[8];
  for (int c = 0; c < 8; ++c) a[c] = x + static_cast<float>(c);
  for (std::uint32_t k = 0; k < iterations; ++k) {
    for (float& v : a) v = std::fma(v, 0.9999F, 0.0001F);
  }
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

TEST(MetalBackend, FmaKernelRunsOnEveryElementOfBothDevices) {
  auto registry = metal_registry();
  for (const char* id : {"metal:0", "metal:1"}) {
    auto device = registry->device(id);
    const std::size_t count = 1000;  // not a multiple of the threadgroup
    std::vector<float> values(count);
    for (std::size_t i = 0; i < count; ++i) values[i] = static_cast<float>(i) * 0.25F;
    Buffer buffer = device->allocate(count * sizeof(float));
    write(buffer, 0, values.data(), count * sizeof(float));
    auto stream = device->create_stream();
    const double flops = device->launch_fma(*stream, buffer, 5);
    stream->synchronize();
    EXPECT_DOUBLE_EQ(flops, 16.0 * count * 5) << id;
    std::vector<float> out(count);
    read(out.data(), buffer, 0, count * sizeof(float));
    for (std::size_t i = 0; i < count; ++i) {
      ASSERT_EQ(out[i], fma_reference(values[i], 5)) << id << " element " << i;
    }
  }
}

TEST(MetalBackend, EventsOfOneDeviceOrderAnotherDevicesStream) {
  auto registry = metal_registry();
  auto unified = registry->device("metal:0");
  auto discrete = registry->device("metal:1");
  const std::size_t n = std::size_t{8} << 20;
  Buffer a = unified->allocate(n);
  Buffer b = discrete->allocate(n);
  auto producer = unified->create_stream();
  auto consumer = discrete->create_stream();
  producer->fill(a, 0, n, 0x21);
  auto filled = producer->record();
  consumer->wait(filled);
  consumer->fill(b, 0, n, 0x42);
  auto done = consumer->record();
  done->synchronize();
  EXPECT_TRUE(filled->query());  // the wait came after it
  EXPECT_THROW((void)filled->elapsed_ms(*done), InvalidArgument);  // two devices' clocks
}

TEST(MetalBackend, NothingOutlivesTheRegistry) {
  using Live = long (*)();
  Live live = nullptr;
  {
    auto registry = metal_registry();
    void* sim = dlopen(EXOGPU_SIM_METAL, RTLD_NOW | RTLD_NOLOAD);
    ASSERT_NE(sim, nullptr);
    live = reinterpret_cast<Live>(dlsym(sim, "MTLSimLiveObjects"));
    ASSERT_NE(live, nullptr);
    for (const char* id : {"metal:0", "metal:1"}) {
      auto device = registry->device(id);
      const auto data = random_bytes(3 << 20, 12);
      Buffer pooled = device->allocate_pooled(data.size());
      write(pooled, 0, data.data(), data.size());
      auto stream = device->create_stream();
      auto other = device->create_stream();
      std::vector<std::uint8_t> out(data.size());
      stream->copy_d2h(out.data(), pooled, 0, out.size());
      auto event = stream->record();
      other->wait(event);
      other->fill(pooled, 0, 16, 0);
      (void)device->launch_fma(*other, pooled, 2);
      other->synchronize();
      stream->synchronize();
      EXPECT_EQ(out, data);
      EXPECT_GT(live(), 0);
    }
  }
  EXPECT_EQ(live(), 0);  // every buffer, queue, event and pipeline released
}

TEST(MetalBackend, SaysWhyWhenTheFrameworkIsMissing) {
  auto missing = metal_registry("/nonexistent/Metal.framework/Metal");
  const BackendStatus& absent = metal_status(*missing);
  EXPECT_FALSE(absent.available);
  EXPECT_NE(absent.reason.find("/nonexistent/Metal.framework/Metal not found"), std::string::npos)
      << absent.reason;
  EXPECT_NE(absent.reason.find("macOS"), std::string::npos) << absent.reason;

  auto wrong = metal_registry("libm.so.6");
  const BackendStatus& not_metal = metal_status(*wrong);
  EXPECT_FALSE(not_metal.available);
  EXPECT_NE(not_metal.reason.find("is missing MTLCopyAllDevices, MTLCreateSystemDefaultDevice"),
            std::string::npos)
      << not_metal.reason;
}

}  // namespace
}  // namespace exogpu::test
