// The three system libraries of the backend, opened at run time with
// LoadLibrary: d3d12.dll and dxgi.dll from Windows, and DirectML.dll, by
// default the one beside the executable or on the search path, or the one
// EXOGPU_DIRECTML_LIBRARY names. Loading never throws: it says, in words a
// user can act on, why the backend cannot run.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/directml/dml_symbols.hpp"
#include "core/dynamic_library.hpp"

namespace exogpu::directml {

class Runtime {
  struct Key {};

 public:
  explicit Runtime(Key) {}

  // EXOGPU_DIRECTML_LIBRARY when set, else "DirectML.dll".
  [[nodiscard]] static std::vector<std::string> directml_library_names();

  // Opens d3d12.dll, dxgi.dll and the first of `directml_names` that loads,
  // and resolves every entry point of dml_symbols.hpp. nullptr with `reason`
  // set on failure; a DirectML.dll without DMLCreateDevice1 (before 1.1) is
  // too old.
  [[nodiscard]] static std::shared_ptr<Runtime> load(const std::vector<std::string>& directml_names,
                                                     std::string& reason);

  [[nodiscard]] const std::string& directml_library() const noexcept { return directml_->name(); }

#define EXOGPU_DIRECTML_MEMBER(library, member, symbol, ret, params) \
  ret(WINAPI* member) params = nullptr;
  EXOGPU_DIRECTML_SYMBOLS(EXOGPU_DIRECTML_MEMBER)
#undef EXOGPU_DIRECTML_MEMBER

 private:
  std::unique_ptr<DynamicLibrary> d3d12_;
  std::unique_ptr<DynamicLibrary> dxgi_;
  std::unique_ptr<DynamicLibrary> directml_;
};

}  // namespace exogpu::directml
