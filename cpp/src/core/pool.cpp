#include "exogpu/pool.hpp"

#include <algorithm>
#include <bit>
#include <limits>
#include <string>
#include <utility>

#include "exogpu/error.hpp"

namespace exogpu {

namespace {
constexpr std::size_t kMinClass = 256;

std::string bytes_text(std::uint64_t n) { return std::to_string(n) + " bytes"; }
}  // namespace

struct Pool::State {
  explicit State(std::optional<std::uint64_t> l) : limit(l) {}
  std::mutex mutex;
  std::optional<std::uint64_t> limit;
  std::map<std::size_t, std::vector<std::unique_ptr<Allocation>>> cache;
  PoolStats stats;

  [[nodiscard]] std::uint64_t reserved() const noexcept {
    return stats.bytes_in_use + stats.bytes_cached;
  }
  // Moves cached blocks out (to be freed outside the lock) until `needed`
  // more bytes fit under the limit, or the cache is empty.
  void evict_until_fits(std::uint64_t needed, std::vector<std::unique_ptr<Allocation>>& out) {
    for (auto it = cache.begin(); it != cache.end() && limit && reserved() + needed > *limit;) {
      while (!it->second.empty() && reserved() + needed > *limit) {
        stats.bytes_cached -= it->first;
        out.push_back(std::move(it->second.back()));
        it->second.pop_back();
      }
      it = it->second.empty() ? cache.erase(it) : std::next(it);
    }
  }
  void evict_all(std::vector<std::unique_ptr<Allocation>>& out) {
    for (auto& [cls, blocks] : cache) {
      for (auto& block : blocks) out.push_back(std::move(block));
      stats.bytes_cached -= cls * blocks.size();
    }
    cache.clear();
  }
};

namespace {

// Returns a block to its pool's cache when the last reference to it goes;
// frees it when the pool is already gone.
struct ReturnToPool {
  std::weak_ptr<Pool::State> pool;
  std::size_t size_class;
  std::size_t requested;

  void operator()(Allocation* raw) const noexcept {
    std::unique_ptr<Allocation> block(raw);
    std::shared_ptr<Pool::State> state = pool.lock();
    if (!state) return;
    std::lock_guard lock(state->mutex);
    state->stats.bytes_in_use -= size_class;
    state->stats.bytes_requested -= requested;
    state->stats.live_buffers -= 1;
    try {
      state->cache[size_class].push_back(std::move(block));
      state->stats.bytes_cached += size_class;
    } catch (...) {
      // Could not cache it: the block is freed instead (unique_ptr).
    }
  }
};

}  // namespace

Pool::Pool(Device& device, std::optional<std::uint64_t> limit)
    : device_(device), state_(std::make_shared<State>(limit)) {}

Pool::~Pool() {
  std::vector<std::unique_ptr<Allocation>> freed;
  std::lock_guard lock(state_->mutex);
  state_->evict_all(freed);
}

std::size_t Pool::size_class(std::size_t n) noexcept {
  if (n <= kMinClass) return kMinClass;
  if (n > std::numeric_limits<std::size_t>::max() / 2) return n;
  // Four classes per power of two: round up to a multiple of 2^(p-3) where
  // 2^(p-1) < n <= 2^p.
  const unsigned p = static_cast<unsigned>(std::bit_width(n - 1));
  const std::size_t step = std::size_t{1} << (p - 3);
  return (n + step - 1) / step * step;
}

Buffer Pool::wrap(std::unique_ptr<Allocation> block, std::size_t size_class, std::size_t n) {
  std::shared_ptr<Allocation> shared(block.get(), ReturnToPool{state_, size_class, n});
  block.release();  // now owned by `shared`, whose deleter returns it here
  return Buffer(device_.shared_from_this(), std::move(shared), n);
}

Buffer Pool::allocate_cached(std::size_t n) {
  if (n == 0) return allocate(0);
  const std::size_t cls = size_class(n);
  std::unique_ptr<Allocation> block;
  {
    std::lock_guard lock(state_->mutex);
    auto hit = state_->cache.find(cls);
    if (hit == state_->cache.end() || hit->second.empty()) return Buffer{};
    block = std::move(hit->second.back());
    hit->second.pop_back();
    PoolStats& s = state_->stats;
    s.bytes_cached -= cls;
    s.cache_hits += 1;
    s.bytes_in_use += cls;
    s.bytes_requested += n;
    s.live_buffers += 1;
    s.allocations += 1;
    s.peak_bytes_in_use = std::max(s.peak_bytes_in_use, s.bytes_in_use);
  }
  return wrap(std::move(block), cls, n);
}

Buffer Pool::allocate(std::size_t n) {
  if (n == 0) {
    std::lock_guard lock(state_->mutex);
    state_->stats.allocations += 1;
    return device_.allocate(0);
  }
  if (Buffer cached = allocate_cached(n); cached.valid()) return cached;

  const std::size_t cls = size_class(n);
  std::vector<std::unique_ptr<Allocation>> evicted;
  {
    std::lock_guard lock(state_->mutex);
    PoolStats& s = state_->stats;
    state_->evict_until_fits(cls, evicted);
    if (state_->limit && state_->reserved() + cls > *state_->limit) {
      s.failed_allocations += 1;
      throw OutOfMemory("pool on " + device_.id() + ": a request of " + bytes_text(n) +
                        " (size class " + bytes_text(cls) + ") exceeds the pool limit of " +
                        bytes_text(*state_->limit) + " (" + bytes_text(s.bytes_in_use) +
                        " in use)");
    }
    // Reserve the bytes now so that racing threads cannot both pass the limit.
    s.bytes_in_use += cls;
    s.bytes_requested += n;
    s.live_buffers += 1;
    s.allocations += 1;
  }
  evicted.clear();  // freed outside the lock

  auto roll_back = [&] {
    std::lock_guard lock(state_->mutex);
    PoolStats& s = state_->stats;
    s.bytes_in_use -= cls;
    s.bytes_requested -= n;
    s.live_buffers -= 1;
    s.allocations -= 1;
    s.failed_allocations += 1;
  };
  std::unique_ptr<Allocation> block;
  try {
    block = device_.do_allocate(cls);
  } catch (const OutOfMemory&) {
    // The device is full: give the cache back and try once more.
    trim();
    try {
      block = device_.do_allocate(cls);
    } catch (...) {
      roll_back();
      throw;
    }
  } catch (...) {
    roll_back();
    throw;
  }
  {
    std::lock_guard lock(state_->mutex);
    PoolStats& s = state_->stats;
    s.device_allocations += 1;
    s.peak_bytes_in_use = std::max(s.peak_bytes_in_use, s.bytes_in_use);
  }
  return wrap(std::move(block), cls, n);
}

std::uint64_t Pool::trim() {
  std::vector<std::unique_ptr<Allocation>> freed;
  std::uint64_t bytes = 0;
  {
    std::lock_guard lock(state_->mutex);
    bytes = state_->stats.bytes_cached;
    state_->evict_all(freed);
  }
  return bytes;  // `freed` releases the blocks outside the lock
}

PoolStats Pool::stats() const {
  std::lock_guard lock(state_->mutex);
  return state_->stats;
}

std::optional<std::uint64_t> Pool::limit() const {
  std::lock_guard lock(state_->mutex);
  return state_->limit;
}

void Pool::set_limit(std::optional<std::uint64_t> limit) {
  std::vector<std::unique_ptr<Allocation>> evicted;
  std::lock_guard lock(state_->mutex);
  if (limit && *limit < state_->stats.bytes_in_use) {
    throw InvalidArgument("pool on " + device_.id() + ": a limit of " + bytes_text(*limit) +
                          " is below the " + bytes_text(state_->stats.bytes_in_use) +
                          " already in use");
  }
  state_->limit = limit;
  state_->evict_until_fits(0, evicted);
}

}  // namespace exogpu
