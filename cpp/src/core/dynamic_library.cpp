#include "core/dynamic_library.hpp"

#if defined(_WIN32)
#include <windows.h>
#else
#include <dlfcn.h>
#endif

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
    error += (error.empty() ? "" : "; ") + name + " not found";
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
#if !defined(_WIN32)
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

}  // namespace exogpu
