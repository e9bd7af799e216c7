// HRESULTs as exogpu's typed errors: E_OUTOFMEMORY is OutOfMemory; a removed
// device is a DeviceError that carries the reason Direct3D gives for it;
// anything else is a DeviceError naming the call and the code.
#pragma once

#include <string>
#include <string_view>

#include "backends/directml/dml_api.hpp"

namespace exogpu::directml {

// "E_OUTOFMEMORY (0x8007000e)", "DXGI_ERROR_DEVICE_REMOVED (0x887a0005)", or
// the code with the system's message for it.
[[nodiscard]] std::string describe_hresult(HRESULT hr);

// Whether `hr` says the device is gone (removed, reset, hung).
[[nodiscard]] bool is_device_lost(HRESULT hr) noexcept;

// Throws for a failed `hr` from `call` on device `where`. `device`, when
// given, is asked why it was removed, so that the message says what really
// went wrong rather than the symptom.
void check_hresult(HRESULT hr, std::string_view call, std::string_view where,
                   ID3D12Device* device = nullptr);

// Throws DeviceError when `device` has been removed, naming `after` (the
// call after which it was found so). DirectML removes the device silently
// for some mistakes (an unbound input), and every later call then fails.
void check_not_removed(ID3D12Device* device, std::string_view after, std::string_view where);

}  // namespace exogpu::directml
