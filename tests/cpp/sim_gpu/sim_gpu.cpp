#include "sim_gpu.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cctype>
#include <string_view>
#include <sstream>

namespace exogpu::sim {

namespace {

constexpr std::size_t kDeviceAlignment = 256;  // what cuMemAlloc guarantees
constexpr std::size_t kHostAlignment = 4096;

int env_int(const char* name, int fallback) {
  const char* text = std::getenv(name);
  return text != nullptr && *text != '\0' ? std::atoi(text) : fallback;
}

// std::function needs copyable work; the region uses travel shared.
std::shared_ptr<const std::vector<RegionUse>> hold(std::vector<RegionUse> uses) {
  return std::make_shared<const std::vector<RegionUse>>(std::move(uses));
}

std::string hex(std::uintptr_t address) {
  std::ostringstream out;
  out << "0x" << std::hex << address;
  return out.str();
}

}  // namespace

// ------------------------------------------------------------------ Stream

Stream::Stream(int device) : device_(device), worker_([this] { run(); }) {}

Stream::~Stream() {
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return queue_.empty() && !busy_; });
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void Stream::enqueue(std::function<void()> work) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(work));
  }
  changed_.notify_all();
}

void Stream::synchronize() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return queue_.empty() && !busy_; });
}

void Stream::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left
    std::function<void()> work = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    Machine::instance().wait_while_paused();
    work();
    work = nullptr;  // drop what it captured (region uses) before reporting idle
    lock.lock();
    busy_ = false;
    changed_.notify_all();
  }
}

// ------------------------------------------------------------------- Event

void Event::record(Stream& stream) {
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(state_->mutex);
    generation = ++state_->recorded;
  }
  stream.enqueue([state = state_, generation] {
    {
      std::lock_guard lock(state->mutex);
      state->when = Clock::now();
      state->completed = std::max(state->completed, generation);
    }
    state->completed_changed.notify_all();
  });
}

Status Event::query() {
  std::lock_guard lock(state_->mutex);
  return state_->completed >= state_->recorded ? Status::success : Status::not_ready;
}

void Event::synchronize() {
  std::unique_lock lock(state_->mutex);
  const std::uint64_t target = state_->recorded;
  state_->completed_changed.wait(lock, [&] { return state_->completed >= target; });
}

void Event::make_wait(Stream& stream) {
  std::uint64_t target = 0;
  {
    std::lock_guard lock(state_->mutex);
    target = state_->recorded;
  }
  if (target == 0) return;
  stream.enqueue([state = state_, target] {
    std::unique_lock lock(state->mutex);
    state->completed_changed.wait(lock, [&] { return state->completed >= target; });
  });
}

Status Event::elapsed_ms(Event& end, float* ms) {
  if (ms == nullptr) return Status::invalid_value;
  if (!timing_ || !end.timing_) {
    Machine::instance().fault("elapsed time asked of an event created without timing", false);
    return Status::invalid_handle;
  }
  State* first = state_.get();
  State* second = end.state_.get();
  std::unique_lock<std::mutex> lock_first(first->mutex, std::defer_lock);
  std::unique_lock<std::mutex> lock_second(second->mutex, std::defer_lock);
  if (first == second) {
    lock_first.lock();
  } else {
    std::lock(lock_first, lock_second);  // two threads may ask (a, b) and (b, a)
  }
  if (first->recorded == 0 || second->recorded == 0) return Status::invalid_handle;
  if (first->completed < first->recorded || second->completed < second->recorded) {
    return Status::not_ready;
  }
  *ms = std::chrono::duration<float, std::milli>(second->when - first->when).count();
  return Status::success;
}

// --------------------------------------------------------------- RegionUse

RegionUse RegionUse::adopt(std::uintptr_t base) {
  RegionUse use;
  use.base_ = base;
  return use;
}

RegionUse& RegionUse::operator=(RegionUse&& other) noexcept {
  if (this != &other) {
    reset();
    base_ = std::exchange(other.base_, 0);
  }
  return *this;
}

void RegionUse::reset() noexcept {
  if (base_ != 0) Machine::instance().release(std::exchange(base_, 0));
}

// ----------------------------------------------------------------- Machine

void Machine::FreeDeleter::operator()(std::byte* data) const noexcept { std::free(data); }

Machine& Machine::instance() {
  // Never destroyed: streams of a process that exits without tearing down
  // may still be running work that reaches the machine.
  static Machine* machine = std::make_unique<Machine>().release();
  return *machine;
}

Machine::Machine()
    : device_count_(std::max(0, env_int("EXOGPU_SIM_GPU_DEVICES", 2))),
      memory_total_(static_cast<std::size_t>(std::max(1, env_int("EXOGPU_SIM_GPU_MEMORY_MIB", 4096)))
                    << 20),
      used_(static_cast<std::size_t>(device_count_), 0) {}

const Region* Machine::find(std::uintptr_t address) const {
  auto it = regions_.upper_bound(address);
  if (it == regions_.begin()) return nullptr;
  --it;
  const Region& region = it->second;
  const bool inside = address < region.base + std::max<std::size_t>(region.size, 1);
  return inside ? &region : nullptr;
}

Status Machine::allocate_device(int device, std::size_t n, std::uintptr_t* address) {
  if (address == nullptr || !valid_device(device)) return Status::invalid_value;
  std::lock_guard lock(mutex_);
  auto& used = used_[static_cast<std::size_t>(device)];
  if (n > memory_total_ - used) return Status::out_of_memory;
  const std::size_t bytes = (std::max<std::size_t>(n, 1) + kDeviceAlignment - 1) /
                            kDeviceAlignment * kDeviceAlignment;
  auto* data = static_cast<std::byte*>(std::aligned_alloc(kDeviceAlignment, bytes));
  if (data == nullptr) return Status::out_of_memory;
  // Fresh device memory holds garbage, never conveniently zero.
  std::memset(data, 0xa5, bytes);
  const auto base = reinterpret_cast<std::uintptr_t>(data);
  owned_.emplace(base, std::unique_ptr<std::byte, FreeDeleter>(data));
  regions_[base] = Region{base, n, RegionKind::device, device};
  used += n;
  *address = base;
  return Status::success;
}

Status Machine::free_device(std::uintptr_t address, const char* call) {
  std::lock_guard lock(mutex_);
  auto it = regions_.find(address);
  if (it == regions_.end() || it->second.kind != RegionKind::device) {
    fault(std::string(call) + " of " + hex(address) + ", which is no live device allocation",
          false);
    return Status::invalid_value;
  }
  if (auto busy = uses_.find(address); busy != uses_.end() && busy->second > 0) {
    fault(std::string(call) + " of " + hex(address) + " while " + std::to_string(busy->second) +
              " queued operation(s) still use it",
          true);
    return Status::illegal_address;
  }
  used_[static_cast<std::size_t>(it->second.device)] -= it->second.size;
  regions_.erase(it);
  owned_.erase(address);
  return Status::success;
}

Status Machine::allocate_host(std::size_t n, void** data) {
  if (data == nullptr) return Status::invalid_value;
  const std::size_t bytes =
      (std::max<std::size_t>(n, 1) + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
  auto* memory = static_cast<std::byte*>(std::aligned_alloc(kHostAlignment, bytes));
  if (memory == nullptr) return Status::out_of_memory;
  const auto base = reinterpret_cast<std::uintptr_t>(memory);
  std::lock_guard lock(mutex_);
  owned_.emplace(base, std::unique_ptr<std::byte, FreeDeleter>(memory));
  regions_[base] = Region{base, n, RegionKind::pinned_host, -1};
  *data = memory;
  return Status::success;
}

Status Machine::free_host(void* data, const char* call) {
  const auto base = reinterpret_cast<std::uintptr_t>(data);
  std::lock_guard lock(mutex_);
  auto it = regions_.find(base);
  if (it == regions_.end() || it->second.kind != RegionKind::pinned_host) {
    fault(std::string(call) + " of " + hex(base) + ", which is no page-locked allocation", false);
    return Status::invalid_value;
  }
  regions_.erase(it);
  owned_.erase(base);
  return Status::success;
}

Status Machine::register_host(void* data, std::size_t n) {
  if (data == nullptr || n == 0) return Status::invalid_value;
  const auto base = reinterpret_cast<std::uintptr_t>(data);
  std::lock_guard lock(mutex_);
  // Any overlap with a registered or page-locked range is refused.
  auto next = regions_.lower_bound(base);
  if (next != regions_.end() && next->first < base + n) {
    return Status::host_memory_already_registered;
  }
  if (const Region* before = find(base); before != nullptr) {
    return Status::host_memory_already_registered;
  }
  regions_[base] = Region{base, n, RegionKind::registered_host, -1};
  return Status::success;
}

Status Machine::unregister_host(void* data) {
  const auto base = reinterpret_cast<std::uintptr_t>(data);
  std::lock_guard lock(mutex_);
  auto it = regions_.find(base);
  if (it == regions_.end() || it->second.kind != RegionKind::registered_host) {
    return Status::host_memory_not_registered;
  }
  regions_.erase(it);
  return Status::success;
}

std::size_t Machine::memory_free(int device) {
  std::lock_guard lock(mutex_);
  return memory_total_ - used_.at(static_cast<std::size_t>(device));
}

bool Machine::device_range(const char* call, int device, std::uintptr_t address, std::size_t n,
                           RegionUse* use) {
  std::string problem;
  std::uintptr_t adopted = 0;
  {
    std::lock_guard lock(mutex_);
    const Region* region = find(address);
    if (region == nullptr || region->kind != RegionKind::device) {
      problem = hex(address) + " is not in any live device allocation";
    } else if (device >= 0 && region->device != device) {
      problem = hex(address) + " lives on device " + std::to_string(region->device) +
                ", not on device " + std::to_string(device);
    } else if (n > region->size || address - region->base > region->size - n) {
      problem = "[" + hex(address) + ", +" + std::to_string(n) + ") runs past the end of its " +
                std::to_string(region->size) + "-byte allocation at " + hex(region->base);
    } else if (use != nullptr) {
      ++uses_[region->base];  // counted under the lock; the token only releases it
      adopted = region->base;
    }
  }
  if (!problem.empty()) {
    fault(std::string(call) + ": " + problem, false);
    return false;
  }
  if (adopted != 0) *use = RegionUse::adopt(adopted);
  return true;
}

bool Machine::host_range(const char* call, const void* data, std::size_t n) {
  const auto address = reinterpret_cast<std::uintptr_t>(data);
  std::lock_guard lock(mutex_);
  const Region* region = find(address);
  if (data == nullptr && n > 0) {
    fault(std::string(call) + ": null host pointer", false);
    return false;
  }
  if (region != nullptr && region->kind == RegionKind::device) {
    fault(std::string(call) + ": host pointer " + hex(address) + " is device memory", false);
    return false;
  }
  return true;
}

Status Machine::enable_peer(int from, int to) {
  if (!valid_device(from) || !valid_device(to) || from == to) return Status::invalid_value;
  std::lock_guard lock(mutex_);
  return peers_.insert({from, to}).second ? Status::success : Status::peer_access_already_enabled;
}

bool Machine::peer_enabled(int from, int to) {
  std::lock_guard lock(mutex_);
  return peers_.contains({from, to});
}

void Machine::forget_peers(int device) {
  std::lock_guard lock(mutex_);
  std::erase_if(peers_, [device](const auto& pair) {
    return pair.first == device || pair.second == device;
  });
}

// Called with or without mutex_ held, so the counters have a lock of their own.
void Machine::fault(const std::string& what, bool sticky) {
  std::fprintf(stderr, "exogpu simulated GPU: %s\n", what.c_str());
  std::lock_guard lock(fault_mutex_);
  ++faults_;
  if (sticky) poisoned_ = true;
}

Status Machine::sticky_status() const {
  std::lock_guard lock(fault_mutex_);
  return poisoned_ ? Status::illegal_address : Status::success;
}

int Machine::faults() const {
  std::lock_guard lock(fault_mutex_);
  return faults_;
}

void Machine::clear_faults() {
  std::lock_guard lock(fault_mutex_);
  faults_ = 0;
  poisoned_ = false;
}

void Machine::pause(bool paused) {
  {
    std::lock_guard lock(fault_mutex_);
    paused_ = paused;
  }
  resumed_.notify_all();
}

void Machine::wait_while_paused() {
  std::unique_lock lock(fault_mutex_);
  resumed_.wait(lock, [this] { return !paused_; });
}

void Machine::release(std::uintptr_t base) {
  std::lock_guard lock(mutex_);
  if (auto it = uses_.find(base); it != uses_.end() && --it->second == 0) uses_.erase(it);
}

// ----------------------------------------------------------------- Kernels

// A plain scan rather than std::regex: this runs inside other programs'
// processes, where an exception escaping the C ABI would end them.
std::vector<KernelSignature> parse_ptx_entries(const char* ptx) {
  std::vector<KernelSignature> out;
  if (ptx == nullptr) return out;
  const std::string_view text(ptx);
  auto is_name = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$'; };
  for (std::size_t at = text.find(".entry"); at != std::string_view::npos;
       at = text.find(".entry", at + 1)) {
    std::size_t begin = at + 6;
    while (begin < text.size() && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
    std::size_t end = begin;
    while (end < text.size() && is_name(text[end])) ++end;
    const std::size_t open = text.find('(', end);
    const std::size_t close = text.find(')', end);
    if (end == begin || open == std::string_view::npos || close == std::string_view::npos ||
        close < open) {
      continue;
    }
    KernelSignature signature{std::string(text.substr(begin, end - begin)), {}};
    const std::string_view params = text.substr(open + 1, close - open - 1);
    for (std::size_t p = params.find(".param"); p != std::string_view::npos;
         p = params.find(".param", p + 1)) {
      std::size_t type = params.find('.', p + 6);
      if (type == std::string_view::npos) break;
      int bits = 0;
      for (std::size_t i = type + 2; i < params.size() && std::isdigit(static_cast<unsigned char>(params[i])); ++i) {
        bits = bits * 10 + (params[i] - '0');
      }
      signature.param_bytes.push_back(bits / 8);
    }
    out.push_back(std::move(signature));
  }
  return out;
}

Status launch_fma(Stream& stream, std::uintptr_t data, std::uint64_t count,
                  std::uint32_t iterations, std::uint64_t threads) {
  const std::uint64_t elements = std::min(count, threads);
  Machine& machine = Machine::instance();
  std::vector<RegionUse> uses(1);
  if (elements > 0 &&
      !machine.device_range("exogpu_fma", stream.device(), data, elements * sizeof(float),
                            &uses[0])) {
    machine.fault("exogpu_fma: out-of-bounds global memory access", true);
    return Status::illegal_address;
  }
  stream.enqueue([data, elements, iterations, held = hold(std::move(uses))] {
    auto* values = reinterpret_cast<float*>(data);
    for (std::uint64_t i = 0; i < elements; ++i) {
      float x = values[i];
      for (std::uint32_t k = 0; k < iterations; ++k) x = std::fma(x, 0.999999F, 1e-7F);
      values[i] = x;
    }
  });
  return Status::success;
}

void enqueue_copy(Stream& stream, void* dst, const void* src, std::size_t n,
                  std::vector<RegionUse> uses) {
  stream.enqueue([dst, src, n, held = hold(std::move(uses))] {
    if (n > 0) std::memmove(dst, src, n);
  });
}

void enqueue_fill(Stream& stream, void* dst, unsigned char value, std::size_t n,
                  std::vector<RegionUse> uses) {
  stream.enqueue([dst, value, n, held = hold(std::move(uses))] {
    if (n > 0) std::memset(dst, value, n);
  });
}

}  // namespace exogpu::sim

extern "C" void exogpu_sim_gpu_pause(int paused) {
  exogpu::sim::Machine::instance().pause(paused != 0);
}
extern "C" int exogpu_sim_gpu_faults() { return exogpu::sim::Machine::instance().faults(); }
extern "C" void exogpu_sim_gpu_clear_faults() { exogpu::sim::Machine::instance().clear_faults(); }
