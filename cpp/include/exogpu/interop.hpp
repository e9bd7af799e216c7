// What a foreign framework needs to use exogpu memory in place (DLPack,
// __cuda_array_interface__) and to page-lock its own host memory. Backends
// whose allocations or devices can offer these implement the interfaces
// below next to Allocation / Device; callers discover them by dynamic_cast,
// so the core interface stays backend-neutral.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace exogpu {

// DLPack's device types (dlpack.h, DLDeviceType) for the memories exogpu exports.
enum class DLPackDeviceType : std::int32_t { cpu = 1, cuda = 2, cuda_host = 3, rocm = 10 };

struct DeviceAddress {
  DLPackDeviceType device_type = DLPackDeviceType::cpu;
  std::int32_t device_id = 0;  // the ordinal within the vendor runtime
  std::uint64_t address = 0;   // a pointer in that runtime's address space
};

// An Allocation in memory a vendor runtime addresses directly.
class DeviceAddressable {
 public:
  DeviceAddressable() = default;
  DeviceAddressable(const DeviceAddressable&) = delete;
  DeviceAddressable& operator=(const DeviceAddressable&) = delete;
  virtual ~DeviceAddressable() = default;
  [[nodiscard]] virtual DeviceAddress device_address() const noexcept = 0;
};

// Existing host memory page-locked for one runtime; unlocked on destruction.
// The memory must outlive the registration.
class HostRegistration {
 public:
  HostRegistration() = default;
  HostRegistration(const HostRegistration&) = delete;
  HostRegistration& operator=(const HostRegistration&) = delete;
  virtual ~HostRegistration() = default;
  [[nodiscard]] virtual void* data() const noexcept = 0;
  [[nodiscard]] virtual std::size_t size() const noexcept = 0;
};

// A Device that can page-lock existing host memory (cuMemHostRegister,
// hipHostRegister), so transfers from it run at full DMA speed.
class HostMemoryRegistrar {
 public:
  HostMemoryRegistrar() = default;
  HostMemoryRegistrar(const HostMemoryRegistrar&) = delete;
  HostMemoryRegistrar& operator=(const HostMemoryRegistrar&) = delete;
  virtual ~HostMemoryRegistrar() = default;
  // Throws InvalidArgument for a null or empty range, DeviceError when the
  // runtime refuses (already registered, not mappable).
  [[nodiscard]] virtual std::unique_ptr<HostRegistration> register_host(void* data,
                                                                        std::size_t n) = 0;
};

}  // namespace exogpu
