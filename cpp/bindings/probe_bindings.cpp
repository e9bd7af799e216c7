#include "bindings.hpp"

namespace exogpu::bindings {
void bind_probe(nanobind::module_& m) { bind_netprobe(m); }
}  // namespace exogpu::bindings
