// The host CPU as an exogpu device: page-aligned allocations, one in-order
// worker thread per stream, host-clock events, and a vectorised FMA kernel
// across all cores for the compute probe.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#if defined(__GLIBC__)
#include <gnu/libc-version.h>
#endif

#include "core/backends.hpp"
#include "core/host_stream.hpp"
#include "exogpu/error.hpp"

namespace exogpu {

namespace {

std::size_t page_size() {
  static const std::size_t size = [] {
    const long v = sysconf(_SC_PAGESIZE);
    return v > 0 ? static_cast<std::size_t>(v) : std::size_t{4096};
  }();
  return size;
}

struct FreeDeleter {
  void operator()(void* p) const noexcept { std::free(p); }
};
using HostMemory = std::unique_ptr<void, FreeDeleter>;

// Page-aligned host memory, or nullptr when the allocation fails.
HostMemory allocate_pages(std::size_t n) {
  const std::size_t page = page_size();
  if (n > SIZE_MAX - page) return nullptr;
  const std::size_t rounded = (n + page - 1) / page * page;
  return HostMemory(std::aligned_alloc(page, rounded));
}

class CpuAllocation final : public Allocation {
 public:
  CpuAllocation(HostMemory memory, std::size_t size) : memory_(std::move(memory)), size_(size) {}
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }
  [[nodiscard]] void* host_ptr() const noexcept override { return memory_.get(); }

 private:
  HostMemory memory_;
  std::size_t size_;
};

class CpuHostBuffer final : public HostBuffer {
 public:
  CpuHostBuffer(HostMemory memory, std::size_t size) : memory_(std::move(memory)), size_(size) {}
  [[nodiscard]] void* data() const noexcept override { return memory_.get(); }
  [[nodiscard]] std::size_t size() const noexcept override { return size_; }
  // Nothing here does DMA, so locking pages would buy nothing.
  [[nodiscard]] bool page_locked() const noexcept override { return false; }

 private:
  HostMemory memory_;
  std::size_t size_;
};

// Reads "Key:   value kB" from /proc/meminfo; 0 when absent.
std::uint64_t meminfo_bytes(const std::string& key) {
  std::ifstream file("/proc/meminfo");
  std::string name;
  std::uint64_t value = 0;
  std::string unit;
  while (file >> name >> value) {
    std::getline(file, unit);
    if (name == key + ":") return value * 1024;
  }
  return 0;
}

std::string cpuinfo_field(const std::string& key) {
  std::ifstream file("/proc/cpuinfo");
  std::string line;
  while (std::getline(file, line)) {
    if (line.rfind(key, 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        const auto start = line.find_first_not_of(' ', colon + 1);
        return start == std::string::npos ? std::string{} : line.substr(start);
      }
    }
  }
  return {};
}

std::string vendor_name(const std::string& vendor_id) {
  if (vendor_id == "GenuineIntel") return "Intel";
  if (vendor_id == "AuthenticAMD") return "AMD";
  if (vendor_id.empty()) return "unknown";
  return vendor_id;
}

std::uint64_t physical_memory() {
  if (const std::uint64_t total = meminfo_bytes("MemTotal"); total > 0) return total;
  const long pages = sysconf(_SC_PHYS_PAGES);
  return pages > 0 ? static_cast<std::uint64_t>(pages) * page_size() : 0;
}

// One FMA chain per lane over a block that stays in registers/L1, so the
// loop is bound by FMA throughput, not memory.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx512f", "avx2,fma", "default")))
#endif
void fma_block(float* data, std::size_t count, std::uint32_t iterations) {
  constexpr std::size_t kBlock = 128;
  for (std::size_t base = 0; base < count; base += kBlock) {
    const std::size_t n = count - base < kBlock ? count - base : kBlock;
    float acc[kBlock] = {};
    for (std::size_t i = 0; i < n; ++i) acc[i] = data[base + i];
    for (std::uint32_t it = 0; it < iterations; ++it) {
      for (std::size_t i = 0; i < kBlock; ++i) acc[i] = __builtin_fmaf(acc[i], 0.999999f, 1e-7f);
    }
    for (std::size_t i = 0; i < n; ++i) data[base + i] = acc[i];
  }
}

class CpuDevice final : public Device {
 public:
  explicit CpuDevice(DeviceInfo info) : Device(std::move(info)) {}

  [[nodiscard]] MemoryInfo memory_info() const override {
    MemoryInfo m;
    m.total = info().memory_total;
    m.free = meminfo_bytes("MemAvailable");
    m.source = m.free > 0 ? MemorySource::os : MemorySource::estimate;
    if (m.free == 0) m.free = m.total;
    return m;
  }

  [[nodiscard]] std::unique_ptr<HostBuffer> allocate_host(std::size_t n) override {
    HostMemory memory = allocate_pages(n == 0 ? 1 : n);
    if (!memory) throw OutOfMemory(id() + ": cannot allocate " + std::to_string(n) +
                                   " bytes of host memory");
    return std::make_unique<CpuHostBuffer>(std::move(memory), n);
  }

  [[nodiscard]] std::shared_ptr<Stream> create_stream() override {
    return std::make_shared<HostStream>(*this);
  }

  [[nodiscard]] double launch_fma(Stream& stream, const Buffer& buffer,
                                  std::uint32_t iterations) override {
    auto* host_stream = dynamic_cast<HostStream*>(&stream);
    if (host_stream == nullptr || &stream.device() != this) {
      throw InvalidArgument("launch_fma: the stream does not belong to " + id());
    }
    if (!buffer.valid() || &buffer.device() != this) {
      throw InvalidArgument("launch_fma: the buffer does not live on " + id());
    }
    const std::size_t count = buffer.size() / sizeof(float);
    if (count == 0) return 0.0;
    host_stream->enqueue([allocation = buffer.allocation(), count, iterations] {
      auto* data = static_cast<float*>(allocation->host_ptr());
      const std::size_t workers = std::max(1u, std::thread::hardware_concurrency());
      const std::size_t per = (count + workers - 1) / workers;
      std::vector<std::jthread> threads;
      for (std::size_t w = 0; w < workers && w * per < count; ++w) {
        const std::size_t begin = w * per;
        const std::size_t n = std::min(per, count - begin);
        threads.emplace_back([=] { fma_block(data + begin, n, iterations); });
      }
    });
    // Every element's lane runs `iterations` FMAs of 2 flops each; padding
    // lanes of a partial block are not counted.
    return 2.0 * static_cast<double>(count) * iterations;
  }

 protected:
  [[nodiscard]] std::unique_ptr<Allocation> do_allocate(std::size_t n) override {
    if (n > info().memory_total) {
      throw OutOfMemory(id() + ": cannot allocate " + std::to_string(n) +
                        " bytes: the device has " + std::to_string(info().memory_total) +
                        " bytes in all");
    }
    HostMemory memory = allocate_pages(n);
    if (!memory) {
      throw OutOfMemory(id() + ": cannot allocate " + std::to_string(n) + " bytes (" +
                        std::to_string(memory_info().free) + " bytes available)");
    }
    return std::make_unique<CpuAllocation>(std::move(memory), n);
  }
};

class CpuBackend final : public Backend {
 public:
  [[nodiscard]] std::string_view name() const noexcept override { return "cpu"; }

  [[nodiscard]] BackendStatus open() override {
    DeviceInfo info;
    info.id = "cpu:0";
    info.backend = "cpu";
    info.index = 0;
    info.name = cpuinfo_field("model name");
    if (info.name.empty()) info.name = "host CPU";
    info.vendor = vendor_name(cpuinfo_field("vendor_id"));
    info.kind = DeviceKind::cpu;
    info.memory_total = physical_memory();
    info.unified_memory = true;
    device_ = std::make_shared<CpuDevice>(std::move(info));

    BackendStatus status;
    status.name = "cpu";
    status.available = true;
    status.device_count = 1;
#if defined(__GLIBC__)
    status.runtime_version = std::string("glibc ") + gnu_get_libc_version();
#endif
    return status;
  }

  [[nodiscard]] std::vector<std::shared_ptr<Device>> devices() override {
    if (!device_) return {};
    return {device_};
  }

 private:
  std::shared_ptr<Device> device_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace exogpu
