#include "core/identity.hpp"

#include <cstdio>

namespace exogpu {

std::string format_uuid(std::span<const std::uint8_t, 16> b) {
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

std::string format_luid(std::span<const std::uint8_t, 8> b) {
  std::uint32_t low = 0;
  std::uint32_t high = 0;
  for (int i = 3; i >= 0; --i) {
    low = (low << 8) | b[static_cast<std::size_t>(i)];
    high = (high << 8) | b[static_cast<std::size_t>(i) + 4];
  }
  if (low == 0 && high == 0) return {};
  char out[18];
  std::snprintf(out, sizeof out, "%08x-%08x", static_cast<unsigned>(high),
                static_cast<unsigned>(low));
  return out;
}

std::string format_pci_bus_id(std::uint32_t domain, std::uint32_t bus, std::uint32_t device,
                              std::uint32_t function) {
  char out[32];
  std::snprintf(out, sizeof out, "%04x:%02x:%02x.%x", domain, bus, device, function);
  return out;
}

std::string normalise_pci_bus_id(std::string_view raw) {
  unsigned domain = 0;
  unsigned bus = 0;
  unsigned device = 0;
  unsigned function = 0;
  char tail = 0;
  const std::string text(raw);
  if (std::sscanf(text.c_str(), "%x:%x:%x.%x%c", &domain, &bus, &device, &function, &tail) != 4 ||
      bus > 0xff || device > 0x1f || function > 0x7) {
    return {};
  }
  return format_pci_bus_id(domain, bus, device, function);
}

}  // namespace exogpu
