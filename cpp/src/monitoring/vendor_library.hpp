// What every vendor reader does alike: pick the library names, open one, and
// put why it cannot be used into words a user can act on.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dynamic_library.hpp"
#include "exogpu/monitoring.hpp"

namespace exogpu::monitoring {

// `names` when given, else the environment variable's value when set, else
// the defaults.
[[nodiscard]] std::vector<std::string> choose_library_names(
    const std::vector<std::string>& names, const char* env_variable,
    std::vector<std::string> defaults);

// "a or b or c".
[[nodiscard]] std::string join_names(const std::vector<std::string>& names);

// Opens the first library of `names` that loads; on failure `reason` says
// "<names> not found (<install_hint>)", or why a library that is there would
// not load.
[[nodiscard]] std::unique_ptr<DynamicLibrary> open_vendor_library(
    const std::vector<std::string>& names, std::string_view install_hint, std::string& reason);

// "a, b, c and 2 more entry points" from a non-empty list of symbols.
[[nodiscard]] std::string list_missing(const std::vector<std::string>& missing);

// Appends one reading; the helper keeps the call sites to one line each.
void add_reading(std::vector<VendorReading>& out, std::string name, double value,
                 std::string unit, std::string source,
                 std::optional<std::string> sensor = std::nullopt,
                 std::optional<std::string> detail = std::nullopt);

// The text up to the first NUL of a fixed-size buffer a library filled.
[[nodiscard]] std::string from_buffer(const char* buffer, std::size_t size);

}  // namespace exogpu::monitoring
