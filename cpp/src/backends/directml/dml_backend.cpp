// Direct3D 12 adapters as exogpu devices, with DirectML for compute. Every
// DXGI adapter that creates a D3D12 device is one device (software adapters
// only when asked for); its identity is the adapter's LUID, which CUDA and
// Vulkan report too, so the registry merges one GPU seen through all three.
#include "backends/directml/dml_backend.hpp"

#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backends/directml/dml_allocation.hpp"
#include "backends/directml/dml_error.hpp"
#include "backends/directml/dml_gemm.hpp"
#include "backends/directml/dml_stream.hpp"
#include "core/backends.hpp"
#include "core/identity.hpp"
#include "exogpu/error.hpp"

namespace exogpu::directml {

namespace {

// Resources are sized in whole 256-byte units: DirectML binds tensors
// rounded up to 4 bytes, and nothing then reaches past the resource.
constexpr std::uint64_t kResourceGranule = 256;

std::string narrow(const wchar_t* text) {
  const int length = WideCharToMultiByte(CP_UTF8, 0, text, -1, nullptr, 0, nullptr, nullptr);
  if (length <= 1) return {};
  std::string out(static_cast<std::size_t>(length - 1), '\0');
  WideCharToMultiByte(CP_UTF8, 0, text, -1, out.data(), length, nullptr, nullptr);
  return out;
}

std::string vendor_name(UINT vendor_id) {
  switch (vendor_id) {
    case 0x10de: return "NVIDIA";
    case 0x1002: case 0x1022: return "AMD";
    case 0x8086: return "Intel";
    case 0x1414: return "Microsoft";
    case 0x5143: return "Qualcomm";
    case 0x106b: return "Apple";
    default: {
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%04x", vendor_id);
      return std::string("PCI vendor ") + hex;
    }
  }
}

std::string feature_level_name(api::DML_FEATURE_LEVEL level) {
  const auto v = static_cast<unsigned>(level);
  return std::to_string(v >> 12) + "." + std::to_string((v >> 8) & 0xf);
}

class AlignedHostBuffer final : public HostBuffer {
 public:
  explicit AlignedHostBuffer(std::size_t size)
      : data_(_aligned_malloc(size == 0 ? 1 : size, 4096)), size_(size) {}
  ~AlignedHostBuffer() override { _aligned_free(data_); }
  [[nodiscard]] void* data() const noexcept override { return data_; }
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }
  // Direct3D 12 copies from host memory only through its own staging heaps.
  [[nodiscard]] bool page_locked() const noexcept override { return false; }

 private:
  void* data_;
  std::size_t size_;
};

class DmlDevice final : public Device {
 public:
  DmlDevice(DeviceInfo info, std::shared_ptr<Context> context)
      : Device(std::move(info)), context_(std::move(context)) {}
  ~DmlDevice() override { release_default_objects(); }

  [[nodiscard]] MemoryInfo memory_info() const override {
    DXGI_QUERY_VIDEO_MEMORY_INFO local{};
    context_->check(
        context_->adapter()->QueryVideoMemoryInfo(0, DXGI_MEMORY_SEGMENT_GROUP_LOCAL, &local),
        "IDXGIAdapter3::QueryVideoMemoryInfo");
    MemoryInfo m;
    m.total = info().memory_total;
    // What this process may still use before the OS starts to demote its
    // memory: the budget it was given less what it uses.
    const std::uint64_t left = local.Budget > local.CurrentUsage ? local.Budget - local.CurrentUsage : 0;
    m.free = std::min<std::uint64_t>(left, m.total);
    m.source = MemorySource::budget;
    return m;
  }

  [[nodiscard]] std::unique_ptr<HostBuffer> allocate_host(std::size_t n) override {
    auto buffer = std::make_unique<AlignedHostBuffer>(n);
    if (buffer->data() == nullptr) {
      throw OutOfMemory(id() + ": cannot allocate " + std::to_string(n) + " bytes of host memory");
    }
    return buffer;
  }

  [[nodiscard]] std::shared_ptr<Stream> create_stream() override {
    return std::make_shared<DmlStream>(*this, context_);
  }

  // The compute probe's kernel here is a DirectML GEMM: the buffer holds A,
  // B and the output, square matrices of the largest power-of-two side that
  // fits (at most 1024), multiplied `iterations` times. A power of two keeps
  // the shapes, and so the compiled shaders, few.
  [[nodiscard]] double launch_fma(Stream& stream, const Buffer& buffer,
                                  std::uint32_t iterations) override {
    if (dynamic_cast<DmlStream*>(&stream) == nullptr || &stream.device() != this) {
      throw InvalidArgument("launch_fma: the stream does not belong to " + id());
    }
    if (!buffer.valid() || &buffer.device() != this) {
      throw InvalidArgument("launch_fma: the buffer does not live on " + id());
    }
    const std::uint64_t floats = buffer.size() / sizeof(float);
    std::uint32_t side = 1024;
    while (side > 0 && std::uint64_t{3} * side * side > floats) side /= 2;
    if (side < 4) return 0.0;
    const std::size_t matrix = std::size_t{side} * side * sizeof(float);
    return enqueue_gemm(stream, {side, side, side, GemmType::float32}, buffer, 0, buffer, matrix,
                        buffer, 2 * matrix, iterations);
  }

 protected:
  [[nodiscard]] std::unique_ptr<Allocation> do_allocate(std::size_t n) override {
    if (n > info().memory_total) {
      throw OutOfMemory(id() + ": cannot allocate " + std::to_string(n) +
                        " bytes: the adapter has " + std::to_string(info().memory_total) +
                        " bytes in all");
    }
    const std::uint64_t size = (std::uint64_t{n} + kResourceGranule - 1) / kResourceGranule *
                               kResourceGranule;
    const bool host_visible = context_->features().host_visible_buffers;
    ComPtr<ID3D12Resource> resource =
        context_->create_buffer(size, host_visible ? HeapKind::host_visible : HeapKind::device);
    void* mapped = nullptr;
    if (host_visible) {
      context_->check(resource->Map(0, nullptr, &mapped), "ID3D12Resource::Map");
    }
    return std::make_unique<DmlAllocation>(std::move(resource), n, mapped);
  }

 private:
  std::shared_ptr<Context> context_;
};

class DmlBackend final : public Backend {
 public:
  explicit DmlBackend(BackendOptions options) : options_(std::move(options)) {}

  [[nodiscard]] std::string_view name() const noexcept override { return "directml"; }

  [[nodiscard]] BackendStatus open() override {
    BackendStatus status;
    status.name = "directml";
    try {
      open_adapters(status);
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
  void open_adapters(BackendStatus& status) {
    std::shared_ptr<Runtime> runtime = Runtime::load(options_.directml_library_names, status.reason);
    if (!runtime) return;
    const std::string& dml = runtime->directml_library();
    ComPtr<IDXGIFactory1> factory;
    if (const HRESULT hr = runtime->create_factory(IID_PPV_ARGS(&factory)); FAILED(hr)) {
      status.reason = "CreateDXGIFactory1 failed: " + describe_hresult(hr);
      return;
    }
    std::string skipped;  // why adapters that are there were not used
    ComPtr<IDXGIAdapter1> adapter1;
    for (UINT i = 0; factory->EnumAdapters1(i, adapter1.ReleaseAndGetAddressOf()) !=
                     DXGI_ERROR_NOT_FOUND;
         ++i) {
      DXGI_ADAPTER_DESC1 desc{};
      if (FAILED(adapter1->GetDesc1(&desc))) continue;
      const std::string name = narrow(desc.Description);
      const bool software = (desc.Flags & DXGI_ADAPTER_FLAG_SOFTWARE) != 0;
      if (software && !options_.software_adapters) {
        skipped += (skipped.empty() ? "" : "; ") + name +
                   " is a software adapter (EXOGPU_DIRECTML_SOFTWARE_ADAPTERS=1 lists it)";
        continue;
      }
      ComPtr<IDXGIAdapter3> adapter;
      if (FAILED(adapter1.As(&adapter))) {
        skipped += (skipped.empty() ? "" : "; ") + name + " has no IDXGIAdapter3 (DXGI 1.4)";
        continue;
      }
      const std::string id = "directml:" + std::to_string(devices_.size());
      std::shared_ptr<Context> context;
      try {
        context = Context::open(runtime, adapter, id, options_.host_visible);
      } catch (const std::exception& error) {
        std::string why = error.what();
        if (why.rfind(id + ": ", 0) == 0) why = why.substr(id.size() + 2);
        skipped += (skipped.empty() ? "" : "; ") + name + ": " + why;
        continue;
      }
      if (status.runtime_version.empty()) {
        status.runtime_version = "DirectML feature level " +
                                 feature_level_name(context->features().dml_feature_level) +
                                 " (" + dml + ")";
      }
      devices_.push_back(make_device(desc, name, software, std::move(context)));
    }
    if (devices_.empty()) {
      status.reason = dml + " found, but no adapter can run it" +
                      (skipped.empty() ? std::string(" (DXGI lists no adapter)")
                                       : " (" + skipped + ")");
      return;
    }
    status.available = true;
  }

  std::shared_ptr<Device> make_device(const DXGI_ADAPTER_DESC1& desc, const std::string& name,
                                      bool software, std::shared_ptr<Context> context) {
    DeviceInfo info;
    info.backend = "directml";
    info.index = static_cast<int>(devices_.size());
    info.id = "directml:" + std::to_string(info.index);
    info.name = name;
    info.vendor = vendor_name(desc.VendorId);
    const Features& features = context->features();
    info.kind = features.uma ? DeviceKind::integrated : DeviceKind::discrete;
    info.unified_memory = features.uma;
    info.emulated_on_host = software;
    // A UMA adapter's memory is the host's share it may use; a discrete one's is its own.
    info.memory_total = features.uma ? std::max<std::uint64_t>(desc.DedicatedVideoMemory,
                                                               desc.SharedSystemMemory)
                                     : desc.DedicatedVideoMemory;
    std::uint8_t luid[8];
    static_assert(sizeof desc.AdapterLuid == sizeof luid);
    std::memcpy(luid, &desc.AdapterLuid, sizeof luid);
    info.luid = format_luid(luid);
    info.pci_vendor_id = desc.VendorId;
    info.pci_device_id = desc.DeviceId;
    return std::make_shared<DmlDevice>(std::move(info), std::move(context));
  }

  BackendOptions options_;
  std::vector<std::shared_ptr<Device>> devices_;
};

bool env_flag(const char* name, bool fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  return std::strcmp(value, "0") != 0;
}

}  // namespace

BackendOptions options_from_environment() {
  BackendOptions options;
  options.directml_library_names = Runtime::directml_library_names();
  options.software_adapters = env_flag("EXOGPU_DIRECTML_SOFTWARE_ADAPTERS", false);
  options.host_visible = env_flag("EXOGPU_DIRECTML_HOST_VISIBLE", true);
  return options;
}

std::unique_ptr<Backend> make_backend(BackendOptions options) {
  return std::make_unique<DmlBackend>(std::move(options));
}

}  // namespace exogpu::directml

namespace exogpu {

std::unique_ptr<Backend> make_directml_backend() {
  return directml::make_backend(directml::options_from_environment());
}

}  // namespace exogpu
