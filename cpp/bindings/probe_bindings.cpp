#include "bindings.hpp"

namespace exogpu::bindings {
void bind_probe(nanobind::module_&) {}
}  // namespace exogpu::bindings
