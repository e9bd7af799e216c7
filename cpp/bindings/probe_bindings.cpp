#include "bindings.hpp"

namespace exogpu::bindings {
void bind_memory_probe(nanobind::module_& m);  // memory_probe_bindings.cpp

void bind_probe(nanobind::module_& m) {
  bind_netprobe(m);
  bind_memory_probe(m);
}
}  // namespace exogpu::bindings
