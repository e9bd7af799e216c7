#include "monitoring/vendor_library.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace exogpu::monitoring {

std::vector<std::string> choose_library_names(const std::vector<std::string>& names,
                                              const char* env_variable,
                                              std::vector<std::string> defaults) {
  if (!names.empty()) return names;
  if (const char* name = std::getenv(env_variable); name != nullptr && *name != '\0') {
    return {name};
  }
  return defaults;
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) out += (i == 0 ? "" : " or ") + names[i];
  return out;
}

std::unique_ptr<DynamicLibrary> open_vendor_library(const std::vector<std::string>& names,
                                                    std::string_view install_hint,
                                                    std::string& reason) {
  std::string error;
  std::unique_ptr<DynamicLibrary> library = DynamicLibrary::open(names, error);
  if (library) return library;
  const bool absent = error.empty() || error.find("No such file") != std::string::npos ||
                      error.find("not found") != std::string::npos;
  reason = absent ? join_names(names) + " not found (" + std::string(install_hint) + ")"
                  : join_names(names) + " could not be loaded: " + error;
  return nullptr;
}

std::string list_missing(const std::vector<std::string>& missing) {
  std::string list = missing.front();
  const std::size_t shown = std::min<std::size_t>(missing.size(), 3);
  for (std::size_t i = 1; i < shown; ++i) list += ", " + missing[i];
  if (missing.size() > shown) {
    list += " and " + std::to_string(missing.size() - shown) + " more entry points";
  }
  return list;
}

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
