// A stream whose work runs on a host thread, in order: the CPU backend's
// streams, and the building block for any backend whose memory the host can
// address. Events are host timestamps taken when the worker reaches them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "exogpu/device.hpp"

namespace exogpu {

class HostEvent final : public Event {
 public:
  explicit HostEvent(const Device& device) noexcept : device_(device) {}
  [[nodiscard]] bool query() override;
  void synchronize() override;
  [[nodiscard]] double elapsed_ms(Event& later) override;
  [[nodiscard]] const Device& device() const noexcept override { return device_; }
  void complete() noexcept;  // called by the worker

 private:
  const Device& device_;
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::chrono::steady_clock::time_point stamp_;
};

class HostStream final : public Stream {
 public:
  explicit HostStream(Device& device);
  ~HostStream() override;  // finishes queued work, then joins the worker

  void enqueue(std::function<void()> task);

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
  void do_copy_h2d_sync(const AllocationPtr& dst, std::size_t dst_offset, const void* src,
                        std::size_t n) override;
  void do_copy_d2h_sync(void* dst, const AllocationPtr& src, std::size_t src_offset,
                        std::size_t n) override;

 private:
  void run();
  // Runs `task` on the calling thread when nothing is queued or running (and
  // holds the worker off meanwhile); otherwise queues it and synchronizes.
  template <typename Task>
  void run_now(Task&& task);
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<std::function<void()>> queue_;
  bool busy_ = false;
  bool stopping_ = false;
  std::exception_ptr error_;
  std::thread worker_;
};

}  // namespace exogpu
