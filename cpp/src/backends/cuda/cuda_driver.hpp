// The CUDA driver library opened at run time, with every entry point of
// cuda_api.hpp resolved once. Loading never throws: it reports, in words a
// user can act on, why the driver cannot be used.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backends/cuda/cuda_api.hpp"
#include "core/dynamic_library.hpp"

namespace exogpu::cuda {

class Driver {
  struct Key {};

 public:
  explicit Driver(Key, std::unique_ptr<DynamicLibrary> library)
      : library_(std::move(library)) {}

  // The library names to try: EXOGPU_CUDA_LIBRARY when set, else the
  // platform's driver library.
  [[nodiscard]] static std::vector<std::string> library_names();

  // Opens the first library of `names` that loads and resolves every entry
  // point (through cuGetProcAddress where the driver has it, else the
  // exported symbol). nullptr with `reason` set on failure.
  [[nodiscard]] static std::shared_ptr<Driver> load(const std::vector<std::string>& names,
                                                    std::string& reason);

  [[nodiscard]] const std::string& library_name() const noexcept { return library_->name(); }
  [[nodiscard]] bool resolved_through_proc_address() const noexcept { return via_proc_address_; }

  // "CUDA_ERROR_OUT_OF_MEMORY (out of memory)"; falls back to the number.
  [[nodiscard]] std::string describe(CUresult result) const;
  // "CUDA_ERROR_NO_DEVICE", or the number when the driver does not know it.
  [[nodiscard]] std::string error_name(CUresult result) const;
  // Throws DeviceError naming `call`, `where` and the error; OutOfMemory for
  // CUDA_ERROR_OUT_OF_MEMORY.
  void check(CUresult result, std::string_view call, std::string_view where) const;

#define EXOGPU_CUDA_MEMBER(member, base, exported, ret, params) ret(*member) params = nullptr;
  EXOGPU_CUDA_SYMBOLS(EXOGPU_CUDA_MEMBER)
  EXOGPU_CUDA_OPTIONAL_SYMBOLS(EXOGPU_CUDA_MEMBER)
#undef EXOGPU_CUDA_MEMBER

 private:
  std::unique_ptr<DynamicLibrary> library_;
  bool via_proc_address_ = false;
};

// "12.4" from cuDriverGetVersion's 12040.
[[nodiscard]] std::string version_string(int version);

}  // namespace exogpu::cuda
