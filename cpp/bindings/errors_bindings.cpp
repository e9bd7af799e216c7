// exogpu's typed C++ errors become Python exceptions of the same names:
// Error is the base; OutOfMemory is also a MemoryError, InvalidArgument also
// a ValueError.
#include <exception>

#include "bindings.hpp"
#include "exogpu/error.hpp"

namespace nb = nanobind;

namespace exogpu::bindings {

namespace {
PyObject* error_type = nullptr;
PyObject* out_of_memory_type = nullptr;
PyObject* invalid_argument_type = nullptr;
PyObject* backend_unavailable_type = nullptr;
PyObject* device_error_type = nullptr;

PyObject* new_exception(nb::module_& m, const char* name, const char* doc, PyObject* bases) {
  // Named after the module as the stub generator imports it (`_core`);
  // exogpu/__init__.py presents them as exogpu.X.
  const std::string qualified = std::string("_core.") + name;
  PyObject* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases, nullptr);
  if (type == nullptr) throw nb::python_error();
  m.attr(name) = nb::handle(type);
  return type;
}
}  // namespace

void bind_errors(nb::module_& m) {
  error_type = new_exception(m, "Error", "Base of every exogpu error.", nullptr);
  nb::object oom_bases = nb::make_tuple(nb::handle(error_type), nb::handle(PyExc_MemoryError));
  out_of_memory_type = new_exception(m, "OutOfMemory",
                                     "A device, pool limit or quota cannot satisfy an allocation.",
                                     oom_bases.ptr());
  nb::object arg_bases = nb::make_tuple(nb::handle(error_type), nb::handle(PyExc_ValueError));
  invalid_argument_type = new_exception(
      m, "InvalidArgument", "An argument was wrong; nothing was changed.", arg_bases.ptr());
  backend_unavailable_type = new_exception(
      m, "BackendUnavailable", "A backend's runtime or device is missing.", error_type);
  device_error_type =
      new_exception(m, "DeviceError", "A device operation failed.", error_type);

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const OutOfMemory& e) {
      PyErr_SetString(out_of_memory_type, e.what());
    } catch (const InvalidArgument& e) {
      PyErr_SetString(invalid_argument_type, e.what());
    } catch (const BackendUnavailable& e) {
      PyErr_SetString(backend_unavailable_type, e.what());
    } catch (const DeviceError& e) {
      PyErr_SetString(device_error_type, e.what());
    } catch (const Error& e) {
      PyErr_SetString(error_type, e.message().c_str());
    }
  });
}

}  // namespace exogpu::bindings
