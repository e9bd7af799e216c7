#include "backends/metal/metal_stream.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

#include "exogpu/error.hpp"

namespace exogpu::metal {

namespace {

// Copies to and from private storage go through shared buffers of this size,
// two at a time, so a large copy needs little extra memory and the next
// chunk is staged while the GPU moves the previous one.
constexpr std::size_t kStagingChunk = std::size_t{16} << 20;

BufferRef buffer_of(const std::shared_ptr<Allocation>& allocation) {
  return static_cast<const MetalAllocation&>(*allocation).buffer();
}

bool finished(CommandBufferRef buffer) {
  return [buffer status] >= MTLCommandBufferStatusCompleted;
}

}  // namespace

// ---- MetalEvent ----

void MetalEvent::signalled_by(Retained<CommandBufferRef> buffer) {
  {
    std::lock_guard lock(mutex_);
    buffer_ = std::move(buffer);
    settled_ = true;
  }
  settled_cv_.notify_all();
}

void MetalEvent::failed(std::exception_ptr error) {
  {
    std::lock_guard lock(mutex_);
    error_ = std::move(error);
    settled_ = true;
  }
  settled_cv_.notify_all();
}

CommandBufferRef MetalEvent::committed_buffer() {
  std::unique_lock lock(mutex_);
  settled_cv_.wait(lock, [&] { return settled_; });
  if (error_) std::rethrow_exception(error_);
  return buffer_.get();
}

bool MetalEvent::query() {
  std::unique_lock lock(mutex_);
  if (!settled_) return false;
  if (error_) std::rethrow_exception(error_);
  return finished(buffer_.get());
}

void MetalEvent::synchronize() {
  CommandBufferRef buffer = committed_buffer();
  [buffer waitUntilCompleted];
  if ([buffer status] == MTLCommandBufferStatusError) {
    throw DeviceError(device_.id() + ": the command buffer signalling an event failed: " +
                      describe([buffer error]));
  }
}

double MetalEvent::elapsed_ms(Event& later) {
  auto* other = dynamic_cast<MetalEvent*>(&later);
  if (other == nullptr || &other->device_ != &device_) {
    throw InvalidArgument("elapsed_ms: both events must come from " + device_.id() +
                          " (the later one is from " + later.device().id() + ")");
  }
  if (!query() || !other->query()) {
    throw InvalidArgument("elapsed_ms: both events on " + device_.id() +
                          " must be complete (synchronize first)");
  }
  return ([other->buffer_.get() GPUEndTime] - [buffer_.get() GPUEndTime]) * 1e3;
}

// ---- MetalStream ----

MetalStream::MetalStream(Device& device, std::shared_ptr<Context> context)
    : Stream(device), context_(std::move(context)) {
  queue_ = Retained<QueueRef>::adopt([context_->device() newCommandQueue]);
  event_ = Retained<SharedEventRef>::adopt([context_->device() newSharedEvent]);
  if (!queue_ || !event_) {
    throw DeviceError(context_->id() + ": newCommandQueue or newSharedEvent returned nil");
  }
  thread_ = std::thread([this] { run(); });
}

MetalStream::~MetalStream() {
  try {
    do_synchronize();
  } catch (...) {  // errors nobody synchronized for die with the stream
  }
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_one();
  thread_.join();
}

void MetalStream::enqueue(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
  }
  work_cv_.notify_one();
}

void MetalStream::run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      work_cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
      busy_ = true;
    }
    try {
      with_autorelease_pool(task);
    } catch (...) {
      record_error(std::current_exception());
    }
    {
      std::lock_guard lock(mutex_);
      busy_ = false;
      if (tasks_.empty()) idle_cv_.notify_all();
    }
  }
}

void MetalStream::record_error(std::exception_ptr error) {
  std::lock_guard lock(mutex_);
  if (!error_) error_ = std::move(error);
}

CommandBufferRef MetalStream::begin() {
  CommandBufferRef buffer = [queue_.get() commandBuffer];  // autoreleased
  if (buffer == nullptr) throw DeviceError(context_->id() + ": commandBuffer returned nil");
  return buffer;
}

void MetalStream::commit(CommandBufferRef buffer, std::vector<AllocationPtr> allocations) {
  [buffer commit];
  committed_.push_back({Retained<CommandBufferRef>::retain(buffer), std::move(allocations)});
  retire_completed();
}

void MetalStream::check(CommandBufferRef buffer) {
  if ([buffer status] == MTLCommandBufferStatusError) {
    throw DeviceError(context_->id() + ": a command buffer failed: " + describe([buffer error]));
  }
}

void MetalStream::retire_front() {
  Committed done = std::move(committed_.front());
  committed_.pop_front();
  try {
    check(done.buffer.get());
  } catch (...) {
    record_error(std::current_exception());
  }
}

void MetalStream::retire_completed() {
  while (!committed_.empty() && finished(committed_.front().buffer.get())) retire_front();
}

void MetalStream::drain() {
  // A queue runs its command buffers in order: the newest done means all are.
  if (!committed_.empty()) [committed_.back().buffer.get() waitUntilCompleted];
  while (!committed_.empty()) {
    [committed_.front().buffer.get() waitUntilCompleted];
    retire_front();
  }
}

BufferRef MetalStream::staging(int slot, std::size_t n) {
  Retained<BufferRef>& buffer = staging_[slot];
  if (!buffer || [buffer.get() length] < n) {
    // Small copies get small staging buffers; none is larger than a chunk.
    buffer = context_->new_buffer(std::min(kStagingChunk, std::bit_ceil(std::max<std::size_t>(n, 65536))), true);
  }
  return buffer.get();
}

void MetalStream::staged_h2d(BufferRef dst, const AllocationPtr& keep, std::size_t dst_offset,
                             const std::uint8_t* src, std::size_t n) {
  CommandBufferRef last[2] = {nullptr, nullptr};  // the chunk in flight from each staging buffer
  for (std::size_t done = 0, chunk = 0; done < n; done += kStagingChunk, ++chunk) {
    const int slot = static_cast<int>(chunk % 2);
    const std::size_t len = std::min(kStagingChunk, n - done);
    if (last[slot] != nullptr) [last[slot] waitUntilCompleted];
    BufferRef stage = staging(slot, len);
    std::memcpy([stage contents], src + done, len);
    CommandBufferRef buffer = begin();
    BlitEncoderRef blit = [buffer blitCommandEncoder];
    [blit copyFromBuffer:stage sourceOffset:0 toBuffer:dst destinationOffset:dst_offset + done
                    size:len];
    [blit endEncoding];
    commit(buffer, {keep});
    last[slot] = buffer;  // stays alive: committed_ retains it until it completes
  }
  // The staging buffers are reused by the next copy, which waits (drain) first.
}

void MetalStream::staged_d2h(std::uint8_t* dst, BufferRef src, const AllocationPtr& keep,
                             std::size_t src_offset, std::size_t n) {
  struct Pending {
    CommandBufferRef buffer;
    BufferRef stage;
    std::size_t at;
    std::size_t len;
  };
  auto land = [&](const Pending& p) {
    [p.buffer waitUntilCompleted];
    check(p.buffer);
    std::memcpy(dst + p.at, [p.stage contents], p.len);
  };
  std::vector<Pending> pending;
  for (std::size_t done = 0, chunk = 0; done < n; done += kStagingChunk, ++chunk) {
    const std::size_t len = std::min(kStagingChunk, n - done);
    BufferRef stage = staging(static_cast<int>(chunk % 2), len);
    CommandBufferRef buffer = begin();
    BlitEncoderRef blit = [buffer blitCommandEncoder];
    [blit copyFromBuffer:src sourceOffset:src_offset + done toBuffer:stage destinationOffset:0
                    size:len];
    [blit endEncoding];
    commit(buffer, {keep});
    pending.push_back({buffer, stage, done, len});
    // Before this staging buffer is used again, the chunk before lands.
    if (pending.size() == 2) {
      land(pending.front());
      pending.erase(pending.begin());
    }
  }
  for (const Pending& p : pending) land(p);
}

void MetalStream::do_copy_h2d(const AllocationPtr& dst, std::size_t dst_offset, const void* src,
                              std::size_t n) {
  enqueue([this, dst, dst_offset, src, n] {
    drain();  // the bytes may come from, or land on, memory earlier work uses
    if (void* host = dst->host_ptr(); host != nullptr) {
      std::memcpy(static_cast<std::uint8_t*>(host) + dst_offset, src, n);
    } else {
      staged_h2d(buffer_of(dst), dst, dst_offset, static_cast<const std::uint8_t*>(src), n);
    }
  });
}

void MetalStream::do_copy_d2h(void* dst, const AllocationPtr& src, std::size_t src_offset,
                              std::size_t n) {
  enqueue([this, dst, src, src_offset, n] {
    if (const void* host = src->host_ptr(); host != nullptr) {
      drain();
      std::memcpy(dst, static_cast<const std::uint8_t*>(host) + src_offset, n);
    } else {
      staged_d2h(static_cast<std::uint8_t*>(dst), buffer_of(src), src, src_offset, n);
    }
  });
}

void MetalStream::do_copy_d2d(const AllocationPtr& dst, std::size_t dst_offset,
                              const AllocationPtr& src, std::size_t src_offset, std::size_t n) {
  enqueue([this, dst, dst_offset, src, src_offset, n] {
    CommandBufferRef buffer = begin();
    BlitEncoderRef blit = [buffer blitCommandEncoder];
    [blit copyFromBuffer:buffer_of(src) sourceOffset:src_offset toBuffer:buffer_of(dst)
       destinationOffset:dst_offset size:n];
    [blit endEncoding];
    commit(buffer, {dst, src});
  });
}

void MetalStream::do_fill(const AllocationPtr& dst, std::size_t offset, std::size_t n,
                          std::uint8_t value) {
  enqueue([this, dst, offset, n, value] {
    CommandBufferRef buffer = begin();
    BlitEncoderRef blit = [buffer blitCommandEncoder];
    [blit fillBuffer:buffer_of(dst) range:NSMakeRange(offset, n) value:value];
    [blit endEncoding];
    commit(buffer, {dst});
  });
}

void MetalStream::launch_fma(PipelineRef pipeline, const AllocationPtr& data,
                             std::uint32_t count, std::uint32_t iterations) {
  auto kept = Retained<PipelineRef>::retain(pipeline);
  enqueue([this, kept, data, count, iterations] {
    PipelineRef state = kept.get();
    const NSUInteger width =
        std::min<NSUInteger>(256, [state maxTotalThreadsPerThreadgroup]);
    const NSUInteger groups = (count + width - 1) / width;
    CommandBufferRef buffer = begin();
    ComputeEncoderRef encoder = [buffer computeCommandEncoder];
    [encoder setComputePipelineState:state];
    [encoder setBuffer:buffer_of(data) offset:0 atIndex:0];
    [encoder setBytes:&count length:sizeof count atIndex:1];
    [encoder setBytes:&iterations length:sizeof iterations atIndex:2];
    [encoder dispatchThreadgroups:MTLSizeMake(groups, 1, 1)
            threadsPerThreadgroup:MTLSizeMake(width, 1, 1)];
    [encoder endEncoding];
    commit(buffer, {data});
  });
}

std::shared_ptr<Event> MetalStream::do_record() {
  std::uint64_t value = 0;
  {
    std::lock_guard lock(mutex_);
    value = ++last_value_;
  }
  auto event = std::make_shared<MetalEvent>(device(), event_, value);
  enqueue([this, event, value] {
    try {
      CommandBufferRef buffer = begin();
      [buffer encodeSignalEvent:event_.get() value:value];
      commit(buffer, {});
      event->signalled_by(Retained<CommandBufferRef>::retain(buffer));
    } catch (...) {
      event->failed(std::current_exception());
      throw;
    }
  });
  return event;
}

void MetalStream::do_wait(const std::shared_ptr<Event>& event) {
  if (auto metal = std::dynamic_pointer_cast<MetalEvent>(event)) {
    // The GPU waits, the host does not; shared events order work across
    // queues and across Metal devices.
    enqueue([this, metal] {
      CommandBufferRef buffer = begin();
      [buffer encodeWaitForEvent:metal->shared_event() value:metal->value()];
      commit(buffer, {});
    });
    return;
  }
  // Another backend's event: this stream's thread waits for it on the host.
  enqueue([event] { event->synchronize(); });
}

void MetalStream::do_synchronize() {
  enqueue([this] { drain(); });
  std::exception_ptr error;
  {
    std::unique_lock lock(mutex_);
    idle_cv_.wait(lock, [&] { return tasks_.empty() && !busy_; });
    error = std::exchange(error_, nullptr);
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace exogpu::metal
