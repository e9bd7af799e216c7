// The work of one stream in order: a copy queue for copies and fills, a
// compute queue (made on first use) for DirectML dispatches, and one
// ID3D12Fence whose value counts submissions across both. Each submission
// signals the next value; switching queues makes the new one wait for the
// last value, so the stream stays in order. Host work that must follow the
// GPU (a readback copied out to the caller's memory, a timestamp read) runs
// when a later call sees the submission complete.
//
// Events are fence values plus, where the queue can write them, GPU
// timestamps: on the copy queue where the adapter allows copy-queue
// timestamps, else on the compute queue. Events hold the timeline, so they
// outlive their stream.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "backends/directml/dml_context.hpp"
#include "backends/directml/dml_staging.hpp"
#include "exogpu/device.hpp"

namespace exogpu::directml {

enum class Lane { copy, compute };

// A command allocator and list, reused once their submission has completed.
struct CommandSet {
  Lane lane = Lane::copy;
  ComPtr<ID3D12CommandAllocator> allocator;
  ComPtr<ID3D12GraphicsCommandList> list;
};

// One submission being recorded.
struct Work {
  CommandSet commands;
  std::vector<std::shared_ptr<Allocation>> allocations;  // kept alive until complete
  std::vector<ComPtr<IUnknown>> objects;                 // likewise (heaps, bindings)
  std::function<void()> on_complete;                     // host work after the GPU's
  bool writes_host = false;  // on_complete writes the caller's memory
};

class Timeline : public std::enable_shared_from_this<Timeline> {
 public:
  explicit Timeline(std::shared_ptr<Context> context);
  Timeline(const Timeline&) = delete;
  Timeline& operator=(const Timeline&) = delete;
  ~Timeline();

  using Lock = std::unique_lock<std::mutex>;
  [[nodiscard]] Lock lock() { return Lock(mutex_); }
  [[nodiscard]] const Context& context() const noexcept { return *context_; }
  [[nodiscard]] ID3D12Fence* fence() const noexcept { return fence_.Get(); }

  // An open command list on `lane`.
  [[nodiscard]] Work begin(Lock& lock, Lane lane);
  // Closes and executes the work, signals the next fence value and returns it.
  std::uint64_t submit(Lock& lock, Work work);
  // Later work waits, on the GPU, for `fence` to reach `value` (a fence of
  // another stream of this device).
  void gpu_wait(Lock& lock, ID3D12Fence* fence, std::uint64_t value);

  // Runs the host work of completed submissions; throws DeviceError when the
  // device was removed.
  void progress(Lock& lock);
  // Blocks until submission `value` and its host work are complete.
  void wait_for(Lock& lock, std::uint64_t value);
  void wait_all(Lock& lock) { wait_for(lock, submitted_); }
  // Blocks until no completion callback that writes host memory is pending,
  // so that host memory read now sees what earlier readbacks wrote.
  void wait_for_host_writes(Lock& lock);
  [[nodiscard]] bool complete(Lock& lock, std::uint64_t value);
  // Whether a submission up to `value` has yet to write the caller's memory.
  [[nodiscard]] bool host_writes_pending(Lock& lock, std::uint64_t value);
  [[nodiscard]] std::uint64_t submitted(Lock&) const noexcept { return submitted_; }

  // Staging space of `n` bytes (n <= ring capacity), waiting for older
  // submissions to free it when needed. Pieces belong to the next submission.
  [[nodiscard]] std::uint64_t reserve_upload(Lock& lock, std::uint64_t n);
  [[nodiscard]] std::uint64_t reserve_readback(Lock& lock, std::uint64_t n);
  [[nodiscard]] StagingRing& upload_ring() { return *upload_; }
  [[nodiscard]] StagingRing& readback_ring() { return *readback_; }
  [[nodiscard]] static constexpr std::uint64_t ring_capacity() { return kRingCapacity; }

  // The queue whose timestamps events use (decided on first use).
  [[nodiscard]] Lane timestamp_lane(Lock& lock);
  // Records a timestamp at the current end of the stream into the work's
  // list (which must be on timestamp_lane()); `read` receives the tick count
  // once the submission completes. False when this device has no usable
  // timestamps.
  bool write_timestamp(Lock& lock, Work& work, std::function<void(std::uint64_t)> read);
  [[nodiscard]] double timestamp_frequency() const noexcept { return timestamp_frequency_; }

 private:
  static constexpr std::uint64_t kRingCapacity = std::uint64_t{16} << 20;
  static constexpr std::uint32_t kTimestampSlots = 64;

  struct Pending {
    std::uint64_t value;
    std::optional<CommandSet> commands;
    std::vector<std::shared_ptr<Allocation>> allocations;
    std::vector<ComPtr<IUnknown>> objects;
    std::function<void()> on_complete;
    bool writes_host;
  };

  ID3D12CommandQueue* queue(Lane lane);
  std::uint64_t reserve(Lock& lock, std::unique_ptr<StagingRing>& ring, HeapKind kind,
                        std::uint64_t n);
  void retire(std::uint64_t completed);
  void make_timestamps();

  std::shared_ptr<Context> context_;
  std::mutex mutex_;
  ComPtr<ID3D12Fence> fence_;
  ComPtr<ID3D12CommandQueue> copy_queue_;
  ComPtr<ID3D12CommandQueue> compute_queue_;
  std::optional<Lane> last_lane_;
  std::uint64_t submitted_ = 0;
  std::deque<Pending> pending_;
  std::vector<CommandSet> spare_copy_;
  std::vector<CommandSet> spare_compute_;
  std::unique_ptr<StagingRing> upload_;
  std::unique_ptr<StagingRing> readback_;

  Lane timestamp_lane_ = Lane::compute;
  bool timestamps_tried_ = false;
  double timestamp_frequency_ = 0;
  ComPtr<ID3D12QueryHeap> query_heap_;
  ComPtr<ID3D12Resource> timestamp_buffer_;  // READBACK, kTimestampSlots ticks, mapped
  const std::uint64_t* timestamp_ticks_ = nullptr;
  std::uint32_t next_slot_ = 0;
  std::array<std::uint64_t, kTimestampSlots> slot_value_{};  // submission that last used it
};

}  // namespace exogpu::directml
