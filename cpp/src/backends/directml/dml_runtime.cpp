#include "backends/directml/dml_runtime.hpp"

namespace exogpu::directml {

std::vector<std::string> Runtime::directml_library_names() {
  return library_names_from_env("EXOGPU_DIRECTML_LIBRARY", {"DirectML.dll"});
}

std::shared_ptr<Runtime> Runtime::load(const std::vector<std::string>& directml_names,
                                       std::string& reason) {
  auto runtime = std::make_shared<Runtime>(Key{});
  runtime->d3d12_ = open_or_explain({"d3d12.dll"}, "Direct3D 12 needs Windows 10 or later", reason);
  if (!runtime->d3d12_) return nullptr;
  runtime->dxgi_ = open_or_explain({"dxgi.dll"}, "DXGI is part of Windows", reason);
  if (!runtime->dxgi_) return nullptr;
  runtime->directml_ = open_or_explain(
      directml_names,
      "install DirectML 1.1 or newer beside the program, e.g. from the Microsoft.AI.DirectML "
      "package, or set EXOGPU_DIRECTML_LIBRARY to its path",
      reason);
  if (!runtime->directml_) return nullptr;
  // Drivers start threads inside these libraries that outlive any handle.
  runtime->d3d12_->keep_loaded_until_exit();
  runtime->dxgi_->keep_loaded_until_exit();
  runtime->directml_->keep_loaded_until_exit();

  std::vector<std::string> missing_system;
  std::vector<std::string> missing_directml;
  auto resolve = [&](const DynamicLibrary& library, const char* symbol,
                     std::vector<std::string>& missing) {
    void* fn = library.symbol(symbol);
    if (fn == nullptr) missing.emplace_back(symbol);
    return fn;
  };
  const DynamicLibrary& d3d12 = *runtime->d3d12_;
  const DynamicLibrary& dxgi = *runtime->dxgi_;
  const DynamicLibrary& directml = *runtime->directml_;
#define EXOGPU_DIRECTML_RESOLVE(library, member, symbol, ret, params)                    \
  runtime->member = reinterpret_cast<ret(WINAPI*) params>(resolve(                       \
      library, #symbol, &library == &directml ? missing_directml : missing_system));
  EXOGPU_DIRECTML_SYMBOLS(EXOGPU_DIRECTML_RESOLVE)
#undef EXOGPU_DIRECTML_RESOLVE
  (void)d3d12;
  (void)dxgi;

  if (!missing_system.empty()) {
    reason = "d3d12.dll or dxgi.dll lacks " + describe_missing_symbols(missing_system) +
             " (Windows too old for Direct3D 12?)";
    return nullptr;
  }
  if (!missing_directml.empty()) {
    reason = runtime->directml_library() + " is too old: it lacks " +
             describe_missing_symbols(missing_directml) + " (DirectML 1.1 or newer is needed)";
    return nullptr;
  }
  return runtime;
}

}  // namespace exogpu::directml
