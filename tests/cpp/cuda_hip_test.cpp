// The CUDA and HIP loaders against what a machine without those GPUs can
// really have: no library at all, a library lacking entry points (real
// shared libraries built beside this test), and, for HIP, the real runtime
// with no device. The suites that need a GPU are the conformance suite,
// which runs on every cuda:N / hip:N device the registry finds.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "backends/cuda/cuda_api.hpp"
#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/cuda_driver.hpp"
#include "backends/cuda/fma_kernel.hpp"
#include "backends/hip/hip_api.hpp"
#include "backends/hip/hip_backend.hpp"
#include "backends/hip/hip_runtime.hpp"
#include "core/dynamic_library.hpp"

namespace {

using exogpu::BackendStatus;

BackendStatus open_cuda(const std::string& library) {
  auto backend = exogpu::cuda::make_backend({library});
  BackendStatus status = backend->open();
  EXPECT_TRUE(backend->devices().empty());
  return status;
}

BackendStatus open_hip(const std::vector<std::string>& libraries) {
  auto backend = exogpu::hip::make_backend(libraries);
  return backend->open();
}

TEST(CudaLoader, MissingLibraryIsNamedWithTheFix) {
  const BackendStatus status = open_cuda("/nonexistent/libcuda.so.1");
  EXPECT_FALSE(status.available);
  EXPECT_EQ(status.reason, "/nonexistent/libcuda.so.1 not found (install the NVIDIA driver)");
  EXPECT_EQ(status.device_count, 0);
  EXPECT_EQ(status.runtime_version, "");
}

TEST(CudaLoader, LibraryMissingAnEntryPointNamesIt) {
  const BackendStatus status = open_cuda(EXOGPU_FAKE_LIBCUDA_OLD);
  EXPECT_FALSE(status.available);
  EXPECT_EQ(status.reason,
            std::string(EXOGPU_FAKE_LIBCUDA_OLD) + " is missing cuMemAlloc_v2 (driver too old?)");
}

TEST(CudaLoader, LibraryWithoutEntryPointsListsTheFirstAndCountsTheRest) {
  // libm is a real library with none of the driver's entry points.
  const BackendStatus status = open_cuda("libm.so.6");
  EXPECT_FALSE(status.available);
#define EXOGPU_COUNT(...) +1
  constexpr int kEntryPoints = 0 EXOGPU_CUDA_SYMBOLS(EXOGPU_COUNT);
#undef EXOGPU_COUNT
  EXPECT_EQ(status.reason, "libm.so.6 is missing cuInit, cuDriverGetVersion, cuGetErrorName and " +
                               std::to_string(kEntryPoints - 3) +
                               " more entry points (driver too old?)");
}

TEST(CudaLoader, DriverWithNoDeviceSaysSoWithItsVersion) {
  const BackendStatus status = open_cuda(EXOGPU_FAKE_LIBCUDA_NO_DEVICE);
  EXPECT_FALSE(status.available);
  EXPECT_EQ(status.runtime_version, "CUDA driver 12.4");
  EXPECT_EQ(status.reason, std::string(EXOGPU_FAKE_LIBCUDA_NO_DEVICE) +
                               " found (CUDA driver 12.4), but it reports no device: cuInit "
                               "returned CUDA_ERROR_NO_DEVICE");
}

TEST(CudaLoader, EnvironmentVariableChoosesTheLibrary) {
  ASSERT_EQ(setenv("EXOGPU_CUDA_LIBRARY", "/elsewhere/libcuda.so.1", 1), 0);
  EXPECT_EQ(exogpu::cuda::Driver::library_names(),
            std::vector<std::string>{"/elsewhere/libcuda.so.1"});
  ASSERT_EQ(unsetenv("EXOGPU_CUDA_LIBRARY"), 0);
  EXPECT_EQ(exogpu::cuda::Driver::library_names(), std::vector<std::string>{"libcuda.so.1"});
}

TEST(CudaIdentity, DriverVersionIsMajorDotMinor) {
  EXPECT_EQ(exogpu::cuda::version_string(12040), "12.4");
  EXPECT_EQ(exogpu::cuda::version_string(11080), "11.8");
  EXPECT_EQ(exogpu::cuda::version_string(13000), "13.0");
}

TEST(CudaKernel, EmbeddedPtxIsTheCheckedInFile) {
  std::ifstream file(EXOGPU_FMA_PTX_FILE);
  ASSERT_TRUE(file) << EXOGPU_FMA_PTX_FILE;
  std::stringstream text;
  text << file.rdbuf();
  EXPECT_EQ(text.str(), exogpu::cuda::kFmaKernelPtx);
  EXPECT_NE(text.str().find(std::string(".entry ") + exogpu::cuda::kFmaKernelName),
            std::string::npos);
}

TEST(HipLoader, MissingLibraryIsNamedWithTheFix) {
  const BackendStatus status = open_hip({"/nonexistent/libamdhip64.so", "/nonexistent/libamdhip64.so.6"});
  EXPECT_FALSE(status.available);
  EXPECT_EQ(status.reason,
            "/nonexistent/libamdhip64.so not found (install ROCm; also tried "
            "/nonexistent/libamdhip64.so.6)");
}

TEST(HipLoader, LibraryMissingAnEntryPointNamesIt) {
  const BackendStatus status = open_hip({EXOGPU_FAKE_LIBAMDHIP64_OLD});
  EXPECT_FALSE(status.available);
  EXPECT_EQ(status.reason, std::string(EXOGPU_FAKE_LIBAMDHIP64_OLD) +
                               " is missing hipMemcpyPeerAsync (HIP runtime too old?)");
}

TEST(HipLoader, RealRuntimeReportsWhetherItHasADevice) {
  std::string error;
  if (!exogpu::DynamicLibrary::open(exogpu::hip::Runtime::library_names(), error)) {
    GTEST_SKIP() << "no HIP runtime installed here (tools/install-deps.sh installs one): " << error;
  }
  auto backend = exogpu::hip::make_backend(exogpu::hip::Runtime::library_names());
  const BackendStatus status = backend->open();
  ASSERT_TRUE(std::regex_match(status.runtime_version, std::regex(R"(HIP runtime \d+\.\d+\.\d+)")))
      << status.runtime_version;
  if (status.available) {
    // An AMD GPU is here: the conformance suite covers it; check the listing.
    EXPECT_EQ(status.device_count, static_cast<int>(backend->devices().size()));
    EXPECT_GT(status.device_count, 0);
    EXPECT_EQ(backend->devices().front()->id(), "hip:0");
    return;
  }
  EXPECT_TRUE(std::regex_match(
      status.reason,
      std::regex(R"(libamdhip64\.so(\.\d+)? found \(HIP runtime \d+\.\d+\.\d+\), but it reports )"
                 R"(no device: hipGetDeviceCount returned hipErrorNoDevice)")))
      << status.reason;
  EXPECT_EQ(status.device_count, 0);
  EXPECT_TRUE(backend->devices().empty());
}

TEST(HipIdentity, RuntimeVersion) {
  EXPECT_EQ(exogpu::hip::version_string(50221153), "5.2.21153");
  EXPECT_EQ(exogpu::hip::version_string(60342134), "6.3.42134");
}

}  // namespace
