// Interop with frameworks that address vendor memory directly: DLPack export
// of device buffers (built by hand from DLPack's published C ABI, so no
// header is needed), the CUDA array interface, and page-locking of existing
// host memory for fast transfers.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/unique_ptr.h>

#include <memory>
#include <string>

#include "bindings.hpp"
#include "exogpu/error.hpp"
#include "exogpu/interop.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace exogpu::bindings {

namespace {

// DLPack 0.8's unversioned ABI (dlpack.h), which every consumer accepts.
struct DLDevice {
  std::int32_t device_type;
  std::int32_t device_id;
};
struct DLDataType {
  std::uint8_t code;  // kDLUInt = 1
  std::uint8_t bits;
  std::uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  std::int32_t ndim;
  DLDataType dtype;
  std::int64_t* shape;
  std::int64_t* strides;  // null: compact row-major
  std::uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

// What a consumer holds: the tensor description and a handle on the buffer,
// so the memory lives until the consumer calls the deleter.
struct ExportedTensor {
  DLManagedTensor managed{};
  Buffer buffer;
  std::int64_t shape[1] = {0};
};

void delete_exported(DLManagedTensor* tensor) {
  // Ownership came back from the consumer (possibly without the GIL; no
  // Python object is touched here).
  std::unique_ptr<ExportedTensor> owned(static_cast<ExportedTensor*>(tensor->manager_ctx));
}

void capsule_destructor(PyObject* capsule) {
  // A consumer renames the capsule "used_dltensor" once it owns the tensor;
  // one still called "dltensor" was never consumed and is ours to free.
  if (PyCapsule_IsValid(capsule, "dltensor") == 0) return;
  auto* tensor = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
  if (tensor != nullptr && tensor->deleter != nullptr) tensor->deleter(tensor);
}

const DeviceAddressable* addressable(const Buffer& buffer) {
  return dynamic_cast<const DeviceAddressable*>(buffer.allocation().get());
}

// Work issued through exogpu's synchronous calls has finished; a consumer on
// any stream may then read the memory.
void settle(const Buffer& buffer) {
  nb::gil_scoped_release release;
  buffer.device().default_stream().synchronize();
}

// Page-locked existing host memory and the Python buffer it came from; the
// registration ends before the view is released.
class PyHostRegistration {
 public:
  PyHostRegistration(HostMemoryRegistrar& registrar, nb::handle obj) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_ANY_CONTIGUOUS) != 0) {
      PyErr_Clear();
      throw InvalidArgument(std::string("expected a contiguous object supporting the buffer "
                                        "protocol, got ") +
                            nb::type_name(obj.type()).c_str());
    }
    try {
      nb::gil_scoped_release release;
      registration_ = registrar.register_host(view_.buf, static_cast<std::size_t>(view_.len));
    } catch (...) {
      PyBuffer_Release(&view_);
      throw;
    }
  }
  PyHostRegistration(const PyHostRegistration&) = delete;
  PyHostRegistration& operator=(const PyHostRegistration&) = delete;
  ~PyHostRegistration() { unregister(); }

  void unregister() {
    if (!registration_) return;
    {
      nb::gil_scoped_release release;
      registration_.reset();
    }
    PyBuffer_Release(&view_);
  }
  [[nodiscard]] std::size_t nbytes() const noexcept {
    return registration_ ? registration_->size() : 0;
  }
  [[nodiscard]] bool active() const noexcept { return registration_ != nullptr; }

 private:
  Py_buffer view_{};
  std::unique_ptr<HostRegistration> registration_;
};

}  // namespace

std::optional<std::pair<int, int>> device_dlpack_device(const Buffer& buffer) {
  const DeviceAddressable* memory = addressable(buffer);
  if (memory == nullptr) return std::nullopt;
  const DeviceAddress where = memory->device_address();
  return std::make_pair(static_cast<int>(where.device_type), static_cast<int>(where.device_id));
}

std::optional<nb::object> export_device_dlpack(const Buffer& buffer, const nb::kwargs& kwargs) {
  const DeviceAddressable* memory = addressable(buffer);
  if (memory == nullptr) return std::nullopt;
  const DeviceAddress where = memory->device_address();
  // DLPack consumers (numpy 2 among them) pass copy=None and dl_device=None
  // explicitly: None means "no preference", never a cast.
  const nb::object copy_arg = kwargs.contains("copy") ? nb::object(kwargs["copy"]) : nb::none();
  const int copy_wanted = copy_arg.is_none() ? 0 : PyObject_IsTrue(copy_arg.ptr());
  if (copy_wanted < 0) throw nb::python_error();
  if (copy_wanted == 1) {
    PyErr_SetString(PyExc_BufferError, ("the buffer on " + buffer.device().id() +
                                        " is exported in place; copy=True is not supported")
                                           .c_str());
    throw nb::python_error();
  }
  if (kwargs.contains("dl_device") && !kwargs["dl_device"].is_none()) {
    std::pair<int, int> wanted;
    if (!nb::try_cast(kwargs["dl_device"], wanted)) {
      PyErr_SetString(PyExc_TypeError, "dl_device must be a (device_type, device_id) pair of ints");
      throw nb::python_error();
    }
    if (wanted.first != static_cast<int>(where.device_type) || wanted.second != where.device_id) {
      PyErr_SetString(PyExc_BufferError, ("the buffer lives on " + buffer.device().id() +
                                          " and is exported only there")
                                             .c_str());
      throw nb::python_error();
    }
  }
  settle(buffer);
  auto exported = std::make_unique<ExportedTensor>();
  exported->buffer = buffer;
  exported->shape[0] = static_cast<std::int64_t>(buffer.size());
  DLTensor& tensor = exported->managed.dl_tensor;
  tensor.data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(where.address));
  tensor.device = {static_cast<std::int32_t>(where.device_type), where.device_id};
  tensor.ndim = 1;
  tensor.dtype = {1, 8, 1};  // uint8, one lane
  tensor.shape = exported->shape;
  tensor.strides = nullptr;
  tensor.byte_offset = 0;
  exported->managed.manager_ctx = exported.get();
  exported->managed.deleter = &delete_exported;
  PyObject* capsule = PyCapsule_New(&exported->managed, "dltensor", &capsule_destructor);
  if (capsule == nullptr) throw nb::python_error();
  (void)exported.release();  // the capsule (then its consumer) owns it now
  return nb::steal(capsule);
}

nb::typed<nb::dict, nb::str, nb::any> cuda_array_interface(const Buffer& buffer) {
  const DeviceAddressable* memory = addressable(buffer);
  if (memory == nullptr || memory->device_address().device_type != DLPackDeviceType::cuda) {
    throw nb::attribute_error(("the buffer on " + buffer.device().id() +
                               " is not CUDA memory; it has no __cuda_array_interface__")
                                  .c_str());
  }
  settle(buffer);
  nb::typed<nb::dict, nb::str, nb::any> d;
  d["shape"] = nb::make_tuple(buffer.size());
  d["typestr"] = "|u1";
  d["data"] = nb::make_tuple(memory->device_address().address, false);
  d["strides"] = nb::none();
  d["stream"] = nb::none();  // settled above: no synchronisation needed
  d["version"] = 3;
  return d;
}

void bind_cuda(nb::module_& m) {
  nb::class_<PyHostRegistration>(
      m, "HostRegistration",
      "Existing host memory page-locked for a GPU runtime; unlocked by unregister() or `with`.")
      .def_prop_ro("nbytes", &PyHostRegistration::nbytes)
      .def_prop_ro("active", &PyHostRegistration::active)
      .def("unregister", &PyHostRegistration::unregister, "Unlocks the memory. Idempotent.")
      .def("__enter__", [](nb::handle self) { return nb::borrow(self); },
           nb::sig("def __enter__(self) -> HostRegistration"))
      .def("__exit__", [](PyHostRegistration& r, nb::args) { r.unregister(); },
           nb::sig("def __exit__(self, *args: object) -> None"));

  m.def("register_host_memory", [](Device& device, nb::handle obj) {
    auto* registrar = dynamic_cast<HostMemoryRegistrar*>(&device);
    if (registrar == nullptr) {
      throw InvalidArgument(device.id() + " cannot page-lock host memory (only CUDA and HIP "
                            "devices can)");
    }
    return std::make_unique<PyHostRegistration>(*registrar, obj);
  }, "device"_a, "obj"_a,
     "Page-locks the memory of a contiguous buffer-protocol object (cuMemHostRegister / "
     "hipHostRegister) so transfers from and to it run at full DMA speed.");
}

}  // namespace exogpu::bindings
