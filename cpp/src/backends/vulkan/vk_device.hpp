// A Vulkan physical device as an exogpu::Device.
#pragma once

#include <memory>

#include "exogpu/device.hpp"
#include "vk_context.hpp"
#include "vk_memory.hpp"
#include "vk_pipelines.hpp"
#include "vk_stream.hpp"

namespace exogpu::vulkan {

class VulkanDevice final : public Device {
 public:
  VulkanDevice(DeviceInfo info, std::shared_ptr<DeviceContext> context);
  ~VulkanDevice() override;

  [[nodiscard]] MemoryInfo memory_info() const override;
  [[nodiscard]] std::unique_ptr<HostBuffer> allocate_host(std::size_t n) override;
  [[nodiscard]] std::shared_ptr<Stream> create_stream() override;
  [[nodiscard]] double launch_fma(Stream& stream, const Buffer& buffer,
                                  std::uint32_t iterations) override;

  // The compute-shader copy, for tests and benchmarks beside copy_d2d.
  void shader_copy(Stream& stream, const Buffer& dst, std::size_t dst_offset, const Buffer& src,
                   std::size_t src_offset, std::size_t n);

  [[nodiscard]] DeviceContext& context() const noexcept { return *context_; }
  [[nodiscard]] AllocatorStats device_memory_stats() const { return device_memory_->stats(); }
  [[nodiscard]] AllocatorStats staging_memory_stats() const { return staging_memory_->stats(); }
  [[nodiscard]] const Pipelines& pipelines() const noexcept { return *pipelines_; }

 protected:
  [[nodiscard]] std::unique_ptr<Allocation> do_allocate(std::size_t n) override;

 private:
  [[nodiscard]] VulkanStream& own_stream(Stream& stream, const char* operation) const;
  std::shared_ptr<DeviceContext> context_;
  std::shared_ptr<MemoryAllocator> device_memory_;
  std::shared_ptr<MemoryAllocator> staging_memory_;
  std::shared_ptr<Pipelines> pipelines_;
  std::shared_ptr<TimestampQueries> queries_;
};

}  // namespace exogpu::vulkan
