// The slice of the HIP runtime API exogpu uses, declared here so that the
// build needs no HIP SDK: opaque handle types, the few constants, and one
// X-macro table of entry points (member, exported symbol, return type,
// parameters). Only calls whose ABI is the same in HIP 5 and 6 are used
// (hipGetDeviceProperties and the attribute enum changed; they are avoided).
#pragma once

#include <cstddef>

namespace exogpu::hip {

using hipError_t = int;
using hipDevice_t = int;
using hipStream_t = struct ihipStream_t*;
using hipEvent_t = struct ihipEvent_t*;
struct hipUUID {
  char bytes[16];
};

inline constexpr hipError_t hipSuccess = 0;
inline constexpr hipError_t hipErrorOutOfMemory = 2;
inline constexpr hipError_t hipErrorNoDevice = 100;
inline constexpr hipError_t hipErrorNotReady = 600;
inline constexpr hipError_t hipErrorPeerAccessAlreadyEnabled = 704;

// hipDeviceAttribute_t's "CUDA-compatible" block has numbered
// hipDeviceAttributeIntegrated 16 since HIP 5.0 (HIP 6 kept the block);
// older runtimes numbered it otherwise, so it is asked of HIP 5 or later only.
inline constexpr int hipDeviceAttributeIntegrated = 16;
inline constexpr int kFirstRuntimeWithIntegratedAt16 = 50000000;  // HIP 5.0.0

inline constexpr unsigned hipStreamNonBlocking = 0x1;
inline constexpr unsigned hipEventDefault = 0x0;
inline constexpr unsigned hipEventDisableTiming = 0x2;
inline constexpr unsigned hipHostMallocPortable = 0x1;
inline constexpr unsigned hipHostRegisterPortable = 0x1;
enum hipMemcpyKind : int {
  hipMemcpyHostToDevice = 1,
  hipMemcpyDeviceToHost = 2,
  hipMemcpyDeviceToDevice = 3,
};

// X(member, exported symbol, return, params)
#define EXOGPU_HIP_SYMBOLS(X)                                                                      \
  X(runtime_get_version, hipRuntimeGetVersion, hipError_t, (int* version))                         \
  X(get_error_name, hipGetErrorName, const char*, (hipError_t error))                              \
  X(get_error_string, hipGetErrorString, const char*, (hipError_t error))                          \
  X(get_device_count, hipGetDeviceCount, hipError_t, (int* count))                                 \
  X(set_device, hipSetDevice, hipError_t, (int ordinal))                                           \
  X(get_device, hipGetDevice, hipError_t, (int* ordinal))                                          \
  X(device_get, hipDeviceGet, hipError_t, (hipDevice_t * device, int ordinal))                     \
  X(device_get_name, hipDeviceGetName, hipError_t, (char* name, int len, hipDevice_t device))      \
  X(device_total_mem, hipDeviceTotalMem, hipError_t, (std::size_t * bytes, hipDevice_t device))    \
  X(device_get_attribute, hipDeviceGetAttribute, hipError_t, (int* value, int attribute, int ordinal)) \
  X(device_get_uuid, hipDeviceGetUuid, hipError_t, (hipUUID * uuid, hipDevice_t device))           \
  X(device_get_pci_bus_id, hipDeviceGetPCIBusId, hipError_t, (char* bus_id, int len, int ordinal)) \
  X(device_can_access_peer, hipDeviceCanAccessPeer, hipError_t,                                    \
    (int* can_access, int ordinal, int peer))                                                      \
  X(device_enable_peer_access, hipDeviceEnablePeerAccess, hipError_t,                              \
    (int peer, unsigned int flags))                                                                \
  X(mem_get_info, hipMemGetInfo, hipError_t, (std::size_t * free, std::size_t * total))            \
  X(malloc, hipMalloc, hipError_t, (void** p, std::size_t bytes))                                  \
  X(free, hipFree, hipError_t, (void* p))                                                          \
  X(host_malloc, hipHostMalloc, hipError_t, (void** p, std::size_t bytes, unsigned int flags))     \
  X(host_free, hipHostFree, hipError_t, (void* p))                                                 \
  X(host_register, hipHostRegister, hipError_t, (void* p, std::size_t bytes, unsigned int flags))  \
  X(host_unregister, hipHostUnregister, hipError_t, (void* p))                                     \
  X(memcpy_async, hipMemcpyAsync, hipError_t,                                                      \
    (void* dst, const void* src, std::size_t bytes, hipMemcpyKind kind, hipStream_t stream))       \
  X(memcpy_peer_async, hipMemcpyPeerAsync, hipError_t,                                             \
    (void* dst, int dst_ordinal, const void* src, int src_ordinal, std::size_t bytes,              \
     hipStream_t stream))                                                                          \
  X(memset_async, hipMemsetAsync, hipError_t,                                                      \
    (void* dst, int value, std::size_t bytes, hipStream_t stream))                                 \
  X(stream_create_with_flags, hipStreamCreateWithFlags, hipError_t,                                \
    (hipStream_t * stream, unsigned int flags))                                                    \
  X(stream_destroy, hipStreamDestroy, hipError_t, (hipStream_t stream))                            \
  X(stream_synchronize, hipStreamSynchronize, hipError_t, (hipStream_t stream))                    \
  X(stream_wait_event, hipStreamWaitEvent, hipError_t,                                             \
    (hipStream_t stream, hipEvent_t event, unsigned int flags))                                    \
  X(event_create_with_flags, hipEventCreateWithFlags, hipError_t,                                  \
    (hipEvent_t * event, unsigned int flags))                                                      \
  X(event_destroy, hipEventDestroy, hipError_t, (hipEvent_t event))                                \
  X(event_record, hipEventRecord, hipError_t, (hipEvent_t event, hipStream_t stream))              \
  X(event_query, hipEventQuery, hipError_t, (hipEvent_t event))                                    \
  X(event_synchronize, hipEventSynchronize, hipError_t, (hipEvent_t event))                        \
  X(event_elapsed_time, hipEventElapsedTime, hipError_t,                                           \
    (float* ms, hipEvent_t start, hipEvent_t stop))

}  // namespace exogpu::hip
