// Small helpers the vendor readers share (opening the libraries and
// explaining failures is core/dynamic_library's).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/dynamic_library.hpp"
#include "exogpu/monitoring.hpp"

namespace exogpu::monitoring {

// Appends one reading; the helper keeps the call sites to one line each.
void add_reading(std::vector<VendorReading>& out, std::string name, double value,
                 std::string unit, std::string source,
                 std::optional<std::string> sensor = std::nullopt,
                 std::optional<std::string> detail = std::nullopt);

// The text up to the first NUL of a fixed-size buffer a library filled.
[[nodiscard]] std::string from_buffer(const char* buffer, std::size_t size);

}  // namespace exogpu::monitoring
