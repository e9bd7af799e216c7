// The NVML and rocm-smi readers against a missing library, a library missing
// an entry point, real stand-in libraries reporting known values (or no
// device), and the real rocm-smi library where it is installed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <regex>
#include <string>

#include "core/dynamic_library.hpp"
#include "exogpu/monitoring.hpp"

namespace {

using exogpu::monitoring::NvmlReader;
using exogpu::monitoring::RocmSmiReader;
using exogpu::monitoring::VendorDeviceReadings;
using exogpu::monitoring::VendorReading;

const VendorReading* find(const VendorDeviceReadings& device, const std::string& name,
                          const std::optional<std::string>& sensor = std::nullopt) {
  for (const VendorReading& r : device.readings) {
    if (r.name == name && (!sensor || r.sensor == sensor)) return &r;
  }
  return nullptr;
}

// The reading exists, has this value and unit, and comes from `source`.
void expect_reading(const VendorDeviceReadings& device, const std::string& name,
                    const std::optional<std::string>& sensor, double value,
                    const std::string& unit, const std::string& source) {
  const VendorReading* r = find(device, name, sensor);
  ASSERT_NE(r, nullptr) << name << " " << sensor.value_or("");
  EXPECT_DOUBLE_EQ(r->value, value) << name;
  EXPECT_EQ(r->unit, unit) << name;
  EXPECT_EQ(r->source, source) << name;
}

// ---------------------------------------------------------------------- NVML

TEST(NvmlReader, MissingLibrarySaysWhatToInstall) {
  NvmlReader reader({"/nonexistent/libnvidia-ml.so.1"});
  EXPECT_FALSE(reader.available());
  EXPECT_EQ(reader.reason(), "/nonexistent/libnvidia-ml.so.1 not found (install the NVIDIA driver)");
  EXPECT_TRUE(reader.read().empty());
}

TEST(NvmlReader, LibraryWithoutNvmlIsMissingInit) {
  NvmlReader reader({"libm.so.6"});  // a real library with none of NVML in it
  EXPECT_FALSE(reader.available());
  EXPECT_EQ(reader.reason(), "libm.so.6 is missing nvmlInit_v2 (driver too old?)");
  EXPECT_TRUE(reader.read().empty());
}

TEST(NvmlReader, FailedInitIsDescribedByNvml) {
  NvmlReader reader({EXOGPU_FAKE_LIBNVIDIA_ML_INIT_FAILS});
  EXPECT_FALSE(reader.available());
  EXPECT_EQ(reader.reason(), std::string(EXOGPU_FAKE_LIBNVIDIA_ML_INIT_FAILS) +
                                 " found, but nvmlInit_v2 failed: Driver Not Loaded");
}

TEST(NvmlReader, RuntimeWithNoDeviceSaysSo) {
  NvmlReader reader({EXOGPU_FAKE_LIBNVIDIA_ML_NO_DEVICE});
  EXPECT_FALSE(reader.available());
  EXPECT_EQ(reader.reason(),
            std::string(EXOGPU_FAKE_LIBNVIDIA_ML_NO_DEVICE) + " found, but it reports no device");
  EXPECT_TRUE(reader.read().empty());
}

TEST(NvmlReader, LibraryNameComesFromTheEnvironment) {
  ASSERT_EQ(setenv("EXOGPU_NVML_LIBRARY", EXOGPU_FAKE_LIBNVIDIA_ML, 1), 0);
  const NvmlReader reader;
  unsetenv("EXOGPU_NVML_LIBRARY");
  EXPECT_TRUE(reader.available()) << reader.reason();
  EXPECT_EQ(NvmlReader::library_names(), std::vector<std::string>{"libnvidia-ml.so.1"});
}

TEST(NvmlReader, ReadsOneDeviceInExogpuUnits) {
  const NvmlReader reader({EXOGPU_FAKE_LIBNVIDIA_ML});
  ASSERT_TRUE(reader.available()) << reader.reason();
  EXPECT_EQ(reader.reason(), "");
  const auto devices = reader.read();
  ASSERT_EQ(devices.size(), 1U);
  const VendorDeviceReadings& gpu = devices.front();
  EXPECT_EQ(gpu.vendor, "NVIDIA");
  EXPECT_EQ(gpu.name, "NVIDIA GeForce RTX 4090 (stand-in)");
  EXPECT_EQ(gpu.index, 0U);
  // Spelled as the core spells them, so readings link to exogpu devices.
  EXPECT_EQ(gpu.pci_bus_id, "0000:65:00.0");
  EXPECT_EQ(gpu.uuid, "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901");

  expect_reading(gpu, "temperature", "gpu", 61, "degC", "nvml");
  expect_reading(gpu, "temperature_slowdown", "gpu", 87, "degC", "nvml");
  expect_reading(gpu, "power", std::nullopt, 123.456, "W", "nvml");  // from 123456 mW
  expect_reading(gpu, "power_limit", std::nullopt, 450, "W", "nvml");
  expect_reading(gpu, "memory_used", std::nullopt, 3.0 * (1 << 30), "B", "nvml");
  expect_reading(gpu, "memory_total", std::nullopt, 24.0 * (1 << 30), "B", "nvml");
  expect_reading(gpu, "clock_sm", std::nullopt, 2520, "MHz", "nvml");
  expect_reading(gpu, "clock_memory", std::nullopt, 10501, "MHz", "nvml");
  expect_reading(gpu, "utilization", "gpu", 87, "%", "nvml");
  expect_reading(gpu, "utilization", "memory", 41, "%", "nvml");
  expect_reading(gpu, "pcie_link_generation", std::nullopt, 4, "gen", "nvml");
  expect_reading(gpu, "pcie_link_width", std::nullopt, 16, "lanes", "nvml");
  // Only the older ThrottleReasons name is exported: the same bits, decoded.
  expect_reading(gpu, "throttle_reasons", std::nullopt, 0x44, "flags", "nvml");
  EXPECT_EQ(find(gpu, "throttle_reasons")->detail, "sw_power_cap,hw_thermal_slowdown");
  // The library has no energy entry point: the reading is absent, not zero.
  EXPECT_EQ(find(gpu, "energy"), nullptr);
  for (const VendorReading& r : gpu.readings) {
    EXPECT_FALSE(r.unit.empty()) << r.name;
    EXPECT_EQ(r.source, "nvml") << r.name;
  }
}

// ------------------------------------------------------------------ rocm-smi

TEST(RocmSmiReader, MissingLibrarySaysWhatToInstall) {
  RocmSmiReader reader({"/nonexistent/librocm_smi64.so.1"});
  EXPECT_FALSE(reader.available());
  EXPECT_EQ(reader.reason(),
            "/nonexistent/librocm_smi64.so.1 not found (install ROCm's rocm-smi library)");
  EXPECT_TRUE(reader.read().empty());
}

TEST(RocmSmiReader, EveryNameTriedIsNamed) {
  RocmSmiReader reader({"/nonexistent/a.so", "/nonexistent/b.so"});
  EXPECT_EQ(reader.reason(),
            "/nonexistent/a.so or /nonexistent/b.so not found (install ROCm's rocm-smi library)");
}

TEST(RocmSmiReader, LibraryWithoutRocmSmiIsMissingInit) {
  RocmSmiReader reader({"libm.so.6"});
  EXPECT_FALSE(reader.available());
  EXPECT_EQ(reader.reason(), "libm.so.6 is missing rsmi_init (not a rocm-smi library?)");
}

TEST(RocmSmiReader, RuntimeWithNoDeviceSaysSo) {
  RocmSmiReader reader({EXOGPU_FAKE_LIBROCM_SMI_NO_DEVICE});
  EXPECT_FALSE(reader.available());
  EXPECT_EQ(reader.reason(),
            std::string(EXOGPU_FAKE_LIBROCM_SMI_NO_DEVICE) + " found, but it reports no device");
  EXPECT_TRUE(reader.read().empty());
}

void expect_stand_in_device(const RocmSmiReader& reader) {
  ASSERT_TRUE(reader.available()) << reader.reason();
  const auto devices = reader.read();
  ASSERT_EQ(devices.size(), 1U);
  const VendorDeviceReadings& gpu = devices.front();
  EXPECT_EQ(gpu.vendor, "AMD");
  EXPECT_EQ(gpu.name, "Radeon RX 7900 XTX (stand-in)");
  // The 64-bit BDFID decoded; the partition bit is no part of the address.
  EXPECT_EQ(gpu.pci_bus_id, "0000:03:00.0");
  EXPECT_EQ(gpu.uuid, std::nullopt);
  expect_reading(gpu, "temperature", "edge", 54.0, "degC", "rocm_smi");  // from millidegrees
  expect_reading(gpu, "temperature", "junction", 61.5, "degC", "rocm_smi");
  expect_reading(gpu, "temperature", "memory", 70.0, "degC", "rocm_smi");
  expect_reading(gpu, "temperature_critical", "junction", 110.0, "degC", "rocm_smi");
  EXPECT_EQ(find(gpu, "temperature_critical", "edge"), nullptr);  // not supported: absent
  expect_reading(gpu, "power", "average", 123.456789, "W", "rocm_smi");  // from microwatts
  expect_reading(gpu, "power_limit", std::nullopt, 300.0, "W", "rocm_smi");
  expect_reading(gpu, "energy", "counter", 30.5, "J", "rocm_smi");  // 2e6 x 15.25 uJ
  expect_reading(gpu, "memory_used", std::nullopt, 3.0 * (1 << 30), "B", "rocm_smi");
  expect_reading(gpu, "memory_total", std::nullopt, 24.0 * (1 << 30), "B", "rocm_smi");
  expect_reading(gpu, "clock_graphics", "sclk", 2100.0, "MHz", "rocm_smi");  // from Hz
  expect_reading(gpu, "clock_memory", "mclk", 1249.0, "MHz", "rocm_smi");
  expect_reading(gpu, "utilization", "gpu", 37.0, "%", "rocm_smi");
  expect_reading(gpu, "pcie_link_generation", std::nullopt, 4.0, "gen", "rocm_smi");
  expect_reading(gpu, "pcie_link_width", std::nullopt, 16.0, "lanes", "rocm_smi");
}

TEST(RocmSmiReader, ReadsOneDeviceInExogpuUnits) {
  expect_stand_in_device(RocmSmiReader({EXOGPU_FAKE_LIBROCM_SMI}));
}

TEST(RocmSmiReader, ReadsTheRocm6LayoutOfClocksAndLinks) {
  expect_stand_in_device(RocmSmiReader({EXOGPU_FAKE_LIBROCM_SMI_V6}));
}

TEST(RocmSmiReader, LibraryNameComesFromTheEnvironment) {
  ASSERT_EQ(setenv("EXOGPU_ROCM_SMI_LIBRARY", EXOGPU_FAKE_LIBROCM_SMI, 1), 0);
  EXPECT_EQ(RocmSmiReader::library_names(), std::vector<std::string>{EXOGPU_FAKE_LIBROCM_SMI});
  unsetenv("EXOGPU_ROCM_SMI_LIBRARY");
  EXPECT_EQ(RocmSmiReader::library_names(),
            (std::vector<std::string>{"librocm_smi64.so.1", "librocm_smi64.so"}));
}

TEST(RocmSmiReader, RealLibraryReportsWhetherItHasADevice) {
  std::string error;
  const std::vector<std::string> names = {"librocm_smi64.so.1"};
  if (!exogpu::DynamicLibrary::open(names, error)) {
    GTEST_SKIP() << "no rocm-smi library installed here (tools/install-deps.sh installs one): "
                 << error;
  }
  const RocmSmiReader reader(names);
  if (reader.available()) {
    // An AMD GPU is here: every device has an address and some reading.
    for (const VendorDeviceReadings& gpu : reader.read()) {
      EXPECT_TRUE(gpu.pci_bus_id.has_value()) << gpu.name;
      EXPECT_FALSE(gpu.readings.empty()) << gpu.name;
    }
    return;
  }
  // Without /sys/class/drm rocm-smi cannot start; with it but no AMD GPU it
  // starts and lists nothing. Those are the only honest answers here.
  EXPECT_TRUE(std::regex_match(
      reader.reason(),
      std::regex(R"(librocm_smi64\.so\.1 found, but (rsmi_init failed: .+|it reports no device))")))
      << reader.reason();
  EXPECT_TRUE(reader.read().empty());
}

}  // namespace
