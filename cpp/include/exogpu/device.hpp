// The one device interface every backend implements.
//
// Ownership: the registry owns every Device for the life of the process and
// hands out shared_ptrs. A Buffer holds its Allocation by shared_ptr, and so
// does every operation enqueued on a Stream, so freeing a Buffer while a copy
// is still in flight is safe: the memory goes back when the copy is done.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace exogpu {

enum class DeviceKind { cpu, discrete, integrated, virtual_device };
enum class MemorySource { driver, budget, os, estimate };

[[nodiscard]] std::string_view to_string(DeviceKind kind) noexcept;
[[nodiscard]] std::string_view to_string(MemorySource source) noexcept;

struct DeviceInfo {
  std::string id;       // "<backend>:<index>", unique in the process
  std::string backend;  // "cpu", "cuda", "hip", "vulkan", ...
  int index = 0;
  std::string name;
  std::string vendor;
  DeviceKind kind = DeviceKind::cpu;
  std::uint64_t memory_total = 0;
  std::string uuid;        // lower-case hex "xxxxxxxx-xxxx-...", empty when unknown
  std::string pci_bus_id;  // "0000:01:00.0", empty when unknown
  // The Windows adapter LUID, "hhhhhhhh-llllllll" (high and low parts in
  // hex), which D3D12, CUDA and Vulkan report alike on Windows; empty when
  // unknown (elsewhere, or a driver that reports none).
  std::string luid;
  std::uint32_t pci_vendor_id = 0;  // 0 when unknown
  std::uint32_t pci_device_id = 0;  // 0 when unknown
  bool unified_memory = false;  // device memory is host memory
  bool emulated_on_host = false;  // a CPU implementation of a GPU API (lavapipe)
  std::vector<std::string> aliases;  // other ids of the same physical device
  // The physical memory this device draws from together with others: "host"
  // for the CPU and every device whose memory is the host's (integrated GPUs,
  // unified-memory Metal devices, CPU drivers of GPU APIs); empty for a
  // device with memory of its own. The registry fills it in.
  std::string memory_pool;
  std::uint64_t memory_pool_bytes = 0;  // the pool's capacity: the host's physical memory
};

struct MemoryInfo {
  std::uint64_t total = 0;
  std::uint64_t free = 0;
  MemorySource source = MemorySource::estimate;
};

class Device;
class Pool;

// Device memory as a backend allocated it. Backends derive from it.
class Allocation {
 public:
  Allocation() = default;
  Allocation(const Allocation&) = delete;
  Allocation& operator=(const Allocation&) = delete;
  virtual ~Allocation() = default;
  [[nodiscard]] virtual std::size_t size() const noexcept = 0;
  // Non-null when the host can read and write this memory directly.
  [[nodiscard]] virtual void* host_ptr() const noexcept { return nullptr; }
};

// A device allocation of `size` bytes (the allocation behind it may be larger,
// rounded to a pool size class). Copyable handle; the memory is released, or
// returned to its pool, when the last handle and the last in-flight operation
// using it are gone.
class Buffer {
 public:
  Buffer() = default;
  Buffer(std::shared_ptr<Device> device, std::shared_ptr<Allocation> allocation,
         std::size_t size) noexcept
      : device_(std::move(device)), allocation_(std::move(allocation)), size_(size) {}

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] Device& device() const noexcept { return *device_; }
  [[nodiscard]] const std::shared_ptr<Device>& device_ptr() const noexcept { return device_; }
  [[nodiscard]] const std::shared_ptr<Allocation>& allocation() const noexcept {
    return allocation_;
  }
  [[nodiscard]] void* host_ptr() const noexcept {
    return allocation_ ? allocation_->host_ptr() : nullptr;
  }
  [[nodiscard]] bool valid() const noexcept { return device_ != nullptr; }
  // Drops this handle's reference (the memory goes once in-flight work is done).
  void reset() noexcept { *this = Buffer{}; }

 private:
  std::shared_ptr<Device> device_;
  std::shared_ptr<Allocation> allocation_;
  std::size_t size_ = 0;
};

// Host memory for staging transfers; page-locked when the backend can.
class HostBuffer {
 public:
  HostBuffer() = default;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  virtual ~HostBuffer() = default;
  [[nodiscard]] virtual void* data() const noexcept = 0;
  [[nodiscard]] virtual std::size_t size() const noexcept = 0;
  [[nodiscard]] virtual bool page_locked() const noexcept = 0;
};

// A point in a stream's work. Complete once everything enqueued before it is.
class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  virtual ~Event() = default;
  [[nodiscard]] virtual bool query() = 0;  // true once complete
  virtual void synchronize() = 0;          // blocks until complete
  // Milliseconds from this event to `later`; both must be complete and come
  // from the same device's clock.
  [[nodiscard]] virtual double elapsed_ms(Event& later) = 0;
  [[nodiscard]] virtual const Device& device() const noexcept = 0;
};

// An in-order queue of work on one device. Public calls validate their
// arguments (throwing InvalidArgument and enqueueing nothing) and then call the
// backend's do_* hooks.
class Stream {
 public:
  explicit Stream(Device& device) noexcept : device_(device) {}
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  virtual ~Stream() = default;

  [[nodiscard]] Device& device() const noexcept { return device_; }

  // The host memory must stay valid until the copy completes.
  void copy_h2d(const Buffer& dst, std::size_t dst_offset, const void* src, std::size_t n);
  void copy_d2h(void* dst, const Buffer& src, std::size_t src_offset, std::size_t n);
  void copy_d2d(const Buffer& dst, std::size_t dst_offset, const Buffer& src,
                std::size_t src_offset, std::size_t n);
  void fill(const Buffer& dst, std::size_t offset, std::size_t n, std::uint8_t value);
  // Synchronous copies: ordered after the work already queued, complete on
  // return. A backend may run them on the calling thread when the stream is idle.
  void copy_h2d_sync(const Buffer& dst, std::size_t dst_offset, const void* src, std::size_t n);
  void copy_d2h_sync(void* dst, const Buffer& src, std::size_t src_offset, std::size_t n);
  [[nodiscard]] std::shared_ptr<Event> record();
  // Later work on this stream waits for `event`, which may come from any
  // device or backend.
  void wait(const std::shared_ptr<Event>& event);
  // Blocks until all enqueued work is complete; rethrows the first error a
  // queued operation raised (as DeviceError).
  void synchronize() { do_synchronize(); }

 protected:
  using AllocationPtr = std::shared_ptr<Allocation>;
  virtual void do_copy_h2d(const AllocationPtr& dst, std::size_t dst_offset, const void* src,
                           std::size_t n) = 0;
  virtual void do_copy_d2h(void* dst, const AllocationPtr& src, std::size_t src_offset,
                           std::size_t n) = 0;
  virtual void do_copy_d2d(const AllocationPtr& dst, std::size_t dst_offset,
                           const AllocationPtr& src, std::size_t src_offset, std::size_t n) = 0;
  virtual void do_fill(const AllocationPtr& dst, std::size_t offset, std::size_t n,
                       std::uint8_t value) = 0;
  [[nodiscard]] virtual std::shared_ptr<Event> do_record() = 0;
  virtual void do_wait(const std::shared_ptr<Event>& event) = 0;
  virtual void do_synchronize() = 0;
  virtual void do_copy_h2d_sync(const AllocationPtr& dst, std::size_t dst_offset, const void* src,
                                std::size_t n) {
    do_copy_h2d(dst, dst_offset, src, n);
    do_synchronize();
  }
  virtual void do_copy_d2h_sync(void* dst, const AllocationPtr& src, std::size_t src_offset,
                                std::size_t n) {
    do_copy_d2h(dst, src, src_offset, n);
    do_synchronize();
  }

 private:
  void check_buffer(const Buffer& buffer, std::size_t offset, std::size_t n,
                    std::string_view what) const;
  Device& device_;
};

// A physical or virtual device seen through one backend.
class Device : public std::enable_shared_from_this<Device> {
 public:
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  virtual ~Device();

  [[nodiscard]] const DeviceInfo& info() const noexcept { return info_; }
  [[nodiscard]] const std::string& id() const noexcept { return info_.id; }
  [[nodiscard]] virtual MemoryInfo memory_info() const = 0;

  // Unpooled allocation straight from the backend; 0 bytes gives an empty
  // buffer. Throws OutOfMemory naming the device and the request.
  [[nodiscard]] Buffer allocate(std::size_t n);
  // Allocation through the device's default caching pool.
  [[nodiscard]] Buffer allocate_pooled(std::size_t n);
  [[nodiscard]] Pool& pool();

  [[nodiscard]] virtual std::unique_ptr<HostBuffer> allocate_host(std::size_t n) = 0;
  [[nodiscard]] virtual std::shared_ptr<Stream> create_stream() = 0;
  // The stream that synchronous operations use.
  [[nodiscard]] Stream& default_stream();

  // A direct copy into a buffer on another device (peer-to-peer), enqueued on
  // `stream` (a stream of this device). Returns false when the two devices
  // have no direct path; the caller then stages through host memory.
  [[nodiscard]] virtual bool copy_to_peer(Stream& stream, const Buffer& dst,
                                          std::size_t dst_offset, const Buffer& src,
                                          std::size_t src_offset, std::size_t n);

  // Built-in throughput kernel for the compute probe: enqueues on `stream` a
  // kernel of `iterations` rounds of fused multiply-adds over the float32
  // elements of `buffer` (results written back, so nothing is elided) and
  // returns the floating-point operations it will perform; 0 means this
  // backend has no such kernel. A backend may run its own throughput kernel
  // over the buffer instead, counting its operations the same way: DirectML
  // multiplies matrices held in it (a GEMM, what a model's layers run).
  [[nodiscard]] virtual double launch_fma(Stream& stream, const Buffer& buffer,
                                          std::uint32_t iterations);

 protected:
  explicit Device(DeviceInfo info);
  // Throws OutOfMemory when the backend cannot satisfy the request; n > 0.
  [[nodiscard]] virtual std::unique_ptr<Allocation> do_allocate(std::size_t n) = 0;
  // Finishes and destroys the default stream and the default pool. Every
  // backend's destructor calls it first: both use the backend's resources,
  // which are gone by the time this base class's destructor runs.
  void release_default_objects() noexcept;

 private:
  friend class Pool;
  friend class Registry;
  DeviceInfo info_;
  std::once_flag default_stream_once_;
  std::shared_ptr<Stream> default_stream_;
  std::once_flag pool_once_;
  std::unique_ptr<Pool> pool_;
};

// Synchronous copies (through each device's default stream).
void write(const Buffer& dst, std::size_t dst_offset, const void* src, std::size_t n);
void read(void* dst, const Buffer& src, std::size_t src_offset, std::size_t n);

// Copies n bytes between buffers on any two devices of any two backends and
// returns when the copy is complete. Within one device it is a d2d copy on
// `stream` (or the default stream). Across devices: peer-to-peer where the
// backends allow it, a direct host copy when one side is host-addressable,
// otherwise chunks pipelined through two page-locked staging buffers.
// `stream`, when given, must belong to the source or destination device. A
// same-device copy given a stream is only enqueued on it; every other copy
// returns when it is complete. `route` forces the staged path (for tests and
// benchmarks of it); `automatic` picks the fastest path available.
enum class CopyRoute { automatic, staged };
void copy(const Buffer& dst, std::size_t dst_offset, const Buffer& src, std::size_t src_offset,
          std::size_t n, Stream* stream = nullptr, CopyRoute route = CopyRoute::automatic);

}  // namespace exogpu
