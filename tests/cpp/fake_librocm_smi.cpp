// A real shared library standing in for librocm_smi64 on machines without
// an AMD GPU. Every entry point of the reader's symbol table is declared from
// that table, so each definition below must match its signature;
// rsmi_dev_current_socket_power_get is left undefined (absent, as in
// rocm-smi 5), which must cost nothing since the average power is there.
// It reports one device with the values below, in rocm-smi's own units
// (millidegrees, microwatts, an energy counter with its resolution, Hz).
// Build variants:
//   EXOGPU_FAKE_ROCM_SMI_V6         reports version 7.3 and fills the ROCm 6
//                                   layout of the frequency structures;
//   EXOGPU_FAKE_ROCM_SMI_NO_DEVICE  starts and lists no device.
// Built by CMake for the C++ suite and by the pytest suite with a plain
// `g++ -shared -fPIC -I cpp/src`, so it needs nothing else.
#include <cstring>

#include "monitoring/rocm_smi_api.hpp"

using namespace exogpu::rocm_smi;

#define EXOGPU_FAKE_DECLARE(member, exported, required, ret, params) \
  extern "C" __attribute__((visibility("default"))) ret exported params;
EXOGPU_ROCM_SMI_SYMBOLS(EXOGPU_FAKE_DECLARE)
#undef EXOGPU_FAKE_DECLARE

namespace {
constexpr rsmi_status_t kInvalidArgs = 1;
constexpr rsmi_status_t kNotSupported = 2;

#ifdef EXOGPU_FAKE_ROCM_SMI_V6
using Frequencies = rsmi_frequencies_v6_t;
using PcieBandwidth = rsmi_pcie_bandwidth_v6_t;
#else
using Frequencies = rsmi_frequencies_v5_t;
using PcieBandwidth = rsmi_pcie_bandwidth_v5_t;
#endif

bool valid(std::uint32_t device) { return device == 0; }

void fill(Frequencies& f, std::uint64_t low, std::uint64_t middle, std::uint64_t high) {
  f = Frequencies{};
  f.num_supported = 3;
  f.current = 2;
  f.frequency[0] = low;
  f.frequency[1] = middle;
  f.frequency[2] = high;
}
}  // namespace

rsmi_status_t rsmi_init(std::uint64_t flags) { return flags == 0 ? RSMI_STATUS_SUCCESS : kInvalidArgs; }

rsmi_status_t rsmi_shut_down(void) { return RSMI_STATUS_SUCCESS; }

rsmi_status_t rsmi_status_string(rsmi_status_t status, const char** text) {
  *text = status == kNotSupported ? "RSMI_STATUS_NOT_SUPPORTED: Feature not supported"
                                  : "RSMI_STATUS_INVALID_ARGS: Invalid arguments";
  return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_num_monitor_devices(std::uint32_t* count) {
#ifdef EXOGPU_FAKE_ROCM_SMI_NO_DEVICE
  *count = 0;
#else
  *count = 1;
#endif
  return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_version_get(rsmi_version_t* version) {
#ifdef EXOGPU_FAKE_ROCM_SMI_V6
  *version = rsmi_version_t{7, 3, 0, "stand-in"};
#else
  *version = rsmi_version_t{5, 7, 0, "stand-in"};
#endif
  return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_dev_name_get(std::uint32_t device, char* name, std::size_t length) {
  const char* text = "Radeon RX 7900 XTX (stand-in)";
  if (!valid(device) || std::strlen(text) + 1 > length) return kInvalidArgs;
  std::strcpy(name, text);
  return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_dev_pci_id_get(std::uint32_t device, std::uint64_t* bdfid) {
  if (!valid(device)) return kInvalidArgs;
  // Domain 0, bus 3, device 0, function 0; bit 28 set as rocm-smi 6 sets a
  // partition number there, which is no part of the PCI address.
  *bdfid = (std::uint64_t{1} << 28) | (std::uint64_t{0x03} << 8);
  return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_dev_temp_metric_get(std::uint32_t device, std::uint32_t sensor, int metric,
                                       std::int64_t* millidegrees) {
  if (!valid(device)) return kInvalidArgs;
  if (metric == RSMI_TEMP_CURRENT) {
    constexpr std::int64_t kCurrent[] = {54000, 61500, 70000};  // edge, junction, memory
    if (sensor > RSMI_TEMP_TYPE_MEMORY) return kNotSupported;
    *millidegrees = kCurrent[sensor];
    return RSMI_STATUS_SUCCESS;
  }
  if (metric == RSMI_TEMP_CRITICAL && sensor == RSMI_TEMP_TYPE_JUNCTION) {
    *millidegrees = 110000;
    return RSMI_STATUS_SUCCESS;
  }
  return kNotSupported;
}

rsmi_status_t rsmi_dev_power_ave_get(std::uint32_t device, std::uint32_t sensor,
                                     std::uint64_t* microwatts) {
  if (!valid(device) || sensor != 0) return kInvalidArgs;
  *microwatts = 123456789;
  return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_dev_power_cap_get(std::uint32_t device, std::uint32_t sensor,
                                     std::uint64_t* microwatts) {
  if (!valid(device) || sensor != 0) return kInvalidArgs;
  *microwatts = 300000000;
  return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_dev_energy_count_get(std::uint32_t device, std::uint64_t* counter,
                                        float* resolution_uj, std::uint64_t* timestamp_ns) {
  if (!valid(device)) return kInvalidArgs;
  *counter = 2000000;
  *resolution_uj = 15.25F;  // exact in binary: 2e6 counts are 30.5 J
  *timestamp_ns = 1;
  return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_dev_memory_usage_get(std::uint32_t device, int type, std::uint64_t* bytes) {
  if (!valid(device) || type != RSMI_MEM_TYPE_VRAM) return kNotSupported;
  *bytes = std::uint64_t{3} << 30;
  return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_dev_memory_total_get(std::uint32_t device, int type, std::uint64_t* bytes) {
  if (!valid(device) || type != RSMI_MEM_TYPE_VRAM) return kNotSupported;
  *bytes = std::uint64_t{24} << 30;
  return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_dev_gpu_clk_freq_get(std::uint32_t device, int type, void* frequencies) {
  if (!valid(device)) return kInvalidArgs;
  Frequencies f;
  if (type == RSMI_CLK_TYPE_SYS) {
    fill(f, 500000000, 1500000000, 2100000000);
  } else if (type == RSMI_CLK_TYPE_MEM) {
    fill(f, 96000000, 456000000, 1249000000);
  } else {
    return kNotSupported;
  }
  std::memcpy(frequencies, &f, sizeof f);
  return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_dev_busy_percent_get(std::uint32_t device, std::uint32_t* percent) {
  if (!valid(device)) return kInvalidArgs;
  *percent = 37;
  return RSMI_STATUS_SUCCESS;
}

rsmi_status_t rsmi_dev_pci_bandwidth_get(std::uint32_t device, void* bandwidth) {
  if (!valid(device)) return kInvalidArgs;
  PcieBandwidth b{};
  fill(b.transfer_rate, 2500000000, 8000000000, 16000000000);  // gen 1, 3, 4
  b.lanes[0] = b.lanes[1] = b.lanes[2] = 16;
  std::memcpy(bandwidth, &b, sizeof b);
  return RSMI_STATUS_SUCCESS;
}
