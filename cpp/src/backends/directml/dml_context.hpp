// One DXGI adapter opened for use: its Direct3D 12 device, the DirectML
// device on top of it, what the adapter supports, and the helpers every
// other part of the backend creates its objects with.
#pragma once

#include <wrl/client.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "backends/directml/dml_api.hpp"
#include "backends/directml/dml_runtime.hpp"

namespace exogpu::directml {

template <typename T>
using ComPtr = Microsoft::WRL::ComPtr<T>;

enum class HeapKind {
  device,        // DEFAULT: device-local, reached by copies through staging
  host_visible,  // CUSTOM write-back in L0 on cache-coherent UMA: zero-copy
  upload,        // UPLOAD: host-written staging
  readback,      // READBACK: host-read staging
};

struct Features {
  bool uma = false;
  bool cache_coherent_uma = false;
  bool host_visible_buffers = false;  // HeapKind::host_visible is used for buffers
  bool copy_queue_timestamps = false;
  api::DML_FEATURE_LEVEL dml_feature_level = api::DML_FEATURE_LEVEL_1_0;
  bool float16 = false;  // DirectML takes float16 tensors on this adapter
};

class Context {
  struct Key {};

 public:
  // Creates the D3D12 and DirectML devices on `adapter`. Throws DeviceError
  // (or OutOfMemory) saying which step failed. `host_visible` allows zero-copy
  // buffers where the adapter supports them.
  [[nodiscard]] static std::shared_ptr<Context> open(std::shared_ptr<const Runtime> runtime,
                                                     ComPtr<IDXGIAdapter3> adapter,
                                                     std::string id, bool host_visible);

  Context(Key, std::shared_ptr<const Runtime> runtime, ComPtr<IDXGIAdapter3> adapter,
          std::string id)
      : runtime_(std::move(runtime)), adapter_(std::move(adapter)), id_(std::move(id)) {}
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  [[nodiscard]] ID3D12Device* device() const noexcept { return device_.Get(); }
  [[nodiscard]] api::IDMLDevice* dml() const noexcept { return dml_.Get(); }
  [[nodiscard]] IDXGIAdapter3* adapter() const noexcept { return adapter_.Get(); }
  [[nodiscard]] const std::string& id() const noexcept { return id_; }
  [[nodiscard]] const Features& features() const noexcept { return features_; }

  // Throws for a failed HRESULT of `call`, asking the device why when it was removed.
  void check(HRESULT hr, std::string_view call) const {
    check_hresult_on_device(hr, call);
  }
  // Throws DeviceError when the device has been removed; `after` names the last call.
  void check_not_removed(std::string_view after) const;

  // A buffer resource of `size` bytes (UAV-capable where the heap allows).
  // Throws OutOfMemory naming the device and size when the heap is full.
  [[nodiscard]] ComPtr<ID3D12Resource> create_buffer(std::uint64_t size, HeapKind kind) const;
  [[nodiscard]] ComPtr<ID3D12CommandQueue> create_queue(D3D12_COMMAND_LIST_TYPE type) const;
  [[nodiscard]] ComPtr<ID3D12Fence> create_fence() const;

  // IDMLCommandRecorder is not free-threaded: recordings take this lock.
  [[nodiscard]] std::unique_lock<std::mutex> lock_recorder() const {
    return std::unique_lock(recorder_mutex_);
  }
  [[nodiscard]] api::IDMLCommandRecorder* recorder() const noexcept { return recorder_.Get(); }

 private:
  void check_hresult_on_device(HRESULT hr, std::string_view call) const;
  void query_features(bool host_visible);

  std::shared_ptr<const Runtime> runtime_;
  ComPtr<IDXGIAdapter3> adapter_;
  std::string id_;
  ComPtr<ID3D12Device> device_;
  ComPtr<api::IDMLDevice> dml_;
  ComPtr<api::IDMLCommandRecorder> recorder_;
  mutable std::mutex recorder_mutex_;
  Features features_;
};

// Blocks until `fence` reaches `value`. Throws DeviceError when the device
// is removed meanwhile (a removed device's fences jump to UINT64_MAX).
void wait_for_fence(const Context& context, ID3D12Fence* fence, std::uint64_t value);

}  // namespace exogpu::directml
