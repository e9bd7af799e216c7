// Streams and events.
//
// A stream is an in-order queue of work: every submission waits for the
// stream's timeline semaphore to reach the value the previous submission
// signals, and signals the next value. That keeps order across the two queues
// a stream may use (a transfer-only queue for copies when the device has one,
// the compute queue for shaders and timestamps) and across submissions to one
// queue, which Vulkan would otherwise let overlap. Each stream records into
// its own command pool(s), so streams never contend for one.
//
// An event is a timeline value plus, where the queue supports timestamps, a
// timestamp query written when the work before it is done.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "exogpu/device.hpp"
#include "vk_context.hpp"
#include "vk_memory.hpp"
#include "vk_pipelines.hpp"

namespace exogpu::vulkan {

// A timeline semaphore, shared by a stream and the events it records.
class Timeline {
 public:
  explicit Timeline(std::shared_ptr<DeviceContext> context);
  Timeline(const Timeline&) = delete;
  Timeline& operator=(const Timeline&) = delete;
  ~Timeline();
  [[nodiscard]] VkSemaphore handle() const noexcept { return semaphore_; }
  [[nodiscard]] std::uint64_t completed() const;
  void wait(std::uint64_t value) const;
  [[nodiscard]] DeviceContext& context() const noexcept { return *context_; }

 private:
  std::shared_ptr<DeviceContext> context_;
  VkSemaphore semaphore_ = VK_NULL_HANDLE;
};

// Timestamp queries handed out to events. A query is reused only once the
// submission that last wrote it is complete.
class TimestampQueries {
 public:
  struct Slot {
    VkQueryPool pool = VK_NULL_HANDLE;
    std::uint32_t index = 0;
  };
  explicit TimestampQueries(std::shared_ptr<DeviceContext> context) : context_(std::move(context)) {}
  TimestampQueries(const TimestampQueries&) = delete;
  TimestampQueries& operator=(const TimestampQueries&) = delete;
  ~TimestampQueries();
  [[nodiscard]] Slot acquire();
  void release(Slot slot, std::shared_ptr<Timeline> timeline, std::uint64_t value) noexcept;

 private:
  static constexpr std::uint32_t kPoolSize = 256;
  struct Released {
    Slot slot;
    std::shared_ptr<Timeline> timeline;
    std::uint64_t value = 0;
  };
  std::shared_ptr<DeviceContext> context_;
  std::mutex mutex_;
  std::vector<VkQueryPool> pools_;
  std::uint32_t next_in_last_pool_ = kPoolSize;
  std::vector<Released> released_;
};

class VulkanEvent final : public Event {
 public:
  VulkanEvent(const Device& device, std::shared_ptr<Timeline> timeline, std::uint64_t value,
              std::shared_ptr<TimestampQueries> queries, TimestampQueries::Slot slot,
              bool timed) noexcept
      : device_(device),
        timeline_(std::move(timeline)),
        value_(value),
        queries_(std::move(queries)),
        slot_(slot),
        timed_(timed) {}
  ~VulkanEvent() override;
  [[nodiscard]] bool query() override;
  void synchronize() override;
  [[nodiscard]] double elapsed_ms(Event& later) override;
  [[nodiscard]] const Device& device() const noexcept override { return device_; }
  [[nodiscard]] const std::shared_ptr<Timeline>& timeline() const noexcept { return timeline_; }
  [[nodiscard]] std::uint64_t value() const noexcept { return value_; }

 private:
  [[nodiscard]] std::uint64_t timestamp();
  const Device& device_;
  std::shared_ptr<Timeline> timeline_;
  std::uint64_t value_;
  std::shared_ptr<TimestampQueries> queries_;
  TimestampQueries::Slot slot_;
  bool timed_;
};

struct StreamResources {
  std::shared_ptr<DeviceContext> context;
  std::shared_ptr<MemoryAllocator> staging;
  std::shared_ptr<Pipelines> pipelines;
  std::shared_ptr<TimestampQueries> queries;
};

class VulkanStream final : public Stream {
 public:
  static constexpr std::size_t kStagingChunk = std::size_t{4} << 20;
  static constexpr std::size_t kStagingSlots = 3;

  VulkanStream(Device& device, StreamResources resources);
  ~VulkanStream() override;

  // A copy by compute shader (beside the transfer-queue copy of copy_d2d);
  // arguments validated like copy_d2d.
  void shader_copy(const Buffer& dst, std::size_t dst_offset, const Buffer& src,
                   std::size_t src_offset, std::size_t n);
  // The FMA throughput kernel over the float32 elements of `buffer`; returns
  // the floating-point operations enqueued.
  [[nodiscard]] double fma(const Buffer& buffer, std::uint32_t iterations);

  // Submissions made so far (each signals one timeline value).
  [[nodiscard]] std::uint64_t submissions() const;

 protected:
  void do_copy_h2d(const AllocationPtr& dst, std::size_t dst_offset, const void* src,
                   std::size_t n) override;
  void do_copy_d2h(void* dst, const AllocationPtr& src, std::size_t src_offset,
                   std::size_t n) override;
  void do_copy_d2d(const AllocationPtr& dst, std::size_t dst_offset, const AllocationPtr& src,
                   std::size_t src_offset, std::size_t n) override;
  void do_fill(const AllocationPtr& dst, std::size_t offset, std::size_t n,
               std::uint8_t value) override;
  [[nodiscard]] std::shared_ptr<Event> do_record() override;
  void do_wait(const std::shared_ptr<Event>& event) override;
  void do_synchronize() override;

 private:
  struct CommandSlot {
    VkCommandBuffer command = VK_NULL_HANDLE;
    VkDescriptorPool descriptors = VK_NULL_HANDLE;
    std::uint64_t done_value = 0;  // reusable once the timeline reaches it
  };
  struct Lane {
    Queue* queue = nullptr;
    VkCommandPool pool = VK_NULL_HANDLE;
    std::vector<CommandSlot> slots;
  };
  struct Recording {
    Lane* lane;
    CommandSlot* slot;
    VkCommandBuffer command;
  };
  struct InFlight {
    std::uint64_t value;
    std::vector<std::shared_ptr<Allocation>> keep_alive;
  };
  struct StagingSlot {
    std::unique_ptr<VulkanAllocation> memory;
    std::uint64_t ready = 0;  // free for the host once the timeline reaches it
  };
  struct Window {
    VkDeviceSize base;   // descriptor offset into the VkBuffer
    VkDeviceSize range;  // descriptor range
  };

  Recording begin(Lane& lane);
  std::uint64_t submit(Recording& recording, std::vector<std::shared_ptr<Allocation>> keep);
  void retire(std::uint64_t completed);
  // Host waits for everything enqueued (and every event waited on) so that
  // the host may touch mapped device memory in stream order.
  void host_wait_locked();
  StagingSlot& staging_slot(std::size_t index);
  [[nodiscard]] Window window(const VulkanAllocation& a, std::size_t offset) const;
  void dispatch(Kernel kernel, const VulkanAllocation& binding0, const Window& w0,
                const VulkanAllocation& binding1, const Window& w1,
                const std::uint32_t (&push)[4], std::uint64_t invocations,
                std::vector<std::shared_ptr<Allocation>> keep);
  void fill_shader(const AllocationPtr& dst, std::size_t offset, std::size_t n,
                   std::uint8_t value);
  void check_validation(const char* where);

  StreamResources r_;
  std::shared_ptr<Timeline> timeline_;
  mutable std::mutex mutex_;
  Lane transfer_;
  Lane compute_;  // same queue as transfer_ when the device has no transfer-only family
  bool separate_lanes_ = false;
  std::uint64_t last_value_ = 0;
  std::deque<InFlight> in_flight_;
  std::vector<std::pair<std::shared_ptr<Timeline>, std::uint64_t>> waits_;
  std::vector<StagingSlot> staging_;
  std::size_t next_staging_ = 0;
};

// The VulkanAllocation behind a buffer of a Vulkan device (never null for
// buffers the public Stream methods validated).
[[nodiscard]] VulkanAllocation& vulkan_allocation(const std::shared_ptr<Allocation>& allocation);

}  // namespace exogpu::vulkan
