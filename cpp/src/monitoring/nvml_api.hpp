// The slice of NVML exogpu reads, declared here so that the build needs no
// NVIDIA header: opaque handle, the few constants and structures, and one
// X-macro table of entry points. Values, layouts and signatures are NVML's
// C ABI (nvml.h), which NVIDIA keeps stable across driver releases.
#pragma once

#include <cstdint>

namespace exogpu::nvml {

using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;

inline constexpr nvmlReturn_t NVML_SUCCESS = 0;

inline constexpr int NVML_TEMPERATURE_GPU = 0;
inline constexpr int NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1;
inline constexpr int NVML_CLOCK_SM = 1;
inline constexpr int NVML_CLOCK_MEM = 2;
// NVML_DEVICE_NAME_V2_BUFFER_SIZE and NVML_DEVICE_UUID_V2_BUFFER_SIZE.
inline constexpr unsigned kNameBufferSize = 96;
inline constexpr unsigned kUuidBufferSize = 96;

struct nvmlMemory_t {
  unsigned long long total;  // NOLINT(google-runtime-int): the ABI type
  unsigned long long free;   // NOLINT(google-runtime-int)
  unsigned long long used;   // NOLINT(google-runtime-int)
};

struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};

// nvmlPciInfo_t as nvmlDeviceGetPciInfo_v3 fills it.
struct nvmlPciInfo_t {
  char busIdLegacy[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pciDeviceId;
  unsigned int pciSubSystemId;
  char busId[32];
};

inline constexpr bool kRequired = true;
inline constexpr bool kOptional = false;

// X(member, exported symbol, required, return, params). A missing required
// entry point makes NVML unusable; a missing optional one (newer than some
// drivers, or not offered on every product) only leaves its reading out.
#define EXOGPU_NVML_SYMBOLS(X)                                                                   \
  X(init, nvmlInit_v2, kRequired, nvmlReturn_t, (void))                                          \
  X(shutdown, nvmlShutdown, kRequired, nvmlReturn_t, (void))                                     \
  X(error_string, nvmlErrorString, kRequired, const char*, (nvmlReturn_t result))                \
  X(device_get_count, nvmlDeviceGetCount_v2, kRequired, nvmlReturn_t, (unsigned int* count))     \
  X(device_get_handle_by_index, nvmlDeviceGetHandleByIndex_v2, kRequired, nvmlReturn_t,          \
    (unsigned int index, nvmlDevice_t* device))                                                  \
  X(device_get_name, nvmlDeviceGetName, kRequired, nvmlReturn_t,                                 \
    (nvmlDevice_t device, char* name, unsigned int length))                                      \
  X(device_get_uuid, nvmlDeviceGetUUID, kRequired, nvmlReturn_t,                                 \
    (nvmlDevice_t device, char* uuid, unsigned int length))                                      \
  X(device_get_pci_info, nvmlDeviceGetPciInfo_v3, kOptional, nvmlReturn_t,                       \
    (nvmlDevice_t device, nvmlPciInfo_t* pci))                                                   \
  X(device_get_temperature, nvmlDeviceGetTemperature, kOptional, nvmlReturn_t,                   \
    (nvmlDevice_t device, int sensor, unsigned int* temperature))                                \
  X(device_get_temperature_threshold, nvmlDeviceGetTemperatureThreshold, kOptional,              \
    nvmlReturn_t, (nvmlDevice_t device, int threshold, unsigned int* temperature))               \
  X(device_get_power_usage, nvmlDeviceGetPowerUsage, kOptional, nvmlReturn_t,                    \
    (nvmlDevice_t device, unsigned int* milliwatts))                                             \
  X(device_get_enforced_power_limit, nvmlDeviceGetEnforcedPowerLimit, kOptional, nvmlReturn_t,   \
    (nvmlDevice_t device, unsigned int* milliwatts))                                             \
  X(device_get_total_energy_consumption, nvmlDeviceGetTotalEnergyConsumption, kOptional,         \
    nvmlReturn_t, (nvmlDevice_t device, unsigned long long* millijoules))                        \
  X(device_get_memory_info, nvmlDeviceGetMemoryInfo, kOptional, nvmlReturn_t,                    \
    (nvmlDevice_t device, nvmlMemory_t* memory))                                                 \
  X(device_get_clock_info, nvmlDeviceGetClockInfo, kOptional, nvmlReturn_t,                      \
    (nvmlDevice_t device, int type, unsigned int* megahertz))                                    \
  X(device_get_utilization_rates, nvmlDeviceGetUtilizationRates, kOptional, nvmlReturn_t,        \
    (nvmlDevice_t device, nvmlUtilization_t* utilization))                                       \
  X(device_get_clocks_event_reasons, nvmlDeviceGetCurrentClocksEventReasons, kOptional,          \
    nvmlReturn_t, (nvmlDevice_t device, unsigned long long* reasons))                            \
  X(device_get_clocks_throttle_reasons, nvmlDeviceGetCurrentClocksThrottleReasons, kOptional,    \
    nvmlReturn_t, (nvmlDevice_t device, unsigned long long* reasons))                            \
  X(device_get_pcie_link_generation, nvmlDeviceGetCurrPcieLinkGeneration, kOptional,             \
    nvmlReturn_t, (nvmlDevice_t device, unsigned int* generation))                               \
  X(device_get_pcie_link_width, nvmlDeviceGetCurrPcieLinkWidth, kOptional, nvmlReturn_t,         \
    (nvmlDevice_t device, unsigned int* lanes))

}  // namespace exogpu::nvml
