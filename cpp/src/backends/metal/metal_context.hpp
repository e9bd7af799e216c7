// What every object of one Metal device shares: the MTLDevice, its id for
// messages, its memory model, and the FMA pipeline compiled on first use.
#pragma once

#include "backends/metal/metal_types.hpp"

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "backends/metal/metal_library.hpp"
#include "backends/metal/metal_object.hpp"
#include "exogpu/device.hpp"

namespace exogpu::metal {

class Context {
 public:
  Context(std::shared_ptr<const Library> library, Retained<DeviceRef> device, std::string id,
          bool unified)
      : library_(std::move(library)), device_(std::move(device)), id_(std::move(id)),
        unified_(unified) {}

  [[nodiscard]] DeviceRef device() const noexcept { return device_.get(); }
  [[nodiscard]] const std::string& id() const noexcept { return id_; }
  // Unified memory: buffers are MTLStorageModeShared and the host addresses
  // them. Otherwise MTLStorageModePrivate, reached through staging copies.
  [[nodiscard]] bool unified() const noexcept { return unified_; }

  // A new buffer of `n` bytes (n > 0) in the device's storage mode, or in
  // shared storage when `shared`. Throws OutOfMemory when Metal returns nullptr.
  [[nodiscard]] Retained<BufferRef> new_buffer(std::size_t n, bool shared) const;

  // The FMA kernel's pipeline: its source compiled with
  // newLibraryWithSource: the first time, then cached. DeviceError carrying
  // Metal's NSError text when compiling fails.
  [[nodiscard]] PipelineRef fma_pipeline();

 private:
  std::shared_ptr<const Library> library_;
  Retained<DeviceRef> device_;
  std::string id_;
  bool unified_;
  std::mutex fma_mutex_;
  Retained<PipelineRef> fma_;
};

// Device memory: an MTLBuffer.
class MetalAllocation final : public Allocation {
 public:
  MetalAllocation(Retained<BufferRef> buffer, std::size_t size)
      : buffer_(std::move(buffer)), size_(size), host_([buffer_.get() contents]) {}
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }
  // Shared storage only; private storage has no CPU view.
  [[nodiscard]] void* host_ptr() const noexcept override { return host_; }
  [[nodiscard]] BufferRef buffer() const noexcept { return buffer_.get(); }

 private:
  Retained<BufferRef> buffer_;
  std::size_t size_;
  void* host_;
};

// The text of a Metal NSError ("unknown error" for nil).
[[nodiscard]] std::string describe(NSError* error);

}  // namespace exogpu::metal
