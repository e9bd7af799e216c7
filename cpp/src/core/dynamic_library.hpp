// Opening vendor runtimes at run time (dlopen / LoadLibrary), so that one
// build runs everywhere and each backend can say why it is unavailable.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace exogpu {

class DynamicLibrary {
  struct Key {};  // only open() constructs

 public:
  DynamicLibrary(Key, void* handle, std::string name) : handle_(handle), name_(std::move(name)) {}
  // Tries each name in turn; on failure `error` says what was tried and why.
  [[nodiscard]] static std::unique_ptr<DynamicLibrary> open(const std::vector<std::string>& names,
                                                            std::string& error);
  DynamicLibrary(const DynamicLibrary&) = delete;
  DynamicLibrary& operator=(const DynamicLibrary&) = delete;
  ~DynamicLibrary();

  // Keeps the library mapped until the process exits, whatever happens to
  // this handle: vendor runtimes start threads and register exit handlers
  // that outlive any handle, and unloading one while they run crashes.
  void keep_loaded_until_exit() const noexcept;

  // nullptr when the library has no such symbol.
  [[nodiscard]] void* symbol(const char* name) const noexcept;
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  void* handle_;
  std::string name_;
};

}  // namespace exogpu
