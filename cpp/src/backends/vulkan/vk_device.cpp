#include "vk_device.hpp"

#include "exogpu/error.hpp"

namespace exogpu::vulkan {
namespace {

// Host memory from the staging heap: mapped, coherent and pinned by the driver.
class VulkanHostBuffer final : public HostBuffer {
 public:
  explicit VulkanHostBuffer(std::unique_ptr<VulkanAllocation> memory) noexcept
      : memory_(std::move(memory)) {}
  [[nodiscard]] void* data() const noexcept override {
    return memory_ ? memory_->host_ptr() : nullptr;
  }
  [[nodiscard]] std::size_t size() const noexcept override {
    return memory_ ? memory_->size() : 0;
  }
  [[nodiscard]] bool page_locked() const noexcept override { return memory_ != nullptr; }

 private:
  std::unique_ptr<VulkanAllocation> memory_;
};

}  // namespace

VulkanDevice::VulkanDevice(DeviceInfo info, std::shared_ptr<DeviceContext> context)
    : Device(std::move(info)), context_(std::move(context)) {
  device_memory_ = std::make_shared<MemoryAllocator>(
      context_, context_->device_memory_type(), context_->device_memory_mapped(),
      "device memory");
  staging_memory_ = std::make_shared<MemoryAllocator>(context_, context_->staging_memory_type(),
                                                      /*map=*/true, "staging memory");
  pipelines_ = std::make_shared<Pipelines>(context_);
  queries_ = std::make_shared<TimestampQueries>(context_);
}

VulkanDevice::~VulkanDevice() { release_default_objects(); }

MemoryInfo VulkanDevice::memory_info() const {
  const std::uint32_t heap = context_->device_heap();
  MemoryInfo info;
  info.total = context_->heap_size();
  if (context_->has_memory_budget()) {
    VkPhysicalDeviceMemoryBudgetPropertiesEXT budget{};
    budget.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT;
    VkPhysicalDeviceMemoryProperties2 props{};
    props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2;
    props.pNext = &budget;
    context_->instance().fn().vkGetPhysicalDeviceMemoryProperties2(context_->physical().handle,
                                                                   &props);
    const std::uint64_t limit = std::min<std::uint64_t>(budget.heapBudget[heap], info.total);
    info.free = limit > budget.heapUsage[heap] ? limit - budget.heapUsage[heap] : 0;
    info.source = MemorySource::budget;
    return info;
  }
  // No budget extension: the heap size less what this process holds in it.
  std::uint64_t used = device_memory_->stats().bytes_reserved;
  const auto& memory = context_->physical().memory;
  if (memory.memoryTypes[context_->staging_memory_type()].heapIndex == heap) {
    used += staging_memory_->stats().bytes_reserved;
  }
  info.free = info.total > used ? info.total - used : 0;
  info.source = MemorySource::estimate;
  return info;
}

std::unique_ptr<Allocation> VulkanDevice::do_allocate(std::size_t n) {
  auto allocation = device_memory_->allocate(n);
  context_->instance().check_validation("allocate on " + id());
  return allocation;
}

std::unique_ptr<HostBuffer> VulkanDevice::allocate_host(std::size_t n) {
  if (n == 0) return std::make_unique<VulkanHostBuffer>(nullptr);
  return std::make_unique<VulkanHostBuffer>(staging_memory_->allocate(n));
}

std::shared_ptr<Stream> VulkanDevice::create_stream() {
  return std::make_shared<VulkanStream>(
      *this, StreamResources{context_, staging_memory_, pipelines_, queries_});
}

VulkanStream& VulkanDevice::own_stream(Stream& stream, const char* operation) const {
  auto* vk_stream = dynamic_cast<VulkanStream*>(&stream);
  if (vk_stream == nullptr || &stream.device() != this) {
    throw InvalidArgument(std::string(operation) + ": the stream belongs to " +
                          stream.device().id() + ", not " + id());
  }
  return *vk_stream;
}

double VulkanDevice::launch_fma(Stream& stream, const Buffer& buffer, std::uint32_t iterations) {
  return own_stream(stream, "launch_fma").fma(buffer, iterations);
}

void VulkanDevice::shader_copy(Stream& stream, const Buffer& dst, std::size_t dst_offset,
                               const Buffer& src, std::size_t src_offset, std::size_t n) {
  own_stream(stream, "shader_copy").shader_copy(dst, dst_offset, src, src_offset, n);
}

}  // namespace exogpu::vulkan
