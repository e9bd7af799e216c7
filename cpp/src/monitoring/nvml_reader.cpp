// NVIDIA GPUs through NVML, opened at run time. Units as NVML gives them are
// turned into the units every exogpu reading uses (mW -> W, mJ -> J).
#include <array>
#include <cctype>
#include <cstdint>
#include <mutex>
#include <utility>

#include "core/identity.hpp"
#include "exogpu/monitoring.hpp"
#include "monitoring/nvml_api.hpp"
#include "monitoring/vendor_library.hpp"

namespace exogpu::monitoring {

using namespace exogpu::nvml;

struct NvmlReader::State {
  std::unique_ptr<DynamicLibrary> library;
  std::string reason;
  bool initialised = false;  // nvmlInit_v2 succeeded: nvmlShutdown is owed
  bool available = false;
  std::mutex mutex;

#define EXOGPU_NVML_MEMBER(member, exported, required, ret, params) ret(*member) params = nullptr;
  EXOGPU_NVML_SYMBOLS(EXOGPU_NVML_MEMBER)
#undef EXOGPU_NVML_MEMBER

  [[nodiscard]] std::string describe(nvmlReturn_t result) const {
    const char* text = error_string != nullptr ? error_string(result) : nullptr;
    return text != nullptr ? std::string(text) : "nvmlReturn_t " + std::to_string(result);
  }
};

namespace {

constexpr const char* kSource = "nvml";

// nvmlClocksEventReasons (formerly ClocksThrottleReasons) bits, by name.
constexpr std::array<std::pair<std::uint64_t, const char*>, 9> kThrottleReasons{{
    {0x1, "gpu_idle"},
    {0x2, "applications_clocks_setting"},
    {0x4, "sw_power_cap"},
    {0x8, "hw_slowdown"},
    {0x10, "sync_boost"},
    {0x20, "sw_thermal_slowdown"},
    {0x40, "hw_thermal_slowdown"},
    {0x80, "hw_power_brake_slowdown"},
    {0x100, "display_clock_setting"},
}};

std::string decode_throttle_reasons(std::uint64_t mask) {
  std::string names;
  for (const auto& [bit, name] : kThrottleReasons) {
    if ((mask & bit) != 0) names += (names.empty() ? "" : ",") + std::string(name);
  }
  return names.empty() ? "none" : names;
}

// NVML spells UUIDs "GPU-xxxxxxxx-xxxx-..."; the core spells the same 16
// bytes without the prefix, in lower case.
std::string core_uuid(const std::string& nvml_uuid) {
  std::array<std::uint8_t, 16> bytes{};
  std::size_t digits = 0;
  const std::size_t start = nvml_uuid.rfind("GPU-", 0) == 0 ? 4 : 0;
  for (std::size_t i = start; i < nvml_uuid.size(); ++i) {
    const char c = nvml_uuid[i];
    if (c == '-') continue;
    if (std::isxdigit(static_cast<unsigned char>(c)) == 0 || digits == 32) return {};
    const int value = std::isdigit(static_cast<unsigned char>(c)) != 0
                          ? c - '0'
                          : std::tolower(static_cast<unsigned char>(c)) - 'a' + 10;
    bytes[digits / 2] = static_cast<std::uint8_t>(bytes[digits / 2] << 4 | value);
    ++digits;
  }
  return digits == 32 ? format_uuid(bytes) : std::string{};
}

VendorDeviceReadings read_device(const NvmlReader::State& nvml, nvmlDevice_t device,
                                 unsigned index) {
  VendorDeviceReadings out;
  out.vendor = "NVIDIA";
  out.index = index;
  std::array<char, kNameBufferSize> text{};
  out.name = nvml.device_get_name(device, text.data(), kNameBufferSize) == NVML_SUCCESS
                 ? from_buffer(text.data(), text.size())
                 : "NVIDIA GPU " + std::to_string(index);
  text.fill('\0');
  if (nvml.device_get_uuid(device, text.data(), kUuidBufferSize) == NVML_SUCCESS) {
    if (std::string uuid = core_uuid(from_buffer(text.data(), text.size())); !uuid.empty()) {
      out.uuid = std::move(uuid);
    }
  }
  nvmlPciInfo_t pci{};
  if (nvml.device_get_pci_info != nullptr &&
      nvml.device_get_pci_info(device, &pci) == NVML_SUCCESS) {
    if (std::string id = normalise_pci_bus_id(from_buffer(pci.busId, sizeof pci.busId));
        !id.empty()) {
      out.pci_bus_id = std::move(id);
    }
  }

  auto& r = out.readings;
  // Each optional entry point is called only when the driver has it; a call
  // that fails (not supported on this product) leaves its reading out.
  auto ok = [](auto fn, auto... args) { return fn != nullptr && fn(args...) == NVML_SUCCESS; };
  unsigned value = 0;
  if (ok(nvml.device_get_temperature, device, NVML_TEMPERATURE_GPU, &value)) {
    add_reading(r, "temperature", value, "degC", kSource, "gpu");
  }
  if (ok(nvml.device_get_temperature_threshold, device, NVML_TEMPERATURE_THRESHOLD_SLOWDOWN,
         &value)) {
    add_reading(r, "temperature_slowdown", value, "degC", kSource, "gpu");
  }
  if (ok(nvml.device_get_power_usage, device, &value)) {
    add_reading(r, "power", value / 1000.0, "W", kSource);
  }
  if (ok(nvml.device_get_enforced_power_limit, device, &value)) {
    add_reading(r, "power_limit", value / 1000.0, "W", kSource);
  }
  unsigned long long counter = 0;  // NOLINT(google-runtime-int): the ABI type
  if (ok(nvml.device_get_total_energy_consumption, device, &counter)) {
    add_reading(r, "energy", static_cast<double>(counter) / 1000.0, "J", kSource,
                "since driver load");
  }
  nvmlMemory_t memory{};
  if (ok(nvml.device_get_memory_info, device, &memory)) {
    add_reading(r, "memory_used", static_cast<double>(memory.used), "B", kSource);
    add_reading(r, "memory_total", static_cast<double>(memory.total), "B", kSource);
  }
  if (ok(nvml.device_get_clock_info, device, NVML_CLOCK_SM, &value)) {
    add_reading(r, "clock_sm", value, "MHz", kSource);
  }
  if (ok(nvml.device_get_clock_info, device, NVML_CLOCK_MEM, &value)) {
    add_reading(r, "clock_memory", value, "MHz", kSource);
  }
  nvmlUtilization_t utilization{};
  if (ok(nvml.device_get_utilization_rates, device, &utilization)) {
    add_reading(r, "utilization", utilization.gpu, "%", kSource, "gpu");
    add_reading(r, "utilization", utilization.memory, "%", kSource, "memory");
  }
  // Drivers from 535 on call them clock event reasons; older ones only have
  // the throttle-reasons name for the same bits.
  if (ok(nvml.device_get_clocks_event_reasons, device, &counter) ||
      ok(nvml.device_get_clocks_throttle_reasons, device, &counter)) {
    add_reading(r, "throttle_reasons", static_cast<double>(counter), "flags", kSource,
                std::nullopt, decode_throttle_reasons(counter));
  }
  if (ok(nvml.device_get_pcie_link_generation, device, &value)) {
    add_reading(r, "pcie_link_generation", value, "gen", kSource);
  }
  if (ok(nvml.device_get_pcie_link_width, device, &value)) {
    add_reading(r, "pcie_link_width", value, "lanes", kSource);
  }
  return out;
}

}  // namespace

std::vector<std::string> NvmlReader::library_names() {
#if defined(_WIN32)
  return library_names_from_env("EXOGPU_NVML_LIBRARY", {"nvml.dll"});
#else
  return library_names_from_env("EXOGPU_NVML_LIBRARY", {"libnvidia-ml.so.1"});
#endif
}

NvmlReader::NvmlReader(const std::vector<std::string>& names) : state_(std::make_unique<State>()) {
  State& s = *state_;
  const std::vector<std::string> tried = names.empty() ? library_names() : names;
  s.library = open_or_explain(tried, "install the NVIDIA driver", s.reason);
  if (!s.library) return;
  // NVML starts threads that outlive any handle; unloading it under them
  // would crash at exit.
  s.library->keep_loaded_until_exit();
  const DynamicLibrary& lib = *s.library;
  std::vector<std::string> missing;
#define EXOGPU_NVML_RESOLVE(member, exported, required, ret, params) \
  s.member = reinterpret_cast<ret(*) params>(lib.symbol(#exported));  \
  if (s.member == nullptr && (required)) missing.emplace_back(#exported);
  EXOGPU_NVML_SYMBOLS(EXOGPU_NVML_RESOLVE)
#undef EXOGPU_NVML_RESOLVE
  if (s.init == nullptr) {
    // Not NVML at all, or one from before the _v2 entry points (2012).
    s.reason = lib.name() + " is missing nvmlInit_v2 (driver too old?)";
    return;
  }
  if (!missing.empty()) {
    s.reason = lib.name() + " is missing " + describe_missing_symbols(missing) + " (driver too old?)";
    return;
  }
  if (const nvmlReturn_t result = s.init(); result != NVML_SUCCESS) {
    s.reason = lib.name() + " found, but nvmlInit_v2 failed: " + s.describe(result);
    return;
  }
  s.initialised = true;
  unsigned count = 0;
  if (const nvmlReturn_t result = s.device_get_count(&count); result != NVML_SUCCESS) {
    s.reason = lib.name() + " found, but nvmlDeviceGetCount_v2 failed: " + s.describe(result);
    return;
  }
  if (count == 0) {
    s.reason = lib.name() + " found, but it reports no device";
    return;
  }
  s.available = true;
}

NvmlReader::~NvmlReader() {
  if (state_->initialised) (void)state_->shutdown();
}

bool NvmlReader::available() const noexcept { return state_->available; }

const std::string& NvmlReader::reason() const noexcept { return state_->reason; }

std::vector<VendorDeviceReadings> NvmlReader::read() const {
  std::vector<VendorDeviceReadings> out;
  if (!state_->available) return out;
  State& s = *state_;
  const std::lock_guard lock(s.mutex);
  unsigned count = 0;
  if (s.device_get_count(&count) != NVML_SUCCESS) return out;
  for (unsigned index = 0; index < count; ++index) {
    nvmlDevice_t device = nullptr;
    if (s.device_get_handle_by_index(index, &device) == NVML_SUCCESS) {
      out.push_back(read_device(s, device, index));
    }
  }
  return out;
}

}  // namespace exogpu::monitoring
