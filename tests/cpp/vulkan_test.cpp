// Vulkan-specific behaviour, on whatever Vulkan devices this machine has
// (Mesa's lavapipe in CI). Every case runs on a backend instance of its own
// with the Khronos validation layer on, and fails if the layer reported
// anything. The shared conformance suite covers the device interface itself.
#ifdef EXOGPU_HAVE_VULKAN

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "backends/vulkan/vk_backend.hpp"
#include "backends/vulkan/vk_device.hpp"
#include "backends/vulkan/vk_error.hpp"
#include "exogpu/error.hpp"
#include "exogpu/registry.hpp"
#include "test_support.hpp"

namespace exogpu::test {
namespace {

using vulkan::VulkanDevice;
using vulkan::VulkanOptions;

// One validated backend per transfer mode, opened once for the suite.
struct OpenedBackend {
  std::unique_ptr<Backend> backend;
  BackendStatus status;
  std::vector<std::shared_ptr<VulkanDevice>> devices;
};

OpenedBackend& opened(bool mapped) {
  // Never destroyed, like the registry: at exit the driver is torn down first.
  static auto& backends = *std::make_unique<std::map<bool, OpenedBackend>>().release();
  auto it = backends.find(mapped);
  if (it == backends.end()) {
    OpenedBackend b;
    VulkanOptions options;
    options.validation = true;
    options.map_device_memory = mapped;
    b.backend = vulkan::make_backend(options);
    b.status = b.backend->open();
    for (const auto& d : b.backend->devices()) {
      b.devices.push_back(std::dynamic_pointer_cast<VulkanDevice>(d));
    }
    it = backends.emplace(mapped, std::move(b)).first;
  }
  return it->second;
}

// Parameter: whether device memory is mapped (direct host copies) or not
// (staged copies through the ring).
class VulkanDeviceTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    OpenedBackend& b = opened(GetParam());
    if (!b.status.available && b.status.reason.find("not found") != std::string::npos) {
      GTEST_SKIP() << "no Vulkan loader: " << b.status.reason;
    }
    ASSERT_TRUE(b.status.available) << b.status.reason;
    device = b.devices.front();
    messages_before = device->context().instance().validation_message_count();
  }
  void TearDown() override {
    if (!device) return;
    device->default_stream().synchronize();
    auto messages = device->context().instance().take_validation_messages();
    EXPECT_EQ(device->context().instance().validation_message_count(), messages_before);
    for (const auto& m : messages) ADD_FAILURE() << m;
  }

  std::vector<std::uint8_t> read_all(const Buffer& buffer) {
    std::vector<std::uint8_t> out(buffer.size());
    read(out.data(), buffer, 0, out.size());
    return out;
  }

  std::shared_ptr<VulkanDevice> device;
  std::uint64_t messages_before = 0;
};

TEST_P(VulkanDeviceTest, ValidationLayerIsOn) {
  EXPECT_TRUE(device->context().instance().validation());
}

TEST_P(VulkanDeviceTest, HostPointerOnlyWhenDeviceMemoryIsMapped) {
  Buffer buffer = device->allocate(4096);
  if (GetParam() && device->context().device_memory_mapped()) {
    EXPECT_NE(buffer.host_ptr(), nullptr);
  }
  if (!GetParam()) {
    EXPECT_EQ(buffer.host_ptr(), nullptr);
  }
}

TEST_P(VulkanDeviceTest, RoundTripsAcrossStagingChunks) {
  // Several ring slots, a partial last chunk, an odd offset.
  const std::size_t n = 3 * vulkan::VulkanStream::kStagingChunk + 12345;
  const auto data = random_bytes(n, 11);
  Buffer buffer = device->allocate(n + 7);
  write(buffer, 7, data.data(), n);
  std::vector<std::uint8_t> out(n);
  read(out.data(), buffer, 7, n);
  EXPECT_EQ(out, data);
}

TEST_P(VulkanDeviceTest, SubAllocatorKeepsMemoryObjectsFewAndAligned) {
  const auto before = device->device_memory_stats();
  const std::uint32_t max_objects = device->context().limits().maxMemoryAllocationCount;
  const VkDeviceSize align = device->context().buffer_alignment();
  std::vector<Buffer> buffers;
  for (std::size_t i = 0; i < 2000; ++i) {
    buffers.push_back(device->allocate(1 + (i * 7919) % 20000));
  }
  const auto during = device->device_memory_stats();
  // 2000 buffers of at most 20 kB fit in one or two 64 MiB blocks.
  EXPECT_LE(during.device_memory_objects, before.device_memory_objects + 2);
  EXPECT_LT(during.device_memory_objects * 100, max_objects);
  EXPECT_EQ(during.live_allocations, before.live_allocations + 2000);
  for (const Buffer& b : buffers) {
    const auto& a = vulkan::vulkan_allocation(b.allocation());
    ASSERT_EQ(a.offset() % align, 0u);
    ASSERT_EQ(a.offset() % device->context().limits().minStorageBufferOffsetAlignment, 0u);
  }
  // No two buffers overlap: each keeps the bytes written to it.
  Stream& stream = device->default_stream();
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    stream.fill(buffers[i], 0, buffers[i].size(), static_cast<std::uint8_t>(i * 31 + 1));
  }
  for (std::size_t i = 0; i < buffers.size(); i += 97) {
    const auto bytes = read_all(buffers[i]);
    EXPECT_TRUE(std::all_of(bytes.begin(), bytes.end(), [&](std::uint8_t v) {
      return v == static_cast<std::uint8_t>(i * 31 + 1);
    })) << "buffer " << i;
  }
  buffers.clear();
  const auto after = device->device_memory_stats();
  EXPECT_EQ(after.live_allocations, before.live_allocations);
  // One empty block stays cached for the next small request, no more.
  EXPECT_LE(after.device_memory_objects, before.device_memory_objects + 1);
}

TEST_P(VulkanDeviceTest, LargeBuffersGetTheirOwnMemoryAndGiveItBack) {
  const auto before = device->device_memory_stats();
  {
    Buffer big = device->allocate(std::size_t{48} << 20);
    EXPECT_EQ(device->device_memory_stats().device_memory_objects,
              before.device_memory_objects + 1);
  }
  EXPECT_EQ(device->device_memory_stats().device_memory_objects, before.device_memory_objects);
}

TEST_P(VulkanDeviceTest, OutOfMemoryNamesDeviceAndRequest) {
  const std::uint64_t too_big = device->context().heap_size() + 1;
  try {
    Buffer b = device->allocate(too_big);
    FAIL() << "expected OutOfMemory";
  } catch (const OutOfMemory& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(device->id()), std::string::npos) << what;
    EXPECT_NE(what.find(std::to_string(too_big)), std::string::npos) << what;
  }
}

TEST_P(VulkanDeviceTest, ShaderCopyMatchesMemcpyAtAnyAlignment) {
  const std::size_t n = 70000;
  const auto src_bytes = random_bytes(n, 21);
  const auto dst_bytes = random_bytes(n, 22);
  Buffer src = device->allocate(n);
  Buffer dst = device->allocate(n);
  write(src, 0, src_bytes.data(), n);
  auto stream = device->create_stream();
  struct Case {
    std::size_t dst_offset, src_offset, size;
  };
  for (Case c : {Case{0, 0, n}, Case{4, 8, 1000}, Case{1, 2, 9999}, Case{3, 0, 5}, Case{5, 5, 1},
                 Case{2, 7, 40001}, Case{n - 3, 0, 3}}) {
    write(dst, 0, dst_bytes.data(), n);
    device->shader_copy(*stream, dst, c.dst_offset, src, c.src_offset, c.size);
    stream->synchronize();
    auto expected = dst_bytes;
    std::memcpy(expected.data() + c.dst_offset, src_bytes.data() + c.src_offset, c.size);
    EXPECT_EQ(read_all(dst), expected)
        << "dst+" << c.dst_offset << " src+" << c.src_offset << " n=" << c.size;
  }
  EXPECT_THROW(device->shader_copy(*stream, dst, 1, src, 0, n), InvalidArgument);
  EXPECT_EQ(device->pipelines().created() >= 1, true);
}

TEST_P(VulkanDeviceTest, FillAtOddOffsetsLeavesNeighboursAlone) {
  const std::size_t n = 4099;
  const auto base = random_bytes(n, 31);
  Buffer buffer = device->allocate(n);
  Stream& stream = device->default_stream();
  for (auto [offset, size] : std::vector<std::pair<std::size_t, std::size_t>>{
           {1, 1}, {2, 5}, {3, 4093}, {0, 4}, {4, 8}, {4095, 4}, {7, 0}}) {
    write(buffer, 0, base.data(), n);
    stream.fill(buffer, offset, size, 0xc3);
    stream.synchronize();
    auto expected = base;
    std::fill_n(expected.begin() + static_cast<std::ptrdiff_t>(offset), size, 0xc3);
    EXPECT_EQ(read_all(buffer), expected) << "offset " << offset << " size " << size;
  }
}

TEST_P(VulkanDeviceTest, FmaKernelComputesAndReportsItsFlops) {
  const std::size_t elements = 10007;
  std::vector<float> values(elements);
  for (std::size_t i = 0; i < elements; ++i) values[i] = static_cast<float>(i % 97) * 0.25F;
  Buffer buffer = device->allocate(elements * sizeof(float) + 2);  // a ragged tail is ignored
  write(buffer, 0, values.data(), elements * sizeof(float));
  auto stream = device->create_stream();
  const std::uint32_t iterations = 50;
  const double flops = device->launch_fma(*stream, buffer, iterations);
  EXPECT_DOUBLE_EQ(flops, 16.0 * elements * iterations);
  stream->synchronize();
  std::vector<float> out(elements);
  read(out.data(), buffer, 0, elements * sizeof(float));
  for (std::size_t i = 0; i < elements; i += 13) {
    std::array<float, 8> a{};
    for (int j = 0; j < 8; ++j) a[j] = values[i] + static_cast<float>(j);
    for (std::uint32_t k = 0; k < iterations; ++k) {
      for (float& x : a) x = std::fma(x, 0.9999F, 0.0001F);
    }
    const float expected = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    ASSERT_NEAR(out[i], expected, 1e-4F * std::max(1.0F, std::fabs(expected))) << "element " << i;
  }
  // Another device's stream is refused.
  auto cpu_stream = Registry::instance().device("cpu:0")->create_stream();
  EXPECT_THROW((void)device->launch_fma(*cpu_stream, buffer, 1), InvalidArgument);
}

TEST_P(VulkanDeviceTest, WaitingOnAnotherBackendsEventOrdersTheCopy) {
  auto cpu = Registry::instance().device("cpu:0");
  const std::size_t n = std::size_t{8} << 20;
  Buffer host_side = cpu->allocate(n);
  ASSERT_NE(host_side.host_ptr(), nullptr);
  auto cpu_stream = cpu->create_stream();
  cpu_stream->fill(host_side, 0, n, 0x5a);
  auto filled = cpu_stream->record();
  auto stream = device->create_stream();
  stream->wait(filled);
  Buffer buffer = device->allocate(n);
  stream->copy_h2d(buffer, 0, host_side.host_ptr(), n);
  stream->synchronize();
  const auto bytes = read_all(buffer);
  EXPECT_TRUE(std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t v) { return v == 0x5a; }));
}

TEST_P(VulkanDeviceTest, EventsOfOneStreamAreTimedInOrder) {
  auto stream = device->create_stream();
  Buffer buffer = device->allocate(std::size_t{4} << 20);
  std::vector<std::shared_ptr<Event>> events;
  for (int i = 0; i < 5; ++i) {
    stream->fill(buffer, 0, buffer.size(), static_cast<std::uint8_t>(i));
    events.push_back(stream->record());
  }
  stream->synchronize();
  for (std::size_t i = 1; i < events.size(); ++i) {
    EXPECT_GT(events[0]->elapsed_ms(*events[i]), 0.0);
    EXPECT_GE(events[0]->elapsed_ms(*events[i]), events[0]->elapsed_ms(*events[i - 1]));
  }
  auto cpu_event = Registry::instance().device("cpu:0")->create_stream()->record();
  EXPECT_THROW((void)events[0]->elapsed_ms(*cpu_event), InvalidArgument);
}

TEST_P(VulkanDeviceTest, MemoryInfoSaysWhereFreeComesFrom) {
  const MemoryInfo info = device->memory_info();
  EXPECT_EQ(info.total, device->context().heap_size());
  EXPECT_EQ(info.source, device->context().has_memory_budget() ? MemorySource::budget
                                                                : MemorySource::estimate);
  if (!device->context().has_memory_budget()) {
    // The estimate counts what this process holds in the heap.
    Buffer big = device->allocate(std::size_t{40} << 20);
    EXPECT_LE(device->memory_info().free + (std::uint64_t{40} << 20), info.free);
  }
}

TEST_P(VulkanDeviceTest, LostDeviceFailsEveryLaterOperationWithDeviceError) {
  // A device of its own, so the suite's device stays usable.
  VulkanOptions options;
  options.validation = true;
  options.map_device_memory = GetParam();
  auto backend = vulkan::make_backend(options);
  ASSERT_TRUE(backend->open().available);
  auto doomed = std::dynamic_pointer_cast<VulkanDevice>(backend->devices().front());
  Buffer buffer = doomed->allocate(64);
  auto stream = doomed->create_stream();
  doomed->context().mark_lost();
  std::uint8_t byte = 1;
  try {
    stream->fill(buffer, 0, 64, 0);
    FAIL() << "expected DeviceError";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("device lost"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(doomed->id()), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)doomed->allocate(64), DeviceError);
  EXPECT_THROW(stream->copy_d2d(buffer, 0, buffer, 32, 1), DeviceError);
  (void)byte;
}

INSTANTIATE_TEST_SUITE_P(Vulkan, VulkanDeviceTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "mapped" : "staged"; });

TEST(VulkanErrors, ResultsMapToTypedErrors) {
  using vulkan::throw_result;
  try {
    throw_result(VK_ERROR_OUT_OF_DEVICE_MEMORY, "vkAllocateMemory", "vulkan:3", "1.0 GiB");
    FAIL();
  } catch (const std::bad_alloc& e) {
    ASSERT_NE(dynamic_cast<const OutOfMemory*>(&e), nullptr);
    EXPECT_NE(std::string(e.what()).find("vulkan:3"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("1.0 GiB"), std::string::npos);
  }
  EXPECT_THROW(throw_result(VK_ERROR_OUT_OF_HOST_MEMORY, "vkCreateBuffer", "vulkan:0"),
               OutOfMemory);
  try {
    throw_result(VK_ERROR_DEVICE_LOST, "vkQueueSubmit", "vulkan:1");
    FAIL();
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("device lost"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("vkQueueSubmit"), std::string::npos);
  }
  try {
    throw_result(VK_ERROR_INITIALIZATION_FAILED, "vkCreateDevice", "vulkan:0");
    FAIL();
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("vkCreateDevice"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("VK_ERROR_INITIALIZATION_FAILED"), std::string::npos);
  }
  EXPECT_NO_THROW(vulkan::check(VK_SUCCESS, "vkCreateDevice", "vulkan:0"));
  EXPECT_NO_THROW(vulkan::check(VK_INCOMPLETE, "vkEnumeratePhysicalDevices", "vulkan:0"));
}

TEST(VulkanValidation, MisuseIsCaughtAndFailsTheNextSynchronize) {
  OpenedBackend& b = opened(true);
  if (!b.status.available) GTEST_SKIP() << b.status.reason;
  // A backend of its own, so the deliberate message stays out of the others.
  VulkanOptions options;
  options.validation = true;
  auto backend = vulkan::make_backend(options);
  ASSERT_TRUE(backend->open().available);
  auto device = std::dynamic_pointer_cast<VulkanDevice>(backend->devices().front());
  auto& context = device->context();
  // A zero-sized buffer violates VUID-VkBufferCreateInfo-size-00912.
  VkBufferCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
  info.size = 0;
  info.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT;
  VkBuffer buffer = VK_NULL_HANDLE;
  (void)context.fn().vkCreateBuffer(context.handle(), &info, nullptr, &buffer);
  if (buffer != VK_NULL_HANDLE) context.fn().vkDestroyBuffer(context.handle(), buffer, nullptr);
  EXPECT_GE(context.instance().validation_message_count(), 1u);
  try {
    device->default_stream().synchronize();
    FAIL() << "expected the validation message to fail the synchronize";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("VUID-VkBufferCreateInfo-size-00912"), std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(device->default_stream().synchronize());  // reported once
}

// ---- Agreement with vulkaninfo ------------------------------------------------

struct VulkaninfoDevice {
  std::string name, api_version, uuid;
  std::vector<std::uint64_t> heaps;
};

std::vector<VulkaninfoDevice> run_vulkaninfo() {
  std::vector<VulkaninfoDevice> out;
  FILE* pipe = popen("vulkaninfo --text 2>/dev/null", "r");
  if (pipe == nullptr) return out;
  std::string text;
  std::array<char, 4096> chunk{};
  while (std::fgets(chunk.data(), static_cast<int>(chunk.size()), pipe) != nullptr) text += chunk.data();
  if (pclose(pipe) != 0) return {};
  static const std::regex gpu(R"(^GPU\d+:$)");
  static const std::regex api(R"(^\s*apiVersion\s*=\s*(\d+\.\d+\.\d+))");
  static const std::regex name(R"(^\s*deviceName\s*=\s*(.+)$)");
  static const std::regex uuid(R"(^\s*deviceUUID\s*=\s*([0-9a-f-]{36}))");
  static const std::regex heap(R"(^\s*memoryHeaps\[\d+\]:$)");
  static const std::regex size(R"(^\s*size\s*=\s*(\d+))");
  bool in_heap = false;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    std::smatch m;
    if (std::regex_match(line, gpu)) {
      out.emplace_back();
    } else if (out.empty()) {
      continue;
    } else if (out.back().api_version.empty() && std::regex_search(line, m, api)) {
      out.back().api_version = m[1];
    } else if (out.back().name.empty() && std::regex_search(line, m, name)) {
      out.back().name = m[1];
    } else if (out.back().uuid.empty() && std::regex_search(line, m, uuid)) {
      out.back().uuid = m[1];
    } else if (std::regex_search(line, heap)) {
      in_heap = true;
    } else if (in_heap && std::regex_search(line, m, size)) {
      out.back().heaps.push_back(std::stoull(m[1]));
      in_heap = false;
    }
  }
  return out;
}

TEST(VulkanDiscovery, AgreesWithVulkaninfo) {
  OpenedBackend& b = opened(true);
  if (!b.status.available) GTEST_SKIP() << b.status.reason;
  const auto reference = run_vulkaninfo();
  if (reference.empty()) GTEST_SKIP() << "vulkaninfo is not installed";
  for (const auto& device : b.devices) {
    const auto& props = device->context().physical().properties;
    auto it = std::find_if(reference.begin(), reference.end(),
                           [&](const auto& r) { return r.uuid == device->info().uuid; });
    ASSERT_NE(it, reference.end()) << device->id() << " uuid " << device->info().uuid;
    EXPECT_EQ(device->info().name, it->name);
    EXPECT_EQ(vulkan::version_string(props.apiVersion), it->api_version);
    const auto& memory = device->context().physical().memory;
    ASSERT_EQ(memory.memoryHeapCount, it->heaps.size());
    for (std::uint32_t i = 0; i < memory.memoryHeapCount; ++i) {
      EXPECT_EQ(memory.memoryHeaps[i].size, it->heaps[i]) << "heap " << i;
    }
    EXPECT_EQ(device->info().memory_total, memory.memoryHeaps[device->context().device_heap()].size);
  }
}

TEST(VulkanDiscovery, CpuDriverIsAnAliasOfTheHostCpuYetUsableByItsOwnId) {
  OpenedBackend& b = opened(true);
  if (!b.status.available) GTEST_SKIP() << b.status.reason;
  for (const auto& device : b.devices) {
    const DeviceInfo& info = device->info();
    EXPECT_EQ(info.backend, "vulkan");
    EXPECT_TRUE(std::regex_match(info.uuid, std::regex("[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")))
        << info.uuid;
    if (device->context().physical().properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) {
      EXPECT_EQ(info.kind, DeviceKind::cpu);
      EXPECT_TRUE(info.emulated_on_host);
      EXPECT_TRUE(info.unified_memory);
    }
  }
  // Through the registry: vulkan:N of a CPU driver folds into cpu:0.
  Registry& registry = Registry::instance();
  for (const auto& d : registry.all_devices()) {
    if (d->info().backend != "vulkan" || d->info().kind != DeviceKind::cpu) continue;
    EXPECT_EQ(registry.device(d->id()), d);
    for (const auto& physical : registry.devices()) EXPECT_NE(physical, d);
    const auto& aliases = registry.device("cpu:0")->info().aliases;
    EXPECT_NE(std::find(aliases.begin(), aliases.end(), d->id()), aliases.end());
  }
}

}  // namespace
}  // namespace exogpu::test

#endif  // EXOGPU_HAVE_VULKAN
