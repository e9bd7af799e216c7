#include "core/host_stream.hpp"

#include <cstring>
#include <string>
#include <utility>

#include "exogpu/error.hpp"

namespace exogpu {

bool HostEvent::query() {
  std::lock_guard lock(mutex_);
  return done_;
}

void HostEvent::synchronize() {
  std::unique_lock lock(mutex_);
  done_cv_.wait(lock, [this] { return done_; });
}

void HostEvent::complete() noexcept {
  {
    std::lock_guard lock(mutex_);
    stamp_ = std::chrono::steady_clock::now();
    done_ = true;
  }
  done_cv_.notify_all();
}

double HostEvent::elapsed_ms(Event& later) {
  auto* other = dynamic_cast<HostEvent*>(&later);
  if (other == nullptr) {
    throw InvalidArgument("elapsed_ms: events of " + device_.id() + " and " +
                          later.device().id() + " do not share a clock");
  }
  if (!query() || !other->query()) {
    throw InvalidArgument("elapsed_ms: both events must be complete (synchronize them first)");
  }
  // Both stamps were written before `done_` was set under the lock that
  // query() just took, so they are safe to read now and never change again.
  return std::chrono::duration<double, std::milli>(other->stamp_ - stamp_).count();
}

HostStream::HostStream(Device& device) : Stream(device), worker_([this] { run(); }) {}

HostStream::~HostStream() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_one();
  worker_.join();
}

void HostStream::enqueue(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(task));
  }
  work_cv_.notify_one();
}

void HostStream::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    work_cv_.wait(lock, [this] { return (stopping_ || !queue_.empty()) && !busy_; });
    if (queue_.empty()) return;  // stopping, and everything queued is done
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    try {
      task();
    } catch (...) {
      std::lock_guard error_lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    task = nullptr;  // release what the task held before reporting idle
    lock.lock();
    busy_ = false;
    if (queue_.empty()) idle_cv_.notify_all();
  }
}

void HostStream::do_synchronize() {
  std::unique_lock lock(mutex_);
  idle_cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
  if (error_) {
    std::exception_ptr error = std::exchange(error_, nullptr);
    lock.unlock();
    try {
      std::rethrow_exception(error);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw DeviceError("an operation queued on " + device().id() + " failed: " + e.what());
    }
  }
}

template <typename Task>
void HostStream::run_now(Task&& task) {
  {
    std::unique_lock lock(mutex_);
    if (!queue_.empty() || busy_ || error_) {
      lock.unlock();
      enqueue(std::forward<Task>(task));
      do_synchronize();
      return;
    }
    busy_ = true;  // the worker stays off while this thread runs the task
  }
  task();  // a memcpy: cannot throw
  {
    std::lock_guard lock(mutex_);
    busy_ = false;
  }
  work_cv_.notify_one();  // work queued meanwhile may start
  idle_cv_.notify_all();
}

void HostStream::do_copy_h2d_sync(const AllocationPtr& dst, std::size_t dst_offset,
                                  const void* src, std::size_t n) {
  run_now([dst, dst_offset, src, n] {
    std::memcpy(static_cast<std::byte*>(dst->host_ptr()) + dst_offset, src, n);
  });
}

void HostStream::do_copy_d2h_sync(void* dst, const AllocationPtr& src, std::size_t src_offset,
                                  std::size_t n) {
  run_now([dst, src, src_offset, n] {
    std::memcpy(dst, static_cast<const std::byte*>(src->host_ptr()) + src_offset, n);
  });
}

void HostStream::do_copy_h2d(const AllocationPtr& dst, std::size_t dst_offset, const void* src,
                             std::size_t n) {
  enqueue([dst, dst_offset, src, n] {
    std::memcpy(static_cast<std::byte*>(dst->host_ptr()) + dst_offset, src, n);
  });
}

void HostStream::do_copy_d2h(void* dst, const AllocationPtr& src, std::size_t src_offset,
                             std::size_t n) {
  enqueue([dst, src, src_offset, n] {
    std::memcpy(dst, static_cast<const std::byte*>(src->host_ptr()) + src_offset, n);
  });
}

void HostStream::do_copy_d2d(const AllocationPtr& dst, std::size_t dst_offset,
                             const AllocationPtr& src, std::size_t src_offset, std::size_t n) {
  enqueue([dst, dst_offset, src, src_offset, n] {
    // memmove: source and destination ranges may overlap within one buffer.
    std::memmove(static_cast<std::byte*>(dst->host_ptr()) + dst_offset,
                 static_cast<const std::byte*>(src->host_ptr()) + src_offset, n);
  });
}

void HostStream::do_fill(const AllocationPtr& dst, std::size_t offset, std::size_t n,
                         std::uint8_t value) {
  enqueue([dst, offset, n, value] {
    std::memset(static_cast<std::byte*>(dst->host_ptr()) + offset, value, n);
  });
}

std::shared_ptr<Event> HostStream::do_record() {
  auto event = std::make_shared<HostEvent>(device());
  enqueue([event] { event->complete(); });
  return event;
}

void HostStream::do_wait(const std::shared_ptr<Event>& event) {
  enqueue([event] { event->synchronize(); });
}

}  // namespace exogpu
