#include "bindings.hpp"

NB_MODULE(_core, m) {
  m.doc() = "exogpu native core";
  // Objects still referenced from module globals at interpreter exit are not
  // leaks of ours; the warnings would only drown real problems in noise.
  nanobind::set_leak_warnings(false);
  m.attr("core_version") = EXOGPU_VERSION;
  exogpu::bindings::bind_errors(m);
  exogpu::bindings::bind_devices(m);
  exogpu::bindings::bind_placement(m);
  exogpu::bindings::bind_probe(m);
  exogpu::bindings::bind_cuda(m);
  exogpu::bindings::bind_monitoring(m);
}
