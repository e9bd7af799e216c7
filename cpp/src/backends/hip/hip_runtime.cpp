#include "backends/hip/hip_runtime.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "exogpu/error.hpp"


namespace exogpu::hip {

std::vector<std::string> Runtime::library_names() {
  if (const char* name = std::getenv("EXOGPU_HIP_LIBRARY"); name != nullptr && *name != '\0') {
    return {name};
  }
#if defined(_WIN32)
  return {"amdhip64_6.dll", "amdhip64.dll"};
#else
  return {"libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"};
#endif
}

std::shared_ptr<Runtime> Runtime::load(const std::vector<std::string>& names,
                                       std::string& reason) {
  std::string error;
  std::unique_ptr<DynamicLibrary> library = DynamicLibrary::open(names, error);
  if (!library) {
    std::string also;
    for (std::size_t i = 1; i < names.size(); ++i) also += (i == 1 ? "" : ", ") + names[i];
    const bool absent = error.empty() || error.find("No such file") != std::string::npos ||
                        error.find("not found") != std::string::npos;
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
    std::string list = missing.front();
    const std::size_t shown = std::min<std::size_t>(missing.size(), 3);
    for (std::size_t i = 1; i < shown; ++i) list += ", " + missing[i];
    if (missing.size() > shown) {
      list += " and " + std::to_string(missing.size() - shown) + " more entry points";
    }
    reason = runtime->library_name() + " is missing " + list + " (HIP runtime too old?)";
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

std::string format_uuid(const char (&bytes)[16]) {
  unsigned char b[16];
  for (int i = 0; i < 16; ++i) b[i] = static_cast<unsigned char>(bytes[i]);
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

std::string normalise_pci_bus_id(std::string_view raw) {
  unsigned domain = 0;
  unsigned bus = 0;
  unsigned device = 0;
  unsigned function = 0;
  char tail = 0;
  const std::string text(raw);
  if (std::sscanf(text.c_str(), "%x:%x:%x.%x%c", &domain, &bus, &device, &function, &tail) != 4 ||
      bus > 0xff || device > 0x1f || function > 0x7) {
    return {};
  }
  char out[32];
  std::snprintf(out, sizeof out, "%04x:%02x:%02x.%x", domain, bus, device, function);
  return out;
}

}  // namespace exogpu::hip
