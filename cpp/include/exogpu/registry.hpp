// Discovers the compiled-in backends, opens their runtimes, and merges one
// physical device seen through several backends into one entry with aliases.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "exogpu/device.hpp"

namespace exogpu {

struct BackendStatus {
  std::string name;
  bool available = false;
  std::string reason;  // why not available, in words a user can act on
  int device_count = 0;
  std::string runtime_version;
  std::string note;  // what to know about the backend even when it runs; usually empty
};

// Implemented by each backend; see cpp/src/backends/<name>/.
class Backend {
 public:
  Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  virtual ~Backend() = default;
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
  // Opens the runtime and enumerates devices. Never throws: failure is a
  // status with a reason.
  [[nodiscard]] virtual BackendStatus open() = 0;
  // Devices found by open(), with ids "<name>:<index>".
  [[nodiscard]] virtual std::vector<std::shared_ptr<Device>> devices() = 0;
};

// Which backends to open: EXOGPU_BACKENDS="cpu,vulkan" keeps only those;
// "-cuda" drops one. Unknown names are an InvalidArgument.
struct BackendSelection {
  std::vector<std::string> include;  // empty: all
  std::vector<std::string> exclude;
  static BackendSelection parse(std::string_view spec);
  static BackendSelection from_environment();
  [[nodiscard]] bool selects(std::string_view backend) const;
};

// Groups views of the same physical device: the same UUID, the same PCI bus
// id, or the same adapter LUID (unless views of that LUID name different
// vendors), and a CPU implementation of a GPU API with the host CPU. Each group
// lists indices into `devices`, the preferred id first (native APIs, then the
// CPU, then Vulkan); groups come in order of their first device.
[[nodiscard]] std::vector<std::vector<std::size_t>> group_physical_devices(
    const std::vector<DeviceInfo>& devices);

// The name of the memory pool of the host's RAM (DeviceInfo::memory_pool).
inline constexpr const char* kHostMemoryPool = "host";

// Puts every device whose memory is the host's (unified_memory) in the host
// pool, of `host_bytes` capacity, so that a placement counts that RAM once.
void assign_memory_pools(std::vector<DeviceInfo>& devices, std::uint64_t host_bytes);

// The host's physical memory in bytes (0 when the OS does not say).
[[nodiscard]] std::uint64_t host_physical_memory();

class Registry {
 public:
  explicit Registry(const BackendSelection& selection);
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  ~Registry();

  // The process-wide registry, built on first use from EXOGPU_BACKENDS.
  [[nodiscard]] static Registry& instance();

  [[nodiscard]] const std::vector<BackendStatus>& backends() const noexcept { return status_; }
  // One entry per physical device, under its preferred id, aliases filled in.
  [[nodiscard]] const std::vector<std::shared_ptr<Device>>& devices() const noexcept {
    return physical_;
  }
  // Every device of every backend, aliases included.
  [[nodiscard]] const std::vector<std::shared_ptr<Device>>& all_devices() const noexcept {
    return all_;
  }
  // A device by any of its ids; an alias id gives the device of that backend.
  // Throws InvalidArgument naming the id and the ids there are.
  [[nodiscard]] std::shared_ptr<Device> device(std::string_view id) const;

  // Names of every backend this build knows, compiled in or not.
  [[nodiscard]] static const std::vector<std::string>& known_backends();

 private:
  void merge_aliases();
  std::vector<std::unique_ptr<Backend>> backends_;
  std::vector<BackendStatus> status_;
  std::vector<std::shared_ptr<Device>> all_;
  std::vector<std::shared_ptr<Device>> physical_;
};

}  // namespace exogpu
