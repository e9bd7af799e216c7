#include "bindings.hpp"

NB_MODULE(_core, m) {
  m.doc() = "exogpu native core";
  m.attr("__version__") = EXOGPU_VERSION;
  exogpu::bindings::bind_errors(m);
  exogpu::bindings::bind_devices(m);
  exogpu::bindings::bind_placement(m);
  exogpu::bindings::bind_probe(m);
}
