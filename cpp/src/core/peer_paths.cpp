#include "core/peer_paths.hpp"

#include <cstdint>
#include <vector>

#include "exogpu/error.hpp"

namespace exogpu {

bool PeerPaths::usable(int ordinal, const std::function<bool()>& establish) {
  std::lock_guard lock(mutex_);
  if (auto it = usable_.find(ordinal); it != usable_.end()) return it->second;
  bool ok = false;
  try {
    ok = establish();
  } catch (const Error&) {
    ok = false;  // a path that errors is no path; the staged copy still works
  }
  usable_[ordinal] = ok;
  return ok;
}

bool peer_copy_arrives_intact(
    Device& from, Device& to, Stream& stream,
    const std::function<void(const Buffer& dst, const Buffer& src, std::size_t n)>& copy) {
  constexpr std::size_t kProbeBytes = 64 * 1024;
  std::vector<std::uint8_t> pattern(kProbeBytes);
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    pattern[i] = static_cast<std::uint8_t>((i * 131 + 7) ^ (i >> 8));
  }
  Buffer source = from.allocate(kProbeBytes);
  Buffer target = to.allocate(kProbeBytes);
  write(source, 0, pattern.data(), kProbeBytes);
  copy(target, source, kProbeBytes);
  stream.synchronize();
  std::vector<std::uint8_t> back(kProbeBytes);
  read(back.data(), target, 0, kProbeBytes);
  return back == pattern;
}

}  // namespace exogpu
