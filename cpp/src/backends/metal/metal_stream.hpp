// A stream is one MTLCommandQueue, fed in order by one host thread. GPU work
// (blits, fills, kernels, shared-event signals and waits) is encoded and
// committed without waiting; host-side work (a memcpy into or out of shared
// storage, the staging of private buffers, waits on other backends' events)
// first waits for the command buffers committed before it, so every
// operation sees the effects of the ones enqueued before it.
#pragma once

#include "backends/metal/metal_types.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "backends/metal/metal_context.hpp"
#include "backends/metal/metal_object.hpp"
#include "exogpu/device.hpp"

namespace exogpu::metal {

// A value of a stream's MTLSharedEvent, signalled by a command buffer of its
// own. Times come from that command buffer's GPUEndTime.
class MetalEvent final : public Event {
 public:
  MetalEvent(const Device& device, Retained<SharedEventRef> event, std::uint64_t value)
      : device_(device), event_(std::move(event)), value_(value) {}
  [[nodiscard]] bool query() override;
  void synchronize() override;
  [[nodiscard]] double elapsed_ms(Event& later) override;
  [[nodiscard]] const Device& device() const noexcept override { return device_; }

  [[nodiscard]] SharedEventRef shared_event() const noexcept { return event_.get(); }
  [[nodiscard]] std::uint64_t value() const noexcept { return value_; }
  // By the stream's thread: the committed command buffer that signals it, or
  // why none was committed.
  void signalled_by(Retained<CommandBufferRef> buffer);
  void failed(std::exception_ptr error);

 private:
  // The signalling command buffer once committed (waits for the commit).
  [[nodiscard]] CommandBufferRef committed_buffer();
  const Device& device_;
  Retained<SharedEventRef> event_;
  std::uint64_t value_;
  std::mutex mutex_;
  std::condition_variable settled_cv_;
  bool settled_ = false;
  Retained<CommandBufferRef> buffer_;
  std::exception_ptr error_;
};

class MetalStream final : public Stream {
 public:
  MetalStream(Device& device, std::shared_ptr<Context> context);
  ~MetalStream() override;  // finishes everything queued, then stops its thread

  void launch_fma(PipelineRef pipeline, const AllocationPtr& data,
                  std::uint32_t count, std::uint32_t iterations);

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
  struct Committed {
    Retained<CommandBufferRef> buffer;
    std::vector<AllocationPtr> allocations;  // in use until the buffer completes
  };

  void enqueue(std::function<void()> task);
  void run();
  // The rest run on the stream's thread only.
  [[nodiscard]] CommandBufferRef begin();
  void commit(CommandBufferRef buffer, std::vector<AllocationPtr> allocations);
  void drain();                // waits for every committed command buffer
  void retire_completed();     // forgets those already complete
  void retire_front();         // the oldest, complete: its error becomes the stream's
  void check(CommandBufferRef buffer);  // DeviceError when it ended in error
  void record_error(std::exception_ptr error);
  [[nodiscard]] BufferRef staging(int slot, std::size_t n);
  void staged_h2d(BufferRef dst, const AllocationPtr& keep, std::size_t dst_offset,
                  const std::uint8_t* src, std::size_t n);
  void staged_d2h(std::uint8_t* dst, BufferRef src, const AllocationPtr& keep,
                  std::size_t src_offset, std::size_t n);

  std::shared_ptr<Context> context_;
  Retained<QueueRef> queue_;
  Retained<SharedEventRef> event_;
  std::uint64_t last_value_ = 0;  // under mutex_

  std::deque<Committed> committed_;  // stream thread only
  Retained<BufferRef> staging_[2];

  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<std::function<void()>> tasks_;
  bool busy_ = false;
  bool stopping_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace exogpu::metal
