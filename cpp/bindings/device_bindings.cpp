// Bindings of the registry, devices, buffers, pools, streams and events.
// Every call that copies, waits or may block releases the GIL.
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>
#include <nanobind/stl/map.h>

#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "exogpu/device.hpp"
#include "exogpu/error.hpp"
#include "exogpu/pool.hpp"
#include "exogpu/registry.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace exogpu::bindings {

namespace {

Registry& registry() {
  nb::gil_scoped_release release;  // the first call opens every runtime
  return Registry::instance();
}

// A Python buffer-protocol view, released (with the GIL held) on destruction.
class HostView {
 public:
  HostView(nb::handle obj, bool writable) {
    const int flags = PyBUF_ANY_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj.ptr(), &view_, flags) != 0) {
      PyErr_Clear();
      throw InvalidArgument(std::string("expected a contiguous") + (writable ? " writable" : "") +
                            " object supporting the buffer protocol, got " +
                            nb::type_name(obj.type()).c_str());
    }
  }
  HostView(const HostView&) = delete;
  HostView& operator=(const HostView&) = delete;
  ~HostView() { PyBuffer_Release(&view_); }
  [[nodiscard]] void* data() const noexcept { return view_.buf; }
  [[nodiscard]] std::size_t size() const noexcept { return static_cast<std::size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

// A stream as Python sees it: the host objects of asynchronous copies are
// kept alive until the work that reads or writes them has completed.
struct PyStream {
  std::shared_ptr<Device> device;
  std::shared_ptr<Stream> stream;
  std::vector<std::pair<std::shared_ptr<Event>, std::unique_ptr<HostView>>> pending;

  PyStream(std::shared_ptr<Device> d, std::shared_ptr<Stream> s)
      : device(std::move(d)), stream(std::move(s)) {}
  PyStream(const PyStream&) = delete;
  PyStream& operator=(const PyStream&) = delete;
  ~PyStream() {
    if (!pending.empty()) {
      try {
        nb::gil_scoped_release release;
        stream->synchronize();
      } catch (...) {
        // A failed operation cannot be reported from a destructor; the host
        // memory must stay alive until the work is over either way.
      }
    }
  }
  void keep_until_done(std::unique_ptr<HostView> view) {
    prune();
    pending.emplace_back(stream->record(), std::move(view));
  }
  void prune() {
    std::erase_if(pending, [](auto& entry) { return entry.first->query(); });
  }
  void synchronize() {
    {
      nb::gil_scoped_release release;
      stream->synchronize();
    }
    pending.clear();
  }
};

// A buffer as Python sees it. Every export holds its own handle on the
// memory, so free() drops only this object's handle: the memory goes back to
// the pool once the last exported view is gone, never while one can still
// read or write it.
struct PyBuffer {
  Buffer buffer;
  // The CUDA array interface hands out a bare pointer whose consumers keep
  // this object (not the memory) alive: once it was taken, free() parks the
  // handle here until this object itself is collected.
  Buffer kept_for_interface;
  bool interface_taken = false;
  // Set once by the security layer: exports then go only through
  // `_export_dlpack` with this same key (see GuardedBuffer).
  nb::object export_key;

  [[nodiscard]] const Buffer& get() const {
    if (!buffer.valid()) throw InvalidArgument("the buffer was freed");
    return buffer;
  }
  void free() noexcept {
    if (interface_taken && buffer.valid()) kept_for_interface = buffer;
    buffer.reset();
  }
  // Raises BufferError when exports are restricted and `key` is not theirs.
  void check_export(nb::handle key) const {
    if (export_key.is_valid() && !key.is(export_key)) {
      PyErr_SetString(PyExc_BufferError,
                      "this buffer is exported only through the GuardedBuffer that owns it");
      throw nb::python_error();
    }
  }
};

struct PyPool {
  std::shared_ptr<Device> device;
  std::unique_ptr<Pool> owned;  // null for a device's default pool
  Pool* pool;
};

std::shared_ptr<Stream> default_stream_of(const std::shared_ptr<Device>& device) {
  // The device owns its default stream; alias the device's lifetime.
  return std::shared_ptr<Stream>(device, &device->default_stream());
}

PyBuffer allocate_from(Pool& pool, std::size_t nbytes) {
  if (Buffer cached = pool.allocate_cached(nbytes); cached.valid()) return PyBuffer{std::move(cached)};
  nb::gil_scoped_release release;  // the device may take a while
  return PyBuffer{pool.allocate(nbytes)};
}

void copy_in(PyBuffer& self, nb::handle obj, std::size_t offset, PyStream* stream) {
  const Buffer& dst = self.get();
  if (nb::isinstance<PyBuffer>(obj)) {
    const Buffer& src = nb::cast<PyBuffer&>(obj).get();
    nb::gil_scoped_release release;
    copy(dst, offset, src, 0, src.size(), stream ? stream->stream.get() : nullptr);
    return;
  }
  auto view = std::make_unique<HostView>(obj, false);
  if (stream == nullptr) {
    nb::gil_scoped_release release;
    write(dst, offset, view->data(), view->size());
    return;
  }
  stream->stream->copy_h2d(dst, offset, view->data(), view->size());
  stream->keep_until_done(std::move(view));
}

void copy_out(PyBuffer& self, nb::handle obj, std::size_t offset, PyStream* stream) {
  const Buffer& src = self.get();
  if (nb::isinstance<PyBuffer>(obj)) {
    const Buffer& dst = nb::cast<PyBuffer&>(obj).get();
    nb::gil_scoped_release release;
    copy(dst, 0, src, offset, dst.size(), stream ? stream->stream.get() : nullptr);
    return;
  }
  auto view = std::make_unique<HostView>(obj, true);
  if (stream == nullptr) {
    nb::gil_scoped_release release;
    read(view->data(), src, offset, view->size());
    return;
  }
  stream->stream->copy_d2h(view->data(), src, offset, view->size());
  stream->keep_until_done(std::move(view));
}

using ByteView = nb::ndarray<nb::numpy, std::uint8_t, nb::ndim<1>, nb::c_contig>;

// The owner of an exported view: its own handle on the buffer, dropped (with
// the GIL held) when the last view of it goes.
nb::capsule keeper_of(const Buffer& buffer) {
  auto handle = std::make_unique<Buffer>(buffer);
  nb::capsule keeper(handle.get(),
                     [](void* p) noexcept { std::unique_ptr<Buffer> owned(static_cast<Buffer*>(p)); });
  (void)handle.release();  // the capsule owns it now
  return keeper;
}

// A zero-copy numpy view of host-addressable memory that keeps the memory
// itself alive (not the Python buffer object, which free() can empty).
ByteView host_view(const PyBuffer& self) {
  const Buffer& buffer = self.get();
  void* data = buffer.host_ptr();
  if (data == nullptr && buffer.size() > 0) {
    PyErr_SetString(PyExc_BufferError, ("the buffer on " + buffer.device().id() +
                                        " is not host-addressable; copy it to the host first")
                                           .c_str());
    throw nb::python_error();
  }
  static std::uint8_t empty = 0;
  return ByteView(data ? data : &empty, {buffer.size()}, keeper_of(buffer));
}

nb::object export_dlpack(const PyBuffer& self, const nb::kwargs& kwargs) {
  if (auto exported = export_device_dlpack(self.get(), kwargs)) {
    return *exported;  // device memory (CUDA, ROCm), exported in place with its own handle
  }
  nb::object view = nb::cast(host_view(self));
  return view.attr("__dlpack__")(**kwargs);
}

using JsonDict = nb::typed<nb::dict, nb::str, nb::any>;

JsonDict info_dict(const DeviceInfo& info) {
  JsonDict d;
  d["id"] = info.id;
  d["backend"] = info.backend;
  d["index"] = info.index;
  d["name"] = info.name;
  d["vendor"] = info.vendor;
  d["kind"] = std::string(to_string(info.kind));
  d["memory_total"] = info.memory_total;
  d["uuid"] = info.uuid.empty() ? nb::none() : nb::cast(info.uuid);
  d["pci_bus_id"] = info.pci_bus_id.empty() ? nb::none() : nb::cast(info.pci_bus_id);
  d["luid"] = info.luid.empty() ? nb::none() : nb::cast(info.luid);
  d["unified_memory"] = info.unified_memory;
  d["emulated_on_host"] = info.emulated_on_host;
  d["aliases"] = info.aliases;
  d["memory_pool"] = info.memory_pool.empty() ? nb::none() : nb::cast(info.memory_pool);
  d["memory_pool_bytes"] = info.memory_pool_bytes;
  return d;
}

std::map<std::string, std::uint64_t> stats_dict(const PoolStats& s) {
  std::map<std::string, std::uint64_t> d;
  d["bytes_in_use"] = s.bytes_in_use;
  d["bytes_requested"] = s.bytes_requested;
  d["bytes_cached"] = s.bytes_cached;
  d["peak_bytes_in_use"] = s.peak_bytes_in_use;
  d["allocations"] = s.allocations;
  d["cache_hits"] = s.cache_hits;
  d["device_allocations"] = s.device_allocations;
  d["live_buffers"] = s.live_buffers;
  d["failed_allocations"] = s.failed_allocations;
  return d;
}

}  // namespace

void bind_devices(nb::module_& m) {
  nb::class_<BackendStatus>(m, "BackendInfo", "A backend compiled into exogpu, and whether it runs here.")
      .def_ro("name", &BackendStatus::name)
      .def_ro("available", &BackendStatus::available)
      .def_ro("reason", &BackendStatus::reason, "Why it is unavailable; empty when available.")
      .def_ro("device_count", &BackendStatus::device_count)
      .def_ro("runtime_version", &BackendStatus::runtime_version)
      .def_ro("note", &BackendStatus::note, "What to know about the backend even when it runs.")
      .def("to_dict", [](const BackendStatus& s) {
        JsonDict d;
        d["name"] = s.name;
        d["available"] = s.available;
        d["reason"] = s.reason;
        d["device_count"] = s.device_count;
        d["runtime_version"] = s.runtime_version;
        d["note"] = s.note;
        return d;
      })
      .def("__repr__", [](const BackendStatus& s) {
        return "BackendInfo(" + s.name + (s.available ? ", available" : ", unavailable: " + s.reason) + ")";
      });

  nb::class_<DeviceInfo>(m, "DeviceInfo", "What a device is: identity, kind and memory.")
      .def_ro("id", &DeviceInfo::id)
      .def_ro("backend", &DeviceInfo::backend)
      .def_ro("index", &DeviceInfo::index)
      .def_ro("name", &DeviceInfo::name)
      .def_ro("vendor", &DeviceInfo::vendor)
      .def_prop_ro("kind", [](const DeviceInfo& i) { return std::string(to_string(i.kind)); })
      .def_ro("memory_total", &DeviceInfo::memory_total)
      .def_prop_ro("uuid", [](const DeviceInfo& i) { return i.uuid.empty() ? std::nullopt : std::optional(i.uuid); })
      .def_prop_ro("pci_bus_id", [](const DeviceInfo& i) { return i.pci_bus_id.empty() ? std::nullopt : std::optional(i.pci_bus_id); })
      .def_prop_ro("luid", [](const DeviceInfo& i) { return i.luid.empty() ? std::nullopt : std::optional(i.luid); },
                   "The Windows adapter LUID (D3D12, CUDA and Vulkan report it there), else None.")
      .def_ro("unified_memory", &DeviceInfo::unified_memory)
      .def_ro("emulated_on_host", &DeviceInfo::emulated_on_host)
      .def_ro("aliases", &DeviceInfo::aliases)
      .def_prop_ro(
          "memory_pool",
          [](const DeviceInfo& i) { return i.memory_pool.empty() ? std::nullopt : std::optional(i.memory_pool); },
          "The physical memory this device shares with others ('host': the host's RAM); None when it "
          "has its own.")
      .def_ro("memory_pool_bytes", &DeviceInfo::memory_pool_bytes, "The pool's capacity in bytes (0: no pool).")
      .def("to_dict", &info_dict);

  nb::class_<MemoryInfo>(m, "MemoryInfo", "Device memory now, and where the free figure comes from.")
      .def_ro("total", &MemoryInfo::total)
      .def_ro("free", &MemoryInfo::free)
      .def_prop_ro("source", [](const MemoryInfo& i) { return std::string(to_string(i.source)); })
      .def("__repr__", [](const MemoryInfo& i) {
        return "MemoryInfo(total=" + std::to_string(i.total) + ", free=" + std::to_string(i.free) +
               ", source=" + std::string(to_string(i.source)) + ")";
      });

  nb::class_<Event>(m, "Event", "A point in a stream's work.")
      .def("query", [](Event& e) { return e.query(); }, "True once the work before it is done.")
      .def("synchronize", [](Event& e) { nb::gil_scoped_release r; e.synchronize(); })
      .def("elapsed_ms", [](Event& e, Event& later) { return e.elapsed_ms(later); }, "later"_a,
           "Milliseconds from this event to `later` (both complete).");

  nb::class_<PyStream>(m, "Stream", "An in-order queue of work on one device.")
      .def_prop_ro("device", [](PyStream& s) { return s.device; })
      .def("record", [](PyStream& s) { s.prune(); return s.stream->record(); })
      .def("wait", [](PyStream& s, std::shared_ptr<Event> e) { s.stream->wait(e); }, "event"_a,
           "Later work on this stream waits for `event` (from any device).")
      .def("synchronize", &PyStream::synchronize)
      .def("__enter__", [](nb::handle self) { return nb::borrow(self); },
           nb::sig("def __enter__(self) -> Stream"))
      .def("__exit__", [](PyStream& s, nb::args) { s.synchronize(); },
           nb::sig("def __exit__(self, *args: object) -> None"));

  nb::class_<HostBuffer>(m, "HostBuffer", "Host memory for staging; page-locked where the backend can.")
      .def_prop_ro("nbytes", &HostBuffer::size)
      .def_prop_ro("page_locked", &HostBuffer::page_locked)
      .def("view", [](nb::handle self) {
        auto& h = nb::cast<HostBuffer&>(self);
        return ByteView(h.data(), {h.size()}, self);
      }, "A zero-copy uint8 numpy view (keeps this buffer alive).");

  nb::class_<PyBuffer>(m, "Buffer", nb::is_weak_referenceable(), "Device memory; free() or `with` releases it.")
      .def_prop_ro("nbytes", [](const PyBuffer& b) { return b.buffer.size(); })
      .def_prop_ro("device", [](const PyBuffer& b) { return b.get().device_ptr(); })
      .def_prop_ro("freed", [](const PyBuffer& b) { return !b.buffer.valid(); })
      .def_prop_ro("host_addressable", [](const PyBuffer& b) {
        return b.buffer.valid() && (b.buffer.size() == 0 || b.buffer.host_ptr() != nullptr);
      })
      .def("free", &PyBuffer::free,
           "Releases the memory once in-flight work is done and no exported view (DLPack, "
           "numpy) of it is left. Idempotent.")
      .def("__enter__", [](nb::handle self) { return nb::borrow(self); },
           nb::sig("def __enter__(self) -> Buffer"))
      .def("__exit__", [](PyBuffer& b, nb::args) { b.free(); },
           nb::sig("def __exit__(self, *args: object) -> None"))
      .def("copy_from", &copy_in, "src"_a, "offset"_a = 0, "stream"_a = nb::none(),
           "Copies all of `src` (a buffer-protocol object or a Buffer) into this buffer at `offset`.")
      .def("copy_to", &copy_out, "dst"_a, "offset"_a = 0, "stream"_a = nb::none(),
           "Fills all of `dst` (a writable buffer-protocol object or a Buffer) from this buffer at `offset`.")
      .def("fill", [](PyBuffer& b, std::uint8_t value, std::size_t offset, std::optional<std::size_t> nbytes,
                      PyStream* stream) {
        const Buffer& buf = b.get();
        const std::size_t n = nbytes ? *nbytes : (offset <= buf.size() ? buf.size() - offset : 0);
        if (stream != nullptr) return stream->stream->fill(buf, offset, n, value);
        nb::gil_scoped_release r;
        Stream& s = buf.device().default_stream();
        s.fill(buf, offset, n, value);
        s.synchronize();
      }, "value"_a, "offset"_a = 0, "nbytes"_a = nb::none(), "stream"_a = nb::none())
      .def("to_numpy", [](nb::handle self) {
        nb::object array = nb::module_::import_("numpy").attr("empty")(
            nb::cast<PyBuffer&>(self).get().size(), "uint8");
        copy_out(nb::cast<PyBuffer&>(self), array, 0, nullptr);
        return array;
      }, nb::sig("def to_numpy(self) -> numpy.typing.NDArray[numpy.uint8]"),
         "A new uint8 numpy array holding a copy of the buffer.")
      .def("_host_view", [](const PyBuffer& b) {
        b.check_export(nb::none());
        return host_view(b);
      })
      .def("__dlpack__", [](const PyBuffer& b, nb::kwargs kwargs) {
        b.check_export(nb::none());
        return export_dlpack(b, kwargs);
      }, nb::sig("def __dlpack__(self, **kwargs: object) -> object"),
         "Zero-copy DLPack export of host-addressable or CUDA/ROCm memory; the memory stays "
         "allocated until the consumer lets go of it, even after free().")
      .def("_restrict_exports", [](PyBuffer& b, nb::object key) {
        if (b.export_key.is_valid()) throw InvalidArgument("the buffer's exports are already restricted");
        if (key.is_none()) throw InvalidArgument("_restrict_exports: the key must not be None");
        b.export_key = std::move(key);
      }, "key"_a, "From now on the buffer exports only through _export_dlpack(key); for the "
         "security layer. Once only.")
      .def("_export_dlpack", [](const PyBuffer& b, nb::handle key, nb::kwargs kwargs) {
        if (!b.export_key.is_valid()) {
          throw InvalidArgument("_export_dlpack: the buffer's exports are not restricted");
        }
        b.check_export(key);
        return export_dlpack(b, kwargs);
      }, "key"_a, "kwargs"_a, nb::sig("def _export_dlpack(self, key: object, **kwargs: object) -> object"))
      .def("__dlpack_device__", [](const PyBuffer& b) {
        const Buffer& buf = b.get();
        if (auto where = device_dlpack_device(buf)) return *where;
        if (buf.size() > 0 && buf.host_ptr() == nullptr) {
          PyErr_SetString(PyExc_BufferError, ("the buffer on " + buf.device().id() + " is not host-addressable").c_str());
          throw nb::python_error();
        }
        return std::make_pair(1, 0);  // kDLCPU
      })
      .def_prop_ro("__cuda_array_interface__", [](PyBuffer& b) {
        b.check_export(nb::none());
        auto interface = cuda_array_interface(b.get());
        b.interface_taken = true;  // its consumers hold this object, not the memory
        return interface;
      }, "Version 3 of the CUDA array interface, for CUDA buffers only; once taken, the "
         "memory lives as long as this object, free() or not.")
      .def("__repr__", [](const PyBuffer& b) {
        if (!b.buffer.valid()) return std::string("Buffer(freed)");
        return "Buffer(" + std::to_string(b.buffer.size()) + " bytes on " + b.buffer.device().id() + ")";
      });

  nb::class_<PyPool>(m, "Pool", "A caching allocator over one device, with an optional hard limit in bytes.")
      .def("__init__", [](PyPool* self, std::shared_ptr<Device> device, std::optional<std::uint64_t> limit) {
        auto pool = std::make_unique<Pool>(*device, limit);
        Pool* raw = pool.get();
        new (self) PyPool{std::move(device), std::move(pool), raw};
      }, "device"_a, "limit"_a = nb::none())
      .def_prop_ro("device", [](const PyPool& p) { return p.device; })
      .def("allocate", [](PyPool& p, std::size_t nbytes) { return allocate_from(*p.pool, nbytes); }, "nbytes"_a)
      .def("stats", [](const PyPool& p) { return stats_dict(p.pool->stats()); })
      .def("trim", [](PyPool& p) { nb::gil_scoped_release r; return p.pool->trim(); },
           "Returns cached blocks to the device; gives the bytes released.")
      .def_prop_rw("limit", [](const PyPool& p) { return p.pool->limit(); },
                   [](PyPool& p, std::optional<std::uint64_t> limit) { p.pool->set_limit(limit); })
      .def_static("size_class", &Pool::size_class, "nbytes"_a);

  nb::class_<Device>(m, "Device", "A device seen through one backend.")
      .def_prop_ro("id", [](const Device& d) { return d.id(); })
      .def_prop_ro("info", [](const Device& d) { return d.info(); })
      .def("memory_info", [](const Device& d) { nb::gil_scoped_release r; return d.memory_info(); })
      .def("allocate", [](Device& d, std::size_t nbytes) { return allocate_from(d.pool(), nbytes); },
           "nbytes"_a, "Allocates through the device's caching pool.")
      .def("allocate_unpooled", [](Device& d, std::size_t nbytes) {
        nb::gil_scoped_release r;
        return PyBuffer{d.allocate(nbytes)};
      }, "nbytes"_a, "Allocates straight from the backend, bypassing the pool.")
      .def("allocate_host", [](Device& d, std::size_t nbytes) { nb::gil_scoped_release r; return d.allocate_host(nbytes); },
           "nbytes"_a)
      .def("stream", [](Device& d) {
        std::shared_ptr<Stream> s;
        {
          nb::gil_scoped_release r;
          s = d.create_stream();
        }
        return std::make_unique<PyStream>(d.shared_from_this(), std::move(s));
      }, "A new stream (in-order queue) on this device.")
      .def_prop_ro("default_stream", [](Device& d) {
        auto self = d.shared_from_this();
        return std::make_unique<PyStream>(self, default_stream_of(self));
      })
      .def_prop_ro("pool", [](Device& d) {
        return PyPool{d.shared_from_this(), nullptr, &d.pool()};
      }, "The device's default caching pool.")
      .def("synchronize", [](Device& d) { nb::gil_scoped_release r; d.default_stream().synchronize(); })
      .def("__repr__", [](const Device& d) { return "Device(" + d.id() + ", " + d.info().name + ")"; });

  m.def("backends", [] { return registry().backends(); }, "Every backend exogpu knows, and whether it runs here.");
  m.def("devices", [] { return registry().devices(); }, "One device per physical device, under its preferred id.");
  m.def("all_devices", [] { return registry().all_devices(); }, "Every device of every backend, aliases included.");
  m.def("device", [](const std::string& id) { return registry().device(id); }, "id"_a,
        "A device by any of its ids (aliases included).");
  m.def("copy_buffers", [](PyBuffer& dst, PyBuffer& src, std::size_t nbytes, std::size_t dst_offset,
                    std::size_t src_offset, PyStream* stream, bool staged) {
    const Buffer& d = dst.get();
    const Buffer& s = src.get();
    nb::gil_scoped_release r;
    copy(d, dst_offset, s, src_offset, nbytes, stream ? stream->stream.get() : nullptr,
         staged ? CopyRoute::staged : CopyRoute::automatic);
  }, "dst"_a, "src"_a, "nbytes"_a, "dst_offset"_a = 0, "src_offset"_a = 0, "stream"_a = nb::none(),
     "staged"_a = false,
     "Copies between two buffers on any devices; `staged` forces the pipelined host-staging path.");
}

}  // namespace exogpu::bindings
