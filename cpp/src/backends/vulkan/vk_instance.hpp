// The Vulkan loader, opened at run time, and one VkInstance per backend. In
// validation mode (EXOGPU_VULKAN_VALIDATION=1) the instance enables the
// Khronos validation layer and a debug messenger that records every warning
// and error; streams rethrow them at their next synchronisation so that a test
// cannot pass while the layer complains.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vk_symbols.hpp"

namespace exogpu::vulkan {

// The dynamically opened loader library (RAII).
class LoaderLibrary {
 public:
  LoaderLibrary() = default;
  LoaderLibrary(const LoaderLibrary&) = delete;
  LoaderLibrary& operator=(const LoaderLibrary&) = delete;
  ~LoaderLibrary();
  // Opens the platform's loader; on failure returns false and sets `error`.
  bool open(std::string& error);
  [[nodiscard]] PFN_vkGetInstanceProcAddr get_instance_proc_addr() const noexcept {
    return get_instance_proc_addr_;
  }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  void* handle_ = nullptr;
  std::string name_;
  PFN_vkGetInstanceProcAddr get_instance_proc_addr_ = nullptr;
};

struct InstanceOptions {
  bool validation = false;  // VK_LAYER_KHRONOS_validation + debug messenger
};

class Instance {
 public:
  Instance() = default;
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;
  ~Instance();

  // Opens the loader and creates the instance. Never throws: nullptr with a
  // reason a user can act on.
  [[nodiscard]] static std::shared_ptr<Instance> create(const InstanceOptions& options,
                                                        std::string& reason);

  [[nodiscard]] VkInstance handle() const noexcept { return instance_; }
  [[nodiscard]] const InstanceFunctions& fn() const noexcept { return fn_; }
  [[nodiscard]] std::uint32_t loader_version() const noexcept { return loader_version_; }
  [[nodiscard]] std::uint32_t api_version() const noexcept { return api_version_; }
  [[nodiscard]] bool validation() const noexcept { return validation_; }

  // Validation messages (warnings and errors) seen so far, in total.
  [[nodiscard]] std::uint64_t validation_message_count() const noexcept {
    return message_count_.load();
  }
  // Removes and returns the messages not yet taken.
  [[nodiscard]] std::vector<std::string> take_validation_messages();
  // Throws DeviceError listing the messages not yet taken, if any.
  void check_validation(const std::string& where);
  void record_message(std::string message);

 private:
  LoaderLibrary library_;
  GlobalFunctions global_{};
  InstanceFunctions fn_{};
  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  std::uint32_t loader_version_ = VK_API_VERSION_1_0;
  std::uint32_t api_version_ = VK_API_VERSION_1_0;
  bool validation_ = false;
  std::atomic<std::uint64_t> message_count_{0};
  std::mutex messages_mutex_;
  std::vector<std::string> pending_messages_;
};

[[nodiscard]] std::string version_string(std::uint32_t version);

}  // namespace exogpu::vulkan
