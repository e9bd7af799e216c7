#include "vk_memory.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#if !defined(_WIN32)
#include <sys/mman.h>
#endif

#include "exogpu/error.hpp"

namespace exogpu::vulkan {

namespace {

// Host-visible memory of a CPU or integrated device is ordinary host memory:
// offering its 2 MiB-aligned interior to transparent huge pages makes large
// copies faster (fewer TLB misses). Only a hint; failures are ignored.
void advise_huge_pages(void* mapped, VkDeviceSize size) {
#if defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHugePage = std::uintptr_t{2} << 20;
  const auto begin = (reinterpret_cast<std::uintptr_t>(mapped) + kHugePage - 1) & ~(kHugePage - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(mapped) + size) & ~(kHugePage - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)mapped;
  (void)size;
#endif
}

}  // namespace


std::string format_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  char text[64];
  if (unit == 0) {
    std::snprintf(text, sizeof text, "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(text, sizeof text, "%.1f %s (%llu bytes)", value, kUnits[unit],
                  static_cast<unsigned long long>(bytes));
  }
  return text;
}

VulkanAllocation::~VulkanAllocation() { allocator_->release(block_, offset_, reserved_); }

MemoryAllocator::MemoryAllocator(std::shared_ptr<DeviceContext> context,
                                 std::uint32_t memory_type, bool map, std::string purpose,
                                 VkDeviceSize block_size)
    : context_(std::move(context)),
      memory_type_(memory_type),
      map_(map),
      purpose_(std::move(purpose)),
      block_size_(block_size) {
  // Small heaps (and small maxBufferSize) get smaller blocks.
  const VkDeviceSize heap = context_->physical()
                                .memory.memoryHeaps[context_->physical().memory.memoryTypes[memory_type].heapIndex]
                                .size;
  block_size_ = std::min({block_size_, std::max<VkDeviceSize>(heap / 16, 1U << 20),
                          context_->max_buffer_size()});
}

MemoryAllocator::~MemoryAllocator() {
  for (auto& block : blocks_) destroy_block(*block);
}

void MemoryAllocator::destroy_block(MemoryBlock& block) noexcept {
  const DeviceFunctions& fn = context_->fn();
  VkDevice device = context_->handle();
  if (block.buffer != VK_NULL_HANDLE) fn.vkDestroyBuffer(device, block.buffer, nullptr);
  if (block.memory != VK_NULL_HANDLE) {
    if (block.mapped != nullptr) fn.vkUnmapMemory(device, block.memory);
    fn.vkFreeMemory(device, block.memory, nullptr);
  }
  block = MemoryBlock{};
}

std::unique_ptr<MemoryBlock> MemoryAllocator::create_block(VkDeviceSize size, bool dedicated,
                                                           std::size_t request) {
  const std::string what = format_bytes(request) + " of " + purpose_;
  auto block = std::make_unique<MemoryBlock>();
  block->size = size;
  block->dedicated = dedicated;
  const DeviceFunctions& fn = context_->fn();
  VkDevice device = context_->handle();
  try {
    block->buffer = context_->create_buffer(size, what);
    VkMemoryRequirements req{};
    fn.vkGetBufferMemoryRequirements(device, block->buffer, &req);
    if ((req.memoryTypeBits & (1U << memory_type_)) == 0) {
      throw DeviceError(context_->id() + ": buffer cannot use the chosen memory type");
    }
    const VkDeviceSize heap_size =
        context_->physical()
            .memory.memoryHeaps[context_->physical().memory.memoryTypes[memory_type_].heapIndex]
            .size;
    if (req.size > heap_size) {
      throw OutOfMemory("out of device memory on " + context_->id() + " allocating " + what +
                        ": larger than the memory heap (" + format_bytes(heap_size) + ")");
    }
    VkMemoryAllocateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    info.allocationSize = req.size;
    info.memoryTypeIndex = memory_type_;
    context_->check(fn.vkAllocateMemory(device, &info, nullptr, &block->memory),
                    "vkAllocateMemory", what);
    context_->check(fn.vkBindBufferMemory(device, block->buffer, block->memory, 0),
                    "vkBindBufferMemory", what);
    if (map_) {
      context_->check(fn.vkMapMemory(device, block->memory, 0, VK_WHOLE_SIZE, 0, &block->mapped),
                      "vkMapMemory", what);
      advise_huge_pages(block->mapped, size);
    }
  } catch (...) {
    destroy_block(*block);
    throw;
  }
  block->free_ranges.emplace(0, size);
  return block;
}

bool MemoryAllocator::carve(MemoryBlock& block, VkDeviceSize size, VkDeviceSize& offset) {
  // Best fit: the smallest free range that holds the request.
  auto best = block.free_ranges.end();
  for (auto it = block.free_ranges.begin(); it != block.free_ranges.end(); ++it) {
    if (it->second >= size && (best == block.free_ranges.end() || it->second < best->second)) {
      best = it;
    }
  }
  if (best == block.free_ranges.end()) return false;
  offset = best->first;
  VkDeviceSize remaining = best->second - size;
  block.free_ranges.erase(best);
  if (remaining > 0) block.free_ranges.emplace(offset + size, remaining);
  block.used += size;
  return true;
}

std::unique_ptr<VulkanAllocation> MemoryAllocator::allocate(std::size_t n) {
  context_->throw_if_lost();
  const VkDeviceSize alignment = context_->buffer_alignment();
  if (n > context_->max_buffer_size() || n > context_->heap_size()) {
    throw OutOfMemory("out of device memory on " + context_->id() + " allocating " +
                      format_bytes(n) + " of " + purpose_ + ": larger than the device allows (" +
                      format_bytes(std::min<std::uint64_t>(context_->max_buffer_size(),
                                                           context_->heap_size())) +
                      ")");
  }
  const VkDeviceSize size = (static_cast<VkDeviceSize>(n) + alignment - 1) / alignment * alignment;
  auto self = shared_from_this();
  if (size > block_size_ / 2) {
    auto block = create_block(size, /*dedicated=*/true, n);
    block->free_ranges.clear();
    block->used = size;
    std::lock_guard lock(mutex_);
    MemoryBlock* raw = block.get();
    blocks_.push_back(std::move(block));
    ++stats_.device_memory_objects;
    stats_.bytes_reserved += size;
    stats_.bytes_in_use += size;
    ++stats_.live_allocations;
    return std::make_unique<VulkanAllocation>(self, raw, 0, size, n);
  }
  std::unique_lock lock(mutex_);
  for (auto& block : blocks_) {
    VkDeviceSize offset = 0;
    if (!block->dedicated && carve(*block, size, offset)) {
      stats_.bytes_in_use += size;
      ++stats_.live_allocations;
      return std::make_unique<VulkanAllocation>(self, block.get(), offset, size, n);
    }
  }
  // No room: a new block, created without holding the lock.
  lock.unlock();
  auto block = create_block(block_size_, /*dedicated=*/false, n);
  lock.lock();
  VkDeviceSize offset = 0;
  carve(*block, size, offset);
  MemoryBlock* raw = block.get();
  blocks_.push_back(std::move(block));
  ++stats_.device_memory_objects;
  stats_.bytes_reserved += block_size_;
  stats_.bytes_in_use += size;
  ++stats_.live_allocations;
  return std::make_unique<VulkanAllocation>(self, raw, offset, size, n);
}

void MemoryAllocator::release(MemoryBlock* block, VkDeviceSize offset, VkDeviceSize size) noexcept {
  std::unique_ptr<MemoryBlock> doomed;
  {
    std::lock_guard lock(mutex_);
    stats_.bytes_in_use -= size;
    --stats_.live_allocations;
    block->used -= size;
    if (!block->dedicated) {
      // Insert and coalesce with neighbours.
      auto [it, inserted] = block->free_ranges.emplace(offset, size);
      (void)inserted;
      if (auto next = std::next(it);
          next != block->free_ranges.end() && it->first + it->second == next->first) {
        it->second += next->second;
        block->free_ranges.erase(next);
      }
      if (it != block->free_ranges.begin()) {
        auto prev = std::prev(it);
        if (prev->first + prev->second == it->first) {
          prev->second += it->second;
          block->free_ranges.erase(it);
        }
      }
    }
    if (block->used == 0) {
      // Dedicated blocks go at once; of the empty shared blocks one is kept
      // for the next small request.
      bool keep = false;
      if (!block->dedicated) {
        keep = true;
        for (const auto& other : blocks_) {
          if (other.get() != block && !other->dedicated && other->used == 0) keep = false;
        }
      }
      if (!keep) {
        auto it = std::find_if(blocks_.begin(), blocks_.end(),
                               [&](const auto& b) { return b.get() == block; });
        doomed = std::move(*it);
        blocks_.erase(it);
        --stats_.device_memory_objects;
        stats_.bytes_reserved -= doomed->size;
      }
    }
  }
  if (doomed) destroy_block(*doomed);
}

AllocatorStats MemoryAllocator::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace exogpu::vulkan
