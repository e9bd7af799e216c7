// A real shared library standing in for libnvidia-ml.so.1 on machines
// without an NVIDIA driver. Every entry point of the reader's symbol table is
// declared from that table, so each definition below must match its
// signature; the ones left undefined are absent from the library, as on an
// older driver:
//   nvmlDeviceGetTotalEnergyConsumption (energy is then absent, not zero),
//   nvmlDeviceGetCurrentClocksEventReasons (the reader falls back on the
//   ThrottleReasons name of the same bits).
// By default it reports one device with the values below; build variants:
//   EXOGPU_FAKE_NVML_INIT_FAILS  nvmlInit_v2 fails with "Driver Not Loaded";
//   EXOGPU_FAKE_NVML_NO_DEVICE   NVML starts and lists no device.
#include <cstring>

#include "monitoring/nvml_api.hpp"

using namespace exogpu::nvml;

namespace exogpu::nvml {
struct nvmlDevice_st {
  unsigned index;
};
}  // namespace exogpu::nvml

#define EXOGPU_FAKE_DECLARE(member, exported, required, ret, params) \
  extern "C" __attribute__((visibility("default"))) ret exported params;
EXOGPU_NVML_SYMBOLS(EXOGPU_FAKE_DECLARE)
#undef EXOGPU_FAKE_DECLARE

namespace {
constexpr nvmlReturn_t kInvalidArgument = 2;
constexpr nvmlReturn_t kNotSupported = 3;
constexpr nvmlReturn_t kDriverNotLoaded = 9;
nvmlDevice_st the_device{0};

bool valid(nvmlDevice_t device) { return device == &the_device; }

nvmlReturn_t copy_text(const char* text, char* out, unsigned length) {
  if (out == nullptr || std::strlen(text) + 1 > length) return kInvalidArgument;
  std::strcpy(out, text);
  return NVML_SUCCESS;
}
}  // namespace

nvmlReturn_t nvmlInit_v2(void) {
#ifdef EXOGPU_FAKE_NVML_INIT_FAILS
  return kDriverNotLoaded;
#else
  return NVML_SUCCESS;
#endif
}

nvmlReturn_t nvmlShutdown(void) { return NVML_SUCCESS; }

const char* nvmlErrorString(nvmlReturn_t result) {
  switch (result) {
    case NVML_SUCCESS: return "Success";
    case kInvalidArgument: return "Invalid Argument";
    case kNotSupported: return "Not Supported";
    case kDriverNotLoaded: return "Driver Not Loaded";
    default: return "Unknown Error";
  }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* count) {
#ifdef EXOGPU_FAKE_NVML_NO_DEVICE
  *count = 0;
#else
  *count = 1;
#endif
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t* device) {
  if (index != 0) return kInvalidArgument;
  *device = &the_device;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char* name, unsigned int length) {
  if (!valid(device)) return kInvalidArgument;
  return copy_text("NVIDIA GeForce RTX 4090 (stand-in)", name, length);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char* uuid, unsigned int length) {
  if (!valid(device)) return kInvalidArgument;
  return copy_text("GPU-1B2C3D4E-5F60-7182-93A4-B5C6D7E8F901", uuid, length);
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t* pci) {
  if (!valid(device)) return kInvalidArgument;
  *pci = nvmlPciInfo_t{};
  std::strcpy(pci->busIdLegacy, "0000:65:00.0");
  std::strcpy(pci->busId, "00000000:65:00.0");
  pci->bus = 0x65;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int* value) {
  if (!valid(device) || sensor != NVML_TEMPERATURE_GPU) return kInvalidArgument;
  *value = 61;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device, int threshold,
                                               unsigned int* value) {
  if (!valid(device)) return kInvalidArgument;
  if (threshold != NVML_TEMPERATURE_THRESHOLD_SLOWDOWN) return kNotSupported;
  *value = 87;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int* milliwatts) {
  if (!valid(device)) return kInvalidArgument;
  *milliwatts = 123456;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int* milliwatts) {
  if (!valid(device)) return kInvalidArgument;
  *milliwatts = 450000;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t* memory) {
  if (!valid(device)) return kInvalidArgument;
  memory->total = 24ULL << 30;
  memory->used = 3ULL << 30;
  memory->free = memory->total - memory->used;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, unsigned int* megahertz) {
  if (!valid(device)) return kInvalidArgument;
  if (type == NVML_CLOCK_SM) {
    *megahertz = 2520;
  } else if (type == NVML_CLOCK_MEM) {
    *megahertz = 10501;
  } else {
    return kNotSupported;
  }
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t* utilization) {
  if (!valid(device)) return kInvalidArgument;
  *utilization = nvmlUtilization_t{87, 41};
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device,
                                                       unsigned long long* reasons) {
  if (!valid(device)) return kInvalidArgument;
  *reasons = 0x44;  // sw_power_cap | hw_thermal_slowdown
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t device, unsigned int* generation) {
  if (!valid(device)) return kInvalidArgument;
  *generation = 4;
  return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t device, unsigned int* lanes) {
  if (!valid(device)) return kInvalidArgument;
  *lanes = 16;
  return NVML_SUCCESS;
}
