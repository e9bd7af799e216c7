// Each area of the core binds itself in its own file; module.cpp calls them.
#pragma once

#include <nanobind/nanobind.h>

#include <optional>
#include <utility>

#include "exogpu/device.hpp"

namespace exogpu::bindings {
void bind_errors(nanobind::module_& m);
void bind_devices(nanobind::module_& m);
void bind_placement(nanobind::module_& m);
void bind_probe(nanobind::module_& m);
void bind_netprobe(nanobind::module_& m);
void bind_cuda(nanobind::module_& m);
void bind_monitoring(nanobind::module_& m);
// DLPack and CUDA array interface export of memory only a vendor runtime can
// address (cuda_bindings.cpp); nullopt / AttributeError for other memory.
std::optional<std::pair<int, int>> device_dlpack_device(const Buffer& buffer);
std::optional<nanobind::object> export_device_dlpack(const Buffer& buffer,
                                                     const nanobind::kwargs& kwargs);
nanobind::typed<nanobind::dict, nanobind::str, nanobind::any> cuda_array_interface(
    const Buffer& buffer);
}  // namespace exogpu::bindings
