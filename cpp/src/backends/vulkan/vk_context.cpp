#include "vk_context.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "exogpu/error.hpp"
#include "vk_error.hpp"

namespace exogpu::vulkan {

bool PhysicalDeviceDescription::has_extension(std::string_view name) const {
  return std::find(extensions.begin(), extensions.end(), name) != extensions.end();
}

PhysicalDeviceDescription describe(const Instance& instance, VkPhysicalDevice device) {
  const InstanceFunctions& fn = instance.fn();
  PhysicalDeviceDescription d;
  d.handle = device;
  std::uint32_t count = 0;
  fn.vkEnumerateDeviceExtensionProperties(device, nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> extensions(count);
  fn.vkEnumerateDeviceExtensionProperties(device, nullptr, &count, extensions.data());
  for (const auto& e : extensions) d.extensions.emplace_back(e.extensionName);

  fn.vkGetPhysicalDeviceProperties(device, &d.properties);
  d.id.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES;
  d.driver.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
  d.pci.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PCI_BUS_INFO_PROPERTIES_EXT;
  d.id.pNext = &d.driver;
  d.has_pci_bus_info = d.has_extension(VK_EXT_PCI_BUS_INFO_EXTENSION_NAME);
  if (d.has_pci_bus_info) d.driver.pNext = &d.pci;
  VkPhysicalDeviceProperties2 properties2{};
  properties2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
  properties2.pNext = &d.id;
  fn.vkGetPhysicalDeviceProperties2(device, &properties2);
  d.id.pNext = nullptr;
  d.driver.pNext = nullptr;
  d.pci.pNext = nullptr;

  fn.vkGetPhysicalDeviceMemoryProperties(device, &d.memory);
  fn.vkGetPhysicalDeviceQueueFamilyProperties(device, &count, nullptr);
  d.queue_families.resize(count);
  fn.vkGetPhysicalDeviceQueueFamilyProperties(device, &count, d.queue_families.data());

  if (d.properties.apiVersion >= VK_API_VERSION_1_2) {
    VkPhysicalDeviceVulkan12Features features12{};
    features12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
    VkPhysicalDeviceFeatures2 features{};
    features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
    features.pNext = &features12;
    fn.vkGetPhysicalDeviceFeatures2(device, &features);
    d.timeline_semaphore = features12.timelineSemaphore == VK_TRUE;
  }
  return d;
}

namespace {

// Picks a memory type among `allowed` with all `required` flags, preferring
// more of `preferred` and, on ties, the larger heap.
int pick_memory_type(const VkPhysicalDeviceMemoryProperties& memory, std::uint32_t allowed,
                     VkMemoryPropertyFlags required, VkMemoryPropertyFlags preferred,
                     VkMemoryPropertyFlags avoided, int only_heap = -1) {
  int best = -1;
  long best_score = -1;
  for (std::uint32_t i = 0; i < memory.memoryTypeCount; ++i) {
    if ((allowed & (1U << i)) == 0) continue;
    const VkMemoryType& type = memory.memoryTypes[i];
    if ((type.propertyFlags & required) != required) continue;
    if (only_heap >= 0 && type.heapIndex != static_cast<std::uint32_t>(only_heap)) continue;
    // Protected or lazily allocated memory cannot back ordinary buffers.
    if ((type.propertyFlags &
         (VK_MEMORY_PROPERTY_PROTECTED_BIT | VK_MEMORY_PROPERTY_LAZILY_ALLOCATED_BIT)) != 0) {
      continue;
    }
    long score = 4L * std::popcount(type.propertyFlags & preferred) -
                 2L * std::popcount(type.propertyFlags & avoided);
    if (score > best_score) {
      best = static_cast<int>(i);
      best_score = score;
    }
  }
  return best;
}

}  // namespace

VkBufferUsageFlags DeviceContext::buffer_usage() const noexcept {
  return VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT |
         VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
}

std::shared_ptr<DeviceContext> DeviceContext::create(std::shared_ptr<Instance> instance,
                                                     PhysicalDeviceDescription physical,
                                                     std::string id,
                                                     const ContextOptions& options) {
  std::shared_ptr<DeviceContext> self(new DeviceContext());
  self->instance_ = std::move(instance);
  self->physical_ = std::move(physical);
  self->id_ = std::move(id);
  const InstanceFunctions& ifn = self->instance_->fn();
  const PhysicalDeviceDescription& pd = self->physical_;

  // Queue families: one with compute (timestamps preferred) for shaders and
  // events, and a transfer-only one, when the device has it, for copies.
  int compute_family = -1;
  int transfer_family = -1;
  for (std::uint32_t i = 0; i < pd.queue_families.size(); ++i) {
    const auto& f = pd.queue_families[i];
    if (f.queueCount == 0) continue;
    bool compute = (f.queueFlags & VK_QUEUE_COMPUTE_BIT) != 0;
    bool graphics = (f.queueFlags & VK_QUEUE_GRAPHICS_BIT) != 0;
    bool transfer = (f.queueFlags & VK_QUEUE_TRANSFER_BIT) != 0;
    if (compute && (compute_family < 0 ||
                    (pd.queue_families[compute_family].timestampValidBits == 0 &&
                     f.timestampValidBits != 0))) {
      compute_family = static_cast<int>(i);
    }
    if (transfer && !compute && !graphics && transfer_family < 0) {
      transfer_family = static_cast<int>(i);
    }
  }
  if (compute_family < 0) {
    throw DeviceError(self->id_ + ": no Vulkan queue family supports compute");
  }
  float priority = 1.0F;
  std::vector<VkDeviceQueueCreateInfo> queue_infos;
  for (int family : {compute_family, transfer_family}) {
    if (family < 0) continue;
    VkDeviceQueueCreateInfo q{};
    q.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
    q.queueFamilyIndex = static_cast<std::uint32_t>(family);
    q.queueCount = 1;
    q.pQueuePriorities = &priority;
    queue_infos.push_back(q);
    self->families_.push_back(static_cast<std::uint32_t>(family));
  }

  std::vector<const char*> extensions;
  if (pd.has_extension(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME)) {
    extensions.push_back(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    self->has_budget_ = true;
  }
  // Portability implementations (MoltenVK) must have their subset enabled.
  if (pd.has_extension("VK_KHR_portability_subset")) {
    extensions.push_back("VK_KHR_portability_subset");
  }
  VkPhysicalDeviceVulkan12Features features12{};
  features12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
  features12.timelineSemaphore = VK_TRUE;
  VkDeviceCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
  info.pNext = &features12;
  info.queueCreateInfoCount = static_cast<std::uint32_t>(queue_infos.size());
  info.pQueueCreateInfos = queue_infos.data();
  info.enabledExtensionCount = static_cast<std::uint32_t>(extensions.size());
  info.ppEnabledExtensionNames = extensions.data();
  self->check(ifn.vkCreateDevice(pd.handle, &info, nullptr, &self->device_), "vkCreateDevice");

  auto gdpa = ifn.vkGetDeviceProcAddr;
  VkDevice device = self->device_;
#define EXOGPU_VK_LOAD(name) \
  self->fn_.name = reinterpret_cast<PFN_##name>(gdpa(device, #name));
  EXOGPU_VK_DEVICE_FUNCTIONS(EXOGPU_VK_LOAD)
#undef EXOGPU_VK_LOAD
#define EXOGPU_VK_REQUIRE(name) \
  if (self->fn_.name == nullptr) throw DeviceError(self->id_ + ": driver lacks " #name);
  EXOGPU_VK_DEVICE_FUNCTIONS(EXOGPU_VK_REQUIRE)
#undef EXOGPU_VK_REQUIRE

  auto make_queue = [&](int family) {
    auto q = std::make_unique<Queue>();
    q->family = static_cast<std::uint32_t>(family);
    q->timestamp_valid_bits = pd.queue_families[static_cast<std::size_t>(family)].timestampValidBits;
    self->fn_.vkGetDeviceQueue(device, q->family, 0, &q->handle);
    return q;
  };
  self->compute_ = make_queue(compute_family);
  if (transfer_family >= 0) self->transfer_ = make_queue(transfer_family);

  // Limits: the largest buffer one VkBuffer/VkDeviceMemory may have.
  VkPhysicalDeviceMaintenance3Properties m3{};
  m3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
  VkPhysicalDeviceMaintenance4Properties m4{};
  m4.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_4_PROPERTIES;
  if (pd.properties.apiVersion >= VK_API_VERSION_1_3) m3.pNext = &m4;
  VkPhysicalDeviceProperties2 props2{};
  props2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
  props2.pNext = &m3;
  ifn.vkGetPhysicalDeviceProperties2(pd.handle, &props2);
  self->max_buffer_size_ = m3.maxMemoryAllocationSize;
  if (m4.maxBufferSize != 0) self->max_buffer_size_ = std::min(self->max_buffer_size_, m4.maxBufferSize);

  // Memory types: learn which types a buffer of our usage may live in.
  VkBuffer probe = self->create_buffer(4096, "a probe buffer");
  VkMemoryRequirements req{};
  self->fn_.vkGetBufferMemoryRequirements(device, probe, &req);
  self->fn_.vkDestroyBuffer(device, probe, nullptr);
  self->alignment_ = std::max<VkDeviceSize>(
      {VkDeviceSize{256}, req.alignment, pd.properties.limits.minStorageBufferOffsetAlignment});

  const VkPhysicalDeviceMemoryProperties& mem = pd.memory;
  int heap = -1;
  for (std::uint32_t i = 0; i < mem.memoryHeapCount; ++i) {
    if ((mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) == 0) continue;
    bool usable = false;
    for (std::uint32_t t = 0; t < mem.memoryTypeCount; ++t) {
      usable = usable || (mem.memoryTypes[t].heapIndex == i && (req.memoryTypeBits & (1U << t)) &&
                          (mem.memoryTypes[t].propertyFlags & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT));
    }
    if (usable && (heap < 0 || mem.memoryHeaps[i].size > mem.memoryHeaps[heap].size)) {
      heap = static_cast<int>(i);
    }
  }
  constexpr VkMemoryPropertyFlags kMapped =
      VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  int device_type = -1;
  if (heap >= 0) {
    device_type = pick_memory_type(mem, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT,
                                   options.map_device_memory ? kMapped | VK_MEMORY_PROPERTY_HOST_CACHED_BIT : 0,
                                   options.map_device_memory ? 0 : kMapped, heap);
  }
  if (device_type < 0) device_type = pick_memory_type(mem, req.memoryTypeBits, 0, 0, 0);
  if (device_type < 0) throw DeviceError(self->id_ + ": no memory type can hold a buffer");
  self->device_type_ = static_cast<std::uint32_t>(device_type);
  self->device_heap_ = mem.memoryTypes[device_type].heapIndex;
  VkMemoryPropertyFlags device_flags = mem.memoryTypes[device_type].propertyFlags;
  // Mapped device memory pays off only where host reads are cheap: cached
  // memory, or a device that shares the host's memory (UMA, CPU drivers).
  // Write-combined BAR memory on a discrete GPU would make reads crawl.
  bool shares_host_memory =
      pd.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ||
      pd.properties.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
  self->device_mapped_ =
      options.map_device_memory && (device_flags & kMapped) == kMapped &&
      (shares_host_memory || (device_flags & VK_MEMORY_PROPERTY_HOST_CACHED_BIT) != 0);

  int staging = pick_memory_type(mem, req.memoryTypeBits, kMapped,
                                 VK_MEMORY_PROPERTY_HOST_CACHED_BIT,
                                 shares_host_memory ? 0 : VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
  if (staging < 0) throw DeviceError(self->id_ + ": no host-visible coherent memory for staging");
  self->staging_type_ = static_cast<std::uint32_t>(staging);
  return self;
}

DeviceContext::~DeviceContext() {
  if (device_ == VK_NULL_HANDLE) return;
  if (fn_.vkDeviceWaitIdle != nullptr) fn_.vkDeviceWaitIdle(device_);
  if (fn_.vkDestroyDevice != nullptr) fn_.vkDestroyDevice(device_, nullptr);
}

void DeviceContext::check(VkResult result, std::string_view call, std::string_view what) {
  if (result >= VK_SUCCESS) return;
  if (result == VK_ERROR_DEVICE_LOST) lost_.store(true);
  throw_result(result, call, id_, what);
}

void DeviceContext::throw_if_lost() const {
  if (lost_.load()) {
    throw DeviceError("device lost: " + id_ +
                      " reported VK_ERROR_DEVICE_LOST earlier; its work and memory are gone");
  }
}

void DeviceContext::submit(Queue& queue, const VkSubmitInfo& info) {
  throw_if_lost();
  VkResult result;
  {
    std::lock_guard lock(queue.mutex);
    result = fn_.vkQueueSubmit(queue.handle, 1, &info, VK_NULL_HANDLE);
  }
  check(result, "vkQueueSubmit");
}

VkBuffer DeviceContext::create_buffer(VkDeviceSize size, std::string_view what) {
  VkBufferCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
  info.size = size;
  info.usage = buffer_usage();
  if (families_.size() > 1) {
    // Concurrent sharing lets copy and compute queues use a buffer without
    // queue-family ownership transfers.
    info.sharingMode = VK_SHARING_MODE_CONCURRENT;
    info.queueFamilyIndexCount = static_cast<std::uint32_t>(families_.size());
    info.pQueueFamilyIndices = families_.data();
  } else {
    info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  }
  VkBuffer buffer = VK_NULL_HANDLE;
  check(fn_.vkCreateBuffer(device_, &info, nullptr, &buffer), "vkCreateBuffer", what);
  return buffer;
}

}  // namespace exogpu::vulkan
