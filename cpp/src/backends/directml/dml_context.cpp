#include "backends/directml/dml_context.hpp"

#include <limits>

#include "backends/directml/dml_error.hpp"
#include "exogpu/error.hpp"

namespace exogpu::directml {

namespace {

// RAII for a Win32 event handle.
class EventHandle {
 public:
  EventHandle() : handle_(CreateEventW(nullptr, FALSE, FALSE, nullptr)) {}
  EventHandle(const EventHandle&) = delete;
  EventHandle& operator=(const EventHandle&) = delete;
  ~EventHandle() {
    if (handle_ != nullptr) CloseHandle(handle_);
  }
  [[nodiscard]] HANDLE get() const noexcept { return handle_; }

 private:
  HANDLE handle_;
};

}  // namespace

std::shared_ptr<Context> Context::open(std::shared_ptr<const Runtime> runtime,
                                       ComPtr<IDXGIAdapter3> adapter, std::string id,
                                       bool host_visible) {
  auto context = std::make_shared<Context>(Key{}, std::move(runtime), std::move(adapter),
                                           std::move(id));
  const Runtime& rt = *context->runtime_;
  // Feature level 11_0 is the least Direct3D 12 accepts, and all DirectML needs.
  HRESULT hr = rt.create_device(context->adapter_.Get(), D3D_FEATURE_LEVEL_11_0,
                                IID_PPV_ARGS(&context->device_));
  if (FAILED(hr)) {
    check_hresult(hr, "D3D12CreateDevice", context->id_);
  }
  hr = rt.create_dml_device(context->device_.Get(), api::DML_CREATE_DEVICE_FLAG_NONE,
                            api::DML_FEATURE_LEVEL_1_0, api::kIID_IDMLDevice,
                            reinterpret_cast<void**>(context->dml_.GetAddressOf()));
  context->check(hr, "DMLCreateDevice1");
  context->check(context->dml_->CreateCommandRecorder(
                     api::kIID_IDMLCommandRecorder,
                     reinterpret_cast<void**>(context->recorder_.GetAddressOf())),
                 "IDMLDevice::CreateCommandRecorder");
  context->query_features(host_visible);
  return context;
}

void Context::query_features(bool host_visible) {
  D3D12_FEATURE_DATA_ARCHITECTURE architecture{};
  if (SUCCEEDED(device_->CheckFeatureSupport(D3D12_FEATURE_ARCHITECTURE, &architecture,
                                             sizeof architecture))) {
    features_.uma = architecture.UMA != FALSE;
    features_.cache_coherent_uma = architecture.CacheCoherentUMA != FALSE;
  }
  // Write-back CPU pages in the GPU's own pool are allowed only where caches
  // are coherent; there the GPU reads and writes host-visible memory at full
  // speed, so buffers need no staging at all.
  features_.host_visible_buffers = host_visible && features_.uma && features_.cache_coherent_uma;
  D3D12_FEATURE_DATA_D3D12_OPTIONS3 options3{};
  if (SUCCEEDED(device_->CheckFeatureSupport(D3D12_FEATURE_D3D12_OPTIONS3, &options3,
                                             sizeof options3))) {
    features_.copy_queue_timestamps = options3.CopyQueueTimestampQueriesSupported != FALSE;
  }
  static constexpr api::DML_FEATURE_LEVEL kLevels[] = {
      api::DML_FEATURE_LEVEL_1_0, api::DML_FEATURE_LEVEL_2_0, api::DML_FEATURE_LEVEL_2_1,
      api::DML_FEATURE_LEVEL_3_0, api::DML_FEATURE_LEVEL_3_1, api::DML_FEATURE_LEVEL_4_0,
      api::DML_FEATURE_LEVEL_4_1, api::DML_FEATURE_LEVEL_5_0, api::DML_FEATURE_LEVEL_5_1,
      api::DML_FEATURE_LEVEL_5_2, api::DML_FEATURE_LEVEL_6_0, api::DML_FEATURE_LEVEL_6_1,
      api::DML_FEATURE_LEVEL_6_2, api::DML_FEATURE_LEVEL_6_3, api::DML_FEATURE_LEVEL_6_4};
  const api::DML_FEATURE_QUERY_FEATURE_LEVELS query{static_cast<UINT>(std::size(kLevels)),
                                                     kLevels};
  api::DML_FEATURE_DATA_FEATURE_LEVELS levels{};
  if (SUCCEEDED(dml_->CheckFeatureSupport(api::DML_FEATURE_FEATURE_LEVELS, sizeof query, &query,
                                          sizeof levels, &levels))) {
    features_.dml_feature_level = levels.MaxSupportedFeatureLevel;
  }
  const api::DML_FEATURE_QUERY_TENSOR_DATA_TYPE_SUPPORT half{api::DML_TENSOR_DATA_TYPE_FLOAT16};
  api::DML_FEATURE_DATA_TENSOR_DATA_TYPE_SUPPORT supported{};
  if (SUCCEEDED(dml_->CheckFeatureSupport(api::DML_FEATURE_TENSOR_DATA_TYPE_SUPPORT, sizeof half,
                                          &half, sizeof supported, &supported))) {
    features_.float16 = supported.IsSupported != FALSE;
  }
}

void Context::check_hresult_on_device(HRESULT hr, std::string_view call) const {
  check_hresult(hr, call, id_, device_.Get());
}

void Context::check_not_removed(std::string_view after) const {
  directml::check_not_removed(device_.Get(), after, id_);
  // DirectML keeps its own view; it reports the removal it caused first.
  const HRESULT dml_removed = dml_->GetDeviceRemovedReason();
  if (FAILED(dml_removed)) {
    throw DeviceError(id_ + ": DirectML reports the device removed (found after " +
                      std::string(after) + "): " + describe_hresult(dml_removed));
  }
}

ComPtr<ID3D12Resource> Context::create_buffer(std::uint64_t size, HeapKind kind) const {
  D3D12_HEAP_PROPERTIES heap{};
  D3D12_RESOURCE_STATES state = D3D12_RESOURCE_STATE_COMMON;
  D3D12_RESOURCE_FLAGS flags = D3D12_RESOURCE_FLAG_ALLOW_UNORDERED_ACCESS;
  switch (kind) {
    case HeapKind::device:
      heap.Type = D3D12_HEAP_TYPE_DEFAULT;
      break;
    case HeapKind::host_visible:
      heap.Type = D3D12_HEAP_TYPE_CUSTOM;
      heap.CPUPageProperty = D3D12_CPU_PAGE_PROPERTY_WRITE_BACK;
      heap.MemoryPoolPreference = D3D12_MEMORY_POOL_L0;
      break;
    case HeapKind::upload:
      heap.Type = D3D12_HEAP_TYPE_UPLOAD;
      state = D3D12_RESOURCE_STATE_GENERIC_READ;
      flags = D3D12_RESOURCE_FLAG_NONE;
      break;
    case HeapKind::readback:
      heap.Type = D3D12_HEAP_TYPE_READBACK;
      state = D3D12_RESOURCE_STATE_COPY_DEST;
      flags = D3D12_RESOURCE_FLAG_NONE;
      break;
  }
  heap.CreationNodeMask = 1;
  heap.VisibleNodeMask = 1;
  D3D12_RESOURCE_DESC desc{};
  desc.Dimension = D3D12_RESOURCE_DIMENSION_BUFFER;
  desc.Width = size;
  desc.Height = 1;
  desc.DepthOrArraySize = 1;
  desc.MipLevels = 1;
  desc.Format = DXGI_FORMAT_UNKNOWN;
  desc.SampleDesc.Count = 1;
  desc.Layout = D3D12_TEXTURE_LAYOUT_ROW_MAJOR;
  desc.Flags = flags;
  ComPtr<ID3D12Resource> resource;
  const HRESULT hr = device_->CreateCommittedResource(&heap, D3D12_HEAP_FLAG_NONE, &desc, state,
                                                      nullptr, IID_PPV_ARGS(&resource));
  if (hr == E_OUTOFMEMORY) {
    throw OutOfMemory(id_ + ": cannot allocate " + std::to_string(size) +
                      " bytes (CreateCommittedResource: " + describe_hresult(hr) + ")");
  }
  check(hr, "CreateCommittedResource");
  return resource;
}

ComPtr<ID3D12CommandQueue> Context::create_queue(D3D12_COMMAND_LIST_TYPE type) const {
  D3D12_COMMAND_QUEUE_DESC desc{};
  desc.Type = type;
  ComPtr<ID3D12CommandQueue> queue;
  check(device_->CreateCommandQueue(&desc, IID_PPV_ARGS(&queue)), "CreateCommandQueue");
  return queue;
}

ComPtr<ID3D12Fence> Context::create_fence() const {
  ComPtr<ID3D12Fence> fence;
  check(device_->CreateFence(0, D3D12_FENCE_FLAG_NONE, IID_PPV_ARGS(&fence)), "CreateFence");
  return fence;
}

void wait_for_fence(const Context& context, ID3D12Fence* fence, std::uint64_t value) {
  std::uint64_t completed = fence->GetCompletedValue();
  if (completed < value) {
    EventHandle event;
    if (event.get() == nullptr) {
      throw DeviceError(context.id() + ": CreateEvent failed with Windows error " +
                        std::to_string(GetLastError()));
    }
    context.check(fence->SetEventOnCompletion(value, event.get()),
                  "ID3D12Fence::SetEventOnCompletion");
    WaitForSingleObject(event.get(), INFINITE);
    completed = fence->GetCompletedValue();
  }
  if (completed == std::numeric_limits<std::uint64_t>::max()) {
    context.check_not_removed("waiting for a fence");
  }
}

}  // namespace exogpu::directml
