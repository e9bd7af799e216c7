// One suite, every device: the operations of the device interface must mean
// the same thing on every backend.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "exogpu/device.hpp"
#include "exogpu/error.hpp"
#include "exogpu/pool.hpp"
#include "test_support.hpp"

namespace exogpu::test {
namespace {

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  std::shared_ptr<Device> device = Registry::instance().device(GetParam());

  std::vector<std::uint8_t> read_all(const Buffer& buffer) {
    std::vector<std::uint8_t> out(buffer.size());
    read(out.data(), buffer, 0, out.size());
    return out;
  }
};

TEST_P(Conformance, ZeroByteAllocationIsAValidEmptyBuffer) {
  Buffer empty = device->allocate(0);
  EXPECT_TRUE(empty.valid());
  EXPECT_EQ(empty.size(), 0u);
  std::uint8_t byte = 7;
  write(empty, 0, &byte, 0);  // nothing to copy, and no error
  read(&byte, empty, 0, 0);
  EXPECT_EQ(byte, 7);
  EXPECT_THROW(write(empty, 0, &byte, 1), InvalidArgument);
}

TEST_P(Conformance, RoundTripsRandomBytesAtManySizes) {
  for (std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{255}, std::size_t{4096},
                        std::size_t{4097}, std::size_t{65537}, (std::size_t{1} << 20) + 7,
                        std::size_t{9} << 20}) {
    const auto data = random_bytes(n, static_cast<std::uint32_t>(n));
    Buffer buffer = device->allocate(n);
    write(buffer, 0, data.data(), n);
    EXPECT_EQ(read_all(buffer), data) << n << " bytes";
  }
}

TEST_P(Conformance, OffsetsTouchOnlyTheirRange) {
  const std::size_t n = 10000;
  const auto base = random_bytes(n, 1);
  Buffer buffer = device->allocate(n);
  write(buffer, 0, base.data(), n);
  for (std::size_t offset : {std::size_t{1}, std::size_t{17}, std::size_t{4095}, n - 33}) {
    const auto patch = random_bytes(33, static_cast<std::uint32_t>(offset));
    write(buffer, offset, patch.data(), patch.size());
    auto expected = base;
    std::copy(patch.begin(), patch.end(), expected.begin() + static_cast<std::ptrdiff_t>(offset));
    EXPECT_EQ(read_all(buffer), expected) << "offset " << offset;
    std::vector<std::uint8_t> part(33);
    read(part.data(), buffer, offset, part.size());
    EXPECT_EQ(part, patch);
    write(buffer, 0, base.data(), n);
  }
}

TEST_P(Conformance, OutOfRangeCopiesAreRejectedAndChangeNothing) {
  const auto data = random_bytes(100, 2);
  Buffer buffer = device->allocate(100);
  write(buffer, 0, data.data(), 100);
  std::vector<std::uint8_t> big(101, 0xee);
  EXPECT_THROW(write(buffer, 0, big.data(), 101), InvalidArgument);
  EXPECT_THROW(write(buffer, 1, big.data(), 100), InvalidArgument);
  EXPECT_THROW(write(buffer, SIZE_MAX, big.data(), 2), InvalidArgument);  // offset overflow
  EXPECT_THROW(read(big.data(), buffer, 50, 51), InvalidArgument);
  EXPECT_EQ(read_all(buffer), data);
  try {
    write(buffer, 90, big.data(), 20);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(device->id()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("offset 90"), std::string::npos) << e.what();
  }
}

TEST_P(Conformance, AllocationLargerThanTheDeviceIsOutOfMemoryAndLeavesThePoolAsItWas) {
  Pool& pool = device->pool();
  const PoolStats before = pool.stats();
  const std::uint64_t too_big = device->info().memory_total + (std::uint64_t{1} << 30);
  try {
    Buffer b = pool.allocate(too_big);
    FAIL() << "expected OutOfMemory";
  } catch (const OutOfMemory& e) {
    EXPECT_NE(std::string(e.what()).find(device->id()), std::string::npos) << e.what();
  }
  const PoolStats after = pool.stats();
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
  EXPECT_EQ(after.live_buffers, before.live_buffers);
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.peak_bytes_in_use, before.peak_bytes_in_use);
  EXPECT_EQ(after.failed_allocations, before.failed_allocations + 1);
  // Still serves ordinary requests.
  Buffer ok = pool.allocate(4096);
  EXPECT_EQ(ok.size(), 4096u);
}

TEST_P(Conformance, DeviceToDeviceWithinTheDevice) {
  const std::size_t n = (std::size_t{3} << 20) + 11;
  const auto data = random_bytes(n, 3);
  Buffer a = device->allocate(n);
  Buffer b = device->allocate(n + 100);
  write(a, 0, data.data(), n);
  copy(b, 100, a, 0, n);
  std::vector<std::uint8_t> out(n);
  read(out.data(), b, 100, n);
  EXPECT_EQ(out, data);
  // Non-overlapping ranges of one buffer.
  copy(a, 0, a, n / 2 + 1, n / 2 - 1);
  read(out.data(), a, 0, n / 2 - 1);
  EXPECT_TRUE(std::equal(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n / 2 - 1),
                         data.begin() + static_cast<std::ptrdiff_t>(n / 2 + 1)));
}

TEST_P(Conformance, FillSetsExactlyItsRange) {
  Buffer buffer = device->allocate(5000);
  Stream& stream = device->default_stream();
  stream.fill(buffer, 0, 5000, 0x11);
  stream.fill(buffer, 1000, 333, 0xab);
  stream.synchronize();
  const auto out = read_all(buffer);
  for (std::size_t i = 0; i < out.size(); ++i) {
    ASSERT_EQ(out[i], (i >= 1000 && i < 1333) ? 0xab : 0x11) << "byte " << i;
  }
}

TEST_P(Conformance, StreamRunsItsWorkInOrder) {
  auto stream = device->create_stream();
  const std::size_t n = std::size_t{8} << 20;
  const auto first = random_bytes(n, 4);
  const auto second = random_bytes(n, 5);
  Buffer a = device->allocate(n);
  Buffer b = device->allocate(n);
  std::vector<std::uint8_t> out(n);
  stream->copy_h2d(a, 0, first.data(), n);
  stream->copy_d2d(b, 0, a, 0, n);
  stream->copy_h2d(a, 0, second.data(), n);  // must not overtake the d2d
  stream->copy_d2h(out.data(), b, 0, n);
  stream->synchronize();
  EXPECT_EQ(out, first);
  EXPECT_EQ(read_all(a), second);
}

TEST_P(Conformance, WaitOrdersWorkAcrossStreams) {
  auto producer = device->create_stream();
  auto consumer = device->create_stream();
  const std::size_t n = std::size_t{16} << 20;
  const auto data = random_bytes(n, 6);
  Buffer buffer = device->allocate(n);
  std::vector<std::uint8_t> out(n, 0);
  producer->copy_h2d(buffer, 0, data.data(), n);
  auto written = producer->record();
  consumer->wait(written);
  consumer->copy_d2h(out.data(), buffer, 0, n);
  consumer->synchronize();
  EXPECT_TRUE(written->query());
  EXPECT_EQ(out, data);
}

TEST_P(Conformance, EventsCompleteInOrderAndMeasureElapsedTime) {
  auto stream = device->create_stream();
  const std::size_t n = std::size_t{32} << 20;
  std::vector<std::uint8_t> host(n, 1);
  Buffer buffer = device->allocate(n);
  auto start = stream->record();
  stream->copy_h2d(buffer, 0, host.data(), n);
  auto middle = stream->record();
  stream->copy_d2h(host.data(), buffer, 0, n);
  auto end = stream->record();
  end->synchronize();
  EXPECT_TRUE(start->query());
  EXPECT_TRUE(middle->query());
  const double first = start->elapsed_ms(*middle);
  const double whole = start->elapsed_ms(*end);
  EXPECT_GT(first, 0.0);  // 32 MiB takes measurable time on any device
  EXPECT_GE(whole, first);
  EXPECT_LT(whole, 60'000.0);
}

TEST_P(Conformance, ElapsedTimeNeedsCompleteEvents) {
  auto stream = device->create_stream();
  auto a = stream->record();
  auto b = stream->record();
  stream->synchronize();
  EXPECT_GE(a->elapsed_ms(*b), 0.0);
}

TEST_P(Conformance, FreeingABufferWithWorkInFlightIsSafe) {
  auto stream = device->create_stream();
  const std::size_t n = std::size_t{16} << 20;
  const auto data = random_bytes(n, 7);
  std::vector<std::uint8_t> out(n);
  {
    Buffer a = device->allocate(n);
    Buffer b = device->allocate(n);
    stream->copy_h2d(a, 0, data.data(), n);
    stream->copy_d2d(b, 0, a, 0, n);
    stream->copy_d2h(out.data(), b, 0, n);
  }  // both handles gone while the work is queued
  stream->synchronize();
  EXPECT_EQ(out, data);
}

TEST_P(Conformance, CopiesToEveryOtherDeviceDirectAndStaged) {
  const std::size_t n = (std::size_t{20} << 20) + 5;  // several staging chunks
  const auto data = random_bytes(n, 8);
  for (const auto& other : Registry::instance().all_devices()) {
    for (CopyRoute route : {CopyRoute::automatic, CopyRoute::staged}) {
      Buffer src = device->allocate(n);
      Buffer dst = other->allocate(n + 3);
      write(src, 0, data.data(), n);
      copy(dst, 3, src, 0, n, nullptr, route);
      std::vector<std::uint8_t> out(n);
      read(out.data(), dst, 3, n);
      EXPECT_EQ(out, data) << device->id() << " -> " << other->id()
                           << (route == CopyRoute::staged ? " (staged)" : "");
    }
  }
}

TEST_P(Conformance, HostBuffersHoldTheirBytes) {
  auto host = device->allocate_host(1 << 20);
  ASSERT_NE(host->data(), nullptr);
  EXPECT_EQ(host->size(), 1u << 20);
  const auto data = random_bytes(1 << 20, 9);
  std::copy(data.begin(), data.end(), static_cast<std::uint8_t*>(host->data()));
  Buffer buffer = device->allocate(1 << 20);
  write(buffer, 0, host->data(), host->size());
  EXPECT_EQ(read_all(buffer), data);
}

TEST_P(Conformance, ManyThreadsAllocatingAndCopyingAtOnce) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 25;
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto stream = device->create_stream();
      for (int r = 0; r < kRounds; ++r) {
        const std::size_t n = 1 + static_cast<std::size_t>((t * 7919 + r * 104729) % 300000);
        const auto data = random_bytes(n, static_cast<std::uint32_t>(t * 1000 + r));
        Buffer buffer = device->allocate_pooled(n);
        std::vector<std::uint8_t> out(n);
        stream->copy_h2d(buffer, 0, data.data(), n);
        stream->copy_d2h(out.data(), buffer, 0, n);
        stream->synchronize();
        if (out != data) mismatches.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_P(Conformance, MemoryInfoIsConsistent) {
  const MemoryInfo memory = device->memory_info();
  EXPECT_GT(memory.total, 0u);
  EXPECT_LE(memory.free, memory.total);
  EXPECT_EQ(memory.total, device->info().memory_total);
  EXPECT_EQ(device->info().id, device->info().backend + ":" + std::to_string(device->info().index));
}

TEST_P(Conformance, StreamRejectsForeignBuffers) {
  for (const auto& other : Registry::instance().all_devices()) {
    if (other == device) continue;
    Buffer foreign = other->allocate(16);
    std::uint8_t byte = 0;
    EXPECT_THROW(device->default_stream().copy_h2d(foreign, 0, &byte, 1), InvalidArgument);
  }
  Buffer freed;
  std::uint8_t byte = 0;
  EXPECT_THROW(device->default_stream().copy_h2d(freed, 0, &byte, 1), InvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(EveryDevice, Conformance, ::testing::ValuesIn(all_device_ids()),
                         [](const auto& info) { return param_name(info.param); });

}  // namespace
}  // namespace exogpu::test
