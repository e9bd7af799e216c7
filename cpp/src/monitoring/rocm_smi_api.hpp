// The slice of rocm-smi (librocm_smi64) exogpu reads, declared here so that
// the build needs no ROCm header: status codes, the few enum values, the
// structures, and one X-macro table of entry points. Values and signatures
// are those of rocm_smi.h, unchanged from ROCm 5 to ROCm 6 except for the
// frequency structures, whose two layouts are both declared below.
#pragma once

#include <cstddef>
#include <cstdint>

namespace exogpu::rocm_smi {

using rsmi_status_t = std::uint32_t;  // a C enum holding 0xFFFFFFFF: unsigned int

inline constexpr rsmi_status_t RSMI_STATUS_SUCCESS = 0;

// rsmi_temperature_type_t
inline constexpr std::uint32_t RSMI_TEMP_TYPE_EDGE = 0;
inline constexpr std::uint32_t RSMI_TEMP_TYPE_JUNCTION = 1;
inline constexpr std::uint32_t RSMI_TEMP_TYPE_MEMORY = 2;
// rsmi_temperature_metric_t
inline constexpr int RSMI_TEMP_CURRENT = 0;
inline constexpr int RSMI_TEMP_CRITICAL = 5;
// rsmi_clk_type_t
inline constexpr int RSMI_CLK_TYPE_SYS = 0;
inline constexpr int RSMI_CLK_TYPE_MEM = 4;
// rsmi_memory_type_t
inline constexpr int RSMI_MEM_TYPE_VRAM = 0;

struct rsmi_version_t {
  std::uint32_t major;
  std::uint32_t minor;
  std::uint32_t patch;
  const char* build;
};

// rsmi_frequencies_t and rsmi_pcie_bandwidth_t up to rocm-smi 5.x.
inline constexpr std::size_t kMaxFrequenciesV5 = 32;
struct rsmi_frequencies_v5_t {
  std::uint32_t num_supported;
  std::uint32_t current;
  std::uint64_t frequency[kMaxFrequenciesV5];  // Hz (T/s for PCIe)
};
struct rsmi_pcie_bandwidth_v5_t {
  rsmi_frequencies_v5_t transfer_rate;
  std::uint32_t lanes[kMaxFrequenciesV5];
};

// The same structures from rocm-smi 6 (ROCm 6.0) on: a deep-sleep flag
// first and one more frequency slot.
inline constexpr std::size_t kMaxFrequenciesV6 = 33;
struct rsmi_frequencies_v6_t {
  bool has_deep_sleep;
  std::uint32_t num_supported;
  std::uint32_t current;
  std::uint64_t frequency[kMaxFrequenciesV6];
};
struct rsmi_pcie_bandwidth_v6_t {
  rsmi_frequencies_v6_t transfer_rate;
  std::uint32_t lanes[kMaxFrequenciesV6];
};

static_assert(sizeof(rsmi_frequencies_v5_t) == 264 && sizeof(rsmi_frequencies_v6_t) == 280);

inline constexpr bool kRequired = true;
inline constexpr bool kOptional = false;

// X(member, exported symbol, required, return, params). The frequency and
// bandwidth structures are passed as void*: which layout the library fills
// depends on its version (rocm_smi_reader.cpp).
#define EXOGPU_ROCM_SMI_SYMBOLS(X)                                                             \
  X(init, rsmi_init, kRequired, rsmi_status_t, (std::uint64_t flags))                          \
  X(shut_down, rsmi_shut_down, kRequired, rsmi_status_t, (void))                               \
  X(status_string, rsmi_status_string, kRequired, rsmi_status_t,                               \
    (rsmi_status_t status, const char** text))                                                 \
  X(num_monitor_devices, rsmi_num_monitor_devices, kRequired, rsmi_status_t,                   \
    (std::uint32_t * count))                                                                   \
  X(version_get, rsmi_version_get, kOptional, rsmi_status_t, (rsmi_version_t * version))       \
  X(dev_name_get, rsmi_dev_name_get, kOptional, rsmi_status_t,                                 \
    (std::uint32_t device, char* name, std::size_t length))                                    \
  X(dev_pci_id_get, rsmi_dev_pci_id_get, kOptional, rsmi_status_t,                             \
    (std::uint32_t device, std::uint64_t * bdfid))                                             \
  X(dev_temp_metric_get, rsmi_dev_temp_metric_get, kOptional, rsmi_status_t,                   \
    (std::uint32_t device, std::uint32_t sensor, int metric, std::int64_t* millidegrees))      \
  X(dev_power_ave_get, rsmi_dev_power_ave_get, kOptional, rsmi_status_t,                       \
    (std::uint32_t device, std::uint32_t sensor, std::uint64_t * microwatts))                  \
  X(dev_current_socket_power_get, rsmi_dev_current_socket_power_get, kOptional, rsmi_status_t, \
    (std::uint32_t device, std::uint64_t * microwatts))                                        \
  X(dev_power_cap_get, rsmi_dev_power_cap_get, kOptional, rsmi_status_t,                       \
    (std::uint32_t device, std::uint32_t sensor, std::uint64_t * microwatts))                  \
  X(dev_energy_count_get, rsmi_dev_energy_count_get, kOptional, rsmi_status_t,                 \
    (std::uint32_t device, std::uint64_t * counter, float* resolution_uj,                      \
     std::uint64_t* timestamp_ns))                                                             \
  X(dev_memory_usage_get, rsmi_dev_memory_usage_get, kOptional, rsmi_status_t,                 \
    (std::uint32_t device, int type, std::uint64_t * bytes))                                   \
  X(dev_memory_total_get, rsmi_dev_memory_total_get, kOptional, rsmi_status_t,                 \
    (std::uint32_t device, int type, std::uint64_t * bytes))                                   \
  X(dev_gpu_clk_freq_get, rsmi_dev_gpu_clk_freq_get, kOptional, rsmi_status_t,                 \
    (std::uint32_t device, int type, void* frequencies))                                       \
  X(dev_busy_percent_get, rsmi_dev_busy_percent_get, kOptional, rsmi_status_t,                 \
    (std::uint32_t device, std::uint32_t * percent))                                           \
  X(dev_pci_bandwidth_get, rsmi_dev_pci_bandwidth_get, kOptional, rsmi_status_t,               \
    (std::uint32_t device, void* bandwidth))

}  // namespace exogpu::rocm_smi
