#include "vk_backend.hpp"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/identity.hpp"
#include "exogpu/error.hpp"
#include "vk_device.hpp"
#include "vk_error.hpp"
#include "vk_instance.hpp"

namespace exogpu::vulkan {
namespace {

bool env_flag(const char* name, bool fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  std::string v(value);
  for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return false;
  throw InvalidArgument(std::string(name) + "=" + value + " is not a boolean (use 1 or 0)");
}

std::string vendor_name(std::uint32_t vendor_id, const VkPhysicalDeviceDriverProperties& driver) {
  switch (vendor_id) {
    case 0x1002: return "AMD";
    case 0x1010: return "Imagination";
    case 0x106B: return "Apple";
    case 0x10DE: return "NVIDIA";
    case 0x13B5: return "ARM";
    case 0x14E4: return "Broadcom";
    case 0x5143: return "Qualcomm";
    case 0x8086: return "Intel";
    case VK_VENDOR_ID_MESA: return "Mesa";
    case VK_VENDOR_ID_VIV: return "Vivante";
    case VK_VENDOR_ID_VSI: return "VeriSilicon";
    case VK_VENDOR_ID_KAZAN: return "Kazan";
    case VK_VENDOR_ID_CODEPLAY: return "Codeplay";
    case VK_VENDOR_ID_POCL: return "PoCL";
    default: break;
  }
  if (driver.driverName[0] != '\0') return driver.driverName;
  char text[16];
  std::snprintf(text, sizeof text, "0x%04x", vendor_id);
  return text;
}

DeviceKind device_kind(VkPhysicalDeviceType type) {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return DeviceKind::cpu;
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return DeviceKind::discrete;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return DeviceKind::integrated;
    default: return DeviceKind::virtual_device;
  }
}

class VulkanBackend final : public Backend {
 public:
  explicit VulkanBackend(const VulkanOptions& options) : options_(options) {}
  [[nodiscard]] std::string_view name() const noexcept override { return "vulkan"; }
  [[nodiscard]] BackendStatus open() override;
  [[nodiscard]] std::vector<std::shared_ptr<Device>> devices() override { return devices_; }

 private:
  VulkanOptions options_;
  std::shared_ptr<Instance> instance_;
  std::vector<std::shared_ptr<Device>> devices_;
};

BackendStatus VulkanBackend::open() {
  BackendStatus status;
  status.name = "vulkan";
  devices_.clear();
  try {
    std::string reason;
    instance_ = Instance::create(InstanceOptions{options_.validation}, reason);
    if (!instance_) {
      status.reason = reason;
      return status;
    }
    status.runtime_version = version_string(instance_->loader_version());
    const InstanceFunctions& fn = instance_->fn();
    std::uint32_t count = 0;
    VkResult result = fn.vkEnumeratePhysicalDevices(instance_->handle(), &count, nullptr);
    std::vector<VkPhysicalDevice> physical(count);
    if (result == VK_SUCCESS && count > 0) {
      result = fn.vkEnumeratePhysicalDevices(instance_->handle(), &count, physical.data());
    }
    if (result < VK_SUCCESS) {
      status.reason = "vkEnumeratePhysicalDevices failed with " + std::string(result_name(result));
      return status;
    }
    physical.resize(count);
    std::vector<std::string> skipped;
    for (VkPhysicalDevice handle : physical) {
      PhysicalDeviceDescription d = describe(*instance_, handle);
      const std::string name = d.properties.deviceName;
      if (d.properties.apiVersion < VK_API_VERSION_1_2 || !d.timeline_semaphore) {
        skipped.push_back(name + ": Vulkan " + version_string(d.properties.apiVersion) +
                          " without timeline semaphores (1.2 needed)");
        continue;
      }
      DeviceInfo info;
      info.index = static_cast<int>(devices_.size());
      info.id = "vulkan:" + std::to_string(info.index);
      info.backend = "vulkan";
      info.name = name;
      info.vendor = vendor_name(d.properties.vendorID, d.driver);
      info.kind = device_kind(d.properties.deviceType);
      info.uuid = format_uuid(std::span<const std::uint8_t, VK_UUID_SIZE>(d.id.deviceUUID));
      if (d.has_pci_bus_info) {
        info.pci_bus_id = format_pci_bus_id(d.pci.pciDomain, d.pci.pciBus, d.pci.pciDevice,
                                            d.pci.pciFunction);
      }
      // Drivers on Windows report the adapter's LUID, which D3D12 and CUDA share.
      if (d.id.deviceLUIDValid == VK_TRUE) {
        info.luid = format_luid(std::span<const std::uint8_t, VK_LUID_SIZE>(d.id.deviceLUID));
      }
      info.pci_vendor_id = d.properties.vendorID;
      info.pci_device_id = d.properties.deviceID;
      info.emulated_on_host = d.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
      info.unified_memory = d.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ||
                            d.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
      try {
        auto context = DeviceContext::create(instance_, std::move(d), info.id,
                                             ContextOptions{options_.map_device_memory});
        info.memory_total = context->heap_size();
        devices_.push_back(std::make_shared<VulkanDevice>(std::move(info), std::move(context)));
      } catch (const std::exception& e) {
        skipped.push_back(name + ": " + e.what());
      }
    }
    status.device_count = static_cast<int>(devices_.size());
    status.available = !devices_.empty();
    if (devices_.empty()) {
      status.reason = physical.empty() ? "Vulkan loader found, no physical device"
                                       : "no usable Vulkan device";
      for (const auto& s : skipped) status.reason += "; " + s;
    }
  } catch (const std::exception& e) {
    devices_.clear();
    status.available = false;
    status.device_count = 0;
    status.reason = std::string("Vulkan initialisation failed: ") + e.what();
  }
  return status;
}

}  // namespace

VulkanOptions VulkanOptions::from_environment() {
  VulkanOptions options;
  options.validation = env_flag("EXOGPU_VULKAN_VALIDATION", false);
  options.map_device_memory = env_flag("EXOGPU_VULKAN_HOST_MAPPED", true);
  return options;
}

std::unique_ptr<Backend> make_backend(const VulkanOptions& options) {
  return std::make_unique<VulkanBackend>(options);
}

}  // namespace exogpu::vulkan

namespace exogpu {

std::unique_ptr<Backend> make_vulkan_backend() {
  vulkan::VulkanOptions options;
  try {
    options = vulkan::VulkanOptions::from_environment();
  } catch (const std::exception& e) {
    // Bad settings must not take the registry down: the backend reports them.
    struct Misconfigured final : Backend {
      std::string why;
      [[nodiscard]] std::string_view name() const noexcept override { return "vulkan"; }
      [[nodiscard]] BackendStatus open() override { return {"vulkan", false, why, 0, {}, {}}; }
      [[nodiscard]] std::vector<std::shared_ptr<Device>> devices() override { return {}; }
    };
    auto backend = std::make_unique<Misconfigured>();
    backend->why = e.what();
    return backend;
  }
  return vulkan::make_backend(options);
}

}  // namespace exogpu
