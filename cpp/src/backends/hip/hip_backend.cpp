// AMD GPUs through the HIP runtime, opened at run time. The HIP runtime keeps
// one current device per thread, so every call first selects its device.
#include "backends/hip/hip_backend.hpp"

#include <mutex>
#include <utility>

#include "backends/hip/hip_runtime.hpp"
#include "core/backends.hpp"
#include "core/identity.hpp"
#include "core/in_flight.hpp"
#include "core/peer_paths.hpp"
#include "exogpu/error.hpp"
#include "exogpu/interop.hpp"

namespace exogpu::hip {

namespace {

// One device as the runtime numbers it, selected on the calling thread on demand.
class Selector {
 public:
  Selector(std::shared_ptr<const Runtime> runtime, int ordinal, std::string id)
      : runtime_(std::move(runtime)), ordinal_(ordinal), id_(std::move(id)) {}

  [[nodiscard]] const Runtime& runtime() const noexcept { return *runtime_; }
  [[nodiscard]] const Runtime* runtime_ptr() const noexcept { return runtime_.get(); }
  [[nodiscard]] int ordinal() const noexcept { return ordinal_; }
  [[nodiscard]] const std::string& id() const noexcept { return id_; }
  void check(hipError_t result, std::string_view call) const {
    runtime_->check(result, call, id_);
  }

  void select() const {
    int current = -1;
    if (runtime_->get_device(&current) != hipSuccess || current != ordinal_) {
      check(runtime_->set_device(ordinal_), "hipSetDevice");
    }
  }
  bool select_noexcept() const noexcept {
    try {
      select();
      return true;
    } catch (...) {
      return false;
    }
  }

 private:
  std::shared_ptr<const Runtime> runtime_;
  int ordinal_;
  std::string id_;
};

class HipAllocation final : public Allocation, public DeviceAddressable {
 public:
  HipAllocation(std::shared_ptr<Selector> device, void* data, std::size_t size)
      : device_(std::move(device)), data_(data), size_(size) {}
  ~HipAllocation() override {
    if (device_->select_noexcept()) (void)device_->runtime().free(data_);
  }
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }
  [[nodiscard]] DeviceAddress device_address() const noexcept override {
    return {DLPackDeviceType::rocm, device_->ordinal(), reinterpret_cast<std::uint64_t>(data_)};
  }
  [[nodiscard]] void* data() const noexcept { return data_; }

 private:
  std::shared_ptr<Selector> device_;
  void* data_;
  std::size_t size_;
};

// Buffers reaching a HIP stream were checked to live on its device.
void* address_of(const std::shared_ptr<Allocation>& allocation, std::size_t offset) {
  return static_cast<std::byte*>(static_cast<const HipAllocation&>(*allocation).data()) + offset;
}

class HipHostBuffer final : public HostBuffer {
 public:
  HipHostBuffer(std::shared_ptr<Selector> device, void* data, std::size_t size)
      : device_(std::move(device)), data_(data), size_(size) {}
  ~HipHostBuffer() override {
    if (device_->select_noexcept()) (void)device_->runtime().host_free(data_);
  }
  [[nodiscard]] void* data() const noexcept override { return data_; }
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }
  [[nodiscard]] bool page_locked() const noexcept override { return true; }

 private:
  std::shared_ptr<Selector> device_;
  void* data_;
  std::size_t size_;
};

class HipHostRegistration final : public HostRegistration {
 public:
  HipHostRegistration(std::shared_ptr<Selector> device, void* data, std::size_t size)
      : device_(std::move(device)), data_(data), size_(size) {}
  ~HipHostRegistration() override {
    if (device_->select_noexcept()) (void)device_->runtime().host_unregister(data_);
  }
  [[nodiscard]] void* data() const noexcept override { return data_; }
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }

 private:
  std::shared_ptr<Selector> device_;
  void* data_;
  std::size_t size_;
};

class EventHandle {
 public:
  EventHandle(std::shared_ptr<Selector> device, unsigned flags) : device_(std::move(device)) {
    device_->select();
    device_->check(device_->runtime().event_create_with_flags(&event_, flags),
                   "hipEventCreateWithFlags");
  }
  EventHandle(const EventHandle&) = delete;
  EventHandle& operator=(const EventHandle&) = delete;
  ~EventHandle() {
    if (device_->select_noexcept()) (void)device_->runtime().event_destroy(event_);
  }
  [[nodiscard]] hipEvent_t get() const noexcept { return event_; }

 private:
  std::shared_ptr<Selector> device_;
  hipEvent_t event_ = nullptr;
};

class HipEvent final : public Event {
 public:
  HipEvent(const Device& device, std::shared_ptr<Selector> selector)
      : device_(device), selector_(selector), event_(std::move(selector), hipEventDefault) {}

  [[nodiscard]] bool query() override {
    selector_->select();
    const hipError_t result = selector_->runtime().event_query(event_.get());
    if (result == hipErrorNotReady) return false;
    selector_->check(result, "hipEventQuery");
    return true;
  }
  void synchronize() override {
    selector_->select();
    selector_->check(selector_->runtime().event_synchronize(event_.get()), "hipEventSynchronize");
  }
  [[nodiscard]] double elapsed_ms(Event& later) override {
    auto* other = dynamic_cast<HipEvent*>(&later);
    if (other == nullptr || other->selector_ != selector_) {
      throw InvalidArgument("elapsed_ms: both events must come from " + device_.id() +
                            " (the later one is from " + later.device().id() + ")");
    }
    selector_->select();
    float ms = 0.0F;
    selector_->check(
        selector_->runtime().event_elapsed_time(&ms, event_.get(), other->event_.get()),
        "hipEventElapsedTime");
    return ms;
  }
  [[nodiscard]] const Device& device() const noexcept override { return device_; }
  [[nodiscard]] hipEvent_t handle() const noexcept { return event_.get(); }
  [[nodiscard]] const Runtime* runtime_ptr() const noexcept { return selector_->runtime_ptr(); }

 private:
  const Device& device_;
  std::shared_ptr<Selector> selector_;
  EventHandle event_;
};

class HipStream final : public Stream {
 public:
  HipStream(Device& device, std::shared_ptr<Selector> selector)
      : Stream(device), selector_(std::move(selector)) {
    selector_->select();
    selector_->check(selector_->runtime().stream_create_with_flags(&stream_, hipStreamNonBlocking),
                     "hipStreamCreateWithFlags");
  }
  ~HipStream() override {
    if (selector_->select_noexcept()) {
      (void)selector_->runtime().stream_synchronize(stream_);
      (void)selector_->runtime().stream_destroy(stream_);
    }
  }

  void copy_peer(const AllocationPtr& dst, std::size_t dst_offset, int dst_ordinal,
                 const AllocationPtr& src, std::size_t src_offset, std::size_t n) {
    selector_->select();
    selector_->check(selector_->runtime().memcpy_peer_async(
                         address_of(dst, dst_offset), dst_ordinal, address_of(src, src_offset),
                         selector_->ordinal(), n, stream_),
                     "hipMemcpyPeerAsync");
    keep_alive({dst, src});
  }

 protected:
  void do_copy_h2d(const AllocationPtr& dst, std::size_t dst_offset, const void* src,
                   std::size_t n) override {
    enqueue_copy(address_of(dst, dst_offset), src, n, hipMemcpyHostToDevice, {dst});
  }
  void do_copy_d2h(void* dst, const AllocationPtr& src, std::size_t src_offset,
                   std::size_t n) override {
    enqueue_copy(dst, address_of(src, src_offset), n, hipMemcpyDeviceToHost, {src});
  }
  void do_copy_d2d(const AllocationPtr& dst, std::size_t dst_offset, const AllocationPtr& src,
                   std::size_t src_offset, std::size_t n) override {
    enqueue_copy(address_of(dst, dst_offset), address_of(src, src_offset), n,
                 hipMemcpyDeviceToDevice, {dst, src});
  }
  void do_fill(const AllocationPtr& dst, std::size_t offset, std::size_t n,
               std::uint8_t value) override {
    selector_->select();
    selector_->check(
        selector_->runtime().memset_async(address_of(dst, offset), value, n, stream_),
        "hipMemsetAsync");
    keep_alive({dst});
  }
  [[nodiscard]] std::shared_ptr<Event> do_record() override {
    auto event = std::make_shared<HipEvent>(device(), selector_);
    selector_->check(selector_->runtime().event_record(event->handle(), stream_),
                     "hipEventRecord");
    return event;
  }
  void do_wait(const std::shared_ptr<Event>& event) override {
    auto* hip_event = dynamic_cast<HipEvent*>(event.get());
    if (hip_event != nullptr && hip_event->runtime_ptr() == selector_->runtime_ptr()) {
      selector_->select();
      selector_->check(selector_->runtime().stream_wait_event(stream_, hip_event->handle(), 0),
                       "hipStreamWaitEvent");
      return;
    }
    event->synchronize();  // another backend's event: the host waits for it
  }
  void do_synchronize() override {
    selector_->select();
    selector_->check(selector_->runtime().stream_synchronize(stream_), "hipStreamSynchronize");
    in_flight_.release_all();
  }

 private:
  void enqueue_copy(void* dst, const void* src, std::size_t n, hipMemcpyKind kind,
                    std::vector<AllocationPtr> used) {
    selector_->select();
    selector_->check(selector_->runtime().memcpy_async(dst, src, n, kind, stream_),
                     "hipMemcpyAsync");
    keep_alive(std::move(used));
  }
  void keep_alive(std::vector<AllocationPtr> allocations) {
    const Runtime& runtime = selector_->runtime();
    in_flight_.hold(
        std::move(allocations),
        [&](const EventHandle& fence) { return runtime.event_query(fence.get()) == hipSuccess; },
        [&] { return std::make_unique<EventHandle>(selector_, hipEventDisableTiming); },
        [&](const EventHandle& fence) {
          selector_->check(runtime.event_record(fence.get(), stream_), "hipEventRecord");
        });
  }

  std::shared_ptr<Selector> selector_;
  hipStream_t stream_ = nullptr;
  InFlight<EventHandle> in_flight_;
};

class HipDevice final : public Device, public HostMemoryRegistrar {
 public:
  HipDevice(DeviceInfo info, std::shared_ptr<Selector> selector)
      : Device(std::move(info)), selector_(std::move(selector)) {}
  ~HipDevice() override { release_default_objects(); }

  [[nodiscard]] MemoryInfo memory_info() const override {
    selector_->select();
    std::size_t free = 0;
    std::size_t total = 0;
    selector_->check(selector_->runtime().mem_get_info(&free, &total), "hipMemGetInfo");
    return MemoryInfo{total, free, MemorySource::driver};
  }

  [[nodiscard]] std::unique_ptr<HostBuffer> allocate_host(std::size_t n) override {
    selector_->select();
    void* data = nullptr;
    const hipError_t result =
        selector_->runtime().host_malloc(&data, n == 0 ? 1 : n, hipHostMallocPortable);
    if (result == hipErrorOutOfMemory) {
      throw OutOfMemory(id() + ": cannot allocate " + std::to_string(n) +
                        " bytes of page-locked host memory (hipHostMalloc: " +
                        selector_->runtime().error_name(result) + ")");
    }
    selector_->check(result, "hipHostMalloc");
    return std::make_unique<HipHostBuffer>(selector_, data, n);
  }

  [[nodiscard]] std::shared_ptr<Stream> create_stream() override {
    return std::make_shared<HipStream>(*this, selector_);
  }

  [[nodiscard]] std::unique_ptr<HostRegistration> register_host(void* data,
                                                                std::size_t n) override {
    if (data == nullptr || n == 0) {
      throw InvalidArgument(id() + ": cannot page-lock an empty or null host range");
    }
    selector_->select();
    selector_->check(selector_->runtime().host_register(data, n, hipHostRegisterPortable),
                     "hipHostRegister");
    return std::make_unique<HipHostRegistration>(selector_, data, n);
  }

  [[nodiscard]] bool copy_to_peer(Stream& stream, const Buffer& dst, std::size_t dst_offset,
                                  const Buffer& src, std::size_t src_offset,
                                  std::size_t n) override {
    auto* peer = dynamic_cast<HipDevice*>(&dst.device());
    auto* hip_stream = dynamic_cast<HipStream*>(&stream);
    if (peer == nullptr || peer == this || hip_stream == nullptr || &stream.device() != this ||
        &src.device() != this || peer->selector_->runtime_ptr() != selector_->runtime_ptr()) {
      return false;
    }
    if (!peer_paths_.usable(peer->selector_->ordinal(),
                            [&] { return enable_and_verify(*peer, *hip_stream); })) {
      return false;
    }
    hip_stream->copy_peer(dst.allocation(), dst_offset, peer->selector_->ordinal(),
                          src.allocation(), src_offset, n);
    return true;
  }

 protected:
  [[nodiscard]] std::unique_ptr<Allocation> do_allocate(std::size_t n) override {
    selector_->select();
    void* data = nullptr;
    const hipError_t result = selector_->runtime().malloc(&data, n);
    if (result == hipErrorOutOfMemory) {
      std::size_t free = 0;
      std::size_t total = 0;
      std::string detail;
      if (selector_->runtime().mem_get_info(&free, &total) == hipSuccess) {
        detail = ", " + std::to_string(free) + " of " + std::to_string(total) + " bytes free";
      }
      throw OutOfMemory(id() + ": cannot allocate " + std::to_string(n) + " bytes (hipMalloc: " +
                        selector_->runtime().error_name(result) + detail + ")");
    }
    selector_->check(result, "hipMalloc");
    return std::make_unique<HipAllocation>(selector_, data, n);
  }

 private:
  // Enables access both ways where the runtime allows it, then checks that a
  // pattern crosses intact.
  bool enable_and_verify(HipDevice& peer, HipStream& stream) {
    const Runtime& runtime = selector_->runtime();
    const int self = selector_->ordinal();
    const int other = peer.selector_->ordinal();
    int forward = 0;
    int backward = 0;
    selector_->check(runtime.device_can_access_peer(&forward, self, other),
                     "hipDeviceCanAccessPeer");
    selector_->check(runtime.device_can_access_peer(&backward, other, self),
                     "hipDeviceCanAccessPeer");
    if (forward == 0 || backward == 0) return false;
    enable_access(*selector_, other);
    enable_access(*peer.selector_, self);
    return peer_copy_arrives_intact(
        *this, peer, stream, [&](const Buffer& dst, const Buffer& src, std::size_t n) {
          stream.copy_peer(dst.allocation(), 0, other, src.allocation(), 0, n);
        });
  }

  static void enable_access(const Selector& from, int peer) {
    from.select();
    const hipError_t result = from.runtime().device_enable_peer_access(peer, 0);
    if (result != hipErrorPeerAccessAlreadyEnabled) from.check(result, "hipDeviceEnablePeerAccess");
  }

  std::shared_ptr<Selector> selector_;
  PeerPaths peer_paths_;
};

class HipBackend final : public Backend {
 public:
  explicit HipBackend(std::vector<std::string> library_names)
      : library_names_(std::move(library_names)) {}

  [[nodiscard]] std::string_view name() const noexcept override { return "hip"; }

  [[nodiscard]] BackendStatus open() override {
    BackendStatus status;
    status.name = "hip";
    try {
      open_runtime(status);
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
  void open_runtime(BackendStatus& status) {
    std::shared_ptr<Runtime> runtime = Runtime::load(library_names_, status.reason);
    if (!runtime) return;
    int version = 0;
    if (runtime->runtime_get_version(&version) == hipSuccess && version > 0) {
      status.runtime_version = "HIP runtime " + version_string(version);
    }
    const std::string found = runtime->library_name() + " found" +
                              (status.runtime_version.empty() ? "" : " (" + status.runtime_version + ")");
    int count = 0;
    const hipError_t result = runtime->get_device_count(&count);
    if (result == hipErrorNoDevice || (result == hipSuccess && count == 0)) {
      status.reason = found + ", but it reports no device: hipGetDeviceCount returned " +
                      (result == hipSuccess ? "0 devices" : runtime->error_name(result));
      return;
    }
    if (result != hipSuccess) {
      status.reason = found + ", but hipGetDeviceCount failed: " + runtime->describe(result);
      return;
    }
    for (int ordinal = 0; ordinal < count; ++ordinal) {
      devices_.push_back(make_device(runtime, ordinal, version));
    }
    status.available = true;
  }

  static std::shared_ptr<Device> make_device(const std::shared_ptr<Runtime>& runtime,
                                             int ordinal, int runtime_version) {
    DeviceInfo info;
    info.backend = "hip";
    info.index = ordinal;
    info.id = "hip:" + std::to_string(ordinal);
    info.vendor = "AMD";
    // An APU's memory is the host's (the registry puts it in the host pool).
    // Asked only where the attribute's number is known (hip_api.hpp); any
    // other answer than 0 or 1 is taken as "not said": discrete.
    info.kind = DeviceKind::discrete;
    int integrated = 0;
    if (runtime_version >= kFirstRuntimeWithIntegratedAt16 &&
        runtime->device_get_attribute(&integrated, hipDeviceAttributeIntegrated, ordinal) == hipSuccess &&
        integrated == 1) {
      info.kind = DeviceKind::integrated;
      info.unified_memory = true;
    }
    hipDevice_t device = 0;
    runtime->check(runtime->device_get(&device, ordinal), "hipDeviceGet", info.id);
    char name[256] = {};
    runtime->check(runtime->device_get_name(name, sizeof name - 1, device), "hipDeviceGetName",
                   info.id);
    info.name = name;
    std::size_t total = 0;
    runtime->check(runtime->device_total_mem(&total, device), "hipDeviceTotalMem", info.id);
    info.memory_total = total;
    // ROCm's UUID is the GPU's unique id, not Vulkan's deviceUUID; identity
    // merging with Vulkan then goes by PCI bus id.
    hipUUID uuid{};
    if (runtime->device_get_uuid(&uuid, device) == hipSuccess) info.uuid = format_uuid(std::span<const std::uint8_t, 16>(
        reinterpret_cast<const std::uint8_t*>(uuid.bytes), 16));
    char bus_id[64] = {};
    if (runtime->device_get_pci_bus_id(bus_id, sizeof bus_id - 1, ordinal) == hipSuccess) {
      info.pci_bus_id = normalise_pci_bus_id(bus_id);
    }
    auto selector = std::make_shared<Selector>(runtime, ordinal, info.id);
    return std::make_shared<HipDevice>(std::move(info), std::move(selector));
  }

  std::vector<std::string> library_names_;
  std::vector<std::shared_ptr<Device>> devices_;
};

}  // namespace

std::unique_ptr<Backend> make_backend(std::vector<std::string> library_names) {
  return std::make_unique<HipBackend>(std::move(library_names));
}

}  // namespace exogpu::hip

namespace exogpu {

std::unique_ptr<Backend> make_hip_backend() {
  return hip::make_backend(hip::Runtime::library_names());
}

}  // namespace exogpu
