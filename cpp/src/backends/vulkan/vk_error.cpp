#include "vk_error.hpp"

#include "exogpu/error.hpp"

namespace exogpu::vulkan {

std::string_view result_name(VkResult result) noexcept {
  switch (result) {
#define EXOGPU_VK_RESULT(name) \
  case name:                   \
    return #name;
    EXOGPU_VK_RESULT(VK_SUCCESS)
    EXOGPU_VK_RESULT(VK_NOT_READY)
    EXOGPU_VK_RESULT(VK_TIMEOUT)
    EXOGPU_VK_RESULT(VK_EVENT_SET)
    EXOGPU_VK_RESULT(VK_EVENT_RESET)
    EXOGPU_VK_RESULT(VK_INCOMPLETE)
    EXOGPU_VK_RESULT(VK_ERROR_OUT_OF_HOST_MEMORY)
    EXOGPU_VK_RESULT(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    EXOGPU_VK_RESULT(VK_ERROR_INITIALIZATION_FAILED)
    EXOGPU_VK_RESULT(VK_ERROR_DEVICE_LOST)
    EXOGPU_VK_RESULT(VK_ERROR_MEMORY_MAP_FAILED)
    EXOGPU_VK_RESULT(VK_ERROR_LAYER_NOT_PRESENT)
    EXOGPU_VK_RESULT(VK_ERROR_EXTENSION_NOT_PRESENT)
    EXOGPU_VK_RESULT(VK_ERROR_FEATURE_NOT_PRESENT)
    EXOGPU_VK_RESULT(VK_ERROR_INCOMPATIBLE_DRIVER)
    EXOGPU_VK_RESULT(VK_ERROR_TOO_MANY_OBJECTS)
    EXOGPU_VK_RESULT(VK_ERROR_FORMAT_NOT_SUPPORTED)
    EXOGPU_VK_RESULT(VK_ERROR_FRAGMENTED_POOL)
    EXOGPU_VK_RESULT(VK_ERROR_UNKNOWN)
    EXOGPU_VK_RESULT(VK_ERROR_OUT_OF_POOL_MEMORY)
    EXOGPU_VK_RESULT(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    EXOGPU_VK_RESULT(VK_ERROR_FRAGMENTATION)
    EXOGPU_VK_RESULT(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
    EXOGPU_VK_RESULT(VK_PIPELINE_COMPILE_REQUIRED)
#undef EXOGPU_VK_RESULT
    default:
      return "VkResult(unknown)";
  }
}

void throw_result(VkResult result, std::string_view call, std::string_view device,
                  std::string_view what) {
  std::string where = std::string(device) + ": " + std::string(call) + " failed with " +
                      std::string(result_name(result)) + " (" + std::to_string(result) + ")";
  if (!what.empty()) where += " for " + std::string(what);
  switch (result) {
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
      throw OutOfMemory("out of device memory on " + std::string(device) +
                        (what.empty() ? std::string() : " allocating " + std::string(what)) +
                        " (" + std::string(call) + ": VK_ERROR_OUT_OF_DEVICE_MEMORY)");
    case VK_ERROR_OUT_OF_HOST_MEMORY:
      throw OutOfMemory("out of host memory on " + std::string(device) +
                        (what.empty() ? std::string() : " allocating " + std::string(what)) +
                        " (" + std::string(call) + ": VK_ERROR_OUT_OF_HOST_MEMORY)");
    case VK_ERROR_DEVICE_LOST:
      throw DeviceError("device lost: " + where);
    default:
      throw DeviceError(where);
  }
}

}  // namespace exogpu::vulkan
