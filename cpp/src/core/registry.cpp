#include "exogpu/registry.hpp"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <set>

#include "core/backends.hpp"
#include "exogpu/error.hpp"

namespace exogpu {

namespace {

struct KnownBackend {
  const char* name;
  std::function<std::unique_ptr<Backend>()> make;  // empty: not compiled in
  const char* not_compiled_reason;
  const char* note = "";
};

#if defined(__APPLE__)
#define EXOGPU_PLATFORM_NAME "macOS"
#elif defined(__linux__)
#define EXOGPU_PLATFORM_NAME "Linux"
#else
#define EXOGPU_PLATFORM_NAME "this operating system"
#endif

// Said of the Metal backend wherever it is listed, until it has run on a Mac.
constexpr const char* kMetalNote =
    "tested against a simulated Metal device only; it has not yet run on Apple hardware";

// Every backend exogpu knows, in the order ids are preferred when one
// physical device shows up through several APIs: native APIs first, then the
// CPU itself (so lavapipe and SwiftShader fold into cpu:0), then Vulkan.
const std::vector<KnownBackend>& known() {
  static const std::vector<KnownBackend> list = {
#ifdef EXOGPU_HAVE_CUDA
      {"cuda", make_cuda_backend, ""},
#else
      {"cuda", {}, "this build has no CUDA backend"},
#endif
#ifdef EXOGPU_HAVE_HIP
      {"hip", make_hip_backend, ""},
#else
      {"hip", {}, "this build has no HIP backend"},
#endif
#ifdef EXOGPU_HAVE_METAL
      {"metal", make_metal_backend, "", kMetalNote},
#else
      {"metal", {}, EXOGPU_METAL_UNAVAILABLE, kMetalNote},
#endif
#ifdef EXOGPU_HAVE_DIRECTML
      {"directml", make_directml_backend, ""},
#elif defined(_WIN32)
      {"directml", {}, "this build has no DirectML backend"},
#else
      {"directml", {}, "DirectML is a Windows API; this build is for " EXOGPU_PLATFORM_NAME},
#endif
      {"cpu", make_cpu_backend, ""},
#ifdef EXOGPU_HAVE_VULKAN
      {"vulkan", make_vulkan_backend, ""},
#else
      {"vulkan", {}, "this build has no Vulkan backend (Vulkan headers or glslc were missing)"},
#endif
  };
  return list;
}

std::size_t preference(std::string_view backend) {
  const auto& list = known();
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (backend == list[i].name) return i;
  }
  return list.size();
}

std::string trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t");
  return std::string(s.substr(first, last - first + 1));
}

std::string known_names() {
  std::string names;
  for (const auto& b : known()) names += (names.empty() ? "" : ", ") + std::string(b.name);
  return names;
}

// Union-find over device indices, for grouping one physical device's views.
struct Groups {
  std::vector<std::size_t> parent;
  explicit Groups(std::size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  std::size_t find(std::size_t i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
  }
  void join(std::size_t a, std::size_t b) { parent[find(a)] = find(b); }
};

}  // namespace

const std::vector<std::string>& Registry::known_backends() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& b : known()) out.emplace_back(b.name);
    return out;
  }();
  return names;
}

BackendSelection BackendSelection::parse(std::string_view spec) {
  BackendSelection selection;
  std::size_t start = 0;
  while (start <= spec.size()) {
    const std::size_t comma = std::min(spec.find(',', start), spec.size());
    std::string item = trim(spec.substr(start, comma - start));
    start = comma + 1;
    if (item.empty()) continue;
    const bool exclude = item.front() == '-';
    if (exclude) item = trim(std::string_view(item).substr(1));
    const auto& names = Registry::known_backends();
    if (std::find(names.begin(), names.end(), item) == names.end()) {
      throw InvalidArgument("EXOGPU_BACKENDS names an unknown backend '" + item +
                            "' (known: " + known_names() + ")");
    }
    (exclude ? selection.exclude : selection.include).push_back(item);
  }
  return selection;
}

BackendSelection BackendSelection::from_environment() {
  const char* spec = std::getenv("EXOGPU_BACKENDS");
  return spec == nullptr ? BackendSelection{} : parse(spec);
}

bool BackendSelection::selects(std::string_view backend) const {
  auto has = [&](const std::vector<std::string>& v) {
    return std::find(v.begin(), v.end(), backend) != v.end();
  };
  return (include.empty() || has(include)) && !has(exclude);
}

Registry::Registry(const BackendSelection& selection) {
  for (const KnownBackend& entry : known()) {
    BackendStatus status;
    status.name = entry.name;
    if (!entry.make) {
      status.reason = entry.not_compiled_reason;
    } else if (!selection.selects(entry.name)) {
      status.reason = "excluded by EXOGPU_BACKENDS";
    } else {
      std::unique_ptr<Backend> backend = entry.make();
      status = backend->open();
      status.name = entry.name;
      if (status.available) {
        for (auto& device : backend->devices()) all_.push_back(std::move(device));
      }
      backends_.push_back(std::move(backend));
    }
    status.note = entry.note;
    status_.push_back(std::move(status));
  }
  merge_aliases();
}

Registry::~Registry() = default;

std::vector<std::vector<std::size_t>> group_physical_devices(
    const std::vector<DeviceInfo>& devices) {
  Groups groups(devices.size());
  std::map<std::string, std::size_t> by_uuid;
  std::map<std::string, std::size_t> by_pci;
  std::map<std::string, std::size_t> by_luid;
  std::map<std::string, std::set<std::uint32_t>> luid_vendors;  // known vendor ids per LUID
  for (const DeviceInfo& info : devices) {
    if (!info.luid.empty() && info.pci_vendor_id != 0) {
      luid_vendors[info.luid].insert(info.pci_vendor_id);
    }
  }
  std::optional<std::size_t> host_cpu;
  for (std::size_t i = 0; i < devices.size(); ++i) {
    if (devices[i].backend == "cpu" && !host_cpu) host_cpu = i;
  }
  for (std::size_t i = 0; i < devices.size(); ++i) {
    const DeviceInfo& info = devices[i];
    if (!info.uuid.empty()) {
      auto [it, fresh] = by_uuid.emplace(info.uuid, i);
      if (!fresh) groups.join(i, it->second);
    }
    if (!info.pci_bus_id.empty()) {
      auto [it, fresh] = by_pci.emplace(info.pci_bus_id, i);
      if (!fresh) groups.join(i, it->second);
    }
    // An adapter LUID names one adapter on this machine for this boot, unless
    // views that know their vendor disagree on whose silicon it is.
    if (!info.luid.empty() && luid_vendors[info.luid].size() <= 1) {
      auto [it, fresh] = by_luid.emplace(info.luid, i);
      if (!fresh) groups.join(i, it->second);
    }
    // A CPU implementation of a GPU API runs on the host CPU itself.
    if (info.emulated_on_host && host_cpu) groups.join(i, *host_cpu);
  }

  std::map<std::size_t, std::size_t> slot_of_root;
  std::vector<std::vector<std::size_t>> out;
  for (std::size_t i = 0; i < devices.size(); ++i) {
    auto [it, fresh] = slot_of_root.emplace(groups.find(i), out.size());
    if (fresh) out.emplace_back();
    out[it->second].push_back(i);
  }
  for (auto& group : out) {
    std::stable_sort(group.begin(), group.end(), [&](std::size_t a, std::size_t b) {
      return preference(devices[a].backend) < preference(devices[b].backend);
    });
  }
  return out;
}

void assign_memory_pools(std::vector<DeviceInfo>& devices, std::uint64_t host_bytes) {
  for (DeviceInfo& info : devices) {
    if (info.unified_memory || info.emulated_on_host || info.backend == "cpu") {
      info.memory_pool = kHostMemoryPool;
      info.memory_pool_bytes = host_bytes;
    } else {
      info.memory_pool.clear();
      info.memory_pool_bytes = 0;
    }
  }
}

void Registry::merge_aliases() {
  std::vector<DeviceInfo> infos;
  for (const auto& device : all_) infos.push_back(device->info());
  assign_memory_pools(infos, host_physical_memory());
  for (std::size_t i = 0; i < all_.size(); ++i) {
    all_[i]->info_.memory_pool = infos[i].memory_pool;
    all_[i]->info_.memory_pool_bytes = infos[i].memory_pool_bytes;
  }
  for (const auto& group : group_physical_devices(infos)) {
    for (std::size_t i : group) {
      std::vector<std::string>& aliases = all_[i]->info_.aliases;
      aliases.clear();
      for (std::size_t j : group) {
        if (j != i) aliases.push_back(all_[j]->id());
      }
    }
    physical_.push_back(all_[group.front()]);
  }
}

std::shared_ptr<Device> Registry::device(std::string_view id) const {
  for (const auto& device : all_) {
    if (device->id() == id) return device;
  }
  std::string ids;
  for (const auto& device : all_) ids += (ids.empty() ? "" : ", ") + device->id();
  throw InvalidArgument("no device '" + std::string(id) + "' here (devices: " +
                        (ids.empty() ? "none" : ids) + ")");
}

Registry& Registry::instance() {
  // Deliberately never destroyed: vendor drivers (lavapipe's LLVM, the HIP
  // runtime) register their own exit-time teardown after this object is
  // built, so at exit they are gone before it would be, and releasing devices
  // then would call into freed drivers. The OS reclaims everything anyway.
  static Registry* const registry =
      std::make_unique<Registry>(BackendSelection::from_environment()).release();
  return *registry;
}

}  // namespace exogpu
