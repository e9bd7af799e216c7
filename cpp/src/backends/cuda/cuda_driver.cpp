#include "backends/cuda/cuda_driver.hpp"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>

#include "exogpu/error.hpp"


namespace exogpu::cuda {

std::vector<std::string> Driver::library_names() {
#if defined(_WIN32)
  return library_names_from_env("EXOGPU_CUDA_LIBRARY", {"nvcuda.dll"});
#else
  return library_names_from_env("EXOGPU_CUDA_LIBRARY", {"libcuda.so.1"});
#endif
}

std::shared_ptr<Driver> Driver::load(const std::vector<std::string>& names, std::string& reason) {
  std::unique_ptr<DynamicLibrary> library =
      open_or_explain(names, "install the NVIDIA driver", reason);
  if (!library) return nullptr;
  auto driver = std::make_shared<Driver>(Key{}, std::move(library));
  driver->library_->keep_loaded_until_exit();
  const DynamicLibrary& lib = *driver->library_;
  auto proc_address = reinterpret_cast<GetProcAddressFn>(lib.symbol("cuGetProcAddress"));

  std::vector<std::string> missing;
  auto resolve = [&](const char* base, const char* exported) -> void* {
    if (proc_address != nullptr) {
      void* fn = nullptr;
      if (proc_address(base, &fn, kProcAddressVersion, 0) == CUDA_SUCCESS && fn != nullptr) {
        driver->via_proc_address_ = true;
        return fn;
      }
    }
    void* fn = lib.symbol(exported);
    if (fn == nullptr) missing.emplace_back(exported);
    return fn;
  };
#define EXOGPU_CUDA_RESOLVE_OPTIONAL(member, base, exported, ret, params) \
  driver->member = reinterpret_cast<ret(*) params>(resolve(#base, #exported));
#define EXOGPU_CUDA_RESOLVE(member, base, exported, ret, params) \
  driver->member = reinterpret_cast<ret(*) params>(resolve(#base, #exported));
  EXOGPU_CUDA_SYMBOLS(EXOGPU_CUDA_RESOLVE)
#undef EXOGPU_CUDA_RESOLVE
  const std::size_t required_missing = missing.size();
  EXOGPU_CUDA_OPTIONAL_SYMBOLS(EXOGPU_CUDA_RESOLVE_OPTIONAL)
#undef EXOGPU_CUDA_RESOLVE_OPTIONAL
  missing.resize(required_missing);  // optional entry points may be absent

  if (!missing.empty()) {
    reason = lib.name() + " is missing " + describe_missing_symbols(missing) + " (driver too old?)";
    return nullptr;
  }
  return driver;
}

std::string Driver::error_name(CUresult result) const {
  const char* name = nullptr;
  if (get_error_name != nullptr && get_error_name(result, &name) == CUDA_SUCCESS &&
      name != nullptr) {
    return name;
  }
  return "CUresult " + std::to_string(result);
}

std::string Driver::describe(CUresult result) const {
  std::string text = error_name(result);
  const char* what = nullptr;
  if (get_error_string != nullptr && get_error_string(result, &what) == CUDA_SUCCESS &&
      what != nullptr) {
    text += std::string(" (") + what + ")";
  }
  return text;
}

void Driver::check(CUresult result, std::string_view call, std::string_view where) const {
  if (result == CUDA_SUCCESS) return;
  std::string message = std::string(where) + ": " + std::string(call) + " failed: " +
                        describe(result);
  if (result == CUDA_ERROR_OUT_OF_MEMORY) throw OutOfMemory(std::move(message));
  throw DeviceError(message);
}

std::string version_string(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

}  // namespace exogpu::cuda
