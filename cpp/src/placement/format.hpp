// Byte counts for error messages: exact bytes, then GiB for a reader.
#pragma once

#include <cstdint>
#include <string>

namespace exogpu::placement::detail {

[[nodiscard]] std::string format_bytes(double bytes);
[[nodiscard]] inline std::string format_bytes(std::uint64_t bytes) {
  return format_bytes(static_cast<double>(bytes));
}

}  // namespace exogpu::placement::detail
