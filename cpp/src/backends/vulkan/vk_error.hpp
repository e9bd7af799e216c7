// VkResult to typed exogpu errors: out-of-memory results become OutOfMemory,
// device loss and every other failure a DeviceError naming the call.
#pragma once

#include <string>
#include <string_view>

#include "vk_symbols.hpp"

namespace exogpu::vulkan {

[[nodiscard]] std::string_view result_name(VkResult result) noexcept;

// Throws for any result below VK_SUCCESS: OutOfMemory for
// VK_ERROR_OUT_OF_{DEVICE,HOST}_MEMORY (naming `what`, e.g. the request),
// DeviceError naming the device, the call and the result otherwise.
void throw_result(VkResult result, std::string_view call, std::string_view device,
                  std::string_view what = {});

inline void check(VkResult result, std::string_view call, std::string_view device,
                  std::string_view what = {}) {
  if (result < VK_SUCCESS) throw_result(result, call, device, what);
}

}  // namespace exogpu::vulkan
