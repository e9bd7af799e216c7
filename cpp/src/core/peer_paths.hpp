// Which peer-to-peer paths of one device may be used. A path is enabled on
// first use and trusted only once a test pattern has crossed it intact;
// a path that fails or errors is never tried again, and copies over it go
// the staged way instead.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>

#include "exogpu/device.hpp"

namespace exogpu {

class PeerPaths {
 public:
  // Whether the path to peer `ordinal` works; on the first ask, `establish()`
  // enables it and returns whether it can be used (an exogpu::Error counts
  // as no).
  [[nodiscard]] bool usable(int ordinal, const std::function<bool()>& establish);

 private:
  std::mutex mutex_;
  std::map<int, bool> usable_;
};

// Sends a 64 KiB pattern from `from` to `to` with `copy(dst, src, n)`, which
// must enqueue the peer copy on `stream`, and reads it back: true when it
// arrived intact.
[[nodiscard]] bool peer_copy_arrives_intact(
    Device& from, Device& to, Stream& stream,
    const std::function<void(const Buffer& dst, const Buffer& src, std::size_t n)>& copy);

}  // namespace exogpu
