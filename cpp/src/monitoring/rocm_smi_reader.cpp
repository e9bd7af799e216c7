// AMD GPUs through rocm-smi, opened at run time. rocm-smi reads the same
// amdgpu sysfs files the Python hwmon reader does, but it also decodes the
// ones that need knowledge of the chip (junction and memory temperature,
// the energy accumulator's resolution, the PCIe link in use).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <mutex>
#include <optional>
#include <tuple>

#include "core/identity.hpp"
#include "exogpu/monitoring.hpp"
#include "monitoring/rocm_smi_api.hpp"
#include "monitoring/vendor_library.hpp"

namespace exogpu::monitoring {

using namespace exogpu::rocm_smi;

struct RocmSmiReader::State {
  std::unique_ptr<DynamicLibrary> library;
  std::string reason;
  bool initialised = false;  // rsmi_init succeeded: rsmi_shut_down is owed
  bool available = false;
  bool frequencies_v6 = false;  // the library fills the ROCm 6 layouts
  std::mutex mutex;

#define EXOGPU_ROCM_SMI_MEMBER(member, exported, required, ret, params) \
  ret(*member) params = nullptr;
  EXOGPU_ROCM_SMI_SYMBOLS(EXOGPU_ROCM_SMI_MEMBER)
#undef EXOGPU_ROCM_SMI_MEMBER

  [[nodiscard]] std::string describe(rsmi_status_t status) const {
    const char* text = nullptr;
    if (status_string != nullptr && status_string(status, &text) == RSMI_STATUS_SUCCESS &&
        text != nullptr) {
      return text;
    }
    return "rsmi_status_t " + std::to_string(status);
  }
};

namespace {

constexpr const char* kSource = "rocm_smi";

// Room for the larger of the two layouts, so that a library that fills the
// other one than expected can never write past the buffer.
struct alignas(8) LayoutBuffer {
  std::array<unsigned char, std::max(sizeof(rsmi_pcie_bandwidth_v5_t),
                                     sizeof(rsmi_pcie_bandwidth_v6_t))>
      bytes{};
};

struct CurrentLevel {
  std::uint64_t value = 0;  // Hz, or T/s for PCIe
  std::uint32_t lanes = 0;  // PCIe only
};

// The level the device runs at now, from either layout; nullopt when the
// library filled in nothing sensible (an index out of range).
template <class Frequencies>
std::optional<CurrentLevel> current_level(const Frequencies& f, std::size_t max,
                                          const std::uint32_t* lanes) {
  if (f.num_supported == 0 || f.num_supported > max || f.current >= f.num_supported) {
    return std::nullopt;
  }
  return CurrentLevel{f.frequency[f.current], lanes != nullptr ? lanes[f.current] : 0};
}

std::optional<CurrentLevel> decode_clock(const LayoutBuffer& raw, bool v6) {
  if (v6) {
    rsmi_frequencies_v6_t f;
    std::memcpy(&f, raw.bytes.data(), sizeof f);
    return current_level(f, kMaxFrequenciesV6, nullptr);
  }
  rsmi_frequencies_v5_t f;
  std::memcpy(&f, raw.bytes.data(), sizeof f);
  return current_level(f, kMaxFrequenciesV5, nullptr);
}

std::optional<CurrentLevel> decode_pcie(const LayoutBuffer& raw, bool v6) {
  if (v6) {
    rsmi_pcie_bandwidth_v6_t b;
    std::memcpy(&b, raw.bytes.data(), sizeof b);
    return current_level(b.transfer_rate, kMaxFrequenciesV6, b.lanes);
  }
  rsmi_pcie_bandwidth_v5_t b;
  std::memcpy(&b, raw.bytes.data(), sizeof b);
  return current_level(b.transfer_rate, kMaxFrequenciesV5, b.lanes);
}

// The PCIe generation whose per-lane rate this is (2.5 GT/s is gen 1 ...
// 64 GT/s gen 6); 0 when it matches none.
unsigned pcie_generation(std::uint64_t transfers_per_second) {
  constexpr std::array<double, 6> kRates{2.5e9, 5e9, 8e9, 16e9, 32e9, 64e9};
  for (std::size_t i = 0; i < kRates.size(); ++i) {
    if (std::fabs(static_cast<double>(transfers_per_second) - kRates[i]) < kRates[i] * 0.05) {
      return static_cast<unsigned>(i + 1);
    }
  }
  return 0;
}

// rsmi_dev_pci_id_get's BDFID: domain in bits 63..32, bus 15..8, device
// 7..3, function 2..0 (bits 31..16 are reserved, or a partition number).
std::string decode_bdfid(std::uint64_t bdfid) {
  return format_pci_bus_id(static_cast<std::uint32_t>(bdfid >> 32),
                           static_cast<std::uint32_t>((bdfid >> 8) & 0xff),
                           static_cast<std::uint32_t>((bdfid >> 3) & 0x1f),
                           static_cast<std::uint32_t>(bdfid & 0x7));
}

VendorDeviceReadings read_device(const RocmSmiReader::State& smi, std::uint32_t index) {
  VendorDeviceReadings out;
  out.vendor = "AMD";
  out.index = index;
  auto ok = [](auto fn, auto... args) { return fn != nullptr && fn(args...) == RSMI_STATUS_SUCCESS; };

  std::array<char, 256> name{};
  out.name = ok(smi.dev_name_get, index, name.data(), name.size()) && name[0] != '\0'
                 ? from_buffer(name.data(), name.size())
                 : "AMD GPU " + std::to_string(index);
  std::uint64_t value = 0;
  if (ok(smi.dev_pci_id_get, index, &value)) out.pci_bus_id = decode_bdfid(value);

  auto& r = out.readings;
  constexpr std::array<std::pair<std::uint32_t, const char*>, 3> kSensors{{
      {RSMI_TEMP_TYPE_EDGE, "edge"},
      {RSMI_TEMP_TYPE_JUNCTION, "junction"},
      {RSMI_TEMP_TYPE_MEMORY, "memory"},
  }};
  for (const auto& [sensor, label] : kSensors) {
    std::int64_t millidegrees = 0;
    if (ok(smi.dev_temp_metric_get, index, sensor, RSMI_TEMP_CURRENT, &millidegrees)) {
      add_reading(r, "temperature", static_cast<double>(millidegrees) / 1000.0, "degC", kSource,
                  label);
    }
  }
  for (const auto& [sensor, label] : kSensors) {
    std::int64_t millidegrees = 0;
    if (ok(smi.dev_temp_metric_get, index, sensor, RSMI_TEMP_CRITICAL, &millidegrees) &&
        millidegrees > 0) {
      add_reading(r, "temperature_critical", static_cast<double>(millidegrees) / 1000.0, "degC",
                  kSource, label);
    }
  }
  // Older GPUs report a short-time average, newer ones (and rocm-smi 6 on
  // them) only the current socket power.
  if (ok(smi.dev_power_ave_get, index, 0U, &value)) {
    add_reading(r, "power", static_cast<double>(value) / 1e6, "W", kSource, "average");
  } else if (ok(smi.dev_current_socket_power_get, index, &value)) {
    add_reading(r, "power", static_cast<double>(value) / 1e6, "W", kSource, "current");
  }
  if (ok(smi.dev_power_cap_get, index, 0U, &value) && value > 0) {
    add_reading(r, "power_limit", static_cast<double>(value) / 1e6, "W", kSource);
  }
  float resolution_uj = 0.0F;
  std::uint64_t timestamp_ns = 0;
  if (ok(smi.dev_energy_count_get, index, &value, &resolution_uj, &timestamp_ns) &&
      resolution_uj > 0.0F) {
    add_reading(r, "energy", static_cast<double>(value) * resolution_uj / 1e6, "J", kSource,
                "counter");
  }
  if (ok(smi.dev_memory_usage_get, index, RSMI_MEM_TYPE_VRAM, &value)) {
    add_reading(r, "memory_used", static_cast<double>(value), "B", kSource);
  }
  if (ok(smi.dev_memory_total_get, index, RSMI_MEM_TYPE_VRAM, &value)) {
    add_reading(r, "memory_total", static_cast<double>(value), "B", kSource);
  }
  constexpr std::array<std::tuple<int, const char*, const char*>, 2> kClocks{{
      {RSMI_CLK_TYPE_SYS, "clock_graphics", "sclk"},
      {RSMI_CLK_TYPE_MEM, "clock_memory", "mclk"},
  }};
  for (const auto& [type, reading, label] : kClocks) {
    LayoutBuffer raw;
    if (!ok(smi.dev_gpu_clk_freq_get, index, type, static_cast<void*>(raw.bytes.data()))) continue;
    if (const auto level = decode_clock(raw, smi.frequencies_v6)) {
      add_reading(r, reading, static_cast<double>(level->value) / 1e6, "MHz", kSource, label);
    }
  }
  std::uint32_t busy = 0;
  if (ok(smi.dev_busy_percent_get, index, &busy)) {
    add_reading(r, "utilization", busy, "%", kSource, "gpu");
  }
  LayoutBuffer raw;
  if (ok(smi.dev_pci_bandwidth_get, index, static_cast<void*>(raw.bytes.data()))) {
    if (const auto level = decode_pcie(raw, smi.frequencies_v6)) {
      if (const unsigned generation = pcie_generation(level->value); generation != 0) {
        add_reading(r, "pcie_link_generation", generation, "gen", kSource);
      }
      if (level->lanes != 0) add_reading(r, "pcie_link_width", level->lanes, "lanes", kSource);
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> RocmSmiReader::library_names() {
  // Debian and Ubuntu ship librocm_smi64.so.1; AMD's ROCm packages put an
  // unversioned librocm_smi64.so on the library path.
  return library_names_from_env("EXOGPU_ROCM_SMI_LIBRARY",
                              {"librocm_smi64.so.1", "librocm_smi64.so"});
}

RocmSmiReader::RocmSmiReader(const std::vector<std::string>& names)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  const std::vector<std::string> tried = names.empty() ? library_names() : names;
  s.library = open_or_explain(tried, "install ROCm's rocm-smi library", s.reason);
  if (!s.library) return;
  // rocm-smi registers exit-time cleanup that must find it still mapped.
  s.library->keep_loaded_until_exit();
  const DynamicLibrary& lib = *s.library;
  std::vector<std::string> missing;
#define EXOGPU_ROCM_SMI_RESOLVE(member, exported, required, ret, params) \
  s.member = reinterpret_cast<ret(*) params>(lib.symbol(#exported));     \
  if (s.member == nullptr && (required)) missing.emplace_back(#exported);
  EXOGPU_ROCM_SMI_SYMBOLS(EXOGPU_ROCM_SMI_RESOLVE)
#undef EXOGPU_ROCM_SMI_RESOLVE
  if (s.init == nullptr) {
    s.reason = lib.name() + " is missing rsmi_init (not a rocm-smi library?)";
    return;
  }
  if (!missing.empty()) {
    s.reason = lib.name() + " is missing " + describe_missing_symbols(missing) + " (rocm-smi too old?)";
    return;
  }
  if (const rsmi_status_t status = s.init(0); status != RSMI_STATUS_SUCCESS) {
    s.reason = lib.name() + " found, but rsmi_init failed: " + s.describe(status);
    return;
  }
  s.initialised = true;
  rsmi_version_t version{};
  s.frequencies_v6 = s.version_get != nullptr && s.version_get(&version) == RSMI_STATUS_SUCCESS &&
                     version.major >= 6;
  std::uint32_t count = 0;
  if (const rsmi_status_t status = s.num_monitor_devices(&count); status != RSMI_STATUS_SUCCESS) {
    s.reason = lib.name() + " found, but rsmi_num_monitor_devices failed: " + s.describe(status);
    return;
  }
  if (count == 0) {
    s.reason = lib.name() + " found, but it reports no device";
    return;
  }
  s.available = true;
}

RocmSmiReader::~RocmSmiReader() {
  if (state_->initialised) (void)state_->shut_down();
}

bool RocmSmiReader::available() const noexcept { return state_->available; }

const std::string& RocmSmiReader::reason() const noexcept { return state_->reason; }

std::vector<VendorDeviceReadings> RocmSmiReader::read() const {
  std::vector<VendorDeviceReadings> out;
  if (!state_->available) return out;
  State& s = *state_;
  const std::lock_guard lock(s.mutex);
  std::uint32_t count = 0;
  if (s.num_monitor_devices(&count) != RSMI_STATUS_SUCCESS) return out;
  for (std::uint32_t index = 0; index < count; ++index) out.push_back(read_device(s, index));
  return out;
}

}  // namespace exogpu::monitoring
