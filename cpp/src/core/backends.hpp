// Factories of the backends compiled into this build. Each backend folder
// defines its own; the registry calls those whose EXOGPU_HAVE_<NAME> is set.
#pragma once

#include <memory>

#include "exogpu/registry.hpp"

namespace exogpu {

std::unique_ptr<Backend> make_cpu_backend();
#ifdef EXOGPU_HAVE_VULKAN
std::unique_ptr<Backend> make_vulkan_backend();
#endif
#ifdef EXOGPU_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend();
#endif
#ifdef EXOGPU_HAVE_HIP
std::unique_ptr<Backend> make_hip_backend();
#endif
#ifdef EXOGPU_HAVE_DIRECTML
std::unique_ptr<Backend> make_directml_backend();
#endif
#ifdef EXOGPU_HAVE_METAL
std::unique_ptr<Backend> make_metal_backend();
#endif

}  // namespace exogpu
