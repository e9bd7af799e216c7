// The CUDA backend's factory with an explicit driver library, so tests can
// point it at a missing library or at one that lacks entry points.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "exogpu/registry.hpp"

namespace exogpu::cuda {

[[nodiscard]] std::unique_ptr<Backend> make_backend(std::vector<std::string> library_names);

}  // namespace exogpu::cuda
