#include "bindings.hpp"

namespace exogpu::bindings {
void bind_placement(nanobind::module_&) {}
}  // namespace exogpu::bindings
