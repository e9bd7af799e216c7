// The caching pool on every device: size classes, statistics, limits, trim.
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "exogpu/error.hpp"
#include "exogpu/pool.hpp"
#include "test_support.hpp"

namespace exogpu::test {
namespace {

TEST(PoolSizeClass, RoundsUpWithAtMostAQuarterWasted) {
  EXPECT_EQ(Pool::size_class(1), 256u);
  EXPECT_EQ(Pool::size_class(256), 256u);
  EXPECT_EQ(Pool::size_class(257), 320u);
  EXPECT_EQ(Pool::size_class(1u << 20), 1u << 20);
  EXPECT_EQ(Pool::size_class((1u << 20) + 1), (1u << 20) + (1u << 18));
  for (std::size_t n = 1; n < (std::size_t{1} << 24); n = n * 3 + 1) {
    const std::size_t cls = Pool::size_class(n);
    EXPECT_GE(cls, n);
    if (n > 256) {
      EXPECT_LE(cls, n + n / 4 + 1) << n;
    }
    EXPECT_EQ(Pool::size_class(cls), cls) << "a class is its own class";
  }
}

class PoolOnDevice : public ::testing::TestWithParam<std::string> {
 protected:
  std::shared_ptr<Device> device = Registry::instance().device(GetParam());
};

TEST_P(PoolOnDevice, FreedBlocksAreReusedAndCounted) {
  Pool pool(*device);
  {
    Buffer a = pool.allocate(1000);
    const PoolStats s = pool.stats();
    EXPECT_EQ(s.bytes_requested, 1000u);
    EXPECT_EQ(s.bytes_in_use, Pool::size_class(1000));
    EXPECT_EQ(s.live_buffers, 1u);
    EXPECT_EQ(s.device_allocations, 1u);
    EXPECT_EQ(s.cache_hits, 0u);
  }
  PoolStats s = pool.stats();
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_EQ(s.bytes_cached, Pool::size_class(1000));
  Buffer b = pool.allocate(1010);  // same class
  s = pool.stats();
  EXPECT_EQ(s.cache_hits, 1u);
  EXPECT_EQ(s.device_allocations, 1u);
  EXPECT_EQ(s.bytes_cached, 0u);
  EXPECT_EQ(s.allocations, 2u);
  EXPECT_EQ(s.peak_bytes_in_use, Pool::size_class(1000));
}

TEST_P(PoolOnDevice, AllocateCachedNeverTouchesTheDevice) {
  Pool pool(*device);
  EXPECT_FALSE(pool.allocate_cached(4000).valid());
  EXPECT_EQ(pool.stats().allocations, 0u);
  EXPECT_EQ(pool.stats().device_allocations, 0u);
  { Buffer a = pool.allocate(4000); }
  Buffer b = pool.allocate_cached(3900);  // same size class
  ASSERT_TRUE(b.valid());
  EXPECT_EQ(b.size(), 3900u);
  EXPECT_EQ(pool.stats().cache_hits, 1u);
  EXPECT_EQ(pool.stats().device_allocations, 1u);
  EXPECT_FALSE(pool.allocate_cached(100000).valid());
}

TEST_P(PoolOnDevice, LimitIsHardAndNamesRequestAndLimit) {
  Pool pool(*device, 1u << 20);
  Buffer a = pool.allocate(600'000);
  const PoolStats before = pool.stats();
  try {
    Buffer b = pool.allocate(600'000);
    FAIL() << "expected OutOfMemory";
  } catch (const OutOfMemory& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("600000 bytes"), std::string::npos) << what;
    EXPECT_NE(what.find("limit of 1048576 bytes"), std::string::npos) << what;
    EXPECT_NE(what.find(device->id()), std::string::npos) << what;
  }
  const PoolStats after = pool.stats();
  EXPECT_EQ(after.bytes_in_use, before.bytes_in_use);
  EXPECT_EQ(after.live_buffers, before.live_buffers);
  EXPECT_EQ(after.failed_allocations, before.failed_allocations + 1);
  a.reset();
  Buffer c = pool.allocate(600'000);  // fits again once freed
  EXPECT_EQ(c.size(), 600'000u);
}

TEST_P(PoolOnDevice, CachedBlocksMakeRoomUnderTheLimit) {
  Pool pool(*device, 1u << 20);
  { Buffer a = pool.allocate(700'000); }
  EXPECT_GT(pool.stats().bytes_cached, 0u);
  Buffer b = pool.allocate(500'000);  // another class: the cached block must go
  EXPECT_EQ(b.size(), 500'000u);
  EXPECT_LE(pool.stats().bytes_in_use + pool.stats().bytes_cached, 1u << 20);
}

TEST_P(PoolOnDevice, TrimReturnsEveryCachedByte) {
  Pool pool(*device);
  { Buffer a = pool.allocate(5000), b = pool.allocate(70000); }
  const std::uint64_t cached = pool.stats().bytes_cached;
  EXPECT_EQ(cached, Pool::size_class(5000) + Pool::size_class(70000));
  EXPECT_EQ(pool.trim(), cached);
  EXPECT_EQ(pool.stats().bytes_cached, 0u);
}

TEST_P(PoolOnDevice, LimitBelowUseIsRefused) {
  Pool pool(*device);
  Buffer a = pool.allocate(1u << 16);
  EXPECT_THROW(pool.set_limit(1000), InvalidArgument);
  EXPECT_FALSE(pool.limit().has_value());
  pool.set_limit(1u << 20);
  EXPECT_EQ(pool.limit(), std::optional<std::uint64_t>(1u << 20));
}

TEST_P(PoolOnDevice, RacingThreadsNeverExceedTheLimit) {
  constexpr std::uint64_t kLimit = 64 * 4096;
  Pool pool(*device, kLimit);
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  std::vector<Buffer> kept(16);
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 8; ++i) {
        try {
          Buffer b = pool.allocate(4096);
          granted.fetch_add(1);
          if (i == 7) kept[static_cast<std::size_t>(t)] = b;
        } catch (const OutOfMemory&) {
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(pool.stats().peak_bytes_in_use, kLimit);
  EXPECT_GT(granted.load(), 0);
}

TEST_P(PoolOnDevice, BlocksOutliveThePoolSafely) {
  Buffer survivor;
  {
    Pool pool(*device);
    survivor = pool.allocate(1234);
  }
  const auto data = random_bytes(1234, 10);
  write(survivor, 0, data.data(), data.size());
  std::vector<std::uint8_t> out(1234);
  read(out.data(), survivor, 0, out.size());
  EXPECT_EQ(out, data);
}

// An exported view (DLPack, numpy) holds its own Buffer handle. The owner
// freeing its handle must not put the block back in the pool while the view
// lives: the next allocation, maybe another principal's, would share it.
TEST_P(PoolOnDevice, ExportedHandleKeepsItsBlockFromTheNextAllocation) {
  Pool pool(*device);
  constexpr std::size_t kSize = 4096;
  const auto first_bytes = random_bytes(kSize, 21);
  const auto second_bytes = random_bytes(kSize, 22);

  Buffer owner = pool.allocate(kSize);
  write(owner, 0, first_bytes.data(), kSize);
  Buffer view = owner;  // what an export holds
  owner.reset();        // the owner's free()

  PoolStats s = pool.stats();
  EXPECT_EQ(s.bytes_cached, 0u) << "a block with a live view went back to the pool";
  EXPECT_EQ(s.live_buffers, 1u);
  EXPECT_EQ(s.bytes_in_use, Pool::size_class(kSize));

  Buffer next = pool.allocate(kSize);  // same size class
  EXPECT_NE(next.allocation().get(), view.allocation().get());
  s = pool.stats();
  EXPECT_EQ(s.cache_hits, 0u);
  EXPECT_EQ(s.device_allocations, 2u);
  write(next, 0, second_bytes.data(), kSize);

  std::vector<std::uint8_t> seen(kSize);
  read(seen.data(), view, 0, kSize);
  EXPECT_EQ(seen, first_bytes) << "the view sees another allocation's bytes";

  // The last view gone, the block returns to the pool: nothing leaks.
  const Allocation* block = view.allocation().get();
  view.reset();
  s = pool.stats();
  EXPECT_EQ(s.bytes_cached, Pool::size_class(kSize));
  EXPECT_EQ(s.live_buffers, 1u);
  Buffer reused = pool.allocate(kSize);
  EXPECT_EQ(reused.allocation().get(), block);
  EXPECT_EQ(pool.stats().cache_hits, 1u);
  next.reset();
  reused.reset();
  s = pool.stats();
  EXPECT_EQ(s.live_buffers, 0u);
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_EQ(s.bytes_cached, 2 * Pool::size_class(kSize));
  EXPECT_EQ(pool.trim(), 2 * Pool::size_class(kSize));
}

// Views dropped on other threads while the owner's thread allocates: the
// statistics come out balanced and no block is handed out twice (ASan and
// the sanitizer build watch the memory itself).
TEST_P(PoolOnDevice, ViewsReleasedOnOtherThreadsBalanceThePool) {
  Pool pool(*device);
  constexpr int kRounds = 64;
  std::vector<Buffer> views(kRounds);
  for (int i = 0; i < kRounds; ++i) {
    Buffer owner = pool.allocate(1024);
    views[static_cast<std::size_t>(i)] = owner;
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&views, t] {
      for (std::size_t i = static_cast<std::size_t>(t); i < views.size(); i += 4) views[i].reset();
    });
  }
  std::vector<Buffer> fresh;
  for (int i = 0; i < kRounds; ++i) fresh.push_back(pool.allocate(1024));
  for (auto& t : threads) t.join();
  std::vector<const Allocation*> blocks;
  for (const Buffer& b : fresh) blocks.push_back(b.allocation().get());
  std::sort(blocks.begin(), blocks.end());
  EXPECT_EQ(std::adjacent_find(blocks.begin(), blocks.end()), blocks.end())
      << "one block handed out twice";
  fresh.clear();
  const PoolStats s = pool.stats();
  EXPECT_EQ(s.live_buffers, 0u);
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_EQ(s.bytes_cached, s.device_allocations * Pool::size_class(1024));
  EXPECT_EQ(s.allocations, 2u * kRounds);
}

INSTANTIATE_TEST_SUITE_P(EveryDevice, PoolOnDevice, ::testing::ValuesIn(all_device_ids()),
                         [](const auto& info) { return param_name(info.param); });

}  // namespace
}  // namespace exogpu::test
