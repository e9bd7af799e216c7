// Every Vulkan entry point the backend calls, listed once. The loader
// (libvulkan.so.1, vulkan-1.dll, libvulkan.1.dylib) is opened at run time and
// these tables are filled through vkGetInstanceProcAddr / vkGetDeviceProcAddr,
// so the library never links against Vulkan.
#pragma once

#ifndef VK_NO_PROTOTYPES
#define VK_NO_PROTOTYPES
#endif
#include <vulkan/vulkan.h>

// Resolved with vkGetInstanceProcAddr(nullptr, ...).
#define EXOGPU_VK_GLOBAL_FUNCTIONS(X)     \
  X(vkCreateInstance)                     \
  X(vkEnumerateInstanceVersion)           \
  X(vkEnumerateInstanceLayerProperties)   \
  X(vkEnumerateInstanceExtensionProperties)

// Resolved with vkGetInstanceProcAddr(instance, ...); all required.
#define EXOGPU_VK_INSTANCE_FUNCTIONS(X)          \
  X(vkDestroyInstance)                           \
  X(vkEnumeratePhysicalDevices)                  \
  X(vkGetPhysicalDeviceProperties)               \
  X(vkGetPhysicalDeviceProperties2)              \
  X(vkGetPhysicalDeviceMemoryProperties)         \
  X(vkGetPhysicalDeviceMemoryProperties2)        \
  X(vkGetPhysicalDeviceQueueFamilyProperties)    \
  X(vkGetPhysicalDeviceFeatures2)                \
  X(vkEnumerateDeviceExtensionProperties)        \
  X(vkCreateDevice)                              \
  X(vkGetDeviceProcAddr)

// Present only when VK_EXT_debug_utils is enabled (validation mode).
#define EXOGPU_VK_DEBUG_FUNCTIONS(X)  \
  X(vkCreateDebugUtilsMessengerEXT)   \
  X(vkDestroyDebugUtilsMessengerEXT)

// Resolved with vkGetDeviceProcAddr; all required (Vulkan 1.2 core).
#define EXOGPU_VK_DEVICE_FUNCTIONS(X)  \
  X(vkDestroyDevice)                   \
  X(vkGetDeviceQueue)                  \
  X(vkDeviceWaitIdle)                  \
  X(vkQueueSubmit)                     \
  X(vkAllocateMemory)                  \
  X(vkFreeMemory)                      \
  X(vkMapMemory)                       \
  X(vkUnmapMemory)                     \
  X(vkCreateBuffer)                    \
  X(vkDestroyBuffer)                   \
  X(vkGetBufferMemoryRequirements)     \
  X(vkBindBufferMemory)                \
  X(vkCreateCommandPool)               \
  X(vkDestroyCommandPool)              \
  X(vkAllocateCommandBuffers)          \
  X(vkFreeCommandBuffers)              \
  X(vkResetCommandBuffer)              \
  X(vkBeginCommandBuffer)              \
  X(vkEndCommandBuffer)                \
  X(vkCmdCopyBuffer)                   \
  X(vkCmdFillBuffer)                   \
  X(vkCmdPipelineBarrier)              \
  X(vkCmdBindPipeline)                 \
  X(vkCmdBindDescriptorSets)           \
  X(vkCmdPushConstants)                \
  X(vkCmdDispatch)                     \
  X(vkCmdWriteTimestamp)               \
  X(vkCmdResetQueryPool)               \
  X(vkCreateSemaphore)                 \
  X(vkDestroySemaphore)                \
  X(vkGetSemaphoreCounterValue)        \
  X(vkWaitSemaphores)                  \
  X(vkCreateQueryPool)                 \
  X(vkDestroyQueryPool)                \
  X(vkGetQueryPoolResults)             \
  X(vkCreateShaderModule)              \
  X(vkDestroyShaderModule)             \
  X(vkCreatePipelineCache)             \
  X(vkDestroyPipelineCache)            \
  X(vkCreateComputePipelines)          \
  X(vkDestroyPipeline)                 \
  X(vkCreatePipelineLayout)            \
  X(vkDestroyPipelineLayout)           \
  X(vkCreateDescriptorSetLayout)       \
  X(vkDestroyDescriptorSetLayout)      \
  X(vkCreateDescriptorPool)            \
  X(vkDestroyDescriptorPool)           \
  X(vkResetDescriptorPool)             \
  X(vkAllocateDescriptorSets)          \
  X(vkUpdateDescriptorSets)

namespace exogpu::vulkan {

#define EXOGPU_VK_DECLARE(name) PFN_##name name = nullptr;

struct GlobalFunctions {
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr = nullptr;
  EXOGPU_VK_GLOBAL_FUNCTIONS(EXOGPU_VK_DECLARE)
};

struct InstanceFunctions {
  EXOGPU_VK_INSTANCE_FUNCTIONS(EXOGPU_VK_DECLARE)
  EXOGPU_VK_DEBUG_FUNCTIONS(EXOGPU_VK_DECLARE)
};

struct DeviceFunctions {
  EXOGPU_VK_DEVICE_FUNCTIONS(EXOGPU_VK_DECLARE)
};

#undef EXOGPU_VK_DECLARE

}  // namespace exogpu::vulkan
