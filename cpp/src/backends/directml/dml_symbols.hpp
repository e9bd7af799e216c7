// Every entry point this backend takes from a system library, listed once:
// X(library, member, exported symbol, return type, parameters). Everything
// else is reached through the COM interfaces these return.
#pragma once

#include "backends/directml/dml_api.hpp"

#define EXOGPU_DIRECTML_SYMBOLS(X)                                                             \
  X(d3d12, create_device, D3D12CreateDevice, HRESULT,                                          \
    (IUnknown * adapter, D3D_FEATURE_LEVEL minimum_level, REFIID riid, void** device))         \
  X(dxgi, create_factory, CreateDXGIFactory1, HRESULT, (REFIID riid, void** factory))          \
  X(directml, create_dml_device, DMLCreateDevice1, HRESULT,                                    \
    (ID3D12Device * device, api::DML_CREATE_DEVICE_FLAGS flags,                                \
     api::DML_FEATURE_LEVEL minimum_level, REFIID riid, void** dml_device))
