// The embedded compute shaders (SPIR-V compiled from shaders/*.comp at build
// time) as pipelines, created on first use through one pipeline cache. All
// share a layout: two storage-buffer windows (binding 0: destination or data,
// binding 1: source) and 16 bytes of push constants.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>

#include "vk_context.hpp"

namespace exogpu::vulkan {

enum class Kernel : std::uint8_t { fill, copy, fma };
inline constexpr std::size_t kKernelCount = 3;
inline constexpr std::uint32_t kWorkgroupSize = 64;  // local_size_x of every shader

class Pipelines {
 public:
  explicit Pipelines(std::shared_ptr<DeviceContext> context);
  Pipelines(const Pipelines&) = delete;
  Pipelines& operator=(const Pipelines&) = delete;
  ~Pipelines();

  [[nodiscard]] VkPipeline get(Kernel kernel);
  [[nodiscard]] VkPipelineLayout layout() const noexcept { return layout_; }
  [[nodiscard]] VkDescriptorSetLayout set_layout() const noexcept { return set_layout_; }
  [[nodiscard]] VkPipelineCache cache() const noexcept { return cache_; }
  [[nodiscard]] int created() const;  // pipelines built so far

 private:
  void destroy_handles() noexcept;
  std::shared_ptr<DeviceContext> context_;
  VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
  VkPipelineLayout layout_ = VK_NULL_HANDLE;
  VkPipelineCache cache_ = VK_NULL_HANDLE;
  mutable std::mutex mutex_;
  std::array<VkPipeline, kKernelCount> pipelines_{};
};

}  // namespace exogpu::vulkan
