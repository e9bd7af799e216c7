// The DirectML backend's figures, each beside its reference measured in the
// same process: host-to-device and device-to-host GB/s at 64 MiB against
// memcpy of the same size (staged through the upload and readback rings, and,
// on cache-coherent UMA adapters, zero-copy), and DirectML GEMM GFLOP/s at
// 1024^3 in float32 and float16 against the CPU backend's FMA figure.
// Medians of --samples timed runs after --warmup untimed ones.
//
//   exogpu-directml-report [--samples N] [--warmup N] [--mib N] [--gemm N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "backends/directml/dml_backend.hpp"
#include "backends/directml/dml_gemm.hpp"
#include "exogpu/probe.hpp"
#include "exogpu/registry.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int samples = 7;
  int warmup = 2;
  std::size_t mib = 64;
  std::uint32_t gemm = 1024;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Median seconds of `run`, timed on the host clock around a complete run.
double median_seconds(const Options& o, const std::function<void()>& run) {
  for (int i = 0; i < o.warmup; ++i) run();
  std::vector<double> seconds;
  for (int i = 0; i < o.samples; ++i) {
    const auto t0 = Clock::now();
    run();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return median(std::move(seconds));
}

std::shared_ptr<exogpu::Device> open_device(bool host_visible, std::vector<std::unique_ptr<exogpu::Backend>>& keep) {
  auto options = exogpu::directml::options_from_environment();
  options.host_visible = host_visible;
  keep.push_back(exogpu::directml::make_backend(options));
  const exogpu::BackendStatus status = keep.back()->open();
  if (!status.available) {
    std::fprintf(stderr, "DirectML is unavailable: %s\n", status.reason.c_str());
    std::exit(2);
  }
  return keep.back()->devices().front();
}

void transfers(const Options& o, exogpu::Device& device, const char* path) {
  const std::size_t n = o.mib << 20;
  std::vector<std::uint8_t> host(n);
  for (std::size_t i = 0; i < n; ++i) host[i] = static_cast<std::uint8_t>(i * 2654435761u >> 24);
  std::vector<std::uint8_t> out(n);
  std::vector<std::uint8_t> scratch(n);
  exogpu::Buffer buffer = device.allocate(n);
  auto stream = device.create_stream();
  const double gb = static_cast<double>(n) / 1e9;
  const double memcpy_s =
      median_seconds(o, [&] { std::memcpy(scratch.data(), host.data(), n); });
  const double h2d_s = median_seconds(o, [&] {
    stream->copy_h2d(buffer, 0, host.data(), n);
    stream->synchronize();
  });
  const double d2h_s = median_seconds(o, [&] {
    stream->copy_d2h(out.data(), buffer, 0, n);
    stream->synchronize();
  });
  const bool intact = out == host;
  std::printf("%s, %s buffers, %zu MiB (bytes %s):\n", device.id().c_str(), path, o.mib,
              intact ? "intact" : "CORRUPTED");
  std::printf("  memcpy            %7.2f GB/s\n", gb / memcpy_s);
  std::printf("  host-to-device    %7.2f GB/s  (%.2fx memcpy)\n", gb / h2d_s, memcpy_s / h2d_s);
  std::printf("  device-to-host    %7.2f GB/s  (%.2fx memcpy)\n", gb / d2h_s, memcpy_s / d2h_s);
  // The synchronous copies exogpu::write/read use: in place on zero-copy buffers.
  const double write_s = median_seconds(o, [&] { exogpu::write(buffer, 0, host.data(), n); });
  const double read_s = median_seconds(o, [&] { exogpu::read(out.data(), buffer, 0, n); });
  std::printf("  write (sync)      %7.2f GB/s  (%.2fx memcpy)\n", gb / write_s, memcpy_s / write_s);
  std::printf("  read (sync)       %7.2f GB/s  (%.2fx memcpy)\n", gb / read_s, memcpy_s / read_s);
}

void gemms(const Options& o, exogpu::Device& device, double cpu_flops) {
  const std::uint32_t n = o.gemm;
  for (const auto type : {exogpu::directml::GemmType::float32, exogpu::directml::GemmType::float16}) {
    const std::size_t element = type == exogpu::directml::GemmType::float32 ? 4 : 2;
    const std::size_t matrix = std::size_t{n} * n * element;
    exogpu::Buffer a = device.allocate(matrix);
    exogpu::Buffer b = device.allocate(matrix);
    exogpu::Buffer c = device.allocate(matrix);
    auto stream = device.create_stream();
    stream->fill(a, 0, matrix, 0x3c);  // small finite values in either type
    stream->fill(b, 0, matrix, 0x3c);
    double flops = 0;
    const double s = median_seconds(o, [&] {
      flops = exogpu::directml::enqueue_gemm(*stream, {n, n, n, type}, a, 0, b, 0, c, 0);
      stream->synchronize();
    });
    const double rate = flops / s;
    std::printf("  GEMM %ux%ux%u %s  %8.2f GFLOP/s  (%.3fx the CPU's FMA figure)\n", n, n, n,
                type == exogpu::directml::GemmType::float32 ? "float32" : "float16", rate / 1e9,
                rate / cpu_flops);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const long value = std::strtol(argv[i + 1], nullptr, 10);
    if (value <= 0) {
      std::fprintf(stderr, "%s needs a positive number\n", flag.c_str());
      return 1;
    }
    if (flag == "--samples") o.samples = static_cast<int>(value);
    else if (flag == "--warmup") o.warmup = static_cast<int>(value);
    else if (flag == "--mib") o.mib = static_cast<std::size_t>(value);
    else if (flag == "--gemm") o.gemm = static_cast<std::uint32_t>(value);
    else {
      std::fprintf(stderr, "unknown option %s\n", flag.c_str());
      return 1;
    }
  }
  std::vector<std::unique_ptr<exogpu::Backend>> backends;
  auto staged = open_device(false, backends);
  std::printf("%s: %s, %d samples after %d warm-up, medians\n", staged->info().name.c_str(),
              staged->info().kind == exogpu::DeviceKind::integrated ? "UMA" : "discrete",
              o.samples, o.warmup);
  transfers(o, *staged, "DEFAULT-heap (staged)");
  auto zero_copy = open_device(true, backends);
  if (zero_copy->allocate(16).host_ptr() != nullptr) {
    transfers(o, *zero_copy, "host-visible (zero-copy)");
  }
  exogpu::probe::ComputeProbeOptions cpu_options;
  cpu_options.samples = o.samples;
  cpu_options.warmup = o.warmup;
  const auto cpu = exogpu::probe::probe_compute(*exogpu::Registry::instance().device("cpu:0"),
                                                cpu_options);
  std::printf("cpu:0 FMA kernel: %.2f GFLOP/s (median)\n", cpu.flops / 1e9);
  gemms(o, *staged, cpu.flops);
  return 0;
}
