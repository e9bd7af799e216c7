// Sub-allocator for device and staging memory. Small buffers are carved out of
// large VkDeviceMemory blocks (each bound to one VkBuffer spanning the block),
// so thousands of buffers cost a handful of vkAllocateMemory calls and the
// count stays far below maxMemoryAllocationCount. Requests larger than half a
// block get a dedicated block. Offsets honour the device's alignment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "exogpu/device.hpp"
#include "vk_context.hpp"

namespace exogpu::vulkan {

class MemoryAllocator;

// One VkDeviceMemory with the VkBuffer that spans it.
struct MemoryBlock {
  VkDeviceMemory memory = VK_NULL_HANDLE;
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceSize size = 0;
  void* mapped = nullptr;
  bool dedicated = false;
  VkDeviceSize used = 0;
  std::map<VkDeviceSize, VkDeviceSize> free_ranges;  // offset -> size, coalesced
};

class VulkanAllocation final : public Allocation {
 public:
  VulkanAllocation(std::shared_ptr<MemoryAllocator> allocator, MemoryBlock* block,
                   VkDeviceSize offset, VkDeviceSize reserved, std::size_t size) noexcept
      : allocator_(std::move(allocator)),
        block_(block),
        offset_(offset),
        reserved_(reserved),
        size_(size) {}
  ~VulkanAllocation() override;
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }
  [[nodiscard]] void* host_ptr() const noexcept override {
    return block_->mapped != nullptr ? static_cast<std::byte*>(block_->mapped) + offset_ : nullptr;
  }
  [[nodiscard]] VkBuffer buffer() const noexcept { return block_->buffer; }
  [[nodiscard]] VkDeviceSize offset() const noexcept { return offset_; }
  // Size of the VkBuffer this allocation lives in (for descriptor windows).
  [[nodiscard]] VkDeviceSize buffer_size() const noexcept { return block_->size; }
  [[nodiscard]] const MemoryAllocator& allocator() const noexcept { return *allocator_; }

 private:
  std::shared_ptr<MemoryAllocator> allocator_;
  MemoryBlock* block_;
  VkDeviceSize offset_;
  VkDeviceSize reserved_;
  std::size_t size_;
};

struct AllocatorStats {
  std::uint64_t device_memory_objects = 0;  // live VkDeviceMemory
  std::uint64_t bytes_reserved = 0;         // in those objects
  std::uint64_t bytes_in_use = 0;           // carved out for live allocations
  std::uint64_t live_allocations = 0;
};

class MemoryAllocator : public std::enable_shared_from_this<MemoryAllocator> {
 public:
  static constexpr VkDeviceSize kDefaultBlockSize = VkDeviceSize{64} << 20;

  MemoryAllocator(std::shared_ptr<DeviceContext> context, std::uint32_t memory_type, bool map,
                  std::string purpose, VkDeviceSize block_size = kDefaultBlockSize);
  MemoryAllocator(const MemoryAllocator&) = delete;
  MemoryAllocator& operator=(const MemoryAllocator&) = delete;
  ~MemoryAllocator();

  // n > 0. Throws OutOfMemory naming the device and the request.
  [[nodiscard]] std::unique_ptr<VulkanAllocation> allocate(std::size_t n);
  [[nodiscard]] AllocatorStats stats() const;
  [[nodiscard]] VkDeviceSize block_size() const noexcept { return block_size_; }
  [[nodiscard]] DeviceContext& context() const noexcept { return *context_; }

 private:
  friend class VulkanAllocation;
  void release(MemoryBlock* block, VkDeviceSize offset, VkDeviceSize size) noexcept;
  std::unique_ptr<MemoryBlock> create_block(VkDeviceSize size, bool dedicated, std::size_t request);
  void destroy_block(MemoryBlock& block) noexcept;
  static bool carve(MemoryBlock& block, VkDeviceSize size, VkDeviceSize& offset);

  std::shared_ptr<DeviceContext> context_;
  std::uint32_t memory_type_;
  bool map_;
  std::string purpose_;
  VkDeviceSize block_size_;
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<MemoryBlock>> blocks_;
  AllocatorStats stats_;
};

[[nodiscard]] std::string format_bytes(std::uint64_t bytes);

}  // namespace exogpu::vulkan
