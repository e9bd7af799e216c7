// The HIP runtime library opened at run time, with every entry point of
// hip_api.hpp resolved once. Loading never throws: it reports, in words a
// user can act on, why the runtime cannot be used.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backends/hip/hip_api.hpp"
#include "core/dynamic_library.hpp"

namespace exogpu::hip {

class Runtime {
  struct Key {};

 public:
  explicit Runtime(Key, std::unique_ptr<DynamicLibrary> library)
      : library_(std::move(library)) {}

  // EXOGPU_HIP_LIBRARY when set, else the platform's HIP runtime names.
  [[nodiscard]] static std::vector<std::string> library_names();
  // nullptr with `reason` set when no library loads or one lacks entry points.
  [[nodiscard]] static std::shared_ptr<Runtime> load(const std::vector<std::string>& names,
                                                     std::string& reason);

  [[nodiscard]] const std::string& library_name() const noexcept { return library_->name(); }
  // "hipErrorNoDevice", or the number when the runtime does not know it.
  [[nodiscard]] std::string error_name(hipError_t result) const;
  // "hipErrorOutOfMemory (out of memory)".
  [[nodiscard]] std::string describe(hipError_t result) const;
  // Throws DeviceError naming `call`, `where` and the error; OutOfMemory for
  // hipErrorOutOfMemory.
  void check(hipError_t result, std::string_view call, std::string_view where) const;

#define EXOGPU_HIP_MEMBER(member, exported, ret, params) ret(*member) params = nullptr;
  EXOGPU_HIP_SYMBOLS(EXOGPU_HIP_MEMBER)
#undef EXOGPU_HIP_MEMBER

 private:
  std::unique_ptr<DynamicLibrary> library_;
};

// "5.2.21153" from hipRuntimeGetVersion's 50221153.
[[nodiscard]] std::string version_string(int version);

}  // namespace exogpu::hip
