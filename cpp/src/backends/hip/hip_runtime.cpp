#include "backends/hip/hip_runtime.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "exogpu/error.hpp"


namespace exogpu::hip {

std::vector<std::string> Runtime::library_names() {
#if defined(_WIN32)
  return library_names_from_env("EXOGPU_HIP_LIBRARY", {"amdhip64_6.dll", "amdhip64.dll"});
#else
  return library_names_from_env("EXOGPU_HIP_LIBRARY",
                                {"libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"});
#endif
}

std::shared_ptr<Runtime> Runtime::load(const std::vector<std::string>& names,
                                       std::string& reason) {
  std::string error;
  std::unique_ptr<DynamicLibrary> library = DynamicLibrary::open(names, error);
  if (!library) {
    std::string also;
    for (std::size_t i = 1; i < names.size(); ++i) also += (i == 1 ? "" : ", ") + names[i];
    const bool absent = library_absent(error);
    const std::string first = names.empty() ? std::string("the HIP runtime") : names.front();
    reason = absent ? first + " not found (install ROCm" +
                          (also.empty() ? "" : "; also tried " + also) + ")"
                    : first + " could not be loaded: " + error;
    return nullptr;
  }
  auto runtime = std::make_shared<Runtime>(Key{}, std::move(library));
  runtime->library_->keep_loaded_until_exit();
  std::vector<std::string> missing;
  auto resolve = [&](const char* exported) -> void* {
    void* fn = runtime->library_->symbol(exported);
    if (fn == nullptr) missing.emplace_back(exported);
    return fn;
  };
#define EXOGPU_HIP_RESOLVE(member, exported, ret, params) \
  runtime->member = reinterpret_cast<ret(*) params>(resolve(#exported));
  EXOGPU_HIP_SYMBOLS(EXOGPU_HIP_RESOLVE)
#undef EXOGPU_HIP_RESOLVE
  if (!missing.empty()) {
    reason = runtime->library_name() + " is missing " + describe_missing_symbols(missing) +
             " (HIP runtime too old?)";
    return nullptr;
  }
  return runtime;
}

std::string Runtime::error_name(hipError_t result) const {
  const char* name = get_error_name != nullptr ? get_error_name(result) : nullptr;
  return name != nullptr ? std::string(name) : "hipError_t " + std::to_string(result);
}

std::string Runtime::describe(hipError_t result) const {
  std::string text = error_name(result);
  const char* what = get_error_string != nullptr ? get_error_string(result) : nullptr;
  if (what != nullptr && text != what) text += std::string(" (") + what + ")";
  return text;
}

void Runtime::check(hipError_t result, std::string_view call, std::string_view where) const {
  if (result == hipSuccess) return;
  std::string message =
      std::string(where) + ": " + std::string(call) + " failed: " + describe(result);
  if (result == hipErrorOutOfMemory) throw OutOfMemory(std::move(message));
  throw DeviceError(message);
}

std::string version_string(int version) {
  return std::to_string(version / 10000000) + "." + std::to_string(version / 100000 % 100) + "." +
         std::to_string(version % 100000);
}

}  // namespace exogpu::hip
