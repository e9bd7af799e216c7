// Live readings of GPUs through their vendors' management libraries (NVML,
// rocm-smi), each opened at run time. A reader that cannot run here says why
// in words a user can act on; a figure a device cannot give is left out,
// never reported as zero.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace exogpu::monitoring {

// One measured figure: `value` in `unit`, read from `source` ("nvml",
// "rocm_smi"). `sensor` says which of several ("edge", "gpu"); `detail`
// decodes the value (throttle reasons by name).
struct VendorReading {
  std::string name;
  double value = 0.0;
  std::string unit;
  std::string source;
  std::optional<std::string> sensor;
  std::optional<std::string> detail;
};

// Everything one reader saw of one device at one moment. Identity is spelled
// as the core spells it ("0000:65:00.0", lower-case UUID without prefix).
struct VendorDeviceReadings {
  std::string vendor;
  std::string name;
  unsigned index = 0;  // the device's index in the vendor library
  std::optional<std::string> pci_bus_id;
  std::optional<std::string> uuid;
  std::vector<VendorReading> readings;
};

// NVIDIA GPUs through NVML (libnvidia-ml.so.1, nvml.dll).
class NvmlReader {
 public:
  // EXOGPU_NVML_LIBRARY when set, else the platform's NVML library.
  [[nodiscard]] static std::vector<std::string> library_names();

  // Opens the first of `names` that loads (library_names() when empty) and
  // initialises NVML. Never throws for an absent or broken library, or one
  // that lists no device: available() is false and reason() says why.
  explicit NvmlReader(const std::vector<std::string>& names = {});
  NvmlReader(const NvmlReader&) = delete;
  NvmlReader& operator=(const NvmlReader&) = delete;
  ~NvmlReader();

  [[nodiscard]] bool available() const noexcept;
  [[nodiscard]] const std::string& reason() const noexcept;
  // One entry per device NVML lists now; empty when unavailable. Safe to
  // call from several threads (reads are serialised).
  [[nodiscard]] std::vector<VendorDeviceReadings> read() const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

// AMD GPUs through rocm-smi (librocm_smi64.so.1, librocm_smi64.so).
class RocmSmiReader {
 public:
  // EXOGPU_ROCM_SMI_LIBRARY when set, else the names the library ships under.
  [[nodiscard]] static std::vector<std::string> library_names();

  // As NvmlReader's: rsmi_init(0) on the first of `names` that loads.
  explicit RocmSmiReader(const std::vector<std::string>& names = {});
  RocmSmiReader(const RocmSmiReader&) = delete;
  RocmSmiReader& operator=(const RocmSmiReader&) = delete;
  ~RocmSmiReader();

  [[nodiscard]] bool available() const noexcept;
  [[nodiscard]] const std::string& reason() const noexcept;
  [[nodiscard]] std::vector<VendorDeviceReadings> read() const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace exogpu::monitoring
