#include "backends/directml/dml_error.hpp"

#include <cstdio>

#include "exogpu/error.hpp"

namespace exogpu::directml {

namespace {

const char* hresult_name(HRESULT hr) noexcept {
  switch (hr) {
    case E_OUTOFMEMORY: return "E_OUTOFMEMORY";
    case E_INVALIDARG: return "E_INVALIDARG";
    case E_NOTIMPL: return "E_NOTIMPL";
    case E_NOINTERFACE: return "E_NOINTERFACE";
    case E_FAIL: return "E_FAIL";
    case DXGI_ERROR_DEVICE_REMOVED: return "DXGI_ERROR_DEVICE_REMOVED";
    case DXGI_ERROR_DEVICE_HUNG: return "DXGI_ERROR_DEVICE_HUNG";
    case DXGI_ERROR_DEVICE_RESET: return "DXGI_ERROR_DEVICE_RESET";
    case DXGI_ERROR_DRIVER_INTERNAL_ERROR: return "DXGI_ERROR_DRIVER_INTERNAL_ERROR";
    case DXGI_ERROR_UNSUPPORTED: return "DXGI_ERROR_UNSUPPORTED";
    case DXGI_ERROR_INVALID_CALL: return "DXGI_ERROR_INVALID_CALL";
    case DXGI_ERROR_NOT_FOUND: return "DXGI_ERROR_NOT_FOUND";
    default: return nullptr;
  }
}

}  // namespace

std::string describe_hresult(HRESULT hr) {
  char code[16];
  std::snprintf(code, sizeof code, "0x%08lx", static_cast<unsigned long>(hr));
  if (const char* name = hresult_name(hr); name != nullptr) {
    return std::string(name) + " (" + code + ")";
  }
  char text[256] = {};
  const DWORD length =
      FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, nullptr,
                     static_cast<DWORD>(hr), 0, text, sizeof text, nullptr);
  std::string message(text, length);
  while (!message.empty() && (message.back() == '\n' || message.back() == '\r' ||
                              message.back() == ' ' || message.back() == '.')) {
    message.pop_back();
  }
  return message.empty() ? std::string("HRESULT ") + code : message + " (" + code + ")";
}

bool is_device_lost(HRESULT hr) noexcept {
  return hr == DXGI_ERROR_DEVICE_REMOVED || hr == DXGI_ERROR_DEVICE_RESET ||
         hr == DXGI_ERROR_DEVICE_HUNG;
}

void check_hresult(HRESULT hr, std::string_view call, std::string_view where,
                   ID3D12Device* device) {
  if (SUCCEEDED(hr)) return;
  std::string message = std::string(where) + ": " + std::string(call) + " failed: " +
                        describe_hresult(hr);
  if (hr == E_OUTOFMEMORY) throw OutOfMemory(std::move(message));
  if (device != nullptr) {
    const HRESULT removed = device->GetDeviceRemovedReason();
    if (FAILED(removed)) {
      throw DeviceError(message + "; the device was removed: " + describe_hresult(removed));
    }
  }
  throw DeviceError(message);
}

void check_not_removed(ID3D12Device* device, std::string_view after, std::string_view where) {
  const HRESULT removed = device->GetDeviceRemovedReason();
  if (SUCCEEDED(removed)) return;
  throw DeviceError(std::string(where) + ": the device was removed (found after " +
                    std::string(after) + "): " + describe_hresult(removed));
}

}  // namespace exogpu::directml
