// The CUDA and HIP backends over the simulated machine (sim_gpu/), for what
// the conformance suite cannot see from outside: which entry points were
// found and how, the peer path really taken, the kernel's arithmetic, work
// held in flight deterministically, a backend torn down, and, so that its
// passes mean something, the simulator catching misuse.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <dlfcn.h>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/cuda_driver.hpp"
#include "backends/hip/hip_backend.hpp"
#include "backends/hip/hip_runtime.hpp"
#include "core/identity.hpp"
#include "exogpu/error.hpp"
#include "test_support.hpp"

namespace exogpu::test {
namespace {

// The simulator's test hooks, found in the already-loaded library.
struct SimHooks {
  explicit SimHooks(const char* library) {
    handle = dlopen(library, RTLD_NOW | RTLD_NOLOAD);
    if (handle == nullptr) handle = dlopen(library, RTLD_NOW);
    pause = reinterpret_cast<void (*)(int)>(dlsym(handle, "exogpu_sim_gpu_pause"));
    faults = reinterpret_cast<int (*)()>(dlsym(handle, "exogpu_sim_gpu_faults"));
    clear = reinterpret_cast<void (*)()>(dlsym(handle, "exogpu_sim_gpu_clear_faults"));
  }
  SimHooks(const SimHooks&) = delete;
  SimHooks& operator=(const SimHooks&) = delete;
  ~SimHooks() {
    if (handle != nullptr) dlclose(handle);
  }
  void* handle = nullptr;
  void (*pause)(int) = nullptr;
  int (*faults)() = nullptr;
  void (*clear)() = nullptr;
};

template <typename MakeBackend>
class OverSimulator {
 public:
  OverSimulator(const char* library, MakeBackend make)
      : backend_(make(std::vector<std::string>{library})), status_(backend_->open()),
        hooks_(library) {
    hooks_.clear();
  }
  ~OverSimulator() { hooks_.pause(0); }
  OverSimulator(const OverSimulator&) = delete;
  OverSimulator& operator=(const OverSimulator&) = delete;

  [[nodiscard]] const BackendStatus& status() const { return status_; }
  [[nodiscard]] Device& device(int i) { return *backend_->devices().at(static_cast<std::size_t>(i)); }
  [[nodiscard]] SimHooks& hooks() { return hooks_; }

 private:
  std::unique_ptr<Backend> backend_;
  BackendStatus status_;
  SimHooks hooks_;
};

auto cuda_machine() { return OverSimulator(EXOGPU_SIM_CUDA, cuda::make_backend); }
auto hip_machine() { return OverSimulator(EXOGPU_SIM_HIP, hip::make_backend); }

TEST(SimulatedCuda, DriverIsResolvedThroughProcAddressAndListsItsDevices) {
  std::string reason;
  auto driver = cuda::Driver::load({EXOGPU_SIM_CUDA}, reason);
  ASSERT_TRUE(driver) << reason;
  EXPECT_TRUE(driver->resolved_through_proc_address());

  auto machine = cuda_machine();
  EXPECT_TRUE(machine.status().available) << machine.status().reason;
  EXPECT_EQ(machine.status().device_count, 2);
  EXPECT_EQ(machine.status().runtime_version, "CUDA driver 12.8");
  const DeviceInfo& info = machine.device(1).info();
  EXPECT_EQ(info.id, "cuda:1");
  EXPECT_EQ(info.name, "exogpu simulated CUDA GPU 1");
  EXPECT_EQ(info.kind, DeviceKind::discrete);
  EXPECT_EQ(info.pci_bus_id, "0000:c2:00.0");  // the driver's upper case, normalised
  EXPECT_EQ(info.uuid, "c0c1c2c3-c4c5-c6c7-c8c9-cacbcccdce01");
  EXPECT_EQ(info.luid, "00000000-0000d1a1");  // cuDeviceGetLuid, as on Windows
  EXPECT_EQ(machine.hooks().faults(), 0);
}

// On Windows one GPU is seen through CUDA, D3D12 and Vulkan, and only the
// adapter LUID ties the D3D12 view to the others. The CUDA view here comes
// from the driver ABI (cuDeviceGetLuid's bytes); the D3D12 and Vulkan views
// carry the same LUID, as DXGI_ADAPTER_DESC1::AdapterLuid and
// VkPhysicalDeviceIDProperties::deviceLUID give it.
TEST(SimulatedCuda, LuidMergesTheCudaViewWithTheD3d12AndVulkanViews) {
  auto machine = cuda_machine();
  std::vector<DeviceInfo> views = {machine.device(0).info(), machine.device(1).info()};
  const std::uint8_t adapter_luid[8] = {0xa1, 0xd1, 0, 0, 0, 0, 0, 0};  // LowPart 0xd1a1
  DeviceInfo d3d12;
  d3d12.backend = "directml";
  d3d12.id = "directml:0";
  d3d12.luid = format_luid(adapter_luid);
  d3d12.pci_vendor_id = 0x10de;
  DeviceInfo vulkan = d3d12;
  vulkan.backend = "vulkan";
  vulkan.id = "vulkan:0";
  views.push_back(vulkan);
  views.push_back(d3d12);
  const auto groups = group_physical_devices(views);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0], (std::vector<std::size_t>{0}));
  EXPECT_EQ(groups[1], (std::vector<std::size_t>{1, 3, 2}));  // cuda:1, directml:0, vulkan:0
}

TEST(SimulatedCuda, PeerCopiesTakeTheVerifiedPeerPath) {
  auto machine = cuda_machine();
  Device& from = machine.device(0);
  Device& to = machine.device(1);
  const std::size_t n = (std::size_t{5} << 20) + 3;
  const auto data = random_bytes(n, 11);
  Buffer src = from.allocate(n);
  Buffer dst = to.allocate(n + 8);
  write(src, 0, data.data(), n);
  auto stream = from.create_stream();
  ASSERT_TRUE(from.copy_to_peer(*stream, dst, 8, src, 0, n));
  stream->synchronize();
  std::vector<std::uint8_t> out(n);
  read(out.data(), dst, 8, n);
  EXPECT_EQ(out, data);
  // Not a peer of itself: the caller takes another path.
  Buffer same = from.allocate(n);
  EXPECT_FALSE(from.copy_to_peer(*stream, same, 0, src, 0, n));
  EXPECT_EQ(machine.hooks().faults(), 0);
}

TEST(SimulatedCuda, FmaKernelAppliesItsRecurrenceToExactlyEveryElement) {
  auto machine = cuda_machine();
  Device& device = machine.device(0);
  const std::size_t count = 1000;  // not a multiple of the block size
  std::vector<float> values(count + 16);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = 0.25F * static_cast<float>(i) - 7.0F;
  Buffer whole = device.allocate(values.size() * sizeof(float));
  write(whole, 0, values.data(), whole.size());
  // The kernel sees a buffer of `count` floats: the 16 after it must not move.
  Buffer part = device.allocate(count * sizeof(float));
  copy(part, 0, whole, 0, part.size());
  auto stream = device.create_stream();
  EXPECT_DOUBLE_EQ(device.launch_fma(*stream, part, 37), 2.0 * count * 37);
  stream->synchronize();
  std::vector<float> out(count);
  read(out.data(), part, 0, part.size());
  for (std::size_t i = 0; i < count; ++i) {
    float x = values[i];
    for (int k = 0; k < 37; ++k) x = std::fma(x, 0.999999F, 1e-7F);
    ASSERT_EQ(out[i], x) << "element " << i;
  }
  EXPECT_EQ(machine.hooks().faults(), 0);
}

TEST(SimulatedCuda, BuffersFreedWhileTheirWorkIsHeldStayAliveUntilItRuns) {
  auto machine = cuda_machine();
  Device& device = machine.device(0);
  auto stream = device.create_stream();
  const auto data = random_bytes(1 << 20, 12);
  std::vector<std::uint8_t> out(data.size());
  machine.hooks().pause(1);
  std::shared_ptr<Event> done;
  {
    Buffer a = device.allocate(data.size());
    Buffer b = device.allocate(data.size());
    stream->copy_h2d(a, 0, data.data(), data.size());
    stream->copy_d2d(b, 0, a, 0, data.size());
    stream->copy_d2h(out.data(), b, 0, data.size());
    done = stream->record();
  }  // a real driver would be handed cuMemFree here if exogpu let go too soon
  EXPECT_FALSE(done->query());
  machine.hooks().pause(0);
  stream->synchronize();
  EXPECT_TRUE(done->query());
  EXPECT_EQ(out, data);
  EXPECT_EQ(machine.hooks().faults(), 0);
}

// The simulator's checks fire: calls exogpu never makes, made on purpose.
TEST(SimulatedCuda, SimulatorCatchesMisuse) {
  std::string reason;
  auto driver = cuda::Driver::load({EXOGPU_SIM_CUDA}, reason);
  ASSERT_TRUE(driver) << reason;
  SimHooks hooks(EXOGPU_SIM_CUDA);
  hooks.clear();
  ASSERT_EQ(driver->init(0), cuda::CUDA_SUCCESS);
  ASSERT_EQ(driver->ctx_set_current(nullptr), cuda::CUDA_SUCCESS);
  cuda::CUdeviceptr orphan = 0;
  EXPECT_EQ(driver->error_name(driver->mem_alloc(&orphan, 64)), "CUDA_ERROR_INVALID_CONTEXT");

  cuda::CUcontext first = nullptr;
  cuda::CUcontext second = nullptr;
  ASSERT_EQ(driver->primary_ctx_retain(&second, 1), cuda::CUDA_SUCCESS);
  ASSERT_EQ(driver->primary_ctx_retain(&first, 0), cuda::CUDA_SUCCESS);
  ASSERT_EQ(driver->ctx_set_current(second), cuda::CUDA_SUCCESS);
  cuda::CUdeviceptr elsewhere = 0;
  ASSERT_EQ(driver->mem_alloc(&elsewhere, 100), cuda::CUDA_SUCCESS);
  ASSERT_EQ(driver->ctx_set_current(first), cuda::CUDA_SUCCESS);
  cuda::CUdeviceptr here = 0;
  ASSERT_EQ(driver->mem_alloc(&here, 100), cuda::CUDA_SUCCESS);
  cuda::CUstream stream = nullptr;
  ASSERT_EQ(driver->stream_create(&stream, cuda::CU_STREAM_NON_BLOCKING), cuda::CUDA_SUCCESS);

  std::vector<std::uint8_t> host(200);
  EXPECT_EQ(driver->error_name(driver->memcpy_htod_async(here, host.data(), 101, stream)),
            "CUDA_ERROR_INVALID_VALUE");  // one byte past the end
  EXPECT_EQ(driver->error_name(driver->memcpy_dtod_async(here, elsewhere, 100, stream)),
            "CUDA_ERROR_INVALID_VALUE");  // another device's memory
  EXPECT_EQ(driver->error_name(
                driver->memcpy_peer_async(elsewhere, second, here, first, 100, stream)),
            "CUDA_ERROR_PEER_ACCESS_NOT_ENABLED");
  cuda::CUevent untimed = nullptr;
  ASSERT_EQ(driver->event_create(&untimed, cuda::CU_EVENT_DISABLE_TIMING), cuda::CUDA_SUCCESS);
  ASSERT_EQ(driver->event_record(untimed, stream), cuda::CUDA_SUCCESS);
  ASSERT_EQ(driver->stream_synchronize(stream), cuda::CUDA_SUCCESS);
  float ms = 0;
  EXPECT_EQ(driver->error_name(driver->event_elapsed_time(&ms, untimed, untimed)),
            "CUDA_ERROR_INVALID_HANDLE");

  // Freeing memory that queued work still uses poisons the machine.
  hooks.pause(1);
  ASSERT_EQ(driver->memcpy_htod_async(here, host.data(), 100, stream), cuda::CUDA_SUCCESS);
  EXPECT_EQ(driver->error_name(driver->mem_free(here)), "CUDA_ERROR_ILLEGAL_ADDRESS");
  hooks.pause(0);
  EXPECT_EQ(driver->error_name(driver->stream_synchronize(stream)), "CUDA_ERROR_ILLEGAL_ADDRESS");
  EXPECT_EQ(hooks.faults(), 6);

  hooks.clear();
  EXPECT_EQ(driver->event_destroy(untimed), cuda::CUDA_SUCCESS);
  EXPECT_EQ(driver->stream_destroy(stream), cuda::CUDA_SUCCESS);
  EXPECT_EQ(driver->error_name(driver->stream_synchronize(stream)), "CUDA_ERROR_INVALID_HANDLE");
  EXPECT_EQ(driver->mem_free(here), cuda::CUDA_SUCCESS);
  ASSERT_EQ(driver->ctx_set_current(second), cuda::CUDA_SUCCESS);
  EXPECT_EQ(driver->mem_free(elsewhere), cuda::CUDA_SUCCESS);
  EXPECT_EQ(driver->ctx_set_current(nullptr), cuda::CUDA_SUCCESS);
  EXPECT_EQ(driver->primary_ctx_release(0), cuda::CUDA_SUCCESS);
  EXPECT_EQ(driver->primary_ctx_release(1), cuda::CUDA_SUCCESS);
}

TEST(SimulatedHip, RuntimeListsItsDevices) {
  auto machine = hip_machine();
  EXPECT_TRUE(machine.status().available) << machine.status().reason;
  EXPECT_EQ(machine.status().device_count, 2);
  EXPECT_EQ(machine.status().runtime_version, "HIP runtime 6.3.42134");
  const DeviceInfo& info = machine.device(0).info();
  EXPECT_EQ(info.id, "hip:0");
  EXPECT_EQ(info.name, "exogpu simulated HIP GPU 0");
  EXPECT_EQ(info.pci_bus_id, "0000:e1:00.0");
  EXPECT_EQ(info.uuid, "a0a1a2a3-a4a5-a6a7-a8a9-aaabacadae00");
}

TEST(SimulatedHip, PeerCopiesTakeTheVerifiedPeerPath) {
  auto machine = hip_machine();
  Device& from = machine.device(1);
  Device& to = machine.device(0);
  const auto data = random_bytes(3 << 20, 13);
  Buffer src = from.allocate(data.size());
  Buffer dst = to.allocate(data.size());
  write(src, 0, data.data(), data.size());
  auto stream = from.create_stream();
  ASSERT_TRUE(from.copy_to_peer(*stream, dst, 0, src, 0, data.size()));
  stream->synchronize();
  std::vector<std::uint8_t> out(data.size());
  read(out.data(), dst, 0, out.size());
  EXPECT_EQ(out, data);
  EXPECT_EQ(machine.hooks().faults(), 0);
}

TEST(SimulatedHip, BuffersFreedWhileTheirWorkIsHeldStayAliveUntilItRuns) {
  auto machine = hip_machine();
  Device& device = machine.device(1);
  auto stream = device.create_stream();
  const auto data = random_bytes(1 << 20, 14);
  std::vector<std::uint8_t> out(data.size());
  machine.hooks().pause(1);
  {
    Buffer a = device.allocate(data.size());
    stream->copy_h2d(a, 0, data.data(), data.size());
    stream->fill(a, 0, 16, 0x5a);
    stream->copy_d2h(out.data(), a, 0, data.size());
  }
  machine.hooks().pause(0);
  stream->synchronize();
  EXPECT_TRUE(std::all_of(out.begin(), out.begin() + 16, [](auto b) { return b == 0x5a; }));
  EXPECT_TRUE(std::equal(out.begin() + 16, out.end(), data.begin() + 16));
  EXPECT_EQ(machine.hooks().faults(), 0);
}

}  // namespace
}  // namespace exogpu::test
