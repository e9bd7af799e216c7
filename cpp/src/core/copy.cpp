// Copies between buffers on any two devices.
#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "exogpu/device.hpp"
#include "exogpu/error.hpp"

namespace exogpu {

namespace {

// Large enough to keep a PCIe link busy, small enough that two stay cheap.
constexpr std::size_t kStagingChunk = std::size_t{8} << 20;

void check_range(const Buffer& buffer, std::size_t offset, std::size_t n, const char* what) {
  if (!buffer.valid()) throw InvalidArgument(std::string(what) + " buffer is empty or was freed");
  if (offset > buffer.size() || n > buffer.size() - offset) {
    throw InvalidArgument(std::string(what) + " range of " + std::to_string(n) +
                          " bytes at offset " + std::to_string(offset) +
                          " is outside the buffer of " + std::to_string(buffer.size()) +
                          " bytes on " + buffer.device().id());
  }
}

// Source chunks go device-to-host into one staging buffer while the previous
// chunk goes host-to-device from the other, so both links stay busy and no
// full-size bounce buffer is ever needed.
void staged_copy(Stream& src_stream, Stream& dst_stream, const Buffer& dst,
                 std::size_t dst_offset, const Buffer& src, std::size_t src_offset,
                 std::size_t n) {
  const std::size_t chunk = std::min(n, kStagingChunk);
  std::array<std::unique_ptr<HostBuffer>, 2> staging = {src.device().allocate_host(chunk),
                                                        src.device().allocate_host(chunk)};
  std::array<std::shared_ptr<Event>, 2> downloaded;  // d2h done into staging[i]
  std::array<std::shared_ptr<Event>, 2> uploaded;    // h2d done from staging[i]
  const std::size_t chunks = (n + chunk - 1) / chunk;
  auto length = [&](std::size_t i) { return std::min(chunk, n - i * chunk); };

  for (std::size_t i = 0; i <= chunks; ++i) {
    if (i < chunks) {
      const std::size_t slot = i % 2;
      if (uploaded[slot]) uploaded[slot]->synchronize();  // staging[slot] is free again
      src_stream.copy_d2h(staging[slot]->data(), src, src_offset + i * chunk, length(i));
      downloaded[slot] = src_stream.record();
    }
    if (i > 0) {
      const std::size_t prev = (i - 1) % 2;
      downloaded[prev]->synchronize();
      dst_stream.copy_h2d(dst, dst_offset + (i - 1) * chunk, staging[prev]->data(),
                          length(i - 1));
      uploaded[prev] = dst_stream.record();
    }
  }
  dst_stream.synchronize();
}

}  // namespace

void copy(const Buffer& dst, std::size_t dst_offset, const Buffer& src, std::size_t src_offset,
          std::size_t n, Stream* stream, CopyRoute route) {
  check_range(dst, dst_offset, n, "destination");
  check_range(src, src_offset, n, "source");
  Device& dst_device = dst.device();
  Device& src_device = src.device();
  if (stream != nullptr && &stream->device() != &dst_device && &stream->device() != &src_device) {
    throw InvalidArgument("copy: the stream belongs to " + stream->device().id() +
                          ", neither the source device " + src_device.id() +
                          " nor the destination device " + dst_device.id());
  }
  if (n == 0) return;

  if (&dst_device == &src_device && route == CopyRoute::automatic) {
    if (stream != nullptr) {
      stream->copy_d2d(dst, dst_offset, src, src_offset, n);  // enqueued only
    } else {
      Stream& s = dst_device.default_stream();
      s.copy_d2d(dst, dst_offset, src, src_offset, n);
      s.synchronize();
    }
    return;
  }

  Stream& src_stream =
      stream != nullptr && &stream->device() == &src_device ? *stream : src_device.default_stream();
  Stream& dst_stream =
      stream != nullptr && &stream->device() == &dst_device ? *stream : dst_device.default_stream();

  if (route == CopyRoute::staged) {
    dst_stream.synchronize();
    staged_copy(src_stream, dst_stream, dst, dst_offset, src, src_offset, n);
    return;
  }
  if (src_device.copy_to_peer(src_stream, dst, dst_offset, src, src_offset, n)) {
    src_stream.synchronize();
    return;
  }
  if (void* dst_host = dst.host_ptr(); dst_host != nullptr) {
    // Earlier work on the destination must land before the source overwrites it.
    dst_stream.synchronize();
    src_stream.copy_d2h_sync(static_cast<std::byte*>(dst_host) + dst_offset, src, src_offset, n);
    return;
  }
  if (void* src_host = src.host_ptr(); src_host != nullptr) {
    src_stream.synchronize();
    dst_stream.copy_h2d_sync(dst, dst_offset, static_cast<const std::byte*>(src_host) + src_offset,
                             n);
    return;
  }
  dst_stream.synchronize();
  staged_copy(src_stream, dst_stream, dst, dst_offset, src, src_offset, n);
}

}  // namespace exogpu
