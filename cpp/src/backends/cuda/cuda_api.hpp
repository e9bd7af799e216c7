// The slice of the CUDA driver API exogpu uses, declared here so that the
// build needs no CUDA toolkit: opaque handle types, the few constants, and one
// X-macro table of entry points (name, exported symbol, return type,
// parameters). The values and signatures are those of the driver API's ABI,
// which NVIDIA keeps stable across driver releases.
#pragma once

#include <cstddef>
#include <cstdint>

namespace exogpu::cuda {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;  // NOLINT(google-runtime-int): the ABI type
using CUcontext = struct CUctx_st*;
using CUstream = struct CUstream_st*;
using CUevent = struct CUevent_st*;
using CUmodule = struct CUmod_st*;
using CUfunction = struct CUfunc_st*;
struct CUuuid {
  unsigned char bytes[16];
};

inline constexpr CUresult CUDA_SUCCESS = 0;
inline constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;
inline constexpr CUresult CUDA_ERROR_NO_DEVICE = 100;
inline constexpr CUresult CUDA_ERROR_NOT_READY = 600;
inline constexpr CUresult CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED = 704;
inline constexpr CUresult CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED = 712;

inline constexpr unsigned CU_STREAM_NON_BLOCKING = 0x1;
inline constexpr unsigned CU_EVENT_DEFAULT = 0x0;
inline constexpr unsigned CU_EVENT_DISABLE_TIMING = 0x2;
inline constexpr unsigned CU_MEMHOSTALLOC_PORTABLE = 0x1;
inline constexpr unsigned CU_MEMHOSTREGISTER_PORTABLE = 0x1;
inline constexpr int CU_DEVICE_ATTRIBUTE_INTEGRATED = 18;
inline constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
inline constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;

// The ABI version (CUDA 12.0) at which the signatures below are requested
// through cuGetProcAddress; it maps each base name to the same versioned
// export as the second column (cuMemAlloc -> cuMemAlloc_v2, ...).
inline constexpr int kProcAddressVersion = 12000;

// X(member, base name for cuGetProcAddress, exported symbol, return, params)
#define EXOGPU_CUDA_SYMBOLS(X)                                                                   \
  X(init, cuInit, cuInit, CUresult, (unsigned int flags))                                        \
  X(driver_get_version, cuDriverGetVersion, cuDriverGetVersion, CUresult, (int* version))        \
  X(get_error_name, cuGetErrorName, cuGetErrorName, CUresult, (CUresult error, const char** s))  \
  X(get_error_string, cuGetErrorString, cuGetErrorString, CUresult,                              \
    (CUresult error, const char** s))                                                            \
  X(device_get_count, cuDeviceGetCount, cuDeviceGetCount, CUresult, (int* count))                \
  X(device_get, cuDeviceGet, cuDeviceGet, CUresult, (CUdevice * device, int ordinal))            \
  X(device_get_name, cuDeviceGetName, cuDeviceGetName, CUresult,                                 \
    (char* name, int len, CUdevice dev))                                                         \
  X(device_total_mem, cuDeviceTotalMem, cuDeviceTotalMem_v2, CUresult,                           \
    (std::size_t * bytes, CUdevice dev))                                                         \
  X(device_get_attribute, cuDeviceGetAttribute, cuDeviceGetAttribute, CUresult,                  \
    (int* value, int attribute, CUdevice dev))                                                   \
  X(device_get_uuid, cuDeviceGetUuid, cuDeviceGetUuid_v2, CUresult,                              \
    (CUuuid * uuid, CUdevice dev))                                                               \
  X(device_get_pci_bus_id, cuDeviceGetPCIBusId, cuDeviceGetPCIBusId, CUresult,                   \
    (char* bus_id, int len, CUdevice dev))                                                       \
  X(device_can_access_peer, cuDeviceCanAccessPeer, cuDeviceCanAccessPeer, CUresult,              \
    (int* can_access, CUdevice dev, CUdevice peer))                                              \
  X(primary_ctx_retain, cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain, CUresult,            \
    (CUcontext * ctx, CUdevice dev))                                                             \
  X(primary_ctx_release, cuDevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease_v2, CUresult,      \
    (CUdevice dev))                                                                              \
  X(ctx_get_current, cuCtxGetCurrent, cuCtxGetCurrent, CUresult, (CUcontext * ctx))              \
  X(ctx_set_current, cuCtxSetCurrent, cuCtxSetCurrent, CUresult, (CUcontext ctx))                \
  X(ctx_enable_peer_access, cuCtxEnablePeerAccess, cuCtxEnablePeerAccess, CUresult,              \
    (CUcontext peer, unsigned int flags))                                                        \
  X(mem_get_info, cuMemGetInfo, cuMemGetInfo_v2, CUresult,                                       \
    (std::size_t * free, std::size_t * total))                                                   \
  X(mem_alloc, cuMemAlloc, cuMemAlloc_v2, CUresult, (CUdeviceptr * dptr, std::size_t bytes))     \
  X(mem_free, cuMemFree, cuMemFree_v2, CUresult, (CUdeviceptr dptr))                             \
  X(mem_host_alloc, cuMemHostAlloc, cuMemHostAlloc, CUresult,                                    \
    (void** p, std::size_t bytes, unsigned int flags))                                           \
  X(mem_free_host, cuMemFreeHost, cuMemFreeHost, CUresult, (void* p))                            \
  X(mem_host_register, cuMemHostRegister, cuMemHostRegister_v2, CUresult,                        \
    (void* p, std::size_t bytes, unsigned int flags))                                            \
  X(mem_host_unregister, cuMemHostUnregister, cuMemHostUnregister, CUresult, (void* p))          \
  X(memcpy_htod_async, cuMemcpyHtoDAsync, cuMemcpyHtoDAsync_v2, CUresult,                        \
    (CUdeviceptr dst, const void* src, std::size_t bytes, CUstream stream))                      \
  X(memcpy_dtoh_async, cuMemcpyDtoHAsync, cuMemcpyDtoHAsync_v2, CUresult,                        \
    (void* dst, CUdeviceptr src, std::size_t bytes, CUstream stream))                            \
  X(memcpy_dtod_async, cuMemcpyDtoDAsync, cuMemcpyDtoDAsync_v2, CUresult,                        \
    (CUdeviceptr dst, CUdeviceptr src, std::size_t bytes, CUstream stream))                      \
  X(memcpy_peer_async, cuMemcpyPeerAsync, cuMemcpyPeerAsync, CUresult,                           \
    (CUdeviceptr dst, CUcontext dst_ctx, CUdeviceptr src, CUcontext src_ctx, std::size_t bytes,  \
     CUstream stream))                                                                           \
  X(memset_d8_async, cuMemsetD8Async, cuMemsetD8Async, CUresult,                                 \
    (CUdeviceptr dst, unsigned char value, std::size_t n, CUstream stream))                      \
  X(stream_create, cuStreamCreate, cuStreamCreate, CUresult,                                     \
    (CUstream * stream, unsigned int flags))                                                     \
  X(stream_destroy, cuStreamDestroy, cuStreamDestroy_v2, CUresult, (CUstream stream))            \
  X(stream_synchronize, cuStreamSynchronize, cuStreamSynchronize, CUresult, (CUstream stream))   \
  X(stream_wait_event, cuStreamWaitEvent, cuStreamWaitEvent, CUresult,                           \
    (CUstream stream, CUevent event, unsigned int flags))                                        \
  X(event_create, cuEventCreate, cuEventCreate, CUresult, (CUevent * event, unsigned int flags)) \
  X(event_destroy, cuEventDestroy, cuEventDestroy_v2, CUresult, (CUevent event))                 \
  X(event_record, cuEventRecord, cuEventRecord, CUresult, (CUevent event, CUstream stream))      \
  X(event_query, cuEventQuery, cuEventQuery, CUresult, (CUevent event))                          \
  X(event_synchronize, cuEventSynchronize, cuEventSynchronize, CUresult, (CUevent event))        \
  X(event_elapsed_time, cuEventElapsedTime, cuEventElapsedTime, CUresult,                        \
    (float* ms, CUevent start, CUevent end))                                                     \
  X(module_load_data, cuModuleLoadData, cuModuleLoadData, CUresult,                              \
    (CUmodule * module, const void* image))                                                      \
  X(module_unload, cuModuleUnload, cuModuleUnload, CUresult, (CUmodule module))                  \
  X(module_get_function, cuModuleGetFunction, cuModuleGetFunction, CUresult,                     \
    (CUfunction * function, CUmodule module, const char* name))                                  \
  X(launch_kernel, cuLaunchKernel, cuLaunchKernel, CUresult,                                     \
    (CUfunction f, unsigned grid_x, unsigned grid_y, unsigned grid_z, unsigned block_x,          \
     unsigned block_y, unsigned block_z, unsigned shared_bytes, CUstream stream, void** params,  \
     void** extra))

// Entry points a driver may lack without the backend losing anything it
// needs: nullptr when absent. cuDeviceGetLuid (CUDA 10) answers only on
// Windows, where the LUID ties a CUDA device to its D3D12 and Vulkan views.
#define EXOGPU_CUDA_OPTIONAL_SYMBOLS(X)                                                          \
  X(device_get_luid, cuDeviceGetLuid, cuDeviceGetLuid, CUresult,                                 \
    (char* luid, unsigned int* device_node_mask, CUdevice dev))

// cuGetProcAddress as CUDA 11.3 introduced it (the export keeps this
// signature; cuGetProcAddress_v2 adds a status argument).
using GetProcAddressFn = CUresult (*)(const char* symbol, void** pfn, int cuda_version,
                                      std::uint64_t flags);

}  // namespace exogpu::cuda
