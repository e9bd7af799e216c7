// Each area of the core binds itself in its own file; module.cpp calls them.
#pragma once

#include <nanobind/nanobind.h>

namespace exogpu::bindings {
void bind_errors(nanobind::module_& m);
void bind_devices(nanobind::module_& m);
void bind_placement(nanobind::module_& m);
void bind_probe(nanobind::module_& m);
void bind_netprobe(nanobind::module_& m);
}  // namespace exogpu::bindings
