#include "exogpu/device.hpp"

#include <limits>
#include <string>

#include "exogpu/error.hpp"
#include "exogpu/pool.hpp"

namespace exogpu {

std::string_view to_string(DeviceKind kind) noexcept {
  switch (kind) {
    case DeviceKind::cpu: return "cpu";
    case DeviceKind::discrete: return "discrete";
    case DeviceKind::integrated: return "integrated";
    case DeviceKind::virtual_device: return "virtual";
  }
  return "unknown";
}

std::string_view to_string(MemorySource source) noexcept {
  switch (source) {
    case MemorySource::driver: return "driver";
    case MemorySource::budget: return "budget";
    case MemorySource::os: return "os";
    case MemorySource::estimate: return "estimate";
  }
  return "unknown";
}

namespace {

// offset + n must lie inside [0, size] without overflowing.
bool in_bounds(std::size_t offset, std::size_t n, std::size_t size) noexcept {
  return offset <= size && n <= size - offset;
}

}  // namespace

void Stream::check_buffer(const Buffer& buffer, std::size_t offset, std::size_t n,
                          std::string_view what) const {
  if (!buffer.valid()) {
    throw InvalidArgument(std::string(what) + " buffer is empty or was freed");
  }
  if (&buffer.device() != &device_) {
    throw InvalidArgument(std::string(what) + " buffer lives on " + buffer.device().id() +
                          ", not on this stream's device " + device_.id());
  }
  if (!in_bounds(offset, n, buffer.size())) {
    throw InvalidArgument(std::string(what) + " range of " + std::to_string(n) +
                          " bytes at offset " + std::to_string(offset) +
                          " is outside the buffer of " + std::to_string(buffer.size()) +
                          " bytes on " + device_.id());
  }
}

void Stream::copy_h2d(const Buffer& dst, std::size_t dst_offset, const void* src,
                      std::size_t n) {
  check_buffer(dst, dst_offset, n, "destination");
  if (n == 0) return;
  if (src == nullptr) throw InvalidArgument("host source pointer is null");
  do_copy_h2d(dst.allocation(), dst_offset, src, n);
}

void Stream::copy_d2h(void* dst, const Buffer& src, std::size_t src_offset, std::size_t n) {
  check_buffer(src, src_offset, n, "source");
  if (n == 0) return;
  if (dst == nullptr) throw InvalidArgument("host destination pointer is null");
  do_copy_d2h(dst, src.allocation(), src_offset, n);
}

void Stream::copy_d2d(const Buffer& dst, std::size_t dst_offset, const Buffer& src,
                      std::size_t src_offset, std::size_t n) {
  check_buffer(dst, dst_offset, n, "destination");
  check_buffer(src, src_offset, n, "source");
  if (n == 0) return;
  do_copy_d2d(dst.allocation(), dst_offset, src.allocation(), src_offset, n);
}

void Stream::fill(const Buffer& dst, std::size_t offset, std::size_t n, std::uint8_t value) {
  check_buffer(dst, offset, n, "destination");
  if (n == 0) return;
  do_fill(dst.allocation(), offset, n, value);
}

void Stream::copy_h2d_sync(const Buffer& dst, std::size_t dst_offset, const void* src,
                           std::size_t n) {
  check_buffer(dst, dst_offset, n, "destination");
  if (n == 0) return;
  if (src == nullptr) throw InvalidArgument("host source pointer is null");
  do_copy_h2d_sync(dst.allocation(), dst_offset, src, n);
}

void Stream::copy_d2h_sync(void* dst, const Buffer& src, std::size_t src_offset, std::size_t n) {
  check_buffer(src, src_offset, n, "source");
  if (n == 0) return;
  if (dst == nullptr) throw InvalidArgument("host destination pointer is null");
  do_copy_d2h_sync(dst, src.allocation(), src_offset, n);
}

std::shared_ptr<Event> Stream::record() { return do_record(); }

void Stream::wait(const std::shared_ptr<Event>& event) {
  if (!event) throw InvalidArgument("cannot wait on a null event");
  do_wait(event);
}

Device::Device(DeviceInfo info) : info_(std::move(info)) {}

Device::~Device() = default;

void Device::release_default_objects() noexcept {
  if (default_stream_) {
    try {
      default_stream_->synchronize();
    } catch (...) {
      // Nothing to report to at teardown; the stream is destroyed either way.
    }
  }
  pool_.reset();  // returns cached blocks to the backend while it still exists
  default_stream_.reset();
}

Buffer Device::allocate(std::size_t n) {
  if (n == 0) return Buffer(shared_from_this(), nullptr, 0);
  std::shared_ptr<Allocation> allocation = do_allocate(n);
  return Buffer(shared_from_this(), std::move(allocation), n);
}

Pool& Device::pool() {
  std::call_once(pool_once_, [this] { pool_ = std::make_unique<Pool>(*this); });
  return *pool_;
}

Buffer Device::allocate_pooled(std::size_t n) { return pool().allocate(n); }

Stream& Device::default_stream() {
  std::call_once(default_stream_once_, [this] { default_stream_ = create_stream(); });
  return *default_stream_;
}

bool Device::copy_to_peer(Stream&, const Buffer&, std::size_t, const Buffer&, std::size_t,
                          std::size_t) {
  return false;
}

double Device::launch_fma(Stream&, const Buffer&, std::uint32_t) { return 0.0; }

void write(const Buffer& dst, std::size_t dst_offset, const void* src, std::size_t n) {
  if (!dst.valid()) throw InvalidArgument("destination buffer is empty or was freed");
  dst.device().default_stream().copy_h2d_sync(dst, dst_offset, src, n);
}

void read(void* dst, const Buffer& src, std::size_t src_offset, std::size_t n) {
  if (!src.valid()) throw InvalidArgument("source buffer is empty or was freed");
  src.device().default_stream().copy_d2h_sync(dst, src, src_offset, n);
}

}  // namespace exogpu
