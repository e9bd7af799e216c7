// Keeps the allocations that queued GPU work uses alive until that work is
// done, for backends whose streams complete in order and signal with fences
// (CUDA and HIP events). Freeing a Buffer mid-copy is then safe: the memory
// goes back to the driver only once a fence recorded after the copy has
// completed. Fences are reused, so a busy stream creates few of them.
#pragma once

#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "exogpu/device.hpp"

namespace exogpu {

template <typename Fence>
class InFlight {
 public:
  // After enqueueing work that uses `allocations`: retires what has
  // completed (`done(fence)`), then records a fence (`record(fence)`) taken
  // from the spares or made new (`make()`) to hold them.
  template <typename Done, typename Make, typename Record>
  void hold(std::vector<std::shared_ptr<Allocation>> allocations, Done done, Make make,
            Record record) {
    std::lock_guard lock(mutex_);
    while (!entries_.empty() && done(*entries_.front().fence)) retire_front();
    std::unique_ptr<Fence> fence;
    if (!spares_.empty()) {
      fence = std::move(spares_.back());
      spares_.pop_back();
    } else {
      fence = make();
    }
    record(*fence);  // may throw: nothing is held then, and the fence is lost
    entries_.push_back({std::move(fence), std::move(allocations)});
  }

  // After the whole stream has synchronised: everything held is done.
  void release_all() {
    std::lock_guard lock(mutex_);
    while (!entries_.empty()) retire_front();
  }

 private:
  void retire_front() {
    spares_.push_back(std::move(entries_.front().fence));
    entries_.pop_front();
  }

  struct Entry {
    std::unique_ptr<Fence> fence;
    std::vector<std::shared_ptr<Allocation>> allocations;
  };
  std::mutex mutex_;
  std::deque<Entry> entries_;
  std::vector<std::unique_ptr<Fence>> spares_;
};

}  // namespace exogpu
