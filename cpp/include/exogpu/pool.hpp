// A caching pool allocator over any Device.
//
// Requests are rounded up to a size class (four classes per power of two, so
// at most 25 % is wasted), and freed blocks stay cached for the next request
// of the same class. An optional hard limit bounds the bytes the pool holds
// from the device (in use + cached): the security layer's memory quotas are
// pools with limits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "exogpu/device.hpp"

namespace exogpu {

struct PoolStats {
  std::uint64_t bytes_in_use = 0;       // size classes of live buffers
  std::uint64_t bytes_requested = 0;    // bytes asked for by live buffers
  std::uint64_t bytes_cached = 0;       // freed blocks kept for reuse
  std::uint64_t peak_bytes_in_use = 0;
  std::uint64_t allocations = 0;        // successful allocate() calls
  std::uint64_t cache_hits = 0;         // of those, served from the cache
  std::uint64_t device_allocations = 0; // blocks taken from the device
  std::uint64_t live_buffers = 0;
  std::uint64_t failed_allocations = 0;
};

class Pool {
 public:
  // The device must outlive the pool (registry devices live for the process).
  explicit Pool(Device& device, std::optional<std::uint64_t> limit = std::nullopt);
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool();

  // Throws OutOfMemory (naming the request, the limit and the device) when the
  // limit or the device cannot satisfy it; the pool is unchanged then.
  [[nodiscard]] Buffer allocate(std::size_t n);
  // A cached block of n's size class, never touching the device: an invalid
  // Buffer when none is cached. Cheap enough to call without releasing the GIL.
  [[nodiscard]] Buffer allocate_cached(std::size_t n);
  // Returns every cached block to the device; returns the bytes released.
  std::uint64_t trim();
  [[nodiscard]] PoolStats stats() const;
  [[nodiscard]] std::optional<std::uint64_t> limit() const;
  // A new limit below what is in use is refused with InvalidArgument.
  void set_limit(std::optional<std::uint64_t> limit);
  [[nodiscard]] Device& device() const noexcept { return device_; }

  [[nodiscard]] static std::size_t size_class(std::size_t n) noexcept;

  struct State;  // implementation detail, shared with live buffers' deleters

 private:
  [[nodiscard]] Buffer wrap(std::unique_ptr<Allocation> block, std::size_t size_class,
                            std::size_t n);
  Device& device_;
  std::shared_ptr<State> state_;  // shared with the deleters of live buffers
};

}  // namespace exogpu
