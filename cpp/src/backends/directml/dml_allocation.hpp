// A buffer of a DirectML device: one committed resource, in the DEFAULT heap
// or, on cache-coherent UMA adapters, in a host-visible custom heap that
// stays mapped, so the host reads and writes it in place.
#pragma once

#include <cstddef>

#include "backends/directml/dml_context.hpp"
#include "exogpu/device.hpp"

namespace exogpu::directml {

class DmlAllocation final : public Allocation {
 public:
  DmlAllocation(ComPtr<ID3D12Resource> resource, std::size_t size, void* mapped)
      : resource_(std::move(resource)), size_(size), mapped_(mapped) {}
  ~DmlAllocation() override {
    if (mapped_ != nullptr) resource_->Unmap(0, nullptr);
  }
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }
  [[nodiscard]] void* host_ptr() const noexcept override { return mapped_; }
  [[nodiscard]] ID3D12Resource* resource() const noexcept { return resource_.Get(); }

 private:
  ComPtr<ID3D12Resource> resource_;
  std::size_t size_;
  void* mapped_;
};

// Buffers reaching a DirectML stream were checked to live on its device, so
// their allocations are this backend's.
inline ID3D12Resource* resource_of(const std::shared_ptr<Allocation>& allocation) {
  return static_cast<const DmlAllocation&>(*allocation).resource();
}

}  // namespace exogpu::directml
