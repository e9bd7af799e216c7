#include "monitoring/vendor_library.hpp"

#include <cstring>

namespace exogpu::monitoring {

void add_reading(std::vector<VendorReading>& out, std::string name, double value,
                 std::string unit, std::string source, std::optional<std::string> sensor,
                 std::optional<std::string> detail) {
  out.push_back(VendorReading{std::move(name), value, std::move(unit), std::move(source),
                              std::move(sensor), std::move(detail)});
}

std::string from_buffer(const char* buffer, std::size_t size) {
  const void* end = std::memchr(buffer, '\0', size);
  return {buffer, end != nullptr ? static_cast<std::size_t>(static_cast<const char*>(end) - buffer)
                                 : size};
}

}  // namespace exogpu::monitoring
