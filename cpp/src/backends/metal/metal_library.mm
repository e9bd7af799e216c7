#include "backends/metal/metal_library.hpp"

namespace exogpu::metal {

std::vector<std::string> Library::library_names() {
  return library_names_from_env("EXOGPU_METAL_LIBRARY",
                                {"/System/Library/Frameworks/Metal.framework/Metal"});
}

std::shared_ptr<const Library> Library::load(const std::vector<std::string>& names,
                                             std::string& reason) {
  std::unique_ptr<DynamicLibrary> opened =
      open_or_explain(names, "Metal needs macOS 10.14 or later", reason);
  if (!opened) return nullptr;
  opened->keep_loaded_until_exit();
  auto library = std::make_shared<Library>(Key{}, std::move(opened));
  std::vector<std::string> missing;
  auto resolve = [&](const char* exported) -> void* {
    void* fn = library->library_->symbol(exported);
    if (fn == nullptr) missing.emplace_back(exported);
    return fn;
  };
#define EXOGPU_METAL_RESOLVE(member, exported, ret, params) \
  library->member = reinterpret_cast<ret(*) params>(resolve(#exported));
  EXOGPU_METAL_SYMBOLS(EXOGPU_METAL_RESOLVE)
#undef EXOGPU_METAL_RESOLVE
  if (!missing.empty()) {
    reason = library->name() + " is missing " + describe_missing_symbols(missing) +
             " (not the Metal framework?)";
    return nullptr;
  }
  return library;
}

}  // namespace exogpu::metal
