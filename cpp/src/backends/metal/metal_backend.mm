// Apple GPUs, and the AMD and Intel GPUs of Intel Macs, through Metal. The
// framework is opened at run time (metal_library); devices, buffers, queues
// and events are Objective-C objects owned through Retained, under manual
// retain/release, so the same source builds against Apple's runtime and,
// for the simulated Metal of the tests, against GNU's.
#include "backends/metal/metal_types.hpp"

#if defined(__APPLE__)
#include <mach/mach.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <string>
#include <tuple>

#include "backends/metal/fma_kernel.hpp"
#include "backends/metal/metal_context.hpp"
#include "backends/metal/metal_library.hpp"
#include "backends/metal/metal_stream.hpp"
#include "core/backends.hpp"
#include "exogpu/error.hpp"

namespace exogpu::metal {

namespace {

// Bytes of host memory free for new allocations, 0 when unknown. A unified
// device's memory is this same RAM.
std::uint64_t host_available_bytes() {
#if defined(__APPLE__)
  vm_statistics64_data_t stats{};
  mach_msg_type_number_t count = HOST_VM_INFO64_COUNT;
  if (host_statistics64(mach_host_self(), HOST_VM_INFO64, reinterpret_cast<host_info64_t>(&stats),
                        &count) != KERN_SUCCESS) {
    return 0;
  }
  const std::uint64_t pages = std::uint64_t{stats.free_count} + stats.inactive_count +
                              stats.purgeable_count;
  return pages * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
#else
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::uint64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
#endif
}

// Host memory in a shared MTLBuffer: the GPU reads it in place.
class MetalHostBuffer final : public HostBuffer {
 public:
  MetalHostBuffer(Retained<BufferRef> buffer, std::size_t size)
      : buffer_(std::move(buffer)), size_(size), data_([buffer_.get() contents]) {}
  [[nodiscard]] void* data() const noexcept override { return data_; }
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }
  [[nodiscard]] bool page_locked() const noexcept override { return true; }

 private:
  Retained<BufferRef> buffer_;
  std::size_t size_;
  void* data_;
};

class MetalDevice final : public Device {
 public:
  MetalDevice(DeviceInfo info, std::shared_ptr<Context> context)
      : Device(std::move(info)), context_(std::move(context)) {}
  ~MetalDevice() override { release_default_objects(); }

  // Total is Metal's recommended working set; free is what of it is not yet
  // allocated (driver). On unified memory the host's free RAM bounds it too,
  // and when that is the tighter bound the figure says it comes from the OS.
  [[nodiscard]] MemoryInfo memory_info() const override {
    DeviceRef device = context_->device();
    const std::uint64_t total = [device recommendedMaxWorkingSetSize];
    const std::uint64_t used = [device currentAllocatedSize];
    MemoryInfo memory{total, used < total ? total - used : 0, MemorySource::driver};
    if (context_->unified()) {
      const std::uint64_t host = host_available_bytes();
      if (host != 0 && host < memory.free) {
        memory.free = host;
        memory.source = MemorySource::os;
      }
    }
    return memory;
  }

  [[nodiscard]] std::unique_ptr<HostBuffer> allocate_host(std::size_t n) override {
    auto buffer = context_->new_buffer(std::max<std::size_t>(n, 1), true);
    return std::make_unique<MetalHostBuffer>(std::move(buffer), n);
  }

  [[nodiscard]] std::shared_ptr<Stream> create_stream() override {
    return std::make_shared<MetalStream>(*this, context_);
  }

  [[nodiscard]] double launch_fma(Stream& stream, const Buffer& buffer,
                                  std::uint32_t iterations) override {
    auto* metal_stream = dynamic_cast<MetalStream*>(&stream);
    if (metal_stream == nullptr || &stream.device() != this) {
      throw InvalidArgument("launch_fma: the stream does not belong to " + id());
    }
    if (!buffer.valid() || &buffer.device() != this) {
      throw InvalidArgument("launch_fma: the buffer does not live on " + id());
    }
    const std::uint64_t count = buffer.size() / sizeof(float);
    if (count == 0) return 0.0;
    if (count > std::numeric_limits<std::uint32_t>::max()) {
      throw InvalidArgument("launch_fma: " + std::to_string(buffer.size()) +
                            " bytes is more than one dispatch covers on " + id());
    }
    PipelineRef pipeline = context_->fma_pipeline();
    metal_stream->launch_fma(pipeline, buffer.allocation(), static_cast<std::uint32_t>(count),
                             iterations);
    return kFmaFlopsPerElementIteration * static_cast<double>(count) * iterations;
  }

 protected:
  [[nodiscard]] std::unique_ptr<Allocation> do_allocate(std::size_t n) override {
    return std::make_unique<MetalAllocation>(context_->new_buffer(n, false), n);
  }

 private:
  std::shared_ptr<Context> context_;
};

std::string vendor_from_name(const std::string& name) {
  for (const char* vendor : {"Apple", "AMD", "Intel", "NVIDIA"}) {
    if (name.find(vendor) != std::string::npos) return vendor;
  }
  if (name.find("Radeon") != std::string::npos) return "AMD";
  return "unknown";
}

class MetalBackend final : public Backend {
 public:
  explicit MetalBackend(std::vector<std::string> library_names)
      : library_names_(std::move(library_names)) {}

  [[nodiscard]] std::string_view name() const noexcept override { return "metal"; }

  [[nodiscard]] BackendStatus open() override {
    BackendStatus status;
    status.name = "metal";
    try {
      with_autorelease_pool([&] { open_library(status); });
    } catch (const std::exception& error) {
      devices_.clear();
      status.available = false;
      status.reason = error.what();
    }
    status.device_count = static_cast<int>(devices_.size());
    return status;
  }

  [[nodiscard]] std::vector<std::shared_ptr<Device>> devices() override { return devices_; }

 private:
  void open_library(BackendStatus& status) {
    std::shared_ptr<const Library> library = Library::load(library_names_, status.reason);
    if (!library) return;
    status.runtime_version = "Metal (" + library->name() + ")";
    // Every GPU: an Intel Mac's iGPU and AMD GPU, eGPUs; one on Apple
    // silicon. The default device alone where the list is unavailable.
    std::vector<Retained<DeviceRef>> found;
    auto all = Retained<NSArray*>::adopt(library->copy_all_devices());
    for (NSUInteger i = 0; all && i < [all.get() count]; ++i) {
      found.push_back(Retained<DeviceRef>::retain([all.get() objectAtIndex:i]));
    }
    if (found.empty()) {
      auto fallback = Retained<DeviceRef>::adopt(library->create_system_default_device());
      if (fallback) found.push_back(std::move(fallback));
    }
    if (found.empty()) {
      status.reason = library->name() +
                      " found, but it reports no device: MTLCopyAllDevices returned none";
      return;
    }
    // Ids stay the same from run to run: built-in first, then by slot, then
    // by the registry id the OS gives each GPU.
    std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
      return identity(a.get()) < identity(b.get());
    });
    for (std::size_t i = 0; i < found.size(); ++i) {
      devices_.push_back(make_device(library, std::move(found[i]), static_cast<int>(i)));
    }
    status.available = true;
  }

  static std::tuple<NSUInteger, NSUInteger, std::uint64_t> identity(DeviceRef device) {
    NSUInteger location = MTLDeviceLocationUnspecified;
    NSUInteger number = 0;
    if ([device respondsToSelector:@selector(location)]) {
      location = [device location];
      number = [device locationNumber];
    }
    const std::uint64_t registry =
        [device respondsToSelector:@selector(registryID)] ? [device registryID] : 0;
    return {location, number, registry};
  }

  static std::shared_ptr<Device> make_device(const std::shared_ptr<const Library>& library,
                                             Retained<DeviceRef> device, int index) {
    DeviceInfo info;
    info.backend = "metal";
    info.index = index;
    info.id = "metal:" + std::to_string(index);
    info.name = utf8([device.get() name]);
    info.vendor = vendor_from_name(info.name);
    // hasUnifiedMemory is macOS 10.15's; older systems had no unified devices.
    const bool unified = [device.get() respondsToSelector:@selector(hasUnifiedMemory)] &&
                         [device.get() hasUnifiedMemory];
    info.kind = unified ? DeviceKind::integrated : DeviceKind::discrete;
    info.unified_memory = unified;
    info.memory_total = [device.get() recommendedMaxWorkingSetSize];
    auto context = std::make_shared<Context>(library, std::move(device), info.id, unified);
    return std::make_shared<MetalDevice>(std::move(info), std::move(context));
  }

  std::vector<std::string> library_names_;
  std::vector<std::shared_ptr<Device>> devices_;
};

}  // namespace

}  // namespace exogpu::metal

namespace exogpu {

std::unique_ptr<Backend> make_metal_backend() {
  return std::make_unique<metal::MetalBackend>(metal::Library::library_names());
}

}  // namespace exogpu
