// The Metal framework opened at run time, with the C entry points exogpu
// needs resolved once from one symbol table. Everything else in Metal is
// reached through the Objective-C runtime (messages to the objects these
// functions return), so nothing links against Metal and one build reports
// "unavailable, because ..." where Metal is missing.
#pragma once

#include "backends/metal/metal_types.hpp"

#include <memory>
#include <string>
#include <vector>

#include "core/dynamic_library.hpp"

namespace exogpu::metal {

// (member, exported symbol, return type, parameters). Both return a +1
// reference.
#define EXOGPU_METAL_SYMBOLS(X)                             \
  X(copy_all_devices, MTLCopyAllDevices, NSArray*, (void)) \
  X(create_system_default_device, MTLCreateSystemDefaultDevice, DeviceRef, (void))

class Library {
  struct Key {};

 public:
  explicit Library(Key, std::unique_ptr<DynamicLibrary> library) : library_(std::move(library)) {}

  // EXOGPU_METAL_LIBRARY when set, else the framework's binary.
  [[nodiscard]] static std::vector<std::string> library_names();

  // nullptr with `reason` set when no library loads or an entry point is
  // missing. The library stays mapped until exit (Objective-C classes
  // cannot be unloaded).
  [[nodiscard]] static std::shared_ptr<const Library> load(const std::vector<std::string>& names,
                                                           std::string& reason);

  [[nodiscard]] const std::string& name() const noexcept { return library_->name(); }

#define EXOGPU_METAL_MEMBER(member, exported, ret, params) ret(*member) params = nullptr;
  EXOGPU_METAL_SYMBOLS(EXOGPU_METAL_MEMBER)
#undef EXOGPU_METAL_MEMBER

 private:
  std::unique_ptr<DynamicLibrary> library_;
};

}  // namespace exogpu::metal
