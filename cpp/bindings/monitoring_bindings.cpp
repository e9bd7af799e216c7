// Bindings of the vendor monitoring readers (exogpu/monitoring.hpp). Opening
// a vendor library and reading its devices can take milliseconds (NVML
// queries the driver), so both run with the GIL released.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <new>

#include "bindings.hpp"
#include "exogpu/monitoring.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace exogpu::bindings {
namespace {

using monitoring::NvmlReader;
using monitoring::RocmSmiReader;
using monitoring::VendorDeviceReadings;
using monitoring::VendorReading;

template <class Reader>
void bind_reader(nb::module_& m, const char* name, const char* doc) {
  nb::class_<Reader>(m, name, doc)
      .def(
          "__init__",
          [](Reader* self, const std::vector<std::string>& names) {
            nb::gil_scoped_release release;
            new (self) Reader(names);
          },
          "names"_a = std::vector<std::string>{},
          "Opens the first library of `names` that loads (the default names when empty).")
      .def_static("library_names", &Reader::library_names,
                  "The library names tried by default (the environment override included).")
      .def_prop_ro("available", &Reader::available)
      .def_prop_ro("reason", [](const Reader& r) { return r.reason(); },
                   "Why the reader cannot run here; empty when it can.")
      .def("read", &Reader::read, nb::call_guard<nb::gil_scoped_release>(),
           "Readings of every device the library lists now.");
}

}  // namespace

void bind_monitoring(nb::module_& m) {
  nb::class_<VendorReading>(m, "VendorReading", "One figure read from a vendor library.")
      .def_ro("name", &VendorReading::name)
      .def_ro("value", &VendorReading::value)
      .def_ro("unit", &VendorReading::unit)
      .def_ro("source", &VendorReading::source)
      .def_ro("sensor", &VendorReading::sensor)
      .def_ro("detail", &VendorReading::detail);

  nb::class_<VendorDeviceReadings>(m, "VendorDeviceReadings",
                                   "Everything one vendor library reported of one device.")
      .def_ro("vendor", &VendorDeviceReadings::vendor)
      .def_ro("name", &VendorDeviceReadings::name)
      .def_ro("index", &VendorDeviceReadings::index)
      .def_ro("pci_bus_id", &VendorDeviceReadings::pci_bus_id)
      .def_ro("uuid", &VendorDeviceReadings::uuid)
      .def_ro("readings", &VendorDeviceReadings::readings);

  bind_reader<NvmlReader>(m, "NvmlReader", "NVIDIA GPUs through NVML, opened at run time.");
  bind_reader<RocmSmiReader>(m, "RocmSmiReader", "AMD GPUs through rocm-smi, opened at run time.");
}

}  // namespace exogpu::bindings
