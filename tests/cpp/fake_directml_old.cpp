// A DirectML.dll as DirectML 1.0 shipped it: DMLCreateDevice, no
// DMLCreateDevice1. The backend must call it too old rather than crash.
#include <windows.h>

extern "C" __declspec(dllexport) HRESULT WINAPI DMLCreateDevice(void*, int, REFIID, void** device) {
  if (device != nullptr) *device = nullptr;
  return E_NOTIMPL;
}
