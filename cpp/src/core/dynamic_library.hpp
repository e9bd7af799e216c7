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

// What every vendor loader says alike, so that CUDA, HIP, NVML and rocm-smi
// explain themselves in the same words.

// `variable`'s value when it is set and not empty, else `defaults`.
[[nodiscard]] std::vector<std::string> library_names_from_env(const char* variable,
                                                              std::vector<std::string> defaults);

// Whether DynamicLibrary::open failed because no such file is there (rather
// than because a file that is there would not load).
[[nodiscard]] bool library_absent(const std::string& error);

// Opens the first of `names` that loads; when none does, `reason` says
// "<a or b> not found (<install_hint>)", or why a library that is there would
// not load.
[[nodiscard]] std::unique_ptr<DynamicLibrary> open_or_explain(const std::vector<std::string>& names,
                                                              const std::string& install_hint,
                                                              std::string& reason);

// "a, b, c and 2 more entry points" from a non-empty list of symbols.
[[nodiscard]] std::string describe_missing_symbols(const std::vector<std::string>& missing);

}  // namespace exogpu
