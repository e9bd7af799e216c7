// The HIP backend's factory with an explicit runtime library, so tests can
// point it at a missing library or at one that lacks entry points.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "exogpu/registry.hpp"

namespace exogpu::hip {

[[nodiscard]] std::unique_ptr<Backend> make_backend(std::vector<std::string> library_names);

}  // namespace exogpu::hip
