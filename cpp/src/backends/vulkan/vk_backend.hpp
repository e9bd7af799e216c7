// The Vulkan backend: discovery of every physical device through the loader
// opened at run time. Environment:
//   EXOGPU_VULKAN_VALIDATION=1   Khronos validation layer + debug messenger;
//                                any warning or error fails the next sync.
//   EXOGPU_VULKAN_HOST_MAPPED=0  never map device memory (forces the staged
//                                transfer path even on UMA / CPU drivers).
#pragma once

#include <memory>

#include "exogpu/registry.hpp"
#include "vk_symbols.hpp"

namespace exogpu::vulkan {

struct VulkanOptions {
  bool validation = false;
  bool map_device_memory = true;
  [[nodiscard]] static VulkanOptions from_environment();
};

[[nodiscard]] std::unique_ptr<Backend> make_backend(const VulkanOptions& options);

}  // namespace exogpu::vulkan

namespace exogpu {
// Declared for the registry in core/backends.hpp; options from the environment.
[[nodiscard]] std::unique_ptr<Backend> make_vulkan_backend();
}  // namespace exogpu
