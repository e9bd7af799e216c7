// The HIP runtime's C ABI over the simulated machine (sim_gpu.hpp): a real
// shared library exogpu loads as libamdhip64.so through EXOGPU_HIP_LIBRARY.
// Like the real runtime it keeps one current device per thread (device 0
// until hipSetDevice), and allocations, streams and events belong to the
// device current when they are made.
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "backends/hip/hip_api.hpp"
#include "sim_gpu.hpp"

using namespace exogpu::hip;
namespace sim = exogpu::sim;

struct exogpu::hip::ihipStream_t {
  explicit ihipStream_t(int owner) : device(owner), stream(owner) {}
  int device;
  sim::Stream stream;
};

struct exogpu::hip::ihipEvent_t {
  ihipEvent_t(int owner, bool timing) : device(owner), event(owner, timing) {}
  int device;
  sim::Event event;
};

namespace {

constexpr hipError_t kInvalidValue = 1;
constexpr hipError_t kInvalidDevice = 101;
constexpr hipError_t kInvalidHandle = 400;
constexpr hipError_t kNotFound = 500;
constexpr hipError_t kIllegalAddress = 700;
constexpr hipError_t kPeerAccessNotEnabled = 705;
constexpr hipError_t kHostMemoryAlreadyRegistered = 712;
constexpr hipError_t kHostMemoryNotRegistered = 713;
constexpr hipError_t kInvalidImage = 200;
constexpr hipError_t kInvalidContext = 201;

struct ErrorText {
  hipError_t code;
  const char* name;
  const char* text;
};
constexpr ErrorText kErrors[] = {
    {hipSuccess, "hipSuccess", "no error"},
    {kInvalidValue, "hipErrorInvalidValue", "invalid argument"},
    {hipErrorOutOfMemory, "hipErrorOutOfMemory", "out of memory"},
    {hipErrorNoDevice, "hipErrorNoDevice", "no ROCm-capable device is detected"},
    {kInvalidDevice, "hipErrorInvalidDevice", "invalid device ordinal"},
    {kInvalidImage, "hipErrorInvalidImage", "device kernel image is invalid"},
    {kInvalidContext, "hipErrorInvalidContext", "invalid device context"},
    {kInvalidHandle, "hipErrorInvalidHandle", "invalid resource handle"},
    {kNotFound, "hipErrorNotFound", "named symbol not found"},
    {hipErrorNotReady, "hipErrorNotReady", "device not ready"},
    {kIllegalAddress, "hipErrorIllegalAddress", "an illegal memory access was encountered"},
    {hipErrorPeerAccessAlreadyEnabled, "hipErrorPeerAccessAlreadyEnabled",
     "peer access is already enabled"},
    {kPeerAccessNotEnabled, "hipErrorPeerAccessNotEnabled", "peer access has not been enabled"},
    {kHostMemoryAlreadyRegistered, "hipErrorHostMemoryAlreadyRegistered",
     "part or all of the requested memory range is already mapped"},
    {kHostMemoryNotRegistered, "hipErrorHostMemoryNotRegistered",
     "pointer does not correspond to a registered memory region"},
};

hipError_t code(sim::Status status) {
  switch (status) {
    case sim::Status::success: return hipSuccess;
    case sim::Status::invalid_value: return kInvalidValue;
    case sim::Status::out_of_memory: return hipErrorOutOfMemory;
    case sim::Status::not_ready: return hipErrorNotReady;
    case sim::Status::invalid_handle: return kInvalidHandle;
    case sim::Status::invalid_context: return kInvalidContext;
    case sim::Status::illegal_address: return kIllegalAddress;
    case sim::Status::peer_access_already_enabled: return hipErrorPeerAccessAlreadyEnabled;
    case sim::Status::peer_access_not_enabled: return kPeerAccessNotEnabled;
    case sim::Status::host_memory_already_registered: return kHostMemoryAlreadyRegistered;
    case sim::Status::host_memory_not_registered: return kHostMemoryNotRegistered;
    case sim::Status::not_found: return kNotFound;
    case sim::Status::invalid_image: return kInvalidImage;
  }
  return kInvalidValue;
}

sim::Machine& machine() { return sim::Machine::instance(); }

thread_local int current_device = 0;

sim::Handles<ihipStream_t>& streams() {
  static sim::Handles<ihipStream_t> handles;
  return handles;
}
sim::Handles<ihipEvent_t>& events() {
  static sim::Handles<ihipEvent_t> handles;
  return handles;
}

// A live stream handle; work may be queued on it whichever device is current.
hipError_t need_stream(const char* call, hipStream_t stream) {
  if (stream == nullptr || !streams().valid(stream)) {
    machine().fault(std::string(call) + ": not a live stream (the simulated runtime has no "
                                        "null stream)",
                    false);
    return kInvalidHandle;
  }
  return code(machine().sticky_status());
}

const char* lookup(hipError_t error, bool name) {
  for (const ErrorText& e : kErrors) {
    if (e.code == error) return name ? e.name : e.text;
  }
  return name ? "hipErrorUnknown" : "unknown error";
}

}  // namespace

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT hipError_t hipRuntimeGetVersion(int* version) {
  if (version == nullptr) return kInvalidValue;
  *version = 60342134;
  return hipSuccess;
}

EXPORT const char* hipGetErrorName(hipError_t error) { return lookup(error, true); }
EXPORT const char* hipGetErrorString(hipError_t error) { return lookup(error, false); }

EXPORT hipError_t hipGetDeviceCount(int* count) {
  if (count == nullptr) return kInvalidValue;
  *count = machine().device_count();
  return *count == 0 ? hipErrorNoDevice : hipSuccess;
}

EXPORT hipError_t hipSetDevice(int ordinal) {
  if (!machine().valid_device(ordinal)) return kInvalidDevice;
  current_device = ordinal;
  return hipSuccess;
}

EXPORT hipError_t hipGetDevice(int* ordinal) {
  if (ordinal == nullptr) return kInvalidValue;
  *ordinal = current_device;
  return hipSuccess;
}

EXPORT hipError_t hipDeviceGet(hipDevice_t* device, int ordinal) {
  if (device == nullptr) return kInvalidValue;
  if (!machine().valid_device(ordinal)) return kInvalidDevice;
  *device = ordinal;
  return hipSuccess;
}

EXPORT hipError_t hipDeviceGetName(char* name, int len, hipDevice_t device) {
  if (!machine().valid_device(device)) return kInvalidDevice;
  if (name == nullptr || len <= 0) return kInvalidValue;
  std::snprintf(name, static_cast<std::size_t>(len), "exogpu simulated HIP GPU %d", device);
  return hipSuccess;
}

EXPORT hipError_t hipDeviceTotalMem(std::size_t* bytes, hipDevice_t device) {
  if (!machine().valid_device(device)) return kInvalidDevice;
  if (bytes == nullptr) return kInvalidValue;
  *bytes = machine().memory_total();
  return hipSuccess;
}

// The simulated GPUs are discrete: hipDeviceAttributeIntegrated is 0; no
// other attribute is simulated.
EXPORT hipError_t hipDeviceGetAttribute(int* value, int attribute, int ordinal) {
  if (value == nullptr || attribute != hipDeviceAttributeIntegrated) return kInvalidValue;
  int count = 0;
  if (hipGetDeviceCount(&count) != hipSuccess || ordinal < 0 || ordinal >= count) return kInvalidDevice;
  *value = 0;
  return hipSuccess;
}

EXPORT hipError_t hipDeviceGetUuid(hipUUID* uuid, hipDevice_t device) {
  if (!machine().valid_device(device)) return kInvalidDevice;
  if (uuid == nullptr) return kInvalidValue;
  for (int i = 0; i < 16; ++i) uuid->bytes[i] = static_cast<char>(0xa0 + i);
  uuid->bytes[15] = static_cast<char>(device);
  return hipSuccess;
}

EXPORT hipError_t hipDeviceGetPCIBusId(char* bus_id, int len, int ordinal) {
  if (!machine().valid_device(ordinal)) return kInvalidDevice;
  if (bus_id == nullptr || len < 13) return kInvalidValue;
  std::snprintf(bus_id, static_cast<std::size_t>(len), "0000:%02x:00.0", 0xe1 + ordinal);
  return hipSuccess;
}

EXPORT hipError_t hipDeviceCanAccessPeer(int* can_access, int ordinal, int peer) {
  if (!machine().valid_device(ordinal) || !machine().valid_device(peer)) return kInvalidDevice;
  if (can_access == nullptr) return kInvalidValue;
  *can_access = ordinal != peer ? 1 : 0;
  return hipSuccess;
}

EXPORT hipError_t hipDeviceEnablePeerAccess(int peer, unsigned int flags) {
  if (!machine().valid_device(peer)) return kInvalidDevice;
  if (flags != 0) return kInvalidValue;
  return code(machine().enable_peer(current_device, peer));
}

EXPORT hipError_t hipMemGetInfo(std::size_t* free, std::size_t* total) {
  if (free == nullptr || total == nullptr) return kInvalidValue;
  *free = machine().memory_free(current_device);
  *total = machine().memory_total();
  return hipSuccess;
}

EXPORT hipError_t hipMalloc(void** p, std::size_t bytes) {
  if (p == nullptr) return kInvalidValue;
  if (bytes == 0) {  // as the runtime: success, and a null pointer
    *p = nullptr;
    return hipSuccess;
  }
  std::uintptr_t address = 0;
  const sim::Status status = machine().allocate_device(current_device, bytes, &address);
  if (status == sim::Status::success) *p = reinterpret_cast<void*>(address);
  return code(status);
}

EXPORT hipError_t hipFree(void* p) {
  if (p == nullptr) return hipSuccess;
  return code(machine().free_device(reinterpret_cast<std::uintptr_t>(p), "hipFree"));
}

EXPORT hipError_t hipHostMalloc(void** p, std::size_t bytes, unsigned int flags) {
  if (p == nullptr || bytes == 0 || (flags & ~hipHostMallocPortable) != 0) return kInvalidValue;
  return code(machine().allocate_host(bytes, p));
}

EXPORT hipError_t hipHostFree(void* p) { return code(machine().free_host(p, "hipHostFree")); }

EXPORT hipError_t hipHostRegister(void* p, std::size_t bytes, unsigned int flags) {
  if ((flags & ~hipHostRegisterPortable) != 0) return kInvalidValue;
  return code(machine().register_host(p, bytes));
}

EXPORT hipError_t hipHostUnregister(void* p) { return code(machine().unregister_host(p)); }

EXPORT hipError_t hipMemcpyAsync(void* dst, const void* src, std::size_t bytes, hipMemcpyKind kind,
                                 hipStream_t stream) {
  if (hipError_t r = need_stream("hipMemcpyAsync", stream); r != hipSuccess) return r;
  const int device = stream->device;
  const auto dst_address = reinterpret_cast<std::uintptr_t>(dst);
  const auto src_address = reinterpret_cast<std::uintptr_t>(src);
  std::vector<sim::RegionUse> uses(2);
  bool ok = false;
  switch (kind) {
    case hipMemcpyHostToDevice:
      ok = machine().host_range("hipMemcpyAsync", src, bytes) &&
           machine().device_range("hipMemcpyAsync", device, dst_address, bytes, &uses[0]);
      break;
    case hipMemcpyDeviceToHost:
      ok = machine().host_range("hipMemcpyAsync", dst, bytes) &&
           machine().device_range("hipMemcpyAsync", device, src_address, bytes, &uses[0]);
      break;
    case hipMemcpyDeviceToDevice:
      ok = machine().device_range("hipMemcpyAsync", device, dst_address, bytes, &uses[0]) &&
           machine().device_range("hipMemcpyAsync", device, src_address, bytes, &uses[1]);
      break;
    default:
      machine().fault("hipMemcpyAsync with a kind exogpu never means", false);
  }
  if (!ok) return kInvalidValue;
  sim::enqueue_copy(stream->stream, dst, src, bytes, std::move(uses));
  return hipSuccess;
}

EXPORT hipError_t hipMemcpyPeerAsync(void* dst, int dst_ordinal, const void* src, int src_ordinal,
                                     std::size_t bytes, hipStream_t stream) {
  if (hipError_t r = need_stream("hipMemcpyPeerAsync", stream); r != hipSuccess) return r;
  if (!machine().valid_device(dst_ordinal) || !machine().valid_device(src_ordinal)) {
    return kInvalidDevice;
  }
  const int here = stream->device;
  const int there = here == src_ordinal ? dst_ordinal : src_ordinal;
  if (here != src_ordinal && here != dst_ordinal) {
    machine().fault("hipMemcpyPeerAsync on a stream of neither device", false);
    return kInvalidValue;
  }
  if (there != here && !machine().peer_enabled(here, there)) {
    machine().fault("hipMemcpyPeerAsync from device " + std::to_string(here) + " to device " +
                        std::to_string(there) + " before hipDeviceEnablePeerAccess",
                    false);
    return kPeerAccessNotEnabled;
  }
  std::vector<sim::RegionUse> uses(2);
  if (!machine().device_range("hipMemcpyPeerAsync", dst_ordinal,
                              reinterpret_cast<std::uintptr_t>(dst), bytes, &uses[0]) ||
      !machine().device_range("hipMemcpyPeerAsync", src_ordinal,
                              reinterpret_cast<std::uintptr_t>(src), bytes, &uses[1])) {
    return kInvalidValue;
  }
  sim::enqueue_copy(stream->stream, dst, src, bytes, std::move(uses));
  return hipSuccess;
}

EXPORT hipError_t hipMemsetAsync(void* dst, int value, std::size_t bytes, hipStream_t stream) {
  if (hipError_t r = need_stream("hipMemsetAsync", stream); r != hipSuccess) return r;
  std::vector<sim::RegionUse> uses(1);
  if (!machine().device_range("hipMemsetAsync", stream->device,
                              reinterpret_cast<std::uintptr_t>(dst), bytes, &uses[0])) {
    return kInvalidValue;
  }
  sim::enqueue_fill(stream->stream, dst, static_cast<unsigned char>(value), bytes,
                    std::move(uses));
  return hipSuccess;
}

EXPORT hipError_t hipStreamCreateWithFlags(hipStream_t* stream, unsigned int flags) {
  if (stream == nullptr || (flags & ~hipStreamNonBlocking) != 0) return kInvalidValue;
  *stream = streams().add(std::make_unique<ihipStream_t>(current_device));
  return hipSuccess;
}

EXPORT hipError_t hipStreamDestroy(hipStream_t stream) {
  return streams().remove(stream) ? hipSuccess : kInvalidHandle;
}

EXPORT hipError_t hipStreamSynchronize(hipStream_t stream) {
  if (!streams().valid(stream)) return kInvalidHandle;
  stream->stream.synchronize();
  return code(machine().sticky_status());
}

EXPORT hipError_t hipStreamWaitEvent(hipStream_t stream, hipEvent_t event, unsigned int flags) {
  if (hipError_t r = need_stream("hipStreamWaitEvent", stream); r != hipSuccess) return r;
  if (!events().valid(event) || flags != 0) return kInvalidHandle;
  event->event.make_wait(stream->stream);
  return hipSuccess;
}

EXPORT hipError_t hipEventCreateWithFlags(hipEvent_t* event, unsigned int flags) {
  if (event == nullptr || (flags & ~hipEventDisableTiming) != 0) return kInvalidValue;
  const bool timing = (flags & hipEventDisableTiming) == 0;
  *event = events().add(std::make_unique<ihipEvent_t>(current_device, timing));
  return hipSuccess;
}

EXPORT hipError_t hipEventDestroy(hipEvent_t event) {
  return events().remove(event) ? hipSuccess : kInvalidHandle;
}

EXPORT hipError_t hipEventRecord(hipEvent_t event, hipStream_t stream) {
  if (!events().valid(event) || !streams().valid(stream)) return kInvalidHandle;
  if (event->device != stream->device) {
    machine().fault("hipEventRecord of an event on a stream of another device", false);
    return kInvalidHandle;
  }
  event->event.record(stream->stream);
  return hipSuccess;
}

EXPORT hipError_t hipEventQuery(hipEvent_t event) {
  if (!events().valid(event)) return kInvalidHandle;
  if (hipError_t sticky = code(machine().sticky_status()); sticky != hipSuccess) return sticky;
  return code(event->event.query());
}

EXPORT hipError_t hipEventSynchronize(hipEvent_t event) {
  if (!events().valid(event)) return kInvalidHandle;
  event->event.synchronize();
  return code(machine().sticky_status());
}

EXPORT hipError_t hipEventElapsedTime(float* ms, hipEvent_t start, hipEvent_t stop) {
  if (!events().valid(start) || !events().valid(stop)) return kInvalidHandle;
  return code(start->event.elapsed_ms(stop->event, ms));
}

// Every entry point of exogpu's table exists here with exactly its signature.
#define EXOGPU_SIM_SIGNATURE(member, exported, ret, params) \
  static_assert(std::is_same_v<decltype(&exported), ret(*) params>, #exported);
EXOGPU_HIP_SYMBOLS(EXOGPU_SIM_SIGNATURE)
#undef EXOGPU_SIM_SIGNATURE
