// The CUDA driver API's C ABI over the simulated machine (sim_gpu.hpp): a
// real shared library exogpu loads as libcuda.so.1 through
// EXOGPU_CUDA_LIBRARY. It exports cuGetProcAddress, so the loader's
// proc-address path runs here (the no-device stand-in covers the other).
// Primary contexts, the calling thread's current context and handle
// validity are enforced as the driver documents them.
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "backends/cuda/cuda_api.hpp"
#include "sim_gpu.hpp"

using namespace exogpu::cuda;
namespace sim = exogpu::sim;

struct exogpu::cuda::CUctx_st {
  int device = 0;
  std::mutex mutex;
  int references = 0;  // primary context retains
};

struct exogpu::cuda::CUstream_st {
  explicit CUstream_st(CUctx_st* owner) : context(owner), stream(owner->device) {}
  CUctx_st* context;
  sim::Stream stream;
};

struct exogpu::cuda::CUevent_st {
  CUevent_st(CUctx_st* owner, bool timing) : context(owner), event(owner->device, timing) {}
  CUctx_st* context;
  sim::Event event;
};

struct exogpu::cuda::CUfunc_st {
  CUfunc_st(CUmod_st* owner, sim::KernelSignature kernel)
      : module(owner), signature(std::move(kernel)) {}
  CUmod_st* module;
  sim::KernelSignature signature;
};

struct exogpu::cuda::CUmod_st {
  CUctx_st* context;
  std::vector<std::unique_ptr<CUfunc_st>> functions;
};

namespace {

constexpr CUresult kInvalidValue = 1;
constexpr CUresult kNotInitialized = 3;
constexpr CUresult kInvalidImage = 200;
constexpr CUresult kInvalidContext = 201;
constexpr CUresult kInvalidHandle = 400;
constexpr CUresult kNotFound = 500;
constexpr CUresult kIllegalAddress = 700;
constexpr CUresult kPeerAccessNotEnabled = 705;
constexpr CUresult kHostMemoryNotRegistered = 713;

struct ErrorText {
  CUresult code;
  const char* name;
  const char* text;
};
constexpr ErrorText kErrors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {kInvalidValue, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {kNotInitialized, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {kInvalidImage, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {kInvalidContext, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {kInvalidHandle, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {kNotFound, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {kIllegalAddress, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED, "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED",
     "peer access is already enabled"},
    {kPeerAccessNotEnabled, "CUDA_ERROR_PEER_ACCESS_NOT_ENABLED", "peer access has not been enabled"},
    {CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED",
     "part or all of the requested memory range is already mapped"},
    {kHostMemoryNotRegistered, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED",
     "pointer does not correspond to a registered memory region"},
};

CUresult code(sim::Status status) {
  switch (status) {
    case sim::Status::success: return CUDA_SUCCESS;
    case sim::Status::invalid_value: return kInvalidValue;
    case sim::Status::out_of_memory: return CUDA_ERROR_OUT_OF_MEMORY;
    case sim::Status::not_ready: return CUDA_ERROR_NOT_READY;
    case sim::Status::invalid_handle: return kInvalidHandle;
    case sim::Status::invalid_context: return kInvalidContext;
    case sim::Status::illegal_address: return kIllegalAddress;
    case sim::Status::peer_access_already_enabled: return CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED;
    case sim::Status::peer_access_not_enabled: return kPeerAccessNotEnabled;
    case sim::Status::host_memory_already_registered:
      return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    case sim::Status::host_memory_not_registered: return kHostMemoryNotRegistered;
    case sim::Status::not_found: return kNotFound;
    case sim::Status::invalid_image: return kInvalidImage;
  }
  return kInvalidValue;
}

sim::Machine& machine() { return sim::Machine::instance(); }

std::atomic<bool> initialized{false};
thread_local CUctx_st* current_context = nullptr;

// One primary context per device, alive for the whole process.
CUctx_st& primary(int device) {
  static std::vector<std::unique_ptr<CUctx_st>> contexts = [] {
    std::vector<std::unique_ptr<CUctx_st>> out;
    for (int i = 0; i < machine().device_count(); ++i) {
      out.push_back(std::make_unique<CUctx_st>());
      out.back()->device = i;
    }
    return out;
  }();
  return *contexts.at(static_cast<std::size_t>(device));
}

bool retained(CUctx_st* context) {
  std::lock_guard lock(context->mutex);
  return context->references > 0;
}

sim::Handles<CUstream_st>& streams() {
  static sim::Handles<CUstream_st> handles;
  return handles;
}
sim::Handles<CUevent_st>& events() {
  static sim::Handles<CUevent_st> handles;
  return handles;
}
sim::Handles<CUmod_st>& modules() {
  static sim::Handles<CUmod_st> handles;
  return handles;
}

// The calling thread's context, which calls that allocate or create need.
CUresult need_context(const char* call, CUctx_st** context) {
  if (!initialized) return kNotInitialized;
  if (current_context == nullptr || !retained(current_context)) {
    machine().fault(std::string(call) + " with no current context", false);
    return kInvalidContext;
  }
  *context = current_context;
  return CUDA_SUCCESS;
}

// A stream handle that is live and belongs to the current context.
CUresult need_stream(const char* call, CUstream stream) {
  if (!initialized) return kNotInitialized;
  if (stream == nullptr || !streams().valid(stream)) {
    machine().fault(std::string(call) + ": not a live stream (the simulated driver has no "
                                        "legacy default stream)",
                    false);
    return kInvalidHandle;
  }
  if (stream->context != current_context) {
    machine().fault(std::string(call) + ": the stream belongs to device " +
                        std::to_string(stream->context->device) +
                        ", but the current context is another",
                    false);
    return kInvalidContext;
  }
  return code(machine().sticky_status());
}

bool valid_device(CUdevice device) { return initialized && machine().valid_device(device); }

}  // namespace

#define EXPORT extern "C" __attribute__((visibility("default")))

EXPORT CUresult cuInit(unsigned int flags) {
  if (flags != 0) return kInvalidValue;
  if (machine().device_count() == 0) return CUDA_ERROR_NO_DEVICE;
  initialized = true;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDriverGetVersion(int* version) {
  if (version == nullptr) return kInvalidValue;
  *version = 12080;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorName(CUresult error, const char** name) {
  for (const ErrorText& e : kErrors) {
    if (e.code == error && name != nullptr) {
      *name = e.name;
      return CUDA_SUCCESS;
    }
  }
  return kInvalidValue;
}

EXPORT CUresult cuGetErrorString(CUresult error, const char** text) {
  for (const ErrorText& e : kErrors) {
    if (e.code == error && text != nullptr) {
      *text = e.text;
      return CUDA_SUCCESS;
    }
  }
  return kInvalidValue;
}

EXPORT CUresult cuDeviceGetCount(int* count) {
  if (!initialized) return kNotInitialized;
  if (count == nullptr) return kInvalidValue;
  *count = machine().device_count();
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice* device, int ordinal) {
  if (!initialized) return kNotInitialized;
  if (device == nullptr || !machine().valid_device(ordinal)) return kInvalidValue;
  *device = ordinal;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
  if (!valid_device(dev) || name == nullptr || len <= 0) return kInvalidValue;
  std::snprintf(name, static_cast<std::size_t>(len), "exogpu simulated CUDA GPU %d", dev);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceTotalMem_v2(std::size_t* bytes, CUdevice dev) {
  if (!valid_device(dev) || bytes == nullptr) return kInvalidValue;
  *bytes = machine().memory_total();
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetAttribute(int* value, int attribute, CUdevice dev) {
  if (!valid_device(dev) || value == nullptr) return kInvalidValue;
  switch (attribute) {
    case CU_DEVICE_ATTRIBUTE_INTEGRATED: *value = 0; return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *value = 9; return CUDA_SUCCESS;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *value = 0; return CUDA_SUCCESS;
    default: return kInvalidValue;
  }
}

EXPORT CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice dev) {
  if (!valid_device(dev) || uuid == nullptr) return kInvalidValue;
  for (int i = 0; i < 16; ++i) uuid->bytes[i] = static_cast<unsigned char>(0xc0 + i);
  uuid->bytes[15] = static_cast<unsigned char>(dev);
  return CUDA_SUCCESS;
}

// As a Windows (WDDM) driver answers: the adapter's LUID, 8 bytes, low part
// first, and the node mask of a single-node adapter. Device d's LUID is
// 0x00000000-0000d1a0 + d, the value test LUIDs of other APIs use.
EXPORT CUresult cuDeviceGetLuid(char* luid, unsigned int* node_mask, CUdevice dev) {
  if (!valid_device(dev) || luid == nullptr || node_mask == nullptr) return kInvalidValue;
  const unsigned low = 0xd1a0u + static_cast<unsigned>(dev);
  for (int i = 0; i < 8; ++i) luid[i] = 0;
  for (int i = 0; i < 4; ++i) luid[i] = static_cast<char>((low >> (8 * i)) & 0xff);
  *node_mask = 1;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetPCIBusId(char* bus_id, int len, CUdevice dev) {
  if (!valid_device(dev) || bus_id == nullptr || len < 13) return kInvalidValue;
  std::snprintf(bus_id, static_cast<std::size_t>(len), "0000:%02X:00.0", 0xC1 + dev);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceCanAccessPeer(int* can_access, CUdevice dev, CUdevice peer) {
  if (!valid_device(dev) || !valid_device(peer) || can_access == nullptr) return kInvalidValue;
  *can_access = dev != peer ? 1 : 0;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice dev) {
  if (!valid_device(dev) || ctx == nullptr) return kInvalidValue;
  CUctx_st& context = primary(dev);
  std::lock_guard lock(context.mutex);
  ++context.references;
  *ctx = &context;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  if (!valid_device(dev)) return kInvalidValue;
  CUctx_st& context = primary(dev);
  std::lock_guard lock(context.mutex);
  if (context.references == 0) {
    machine().fault("cuDevicePrimaryCtxRelease of a context that is not retained", false);
    return kInvalidContext;
  }
  if (--context.references == 0) machine().forget_peers(dev);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxGetCurrent(CUcontext* ctx) {
  if (!initialized) return kNotInitialized;
  if (ctx == nullptr) return kInvalidValue;
  *ctx = current_context;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) {
  if (!initialized) return kNotInitialized;
  if (ctx != nullptr && !retained(ctx)) {
    machine().fault("cuCtxSetCurrent with a context that is not retained", false);
    return kInvalidContext;
  }
  current_context = ctx;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxEnablePeerAccess(CUcontext peer, unsigned int flags) {
  CUctx_st* context = nullptr;
  if (CUresult r = need_context("cuCtxEnablePeerAccess", &context); r != CUDA_SUCCESS) return r;
  if (peer == nullptr || flags != 0 || !retained(peer)) return kInvalidValue;
  return code(machine().enable_peer(context->device, peer->device));
}

EXPORT CUresult cuMemGetInfo_v2(std::size_t* free, std::size_t* total) {
  CUctx_st* context = nullptr;
  if (CUresult r = need_context("cuMemGetInfo", &context); r != CUDA_SUCCESS) return r;
  if (free == nullptr || total == nullptr) return kInvalidValue;
  *free = machine().memory_free(context->device);
  *total = machine().memory_total();
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* dptr, std::size_t bytes) {
  CUctx_st* context = nullptr;
  if (CUresult r = need_context("cuMemAlloc", &context); r != CUDA_SUCCESS) return r;
  if (dptr == nullptr || bytes == 0) return kInvalidValue;  // as the driver: no empty allocations
  std::uintptr_t address = 0;
  const sim::Status status = machine().allocate_device(context->device, bytes, &address);
  if (status == sim::Status::success) *dptr = address;
  return code(status);
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) {
  CUctx_st* context = nullptr;
  if (CUresult r = need_context("cuMemFree", &context); r != CUDA_SUCCESS) return r;
  return code(machine().free_device(dptr, "cuMemFree"));
}

EXPORT CUresult cuMemHostAlloc(void** p, std::size_t bytes, unsigned int flags) {
  CUctx_st* context = nullptr;
  if (CUresult r = need_context("cuMemHostAlloc", &context); r != CUDA_SUCCESS) return r;
  if (p == nullptr || bytes == 0 || (flags & ~CU_MEMHOSTALLOC_PORTABLE) != 0) return kInvalidValue;
  return code(machine().allocate_host(bytes, p));
}

EXPORT CUresult cuMemFreeHost(void* p) {
  CUctx_st* context = nullptr;
  if (CUresult r = need_context("cuMemFreeHost", &context); r != CUDA_SUCCESS) return r;
  return code(machine().free_host(p, "cuMemFreeHost"));
}

EXPORT CUresult cuMemHostRegister_v2(void* p, std::size_t bytes, unsigned int flags) {
  CUctx_st* context = nullptr;
  if (CUresult r = need_context("cuMemHostRegister", &context); r != CUDA_SUCCESS) return r;
  if ((flags & ~CU_MEMHOSTREGISTER_PORTABLE) != 0) return kInvalidValue;
  return code(machine().register_host(p, bytes));
}

EXPORT CUresult cuMemHostUnregister(void* p) {
  CUctx_st* context = nullptr;
  if (CUresult r = need_context("cuMemHostUnregister", &context); r != CUDA_SUCCESS) return r;
  return code(machine().unregister_host(p));
}

EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, std::size_t bytes,
                                     CUstream stream) {
  if (CUresult r = need_stream("cuMemcpyHtoDAsync", stream); r != CUDA_SUCCESS) return r;
  std::vector<sim::RegionUse> uses(1);
  if (!machine().host_range("cuMemcpyHtoDAsync", src, bytes) ||
      !machine().device_range("cuMemcpyHtoDAsync", stream->context->device, dst, bytes, &uses[0])) {
    return kInvalidValue;
  }
  sim::enqueue_copy(stream->stream, reinterpret_cast<void*>(dst), src, bytes, std::move(uses));
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, std::size_t bytes,
                                     CUstream stream) {
  if (CUresult r = need_stream("cuMemcpyDtoHAsync", stream); r != CUDA_SUCCESS) return r;
  std::vector<sim::RegionUse> uses(1);
  if (!machine().host_range("cuMemcpyDtoHAsync", dst, bytes) ||
      !machine().device_range("cuMemcpyDtoHAsync", stream->context->device, src, bytes, &uses[0])) {
    return kInvalidValue;
  }
  sim::enqueue_copy(stream->stream, dst, reinterpret_cast<const void*>(src), bytes,
                    std::move(uses));
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, std::size_t bytes,
                                     CUstream stream) {
  if (CUresult r = need_stream("cuMemcpyDtoDAsync", stream); r != CUDA_SUCCESS) return r;
  const int device = stream->context->device;
  std::vector<sim::RegionUse> uses(2);
  if (!machine().device_range("cuMemcpyDtoDAsync", device, dst, bytes, &uses[0]) ||
      !machine().device_range("cuMemcpyDtoDAsync", device, src, bytes, &uses[1])) {
    return kInvalidValue;
  }
  sim::enqueue_copy(stream->stream, reinterpret_cast<void*>(dst),
                    reinterpret_cast<const void*>(src), bytes, std::move(uses));
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyPeerAsync(CUdeviceptr dst, CUcontext dst_ctx, CUdeviceptr src,
                                  CUcontext src_ctx, std::size_t bytes, CUstream stream) {
  if (CUresult r = need_stream("cuMemcpyPeerAsync", stream); r != CUDA_SUCCESS) return r;
  if (dst_ctx == nullptr || src_ctx == nullptr || !retained(dst_ctx) || !retained(src_ctx)) {
    return kInvalidContext;
  }
  const int here = stream->context->device;
  const int there = here == src_ctx->device ? dst_ctx->device : src_ctx->device;
  if (here != src_ctx->device && here != dst_ctx->device) {
    machine().fault("cuMemcpyPeerAsync on a stream of neither device", false);
    return kInvalidValue;
  }
  if (there != here && !machine().peer_enabled(here, there)) {
    machine().fault("cuMemcpyPeerAsync from device " + std::to_string(here) + " to device " +
                        std::to_string(there) + " before cuCtxEnablePeerAccess",
                    false);
    return kPeerAccessNotEnabled;
  }
  std::vector<sim::RegionUse> uses(2);
  if (!machine().device_range("cuMemcpyPeerAsync", dst_ctx->device, dst, bytes, &uses[0]) ||
      !machine().device_range("cuMemcpyPeerAsync", src_ctx->device, src, bytes, &uses[1])) {
    return kInvalidValue;
  }
  sim::enqueue_copy(stream->stream, reinterpret_cast<void*>(dst),
                    reinterpret_cast<const void*>(src), bytes, std::move(uses));
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, std::size_t n,
                                CUstream stream) {
  if (CUresult r = need_stream("cuMemsetD8Async", stream); r != CUDA_SUCCESS) return r;
  std::vector<sim::RegionUse> uses(1);
  if (!machine().device_range("cuMemsetD8Async", stream->context->device, dst, n, &uses[0])) {
    return kInvalidValue;
  }
  sim::enqueue_fill(stream->stream, reinterpret_cast<void*>(dst), value, n, std::move(uses));
  return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamCreate(CUstream* stream, unsigned int flags) {
  CUctx_st* context = nullptr;
  if (CUresult r = need_context("cuStreamCreate", &context); r != CUDA_SUCCESS) return r;
  if (stream == nullptr || (flags & ~CU_STREAM_NON_BLOCKING) != 0) return kInvalidValue;
  *stream = streams().add(std::make_unique<CUstream_st>(context));
  return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamDestroy_v2(CUstream stream) {
  if (!initialized) return kNotInitialized;
  std::unique_ptr<CUstream_st> owned = streams().remove(stream);
  return owned ? CUDA_SUCCESS : kInvalidHandle;  // the work still queued finishes first
}

EXPORT CUresult cuStreamSynchronize(CUstream stream) {
  if (!initialized) return kNotInitialized;
  if (!streams().valid(stream)) return kInvalidHandle;
  stream->stream.synchronize();
  return code(machine().sticky_status());
}

EXPORT CUresult cuStreamWaitEvent(CUstream stream, CUevent event, unsigned int flags) {
  if (CUresult r = need_stream("cuStreamWaitEvent", stream); r != CUDA_SUCCESS) return r;
  if (!events().valid(event) || flags != 0) return kInvalidHandle;
  event->event.make_wait(stream->stream);  // events of any context may be waited for
  return CUDA_SUCCESS;
}

EXPORT CUresult cuEventCreate(CUevent* event, unsigned int flags) {
  CUctx_st* context = nullptr;
  if (CUresult r = need_context("cuEventCreate", &context); r != CUDA_SUCCESS) return r;
  if (event == nullptr || (flags & ~CU_EVENT_DISABLE_TIMING) != 0) return kInvalidValue;
  const bool timing = (flags & CU_EVENT_DISABLE_TIMING) == 0;
  *event = events().add(std::make_unique<CUevent_st>(context, timing));
  return CUDA_SUCCESS;
}

EXPORT CUresult cuEventDestroy_v2(CUevent event) {
  if (!initialized) return kNotInitialized;
  return events().remove(event) ? CUDA_SUCCESS : kInvalidHandle;
}

EXPORT CUresult cuEventRecord(CUevent event, CUstream stream) {
  if (!initialized) return kNotInitialized;
  if (!events().valid(event) || !streams().valid(stream)) return kInvalidHandle;
  if (event->context != stream->context) {
    machine().fault("cuEventRecord of an event on a stream of another context", false);
    return kInvalidHandle;
  }
  event->event.record(stream->stream);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuEventQuery(CUevent event) {
  if (!initialized) return kNotInitialized;
  if (!events().valid(event)) return kInvalidHandle;
  if (CUresult sticky = code(machine().sticky_status()); sticky != CUDA_SUCCESS) return sticky;
  return code(event->event.query());
}

EXPORT CUresult cuEventSynchronize(CUevent event) {
  if (!initialized) return kNotInitialized;
  if (!events().valid(event)) return kInvalidHandle;
  event->event.synchronize();
  return code(machine().sticky_status());
}

EXPORT CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
  if (!initialized) return kNotInitialized;
  if (!events().valid(start) || !events().valid(end)) return kInvalidHandle;
  return code(start->event.elapsed_ms(end->event, ms));
}

EXPORT CUresult cuModuleLoadData(CUmodule* module, const void* image) {
  CUctx_st* context = nullptr;
  if (CUresult r = need_context("cuModuleLoadData", &context); r != CUDA_SUCCESS) return r;
  if (module == nullptr || image == nullptr) return kInvalidValue;
  auto kernels = sim::parse_ptx_entries(static_cast<const char*>(image));
  if (kernels.empty()) return kInvalidImage;
  auto owned = std::make_unique<CUmod_st>();
  owned->context = context;
  for (auto& kernel : kernels) {
    owned->functions.push_back(std::make_unique<CUfunc_st>(owned.get(), std::move(kernel)));
  }
  *module = modules().add(std::move(owned));
  return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleUnload(CUmodule module) {
  if (!initialized) return kNotInitialized;
  return modules().remove(module) ? CUDA_SUCCESS : kInvalidHandle;
}

EXPORT CUresult cuModuleGetFunction(CUfunction* function, CUmodule module, const char* name) {
  if (!initialized) return kNotInitialized;
  if (!modules().valid(module)) return kInvalidHandle;
  if (function == nullptr || name == nullptr) return kInvalidValue;
  for (const auto& candidate : module->functions) {
    if (candidate->signature.name == name) {
      *function = candidate.get();
      return CUDA_SUCCESS;
    }
  }
  return kNotFound;
}

EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned grid_x, unsigned grid_y, unsigned grid_z,
                               unsigned block_x, unsigned block_y, unsigned block_z,
                               unsigned shared_bytes, CUstream stream, void** params,
                               void** extra) {
  if (CUresult r = need_stream("cuLaunchKernel", stream); r != CUDA_SUCCESS) return r;
  if (f == nullptr || !modules().valid(f->module)) return kInvalidHandle;
  if (f->module->context != stream->context) {
    machine().fault("cuLaunchKernel of a function loaded into another context", false);
    return kInvalidContext;
  }
  const std::uint64_t block = std::uint64_t{block_x} * block_y * block_z;
  if (grid_x == 0 || grid_y != 1 || grid_z != 1 || block == 0 || block > 1024 ||
      block_y != 1 || block_z != 1 || shared_bytes > 48 * 1024 || extra != nullptr ||
      params == nullptr) {
    machine().fault("cuLaunchKernel: launch configuration the 1-D kernels cannot take", false);
    return kInvalidValue;
  }
  const sim::KernelSignature& signature = f->signature;
  if (signature.name != "exogpu_fma" || signature.param_bytes != std::vector<int>{8, 8, 4}) {
    return kNotFound;  // the machine runs only the kernels it knows
  }
  // Parameters are read at launch, as the driver copies them then.
  std::uint64_t data = 0;
  std::uint64_t count = 0;
  std::uint32_t iterations = 0;
  std::memcpy(&data, params[0], sizeof data);
  std::memcpy(&count, params[1], sizeof count);
  std::memcpy(&iterations, params[2], sizeof iterations);
  return code(sim::launch_fma(stream->stream, data, count, iterations,
                              std::uint64_t{grid_x} * block_x));
}

EXPORT CUresult cuGetProcAddress(const char* symbol, void** pfn, int cuda_version,
                                 std::uint64_t flags) {
  if (symbol == nullptr || pfn == nullptr || flags != 0 || cuda_version < 12000) {
    return kInvalidValue;
  }
#define EXOGPU_SIM_PROC(member, base, exported, ret, params) \
  if (std::strcmp(symbol, #base) == 0) {                     \
    *pfn = reinterpret_cast<void*>(&exported);               \
    return CUDA_SUCCESS;                                     \
  }
  EXOGPU_CUDA_SYMBOLS(EXOGPU_SIM_PROC)
  EXOGPU_CUDA_OPTIONAL_SYMBOLS(EXOGPU_SIM_PROC)
#undef EXOGPU_SIM_PROC
  *pfn = nullptr;
  return kNotFound;
}

// Every entry point of exogpu's table exists here with exactly its signature.
#define EXOGPU_SIM_SIGNATURE(member, base, exported, ret, params) \
  static_assert(std::is_same_v<decltype(&exported), ret(*) params>, #exported);
EXOGPU_CUDA_SYMBOLS(EXOGPU_SIM_SIGNATURE)
EXOGPU_CUDA_OPTIONAL_SYMBOLS(EXOGPU_SIM_SIGNATURE)
#undef EXOGPU_SIM_SIGNATURE
