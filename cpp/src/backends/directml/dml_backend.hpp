// The DirectML backend's factory with an explicit DirectML.dll, so tests can
// point it at a missing library or at one too old to use.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "exogpu/registry.hpp"

namespace exogpu::directml {

struct BackendOptions {
  std::vector<std::string> directml_library_names;
  bool software_adapters = false;  // also list software adapters (WARP)
  bool host_visible = true;        // zero-copy buffers on cache-coherent UMA adapters
};

// From the environment: EXOGPU_DIRECTML_LIBRARY, EXOGPU_DIRECTML_SOFTWARE_ADAPTERS=1,
// EXOGPU_DIRECTML_HOST_VISIBLE=0.
[[nodiscard]] BackendOptions options_from_environment();

[[nodiscard]] std::unique_ptr<Backend> make_backend(BackendOptions options);

}  // namespace exogpu::directml
