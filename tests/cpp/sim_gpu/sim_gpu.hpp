// A simulated GPU machine for the CUDA and HIP backends on machines without
// one: device memory, page-locked host memory, streams that run their work on
// threads of their own, events with timestamps, peer access and the FMA
// kernel, all in host memory. sim_cuda.cpp and sim_hip.cpp put the vendors'
// C ABIs on top, so exogpu loads them exactly as it loads libcuda.so.1 or
// libamdhip64.so and the conformance suite runs over every line of the
// backends.
//
// It is stricter than a real driver, the way compute-sanitizer is: a copy
// that strays outside a live allocation, a device pointer used on another
// device, freeing memory that queued work still uses, a peer copy before
// peer access is enabled, or a call with no current context is reported on
// stderr and turns into an error (sticky, for faults found while work runs).
// It proves exogpu's side of the API contract; it says nothing of the speed
// or the quirks of a real GPU.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace exogpu::sim {

enum class Status {
  success,
  invalid_value,
  out_of_memory,
  not_ready,
  invalid_handle,
  invalid_context,
  illegal_address,
  peer_access_already_enabled,
  peer_access_not_enabled,
  host_memory_already_registered,
  host_memory_not_registered,
  not_found,
  invalid_image,
};

// What a range of addresses is, as the machine tracks it.
enum class RegionKind { device, pinned_host, registered_host };

struct Region {
  std::uintptr_t base = 0;
  std::size_t size = 0;
  RegionKind kind = RegionKind::device;
  int device = -1;  // the owning device of device memory
};

// A stream: work runs in order on its own thread.
class Stream {
 public:
  explicit Stream(int device);
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();  // finishes the queued work first, as a real stream does

  [[nodiscard]] int device() const noexcept { return device_; }
  void enqueue(std::function<void()> work);
  void synchronize();

 private:
  void run();

  int device_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::function<void()>> queue_;
  bool busy_ = false;
  bool stopping_ = false;
  std::thread worker_;
};

// An event: each record() is a generation that completes when its stream
// reaches it.
class Event {
 public:
  Event(int device, bool timing) : device_(device), timing_(timing) {}

  [[nodiscard]] int device() const noexcept { return device_; }
  void record(Stream& stream);
  [[nodiscard]] Status query();
  void synchronize();
  // Makes `stream` wait for the generation recorded last (none: no wait).
  void make_wait(Stream& stream);
  [[nodiscard]] Status elapsed_ms(Event& end, float* ms);

 private:
  using Clock = std::chrono::steady_clock;
  struct State {
    std::mutex mutex;
    std::condition_variable completed_changed;
    std::uint64_t recorded = 0;
    std::uint64_t completed = 0;
    Clock::time_point when{};
  };
  int device_;
  bool timing_;
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// Marks a region busy while queued work uses it; freeing it then is a fault.
class RegionUse {
 public:
  RegionUse() = default;
  // Takes over one use the machine has already counted.
  [[nodiscard]] static RegionUse adopt(std::uintptr_t base);
  RegionUse(RegionUse&& other) noexcept : base_(std::exchange(other.base_, 0)) {}
  RegionUse& operator=(RegionUse&& other) noexcept;
  RegionUse(const RegionUse&) = delete;
  RegionUse& operator=(const RegionUse&) = delete;
  ~RegionUse() { reset(); }
  void reset() noexcept;

 private:
  std::uintptr_t base_ = 0;
};

class Machine {
 public:
  // Configured once from EXOGPU_SIM_GPU_DEVICES (default 2) and
  // EXOGPU_SIM_GPU_MEMORY_MIB (default 4096 per device).
  static Machine& instance();
  Machine();  // use instance(); public only for the leaked singleton

  [[nodiscard]] int device_count() const noexcept { return device_count_; }
  [[nodiscard]] std::size_t memory_total() const noexcept { return memory_total_; }
  [[nodiscard]] bool valid_device(int device) const noexcept {
    return device >= 0 && device < device_count_;
  }

  [[nodiscard]] Status allocate_device(int device, std::size_t n, std::uintptr_t* address);
  [[nodiscard]] Status free_device(std::uintptr_t address, const char* call);
  [[nodiscard]] Status allocate_host(std::size_t n, void** data);
  [[nodiscard]] Status free_host(void* data, const char* call);
  [[nodiscard]] Status register_host(void* data, std::size_t n);
  [[nodiscard]] Status unregister_host(void* data);
  [[nodiscard]] std::size_t memory_free(int device);

  // Whether [address, address + n) lies in one live allocation of `device`;
  // reports the fault when not. `use` (optional) then keeps the region busy.
  [[nodiscard]] bool device_range(const char* call, int device, std::uintptr_t address,
                                  std::size_t n, RegionUse* use);
  // Host memory given to a copy must not be some device's memory.
  [[nodiscard]] bool host_range(const char* call, const void* data, std::size_t n);

  [[nodiscard]] Status enable_peer(int from, int to);
  [[nodiscard]] bool peer_enabled(int from, int to);
  // Peer access ends with the context that enabled it, or that it reaches.
  void forget_peers(int device);

  // Reports a misuse on stderr; `sticky` faults poison every later sync.
  void fault(const std::string& what, bool sticky);
  [[nodiscard]] Status sticky_status() const;
  [[nodiscard]] int faults() const;
  void clear_faults();

  // While paused, streams start no work: tests use it to hold work in flight
  // for as long as they need, instead of racing it.
  void pause(bool paused);
  void wait_while_paused();

  void release(std::uintptr_t base);

 private:
  [[nodiscard]] const Region* find(std::uintptr_t address) const;  // mutex_ held

  int device_count_;
  std::size_t memory_total_;
  mutable std::mutex mutex_;
  std::map<std::uintptr_t, Region> regions_;
  std::map<std::uintptr_t, int> uses_;
  struct FreeDeleter {
    void operator()(std::byte* data) const noexcept;
  };
  std::map<std::uintptr_t, std::unique_ptr<std::byte, FreeDeleter>> owned_;
  std::vector<std::size_t> used_;
  std::set<std::pair<int, int>> peers_;
  mutable std::mutex fault_mutex_;
  bool poisoned_ = false;
  int faults_ = 0;
  bool paused_ = false;
  std::condition_variable resumed_;
};

// The live objects a shim has handed out by pointer, so that a destroyed or
// made-up handle is caught rather than followed.
template <typename T>
class Handles {
 public:
  T* add(std::unique_ptr<T> object) {
    std::lock_guard lock(mutex_);
    T* raw = object.get();
    objects_.emplace(raw, std::move(object));
    return raw;
  }
  [[nodiscard]] bool valid(const T* raw) const {
    std::lock_guard lock(mutex_);
    return objects_.contains(raw);
  }
  [[nodiscard]] std::unique_ptr<T> remove(const T* raw) {
    std::lock_guard lock(mutex_);
    auto node = objects_.extract(raw);
    return node.empty() ? nullptr : std::move(node.mapped());
  }

 private:
  mutable std::mutex mutex_;
  std::map<const T*, std::unique_ptr<T>> objects_;
};

// Kernels the machine can run, found by name in a PTX image.
struct KernelSignature {
  std::string name;
  std::vector<int> param_bytes;  // one entry per .param, in order
};
[[nodiscard]] std::vector<KernelSignature> parse_ptx_entries(const char* ptx);

// exogpu_fma on `threads` threads: data[i] = fma(data[i], 0.999999, 1e-7)
// `iterations` times for i < min(count, threads).
[[nodiscard]] Status launch_fma(Stream& stream, std::uintptr_t data, std::uint64_t count,
                                std::uint32_t iterations, std::uint64_t threads);

// Asynchronous byte copy and fill, with the regions kept busy until done.
void enqueue_copy(Stream& stream, void* dst, const void* src, std::size_t n,
                  std::vector<RegionUse> uses);
void enqueue_fill(Stream& stream, void* dst, unsigned char value, std::size_t n,
                  std::vector<RegionUse> uses);

}  // namespace exogpu::sim

// Test hooks, exported beside the vendor ABI.
extern "C" {
__attribute__((visibility("default"))) void exogpu_sim_gpu_pause(int paused);
__attribute__((visibility("default"))) int exogpu_sim_gpu_faults();
__attribute__((visibility("default"))) void exogpu_sim_gpu_clear_faults();
}
