#include "vk_stream.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

#include "exogpu/error.hpp"

namespace exogpu::vulkan {

VulkanAllocation& vulkan_allocation(const std::shared_ptr<Allocation>& allocation) {
  auto* a = dynamic_cast<VulkanAllocation*>(allocation.get());
  if (a == nullptr) throw InvalidArgument("buffer is not memory of a Vulkan device");
  return *a;
}

// ---- Timeline ---------------------------------------------------------------

Timeline::Timeline(std::shared_ptr<DeviceContext> context) : context_(std::move(context)) {
  VkSemaphoreTypeCreateInfo type{};
  type.sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO;
  type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
  type.initialValue = 0;
  VkSemaphoreCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO;
  info.pNext = &type;
  context_->check(context_->fn().vkCreateSemaphore(context_->handle(), &info, nullptr, &semaphore_),
                  "vkCreateSemaphore");
}

Timeline::~Timeline() {
  context_->fn().vkDestroySemaphore(context_->handle(), semaphore_, nullptr);
}

std::uint64_t Timeline::completed() const {
  std::uint64_t value = 0;
  context_->check(
      context_->fn().vkGetSemaphoreCounterValue(context_->handle(), semaphore_, &value),
      "vkGetSemaphoreCounterValue");
  return value;
}

void Timeline::wait(std::uint64_t value) const {
  if (value == 0) return;
  VkSemaphoreWaitInfo info{};
  info.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
  info.semaphoreCount = 1;
  info.pSemaphores = &semaphore_;
  info.pValues = &value;
  context_->check(context_->fn().vkWaitSemaphores(context_->handle(), &info,
                                                  std::numeric_limits<std::uint64_t>::max()),
                  "vkWaitSemaphores");
}

// ---- Timestamp queries --------------------------------------------------------

TimestampQueries::~TimestampQueries() {
  released_.clear();
  for (VkQueryPool pool : pools_) {
    context_->fn().vkDestroyQueryPool(context_->handle(), pool, nullptr);
  }
}

TimestampQueries::Slot TimestampQueries::acquire() {
  std::lock_guard lock(mutex_);
  for (auto it = released_.begin(); it != released_.end(); ++it) {
    if (it->timeline->completed() >= it->value) {
      Slot slot = it->slot;
      released_.erase(it);
      return slot;
    }
  }
  if (next_in_last_pool_ == kPoolSize) {
    VkQueryPoolCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO;
    info.queryType = VK_QUERY_TYPE_TIMESTAMP;
    info.queryCount = kPoolSize;
    VkQueryPool pool = VK_NULL_HANDLE;
    context_->check(context_->fn().vkCreateQueryPool(context_->handle(), &info, nullptr, &pool),
                    "vkCreateQueryPool");
    pools_.push_back(pool);
    next_in_last_pool_ = 0;
  }
  return Slot{pools_.back(), next_in_last_pool_++};
}

void TimestampQueries::release(Slot slot, std::shared_ptr<Timeline> timeline,
                               std::uint64_t value) noexcept {
  std::lock_guard lock(mutex_);
  try {
    released_.push_back(Released{slot, std::move(timeline), value});
  } catch (...) {
    // Out of memory while recycling: the query is simply not reused.
  }
}

// ---- Events -----------------------------------------------------------------

VulkanEvent::~VulkanEvent() {
  if (timed_) queries_->release(slot_, timeline_, value_);
}

bool VulkanEvent::query() { return timeline_->completed() >= value_; }

void VulkanEvent::synchronize() {
  timeline_->wait(value_);
  timeline_->context().instance().check_validation("event synchronize on " +
                                                   timeline_->context().id());
}

std::uint64_t VulkanEvent::timestamp() {
  std::uint64_t ticks = 0;
  DeviceContext& context = timeline_->context();
  context.check(context.fn().vkGetQueryPoolResults(context.handle(), slot_.pool, slot_.index, 1,
                                                   sizeof ticks, &ticks, sizeof ticks,
                                                   VK_QUERY_RESULT_64_BIT |
                                                       VK_QUERY_RESULT_WAIT_BIT),
                "vkGetQueryPoolResults");
  return ticks;
}

double VulkanEvent::elapsed_ms(Event& later) {
  auto* other = dynamic_cast<VulkanEvent*>(&later);
  if (other == nullptr || &other->timeline_->context() != &timeline_->context()) {
    throw InvalidArgument("elapsed_ms: events of " + device_.id() + " and " +
                          later.device().id() + " do not share a clock");
  }
  if (!timed_ || !other->timed_) {
    throw DeviceError(device_.id() + ": the compute queue has no timestamps "
                      "(timestampValidBits is 0), so events cannot be timed");
  }
  synchronize();
  other->synchronize();
  DeviceContext& context = timeline_->context();
  const std::uint32_t bits = context.compute_queue().timestamp_valid_bits;
  const std::uint64_t mask = bits >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << bits) - 1;
  // Modular difference: correct across one wrap of a narrow counter.
  const std::uint64_t ticks = (other->timestamp() - timestamp()) & mask;
  const double ns = static_cast<double>(ticks) * context.limits().timestampPeriod;
  return ns / 1e6;
}

// ---- Stream -------------------------------------------------------------------

VulkanStream::VulkanStream(Device& device, StreamResources resources)
    : Stream(device), r_(std::move(resources)) {
  r_.context->throw_if_lost();
  // D2H keeps pointers to slots while draining: the ring never reallocates.
  staging_.reserve(kStagingSlots);
  timeline_ = std::make_shared<Timeline>(r_.context);
  DeviceContext& ctx = *r_.context;
  auto make_pool = [&](Lane& lane, Queue& queue) {
    lane.queue = &queue;
    VkCommandPoolCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
    info.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT |
                 VK_COMMAND_POOL_CREATE_TRANSIENT_BIT;
    info.queueFamilyIndex = queue.family;
    ctx.check(ctx.fn().vkCreateCommandPool(ctx.handle(), &info, nullptr, &lane.pool),
              "vkCreateCommandPool");
  };
  separate_lanes_ = &ctx.transfer_queue() != &ctx.compute_queue();
  try {
    make_pool(compute_, ctx.compute_queue());
    if (separate_lanes_) make_pool(transfer_, ctx.transfer_queue());
  } catch (...) {
    if (compute_.pool != VK_NULL_HANDLE) {
      ctx.fn().vkDestroyCommandPool(ctx.handle(), compute_.pool, nullptr);
    }
    throw;
  }
}

VulkanStream::~VulkanStream() {
  DeviceContext& ctx = *r_.context;
  // Work still in flight uses this stream's command buffers: let it finish.
  // (A lost device will never finish it; its handles are freed regardless.)
  if (!ctx.lost()) {
    try {
      timeline_->wait(last_value_);
    } catch (...) {
    }
  }
  for (Lane* lane : {&compute_, &transfer_}) {
    for (CommandSlot& slot : lane->slots) {
      if (slot.descriptors != VK_NULL_HANDLE) {
        ctx.fn().vkDestroyDescriptorPool(ctx.handle(), slot.descriptors, nullptr);
      }
    }
    if (lane->pool != VK_NULL_HANDLE) {
      ctx.fn().vkDestroyCommandPool(ctx.handle(), lane->pool, nullptr);
    }
  }
}

std::uint64_t VulkanStream::submissions() const {
  std::lock_guard lock(mutex_);
  return last_value_;
}

void VulkanStream::check_validation(const char* where) {
  r_.context->instance().check_validation(std::string(where) + " on " + r_.context->id());
}

VulkanStream::Recording VulkanStream::begin(Lane& lane) {
  DeviceContext& ctx = *r_.context;
  ctx.throw_if_lost();
  constexpr std::size_t kMaxSlots = 64;
  std::uint64_t completed = timeline_->completed();
  retire(completed);
  CommandSlot* slot = nullptr;
  for (CommandSlot& s : lane.slots) {
    if (s.done_value <= completed) {
      slot = &s;
      break;
    }
  }
  if (slot == nullptr && lane.slots.size() >= kMaxSlots) {
    // Bound the command buffers in flight: wait for the oldest.
    auto oldest = std::min_element(lane.slots.begin(), lane.slots.end(),
                                   [](const auto& a, const auto& b) {
                                     return a.done_value < b.done_value;
                                   });
    timeline_->wait(oldest->done_value);
    slot = &*oldest;
  }
  if (slot == nullptr) {
    CommandSlot fresh;
    VkCommandBufferAllocateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    info.commandPool = lane.pool;
    info.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    info.commandBufferCount = 1;
    ctx.check(ctx.fn().vkAllocateCommandBuffers(ctx.handle(), &info, &fresh.command),
              "vkAllocateCommandBuffers");
    VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 2};
    VkDescriptorPoolCreateInfo pool_info{};
    pool_info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
    pool_info.maxSets = 1;
    pool_info.poolSizeCount = 1;
    pool_info.pPoolSizes = &size;
    VkResult result =
        ctx.fn().vkCreateDescriptorPool(ctx.handle(), &pool_info, nullptr, &fresh.descriptors);
    if (result != VK_SUCCESS) {
      ctx.fn().vkFreeCommandBuffers(ctx.handle(), lane.pool, 1, &fresh.command);
      ctx.check(result, "vkCreateDescriptorPool");
    }
    lane.slots.push_back(fresh);
    slot = &lane.slots.back();
  }
  ctx.check(ctx.fn().vkResetCommandBuffer(slot->command, 0), "vkResetCommandBuffer");
  ctx.check(ctx.fn().vkResetDescriptorPool(ctx.handle(), slot->descriptors, 0),
            "vkResetDescriptorPool");
  VkCommandBufferBeginInfo begin_info{};
  begin_info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
  begin_info.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  ctx.check(ctx.fn().vkBeginCommandBuffer(slot->command, &begin_info), "vkBeginCommandBuffer");
  return Recording{&lane, slot, slot->command};
}

std::uint64_t VulkanStream::submit(Recording& rec,
                                   std::vector<std::shared_ptr<Allocation>> keep) {
  DeviceContext& ctx = *r_.context;
  const DeviceFunctions& fn = ctx.fn();
  // Make device writes visible to the host once the timeline value is
  // reached (mapped memory, staging buffers). Ordering between submissions
  // comes from the timeline semaphore, whose signal and wait carry a full
  // memory dependency.
  VkMemoryBarrier barrier{};
  barrier.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
  barrier.srcAccessMask = VK_ACCESS_MEMORY_WRITE_BIT;
  barrier.dstAccessMask = VK_ACCESS_HOST_READ_BIT | VK_ACCESS_HOST_WRITE_BIT;
  fn.vkCmdPipelineBarrier(rec.command, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT,
                          VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &barrier, 0, nullptr, 0, nullptr);
  ctx.check(fn.vkEndCommandBuffer(rec.command), "vkEndCommandBuffer");

  std::vector<VkSemaphore> wait_semaphores;
  std::vector<std::uint64_t> wait_values;
  std::vector<VkPipelineStageFlags> wait_stages;
  if (last_value_ > 0) {
    wait_semaphores.push_back(timeline_->handle());
    wait_values.push_back(last_value_);
    wait_stages.push_back(VK_PIPELINE_STAGE_ALL_COMMANDS_BIT);
  }
  for (const auto& [timeline, value] : waits_) {
    wait_semaphores.push_back(timeline->handle());
    wait_values.push_back(value);
    wait_stages.push_back(VK_PIPELINE_STAGE_ALL_COMMANDS_BIT);
  }
  const std::uint64_t signal_value = last_value_ + 1;
  VkSemaphore signal = timeline_->handle();
  VkTimelineSemaphoreSubmitInfo timeline_info{};
  timeline_info.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO;
  timeline_info.waitSemaphoreValueCount = static_cast<std::uint32_t>(wait_values.size());
  timeline_info.pWaitSemaphoreValues = wait_values.data();
  timeline_info.signalSemaphoreValueCount = 1;
  timeline_info.pSignalSemaphoreValues = &signal_value;
  VkSubmitInfo info{};
  info.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  info.pNext = &timeline_info;
  info.waitSemaphoreCount = static_cast<std::uint32_t>(wait_semaphores.size());
  info.pWaitSemaphores = wait_semaphores.data();
  info.pWaitDstStageMask = wait_stages.data();
  info.commandBufferCount = 1;
  info.pCommandBuffers = &rec.command;
  info.signalSemaphoreCount = 1;
  info.pSignalSemaphores = &signal;
  // Reserve before submitting so that bookkeeping cannot fail afterwards.
  in_flight_.push_back(InFlight{signal_value, std::move(keep)});
  try {
    ctx.submit(*rec.lane->queue, info);
  } catch (...) {
    in_flight_.pop_back();
    throw;
  }
  last_value_ = signal_value;
  rec.slot->done_value = signal_value;
  waits_.clear();
  return signal_value;
}

void VulkanStream::retire(std::uint64_t completed) {
  while (!in_flight_.empty() && in_flight_.front().value <= completed) in_flight_.pop_front();
}

void VulkanStream::host_wait_locked() {
  // Events of other streams this stream was told to wait for: the host
  // waits for them, since the host is about to act in stream order.
  for (const auto& [timeline, value] : waits_) timeline->wait(value);
  waits_.clear();
  timeline_->wait(last_value_);
  retire(last_value_);
}

VulkanStream::StagingSlot& VulkanStream::staging_slot(std::size_t index) {
  while (staging_.size() <= index) {
    staging_.push_back(StagingSlot{r_.staging->allocate(kStagingChunk), 0});
  }
  return staging_[index];
}

VulkanStream::Window VulkanStream::window(const VulkanAllocation& a, std::size_t offset) const {
  const auto& limits = r_.context->limits();
  const VkDeviceSize align = std::max<VkDeviceSize>(limits.minStorageBufferOffsetAlignment, 4);
  const VkDeviceSize absolute = a.offset() + offset;
  const VkDeviceSize base = absolute / align * align;
  // Byte offsets in the shaders are 32-bit: keep windows under 2 GiB.
  VkDeviceSize max_range = std::min<VkDeviceSize>(limits.maxStorageBufferRange, VkDeviceSize{1} << 31);
  max_range = max_range / align * align;
  return Window{base, std::min(a.buffer_size() - base, max_range)};
}

void VulkanStream::do_copy_h2d(const AllocationPtr& dst, std::size_t dst_offset, const void* src,
                               std::size_t n) {
  VulkanAllocation& d = vulkan_allocation(dst);
  std::lock_guard lock(mutex_);
  if (void* mapped = d.host_ptr(); mapped != nullptr) {
    // Device memory the host can address: wait for earlier work, then copy
    // directly; later submissions see the write (coherent memory).
    host_wait_locked();
    std::memcpy(static_cast<std::byte*>(mapped) + dst_offset, src, n);
    return;
  }
  // Staged: fill one slot while the device copies out of the previous one.
  const auto* source = static_cast<const std::byte*>(src);
  Lane& lane = separate_lanes_ ? transfer_ : compute_;
  for (std::size_t done = 0; done < n;) {
    const std::size_t chunk = std::min(kStagingChunk, n - done);
    StagingSlot& slot = staging_slot(next_staging_);
    next_staging_ = (next_staging_ + 1) % kStagingSlots;
    timeline_->wait(slot.ready);
    std::memcpy(slot.memory->host_ptr(), source + done, chunk);
    Recording rec = begin(lane);
    VkBufferCopy region{slot.memory->offset(), d.offset() + dst_offset + done, chunk};
    r_.context->fn().vkCmdCopyBuffer(rec.command, slot.memory->buffer(), d.buffer(), 1, &region);
    slot.ready = submit(rec, {dst});
    done += chunk;
  }
}

void VulkanStream::do_copy_d2h(void* dst, const AllocationPtr& src, std::size_t src_offset,
                               std::size_t n) {
  VulkanAllocation& s = vulkan_allocation(src);
  std::lock_guard lock(mutex_);
  if (const void* mapped = s.host_ptr(); mapped != nullptr) {
    host_wait_locked();
    std::memcpy(dst, static_cast<const std::byte*>(mapped) + src_offset, n);
    check_validation("copy to host");
    return;
  }
  // Staged, pipelined: the device fills slot k+1 while the host drains slot k.
  // The call returns once the bytes are in `dst`.
  struct Pending {
    StagingSlot* slot;
    std::size_t offset;
    std::size_t size;
  };
  std::deque<Pending> pending;
  auto* out = static_cast<std::byte*>(dst);
  auto drain_one = [&] {
    Pending p = pending.front();
    pending.pop_front();
    timeline_->wait(p.slot->ready);
    std::memcpy(out + p.offset, p.slot->memory->host_ptr(), p.size);
  };
  Lane& lane = separate_lanes_ ? transfer_ : compute_;
  for (std::size_t done = 0; done < n;) {
    if (pending.size() == kStagingSlots) drain_one();
    const std::size_t chunk = std::min(kStagingChunk, n - done);
    StagingSlot& slot = staging_slot(next_staging_);
    next_staging_ = (next_staging_ + 1) % kStagingSlots;
    Recording rec = begin(lane);
    VkBufferCopy region{s.offset() + src_offset + done, slot.memory->offset(), chunk};
    r_.context->fn().vkCmdCopyBuffer(rec.command, s.buffer(), slot.memory->buffer(), 1, &region);
    slot.ready = submit(rec, {src});
    pending.push_back(Pending{&slot, done, chunk});
    done += chunk;
  }
  while (!pending.empty()) drain_one();
  check_validation("copy to host");
}

void VulkanStream::do_copy_d2d(const AllocationPtr& dst, std::size_t dst_offset,
                               const AllocationPtr& src, std::size_t src_offset, std::size_t n) {
  VulkanAllocation& d = vulkan_allocation(dst);
  VulkanAllocation& s = vulkan_allocation(src);
  std::lock_guard lock(mutex_);
  Recording rec = begin(separate_lanes_ ? transfer_ : compute_);
  VkBufferCopy region{s.offset() + src_offset, d.offset() + dst_offset, n};
  r_.context->fn().vkCmdCopyBuffer(rec.command, s.buffer(), d.buffer(), 1, &region);
  submit(rec, {dst, src});
}

void VulkanStream::do_fill(const AllocationPtr& dst, std::size_t offset, std::size_t n,
                           std::uint8_t value) {
  VulkanAllocation& d = vulkan_allocation(dst);
  if (offset % 4 != 0 || n % 4 != 0) {
    // vkCmdFillBuffer works in whole words; the fill shader does any bytes.
    fill_shader(dst, offset, n, value);
    return;
  }
  std::lock_guard lock(mutex_);
  Recording rec = begin(separate_lanes_ ? transfer_ : compute_);
  r_.context->fn().vkCmdFillBuffer(rec.command, d.buffer(), d.offset() + offset, n,
                                   0x01010101U * value);
  submit(rec, {dst});
}

void VulkanStream::dispatch(Kernel kernel, const VulkanAllocation& binding0, const Window& w0,
                            const VulkanAllocation& binding1, const Window& w1,
                            const std::uint32_t (&push)[4], std::uint64_t invocations,
                            std::vector<std::shared_ptr<Allocation>> keep) {
  DeviceContext& ctx = *r_.context;
  const DeviceFunctions& fn = ctx.fn();
  VkPipeline pipeline = r_.pipelines->get(kernel);
  Recording rec = begin(compute_);
  VkDescriptorSetLayout layout = r_.pipelines->set_layout();
  VkDescriptorSetAllocateInfo alloc{};
  alloc.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
  alloc.descriptorPool = rec.slot->descriptors;
  alloc.descriptorSetCount = 1;
  alloc.pSetLayouts = &layout;
  VkDescriptorSet set = VK_NULL_HANDLE;
  ctx.check(fn.vkAllocateDescriptorSets(ctx.handle(), &alloc, &set), "vkAllocateDescriptorSets");
  VkDescriptorBufferInfo buffers[2] = {{binding0.buffer(), w0.base, w0.range},
                                       {binding1.buffer(), w1.base, w1.range}};
  VkWriteDescriptorSet writes[2]{};
  for (std::uint32_t i = 0; i < 2; ++i) {
    writes[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
    writes[i].dstSet = set;
    writes[i].dstBinding = i;
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &buffers[i];
  }
  fn.vkUpdateDescriptorSets(ctx.handle(), 2, writes, 0, nullptr);
  fn.vkCmdBindPipeline(rec.command, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
  fn.vkCmdBindDescriptorSets(rec.command, VK_PIPELINE_BIND_POINT_COMPUTE,
                             r_.pipelines->layout(), 0, 1, &set, 0, nullptr);
  fn.vkCmdPushConstants(rec.command, r_.pipelines->layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0,
                        sizeof push, push);
  const std::uint64_t groups_needed = (invocations + kWorkgroupSize - 1) / kWorkgroupSize;
  // The shaders loop with a grid stride, so any group count is correct.
  const std::uint32_t groups = static_cast<std::uint32_t>(std::max<std::uint64_t>(
      1, std::min<std::uint64_t>({groups_needed, ctx.limits().maxComputeWorkGroupCount[0],
                                  65535})));
  fn.vkCmdDispatch(rec.command, groups, 1, 1);
  submit(rec, std::move(keep));
}

void VulkanStream::fill_shader(const AllocationPtr& dst, std::size_t offset, std::size_t n,
                               std::uint8_t value) {
  VulkanAllocation& d = vulkan_allocation(dst);
  std::lock_guard lock(mutex_);
  for (std::size_t done = 0; done < n;) {
    Window w = window(d, offset + done);
    const VkDeviceSize first = d.offset() + offset + done - w.base;
    const std::size_t chunk =
        static_cast<std::size_t>(std::min<VkDeviceSize>(n - done, w.range - first));
    const std::uint32_t push[4] = {static_cast<std::uint32_t>(first),
                                   static_cast<std::uint32_t>(chunk), 0x01010101U * value, 0};
    dispatch(Kernel::fill, d, w, d, w, push, (first % 4 + chunk + 3) / 4, {dst});
    done += chunk;
  }
}

void VulkanStream::shader_copy(const Buffer& dst, std::size_t dst_offset, const Buffer& src,
                               std::size_t src_offset, std::size_t n) {
  for (const auto* b : {&dst, &src}) {
    if (!b->valid() || &b->device() != &device()) {
      throw InvalidArgument("shader_copy: buffer is not on " + device().id());
    }
  }
  if (dst_offset > dst.size() || n > dst.size() - dst_offset || src_offset > src.size() ||
      n > src.size() - src_offset) {
    throw InvalidArgument("shader_copy: " + std::to_string(n) + " bytes at offsets " +
                          std::to_string(dst_offset) + "/" + std::to_string(src_offset) +
                          " overrun buffers of " + std::to_string(dst.size()) + "/" +
                          std::to_string(src.size()) + " bytes");
  }
  VulkanAllocation& d = vulkan_allocation(dst.allocation());
  VulkanAllocation& s = vulkan_allocation(src.allocation());
  std::lock_guard lock(mutex_);
  for (std::size_t done = 0; done < n;) {
    Window wd = window(d, dst_offset + done);
    Window ws = window(s, src_offset + done);
    const VkDeviceSize dst_first = d.offset() + dst_offset + done - wd.base;
    const VkDeviceSize src_first = s.offset() + src_offset + done - ws.base;
    const std::size_t chunk = static_cast<std::size_t>(std::min<VkDeviceSize>(
        {n - done, wd.range - dst_first, ws.range - src_first}));
    const std::uint32_t push[4] = {static_cast<std::uint32_t>(dst_first),
                                   static_cast<std::uint32_t>(src_first),
                                   static_cast<std::uint32_t>(chunk), 0};
    dispatch(Kernel::copy, d, wd, s, ws, push, (dst_first % 4 + chunk + 3) / 4,
             {dst.allocation(), src.allocation()});
    done += chunk;
  }
}

double VulkanStream::fma(const Buffer& buffer, std::uint32_t iterations) {
  if (!buffer.valid() || &buffer.device() != &device()) {
    throw InvalidArgument("launch_fma: buffer is not on " + device().id());
  }
  const std::size_t elements = buffer.size() / sizeof(float);
  if (elements == 0 || iterations == 0) return 0.0;
  VulkanAllocation& a = vulkan_allocation(buffer.allocation());
  std::lock_guard lock(mutex_);
  for (std::size_t done = 0; done < elements;) {
    Window w = window(a, done * sizeof(float));
    const VkDeviceSize first_byte = a.offset() + done * sizeof(float) - w.base;
    const std::size_t count = static_cast<std::size_t>(
        std::min<VkDeviceSize>(elements - done, (w.range - first_byte) / sizeof(float)));
    const std::uint32_t push[4] = {static_cast<std::uint32_t>(first_byte / sizeof(float)),
                                   static_cast<std::uint32_t>(count), iterations, 0};
    dispatch(Kernel::fma, a, w, a, w, push, count, {buffer.allocation()});
    done += count;
  }
  constexpr double kFlopsPerElementIteration = 8 * 2;  // eight chains, one FMA each
  return kFlopsPerElementIteration * static_cast<double>(elements) * iterations;
}

std::shared_ptr<Event> VulkanStream::do_record() {
  DeviceContext& ctx = *r_.context;
  const bool timed = ctx.compute_queue().timestamp_valid_bits != 0;
  TimestampQueries::Slot slot{};
  if (timed) slot = r_.queries->acquire();
  std::unique_lock lock(mutex_);
  std::uint64_t value = 0;
  try {
    Recording rec = begin(compute_);
    if (timed) {
      ctx.fn().vkCmdResetQueryPool(rec.command, slot.pool, slot.index, 1);
      ctx.fn().vkCmdWriteTimestamp(rec.command, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, slot.pool,
                                   slot.index);
    }
    value = submit(rec, {});
  } catch (...) {
    if (timed) r_.queries->release(slot, timeline_, last_value_);
    throw;
  }
  lock.unlock();
  return std::make_shared<VulkanEvent>(device(), timeline_, value, r_.queries, slot, timed);
}

void VulkanStream::do_wait(const std::shared_ptr<Event>& event) {
  auto* vk_event = dynamic_cast<VulkanEvent*>(event.get());
  if (vk_event != nullptr && &vk_event->timeline()->context() == r_.context.get()) {
    // Same logical device: the next submission waits on the event's
    // timeline value on the device, without blocking the host.
    std::lock_guard lock(mutex_);
    waits_.emplace_back(vk_event->timeline(), vk_event->value());
    return;
  }
  // An event of another device or backend cannot be waited on by this
  // queue. The host waits for it now, before any later work of this stream
  // is submitted, which keeps the ordering the caller asked for (at the cost
  // of blocking the caller until the event completes).
  event->synchronize();
}

void VulkanStream::do_synchronize() {
  std::uint64_t target = 0;
  {
    std::lock_guard lock(mutex_);
    target = last_value_;
  }
  timeline_->wait(target);
  {
    std::lock_guard lock(mutex_);
    retire(target);
  }
  check_validation("stream synchronize");
}

}  // namespace exogpu::vulkan
