// One physical device as Vulkan describes it, and the logical device opened on
// it: queues (each with the mutex Vulkan's external synchronisation rules
// require), the memory types chosen for device buffers and staging, and the
// error check that remembers device loss.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "vk_instance.hpp"
#include "vk_symbols.hpp"

namespace exogpu::vulkan {

// Everything discovery learns about a physical device, before opening it.
struct PhysicalDeviceDescription {
  VkPhysicalDevice handle = VK_NULL_HANDLE;
  VkPhysicalDeviceProperties properties{};
  VkPhysicalDeviceIDProperties id{};
  VkPhysicalDeviceDriverProperties driver{};
  bool has_pci_bus_info = false;
  VkPhysicalDevicePCIBusInfoPropertiesEXT pci{};
  VkPhysicalDeviceMemoryProperties memory{};
  std::vector<VkQueueFamilyProperties> queue_families;
  std::vector<std::string> extensions;
  bool timeline_semaphore = false;
  [[nodiscard]] bool has_extension(std::string_view name) const;
};

[[nodiscard]] PhysicalDeviceDescription describe(const Instance& instance,
                                                 VkPhysicalDevice device);

// A queue and the lock that serialises its use.
struct Queue {
  VkQueue handle = VK_NULL_HANDLE;
  std::uint32_t family = 0;
  std::uint32_t timestamp_valid_bits = 0;
  std::mutex mutex;
};

struct ContextOptions {
  // Map device memory persistently when it is also host-visible, coherent and
  // cheap for the host to read (UMA, CPU drivers), so host copies are memcpy.
  bool map_device_memory = true;
};

class DeviceContext {
 public:
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;
  ~DeviceContext();

  // Opens the logical device; throws DeviceError/OutOfMemory on failure.
  [[nodiscard]] static std::shared_ptr<DeviceContext> create(std::shared_ptr<Instance> instance,
                                                             PhysicalDeviceDescription physical,
                                                             std::string id,
                                                             const ContextOptions& options);

  [[nodiscard]] const DeviceFunctions& fn() const noexcept { return fn_; }
  [[nodiscard]] VkDevice handle() const noexcept { return device_; }
  [[nodiscard]] const std::string& id() const noexcept { return id_; }
  [[nodiscard]] Instance& instance() const noexcept { return *instance_; }
  [[nodiscard]] const PhysicalDeviceDescription& physical() const noexcept { return physical_; }
  [[nodiscard]] const VkPhysicalDeviceLimits& limits() const noexcept {
    return physical_.properties.limits;
  }

  // Compute work (shaders, timestamps) and copies; the same queue unless the
  // device has a transfer-only family, which copies then prefer.
  [[nodiscard]] Queue& compute_queue() noexcept { return *compute_; }
  [[nodiscard]] Queue& transfer_queue() noexcept { return transfer_ ? *transfer_ : *compute_; }
  // Families buffers are shared between (concurrent sharing when two).
  [[nodiscard]] const std::vector<std::uint32_t>& families() const noexcept { return families_; }

  [[nodiscard]] std::uint32_t device_memory_type() const noexcept { return device_type_; }
  [[nodiscard]] std::uint32_t device_heap() const noexcept { return device_heap_; }
  [[nodiscard]] bool device_memory_mapped() const noexcept { return device_mapped_; }
  [[nodiscard]] std::uint32_t staging_memory_type() const noexcept { return staging_type_; }
  [[nodiscard]] std::uint64_t heap_size() const noexcept {
    return physical_.memory.memoryHeaps[device_heap_].size;
  }
  // Offset alignment every sub-allocation honours.
  [[nodiscard]] VkDeviceSize buffer_alignment() const noexcept { return alignment_; }
  [[nodiscard]] VkDeviceSize max_buffer_size() const noexcept { return max_buffer_size_; }
  [[nodiscard]] bool has_memory_budget() const noexcept { return has_budget_; }
  [[nodiscard]] VkBufferUsageFlags buffer_usage() const noexcept;

  // Throws (typed) on failure; remembers device loss so later calls fail fast.
  void check(VkResult result, std::string_view call, std::string_view what = {});
  void throw_if_lost() const;
  [[nodiscard]] bool lost() const noexcept { return lost_.load(); }
  // Marks the device lost (tests use it to exercise the error path).
  void mark_lost() noexcept { lost_.store(true); }

  void submit(Queue& queue, const VkSubmitInfo& info);
  // Creates a buffer over the device's families with this backend's usage.
  [[nodiscard]] VkBuffer create_buffer(VkDeviceSize size, std::string_view what);

 private:
  DeviceContext() = default;
  std::shared_ptr<Instance> instance_;
  PhysicalDeviceDescription physical_;
  std::string id_;
  DeviceFunctions fn_{};
  VkDevice device_ = VK_NULL_HANDLE;
  std::unique_ptr<Queue> compute_;
  std::unique_ptr<Queue> transfer_;  // null when there is no transfer-only family
  std::vector<std::uint32_t> families_;
  std::uint32_t device_type_ = 0;
  std::uint32_t device_heap_ = 0;
  bool device_mapped_ = false;
  std::uint32_t staging_type_ = 0;
  VkDeviceSize alignment_ = 256;
  VkDeviceSize max_buffer_size_ = 0;
  bool has_budget_ = false;
  std::atomic<bool> lost_{false};
};

}  // namespace exogpu::vulkan
