// The Windows headers this backend builds on, and the slice of the DirectML
// API it uses, declared here: mingw-w64 ships no DirectML.h, and its d3d12.h
// predates a few declarations used below. The interfaces keep the published
// vtable order and IIDs of DirectML.h, which Microsoft keeps stable across
// DirectML releases; enum values and struct layouts are those of its ABI.
#pragma once

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
// mingw-w64's d3d12.h declares methods that return a struct (GetDesc,
// GetAdapterLuid, Get*DescriptorHandleForHeapStart) with an explicit return
// slot when asked to, which is how the Windows x64 ABI passes it; without
// this g++ would expect the struct in a register and read garbage.
#ifndef WIDL_EXPLICIT_AGGREGATE_RETURNS
#define WIDL_EXPLICIT_AGGREGATE_RETURNS 1
#endif
#include <windows.h>
#include <d3d12.h>
#include <dxgi1_4.h>

#include <cstdint>

namespace exogpu::directml::api {

// --- d3d12.h declarations newer than mingw-w64 10's header -----------------

// D3D12_QUERY_HEAP_TYPE_COPY_QUEUE_TIMESTAMP: timestamps on a copy queue,
// where D3D12_FEATURE_DATA_D3D12_OPTIONS3::CopyQueueTimestampQueriesSupported.
inline constexpr auto kQueryHeapTypeCopyQueueTimestamp = static_cast<D3D12_QUERY_HEAP_TYPE>(5);

// --- DirectML.h -------------------------------------------------------------

enum DML_TENSOR_DATA_TYPE : std::int32_t {
  DML_TENSOR_DATA_TYPE_UNKNOWN = 0,
  DML_TENSOR_DATA_TYPE_FLOAT32 = 1,
  DML_TENSOR_DATA_TYPE_FLOAT16 = 2,
};
enum DML_TENSOR_TYPE : std::int32_t { DML_TENSOR_TYPE_INVALID = 0, DML_TENSOR_TYPE_BUFFER = 1 };
enum DML_TENSOR_FLAGS : std::int32_t { DML_TENSOR_FLAG_NONE = 0 };
enum DML_OPERATOR_TYPE : std::int32_t { DML_OPERATOR_INVALID = 0, DML_OPERATOR_GEMM = 54 };
enum DML_MATRIX_TRANSFORM : std::int32_t {
  DML_MATRIX_TRANSFORM_NONE = 0,
  DML_MATRIX_TRANSFORM_TRANSPOSE = 1,
};
enum DML_EXECUTION_FLAGS : std::int32_t { DML_EXECUTION_FLAG_NONE = 0 };
enum DML_CREATE_DEVICE_FLAGS : std::int32_t { DML_CREATE_DEVICE_FLAG_NONE = 0 };
enum DML_BINDING_TYPE : std::int32_t {
  DML_BINDING_TYPE_NONE = 0,
  DML_BINDING_TYPE_BUFFER = 1,
};
enum DML_FEATURE : std::int32_t {
  DML_FEATURE_TENSOR_DATA_TYPE_SUPPORT = 0,
  DML_FEATURE_FEATURE_LEVELS = 1,
};
enum DML_FEATURE_LEVEL : std::int32_t {
  DML_FEATURE_LEVEL_1_0 = 0x1000,
  DML_FEATURE_LEVEL_2_0 = 0x2000,
  DML_FEATURE_LEVEL_2_1 = 0x2100,
  DML_FEATURE_LEVEL_3_0 = 0x3000,
  DML_FEATURE_LEVEL_3_1 = 0x3100,
  DML_FEATURE_LEVEL_4_0 = 0x4000,
  DML_FEATURE_LEVEL_4_1 = 0x4100,
  DML_FEATURE_LEVEL_5_0 = 0x5000,
  DML_FEATURE_LEVEL_5_1 = 0x5100,
  DML_FEATURE_LEVEL_5_2 = 0x5200,
  DML_FEATURE_LEVEL_6_0 = 0x6000,
  DML_FEATURE_LEVEL_6_1 = 0x6100,
  DML_FEATURE_LEVEL_6_2 = 0x6200,
  DML_FEATURE_LEVEL_6_3 = 0x6300,
  DML_FEATURE_LEVEL_6_4 = 0x6400,
};

struct DML_BUFFER_TENSOR_DESC {
  DML_TENSOR_DATA_TYPE DataType;
  DML_TENSOR_FLAGS Flags;
  UINT DimensionCount;
  const UINT* Sizes;
  const UINT* Strides;
  UINT64 TotalTensorSizeInBytes;
  UINT GuaranteedBaseOffsetAlignment;
};
struct DML_TENSOR_DESC {
  DML_TENSOR_TYPE Type;
  const void* Desc;
};
struct DML_OPERATOR_DESC {
  DML_OPERATOR_TYPE Type;
  const void* Desc;
};
struct DML_GEMM_OPERATOR_DESC {
  const DML_TENSOR_DESC* ATensor;
  const DML_TENSOR_DESC* BTensor;
  const DML_TENSOR_DESC* CTensor;  // optional
  const DML_TENSOR_DESC* OutputTensor;
  DML_MATRIX_TRANSFORM TransA;
  DML_MATRIX_TRANSFORM TransB;
  FLOAT Alpha;
  FLOAT Beta;
  const DML_OPERATOR_DESC* FusedActivation;  // optional
};
struct DML_FEATURE_QUERY_FEATURE_LEVELS {
  UINT RequestedFeatureLevelCount;
  const DML_FEATURE_LEVEL* RequestedFeatureLevels;
};
struct DML_FEATURE_DATA_FEATURE_LEVELS {
  DML_FEATURE_LEVEL MaxSupportedFeatureLevel;
};
struct DML_FEATURE_QUERY_TENSOR_DATA_TYPE_SUPPORT {
  DML_TENSOR_DATA_TYPE DataType;
};
struct DML_FEATURE_DATA_TENSOR_DATA_TYPE_SUPPORT {
  BOOL IsSupported;
};
struct DML_BINDING_PROPERTIES {
  UINT RequiredDescriptorCount;
  UINT64 TemporaryResourceSize;
  UINT64 PersistentResourceSize;
};
struct DML_BUFFER_BINDING {
  ID3D12Resource* Buffer;
  UINT64 Offset;
  UINT64 SizeInBytes;
};
struct DML_BINDING_DESC {
  DML_BINDING_TYPE Type;
  const void* Desc;
};

struct IDMLDispatchable;
struct IDMLOperator;
struct IDMLCompiledOperator;
struct IDMLPageable;

struct DML_BINDING_TABLE_DESC {
  IDMLDispatchable* Dispatchable;
  D3D12_CPU_DESCRIPTOR_HANDLE CPUDescriptorHandle;
  D3D12_GPU_DESCRIPTOR_HANDLE GPUDescriptorHandle;
  UINT SizeInDescriptors;
};

// The interfaces, base first, each listing only its own methods in vtable order.
struct IDMLObject : IUnknown {
  virtual HRESULT STDMETHODCALLTYPE GetPrivateData(REFGUID guid, UINT* size, void* data) = 0;
  virtual HRESULT STDMETHODCALLTYPE SetPrivateData(REFGUID guid, UINT size, const void* data) = 0;
  virtual HRESULT STDMETHODCALLTYPE SetPrivateDataInterface(REFGUID guid, IUnknown* data) = 0;
  virtual HRESULT STDMETHODCALLTYPE SetName(PCWSTR name) = 0;
};

struct IDMLDevice : IDMLObject {
  virtual HRESULT STDMETHODCALLTYPE CheckFeatureSupport(DML_FEATURE feature, UINT query_size,
                                                        const void* query, UINT data_size,
                                                        void* data) = 0;
  virtual HRESULT STDMETHODCALLTYPE CreateOperator(const DML_OPERATOR_DESC* desc, REFIID riid,
                                                   void** object) = 0;
  virtual HRESULT STDMETHODCALLTYPE CompileOperator(IDMLOperator* op, DML_EXECUTION_FLAGS flags,
                                                    REFIID riid, void** object) = 0;
  virtual HRESULT STDMETHODCALLTYPE CreateOperatorInitializer(
      UINT count, IDMLCompiledOperator* const* operators, REFIID riid, void** object) = 0;
  virtual HRESULT STDMETHODCALLTYPE CreateCommandRecorder(REFIID riid, void** object) = 0;
  virtual HRESULT STDMETHODCALLTYPE CreateBindingTable(const DML_BINDING_TABLE_DESC* desc,
                                                       REFIID riid, void** object) = 0;
  virtual HRESULT STDMETHODCALLTYPE Evict(UINT count, IDMLPageable* const* objects) = 0;
  virtual HRESULT STDMETHODCALLTYPE MakeResident(UINT count, IDMLPageable* const* objects) = 0;
  virtual HRESULT STDMETHODCALLTYPE GetDeviceRemovedReason() = 0;
  virtual HRESULT STDMETHODCALLTYPE GetParentDevice(REFIID riid, void** device) = 0;
};

struct IDMLDeviceChild : IDMLObject {
  virtual HRESULT STDMETHODCALLTYPE GetDevice(REFIID riid, void** device) = 0;
};
struct IDMLPageable : IDMLDeviceChild {};
struct IDMLOperator : IDMLDeviceChild {};

struct IDMLDispatchable : IDMLPageable {
#if defined(_MSC_VER)
  virtual DML_BINDING_PROPERTIES STDMETHODCALLTYPE GetBindingProperties() = 0;
#else
  // Returns DML_BINDING_PROPERTIES. MSVC passes `this` first and the return
  // slot second; g++ would swap them for a by-value return, so the slot is
  // spelled out.
  virtual DML_BINDING_PROPERTIES* STDMETHODCALLTYPE GetBindingProperties(
      DML_BINDING_PROPERTIES* result) = 0;
#endif
};
struct IDMLCompiledOperator : IDMLDispatchable {};
struct IDMLOperatorInitializer : IDMLDispatchable {
  virtual HRESULT STDMETHODCALLTYPE Reset(UINT count, IDMLCompiledOperator* const* operators) = 0;
};

struct IDMLBindingTable : IDMLDeviceChild {
  virtual void STDMETHODCALLTYPE BindInputs(UINT count, const DML_BINDING_DESC* bindings) = 0;
  virtual void STDMETHODCALLTYPE BindOutputs(UINT count, const DML_BINDING_DESC* bindings) = 0;
  virtual void STDMETHODCALLTYPE BindTemporaryResource(const DML_BINDING_DESC* binding) = 0;
  virtual void STDMETHODCALLTYPE BindPersistentResource(const DML_BINDING_DESC* binding) = 0;
  virtual HRESULT STDMETHODCALLTYPE Reset(const DML_BINDING_TABLE_DESC* desc) = 0;
};

struct IDMLCommandRecorder : IDMLDeviceChild {
  virtual void STDMETHODCALLTYPE RecordDispatch(ID3D12CommandList* list,
                                                IDMLDispatchable* dispatchable,
                                                IDMLBindingTable* bindings) = 0;
};

inline DML_BINDING_PROPERTIES binding_properties(IDMLDispatchable& dispatchable) {
#if defined(_MSC_VER)
  return dispatchable.GetBindingProperties();
#else
  DML_BINDING_PROPERTIES result{};
  dispatchable.GetBindingProperties(&result);
  return result;
#endif
}

// The published IIDs.
inline constexpr GUID kIID_IDMLDevice = {
    0x6dbd6437, 0x96fd, 0x423f, {0xa9, 0x8c, 0xae, 0x5e, 0x7c, 0x2a, 0x57, 0x3f}};
inline constexpr GUID kIID_IDMLOperator = {
    0x26caae7a, 0x3081, 0x4633, {0x95, 0x81, 0x22, 0x6f, 0xbe, 0x57, 0x69, 0x5d}};
inline constexpr GUID kIID_IDMLCompiledOperator = {
    0x6b15e56a, 0xbf5c, 0x4902, {0x92, 0xd8, 0xda, 0x3a, 0x65, 0x0a, 0xfe, 0xa4}};
inline constexpr GUID kIID_IDMLOperatorInitializer = {
    0x427c1113, 0x435c, 0x469c, {0x86, 0x76, 0x4d, 0x5d, 0xd0, 0x72, 0xf8, 0x13}};
inline constexpr GUID kIID_IDMLBindingTable = {
    0x29c687dc, 0xde74, 0x4e3b, {0xab, 0x00, 0x11, 0x68, 0xf2, 0xfc, 0x3c, 0xfc}};
inline constexpr GUID kIID_IDMLCommandRecorder = {
    0xe6857a76, 0x2e3e, 0x4fdd, {0xbf, 0xf4, 0x5d, 0x2b, 0xa1, 0x0f, 0xb4, 0x53}};

// Entry points of DirectML.dll.
using DMLCreateDevice1Fn = HRESULT(WINAPI*)(ID3D12Device* d3d12_device,
                                            DML_CREATE_DEVICE_FLAGS flags,
                                            DML_FEATURE_LEVEL minimum_feature_level, REFIID riid,
                                            void** device);

}  // namespace exogpu::directml::api
