// NVIDIA GPUs through the CUDA driver API, opened at run time. Each device
// works in its primary context (the one the CUDA runtime, CuPy and PyTorch
// share), made current on whichever thread calls in.
#include "backends/cuda/cuda_backend.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <mutex>
#include <utility>

#include "backends/cuda/cuda_driver.hpp"
#include "backends/cuda/fma_kernel.hpp"
#include "core/backends.hpp"
#include "core/identity.hpp"
#include "core/in_flight.hpp"
#include "core/peer_paths.hpp"
#include "exogpu/error.hpp"
#include "exogpu/interop.hpp"

namespace exogpu::cuda {

namespace {

// One device's primary context, retained on first use (retaining costs
// device memory and time, so listing devices does not do it).
class Context {
 public:
  Context(std::shared_ptr<const Driver> driver, CUdevice device, int ordinal, std::string id)
      : driver_(std::move(driver)), device_(device), ordinal_(ordinal), id_(std::move(id)) {}
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context() {
    // At process exit the driver may already be shut down; errors are moot.
    if (module_ != nullptr) (void)driver_->module_unload(module_);
    if (context_ != nullptr) (void)driver_->primary_ctx_release(device_);
  }

  [[nodiscard]] const Driver& driver() const noexcept { return *driver_; }
  [[nodiscard]] const Driver* driver_ptr() const noexcept { return driver_.get(); }
  [[nodiscard]] CUdevice device() const noexcept { return device_; }
  [[nodiscard]] int ordinal() const noexcept { return ordinal_; }
  [[nodiscard]] const std::string& id() const noexcept { return id_; }

  void check(CUresult result, std::string_view call) const { driver_->check(result, call, id_); }

  // Makes the primary context current on the calling thread.
  CUcontext make_current() {
    std::call_once(retain_once_, [this] {
      CUcontext context = nullptr;
      check(driver_->primary_ctx_retain(&context, device_), "cuDevicePrimaryCtxRetain");
      context_ = context;
    });
    CUcontext current = nullptr;
    if (driver_->ctx_get_current(&current) != CUDA_SUCCESS || current != context_) {
      check(driver_->ctx_set_current(context_), "cuCtxSetCurrent");
    }
    return context_;
  }

  // For destructors: false when the context cannot be made current.
  bool make_current_noexcept() noexcept {
    try {
      make_current();
      return true;
    } catch (...) {
      return false;
    }
  }

  // The FMA kernel, loaded into this context on first use.
  CUfunction fma_function() {
    make_current();
    std::lock_guard lock(module_mutex_);
    if (fma_ == nullptr) {
      CUmodule module = nullptr;
      check(driver_->module_load_data(&module, kFmaKernelPtx), "cuModuleLoadData");
      CUfunction function = nullptr;
      const CUresult result = driver_->module_get_function(&function, module, kFmaKernelName);
      if (result != CUDA_SUCCESS) {
        (void)driver_->module_unload(module);
        check(result, "cuModuleGetFunction");
      }
      module_ = module;
      fma_ = function;
    }
    return fma_;
  }

 private:
  std::shared_ptr<const Driver> driver_;
  CUdevice device_;
  int ordinal_;
  std::string id_;
  std::once_flag retain_once_;
  CUcontext context_ = nullptr;
  std::mutex module_mutex_;
  CUmodule module_ = nullptr;
  CUfunction fma_ = nullptr;
};

class CudaAllocation final : public Allocation, public DeviceAddressable {
 public:
  CudaAllocation(std::shared_ptr<Context> context, CUdeviceptr address, std::size_t size)
      : context_(std::move(context)), address_(address), size_(size) {}
  ~CudaAllocation() override {
    if (context_->make_current_noexcept()) (void)context_->driver().mem_free(address_);
  }
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }
  [[nodiscard]] DeviceAddress device_address() const noexcept override {
    return {DLPackDeviceType::cuda, context_->ordinal(), address_};
  }
  [[nodiscard]] CUdeviceptr address() const noexcept { return address_; }

 private:
  std::shared_ptr<Context> context_;
  CUdeviceptr address_;
  std::size_t size_;
};

// Buffers reaching a CUDA stream were checked to live on its device, so their
// allocations are this backend's.
CUdeviceptr address_of(const std::shared_ptr<Allocation>& allocation, std::size_t offset) {
  return static_cast<const CudaAllocation&>(*allocation).address() + offset;
}

class CudaHostBuffer final : public HostBuffer {
 public:
  CudaHostBuffer(std::shared_ptr<Context> context, void* data, std::size_t size)
      : context_(std::move(context)), data_(data), size_(size) {}
  ~CudaHostBuffer() override {
    if (context_->make_current_noexcept()) (void)context_->driver().mem_free_host(data_);
  }
  [[nodiscard]] void* data() const noexcept override { return data_; }
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }
  [[nodiscard]] bool page_locked() const noexcept override { return true; }

 private:
  std::shared_ptr<Context> context_;
  void* data_;
  std::size_t size_;
};

class CudaHostRegistration final : public HostRegistration {
 public:
  CudaHostRegistration(std::shared_ptr<Context> context, void* data, std::size_t size)
      : context_(std::move(context)), data_(data), size_(size) {}
  ~CudaHostRegistration() override {
    if (context_->make_current_noexcept()) (void)context_->driver().mem_host_unregister(data_);
  }
  [[nodiscard]] void* data() const noexcept override { return data_; }
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }

 private:
  std::shared_ptr<Context> context_;
  void* data_;
  std::size_t size_;
};

// A CUevent owned by RAII.
class EventHandle {
 public:
  EventHandle(std::shared_ptr<Context> context, unsigned flags) : context_(std::move(context)) {
    context_->make_current();
    context_->check(context_->driver().event_create(&event_, flags), "cuEventCreate");
  }
  EventHandle(const EventHandle&) = delete;
  EventHandle& operator=(const EventHandle&) = delete;
  ~EventHandle() {
    if (context_->make_current_noexcept()) (void)context_->driver().event_destroy(event_);
  }
  [[nodiscard]] CUevent get() const noexcept { return event_; }

 private:
  std::shared_ptr<Context> context_;
  CUevent event_ = nullptr;
};

class CudaEvent final : public Event {
 public:
  CudaEvent(const Device& device, std::shared_ptr<Context> context)
      : device_(device), context_(context), event_(std::move(context), CU_EVENT_DEFAULT) {}

  [[nodiscard]] bool query() override {
    context_->make_current();
    const CUresult result = context_->driver().event_query(event_.get());
    if (result == CUDA_ERROR_NOT_READY) return false;
    context_->check(result, "cuEventQuery");
    return true;
  }
  void synchronize() override {
    context_->make_current();
    context_->check(context_->driver().event_synchronize(event_.get()), "cuEventSynchronize");
  }
  [[nodiscard]] double elapsed_ms(Event& later) override {
    auto* other = dynamic_cast<CudaEvent*>(&later);
    if (other == nullptr || other->context_ != context_) {
      throw InvalidArgument("elapsed_ms: both events must come from " + device_.id() +
                            " (the later one is from " + later.device().id() + ")");
    }
    context_->make_current();
    float ms = 0.0F;
    context_->check(context_->driver().event_elapsed_time(&ms, event_.get(), other->event_.get()),
                    "cuEventElapsedTime");
    return ms;
  }
  [[nodiscard]] const Device& device() const noexcept override { return device_; }
  [[nodiscard]] CUevent handle() const noexcept { return event_.get(); }
  [[nodiscard]] const Driver* driver_ptr() const noexcept { return context_->driver_ptr(); }

 private:
  const Device& device_;
  std::shared_ptr<Context> context_;
  EventHandle event_;
};

class CudaStream final : public Stream {
 public:
  CudaStream(Device& device, std::shared_ptr<Context> context)
      : Stream(device), context_(std::move(context)) {
    context_->make_current();
    context_->check(context_->driver().stream_create(&stream_, CU_STREAM_NON_BLOCKING),
                    "cuStreamCreate");
  }
  ~CudaStream() override {
    if (context_->make_current_noexcept()) {
      (void)context_->driver().stream_synchronize(stream_);
      (void)context_->driver().stream_destroy(stream_);
    }
  }

  [[nodiscard]] CUstream handle() const noexcept { return stream_; }
  [[nodiscard]] Context& context() const noexcept { return *context_; }

  void copy_peer(const AllocationPtr& dst, std::size_t dst_offset, Context& dst_context,
                 const AllocationPtr& src, std::size_t src_offset, std::size_t n) {
    CUcontext src_ctx = context_->make_current();
    CUcontext dst_ctx = dst_context.make_current();
    context_->make_current();
    context_->check(context_->driver().memcpy_peer_async(address_of(dst, dst_offset), dst_ctx,
                                                         address_of(src, src_offset), src_ctx, n,
                                                         stream_),
                    "cuMemcpyPeerAsync");
    keep_alive({dst, src});
  }

  void launch(CUfunction function, unsigned grid, void** params,
              const AllocationPtr& allocation) {
    context_->make_current();
    context_->check(context_->driver().launch_kernel(function, grid, 1, 1, kFmaBlockSize, 1, 1,
                                                     0, stream_, params, nullptr),
                    "cuLaunchKernel");
    keep_alive({allocation});
  }

 protected:
  void do_copy_h2d(const AllocationPtr& dst, std::size_t dst_offset, const void* src,
                   std::size_t n) override {
    context_->make_current();
    context_->check(
        context_->driver().memcpy_htod_async(address_of(dst, dst_offset), src, n, stream_),
        "cuMemcpyHtoDAsync");
    keep_alive({dst});
  }
  void do_copy_d2h(void* dst, const AllocationPtr& src, std::size_t src_offset,
                   std::size_t n) override {
    context_->make_current();
    context_->check(
        context_->driver().memcpy_dtoh_async(dst, address_of(src, src_offset), n, stream_),
        "cuMemcpyDtoHAsync");
    keep_alive({src});
  }
  void do_copy_d2d(const AllocationPtr& dst, std::size_t dst_offset, const AllocationPtr& src,
                   std::size_t src_offset, std::size_t n) override {
    context_->make_current();
    context_->check(context_->driver().memcpy_dtod_async(address_of(dst, dst_offset),
                                                         address_of(src, src_offset), n, stream_),
                    "cuMemcpyDtoDAsync");
    keep_alive({dst, src});
  }
  void do_fill(const AllocationPtr& dst, std::size_t offset, std::size_t n,
               std::uint8_t value) override {
    context_->make_current();
    context_->check(
        context_->driver().memset_d8_async(address_of(dst, offset), value, n, stream_),
        "cuMemsetD8Async");
    keep_alive({dst});
  }
  [[nodiscard]] std::shared_ptr<Event> do_record() override {
    auto event = std::make_shared<CudaEvent>(device(), context_);
    context_->check(context_->driver().event_record(event->handle(), stream_), "cuEventRecord");
    return event;
  }
  void do_wait(const std::shared_ptr<Event>& event) override {
    auto* cuda_event = dynamic_cast<CudaEvent*>(event.get());
    if (cuda_event != nullptr && cuda_event->driver_ptr() == context_->driver_ptr()) {
      // The device waits; the host does not. Events of other CUDA devices work too.
      context_->make_current();
      context_->check(context_->driver().stream_wait_event(stream_, cuda_event->handle(), 0),
                      "cuStreamWaitEvent");
      return;
    }
    // Another backend's event: nothing on this device can wait for it, so
    // the host does before enqueueing more.
    event->synchronize();
  }
  void do_synchronize() override {
    context_->make_current();
    context_->check(context_->driver().stream_synchronize(stream_), "cuStreamSynchronize");
    in_flight_.release_all();
  }

 private:
  void keep_alive(std::vector<AllocationPtr> allocations) {
    const Driver& driver = context_->driver();
    in_flight_.hold(
        std::move(allocations),
        [&](const EventHandle& fence) { return driver.event_query(fence.get()) == CUDA_SUCCESS; },
        [&] { return std::make_unique<EventHandle>(context_, CU_EVENT_DISABLE_TIMING); },
        [&](const EventHandle& fence) {
          context_->check(driver.event_record(fence.get(), stream_), "cuEventRecord");
        });
  }

  std::shared_ptr<Context> context_;
  CUstream stream_ = nullptr;
  InFlight<EventHandle> in_flight_;
};

class CudaDevice final : public Device, public HostMemoryRegistrar {
 public:
  CudaDevice(DeviceInfo info, std::shared_ptr<Context> context)
      : Device(std::move(info)), context_(std::move(context)) {}
  ~CudaDevice() override { release_default_objects(); }

  [[nodiscard]] MemoryInfo memory_info() const override {
    context_->make_current();
    std::size_t free = 0;
    std::size_t total = 0;
    context_->check(context_->driver().mem_get_info(&free, &total), "cuMemGetInfo");
    return MemoryInfo{total, free, MemorySource::driver};
  }

  [[nodiscard]] std::unique_ptr<HostBuffer> allocate_host(std::size_t n) override {
    context_->make_current();
    void* data = nullptr;
    const CUresult result =
        context_->driver().mem_host_alloc(&data, n == 0 ? 1 : n, CU_MEMHOSTALLOC_PORTABLE);
    if (result == CUDA_ERROR_OUT_OF_MEMORY) {
      throw OutOfMemory(id() + ": cannot allocate " + std::to_string(n) +
                        " bytes of page-locked host memory (cuMemHostAlloc: " +
                        context_->driver().describe(result) + ")");
    }
    context_->check(result, "cuMemHostAlloc");
    return std::make_unique<CudaHostBuffer>(context_, data, n);
  }

  [[nodiscard]] std::shared_ptr<Stream> create_stream() override {
    return std::make_shared<CudaStream>(*this, context_);
  }

  [[nodiscard]] std::unique_ptr<HostRegistration> register_host(void* data,
                                                                std::size_t n) override {
    if (data == nullptr || n == 0) {
      throw InvalidArgument(id() + ": cannot page-lock an empty or null host range");
    }
    context_->make_current();
    context_->check(context_->driver().mem_host_register(data, n, CU_MEMHOSTREGISTER_PORTABLE),
                    "cuMemHostRegister");
    return std::make_unique<CudaHostRegistration>(context_, data, n);
  }

  [[nodiscard]] bool copy_to_peer(Stream& stream, const Buffer& dst, std::size_t dst_offset,
                                  const Buffer& src, std::size_t src_offset,
                                  std::size_t n) override {
    auto* peer = dynamic_cast<CudaDevice*>(&dst.device());
    auto* cuda_stream = dynamic_cast<CudaStream*>(&stream);
    if (peer == nullptr || peer == this || cuda_stream == nullptr || &stream.device() != this ||
        &src.device() != this || peer->context_->driver_ptr() != context_->driver_ptr()) {
      return false;
    }
    if (!peer_paths_.usable(peer->context_->ordinal(),
                            [&] { return enable_and_verify(*peer, *cuda_stream); })) {
      return false;
    }
    cuda_stream->copy_peer(dst.allocation(), dst_offset, *peer->context_, src.allocation(),
                           src_offset, n);
    return true;
  }

  [[nodiscard]] double launch_fma(Stream& stream, const Buffer& buffer,
                                  std::uint32_t iterations) override {
    auto* cuda_stream = dynamic_cast<CudaStream*>(&stream);
    if (cuda_stream == nullptr || &stream.device() != this) {
      throw InvalidArgument("launch_fma: the stream does not belong to " + id());
    }
    if (!buffer.valid() || &buffer.device() != this) {
      throw InvalidArgument("launch_fma: the buffer does not live on " + id());
    }
    std::uint64_t count = buffer.size() / sizeof(float);
    if (count == 0) return 0.0;
    const std::uint64_t blocks = (count + kFmaBlockSize - 1) / kFmaBlockSize;
    if (blocks > static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max())) {
      throw InvalidArgument("launch_fma: " + std::to_string(buffer.size()) +
                            " bytes is more than one launch covers on " + id());
    }
    CUfunction function = context_->fma_function();
    CUdeviceptr data = address_of(buffer.allocation(), 0);
    std::uint32_t rounds = iterations;
    void* params[] = {&data, &count, &rounds};
    cuda_stream->launch(function, static_cast<unsigned>(blocks), params, buffer.allocation());
    return 2.0 * static_cast<double>(count) * iterations;
  }

 protected:
  [[nodiscard]] std::unique_ptr<Allocation> do_allocate(std::size_t n) override {
    context_->make_current();
    CUdeviceptr address = 0;
    const CUresult result = context_->driver().mem_alloc(&address, n);
    if (result == CUDA_ERROR_OUT_OF_MEMORY) {
      std::size_t free = 0;
      std::size_t total = 0;
      std::string detail;
      if (context_->driver().mem_get_info(&free, &total) == CUDA_SUCCESS) {
        detail = ", " + std::to_string(free) + " of " + std::to_string(total) + " bytes free";
      }
      throw OutOfMemory(id() + ": cannot allocate " + std::to_string(n) +
                        " bytes (cuMemAlloc: " + context_->driver().error_name(result) + detail +
                        ")");
    }
    context_->check(result, "cuMemAlloc");
    return std::make_unique<CudaAllocation>(context_, address, n);
  }

 private:
  // Enables access both ways where the driver allows it, then checks that a
  // pattern crosses intact.
  bool enable_and_verify(CudaDevice& peer, CudaStream& stream) {
    const Driver& driver = context_->driver();
    int forward = 0;
    int backward = 0;
    context_->check(driver.device_can_access_peer(&forward, context_->device(),
                                                  peer.context_->device()),
                    "cuDeviceCanAccessPeer");
    context_->check(driver.device_can_access_peer(&backward, peer.context_->device(),
                                                  context_->device()),
                    "cuDeviceCanAccessPeer");
    if (forward == 0 || backward == 0) return false;
    enable_access(*context_, *peer.context_);
    enable_access(*peer.context_, *context_);
    return peer_copy_arrives_intact(
        *this, peer, stream, [&](const Buffer& dst, const Buffer& src, std::size_t n) {
          stream.copy_peer(dst.allocation(), 0, *peer.context_, src.allocation(), 0, n);
        });
  }

  static void enable_access(Context& from, Context& to) {
    CUcontext target = to.make_current();
    from.make_current();
    const CUresult result = from.driver().ctx_enable_peer_access(target, 0);
    if (result != CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED) from.check(result, "cuCtxEnablePeerAccess");
  }

  std::shared_ptr<Context> context_;
  PeerPaths peer_paths_;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(std::vector<std::string> library_names)
      : library_names_(std::move(library_names)) {}

  [[nodiscard]] std::string_view name() const noexcept override { return "cuda"; }

  [[nodiscard]] BackendStatus open() override {
    BackendStatus status;
    status.name = "cuda";
    try {
      open_driver(status);
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
  void open_driver(BackendStatus& status) {
    std::shared_ptr<Driver> driver = Driver::load(library_names_, status.reason);
    if (!driver) return;
    const std::string& lib = driver->library_name();
    int version = 0;
    if (driver->driver_get_version(&version) == CUDA_SUCCESS && version > 0) {
      status.runtime_version = "CUDA driver " + version_string(version);
    }
    const std::string found =
        lib + " found" + (status.runtime_version.empty() ? "" : " (" + status.runtime_version + ")");
    if (const CUresult result = driver->init(0); result != CUDA_SUCCESS) {
      status.reason = result == CUDA_ERROR_NO_DEVICE
                          ? found + ", but it reports no device: cuInit returned " +
                                driver->error_name(result)
                          : found + ", but cuInit failed: " + driver->describe(result);
      return;
    }
    int count = 0;
    if (const CUresult result = driver->device_get_count(&count); result != CUDA_SUCCESS) {
      status.reason = found + ", but cuDeviceGetCount failed: " + driver->describe(result);
      return;
    }
    if (count == 0) {
      status.reason = found + ", but it reports no device: cuDeviceGetCount returned 0";
      return;
    }
    for (int ordinal = 0; ordinal < count; ++ordinal) {
      devices_.push_back(make_device(driver, ordinal));
    }
    status.available = true;
  }

  static std::shared_ptr<Device> make_device(const std::shared_ptr<Driver>& driver, int ordinal) {
    DeviceInfo info;
    info.backend = "cuda";
    info.index = ordinal;
    info.id = "cuda:" + std::to_string(ordinal);
    info.vendor = "NVIDIA";
    CUdevice device = 0;
    driver->check(driver->device_get(&device, ordinal), "cuDeviceGet", info.id);

    char name[256] = {};
    driver->check(driver->device_get_name(name, sizeof name - 1, device), "cuDeviceGetName",
                  info.id);
    info.name = name;
    std::size_t total = 0;
    driver->check(driver->device_total_mem(&total, device), "cuDeviceTotalMem", info.id);
    info.memory_total = total;
    int integrated = 0;
    driver->check(driver->device_get_attribute(&integrated, CU_DEVICE_ATTRIBUTE_INTEGRATED, device),
                  "cuDeviceGetAttribute", info.id);
    info.kind = integrated != 0 ? DeviceKind::integrated : DeviceKind::discrete;
    info.unified_memory = integrated != 0;

    CUuuid uuid{};
    if (driver->device_get_uuid(&uuid, device) == CUDA_SUCCESS) info.uuid = format_uuid(std::span<const std::uint8_t, 16>(
        reinterpret_cast<const std::uint8_t*>(uuid.bytes), 16));
    char luid[8] = {};
    unsigned int node_mask = 0;
    if (driver->device_get_luid != nullptr &&
        driver->device_get_luid(luid, &node_mask, device) == CUDA_SUCCESS) {
      info.luid = format_luid(std::span<const std::uint8_t, 8>(
          reinterpret_cast<const std::uint8_t*>(luid), 8));
    }
    char bus_id[64] = {};
    if (driver->device_get_pci_bus_id(bus_id, sizeof bus_id - 1, device) == CUDA_SUCCESS) {
      info.pci_bus_id = normalise_pci_bus_id(bus_id);
    }
    auto context = std::make_shared<Context>(driver, device, ordinal, info.id);
    return std::make_shared<CudaDevice>(std::move(info), std::move(context));
  }

  std::vector<std::string> library_names_;
  std::vector<std::shared_ptr<Device>> devices_;
};

}  // namespace

std::unique_ptr<Backend> make_backend(std::vector<std::string> library_names) {
  return std::make_unique<CudaBackend>(std::move(library_names));
}

}  // namespace exogpu::cuda

namespace exogpu {

std::unique_ptr<Backend> make_cuda_backend() {
  return cuda::make_backend(cuda::Driver::library_names());
}

}  // namespace exogpu
