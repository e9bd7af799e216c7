#include "core/dynamic_library.hpp"

#if defined(_WIN32)
#include <windows.h>
#else
#include <dlfcn.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <string>

namespace exogpu {

std::unique_ptr<DynamicLibrary> DynamicLibrary::open(const std::vector<std::string>& names,
                                                     std::string& error) {
  error.clear();
  for (const std::string& name : names) {
#if defined(_WIN32)
    HMODULE handle = LoadLibraryA(name.c_str());
    if (handle != nullptr) {
      return std::make_unique<DynamicLibrary>(Key{}, handle, name);
    }
    const DWORD code = GetLastError();
    const bool absent = code == ERROR_MOD_NOT_FOUND || code == ERROR_FILE_NOT_FOUND ||
                        code == ERROR_PATH_NOT_FOUND;
    error += (error.empty() ? "" : "; ") + name +
             (absent ? std::string(" not found")
                     : ": LoadLibrary failed with Windows error " + std::to_string(code) +
                           (code == ERROR_BAD_EXE_FORMAT ? " (not a 64-bit Windows library)" : ""));
#else
    void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
      return std::make_unique<DynamicLibrary>(Key{}, handle, name);
    }
    const char* why = dlerror();
    error += (error.empty() ? "" : "; ") + std::string(why != nullptr ? why : name + " not found");
#endif
  }
  return nullptr;
}

DynamicLibrary::~DynamicLibrary() {
#if defined(_WIN32)
  FreeLibrary(static_cast<HMODULE>(handle_));
#else
  dlclose(handle_);
#endif
}

void DynamicLibrary::keep_loaded_until_exit() const noexcept {
#if defined(_WIN32)
  HMODULE pinned = nullptr;
  (void)GetModuleHandleExA(
      GET_MODULE_HANDLE_EX_FLAG_PIN | GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
      reinterpret_cast<LPCSTR>(handle_), &pinned);
#else
  (void)dlopen(name_.c_str(), RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
#endif
}

void* DynamicLibrary::symbol(const char* name) const noexcept {
#if defined(_WIN32)
  return reinterpret_cast<void*>(GetProcAddress(static_cast<HMODULE>(handle_), name));
#else
  return dlsym(handle_, name);
#endif
}

std::vector<std::string> library_names_from_env(const char* variable,
                                                std::vector<std::string> defaults) {
  if (const char* name = std::getenv(variable); name != nullptr && *name != '\0') return {name};
  return defaults;
}

bool library_absent(const std::string& error) {
  return error.empty() || error.find("No such file") != std::string::npos ||
         error.find("not found") != std::string::npos;
}

std::unique_ptr<DynamicLibrary> open_or_explain(const std::vector<std::string>& names,
                                                const std::string& install_hint,
                                                std::string& reason) {
  std::string error;
  std::unique_ptr<DynamicLibrary> library = DynamicLibrary::open(names, error);
  if (library) return library;
  std::string tried;
  for (std::size_t i = 0; i < names.size(); ++i) tried += (i == 0 ? "" : " or ") + names[i];
  reason = library_absent(error) ? tried + " not found (" + install_hint + ")"
                                 : tried + " could not be loaded: " + error;
  return nullptr;
}

std::string describe_missing_symbols(const std::vector<std::string>& missing) {
  std::string list = missing.front();
  const std::size_t shown = std::min<std::size_t>(missing.size(), 3);
  for (std::size_t i = 1; i < shown; ++i) list += ", " + missing[i];
  if (missing.size() > shown) {
    list += " and " + std::to_string(missing.size() - shown) + " more entry points";
  }
  return list;
}

}  // namespace exogpu
