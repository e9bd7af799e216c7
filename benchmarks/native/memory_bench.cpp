// exogpu-bench-memory: pooled allocation and copy bandwidth on every device,
// each beside a plain host reference (malloc/free, memcpy) in the same binary.
//   build/dev/benchmarks/native/exogpu-bench-memory --benchmark_min_time=0.2s
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "exogpu/device.hpp"
#include "exogpu/pool.hpp"
#include "exogpu/registry.hpp"

namespace {

using exogpu::Buffer;
using exogpu::Registry;

void pooled_allocate_free(benchmark::State& state, const std::string& id) {
  auto device = Registry::instance().device(id);
  const auto n = static_cast<std::size_t>(state.range(0));
  { Buffer warm = device->allocate_pooled(n); }
  for (auto _ : state) {
    Buffer b = device->allocate_pooled(n);
    benchmark::DoNotOptimize(b.allocation().get());
  }
}

void reference_malloc_free(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* p = std::malloc(n);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
}

void host_to_device(benchmark::State& state, const std::string& id) {
  auto device = Registry::instance().device(id);
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<std::uint8_t> host(n, 1);
  Buffer buffer = device->allocate(n);
  exogpu::write(buffer, 0, host.data(), n);
  for (auto _ : state) exogpu::write(buffer, 0, host.data(), n);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n));  // counted once
}

void device_to_host(benchmark::State& state, const std::string& id) {
  auto device = Registry::instance().device(id);
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<std::uint8_t> host(n, 1);
  Buffer buffer = device->allocate(n);
  exogpu::write(buffer, 0, host.data(), n);
  for (auto _ : state) exogpu::read(host.data(), buffer, 0, n);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n));
}

void reference_memcpy(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<std::uint8_t> a(n, 1), b(n, 2);
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), n);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n));
}

const int registered = [] {
  for (const auto& device : Registry::instance().all_devices()) {
    const std::string& id = device->id();
    benchmark::RegisterBenchmark(("pooled_allocate_free/" + id).c_str(), pooled_allocate_free, id)
        ->Range(4 << 10, 64 << 20);
    benchmark::RegisterBenchmark(("host_to_device/" + id).c_str(), host_to_device, id)
        ->RangeMultiplier(16)->Range(4 << 10, 256 << 20)->UseRealTime();
    benchmark::RegisterBenchmark(("device_to_host/" + id).c_str(), device_to_host, id)
        ->RangeMultiplier(16)->Range(4 << 10, 256 << 20)->UseRealTime();
  }
  benchmark::RegisterBenchmark("reference_malloc_free", reference_malloc_free)->Range(4 << 10, 64 << 20);
  benchmark::RegisterBenchmark("reference_memcpy", reference_memcpy)
      ->RangeMultiplier(16)->Range(4 << 10, 256 << 20)->UseRealTime();
  return 0;
}();

}  // namespace
