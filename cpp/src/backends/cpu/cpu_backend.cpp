// The host CPU as an exogpu device: page-aligned allocations, one in-order
// worker thread per stream, host-clock events, and a vectorised FMA kernel
// across all cores for the compute probe.
#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <malloc.h>
#include <windows.h>
#else
#include <sys/mman.h>
#include <unistd.h>
#endif

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <fstream>
#include <string>
#include <thread>

#if defined(__GLIBC__)
#include <gnu/libc-version.h>
#endif

#include "core/backends.hpp"
#include "core/host_stream.hpp"
#include "exogpu/error.hpp"
#include "exogpu/registry.hpp"

namespace exogpu {

namespace {

std::size_t page_size() {
  static const std::size_t size = [] {
#if defined(_WIN32)
    SYSTEM_INFO system{};
    GetSystemInfo(&system);
    const long v = static_cast<long>(system.dwPageSize);
#else
    const long v = sysconf(_SC_PAGESIZE);
#endif
    return v > 0 ? static_cast<std::size_t>(v) : std::size_t{4096};
  }();
  return size;
}

struct FreeDeleter {
#if defined(_WIN32)
  void operator()(void* p) const noexcept { _aligned_free(p); }
#else
  void operator()(void* p) const noexcept { std::free(p); }
#endif
};
using HostMemory = std::unique_ptr<void, FreeDeleter>;

// Page-aligned host memory, or nullptr when the allocation fails.
// Large buffers are aligned to 2 MiB and offered to transparent huge pages,
// as numpy does for its arrays: fewer TLB misses make big copies faster.
HostMemory allocate_pages(std::size_t n) {
  constexpr std::size_t kHugePage = std::size_t{2} << 20;
  const bool huge = n >= 2 * kHugePage;
  const std::size_t align = huge ? kHugePage : page_size();
  if (n > SIZE_MAX - align) return nullptr;
  const std::size_t rounded = (n + align - 1) / align * align;
#if defined(_WIN32)
  HostMemory memory(_aligned_malloc(rounded, align));  // the C runtime has no aligned_alloc
#else
  HostMemory memory(std::aligned_alloc(align, rounded));
#endif
#if defined(MADV_HUGEPAGE)
  if (memory && huge) (void)madvise(memory.get(), rounded, MADV_HUGEPAGE);  // a hint only
#endif
  return memory;
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

#if defined(_WIN32)
// The figures /proc/meminfo gives elsewhere, from the Windows memory status.
std::uint64_t meminfo_bytes(std::string_view key) {
  MEMORYSTATUSEX status{};
  status.dwLength = sizeof status;
  if (!GlobalMemoryStatusEx(&status)) return 0;
  if (key == "MemTotal") return status.ullTotalPhys;
  if (key == "MemAvailable") return status.ullAvailPhys;
  return 0;
}

// "model name" and "vendor_id" as /proc/cpuinfo names them, from the
// registry's description of the first processor.
std::string cpuinfo_field(const std::string& key) {
  const char* value = key == "model name" ? "ProcessorNameString"
                      : key == "vendor_id" ? "VendorIdentifier"
                                           : nullptr;
  if (value == nullptr) return {};
  char text[256] = {};
  DWORD size = sizeof text;
  if (RegGetValueA(HKEY_LOCAL_MACHINE, "HARDWARE\\DESCRIPTION\\System\\CentralProcessor\\0",
                   value, RRF_RT_REG_SZ, nullptr, text, &size) != ERROR_SUCCESS) {
    return {};
  }
  std::string out(text);
  const auto start = out.find_first_not_of(' ');
  return start == std::string::npos ? std::string{} : out.substr(start);
}
#else
// Reads "Key:   value kB" from /proc/meminfo; 0 when absent. Parsed with
// from_chars, which no global locale (a loaded driver may set one) can change.
std::uint64_t meminfo_bytes(std::string_view key) {
  std::ifstream file("/proc/meminfo");
  std::string line;
  while (std::getline(file, line)) {
    if (line.size() <= key.size() || line.compare(0, key.size(), key) != 0 ||
        line[key.size()] != ':') {
      continue;
    }
    const char* begin = line.data() + key.size() + 1;
    const char* end = line.data() + line.size();
    while (begin < end && *begin == ' ') ++begin;
    std::uint64_t kib = 0;
    if (std::from_chars(begin, end, kib).ec != std::errc{}) return 0;
    return kib * 1024;
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

#endif

std::string vendor_name(const std::string& vendor_id) {
  if (vendor_id == "GenuineIntel") return "Intel";
  if (vendor_id == "AuthenticAMD") return "AMD";
  if (vendor_id.empty()) return "unknown";
  return vendor_id;
}

// The same figure as the host memory pool's capacity (registry.hpp), so that
// the CPU and the pool agree on what the host has.
std::uint64_t physical_memory() { return host_physical_memory(); }

// Eight independent chains of vectors per block, kept in registers, so the
// loop is bound by FMA throughput rather than by loads and stores. The vector
// width follows the widest instruction set the CPU has. This file is built
// with -ffp-contract=fast so that `c * a + b` becomes one fused instruction.
// (A vector_size attribute on a dependent alias is dropped, hence one
// specialisation per width.)
#if defined(__GNUC__) || defined(__clang__)
template <std::size_t Bytes>
struct LanesOf;
template <>
struct LanesOf<16> {
  typedef float type __attribute__((vector_size(16)));
};
template <>
struct LanesOf<32> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct LanesOf<64> {
  typedef float type __attribute__((vector_size(64)));
};

template <std::size_t Bytes>
__attribute__((always_inline)) inline void fma_lanes(float* data, std::size_t count,
                                                     std::uint32_t iterations) {
  using V = typename LanesOf<Bytes>::type;
  constexpr std::size_t kBlock = 8 * Bytes / sizeof(float);  // eight chains
  const V a = V{} + 0.999999f;
  const V b = V{} + 1e-7f;
  std::size_t base = 0;
  for (; base + kBlock <= count; base += kBlock) {
    V c0, c1, c2, c3, c4, c5, c6, c7;
    constexpr std::size_t kStep = Bytes / sizeof(float);
    std::memcpy(&c0, data + base + 0 * kStep, Bytes);
    std::memcpy(&c1, data + base + 1 * kStep, Bytes);
    std::memcpy(&c2, data + base + 2 * kStep, Bytes);
    std::memcpy(&c3, data + base + 3 * kStep, Bytes);
    std::memcpy(&c4, data + base + 4 * kStep, Bytes);
    std::memcpy(&c5, data + base + 5 * kStep, Bytes);
    std::memcpy(&c6, data + base + 6 * kStep, Bytes);
    std::memcpy(&c7, data + base + 7 * kStep, Bytes);
    for (std::uint32_t it = 0; it < iterations; ++it) {
      c0 = c0 * a + b;
      c1 = c1 * a + b;
      c2 = c2 * a + b;
      c3 = c3 * a + b;
      c4 = c4 * a + b;
      c5 = c5 * a + b;
      c6 = c6 * a + b;
      c7 = c7 * a + b;
    }
    std::memcpy(data + base + 0 * kStep, &c0, Bytes);
    std::memcpy(data + base + 1 * kStep, &c1, Bytes);
    std::memcpy(data + base + 2 * kStep, &c2, Bytes);
    std::memcpy(data + base + 3 * kStep, &c3, Bytes);
    std::memcpy(data + base + 4 * kStep, &c4, Bytes);
    std::memcpy(data + base + 5 * kStep, &c5, Bytes);
    std::memcpy(data + base + 6 * kStep, &c6, Bytes);
    std::memcpy(data + base + 7 * kStep, &c7, Bytes);
  }
  for (; base < count; ++base) {  // the tail, one lane at a time
    float x = data[base];
    for (std::uint32_t it = 0; it < iterations; ++it) x = __builtin_fmaf(x, 0.999999f, 1e-7f);
    data[base] = x;
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f"))) void fma_avx512(float* d, std::size_t n, std::uint32_t it) {
  fma_lanes<64>(d, n, it);
}
__attribute__((target("avx2,fma"))) void fma_avx2(float* d, std::size_t n, std::uint32_t it) {
  fma_lanes<32>(d, n, it);
}
#endif

#else
// Compilers without vector extensions (MSVC): eight independent scalar
// chains, which the optimiser may vectorise on its own.
template <std::size_t Bytes>
void fma_lanes(float* data, std::size_t count, std::uint32_t iterations) {
  std::size_t base = 0;
  for (; base + 8 <= count; base += 8) {
    float c[8];
    std::memcpy(c, data + base, sizeof c);
    for (std::uint32_t it = 0; it < iterations; ++it) {
      for (float& x : c) x = std::fma(x, 0.999999f, 1e-7f);
    }
    std::memcpy(data + base, c, sizeof c);
  }
  for (; base < count; ++base) {
    float x = data[base];
    for (std::uint32_t it = 0; it < iterations; ++it) x = std::fma(x, 0.999999f, 1e-7f);
    data[base] = x;
  }
}
#endif

void fma_block(float* data, std::size_t count, std::uint32_t iterations) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (__builtin_cpu_supports("avx512f")) return fma_avx512(data, count, iterations);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return fma_avx2(data, count, iterations);
  }
#endif
  fma_lanes<16>(data, count, iterations);
}

class CpuDevice final : public Device {
 public:
  explicit CpuDevice(DeviceInfo info) : Device(std::move(info)) {}
  ~CpuDevice() override { release_default_objects(); }

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
