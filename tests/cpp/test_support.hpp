// Helpers shared by the C++ suites.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "exogpu/registry.hpp"

namespace exogpu::test {

inline std::vector<std::uint8_t> random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> out(n);
  for (auto& b : out) b = static_cast<std::uint8_t>(rng());
  return out;
}

// Every device of every backend, aliases included, so that a GPU API's view
// of the host CPU (lavapipe) is held to the suite as well.
inline std::vector<std::string> all_device_ids() {
  std::vector<std::string> ids;
  for (const auto& device : Registry::instance().all_devices()) ids.push_back(device->id());
  return ids;
}

inline std::string param_name(const std::string& id) {
  std::string name = id;
  for (char& c : name) {
    if (c == ':') c = '_';
  }
  return name;
}

}  // namespace exogpu::test
