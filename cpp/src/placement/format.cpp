#include "placement/format.hpp"

#include <cmath>
#include <cstdio>

namespace exogpu::placement::detail {

std::string format_bytes(double bytes) {
  char buffer[96];
  std::snprintf(buffer, sizeof buffer, "%.0f bytes (%.2f GiB)", std::floor(bytes),
                bytes / 1073741824.0);
  return buffer;
}

}  // namespace exogpu::placement::detail
