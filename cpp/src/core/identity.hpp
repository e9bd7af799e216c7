// One spelling of device identity for every backend, so that the registry can
// recognise one physical device seen through several APIs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace exogpu {

// 16 bytes as lower-case "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx".
[[nodiscard]] std::string format_uuid(std::span<const std::uint8_t, 16> bytes);

// An adapter LUID from the 8 bytes a driver reports it in (the LUID struct's
// memory: LowPart, then HighPart, little-endian), as "hhhhhhhh-llllllll";
// empty for the all-zero LUID, which no adapter has.
[[nodiscard]] std::string format_luid(std::span<const std::uint8_t, 8> bytes);

// "dddd:bb:dd.f" in lower case, the domain at least four digits; empty when
// `raw` is not a PCI bus id ("0000:0A:1F.7" and NVML's "00000000:0a:1f.7"
// both give "0000:0a:1f.7").
[[nodiscard]] std::string normalise_pci_bus_id(std::string_view raw);
[[nodiscard]] std::string format_pci_bus_id(std::uint32_t domain, std::uint32_t bus,
                                            std::uint32_t device, std::uint32_t function);

}  // namespace exogpu
